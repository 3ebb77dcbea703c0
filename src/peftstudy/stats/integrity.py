"""An integrity check of a results table: what copy-paste, a mislabelled run or an impossible value looks like in a
table of metrics, found before anyone cites it. It reads the tidy columns of metrics.csv (dataset, model, method,
rank, seed, metric, value), so it runs on a study's own table and on a published one encoded the same way; what
only the runs' artifacts show (empty or copied outputs, a parameter count against its formula) comes as
``RunEvidence`` (gathered by metrics.evidence, which may load a model; this module reads tables only).

Each check names what it looks for (CHECKS); a table with no finding lists every check as passed, so "no
finding" is a statement about all of them. Findings are flags for a person to look at, not verdicts: a rounded
published value can coincide by chance, which is why identity needs enough significant digits to be unlikely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from peftstudy.metrics import catalogue
from peftstudy.stats.direction import higher_is_better

CHECKS = {
    "identical_cells": "two different cells (method, rank) with bit-identical values of every run-dependent metric "
                       "they share",
    "identical_seeds": "two seeds of one cell with bit-identical values of every run-dependent metric",
    "out_of_range": "a value outside its metric's possible range (from the metric's unit)",
    "mixed_scales": "one metric on two scales in one table (fractions for some models, percentages for others)",
    "parameter_count": "a trainable-parameter count that disagrees with its method's formula, with full "
                       "fine-tuning's (every parameter), with linearity in the rank, or with the table's percentage",
    "seed_variance": "a cell whose seeds do not vary at all on a continuous metric, or vary implausibly much "
                     "against the other cells (robust z above 3.5: chi-square tail against their median variance)",
    "contradiction": "metrics that contradict each other: a text score above 0 with only empty outputs, perplexity "
                     "below 1, exact match above SQuAD F1, BERTScore F1 above the mean of its P and R, a class F1 "
                     "that is not the harmonic mean of its P and R",
    "copied_outputs": "a generation run whose non-empty outputs are mostly (>= 50 %) verbatim training references",
}
ROBUST_Z = 3.5
MIN_PEERS = 5  # cells with a positive sd needed before a robust z means anything
MIN_IDENTICAL_DIGITS = 6  # significant digits two vectors must share before identity is flagged
COPIED_SHARE = 0.5
# The range of each unit metrics.csv records (perplexity has its own check: below 1 is a contradiction).
UNIT_RANGES = {
    "0-100": (0.0, 100.0), "F1 x100": (0.0, 100.0), "%": (0.0, 100.0), "0-1": (0.0, 1.0),
    "-1..1": (-1.0, 1.0), "cosine": (-1.0, 1.0), "count": (0.0, math.inf), "bytes": (0.0, math.inf),
    "s": (0.0, math.inf), "ms": (0.0, math.inf), "kWh": (0.0, math.inf), "K": (0.0, math.inf),
    "nats": (0.0, math.inf), "nats/token": (0.0, math.inf), "tokens/s": (0.0, math.inf),
    "examples/s": (0.0, math.inf),
}
# "ratio" is a unit of shares and of returns alike: the shares are bounded by name.
SHARES = ("ttr", "mattr", "distinct_*", "novel_ngram_rate", "repetition_rate", "clusters_per_output")
# Values a run cannot share with another by chance: what the trained weights produce. Counts, sizes and times are
# the same for every seed of a cell by construction (or are measurements of the machine).
RUN_DEPENDENT_STAGES = {"score"}
RUN_DEPENDENT_EXTRA = {"best_validation_loss", "test_loss", "perplexity"}
DISCRETE = ("accuracy", "macro_f1", "exact_match", "invalid_label_rate", "precision[[]*", "recall[[]*", "f1[[]*",
            "semantic_clusters", "clusters_per_output", "squad_f1")  # few values on a test set (squad_f1: one-word
# answers score 0 or 1, as exact match does)
LOSSES = {"test_loss", "best_validation_loss"}
TEXT_SCORES = ("bleu4", "rouge1", "rouge2", "rouge_l", "rouge_lsum", "meteor")


@dataclass(frozen=True)
class Finding:
    check: str
    where: str
    detail: str


@dataclass(frozen=True)
class RunEvidence:
    """What the run's artifacts show: its cell and seed, the share of empty outputs, the share of non-empty outputs
    that are verbatim training references (generation datasets), and its trainable count against its formula."""

    dataset: str
    model: str
    method: str
    rank: str
    seed: str
    empty_share: float | None = None
    copied_share: float | None = None
    trainable: int | None = None
    expected_trainable: int | None = None
    formula: str | None = None


def run_dependent(metric: str) -> bool:
    if metric in RUN_DEPENDENT_EXTRA:
        return True
    known = catalogue.entry(metric)
    return known is None or known.stage in RUN_DEPENDENT_STAGES  # an unknown (published) metric counts


def _as_written(value) -> str:
    """A value as its table wrote it: a string read from a CSV keeps its trailing zeros ("0.90"); a float is its
    shortest repr."""
    return value.strip() if isinstance(value, str) else repr(float(value))


def significant_digits(value) -> int:
    """Digits a reported value carries (0.8653 -> 4, 62.11 -> 4, "0.90" -> 2, 100.0 -> 1): what makes a
    coincidence of two values unlikely."""
    text = _as_written(value).lstrip("-+")
    mantissa = text.split("e")[0].split("E")[0]
    digits = mantissa.replace(".", "").lstrip("0")
    if "." not in mantissa:
        digits = digits.rstrip("0")
    elif not isinstance(value, str):
        digits = digits.rstrip("0")
    return max(len(digits), 1)


def decimal_places(value) -> int | None:
    """Places after the decimal point as written ("0.90" -> 2); None for exponent notation or a computed float
    (full precision: no rounding to allow for)."""
    text = _as_written(value)
    if not isinstance(value, str) or "e" in text.lower():
        return None
    return len(text.split(".")[1]) if "." in text else 0


def _unit(metric: str) -> str | None:
    known = catalogue.entry(metric)
    return None if known is None else known.unit


def _cell(row) -> tuple[str, str, str, str]:
    return (row.dataset, row.model, row.method, row.rank)


def _name(cell, seed: str | None = None) -> str:
    dataset, model, method, rank = cell
    variant = f"{method}-r{rank}" if rank else method
    return f"{dataset}/{model}/{variant}" + (f" seed {seed}" if seed else "")


def normalise(table):
    """The tidy columns as strings (rank and seed may be empty: a published table has one run per cell)."""
    import pandas as pd

    missing = [c for c in ("dataset", "model", "method", "metric", "value") if c not in table.columns]
    if missing:
        raise ValueError(f"integrity: the table has no column {', '.join(missing)} (needs dataset, model, method, "
                         "rank, seed, metric, value)")
    table = table.copy()
    for column in ("rank", "seed"):
        table[column] = table[column] if column in table.columns else ""
    for column in ("dataset", "model", "method", "rank", "seed", "metric"):
        table[column] = table[column].fillna("").astype(str).str.replace(r"\.0$", "", regex=True)
    written = table["value"]
    table["value"] = pd.to_numeric(written, errors="coerce")
    table["digits"] = [significant_digits(w) if v == v else 0 for w, v in zip(written, table["value"])]
    table["places"] = [decimal_places(w) if v == v else None for w, v in zip(written, table["value"])]
    return table[table["value"].notna()]


def check_table(table, runs: Iterable[RunEvidence] = ()) -> list[Finding]:
    """Every finding of every check, in CHECKS order."""
    table = normalise(table)
    runs = list(runs)
    found: list[Finding] = []
    for check in (identical_cells, identical_seeds, out_of_range, mixed_scales, parameter_counts, seed_variance,
                  contradictions):
        found += check(table, runs)
    found += copied_outputs(runs)
    order = list(CHECKS)
    return sorted(found, key=lambda f: (order.index(f.check), f.where))


def _vectors(table, by_seed: bool) -> dict:
    """(cell[, seed]) -> {metric[, seed]: (value, significant digits)} over the run-dependent metrics."""
    vectors: dict = {}
    for row in table.itertuples(index=False):
        if not run_dependent(row.metric):
            continue
        key = (_cell(row), row.seed) if by_seed else _cell(row)
        slot = row.metric if by_seed else (row.metric, row.seed)
        vectors.setdefault(key, {})[slot] = (float(row.value), int(row.digits))
    return vectors


def _identical(a: Mapping, b: Mapping) -> list | None:
    shared = sorted(set(a) & set(b))
    if len(shared) < 2 or any(a[k][0] != b[k][0] for k in shared):
        return None
    if sum(min(a[k][1], b[k][1]) for k in shared) < MIN_IDENTICAL_DIGITS:
        return None  # too few digits: a coincidence of rounded values is likely
    return shared


def identical_cells(table, runs) -> list[Finding]:
    vectors, found = _vectors(table, by_seed=False), []
    cells = sorted(vectors)
    for i, a in enumerate(cells):
        for b in cells[i + 1:]:
            if a[0] != b[0] or a[1] != b[1]:
                continue  # other dataset or model: compared within one (dataset, model)
            shared = _identical(vectors[a], vectors[b])
            if shared:
                values = ", ".join(f"{k if isinstance(k, str) else k[0]}={vectors[a][k][0]:g}" for k in shared[:6])
                found.append(Finding("identical_cells", f"{_name(a)} = {_name(b)}",
                                     f"{len(shared)} identical values ({values}{', ...' if len(shared) > 6 else ''}):"
                                     " a copied row or the same run under two names"))
    return found


def identical_seeds(table, runs) -> list[Finding]:
    vectors, found = _vectors(table, by_seed=True), []
    keys = sorted(k for k in vectors if k[1])
    for i, (cell, seed) in enumerate(keys):
        for other_cell, other_seed in keys[i + 1:]:
            if other_cell != cell:
                continue
            shared = _identical(vectors[(cell, seed)], vectors[(cell, other_seed)])
            if shared:
                found.append(Finding("identical_seeds", f"{_name(cell)} seeds {seed} and {other_seed}",
                                     f"{len(shared)} identical run-dependent values: the seed did not reach the run"))
    return found


def _matches(metric: str, patterns) -> bool:
    """fnmatch patterns, as the metric catalogue writes them (``[[]`` is a literal ``[``)."""
    import fnmatch

    return any(fnmatch.fnmatchcase(metric, pattern) for pattern in patterns)


def value_range(metric: str) -> tuple[float, float] | None:
    if _matches(metric, SHARES):
        return (0.0, 1.0)
    return UNIT_RANGES.get(_unit(metric) or "")


def out_of_range(table, runs) -> list[Finding]:
    found = []
    for row in table.itertuples(index=False):
        bounds = value_range(row.metric)
        # float32 rounding (embeddings are float32: a cosine of identical outputs comes out 1.0000001)
        slack = 1e-6 * max(1.0, *(abs(b) for b in bounds if math.isfinite(b))) if bounds else 0.0
        if bounds and not bounds[0] - slack <= row.value <= bounds[1] + slack:
            found.append(Finding("out_of_range", f"{_name(_cell(row), row.seed)} {row.metric}",
                                 f"{row.value:g} outside [{bounds[0]:g}, {bounds[1]:g}] ({_unit(row.metric)})"))
    return found


def mixed_scales(table, runs) -> list[Finding]:
    """A 0-100 metric whose values are fractions (all <= 1) for some models and percentages for others."""
    found = []
    for (dataset, metric), rows in table.groupby(["dataset", "metric"]):
        if UNIT_RANGES.get(_unit(metric) or "") != (0.0, 100.0):
            continue
        by_model = rows.groupby("model")["value"]
        low = {m: v for m, v in by_model if v.max() <= 1.0 and v.max() > 0}
        high = {m: v for m, v in by_model if v.min() > 1.0}
        if low and high and min(v.median() for v in high.values()) >= 20 * max(v.median() for v in low.values()):
            found.append(Finding("mixed_scales", f"{dataset} {metric}",
                                 f"fractions for {', '.join(sorted(low))} ({min(v.min() for v in low.values()):g}-"
                                 f"{max(v.max() for v in low.values()):g}), percentages for {', '.join(sorted(high))} "
                                 f"({min(v.min() for v in high.values()):g}-{max(v.max() for v in high.values()):g})"))
    return found


def parameter_counts(table, runs: Sequence[RunEvidence]) -> list[Finding]:
    found = []
    for run in runs:
        if run.expected_trainable is not None and run.trainable != run.expected_trainable:
            found.append(Finding("parameter_count", _name((run.dataset, run.model, run.method, run.rank), run.seed),
                                 f"{run.trainable} trainable parameters recorded, {run.expected_trainable} by "
                                 f"{run.formula or 'its formula'}"))
    counts = table[table["metric"].isin(["trainable_parameters", "total_parameters", "trainable_percent"])]
    if counts.empty:
        return found
    wide = counts.pivot_table(index=["dataset", "model", "method", "rank", "seed"], columns="metric", values="value",
                              aggfunc="first").reset_index()
    for row in wide.itertuples(index=False):
        where = _name((row.dataset, row.model, row.method, row.rank), row.seed)
        trainable, total = getattr(row, "trainable_parameters", None), getattr(row, "total_parameters", None)
        percent = getattr(row, "trainable_percent", None)
        if _present(trainable, total) and trainable > total:
            found.append(Finding("parameter_count", where, f"{trainable:g} trainable of {total:g} parameters"))
        if _present(trainable, total) and row.method in ("full", "sft") and trainable != total:
            found.append(Finding("parameter_count", where, f"full fine-tuning trains {trainable:g} of {total:g}"))
        if _present(trainable, total, percent) and total and not math.isclose(percent, 100 * trainable / total,
                                                                              rel_tol=1e-6, abs_tol=1e-9):
            found.append(Finding("parameter_count", where, f"trainable_percent {percent:g} but "
                                                           f"{trainable:g} / {total:g} = {100 * trainable / total:g} %"))
    # LoRA's count is r x (a sum over its target modules): per unit of rank it is one number across ranks.
    lora = wide[(wide["method"] == "lora") & (wide["rank"] != "")] if "trainable_parameters" in wide else wide[:0]
    for (dataset, model), rows in lora.groupby(["dataset", "model"]):
        per_rank = {float(r.trainable_parameters) / int(r.rank) for r in rows.itertuples(index=False)
                    if _present(r.trainable_parameters)}
        if len(per_rank) > 1:
            found.append(Finding("parameter_count", f"{dataset}/{model}/lora",
                                 "trainable parameters per unit of rank differ across ranks "
                                 f"({', '.join(f'{v:g}' for v in sorted(per_rank))}): not r x a fixed sum"))
    return found


def _present(*values) -> bool:
    return all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)


def outcome(metric: str) -> bool:
    """A metric the statistics compare (it has a direction) or a loss: where seed variance is read."""
    if metric in LOSSES:
        return True
    return run_dependent(metric) and higher_is_better(metric) is not None


def seed_variance(table, runs) -> list[Finding]:

    found = []
    seeded = table[table["seed"] != ""]
    for (dataset, metric), rows in seeded.groupby(["dataset", "metric"]):
        if not outcome(metric):
            continue
        variances, sizes = {}, {}
        for cell, values in rows.groupby(["dataset", "model", "method", "rank"])["value"]:
            if len(values) >= 2:
                variances[cell], sizes[cell] = float(values.var(ddof=1)), len(values)
        for cell, variance in sorted(variances.items()):
            if variance == 0 and not _matches(metric, DISCRETE):
                found.append(Finding("seed_variance", f"{_name(cell)} {metric}",
                                     f"all {sizes[cell]} seeds give the same value"))
        positive = {cell: v for cell, v in variances.items() if v > 0}
        if len(positive) < MIN_PEERS:
            continue
        for cell, variance in sorted(positive.items()):
            z, scale = _variance_z(variance, sizes[cell], [(v, sizes[c]) for c, v in positive.items() if c != cell])
            if z > ROBUST_Z:
                found.append(Finding("seed_variance", f"{_name(cell)} {metric}",
                                     f"seed sd {math.sqrt(variance):.4g} against {math.sqrt(scale):.4g} in the other "
                                     f"{len(positive) - 1} cells (robust z {z:.1f})"))
    return found


def _variance_z(variance: float, n: int, peers: Sequence[tuple[float, int]]) -> tuple[float, float]:
    """How implausible a cell's seed variance is against its peers', as a z score.

    The peers' common variance is estimated robustly (the median of their variances over the median of their
    chi-square sampling distribution, so one wild peer does not move it); under it the cell's (n - 1) s^2 / sigma^2
    is chi-square with n - 1 degrees of freedom. Its upper tail probability becomes the z of a normal tail: with
    three seeds a sample sd varies several-fold by chance, which a z of log sd alone would flag."""
    import numpy as np
    from scipy import stats

    scaled = [v / (stats.chi2.median(k - 1) / (k - 1)) for v, k in peers]
    sigma2 = float(np.median(scaled))
    tail = stats.chi2.sf((n - 1) * variance / sigma2, n - 1)
    return float(stats.norm.isf(max(tail, 1e-300))), sigma2


def _tolerance(*places: int | None) -> float:
    """One unit in the last written place of the least precise value (two rounded values enter each relation, each
    off by up to half a unit); a computed value (None, or ten places and more) has only float rounding."""
    written = [p for p in places if p is not None and p < 10]
    return 10.0 ** -min(written) if written else 1e-9 * 100  # metrics.csv's largest scale is 0-100


def contradictions(table, runs: Sequence[RunEvidence]) -> list[Finding]:
    found = []
    for run in runs:
        if run.empty_share == 1.0:
            scores = table[(table["dataset"] == run.dataset) & (table["model"] == run.model)
                           & (table["method"] == run.method) & (table["rank"] == run.rank)
                           & (table["seed"] == run.seed) & table["metric"].isin(TEXT_SCORES) & (table["value"] > 0)]
            for row in scores.itertuples(index=False):
                found.append(Finding("contradiction", f"{_name(_cell(row), row.seed)} {row.metric}",
                                     f"{row.value:g} with every output empty"))
    for key, rows in table.groupby(["dataset", "model", "method", "rank", "seed"]):
        values = dict(zip(rows["metric"], rows["value"]))
        places = dict(zip(rows["metric"], rows["places"]))
        where = _name(key[:4], key[4])
        if "perplexity" in values and values["perplexity"] < 1:
            found.append(Finding("contradiction", f"{where} perplexity",
                                 f"{values['perplexity']:g} < 1: more than probability 1 per token"))
        if _present(values.get("exact_match"), values.get("squad_f1")) \
                and values["exact_match"] > values["squad_f1"] + _tolerance(places["exact_match"], places["squad_f1"]):
            found.append(Finding("contradiction", f"{where} exact_match",
                                 f"exact match {values['exact_match']:g} above SQuAD F1 {values['squad_f1']:g} (an "
                                 "exact match scores F1 = 1, so the mean F1 cannot be lower)"))
        p, r, f1 = (values.get(f"bertscore_{k}") for k in ("precision", "recall", "f1"))
        if _present(p, r, f1) and f1 > (p + r) / 2 + _tolerance(*(places[f"bertscore_{k}"] for k in
                                                                   ("precision", "recall", "f1"))):
            found.append(Finding("contradiction", f"{where} bertscore_f1",
                                 f"F1 {f1:g} above the mean of P {p:g} and R {r:g} ({(p + r) / 2:g}): each example's "
                                 "F1 is at most its (P + R) / 2, so the means cannot be; mislabelled columns?"))
        for metric, value in sorted(values.items()):
            if not metric.startswith("f1["):
                continue
            label = metric[3:]
            p, r = values.get(f"precision[{label}"), values.get(f"recall[{label}")
            if not _present(p, r) or p + r == 0:
                continue
            harmonic = 2 * p * r / (p + r)
            if abs(value - harmonic) > _tolerance(places[metric], places[f"precision[{label}"],
                                                  places[f"recall[{label}"]):
                found.append(Finding("contradiction", f"{where} {metric}",
                                     f"{value:g} but the harmonic mean of P {p:g} and R {r:g} is {harmonic:.4g}"))
    return found


def copied_outputs(runs: Sequence[RunEvidence]) -> list[Finding]:
    return [Finding("copied_outputs", _name((r.dataset, r.model, r.method, r.rank), r.seed),
                    f"{100 * r.copied_share:.0f} % of its non-empty outputs are training references word for word")
            for r in runs if r.copied_share is not None and r.copied_share >= COPIED_SHARE]


SUMMARY_COLUMNS = ("check", "what", "findings", "where", "detail")


def summary_rows(findings: Sequence[Finding]) -> list[dict]:
    """One row per check (what it looks for, how many findings), then one per finding: the table's CSV."""
    rows = [{"check": check, "what": what, "findings": sum(f.check == check for f in findings), "where": "",
             "detail": ""} for check, what in CHECKS.items()]
    rows += [{"check": f.check, "what": "", "findings": "", "where": f.where, "detail": f.detail} for f in findings]
    return rows
