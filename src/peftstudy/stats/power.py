"""Were the seeds enough? Power to detect the practical threshold, given the seed-to-seed spread we saw.

The effect to detect is the metric's practical threshold (the smallest difference that matters), in units
of the observed SD: the SD of seed-matched differences for a paired comparison (that is the spread the
paired t sees), the pooled SD of the two variants otherwise. Power is two-sided at `alpha` per comparison;
pass alpha / m for a Bonferroni-style family-wise view. For Welch comparisons the equal-variance
two-sample t power (statsmodels TTestIndPower) is the usual approximation.
"""

from __future__ import annotations

import math

import pandas as pd

from peftstudy.stats.tidy import FAMILY

POWER_COLUMNS = FAMILY + [
    "method_a", "rank_a", "method_b", "rank_b", "test", "design", "threshold", "sd_used", "sd_kind",
    "standardized_effect", "n_current", "power_current", "seeds_needed", "target_power", "alpha", "reason",
]


def _smallest_n(power_at, target: float, start: int) -> int:
    """Smallest integer n >= start with power_at(n) >= target (power grows with n)."""
    low, high = start, max(start, 2)
    while power_at(high) < target:
        low, high = high + 1, high * 2
        if high > 10**7:
            raise ValueError("more than 10 million seeds needed")
    while low < high:
        middle = (low + high) // 2
        if power_at(middle) >= target:
            high = middle
        else:
            low = middle + 1
    return high


def paired_power(effect: float, n: int, alpha: float) -> float:
    """Power of a two-sided paired t (one-sample t on differences) with n pairs and d_z = effect."""
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided"))


def independent_power(effect: float, n_a: int, n_b: int, alpha: float) -> float:
    """Power of a two-sided two-sample t with n_a and n_b seeds and standardized effect d = effect."""
    from statsmodels.stats.power import TTestIndPower

    return float(TTestIndPower().power(effect_size=effect, nobs1=n_a, ratio=n_b / n_a, alpha=alpha,
                                       alternative="two-sided"))


def seed_power(comparisons: pd.DataFrame, alpha: float = 0.05, target_power: float = 0.8) -> pd.DataFrame:
    """Per comparison of a pairwise_comparisons table (made with thresholds): the power achieved with the
    current seeds and the seeds per variant needed for `target_power` (the smallest integer n, >= 2, found
    on statsmodels' TTestPower (paired) / TTestIndPower (independent, equal n per variant) power curve).

    NaN with a `reason` when the metric has no threshold, the SD is 0 or undefined, or no t-test applies.
    """
    rows = []
    for row in comparisons.itertuples(index=False):
        paired = row.n_paired >= 2  # seed-matched design, even where t itself was undefined
        out = {**{key: getattr(row, key) for key in FAMILY + ["method_a", "rank_a", "method_b", "rank_b", "test"]},
               "design": "paired" if paired else "independent", "threshold": float(row.threshold),
               "sd_used": math.nan, "sd_kind": "difference" if paired else "pooled", "standardized_effect": math.nan,
               "n_current": row.n_paired if paired else min(row.n_a, row.n_b), "power_current": math.nan,
               "seeds_needed": math.nan, "target_power": target_power, "alpha": alpha, "reason": ""}
        if paired:
            sd = float(row.sd_difference)
        elif row.n_a >= 2 and row.n_b >= 2:
            sd = math.sqrt(((row.n_a - 1) * row.sd_a**2 + (row.n_b - 1) * row.sd_b**2) / (row.n_a + row.n_b - 2))
        else:
            sd = math.nan
        out["sd_used"] = sd
        if not math.isfinite(row.threshold):
            out["reason"] = "no practical threshold for this metric"
        elif not math.isfinite(sd):
            out["reason"] = "SD undefined: a variant has fewer than 2 measured seeds"
        elif sd == 0:
            out["reason"] = "observed SD is 0: any difference is detected, power is not informative"
        elif row.threshold == 0:
            out["reason"] = "threshold is 0: no finite number of seeds detects it"
        else:
            effect = float(row.threshold) / sd
            out["standardized_effect"] = effect
            if paired:
                out["power_current"] = paired_power(effect, int(row.n_paired), alpha)
                out["seeds_needed"] = _smallest_n(lambda n: paired_power(effect, n, alpha), target_power, 2)
            else:
                out["power_current"] = independent_power(effect, int(row.n_a), int(row.n_b), alpha)
                out["seeds_needed"] = _smallest_n(lambda n: independent_power(effect, n, n, alpha), target_power, 2)
        rows.append(out)
    return pd.DataFrame(rows, columns=POWER_COLUMNS)
