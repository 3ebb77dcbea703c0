"""When a statistic is undefined on the data at hand, and why: one place, so that every table says it alike.

A statistic that divides by a spread of zero does not fail in floating point. Values that are equal in exact
arithmetic (the two deviations from the median of 2 seeds, the per-seed differences of a constant shift such as
0.3 - 0.1 and 0.5 - 0.3) differ by a rounding error, and scipy then divides by ~1e-17: Levene's W = 6e31 with
p = 1e-32, a paired t of 1e16. So *constant* here means equal up to RTOL times the data's magnitude, and each
statistic's conditions (fewest values, fewest groups, which spread must not vanish) are written once, in
`why_undefined`; the modules report NaN with its reason and never a number.
"""

from __future__ import annotations

import numpy as np

# Rounding error on values of magnitude M is ~M * 2.2e-16; a real seed-to-seed spread is many orders above M * 1e-12
# (a byte count of 1e10 differing by 1 byte is 1e-10 relative).
RTOL = 1e-12

# statistic -> (its name in the reasons, fewest groups, fewest values per group)
RULES = {
    "mean_ci": ("a confidence interval of the mean", 1, 2),
    "bootstrap_ci": ("a bootstrap interval", 1, 2),
    "bootstrap_choice": ("a bootstrap over seeds", 1, 2),
    "shapiro_residuals": ("Shapiro-Wilk on the residuals", 1, 1),
    "levene": ("Levene's test", 2, 2),
    "anova": ("the F test", 2, 2),
    "welch_anova": ("Welch's ANOVA", 2, 2),
    "kruskal": ("Kruskal-Wallis", 2, 1),
    "welch_t": ("Welch's t", 2, 2),
    "paired_t": ("the paired t", 2, 2),
    "hedges_g": ("Hedges' g", 2, 2),
    "pearson": ("a correlation", 2, 3),
    "spearman": ("a correlation", 2, 3),
    "knee": ("a knee", 1, 3),
}
SHAPIRO_MIN = 3


def is_constant(values, scale: float = 0.0) -> bool:
    """True when the values are equal up to rounding: range <= RTOL * max(|values|, scale). `scale` is the
    magnitude of the raw data a derived quantity (a difference, a deviation, a residual) was computed from."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return True
    magnitude = max(float(np.max(np.abs(values))), float(scale))
    return float(np.ptp(values)) <= RTOL * magnitude


def _magnitude(values) -> float:
    return float(np.max(np.abs(values))) if len(values) else 0.0


def why_undefined(statistic: str, *samples) -> str:
    """'' when `statistic` is defined on `samples` (the groups, or the two paired sides, or the x and y of a
    correlation, or a curve's values), else why not, in words ('fewer than ...', '... zero variance ...').

    Constant-interval conventions: a t or bootstrap interval of identical values is the value itself (a
    deterministic metric has no seed spread), so mean_ci and bootstrap_ci are undefined only below 2 values.
    """
    if statistic not in RULES:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {', '.join(RULES)}")
    name, fewest_groups, fewest = RULES[statistic]
    samples = [np.asarray(sample, dtype=float).ravel() for sample in samples]
    if len(samples) < fewest_groups:
        return f"{name} needs at least {fewest_groups} groups, got {len(samples)}"
    smallest = min(len(sample) for sample in samples)
    if smallest < fewest:
        where = "" if len(samples) == 1 else (" of a variable" if statistic in ("pearson", "spearman")
                                              else " in a group")
        return f"{name} needs at least {fewest} values{where}, got {smallest}"
    constant = [is_constant(sample) for sample in samples]
    if statistic == "shapiro_residuals":
        dof = sum(len(sample) for sample in samples) - len(samples)
        if dof < SHAPIRO_MIN:
            return (f"{name} needs {SHAPIRO_MIN} residual degrees of freedom, got {dof} (with 2 values a group's"
                    " residuals are a +/- pair)")
        residuals = np.concatenate([sample - sample.mean() for sample in samples])
        if is_constant(residuals, max(map(_magnitude, samples))):
            return f"{name} is undefined: the residuals have zero range"
    elif statistic == "levene":
        deviations = [np.abs(sample - np.median(sample)) for sample in samples]
        if all(is_constant(d, _magnitude(s)) for d, s in zip(deviations, samples)):
            return (f"{name} is undefined: within every group the deviations from its median are equal (always so"
                    " with 2 values), so W is 0/0")
    elif statistic in ("anova", "hedges_g", "welch_t") and all(constant):
        return f"{name} is undefined: zero variance within every group"
    elif statistic == "welch_anova" and any(constant):
        return f"{name} is undefined: a group has zero variance, so its weight n/s^2 is infinite"
    elif statistic == "kruskal" and is_constant(np.concatenate(samples)):
        return f"{name} is undefined: every value is tied, so H is 0/0"
    elif statistic == "paired_t":
        if len(samples[0]) != len(samples[1]):
            raise ValueError(f"paired_t needs the same number of values on both sides, got {len(samples[0])} and"
                             f" {len(samples[1])}")
        if is_constant(samples[0] - samples[1], max(map(_magnitude, samples))):
            return f"{name} is undefined: every pair has the same difference, so the SD of the differences is 0"
    elif statistic in ("pearson", "spearman") and any(constant):
        return f"{name} is undefined: a variable is constant"
    elif statistic == "knee" and constant[0]:
        return f"{name} is undefined: the curve is flat"
    return ""
