"""Rank study of a ranked method (e.g. LoRA): where does quality saturate, and which rank should one pick?

Two answers, kept apart because they answer different questions: the *knee* (kneed's Kneedle on the
rank -> mean curve) says where the curve bends; the *best rank* follows a declared rule with a practical
threshold ("the smallest rank whose mean is within the threshold of the best rank's mean"), and a seeded
bootstrap over seeds says how often each rank would be chosen by that rule, i.e. how sure the choice is.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from peftstudy.stats.degenerate import why_undefined
from peftstudy.stats.describe import confidence_interval
from peftstudy.stats.direction import higher_is_better
from peftstudy.stats.practical import parse_threshold, threshold_for
from peftstudy.stats.tidy import FAMILY, family_groups, measured, rank_number, sample_sd

RANK_STUDY_COLUMNS = FAMILY + [
    "method", "rank", "n", "mean", "std", "ci_low", "ci_high", "ci_note", "confidence", "higher_is_better",
    "knee_rank", "knee_reason", "threshold", "threshold_spec", "best_rank", "best_rule", "best_reason",
    "bootstrap_choice_fraction", "bootstrap_reason", "bootstrap_resamples", "bootstrap_seed",
]


def knee_rank(ranks, means, higher: bool) -> tuple[float, str]:
    """(knee, '') or (NaN, why). Higher-is-better curves saturate as concave increasing; lower-is-better ones
    (perplexity) as convex decreasing: kneed's Kneedle with S=1, offline, on the raw (rank, mean) points."""
    from kneed import KneeLocator

    if len(ranks) < 3:
        return math.nan, "fewer than 3 ranks"
    if why_undefined("knee", means):  # equal up to rounding: Kneedle would normalise a ~1e-17 wiggle
        return math.nan, "flat curve: every rank has the same mean"
    curve, direction = ("concave", "increasing") if higher else ("convex", "decreasing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when it finds no knee; the reason column says so
        knee = KneeLocator(list(ranks), list(means), curve=curve, direction=direction).knee
    if knee is None:
        return math.nan, f"kneed found no knee on a {curve} {direction} curve"
    return float(knee), ""


def choose_rank(ranks: np.ndarray, means: np.ndarray, higher: bool, threshold_spec=None) -> np.ndarray:
    """Rank chosen by the rule for each row of `means` (shape resamples x ranks; ranks ascending): the
    smallest rank whose mean is within the practical threshold of the best mean (relative thresholds are
    relative to that best mean); without a threshold, the rank with the best mean (the smallest on ties)."""
    best = means.max(axis=1) if higher else means.min(axis=1)
    if threshold_spec is None:
        threshold = np.zeros_like(best)
    else:
        value, relative = parse_threshold(threshold_spec)
        threshold = value * np.abs(best) if relative else np.full_like(best, value)
    close = (means >= (best - threshold)[:, None]) if higher else (means <= (best + threshold)[:, None])
    return ranks[np.argmax(close, axis=1)]


def rank_study(metrics: pd.DataFrame, method: str = "lora", thresholds: Mapping | None = None,
               confidence: float = 0.95, bootstrap_resamples: int = 2000, seed: int = 0,
               directions: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """One row per (family, rank) of `method`: n, mean, SD, t CI; and per family (repeated on its rows) the
    knee, the best rank by the rule in choose_rank, and `bootstrap_choice_fraction`: the share of
    `bootstrap_resamples` seeded resamples (each rank's seed values drawn with replacement, the rule
    re-applied; one generator per family seeded with `seed`) in which this rank was chosen. A rank measured on
    a single seed has nothing to resample (its mean would never move and the share would overstate the
    certainty), so then the shares are NaN and `bootstrap_reason` says why; `ci_note` likewise for the CI.

    The direction comes from direction.HIGHER_IS_BETTER (extended by `directions`); for a metric of unknown
    direction knee and best rank are NaN with the reason.
    """
    selected = measured(metrics)
    selected = selected[selected["method"] == method]
    selected = selected.assign(rank_value=[rank_number(rank) for rank in selected["rank"]])
    selected = selected[selected["rank_value"].notna()]
    rows = []
    for family, group in family_groups(selected, FAMILY):
        per_rank = [(value, rows_of_rank["rank"].iloc[0], rows_of_rank["value"].to_numpy())
                    for value, rows_of_rank in group.groupby("rank_value", sort=True)]  # ascending numeric rank
        rank_values = np.array([value for value, _, _ in per_rank])
        means = np.array([values.mean() for _, _, values in per_rank])
        higher = higher_is_better(family["metric"], directions)
        spec = (thresholds or {}).get(family["metric"])
        summary = {"higher_is_better": higher, "threshold_spec": "" if spec is None else str(spec),
                   "bootstrap_resamples": bootstrap_resamples, "bootstrap_seed": seed}
        fractions = {}
        if higher is None:
            unknown = "direction unknown: add the metric to HIGHER_IS_BETTER or pass directions"
            summary.update(knee_rank=math.nan, knee_reason=unknown, threshold=math.nan, best_rank=math.nan,
                           best_rule="", best_reason=unknown, bootstrap_reason=unknown)
        else:
            summary["knee_rank"], summary["knee_reason"] = knee_rank(rank_values, means, higher)
            best_mean = means.max() if higher else means.min()
            summary["threshold"] = (threshold_for(family["metric"], thresholds, best_mean)[0] if spec is not None
                                    else math.nan)
            summary["best_rank"] = float(choose_rank(rank_values, means[None, :], higher, spec)[0])
            summary["best_rule"] = ("smallest rank within the practical threshold of the best mean" if spec is not None
                                    else "rank with the best mean (no practical threshold)")
            summary["best_reason"] = ""
            summary["bootstrap_reason"] = why_undefined("bootstrap_choice", *(values for _, _, values in per_rank))
            if not summary["bootstrap_reason"]:
                rng = np.random.default_rng(seed)
                resampled = np.column_stack([rng.choice(values, size=(bootstrap_resamples, len(values))).mean(axis=1)
                                             for _, _, values in per_rank])
                chosen = choose_rank(rank_values, resampled, higher, spec)
                fractions = {value: float(np.mean(chosen == value)) for value in rank_values}
        for value, rank, values in per_rank:
            low, high = confidence_interval(values.tolist(), confidence)
            rows.append({**family, "method": method, "rank": rank, "n": len(values), "mean": float(values.mean()),
                         "std": sample_sd(values),
                         "ci_low": low, "ci_high": high, "ci_note": why_undefined("mean_ci", values),
                         "confidence": confidence, **summary,
                         "bootstrap_choice_fraction": fractions.get(value, math.nan)})
    return pd.DataFrame(rows, columns=RANK_STUDY_COLUMNS)
