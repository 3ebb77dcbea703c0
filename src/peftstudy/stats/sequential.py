"""Adaptive seeds: after each round, every planned comparison is settled or still open, and only the cells of an
open comparison get another seed.

A planned comparison is the statistics' own: a method variant against the study's baseline method, within one
(dataset, model, metric) family, on the seeds both ran (paired: the same seed gives both the same data order). At
each look (n = min, ..., max seeds) it gets a repeated confidence interval for the mean paired difference
(Jennison & Turnbull 1989): mean +- c_n * sd / sqrt(n), where the critical values c_n spend the error rate over
the looks with a Lan-DeMets spending function (Lan & DeMets 1983; Pocock-type, alpha * ln(1 + (e - 1) t) at
information fraction t = n / max), so that the intervals cover the true difference at every look at once with
probability 1 - alpha. Any rule that stops on them keeps that coverage: optional stopping cannot inflate the errors.

Under normal seed-to-seed variation the law of (mean - delta) / (sd / sqrt(n)) across the looks does not depend on
the unknown sd, so the critical values are computed once by Monte Carlo (seeded, so they are the same numbers on
every machine), for the t statistic itself: there is no normal approximation at two or three seeds.

A comparison is settled when its interval lies beyond the practical threshold (different, and by more than it
matters), or inside it (equivalent: the two one-sided tests of TOST at the spent level), or at the last look.
Multiplicity: Bonferroni within each family (alpha / its comparisons), which holds under optional stopping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

SIMULATIONS = 200_000  # Monte-Carlo paths for the critical values: their alpha is within +-0.001 at alpha 0.05
BOUNDARY_SEED = 20_231  # the critical values' Monte-Carlo seed: the same boundaries on every machine

DIFFERENT, EQUIVALENT, OPEN, UNDECIDED = "different", "equivalent", "open", "undecided"


def spent(alpha: float, fraction: float) -> float:
    """Lan-DeMets Pocock-type spending: the error rate spent by information fraction ``fraction``."""
    return alpha * math.log(1 + (math.e - 1) * fraction)


@lru_cache(maxsize=64)
def critical_values(n_min: int, n_max: int, alpha: float) -> tuple[float, ...]:
    """c_n for n = n_min..n_max: P(|T_n| > c_n at some look) = alpha under H0, spent as ``spent`` says, where
    T_n is the one-sample t statistic of the first n of n_max normal paired differences."""
    import numpy as np

    if not 2 <= n_min <= n_max:
        raise ValueError(f"adaptive seeds need 2 <= min <= max, got min {n_min}, max {n_max}")
    rng = np.random.default_rng(BOUNDARY_SEED)
    draws = rng.standard_normal((SIMULATIONS, n_max))
    looks = range(n_min, n_max + 1)
    cumulative = np.cumsum(draws, axis=1)
    cumulative_sq = np.cumsum(draws ** 2, axis=1)
    alive = np.ones(SIMULATIONS, dtype=bool)
    values = []
    for n in looks:
        mean = cumulative[:, n - 1] / n
        variance = (cumulative_sq[:, n - 1] - n * mean ** 2) / (n - 1)
        t = np.abs(mean) / np.sqrt(np.maximum(variance, 1e-300) / n)
        budget = spent(alpha, n / n_max) - spent(alpha, (n - 1) / n_max if n > n_min else 0.0)
        # The c whose exceedances among the paths still alive make up `budget` of all paths.
        candidates = np.sort(t[alive])[::-1]
        reject = int(round(budget * SIMULATIONS))
        c = float(candidates[reject]) if reject < len(candidates) else 0.0
        values.append(c)
        alive &= t <= c
    return tuple(values)


@dataclass(frozen=True)
class Look:
    """One comparison at one look: its repeated confidence interval and what it settles."""

    n: int
    mean: float
    low: float
    high: float
    decision: str


def look(differences: Sequence[float], n_min: int, n_max: int, alpha: float, threshold: float | None) -> Look:
    """The repeated confidence interval of the mean paired difference after len(differences) seeds, and the
    decision: DIFFERENT (beyond the threshold on one side), EQUIVALENT (inside it), OPEN, or UNDECIDED (the last
    look, neither)."""
    import numpy as np

    n = len(differences)
    if not n_min <= n <= n_max:
        raise ValueError(f"a look at {n} seeds is outside the design's {n_min}..{n_max}")
    values = np.asarray(differences, dtype=float)
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    c = critical_values(n_min, n_max, alpha)[n - n_min]
    half = c * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    bound = 0.0 if threshold is None else abs(threshold)
    if low > bound or high < -bound:
        decision = DIFFERENT
    elif threshold is not None and -bound < low and high < bound:
        decision = EQUIVALENT
    else:
        decision = OPEN if n < n_max else UNDECIDED
    return Look(n, mean, low, high, decision)


def family_alpha(alpha: float, comparisons: int) -> float:
    """Bonferroni within a family: valid whatever the stopping rule (Holm's step-down is not, across looks)."""
    return alpha / max(comparisons, 1)


def open_cells(comparisons: Mapping[tuple, Look], cells_of: Mapping[tuple, tuple]) -> set:
    """The cells that need another seed: both cells of every open comparison."""
    return {cell for key, result in comparisons.items() if result.decision == OPEN for cell in cells_of[key]}


# ------------------------------------------------------------------------------------------ simulation

@dataclass(frozen=True)
class Scenario:
    """Synthetic metric tables: ``families`` independent (dataset, model, metric) families, each a baseline cell and
    one cell per entry of ``differences`` (its true mean minus the baseline's, in units of the practical threshold),
    every cell's seed values normal around its mean with sd ``noise`` (same units)."""

    families: int
    differences: tuple[float, ...]
    noise: float


def simulate(scenario: Scenario, n_min: int, n_max: int, alpha: float, replications: int, seed: int) -> dict:
    """The adaptive design against the fixed n_max-seed design (paired t-tests, Holm within each family) on the
    same synthetic tables: family-wise error (a true null declared different), power (true differences declared
    different) and the share of the fixed design's runs the adaptive one used."""
    import numpy as np
    from scipy import stats

    rng = np.random.default_rng(seed)
    k = len(scenario.differences)
    truth = np.array(scenario.differences, dtype=float)
    nulls, alternatives = truth == 0, truth != 0
    fixed_errors = adaptive_errors = 0
    fixed_hits = adaptive_hits = 0
    runs_used = 0
    level = family_alpha(alpha, k)
    for _ in range(replications * scenario.families):
        values = rng.standard_normal((k + 1, n_max)) * scenario.noise
        values[1:] += truth[:, None]
        differences = values[1:] - values[0]
        # Fixed design: every cell n_max seeds; paired t-tests; Holm.
        p = stats.ttest_1samp(differences, 0.0, axis=1).pvalue
        order = np.argsort(p)
        rejected = np.zeros(k, dtype=bool)
        for rank, index in enumerate(order):
            if p[index] > alpha / (k - rank):
                break
            rejected[index] = True
        fixed_errors += bool((rejected & nulls).any())
        fixed_hits += int((rejected & alternatives).sum())
        # Adaptive design: rounds of one more seed for the cells of open comparisons.
        seeds = np.full(k + 1, n_min)
        results = [look(differences[i, :n_min], n_min, n_max, level, 1.0) for i in range(k)]
        while any(r.decision == OPEN for r in results):
            open_ = [i for i, r in enumerate(results) if r.decision == OPEN]
            seeds[0] += 1
            for i in open_:
                seeds[i + 1] += 1
            for i in open_:
                results[i] = look(differences[i, :seeds[i + 1]], n_min, n_max, level, 1.0)
        declared = np.array([r.low > 0 or r.high < 0 for r in results])
        adaptive_errors += bool((declared & nulls).any())
        adaptive_hits += int((declared & alternatives).sum())
        runs_used += int(seeds.sum())
    tables = replications * scenario.families
    return {
        "fixed_fwer": fixed_errors / tables, "adaptive_fwer": adaptive_errors / tables,
        "fixed_power": fixed_hits / max(tables * int(alternatives.sum()), 1),
        "adaptive_power": adaptive_hits / max(tables * int(alternatives.sum()), 1),
        "runs_share": runs_used / (tables * (k + 1) * n_max), "tables": tables,
    }


# ----------------------------------------------------------------------- looks on the runs of a grid

REPLAY_COLUMNS = ["dataset", "model", "metric", "method", "rank", "seeds_available", "settled_at", "decision",
                  "mean_difference", "rci_low", "rci_high", "threshold", "alpha"]
RUN_COLUMNS = ["dataset", "model", "method", "rank", "seed"]


def planned_metrics(compare_metrics: Sequence[str], thresholds: Mapping | None) -> list[str]:
    """The metrics whose comparisons the design decides: the compared ones with a practical threshold (without one
    a comparison could settle as different but never as equivalent, and would hold every cell to the last seed)."""
    return [metric for metric in compare_metrics if metric in (thresholds or {})]


def replay(metrics, *, baseline_method: str, compare_metrics: Sequence[str], thresholds: Mapping | None,
           alpha: float, n_min: int = 2, n_max: int | None = None, seed_order: Sequence | None = None):
    """The adaptive design's looks on the runs there are: the seeds in their order (``seed_order``, else
    ascending), a look after each, another seed only for the cells of an open comparison.

    On a grid that ran every seed (``n_max`` None: each (dataset, model)'s baseline seeds are its last look) this
    replays the design. On the runs an adaptive study has run so far (``n_max`` its design's) it is the study's
    look: an open comparison whose next seed has not run leaves its cells waiting for it.

    Returns (one row per planned comparison: the look it settled at and what it settled to; the runs the design
    used: dataset, model, method, rank, seed; the cells waiting for a seed: dataset, model, method, rank, seed, that
    seed). A (dataset, model) whose cells ran fewer than ``n_min`` seeds is left out (nothing to adapt)."""
    import pandas as pd

    from peftstudy.stats.practical import threshold_for
    from peftstudy.stats.tidy import measured, variant_sort_key

    position = {str(seed): index for index, seed in enumerate(seed_order or [])}

    def seed_key(seed: str):
        return (0, position[seed], seed) if seed in position else (1, *_seed_key(seed))

    frame = measured(metrics)
    frame = frame[frame["metric"].isin(compare_metrics)]
    frame = frame.assign(seed=frame["seed"].astype(str))
    rows, kept, waiting = [], [], []
    for (dataset, model), group in frame.groupby(["dataset", "model"], sort=True):
        variants = sorted({(m, r) for m, r in zip(group["method"], group["rank"])}, key=variant_sort_key)
        baseline = next((v for v in variants if v[0] == baseline_method), None)
        if baseline is None:
            continue
        values = {(v, metric): part.set_index("seed")["value"] for (v_method, v_rank, metric), part in
                  group.groupby(["method", "rank", "metric"]) for v in [(v_method, v_rank)]}
        seeds = {v: sorted(set(group[(group["method"] == v[0]) & (group["rank"] == v[1])]["seed"]), key=seed_key)
                 for v in variants}
        others = [v for v in variants if v != baseline and len(set(seeds[v]) & set(seeds[baseline])) >= n_min]
        if len(seeds[baseline]) < n_min or not others:
            continue
        metrics_here = sorted({metric for (_, metric) in values})
        comparisons = {(v, metric): None for v in others for metric in metrics_here
                       if (v, metric) in values and (baseline, metric) in values}
        per_family = {metric: sum(1 for (_, m) in comparisons if m == metric) for metric in metrics_here}
        used_threshold: dict = {}  # each comparison's threshold at its last look (a relative one follows the mean)
        order = {v: [s for s in seeds[baseline] if s in set(seeds[v])] for v in others}  # paired seeds, in order
        last_look = {v: n_max or len(order[v]) for v in others}
        used = {v: n_min for v in [baseline, *others]}
        n = n_min
        while True:
            for key, result in list(comparisons.items()):
                v, metric = key
                if result is not None and result.decision != OPEN:
                    continue
                paired = order[v][:n]
                if len(paired) < n:
                    continue  # this variant ran fewer seeds: its comparison stays where it was
                differences = (values[(v, metric)].loc[paired] - values[(baseline, metric)].loc[paired]).to_numpy()
                reference = float(values[(baseline, metric)].loc[paired].mean())
                threshold, _ = threshold_for(metric, thresholds, reference)
                used_threshold[key] = threshold
                comparisons[key] = look(differences, n_min, last_look[v], family_alpha(alpha, per_family[metric]),
                                        None if math.isnan(threshold) else threshold)
            open_variants = {v for (v, _), result in comparisons.items() if result.decision == OPEN}
            short = sorted((v for v in open_variants if len(order[v]) <= n), key=variant_sort_key)
            if short and n_max is not None:  # the adaptive study's look: these cells wait for their next seed
                waiting += [{"dataset": dataset, "model": model, "method": v[0], "rank": v[1], "next_look": n + 1}
                            for v in ([baseline] if len(seeds[baseline]) <= n else []) + short]
                break
            if not open_variants or n >= len(seeds[baseline]):
                break
            n += 1
            for v in open_variants | {baseline}:
                used[v] = n
        for (v, metric), result in comparisons.items():
            threshold = used_threshold[(v, metric)]
            rows.append({"dataset": dataset, "model": model, "metric": metric, "method": v[0], "rank": v[1],
                         "seeds_available": len(order[v]), "settled_at": result.n, "decision": result.decision,
                         "mean_difference": result.mean, "rci_low": result.low, "rci_high": result.high,
                         "threshold": threshold, "alpha": family_alpha(alpha, per_family[metric])})
        for v in [baseline, *others]:
            kept += [{"dataset": dataset, "model": model, "method": v[0], "rank": v[1], "seed": s}
                     for s in seeds[v][:used[v]]]
    return (pd.DataFrame(rows, columns=REPLAY_COLUMNS), pd.DataFrame(kept, columns=RUN_COLUMNS),
            pd.DataFrame(waiting, columns=["dataset", "model", "method", "rank", "next_look"]))


def _seed_key(seed: str):
    try:
        return (0, float(seed), seed)
    except ValueError:
        return (1, 0.0, seed)
