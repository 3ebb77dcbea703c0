"""Human evaluation: blinded export, checked ingestion (synthetic fixture sheets), Table 2 by hand, and
Krippendorff's alpha against its published example and a second implementation."""

import csv
import hashlib
import json
import math
import os
import runpy
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from peftstudy import human_eval, io

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "human_eval"
SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
SECRET = "5e" * human_eval.SECRET_BYTES

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
    sheet, key = human_eval.build_sheet(runs, 3, seed=0, secret=SECRET)
    again, _ = human_eval.build_sheet(list(reversed(runs)), 3, seed=0, secret=SECRET)
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


def fixture_key():
    with open(FIXTURES / "blinding_key.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def fixture_sheet() -> list[list[str]]:
    with open(FIXTURES / "ratings" / "rater_a.csv", newline="") as handle:
        return list(csv.reader(handle))


def as_text(rows) -> str:
    return "".join(",".join(row) + "\n" for row in rows)


def set_field(rows, row, column, value):
    rows[row - 1][rows[0].index(column)] = value
    return rows


def added_column(rows, name):
    return [row + ([name] if index == 0 else [""]) for index, row in enumerate(rows)]


def sheet_with(change):
    """rater_a's fixture sheet, changed: (file name, text or bytes)."""
    return change(fixture_sheet())


# Each case: how a filled sheet goes wrong, what the error must say (the file, then line, row and column).
BAD_SHEETS = {
    "missing column": (lambda rows: as_text([["readabilty" if c == "readability" else c for c in rows[0]], *rows[1:]]),
                       r"rater_a\.csv:1: header: missing column\(s\) readability \(the sheet's columns: item, input"),
    "unknown column": (lambda rows: as_text(added_column(rows, "notes")),
                       r"rater_a\.csv:1: header: unknown column\(s\) 'notes'"),
    "column given twice": (lambda rows: as_text(added_column(rows, "readability")),
                           r"rater_a\.csv:1: header: column\(s\) readability given more than once"),
    "score above the scale": (lambda rows: as_text(set_field(rows, 2, "readability", "6")),
                              r"rater_a\.csv:2: row 2, column readability: must be one of 1, 2, 3, 4, 5 or empty, "
                              r"got '6'"),
    "score below the scale": (lambda rows: as_text(set_field(rows, 3, "creativity", "0")),
                              r"rater_a\.csv:3: row 3, column creativity: must be one of 1, 2, 3, 4, 5"),
    "score not an integer": (lambda rows: as_text(set_field(rows, 4, "informativeness", "4.5")),
                             r"rater_a\.csv:4: row 4, column informativeness: .* got '4\.5'"),
    "error flag off its scale": (lambda rows: as_text(set_field(rows, 2, "repetition", "2")),
                                 r"rater_a\.csv:2: row 2, column repetition: must be one of 0, 1 or empty, got '2'"),
    "row with a field missing": (lambda rows: as_text([*rows[:2], rows[2][:-1], *rows[3:]]),
                                 r"rater_a\.csv:3: row 3: 13 fields, but the header has 14 columns"),
    "row with a field too many": (lambda rows: as_text([*rows[:3], rows[3] + ["x"], *rows[4:]]),
                                  r"rater_a\.csv:4: row 4: 15 fields, but the header has 14 columns"),
    "item rated twice": (lambda rows: as_text(set_field(rows, 4, "item", rows[1][0])),
                         r"rater_a\.csv:4: row 4, column item: 'i00synth' is rated twice by 'rater_a' "
                         r"\(first in row 2\)"),
    "item not on the sheet": (lambda rows: as_text(set_field(rows, 3, "item", "i99bogus")),
                              r"rater_a\.csv:3: row 3, column item: unknown item 'i99bogus': not on the rating sheet"),
    "item named by its run (unblinded)": (
        lambda rows: as_text(set_field(rows, 2, "item", "debian-products/gpt2-tiny/full/seed1/ex0")),
        r"rater_a\.csv:2: row 2, column item: unknown item 'debian-products/gpt2-tiny/full/seed1/ex0'"),
    "item code left empty": (lambda rows: as_text(set_field(rows, 5, "item", "")),
                             r"rater_a\.csv:5: row 5, column item: no item code"),
    "row and line told apart": (  # a quoted comment over two lines: the spreadsheet's row 3 is the file's line 4
        lambda rows: as_text(set_field(set_field(rows, 2, "comment", '"long\nremark"'), 3, "readability", "9")),
        r"rater_a\.csv:4: row 3, column readability: .* got '9'"),
    "not UTF-8": (lambda rows: as_text(set_field(rows, 2, "comment", "caf\N{LATIN SMALL LETTER E WITH ACUTE}"))
                  .encode("latin-1"),
                  r"rater_a\.csv: not UTF-8 text .* save the sheet as CSV UTF-8"),
}


def run_script(name, **snakemake):
    """A workflow script as Snakemake runs it (its `snakemake` object faked), in this process."""
    runpy.run_path(str(SCRIPTS / name), init_globals={"snakemake": SimpleNamespace(log=[], **snakemake)},
                   run_name="__main__")


def ratings_outputs(directory):
    return {name: str(directory / f"{name}.csv") for name in ("table2", "agreement", "errors", "ratings")}


@pytest.mark.parametrize("case", sorted(BAD_SHEETS))
def test_a_bad_filled_sheet_is_refused_naming_where_and_nothing_is_written(tmp_path, case):
    change, message = BAD_SHEETS[case]
    ratings = tmp_path / "ratings"
    ratings.mkdir()
    content = sheet_with(change)
    path = ratings / "rater_a.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    for other in ("rater_b.csv", "rater_c.csv"):  # good sheets beside it
        (ratings / other).write_bytes((FIXTURES / "ratings" / other).read_bytes())
    known = {row["item"] for row in fixture_key()}
    with pytest.raises(human_eval.RatingSheetError, match=message):
        human_eval.read_ratings(path, known)
    out = tmp_path / "out"
    with pytest.raises(human_eval.RatingSheetError, match=message):  # the job: fails, writes nothing
        run_script("human_ratings.py", input=SimpleNamespace(key=str(FIXTURES / "blinding_key.csv"),
                                                             ratings=sorted(map(str, ratings.glob("*.csv")))),
                   output=ratings_outputs(out))
    assert not out.exists() or not any(out.iterdir())


def test_a_rater_with_two_sheets_is_refused(tmp_path):
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "rater_a.csv").write_bytes((FIXTURES / "ratings" / "rater_a.csv").read_bytes())
    known = {row["item"] for row in fixture_key()}
    with pytest.raises(human_eval.RatingSheetError, match=r"second/rater_a\.csv: rater 'rater_a' has a second sheet "
                                                          r"\(also .*first/rater_a\.csv\)"):
        human_eval.read_all_ratings([tmp_path / "first" / "rater_a.csv", tmp_path / "second" / "rater_a.csv"], known)


def test_a_sheet_saved_with_a_byte_order_mark_and_multi_line_comments_reads_as_the_plain_one(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark; comments may hold line breaks (quoted)."""
    known = {row["item"] for row in fixture_key()}
    plain = human_eval.read_ratings(FIXTURES / "ratings" / "rater_a.csv", known)
    path = tmp_path / "rater_a.csv"
    rows = set_field(fixture_sheet(), 2, "comment", '"two\nlines, and a comma"')
    path.write_bytes(b"\xef\xbb\xbf" + as_text(rows).encode("utf-8"))
    assert human_eval.read_ratings(path, known) == plain and len(plain) == 8 * 10

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


def test_the_blinding_secret_is_made_once_private_and_reused(tmp_path):
    path = human_eval.secret_path(tmp_path / "results" / "human_eval" / "blinding_key.csv")
    assert path == tmp_path / "results" / "human_eval" / "blinding_secret"
    previous = os.umask(0o022)  # the usual umask: files would be world-readable
    try:
        secret = human_eval.blinding_secret(path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(secret) == 64 and int(secret, 16) >= 0
    assert human_eval.blinding_secret(path) == secret  # a rerun keeps it
    assert human_eval.blinding_secret(tmp_path / "other") != secret  # another study gets its own
    assert sorted(p.name for p in path.parent.iterdir()) == ["blinding_secret"]  # no temporary file left
    path.chmod(0o644)
    with pytest.raises(human_eval.BlindingSecretError, match=r"blinding_secret: the blinding secret is open to other "
                                                             r"users \(mode 0644, expected 0600\)"):
        human_eval.blinding_secret(path)
    path.chmod(0o600)
    path.write_text("demo:0\n")
    with pytest.raises(human_eval.BlindingSecretError, match=r"blinding_secret: a blinding secret must be 64 lowercase"):
        human_eval.blinding_secret(path)
    with pytest.raises(human_eval.BlindingSecretError, match="64 lowercase hex digits"):
        human_eval.build_sheet([], 3, seed=0, secret="demo:0")  # the old, config-derived secret


def generation_runs(directory):
    """Two methods x two seeds of one dataset and model, ten test outputs each (the runs' identities as the workflow
    gives them to rating_sheet.py)."""
    runs = []
    for method, rank in (("full", ""), ("lora", "8")):
        for seed in (1, 2):
            run_dir = directory / f"{method}-seed{seed}"
            io.write_jsonl(run_dir / "generations.jsonl",
                           [{"id": f"e{i}", "input": f"input {i}", "reference": "r", "prediction": f"output {i}"}
                            for i in range(10)])
            runs.append({"dataset": "d", "model": "m", "method": method, "rank": rank, "seed": seed,
                         "directory": str(run_dir)})
    return runs


def make_sheet(root, runs, study):
    results = root / "results" / study["study"] / "human_eval"
    run_script("rating_sheet.py", params=SimpleNamespace(runs=runs, settings=human_eval.settings(study)),
               output=SimpleNamespace(sheet=str(root / "reports" / "rating_sheet.csv"),
                                      key=str(results / "blinding_key.csv")),
               wildcards=SimpleNamespace(study=study["study"]))
    return root / "reports" / "rating_sheet.csv", results / "blinding_key.csv", results / "blinding_secret"


def config_strings(study):
    """Every string a rater holding the study config could try as the secret."""
    scalars = []

    def walk(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                scalars.append(str(key))
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)
        else:
            scalars.append(str(value))

    walk(study)
    settings = human_eval.settings(study)
    text = json.dumps(study, sort_keys=True)
    return {*scalars, "", f"{study['study']}:{settings['seed']}", f"{study['study']}:{settings['seed']}:"
            f"{settings['examples_per_cell']}", text, hashlib.sha256(text.encode()).hexdigest()}


def test_codes_cannot_be_recomputed_from_the_config_and_the_key_still_unblinds(tmp_path):
    """Sheet out (through rating_sheet.py), codes stable on a rerun, none recomputable from anything in the config
    (old derivation or the new one keyed with a config string), then filled sheets in (human_ratings.py): Table 2
    has each method's own scores."""
    study = {"study": "blind", "title": "t", "seeds": [1, 2], "human_evaluation": {"examples_per_cell": 4, "seed": 7}}
    runs = generation_runs(tmp_path / "runs")
    sheet_path, key_path, secret_path = make_sheet(tmp_path, runs, study)
    sheet_bytes, key_bytes = sheet_path.read_bytes(), key_path.read_bytes()
    secret = secret_path.read_text().strip()
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert secret.encode() not in sheet_bytes + key_bytes and secret not in json.dumps(study)
    with open(key_path, newline="") as handle:
        key = list(csv.DictReader(handle))
    with open(sheet_path, newline="") as handle:
        sheet = list(csv.DictReader(handle))
    assert len(sheet) == len(key) == 8 and {r["item"] for r in sheet} == {r["item"] for r in key}

    # A rerun (Snakemake deletes a job's outputs first) reuses the secret: the same sheet, the same codes.
    sheet_path.unlink()
    key_path.unlink()
    make_sheet(tmp_path, runs, study)
    assert (sheet_path.read_bytes(), key_path.read_bytes()) == (sheet_bytes, key_bytes)
    assert secret_path.read_text().strip() == secret

    # Nothing in the config recomputes a code, by the old derivation or the new.
    codes = {row["item"] for row in sheet}
    guesses = set()
    for candidate in config_strings(study):
        for row in key:
            run_key = f"{row['dataset']}/{row['model']}/{row['method']}/{row['rank']}/seed{row['seed']}"
            old = "i" + hashlib.sha256(f"{candidate}|{run_key}|{row['example_id']}".encode()).hexdigest()[:10]
            guesses |= {old, human_eval.item_code(candidate, run_key, row["example_id"])}
    assert len(guesses) > 100 and not guesses & codes
    # ... whereas the secret does: the codes are the keyed ones, nothing else.
    assert {human_eval.item_code(secret, f"{r['dataset']}/{r['model']}/{r['method']}/{r['rank']}/seed{r['seed']}",
                                 r["example_id"]) for r in key} == codes
    # The draw and the order depend on the secret: with another one, the same seed gives another sheet.
    pairs = [(run, f"{run['directory']}/generations.jsonl") for run in runs]
    other, _ = human_eval.build_sheet(pairs, 4, seed=7, secret="0" * 64)
    assert [row["input"] for row in other] != [row["input"] for row in sheet]

    # Two raters fill the sheet: full outputs get 5 for readability, LoRA's 2 (rater a) and 4, 1 (rater b).
    method_of = {row["item"]: row["method"] for row in key}
    scores = {"rater_a": {"full": "5", "lora": "2"}, "rater_b": {"full": "4", "lora": "1"}}
    ratings_dir = tmp_path / "ratings"
    for rater, by_method in scores.items():
        filled = [{**row, "readability": by_method[method_of[row["item"]]]} for row in sheet]
        io.write_csv(ratings_dir / f"{rater}.csv", filled, list(human_eval.SHEET_COLUMNS))
    out = ratings_outputs(tmp_path / "out")
    run_script("human_ratings.py", input=SimpleNamespace(key=str(key_path),
                                                         ratings=sorted(map(str, ratings_dir.glob("*.csv")))),
               output=out)
    with open(out["table2"], newline="") as handle:
        table2 = {row["method"]: row for row in csv.DictReader(handle) if row["criterion"] == "readability"}
    assert float(table2["full"]["mean"]) == 4.5 and float(table2["lora"]["mean"]) == 1.5
    assert (table2["full"]["items"], table2["full"]["ratings"]) == ("4", "8")
