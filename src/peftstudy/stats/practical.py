"""Practical significance: is a difference large enough to matter, not only unlikely under H0?

Thresholds come from the study config, per metric: a number is an absolute difference in the metric's
unit ({"bleu4": 0.5}); a string "N%" is relative to a reference mean ({"train_time_s": "10%"}), the second
variant's (the baseline's) mean in a comparison, the best rank's mean in the rank study.
"""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

LABELS = ("significant_and_meaningful", "significant_only", "equivalent", "inconclusive", "no_threshold")


def parse_threshold(spec) -> tuple[float, bool]:
    """(value, is_relative): 0.5 -> (0.5, False); "10%" -> (0.10, True)."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.endswith("%"):
            return float(text[:-1]) / 100, True
        return float(text), False
    return float(spec), False


def threshold_for(metric: str, thresholds: Mapping | None, reference_mean: float) -> tuple[float, str]:
    """(absolute threshold or NaN, the spec as written or '') for `metric`."""
    if not thresholds or metric not in thresholds or thresholds[metric] is None:
        return math.nan, ""
    value, relative = parse_threshold(thresholds[metric])
    if value < 0:
        raise ValueError(f"practical threshold for {metric!r} must not be negative, got {thresholds[metric]!r}")
    threshold = value * abs(reference_mean) if relative else value
    return (threshold if math.isfinite(threshold) else math.nan), str(thresholds[metric])


def practical_label(p_corrected: float, alpha: float, difference: float, ci_low: float, ci_high: float,
                    threshold: float) -> str:
    """The rule, in order:

    * no threshold for the metric (or a relative one with no reference mean) -> 'no_threshold';
    * corrected p < alpha and |difference| >= threshold -> 'significant_and_meaningful';
    * corrected p < alpha and |difference| < threshold -> 'significant_only';
    * the difference's CI lies strictly inside (-threshold, +threshold) -> 'equivalent'. This is a
      TOST-style CI check at the CI's stated confidence: a (1 - 2a) CI inside the margins is TOST at level a,
      so a 95 % CI is TOST at 0.025 per side (stricter than the usual 90 % CI / 0.05);
    * anything else (including an untestable comparison) -> 'inconclusive'.
    """
    if not math.isfinite(threshold):
        return "no_threshold"
    if math.isfinite(p_corrected) and p_corrected < alpha:
        return "significant_and_meaningful" if abs(difference) >= threshold else "significant_only"
    if math.isfinite(ci_low) and math.isfinite(ci_high) and -threshold < ci_low and ci_high < threshold:
        return "equivalent"
    return "inconclusive"


def label_practical_significance(comparisons: pd.DataFrame, thresholds: Mapping | None,
                                 alpha: float = 0.05) -> pd.DataFrame:
    """Add `threshold`, `threshold_spec` and `practical` (see practical_label) to a pairwise_comparisons table."""
    labelled = comparisons.copy()
    threshold_rows = [threshold_for(row.metric, thresholds, row.mean_b) for row in comparisons.itertuples()]
    labelled["threshold"] = [threshold for threshold, _ in threshold_rows]
    labelled["threshold_spec"] = [spec for _, spec in threshold_rows]
    labelled["practical"] = [
        practical_label(row.p_corrected, alpha, row.mean_difference, row.diff_ci_low, row.diff_ci_high, threshold)
        for row, threshold in zip(comparisons.itertuples(), labelled["threshold"])
    ]
    return labelled
