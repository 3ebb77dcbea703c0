"""Human evaluation: blinded export, checked ingestion (synthetic fixture sheets), Table 2 by hand, and
Krippendorff's alpha against its published example and a second implementation."""

import csv
import math

import numpy as np
import pytest

from peftstudy import human_eval, io

FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "human_eval"

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12 units example.
N = np.nan
RELIABILITY = [[1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
               [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
               [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
               [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N]]


def as_ratings(matrix, criterion="readability"):
    return [{"rater": f"c{c}", "item": f"u{u:02d}", "kind": "criterion", "name": criterion, "value": v}
            for c, row in enumerate(matrix) for u, v in enumerate(row) if not math.isnan(v)]


def test_krippendorff_alpha_reproduces_the_published_example():
    ratings = as_ratings(RELIABILITY)
    published = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
    for level, value in published.items():
        alpha, raters, items = human_eval.krippendorff_alpha(ratings, "readability", level)
        assert round(alpha, 3) == value and (raters, items) == (4, 12)


def test_krippendorff_alpha_agrees_with_nltk():
    from nltk.metrics.agreement import AnnotationTask
    from nltk.metrics.distance import interval_distance

    ratings = as_ratings(RELIABILITY)
    nltk_alpha = AnnotationTask([(r["rater"], r["item"], r["value"]) for r in ratings], distance=interval_distance).alpha()
    assert human_eval.krippendorff_alpha(ratings, "readability", "interval")[0] == pytest.approx(nltk_alpha, abs=1e-9)


def test_sheet_is_blinded_shuffled_and_reproducible(tmp_path):
    runs = []
    for method, rank in (("full", ""), ("lora", "8")):
        for seed in (1, 2):
            path = tmp_path / f"{method}{seed}.jsonl"
            io.write_jsonl(path, [{"id": f"e{i}", "input": f"in {i}", "reference": "r", "prediction": f"{method} {seed} {i}"}
                                  for i in range(10)])
            runs.append(({"dataset": "d", "model": "m", "method": method, "rank": rank, "seed": seed}, path))
    sheet, key = human_eval.build_sheet(runs, 3, seed=0, secret="s")
    again, _ = human_eval.build_sheet(list(reversed(runs)), 3, seed=0, secret="s")
    assert sheet == again and len(sheet) == len(key) == 6  # 3 per cell, from the cell's first seed
    assert {row["output"].split()[1] for row in sheet} == {"1"}
    assert all(set(row) == set(human_eval.SHEET_COLUMNS) for row in sheet)
    assert not any("full" in row["item"] or "lora" in row["item"] for row in sheet)
    assert {r["method"] for r in key} == {"full", "lora"} and {r["item"] for r in key} == {r["item"] for r in sheet}


def test_ingesting_the_synthetic_fixture_sheets():
    with open(FIXTURES / "blinding_key.csv", newline="") as handle:
        key = list(csv.DictReader(handle))
    known = {row["item"] for row in key}
    paths = sorted((FIXTURES / "ratings").glob("*.csv"))
    ratings = [r for path in paths for r in human_eval.read_ratings(path, known)]
    result = human_eval.summarise_ratings(ratings, key)
    table2 = result["table2"]
    # Recompute one cell by hand: each item's mean over the three raters, then mean and sd over items.
    scores = {}
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                scores.setdefault(row["item"], []).append(int(row["readability"]))
    full_items = [np.mean(scores[r["item"]]) for r in key if r["method"] == "full"]
    cell = table2[(table2["method"] == "full") & (table2["criterion"] == "readability")].iloc[0]
    assert cell["mean"] == pytest.approx(np.mean(full_items))
    assert cell["std"] == pytest.approx(np.std(full_items, ddof=1))
    assert (cell["items"], cell["ratings"]) == (4, 12)
    agreement = result["agreement"].set_index("criterion")
    assert agreement.loc["readability", "raters"] == 3 and -1 <= agreement.loc["readability", "krippendorff_alpha_ordinal"] <= 1
    errors = result["errors"]
    repetition = errors[(errors["method"] == "lora") & (errors["category"] == "repetition")].iloc[0]
    assert repetition["judgements"] == 12 and 0 <= repetition["frequency"] <= 1


def test_bad_sheets_name_the_file_and_line(tmp_path):
    path = tmp_path / "rater_x.csv"
    columns = ["item", *human_eval.CRITERIA, *human_eval.ERROR_CATEGORIES]
    path.write_text(",".join(columns) + "\n" + ",".join(["i1", "6"] + [""] * (len(columns) - 2)) + "\n")
    with pytest.raises(human_eval.RatingSheetError, match=r"rater_x.csv:2: factual_accuracy must be an integer from 1 to 5"):
        human_eval.read_ratings(path, {"i1"})
    with pytest.raises(human_eval.RatingSheetError, match=r"rater_x.csv:2: unknown item 'i1'"):
        human_eval.read_ratings(path, set())


def evaluation_study(**human_evaluation):
    """Free text (products), a classification dataset (sections, task from its corpus), and two models."""
    study = {"study": "s", "datasets": {"products": {"source": "synthetic", "corpus": "synthetic"},
                                        "sections": {"source": "snapshot", "corpus": "debian_sections"}}}
    return {**study, "human_evaluation": human_evaluation} if human_evaluation else study


def evaluation_runs():
    from peftstudy.study.matrix import Run

    return [Run("s", dataset, model, variant, seed) for dataset in ("products", "sections")
            for model in ("gpt2", "t5") for variant in ("full", "lora-r8") for seed in (1, 2)]


def test_the_raters_get_every_free_text_run_by_default():
    runs = human_eval.evaluated_runs(evaluation_study(), evaluation_runs())
    assert len(runs) == 2 * 2 * 2 and {run["dataset"] for run in runs} == {"products"}  # not the classifier's labels
    assert runs[0] == {"dataset": "products", "model": "gpt2", "method": "full", "rank": "", "seed": 1,
                       "directory": "results/s/runs/products/gpt2/full/seed1"}
    assert runs[2] == {"dataset": "products", "model": "gpt2", "method": "lora", "rank": "8", "seed": 1,
                       "directory": "results/s/runs/products/gpt2/lora-r8/seed1"}


def test_the_study_may_choose_the_datasets_and_models_rated():
    runs = human_eval.evaluated_runs(evaluation_study(datasets=["sections"], models=["t5"]), evaluation_runs())
    assert {(run["dataset"], run["model"]) for run in runs} == {("sections", "t5")} and len(runs) == 4
    assert human_eval.evaluated_runs(evaluation_study(models=["llama"]), evaluation_runs()) == []
