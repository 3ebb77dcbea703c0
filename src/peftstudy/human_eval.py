"""Human evaluation (seed 000, sections 5.7.1-2): blinded rating sheets out, filled sheets in, Table 2.

Export: for every evaluated cell (dataset x model x method variant) ``examples_per_cell`` test examples
are drawn with a seeded RNG from the cell's first seed; all items are shuffled together and named by
stable codes derived from a keyed hash, so raters see neither the method nor the grouping. The sheet
has one empty column per criterion (1-5) and per error category (0/1). The key that un-blinds it is
written apart from the sheet, under results/.

Ingest: each rater returns the sheet as ``<ratings_dir>/<rater>.csv``. Every value is checked (the file
and line are named on error), the items are un-blinded with the key, and per cell and criterion the mean
and sample sd over items (each item's score averaged over its raters) are computed, with Krippendorff's
alpha (ordinal, scores 1-5) per criterion over all items and raters, and the frequency of each error
category per dataset and method (share of item x rater judgements that flag it).
"""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from peftstudy import io
from peftstudy.data.prepare import dataset_task

CRITERIA = ("factual_accuracy", "stylistic_consistency", "readability", "informativeness", "creativity")
ERROR_CATEGORIES = ("factual_inaccuracy", "stylistic_inconsistency", "repetition", "incompleteness", "grammar")
KEY_COLUMNS = ("item", "dataset", "model", "method", "rank", "seed", "example_id")
CELL = ("dataset", "model", "method", "rank")
DEFAULTS = {"examples_per_cell": 20, "seed": 0}


def settings(study: Mapping) -> dict:
    """The study's human_evaluation section with defaults (ratings under human_eval/<study>/ratings)."""
    merged = {**DEFAULTS, **study.get("human_evaluation", {})}
    merged.setdefault("ratings_dir", f"human_eval/{study['study']}/ratings")
    return merged


def evaluated_runs(study: Mapping, runs: Iterable) -> list[dict]:
    """The runs (Run objects of the study) whose outputs go to the raters, as the rating sheet's run identities: every
    run of the selected datasets (by default, those whose outputs are free text) and models (by default, all)."""
    chosen = settings(study)
    text_datasets = [name for name, spec in study["datasets"].items() if dataset_task(spec) == "generation"]
    selected = [run for run in runs
                if run.dataset in chosen.get("datasets", text_datasets) and run.model in chosen.get("models", [run.model])]
    return [{"dataset": run.dataset, "model": run.model, "method": run.method,
             "rank": "" if run.rank is None else str(run.rank), "seed": run.seed, "directory": run.directory}
            for run in selected]


def item_code(secret: str, run_key: str, example_id: str) -> str:
    return "i" + hashlib.sha256(f"{secret}|{run_key}|{example_id}".encode()).hexdigest()[:10]


def build_sheet(runs: Sequence[tuple[Mapping, str | Path]], examples_per_cell: int, seed: int, secret: str):
    """(sheet rows, key rows) from (run identity, generations.jsonl) pairs; one run per cell is used."""
    rng = random.Random(seed)
    chosen: dict[tuple, tuple[Mapping, str | Path]] = {}
    for run, path in sorted(runs, key=lambda item: tuple(str(item[0][k]) for k in (*CELL, "seed"))):
        chosen.setdefault(tuple(str(run[k]) for k in CELL), (run, path))  # the cell's first seed
    sheet, key = [], []
    for cell, (run, path) in sorted(chosen.items()):
        rows = io.read_jsonl(path)
        picked = rng.sample(rows, min(examples_per_cell, len(rows)))
        run_key = "/".join(cell) + f"/seed{run['seed']}"
        for row in picked:
            code = item_code(secret, run_key, row["id"])
            sheet.append({"item": code, "input": row["input"], "output": row["prediction"],
                          **dict.fromkeys(CRITERIA, ""), **dict.fromkeys(ERROR_CATEGORIES, ""), "comment": ""})
            key.append({"item": code, **{k: run[k] for k in CELL}, "seed": run["seed"], "example_id": row["id"]})
    rng.shuffle(sheet)
    return sheet, sorted(key, key=lambda r: r["item"])


SHEET_COLUMNS = ("item", "input", "output", *CRITERIA, *ERROR_CATEGORIES, "comment")


class RatingSheetError(ValueError):
    """A filled sheet that cannot be used; the message names the file and line."""


def read_ratings(path: str | Path, known_items: set[str]) -> list[dict]:
    """One rater's filled sheet -> [{rater, item, criterion or error, value}], every value checked."""
    path = Path(path)
    rater = path.stem
    out = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("item", *CRITERIA, *ERROR_CATEGORIES) if c not in (reader.fieldnames or [])]
        if missing:
            raise RatingSheetError(f"{path}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            item = row["item"].strip()
            if item not in known_items:
                raise RatingSheetError(f"{path}:{line}: unknown item {item!r} (not in the blinding key)")
            for name in CRITERIA:
                value = row[name].strip()
                if value == "":
                    continue
                if value not in {"1", "2", "3", "4", "5"}:
                    raise RatingSheetError(f"{path}:{line}: {name} must be an integer from 1 to 5 or empty, got {value!r}")
                out.append({"rater": rater, "item": item, "kind": "criterion", "name": name, "value": int(value)})
            for name in ERROR_CATEGORIES:
                value = row[name].strip()
                if value == "":
                    continue
                if value not in {"0", "1"}:
                    raise RatingSheetError(f"{path}:{line}: {name} must be 0 or 1 or empty, got {value!r}")
                out.append({"rater": rater, "item": item, "kind": "error", "name": name, "value": int(value)})
    return out


def krippendorff_alpha(ratings: Iterable[Mapping], criterion: str, level: str = "ordinal") -> tuple[float, int, int]:
    """(alpha, raters, items) for one criterion over every item rated by at least one rater."""
    import krippendorff
    import numpy as np

    rows = [r for r in ratings if r["kind"] == "criterion" and r["name"] == criterion]
    raters = sorted({r["rater"] for r in rows})
    items = sorted({r["item"] for r in rows})
    if len(raters) < 2 or not items:
        return float("nan"), len(raters), len(items)
    matrix = np.full((len(raters), len(items)), np.nan)
    for r in rows:
        matrix[raters.index(r["rater"]), items.index(r["item"])] = r["value"]
    if np.count_nonzero(~np.isnan(matrix).all(axis=0) & (np.sum(~np.isnan(matrix), axis=0) >= 2)) == 0:
        return float("nan"), len(raters), len(items)  # no item has two ratings: alpha is undefined
    alpha = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level, value_domain=[1, 2, 3, 4, 5])
    return float(alpha), len(raters), len(items)


def summarise_ratings(ratings: Sequence[Mapping], key_rows: Sequence[Mapping]) -> dict:
    """Un-blind and summarise: {'ratings': tidy rows, 'table2': per cell x criterion,
    'agreement': per criterion, 'errors': per dataset x method x category}."""
    import pandas as pd

    key = {row["item"]: row for row in key_rows}
    tidy = [{**{k: key[r["item"]][k] for k in CELL}, **r} for r in ratings]
    frame = pd.DataFrame(tidy, columns=[*CELL, "rater", "item", "kind", "name", "value"])
    criteria = frame[frame["kind"] == "criterion"]
    per_item = criteria.groupby([*CELL, "name", "item"], dropna=False)["value"].mean().reset_index()
    table2 = (per_item.groupby([*CELL, "name"], dropna=False)["value"]
              .agg(items="count", mean="mean", std=lambda s: s.std(ddof=1)).reset_index()
              .rename(columns={"name": "criterion"}))
    counts = criteria.groupby([*CELL, "name"], dropna=False)["value"].count().rename("ratings").reset_index()
    table2 = table2.merge(counts.rename(columns={"name": "criterion"}), on=[*CELL, "criterion"], how="left")
    agreement = []
    for criterion in CRITERIA:
        alpha, raters, items = krippendorff_alpha(ratings, criterion)
        agreement.append({"criterion": criterion, "krippendorff_alpha_ordinal": alpha, "raters": raters, "items": items})
    errors = frame[frame["kind"] == "error"]
    error_table = (errors.groupby(["dataset", "method", "rank", "name"], dropna=False)["value"]
                   .agg(judgements="count", frequency="mean").reset_index().rename(columns={"name": "category"}))
    return {"ratings": frame, "table2": table2, "agreement": pd.DataFrame(agreement), "errors": error_table}
