"""Each fine-tuned cell against the trivial baselines, example by example: did it learn anything?

A baseline is one deterministic prediction per test example (no seeds), so the uncertainty to compare against is
the test set's: which examples were drawn. Every metric that is a mean over examples (ROUGE, METEOR, BERTScore,
accuracy, exact match, SQuAD F1: the records' ``example_scores``) is compared on the same examples:

* the cell's per-example score is its seeds' mean on that example, so the cell's mean is Table 1's mean;
* each side gets a percentile bootstrap interval of its mean over the test examples, and the paired difference
  (cell - baseline, examples resampled jointly) gets one too (scipy.stats.bootstrap, a fresh generator seeded
  with ``seed`` for every interval, so an interval does not depend on the others);
* the verdict is ``better`` when the two intervals do not overlap and the cell's is on the better side,
  ``worse`` when they do not overlap the other way, ``not separated`` otherwise: the non-overlap rule is
  conservative (stricter than the paired interval excluding 0, which the table reports beside it).

Corpus-level metrics (BLEU-4) have no per-example scores and are not compared here.

A cell *learned the task* when, on at least one of its task's GATE_METRICS, it is ``better`` than every gating
baseline of its dataset (peftstudy.baselines.gates: not the nearest neighbour's reference, a retrieval system that
is reported as it comes out). The claims read this: a quality claim about cells that did not learn is not testable.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from peftstudy import io
from peftstudy.baselines import BASELINES, gates
from peftstudy.metrics import catalogue
from peftstudy.stats.degenerate import is_constant, why_undefined
from peftstudy.stats.direction import higher_is_better
from peftstudy.study.matrix import Run

# The metrics a cell must beat the gating baselines on (any one of them) to count as having learnt its task.
GATE_METRICS = {"generation": ("rouge_l", "bertscore_f1"), "classification": ("accuracy",),
                "extractive_qa": ("exact_match", "squad_f1")}
# The metrics that measure a task's quality (fnmatch patterns): a claim about them needs cells that learned.
QUALITY_METRICS = ("bleu4", "rouge*", "meteor", "bertscore_*", "accuracy", "macro_f1", "exact_match", "squad_f1",
                   "precision[[]*", "recall[[]*", "f1[[]*")
BETTER, WORSE, NOT_SEPARATED = "better", "worse", "not separated"
CELL = ["dataset", "model", "method", "rank"]
COLUMNS = [*CELL, "metric", "baseline", "baseline_kind", "gate", "seeds", "examples", "confidence",
           "cell_mean", "cell_ci_low", "cell_ci_high", "baseline_mean", "baseline_ci_low", "baseline_ci_high",
           "difference", "difference_ci_low", "difference_ci_high", "verdict", "note"]
LEARNED_COLUMNS = [*CELL, "task", "learned", "reason"]


def gating(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The rows against a gating baseline (the `gate` column read back from CSV is text)."""
    return comparisons[comparisons["gate"].astype(str) == "True"]


def is_quality_metric(metric: str) -> bool:
    return any(fnmatch.fnmatchcase(metric, pattern) for pattern in QUALITY_METRICS)


def mean_interval(values: Sequence[float], confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over examples: NaN below 2 examples (one example says nothing
    about which examples were drawn), the value itself when all are equal (every resample has that mean)."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if why_undefined("bootstrap_ci", values):
        return float("nan"), float("nan")
    if is_constant(values):
        return float(values.mean()), float(values.mean())
    result = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                       vectorized=True, random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def cell_example_scores(run_records: Mapping[str, Mapping]) -> dict[tuple, dict]:
    """(dataset, model, method, rank) -> {ids, seeds, scores: metric -> per-example mean over the cell's seeds}, from
    run metrics.json records keyed by their path. Every seed of a cell must have scored the same examples. A run
    that diverged (on_divergence: record) has no scores: it is left out, as from metrics.csv."""
    grouped: dict[tuple, list] = {}
    for path, record in run_records.items():
        if "diverged" in record:
            continue
        if "example_scores" not in record:
            raise ValueError(f"{path}: no example_scores (scored before per-example scores were recorded: rescore it)")
        identity = record["run"]
        run = Run(identity["study"], identity["dataset"], identity["model"], identity["variant"], int(identity["seed"]))
        # Rank as the stats tables keep it (stats.tables): text, '' for a rank-less method.
        rank = "" if run.rank is None else str(run.rank)
        grouped.setdefault((run.dataset, run.model, run.method, rank), []).append((path, run.seed, record))
    cells = {}
    for key, members in grouped.items():
        members.sort(key=lambda member: member[1])
        ids = members[0][2]["example_scores"]["ids"]
        for path, _, record in members[1:]:
            if record["example_scores"]["ids"] != ids:
                raise ValueError(f"{path}: scored other test examples than {members[0][0]} (seeds of one cell must"
                                 " score the same examples)")
        shared = set.intersection(*(set(record["example_scores"]["scores"]) for _, _, record in members))
        cells[key] = {"ids": ids, "seeds": len(members),
                      "scores": {metric: np.mean([record["example_scores"]["scores"][metric] for _, _, record in members],
                                                 axis=0) for metric in sorted(shared)}}
    return cells


def _verdict(higher: bool, cell: tuple[float, float], baseline: tuple[float, float]) -> str:
    if any(np.isnan(v) for v in (*cell, *baseline)):
        return NOT_SEPARATED
    above, below = cell[0] > baseline[1], cell[1] < baseline[0]
    if above or below:
        return BETTER if above == higher else WORSE
    return NOT_SEPARATED


def compare_with_baselines(cells: Mapping[tuple, Mapping], baseline_records: Mapping[str, Mapping], *,
                           confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (cell, metric, baseline of the cell's dataset) for every metric both have per-example scores
    of (COLUMNS). baseline_records: metrics.json of each baseline, keyed by its path
    (results/<study>/baselines/<dataset>/<name>/metrics.json: the dataset is the directory's parent's name)."""
    by_dataset: dict[str, list] = {}
    for path, record in baseline_records.items():
        if "example_scores" not in record:
            raise ValueError(f"{path}: no example_scores (scored before per-example scores were recorded: rescore it)")
        by_dataset.setdefault(Path(path).parent.parent.name, []).append((path, record))
    rows = []
    for (dataset, model, method, rank), cell in sorted(cells.items(), key=lambda item: _order(item[0])):
        for path, record in sorted(by_dataset.get(dataset, []), key=lambda item: item[1]["baseline"]["name"]):
            if record["example_scores"]["ids"] != cell["ids"]:
                raise ValueError(f"{path}: the baseline predicted other test examples than {dataset}/{model}/{method}"
                                 f"{f'-r{rank}' if rank else ''} was scored on")
            spec = record["baseline"]
            for metric in sorted(set(cell["scores"]) & set(record["example_scores"]["scores"])):
                ours, theirs = cell["scores"][metric], np.asarray(record["example_scores"]["scores"][metric], float)
                ours_ci = mean_interval(ours, confidence, resamples, seed)
                theirs_ci = mean_interval(theirs, confidence, resamples, seed)
                difference_ci = mean_interval(ours - theirs, confidence, resamples, seed)
                higher = higher_is_better(metric)
                rows.append({
                    "dataset": dataset, "model": model, "method": method, "rank": rank, "metric": metric,
                    "baseline": spec["name"], "baseline_kind": spec["kind"], "gate": gates(spec),
                    "seeds": cell["seeds"], "examples": len(ours), "confidence": confidence,
                    "cell_mean": float(np.mean(ours)), "cell_ci_low": ours_ci[0], "cell_ci_high": ours_ci[1],
                    "baseline_mean": float(np.mean(theirs)), "baseline_ci_low": theirs_ci[0],
                    "baseline_ci_high": theirs_ci[1], "difference": float(np.mean(ours - theirs)),
                    "difference_ci_low": difference_ci[0], "difference_ci_high": difference_ci[1],
                    "verdict": _verdict(True if higher is None else higher, ours_ci, theirs_ci),
                    "note": why_undefined("bootstrap_ci", ours),
                })
    return pd.DataFrame(rows, columns=COLUMNS)


def learned(comparisons: pd.DataFrame, tasks: Mapping[str, str]) -> pd.DataFrame:
    """Per cell: whether it learned its task (see the module docstring), and why, in words (LEARNED_COLUMNS).
    `tasks`: dataset -> task. Undefined (None) when its dataset has no gating baseline on a gate metric; not shown
    (False, with the `note`) when the intervals are undefined (fewer than 2 test examples)."""
    rows = []
    if comparisons.empty:
        return pd.DataFrame(rows, columns=LEARNED_COLUMNS)
    keys = comparisons[CELL].astype(str).agg("\x1f".join, axis=1)
    for _, group in comparisons.groupby(keys, sort=False):
        first = group.iloc[0]
        task = tasks[first["dataset"]]
        gated = gating(group)
        gated = gated[gated["metric"].isin(GATE_METRICS[task])]
        row = {key: first[key] for key in CELL} | {"task": task}
        if gated.empty:
            rows.append({**row, "learned": None, "reason": "undefined: no gating trivial baseline on "
                                                             + " or ".join(map(catalogue.heading, GATE_METRICS[task]))})
            continue
        notes = sorted({str(note) for note in gated.get("note", pd.Series(dtype=str)).dropna() if str(note)})
        if notes:  # no interval: the gate cannot be passed, and the reason is not 'worse than a baseline'
            rows.append({**row, "learned": False, "reason": "not shown: " + "; ".join(notes)})
            continue
        by_metric = dict(tuple(gated.groupby("metric", sort=True)))
        beaten = [metric for metric, on in by_metric.items() if (on["verdict"] == BETTER).all()]
        interval = f"{round(100 * float(first['confidence']))} % intervals over {int(first['examples'])} test examples"
        if beaten:
            names = " and ".join(_label(kind) for kind in dict.fromkeys(gated["baseline_kind"]))
            reason = f"better than {names} on {' and '.join(map(catalogue.heading, beaten))} ({interval})"
        else:  # on each metric, the baselines it is not better than
            reason = "; ".join(
                f"{catalogue.heading(metric)} not above "
                + " or ".join(_label(kind) for kind in dict.fromkeys(on[on["verdict"] != BETTER]["baseline_kind"]))
                for metric, on in by_metric.items()) + f" ({interval})"
        rows.append({**row, "learned": bool(beaten), "reason": reason})
    return pd.DataFrame(rows, columns=LEARNED_COLUMNS)


def _order(cell: tuple) -> tuple:
    dataset, model, method, rank = cell
    return dataset, model, method, rank != "", int(rank) if rank.isdigit() else 0, rank


def _label(kind: str) -> str:
    return BASELINES[kind].label.lower() if kind in BASELINES else kind


def compare_files(run_paths: Sequence, baseline_paths: Sequence, out_path, learned_path, *, confidence: float,
                  resamples: int, seed: int) -> pd.DataFrame:
    """The workflow's unit: read every run's and baseline's metrics.json, write both tables."""
    runs = {str(path): io.read_json(path) for path in run_paths}
    baselines = {str(path): io.read_json(path) for path in baseline_paths}
    table = compare_with_baselines(cell_example_scores(runs), baselines, confidence=confidence, resamples=resamples,
                                   seed=seed)
    tasks = {Path(path).parent.parent.name: record["task"] for path, record in baselines.items()}
    io.write_csv_frame(out_path, table)
    io.write_csv_frame(learned_path, learned(table, tasks))
    return table
