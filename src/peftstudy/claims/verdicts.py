"""The claims of the reproduced papers, put beside what this study measured: a CI and a verdict per check.

A study config lists its claims under ``claims:`` (schema: ``peftstudy/study/study.schema.yaml``; spec: study.claims). Each
claim has an id, its text, its source ("seed 000 §5.1"), the paper's figure as text (``reported``) and one
or more machine-checkable ``checks`` that name cells by the study's own names (dataset, model, method,
rank). Nothing here is typed in: every measured number, interval and verdict is computed from the
tidy results (metrics.csv, stats/summary.csv, stats/rank_study.csv).

Check kinds (``metric`` is a metric name of metrics.csv; a cell is {dataset, model, method, rank}, its
dataset and model defaulting to the check's):

* ``ratio``            mean(metric | a) / mean(metric | b)
* ``difference``       mean(metric | a) - mean(metric | b)          (``scale`` multiplies the values first)
* ``relative_change``  (mean(a) - mean(b)) / mean(b)                (e.g. -0.75..-0.65: 65-75 % less)
* ``value``            mean(metric | a)                            (``scale``: e.g. 1e-9 for bytes -> GB)
  each against ``expected: [low, high]``, or ``at_least: x`` and/or ``at_most: y``;
* ``best_rank`` / ``knee_rank``  the rank study's best / knee rank of (dataset, model, metric, method)
  against the claimed ``ranks``;
* ``ordering``         the means of ``cells`` on the metric are in the claimed order (``order:
  decreasing``, the first cell highest, or ``increasing``).

Intervals. Ratios, differences and relative changes get a percentile bootstrap over seeds
(scipy.stats.bootstrap, ``resamples`` resamples, a fresh generator seeded with ``seed`` for every check,
so a check's interval does not depend on the others): *paired* (seeds resampled jointly) when both cells
belong to the same dataset and model and have exactly the same seeds (the same data order and
initialisation, as in stats.tidy), *independent* (each cell's seeds resampled separately) otherwise; the
``interval`` column says which. A single value gets its cell's t interval of the mean (summary.csv). Every
verdict needs an interval: a cell with fewer than 2 measured seeds makes its check "not testable here".

Verdict rule (VERDICT_RULE, printed under the LaTeX table):

* numeric checks: *supported* when the CI overlaps the claimed interval (a bound is the half-line it
  names: the CI reaches the claimed side of it), *not supported* when the CI lies entirely outside it;
* ordering: every adjacent pair's difference is bootstrapped; *supported* when every pair's CI lies on
  the claimed side of 0, *not supported* when any pair's CI lies entirely on the wrong side, otherwise
  *not testable here* (inconclusive at this n);
* best rank: *supported* when a claimed rank is the best rank by the rank study's rule, or is chosen in
  at least MIN_CHOICE_FRACTION (5 %) of its bootstrap resamples; knee rank: *supported* when a claimed
  rank is the knee (the knee has no bootstrap); *not supported* otherwise, unless a claimed rank is not in
  the study's sweep (then not testable here);
* *not testable here*: a dataset, model, method or rank the study does not run, an excluded or not yet
  run cell, a metric that was not measured (NaN, e.g. energy on a CPU without RAPL), fewer than 2 seeds, a
  quality metric of a cell that did not learn its task (not better than the trivial baselines:
  stats.against_baselines; a best or knee rank: any rank of the sweep); the reason column names which. A number that was not measured is never filled in.

A claim is *supported* when all its checks are, *not supported* when any check is not, and *not testable
here* otherwise.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from peftstudy.claims.wording import (
    and_list,
    cell_label,
    describe_check,
    expected_text,
    format_number,
    interval_text,
    plain_text,
    rank_method,
)
from peftstudy.stats.against_baselines import is_quality_metric
from peftstudy.stats.describe import confidence_interval
from peftstudy.study.claims import (
    NUMERIC_KINDS,
    RANK_KINDS,
    TWO_CELL_KINDS,
    check_cells,
    expected_interval,
    rank_text,
    validate_claims,
)
from peftstudy.study.matrix import expand_runs

SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE = "supported", "not supported", "not testable here"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE)
MIN_CHOICE_FRACTION = 0.05

VERDICT_RULE = (
    "Verdicts are computed from the results. Numeric checks: supported when the CI of the measured quantity"
    " overlaps the claimed interval (for a bound, reaches its claimed side), not supported when the CI lies"
    " entirely outside it. Ordering: supported when the CI of every adjacent difference lies on the claimed"
    " side of 0, not supported when any lies entirely on the wrong side, else inconclusive (not testable here)."
    f" Best rank: supported when a claimed rank is the best rank or is chosen in at least"
    f" {MIN_CHOICE_FRACTION:.0%} of the rank study's bootstrap resamples; knee: supported when a claimed rank"
    " is the knee. Not testable here: the cell is not in this study, was not run or not measured, or has"
    " fewer than 2 seeds (no CI). A claim is supported when all its checks are, not supported when any is not."
)

COLUMNS = [
    "study", "claim_id", "claim_text", "source", "reported", "check", "kind", "metric", "description",
    "check_reported", "expected", "expected_low", "expected_high", "measured", "ci_low", "ci_high",
    "confidence", "n", "interval", "bootstrap_resamples", "bootstrap_seed", "measured_text", "verdict",
    "reason", "claim_verdict",
]


# -- statistics -----------------------------------------------------------------------------------------------

def _statistic(kind: str, a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ratio":
            return a / b
        if kind == "difference":
            return a - b
        if kind == "relative_change":
            return (a - b) / b
    raise ValueError(f"not a two-cell statistic: {kind!r}")


def point_estimate(kind: str, a: Sequence[float], b: Sequence[float]) -> float:
    """The statistic on the two cells' means (NaN when undefined, e.g. a ratio over a mean of 0)."""
    value = float(_statistic(kind, np.mean(np.asarray(a, float)), np.mean(np.asarray(b, float))))
    return value if math.isfinite(value) else math.nan


def bootstrap_ci(kind: str, a: Sequence[float], b: Sequence[float], paired: bool, confidence: float = 0.95,
                 resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the statistic of the two cells' means: scipy.stats.bootstrap over seeds,
    paired (a and b aligned by seed, resampled jointly) or independent, with a fresh generator seeded by
    `seed`. NaN when a resample makes the statistic undefined (a resampled denominator mean of 0)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    if paired and len(a) != len(b):
        raise ValueError("a paired bootstrap needs the same seeds on both sides")

    def statistic(x, y, axis=-1):
        return _statistic(kind, np.mean(x, axis=axis), np.mean(y, axis=axis))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (identical) resamples: a point interval, kept as such
        result = stats.bootstrap((a, b), statistic, paired=paired, vectorized=True, n_resamples=int(resamples),
                                 confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return math.nan, math.nan
    return low, high


def numeric_verdict(ci_low: float, ci_high: float, expected_low: float, expected_high: float) -> tuple[str, str]:
    """(verdict, how the CI relates to the claimed interval) by the overlap rule."""
    if math.isnan(ci_low) or math.isnan(ci_high):
        return NOT_TESTABLE, "no interval"
    if ci_high < expected_low:
        return NOT_SUPPORTED, "lies entirely below"
    if ci_low > expected_high:
        return NOT_SUPPORTED, "lies entirely above"
    return SUPPORTED, "overlaps"


def combine_verdicts(verdicts: Iterable[str]) -> str:
    """A claim's verdict: supported when every check is, not supported when any check is not."""
    verdicts = list(verdicts)
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if any(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    return NOT_TESTABLE


# -- evaluation -----------------------------------------------------------------------------------------------

class _Evaluator:
    def __init__(self, study: Mapping, metrics: pd.DataFrame, summary: pd.DataFrame | None,
                 rank_table: pd.DataFrame | None, confidence: float, seed: int, resamples: int,
                 learned: pd.DataFrame | None = None):
        self.study = study
        self.name = study.get("study")
        self.learned = self._own(learned)
        self.metrics = self._own(metrics)
        self.summary = self._own(summary)
        self.rank_table = self._own(rank_table)
        self.confidence, self.seed, self.resamples = confidence, seed, resamples
        runnable = {**study, "exclusions": study.get("exclusions", [])}
        self.runs = {(run.dataset, run.model, run.method, rank_text(run.rank)) for run in expand_runs(runnable)}

    def _own(self, frame: pd.DataFrame | None) -> pd.DataFrame:
        if frame is None:
            return pd.DataFrame(columns=["study", "dataset", "model", "method", "rank", "metric"])
        frame = frame.copy()
        if "rank" in frame.columns:
            frame["rank"] = [rank_text(rank) for rank in frame["rank"]]
        if "study" in frame.columns and self.name is not None:
            frame = frame[frame["study"].astype(str) == str(self.name)]
        return frame

    # which cells exist ----------------------------------------------------------------------------------------
    def missing_names(self, cells: Iterable[Mapping]) -> str | None:
        missing = []
        for cell in cells:
            for axis in ("dataset", "model", "method"):
                if cell[axis] not in self.study.get(axis + "s", {}) and (axis, cell[axis]) not in missing:
                    missing.append((axis, cell[axis]))
        if not missing:
            return None
        names = []
        for axis in ("dataset", "model", "method"):
            these = [name for kind, name in missing if kind == axis]
            if these:
                names.append(f"{axis}{'s' if len(these) > 1 else ''} {', '.join(these)}")
        return f"{and_list(names)} {'is' if len(missing) == 1 else 'are'} not in this study"

    def cell_problem(self, cell: Mapping) -> str | None:
        """Why this cell has no results in this study (names already known to exist), or None."""
        method = self.study["methods"][cell["method"]]
        ranks = [str(rank) for rank in method.get("ranks", [])]
        if cell["rank"] != "" and not ranks:
            return f"method {cell['method']} has no ranks"
        if cell["rank"] != "" and cell["rank"] not in ranks:
            return f"{cell['method']} has no rank {cell['rank']} in this study (ranks {', '.join(ranks)})"
        for exclusion in self.study.get("exclusions", []):
            if all(exclusion.get(axis) in (None, cell[axis]) for axis in ("dataset", "model", "method")):
                return f"{cell_label(cell)} on {cell['dataset']}, {cell['model']} is excluded: {exclusion['reason']}"
        if (cell["dataset"], cell["model"], cell["method"], cell["rank"]) not in self.runs:
            return f"{cell_label(cell)} is not run on {cell['dataset']}, {cell['model']} in this study"
        return None

    def not_learned(self, cells: Iterable[Mapping], metric: str) -> str | None:
        """Why a quality check's cells cannot test it: those that did not learn their task (stats.against_baselines:
        not better than the trivial baselines), or None. Efficiency checks, and cells without baselines, pass."""
        if not is_quality_metric(metric) or self.learned.empty:
            return None
        reasons = []
        for cell in cells:
            row = self.learned[(self.learned["dataset"] == cell["dataset"]) & (self.learned["model"] == cell["model"])
                               & (self.learned["method"] == cell["method"]) & (self.learned["rank"] == cell["rank"])]
            if len(row) and str(row["learned"].iloc[0]) == "False":
                reasons.append(f"{cell_label(cell)} on {cell['dataset']}, {cell['model']} did not learn its task"
                               f" ({row['reason'].iloc[0]})")
        return "; ".join(reasons) or None

    def cell_values(self, cell: Mapping, metric: str) -> tuple[pd.Series | None, str | None]:
        """(measured values indexed by seed, None) or (None, why there are none / too few)."""
        rows = self.metrics[(self.metrics["dataset"] == cell["dataset"]) & (self.metrics["model"] == cell["model"])
                            & (self.metrics["method"] == cell["method"]) & (self.metrics["rank"] == cell["rank"])]
        where = f"{cell_label(cell)} on {cell['dataset']}, {cell['model']}"
        if rows.empty:
            return None, f"no results yet for {where}"
        rows = rows[rows["metric"] == metric]
        if rows.empty:
            return None, f"{metric} is not recorded for {where}"
        values = rows[rows["value"].notna()]
        if values.empty:
            notes = sorted({str(note).removeprefix("not measured:").strip() for note in rows.get("note", [])
                            if isinstance(note, str) and note.strip()})
            return None, f"{metric} was not measured for {where}" + (f" ({'; '.join(notes)})" if notes else "")
        series = values.groupby("seed")["value"].mean().astype(float).sort_index()
        if len(series) < 2:
            return series, f"only {len(series)} seed of {where}: no interval"
        return series, None

    def gather(self, check: Mapping) -> tuple[list[pd.Series] | None, str | None]:
        cells = check_cells(check)
        missing = self.missing_names(cells)
        if missing:
            return None, missing
        problems = [p for p in (self.cell_problem(cell) for cell in cells) if p]
        if problems:
            return None, "; ".join(dict.fromkeys(problems))
        unlearned = self.not_learned(cells, check["metric"])
        if unlearned:
            return None, unlearned
        values, reasons = [], []
        for cell in cells:
            series, reason = self.cell_values(cell, check["metric"])
            values.append(series)
            if reason:
                reasons.append(reason)
        if reasons:
            return values, "; ".join(dict.fromkeys(reasons))
        return values, None

    # checks ---------------------------------------------------------------------------------------------------
    def evaluate(self, check: Mapping) -> dict:
        row = {"measured": math.nan, "ci_low": math.nan, "ci_high": math.nan, "confidence": self.confidence,
               "n": "", "interval": "", "bootstrap_resamples": math.nan, "bootstrap_seed": math.nan,
               "measured_text": "--"}
        if check["kind"] in RANK_KINDS:
            return {**row, **self.rank_check(check)}
        values, reason = self.gather(check)
        if values is not None:
            row["n"] = "/".join(str(0 if v is None else len(v)) for v in values)
        if check["kind"] == "ordering":
            return {**row, **self.ordering(check, values, reason)}
        if reason:
            if values is not None and all(v is not None and len(v) for v in values):
                row.update(self._point_only(check, values))
            return {**row, "verdict": NOT_TESTABLE, "reason": reason}
        if check["kind"] == "value":
            row.update(self.value(check, values[0]))
        else:
            row.update(self.two_cells(check, values[0], values[1]))
        why = row.pop("why", "the bootstrap interval is undefined")
        if math.isnan(row["measured"]):
            return {**row, "verdict": NOT_TESTABLE, "reason": why}
        low, high = expected_interval(check)
        verdict, relation = numeric_verdict(row["ci_low"], row["ci_high"], low, high)
        kind = check["kind"]
        ci = interval_text(row["ci_low"], row["ci_high"], kind)
        if verdict == NOT_TESTABLE:
            reason = why
        else:
            reason = f"{self.confidence:.0%} CI {ci} {relation} the claimed {expected_text(check)}"
        row["measured_text"] = f"{format_number(row['measured'], kind)} {ci}"
        return {**row, "verdict": verdict, "reason": reason}

    def _scale(self, check: Mapping) -> float:
        return float(check.get("scale", 1.0))

    def _point_only(self, check: Mapping, values: list[pd.Series]) -> dict:
        """The point estimate of a check that has no interval (shown, never given a verdict)."""
        kind, scale = check["kind"], self._scale(check)
        if kind == "value":
            measured = float(values[0].mean()) * scale
        elif kind in TWO_CELL_KINDS:
            measured = point_estimate(kind, values[0].to_numpy() * scale, values[1].to_numpy() * scale)
        else:
            return {}
        return {"measured": measured, "measured_text": format_number(measured, kind) + " (no CI)"}

    def value(self, check: Mapping, series: pd.Series) -> dict:
        scale = self._scale(check)
        cell = check_cells(check)[0]
        match = self.summary
        if not match.empty and "ci_low" in match.columns:
            match = match[(match["dataset"] == cell["dataset"]) & (match["model"] == cell["model"])
                          & (match["method"] == cell["method"]) & (match["rank"] == cell["rank"])
                          & (match["metric"] == check["metric"])]
        if (len(match) == 1 and "ci_low" in match.columns and int(match["n"].iloc[0]) == len(series)
                and math.isclose(float(match["confidence"].iloc[0]), self.confidence)
                and pd.notna(match["ci_low"].iloc[0])):
            summary = match.iloc[0]
            mean, low, high = float(summary["mean"]), float(summary["ci_low"]), float(summary["ci_high"])
            interval = f"{summary.get('ci_method', 't')} interval of the mean (summary.csv)"
        else:
            mean = float(series.mean())
            low, high = confidence_interval(series.tolist(), self.confidence)
            interval = "t interval of the mean"
        return {"measured": mean * scale, "ci_low": low * scale, "ci_high": high * scale, "interval": interval}

    def two_cells(self, check: Mapping, a: pd.Series, b: pd.Series) -> dict:
        kind, scale = check["kind"], self._scale(check)
        cells = check_cells(check)
        paired = self.pairable(cells[0], cells[1], a, b)
        x, y = (a.to_numpy() * scale, b.loc[a.index].to_numpy() * scale) if paired else \
               (a.to_numpy() * scale, b.to_numpy() * scale)
        measured = point_estimate(kind, x, y)
        if math.isnan(measured):
            return {"measured": math.nan, "why": f"the {kind.replace('_', ' ')} is undefined (mean of"
                                                 f" {cell_label(cells[1])} is 0)"}
        low, high = bootstrap_ci(kind, x, y, paired, self.confidence, self.resamples, self.seed)
        return {"measured": measured, "ci_low": low, "ci_high": high,
                "interval": f"{'paired' if paired else 'independent'} bootstrap over seeds",
                "bootstrap_resamples": self.resamples, "bootstrap_seed": self.seed,
                "why": f"the bootstrap interval is undefined (a resampled mean of {cell_label(cells[1])} is 0)"}

    @staticmethod
    def pairable(cell_a: Mapping, cell_b: Mapping, a: pd.Series, b: pd.Series) -> bool:
        """Seed-matched pairing: same dataset and model (same data order and init seed), the same seeds."""
        return (cell_a["dataset"] == cell_b["dataset"] and cell_a["model"] == cell_b["model"]
                and set(a.index) == set(b.index))

    def ordering(self, check: Mapping, values: list[pd.Series] | None, reason: str | None) -> dict:
        cells = check_cells(check)
        decreasing = check.get("order", "decreasing") == "decreasing"
        out: dict = {}
        if values is not None and all(v is not None and len(v) for v in values):
            means = [float(v.mean()) for v in values]
            parts = [f"{cell_label(cells[0])} {format_number(means[0])}"]
            for index in range(1, len(cells)):
                symbol = ">" if means[index - 1] > means[index] else ("<" if means[index - 1] < means[index] else "=")
                parts.append(f"{symbol} {cell_label(cells[index])} {format_number(means[index])}")
            out["measured_text"] = " ".join(parts)
        if reason:
            return {**out, "verdict": NOT_TESTABLE, "reason": reason}
        pairs, verdicts = [], []
        for index in range(1, len(cells)):
            high_side, low_side = (index - 1, index) if decreasing else (index, index - 1)
            a, b = values[high_side], values[low_side]
            paired = self.pairable(cells[high_side], cells[low_side], a, b)
            x, y = (a.to_numpy(), b.loc[a.index].to_numpy()) if paired else (a.to_numpy(), b.to_numpy())
            difference = point_estimate("difference", x, y)
            low, high = bootstrap_ci("difference", x, y, paired, self.confidence, self.resamples, self.seed)
            if not math.isnan(low) and low > 0:
                verdicts.append(SUPPORTED)
            elif not math.isnan(high) and high < 0:
                verdicts.append(NOT_SUPPORTED)
            else:
                verdicts.append(NOT_TESTABLE)
            pairs.append(f"{cell_label(cells[high_side])} - {cell_label(cells[low_side])}:"
                         f" {difference:+.3g} {interval_text(low, high)} ({'paired' if paired else 'independent'})")
        if all(v == SUPPORTED for v in verdicts):
            verdict, head = SUPPORTED, "every adjacent difference's CI is on the claimed side of 0"
        elif NOT_SUPPORTED in verdicts:
            verdict, head = NOT_SUPPORTED, "an adjacent difference's CI lies entirely on the wrong side of 0"
        else:
            verdict, head = NOT_TESTABLE, "inconclusive at this n: an adjacent difference's CI contains 0"
        return {**out, "verdict": verdict, "reason": f"{head} ({self.confidence:.0%} CIs: {'; '.join(pairs)})",
                "interval": "bootstrap over seeds of each adjacent difference",
                "bootstrap_resamples": self.resamples, "bootstrap_seed": self.seed}

    def rank_check(self, check: Mapping) -> dict:
        kind = check["kind"]
        method = check.get("method") or rank_method(self.study)
        claimed = [int(rank) for rank in check["ranks"]]
        cell = {"dataset": check["dataset"], "model": check["model"], "method": method, "rank": ""}

        def untestable(reason: str, **extra) -> dict:
            return {"verdict": NOT_TESTABLE, "reason": reason, **extra}

        missing = self.missing_names([cell])
        if missing:
            return untestable(missing)
        sweep = sorted(int(rank) for rank in self.study["methods"][method].get("ranks", []))
        if not sweep:
            return untestable(f"method {method} has no ranks")
        run = sorted(int(rank) for (d, m, me, rank) in self.runs
                     if (d, m, me) == (check["dataset"], check["model"], method) and rank != "")
        if not run:
            return untestable(f"{method} is not run on {check['dataset']}, {check['model']} in this study")
        unlearned = self.not_learned([{**cell, "rank": str(rank)} for rank in run], check["metric"])
        if unlearned:
            return untestable(unlearned)
        table = self.rank_table
        family = table[(table["dataset"] == check["dataset"]) & (table["model"] == check["model"])
                       & (table["metric"] == check["metric"]) & (table["method"] == method)] if not table.empty else table
        if family.empty:
            covered = self.study.get("statistics", {}).get("rank_study", {})
            if covered.get("method", method) != method:
                return untestable(f"the rank study covers method {covered['method']} only")
            if "metrics" in covered and check["metric"] not in covered["metrics"]:
                return untestable(f"the rank study does not cover {check['metric']} (statistics.rank_study.metrics)")
            return untestable(f"no rank-study rows for {method} {check['metric']} on {check['dataset']},"
                              f" {check['model']} (not computed yet)")
        family = family.assign(rank_value=[int(float(rank)) for rank in family["rank"]]).sort_values("rank_value")
        ranks = family["rank_value"].tolist()
        n = family["n"].astype(int)
        out = {"n": "/".join(str(v) for v in n), "interval": "rank study (bootstrap over seeds)" if kind == "best_rank"
               else "rank study (Kneedle on the means)"}
        absent = [rank for rank in claimed if rank not in ranks]
        absent_text = (f"r = {', '.join(map(str, absent))} {'is' if len(absent) == 1 else 'are'} not in this"
                       f" study's sweep ({', '.join(map(str, ranks))})") if absent else ""
        if n.min() < 2:
            return untestable(f"only {n.min()} seed of some ranks of {method} on {check['dataset']},"
                              f" {check['model']}: no interval", **out)
        first = family.iloc[0]
        if kind == "knee_rank":
            knee = first["knee_rank"]
            if pd.isna(knee):
                why = plain_text(first.get("knee_reason")) or "kneed found none"
                return untestable(f"no knee: {why}" + (f"; {absent_text}" if absent_text else ""), **out)
            knee = int(float(knee))
            out.update(measured=float(knee), measured_text=f"knee r = {knee}")
            if knee in claimed:
                return {**out, "verdict": SUPPORTED, "reason": f"the knee of the rank curve is r = {knee}"}
            if absent:
                return {**out, "verdict": NOT_TESTABLE, "reason": f"the knee is r = {knee}; {absent_text}"}
            return {**out, "verdict": NOT_SUPPORTED, "reason": f"the knee is r = {knee}, not a claimed rank"}
        best = first["best_rank"]
        if pd.isna(best):
            return untestable(f"no best rank: {plain_text(first.get('best_reason')) or 'undefined'}", **out)
        best = int(float(best))
        fractions = dict(zip(family["rank_value"], family["bootstrap_choice_fraction"].astype(float)))
        resamples = first.get("bootstrap_resamples")
        out.update(measured=float(best), bootstrap_resamples=resamples, bootstrap_seed=first.get("bootstrap_seed"),
                   measured_text=f"r = {best} (chosen in {fractions.get(best, math.nan):.0%} of resamples)")
        shares = ", ".join(f"r = {rank}: {fractions[rank]:.0%}" for rank in ranks)
        rule = plain_text(first.get("best_rule")) or "the rank study's rule"
        if best in claimed:
            return {**out, "verdict": SUPPORTED, "reason": f"best rank r = {best} by {rule}; choice shares {shares}"}
        frequent = [rank for rank in claimed if fractions.get(rank, 0.0) >= MIN_CHOICE_FRACTION]
        if frequent:
            return {**out, "verdict": SUPPORTED,
                    "reason": f"best rank r = {best}, but claimed r = {frequent[0]} is chosen in"
                              f" {fractions[frequent[0]]:.0%} of resamples (>= {MIN_CHOICE_FRACTION:.0%}); {shares}"}
        if absent:
            return {**out, "verdict": NOT_TESTABLE, "reason": f"best rank r = {best}; {absent_text}"}
        return {**out, "verdict": NOT_SUPPORTED,
                "reason": f"best rank r = {best}; the claimed rank is chosen in fewer than"
                          f" {MIN_CHOICE_FRACTION:.0%} of resamples ({shares})"}


def evaluate_claims(study: Mapping, metrics: pd.DataFrame, summary: pd.DataFrame | None,
                    rank_study: pd.DataFrame | None, confidence: float = 0.95, seed: int = 0,
                    resamples: int = 2000, learned: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per check of every claim in ``study['claims']``, in config order (COLUMNS).

    `metrics` is the tidy metrics table, `summary` and `rank_study` the stats tables (read with
    peftstudy.stats.read_metrics / read_table; either may be None). measured/ci_low/ci_high are the point
    estimate and its `confidence` interval (percentile bootstrap over seeds with `resamples` resamples and
    generator seed `seed` for two-cell statistics, paired or independent as the `interval` column says; the
    cell's t interval for a single value); `n` gives the seeds per cell ('3/3'). `verdict` follows
    VERDICT_RULE (see the module docstring), `reason` always says why, and `claim_verdict` combines a
    claim's checks (combine_verdicts). Missing cells and unmeasured metrics give 'not testable here' with
    the reason; no number is ever filled in. `learned` (stats/learned.csv): a quality check whose cells include one
    that did not learn its task (not better than the trivial baselines) is not testable here, with the reason.
    """
    validate_claims(study)
    evaluator = _Evaluator(study, metrics, summary, rank_study, confidence, seed, resamples, learned)
    rows = []
    for claim in study.get("claims", []):
        claim_rows = []
        for index, check in enumerate(claim["checks"], start=1):
            result = evaluator.evaluate(check)
            claim_rows.append({
                "study": study.get("study"), "claim_id": claim["id"], "claim_text": claim["text"],
                "source": claim["source"], "reported": claim["reported"], "check": index, "kind": check["kind"],
                "metric": check["metric"], "description": describe_check(check, study),
                "check_reported": check.get("reported", ""), "expected": expected_text(check),
                "expected_low": expected_interval(check)[0] if check["kind"] in NUMERIC_KINDS else math.nan,
                "expected_high": expected_interval(check)[1] if check["kind"] in NUMERIC_KINDS else math.nan,
                **result,
            })
        verdict = combine_verdicts(row["verdict"] for row in claim_rows)
        rows += [{**row, "claim_verdict": verdict} for row in claim_rows]
    return pd.DataFrame(rows, columns=COLUMNS)


