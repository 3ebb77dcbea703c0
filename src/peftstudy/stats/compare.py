"""Pairwise comparisons of variants within a family (study, dataset, model, metric).

Runs that share a seed share data order and init, so two variants measured on the same seeds are compared
seed by seed (paired t), which removes the seed-to-seed variation both share; otherwise Welch's t, which
does not assume equal variances. All pairs of one family are corrected together for multiple comparisons.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from peftstudy.stats.degenerate import why_undefined
from peftstudy.stats.practical import label_practical_significance
from peftstudy.stats.tidy import (
    FAMILY,
    family_groups,
    finite,
    measured,
    sample_sd,
    variant_values,
)

CORRECTIONS = ("holm", "fdr_bh")


def pooled_sd(a, b) -> float:
    """sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)); NaN when either side has < 2 values."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return math.sqrt(((len(a) - 1) * sample_sd(a) ** 2 + (len(b) - 1) * sample_sd(b) ** 2) / (len(a) + len(b) - 2))


def hedges_g(a, b, confidence: float = 0.95) -> dict[str, float]:
    """Hedges' g of a - b with a normal-approximation CI.

    d = (mean_a - mean_b) / s_pooled (pooled SD as in pooled_sd), g = J d with Hedges' small-sample
    correction J = 1 - 3 / (4 (n_a + n_b) - 9), SE(g) = sqrt((n_a + n_b) / (n_a n_b) + g^2 / (2 (n_a + n_b)))
    (Hedges & Olkin 1985), CI = g -/+ z_{(1+confidence)/2} SE. The same between-variant g is used for paired
    designs so that effect sizes compare across families; the paired standardiser d_z is reported beside it.
    NaN with `hedges_g_note` saying why when a side has < 2 values or both have zero variance.
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    why = why_undefined("hedges_g", a, b)
    if why:
        return {"hedges_g": math.nan, "hedges_g_se": math.nan, "hedges_g_ci_low": math.nan,
                "hedges_g_ci_high": math.nan, "hedges_g_note": why}
    sd = pooled_sd(a, b)
    n_a, n_b = len(a), len(b)
    g = (1 - 3 / (4 * (n_a + n_b) - 9)) * (a.mean() - b.mean()) / sd
    se = math.sqrt((n_a + n_b) / (n_a * n_b) + g**2 / (2 * (n_a + n_b)))
    z = stats.norm.ppf((1 + confidence) / 2)
    return {"hedges_g": float(g), "hedges_g_se": se, "hedges_g_ci_low": float(g - z * se),
            "hedges_g_ci_high": float(g + z * se), "hedges_g_note": ""}


def choose_test(a: pd.Series, b: pd.Series) -> tuple[str, str]:
    """('paired_t' | 'welch_t', why) from the seeds each side was measured on (Series indexed by seed)."""
    if a.index.has_duplicates or b.index.has_duplicates:
        return "welch_t", "a seed appears twice in one variant, so seeds cannot pair runs"
    if set(a.index) == set(b.index) and len(a) >= 2:
        return "paired_t", f"both variants measured on the same {len(a)} seeds"
    if set(a.index) == set(b.index):
        return "welch_t", "fewer than 2 shared seeds"
    return "welch_t", "the variants were measured on different seeds"


def _difference_test(a: pd.Series, b: pd.Series, confidence: float) -> dict:
    """The chosen t-test of a - b, its CI, and why it is missing when it is undefined."""
    from scipy import stats

    test, reason = choose_test(a, b)
    out = {"test": test, "test_reason": reason, "n_paired": 0, "sd_difference": math.nan, "d_z": math.nan,
           "diff_ci_low": math.nan, "diff_ci_high": math.nan, "t": math.nan, "df": math.nan, "p_value": math.nan}
    difference = a.mean() - b.mean() if len(a) and len(b) else math.nan
    if test == "paired_t":
        seeds = sorted(a.index)
        x, y = a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy()
        diffs = x - y
        why = why_undefined("paired_t", x, y)
        # a difference constant up to rounding is constant: its ~1e-17 'SD' would give t ~ 1e16
        out.update(n_paired=len(seeds), sd_difference=0.0 if why else sample_sd(diffs))
        if why:  # every seed moves both sides alike: the difference is known exactly, t is 0/0
            out.update(test="none", test_reason=f"{reason}, and every seed gives the same difference: {why}",
                       diff_ci_low=float(diffs.mean()), diff_ci_high=float(diffs.mean()))
            return out
        result = stats.ttest_rel(x, y)
        out["d_z"] = float(diffs.mean() / out["sd_difference"])
    else:
        why = why_undefined("welch_t", a.to_numpy(), b.to_numpy())
        if len(a) < 2 or len(b) < 2:
            out.update(test="none", test_reason=f"{reason}, and a variant has fewer than 2 measured seeds: {why}")
            return out
        if why:  # both constant: the difference is known exactly, t is 0/0
            out.update(test="none", test_reason=f"{reason}, and both variants have zero variance: {why}",
                       diff_ci_low=float(difference), diff_ci_high=float(difference))
            return out
        with warnings.catch_warnings():
            # scipy warns when one side is constant (a deterministic metric); its variance is exactly 0, no loss
            warnings.filterwarnings("ignore", message="Precision loss occurred in moment calculation")
            result = stats.ttest_ind(a.to_numpy(), b.to_numpy(), equal_var=False)
    interval = result.confidence_interval(confidence_level=confidence)
    out.update(t=finite(result.statistic), df=finite(result.df), p_value=finite(result.pvalue),
               diff_ci_low=finite(interval.low), diff_ci_high=finite(interval.high))
    return out


def _oriented_pairs(variants: list, baseline_method: str | None):
    """Every unordered pair once, in variant order, with the baseline (if exactly one side is) as b."""
    for a, b in itertools.combinations(variants, 2):
        if baseline_method is not None and a[0] == baseline_method and b[0] != baseline_method:
            a, b = b, a
        if baseline_method is None:
            side = "none"
        else:
            side = {(False, True): "b", (True, True): "both"}.get((a[0] == baseline_method, b[0] == baseline_method),
                                                               "none")
        yield a, b, side


def correct_p_values(p_values, method: str = "holm", alpha: float = 0.05) -> np.ndarray:
    """statsmodels multipletests over the defined p-values; NaN (untestable) stays NaN and does not count."""
    from statsmodels.stats.multitest import multipletests

    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {method!r}")
    p_values = np.asarray(p_values, dtype=float)
    corrected = np.full(p_values.shape, math.nan)
    defined = np.isfinite(p_values)
    if defined.any():
        with _heap_frozen():
            corrected[defined] = multipletests(p_values[defined], alpha=alpha, method=method)[1]
    return corrected


@contextlib.contextmanager
def _heap_frozen():
    """statsmodels' Holm branch runs gc.collect() on every call, ~0.1 s with torch and pandas loaded, i.e.
    per family. gc.freeze() keeps existing objects out of that sweep for the call (numbers are unchanged);
    a heap the caller froze already is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def pairwise_comparisons(metrics: pd.DataFrame, baseline_method: str | None = None, correction: str = "holm",
                         alpha: float = 0.05, confidence: float = 0.95,
                         thresholds: Mapping | None = None) -> pd.DataFrame:
    """Every pair of variants per family: mean difference a - b with its t CI, the test, raw and corrected p,
    Hedges' g (and d_z when paired) and the practical-significance label.

    Test: paired t (scipy ttest_rel on seed-matched values; CI of the mean paired difference) when both
    variants were measured on the same >= 2 seeds, else Welch's t (Welch-Satterthwaite df and CI); `test`
    and `test_reason` record the choice, `test` is 'none' when t is undefined (a side with < 2 seeds, zero
    variance, or a seed-matched difference constant up to rounding: degenerate.why_undefined), and Hedges' g is
    NaN with `hedges_g_note` when undefined. Correction: `correction` ('holm' or 'fdr_bh', statsmodels
    multipletests) across the pairs of each family. With `baseline_method`, a pair with the baseline on one side has it as b, so the
    difference reads variant - baseline; `baseline_side` says 'b', 'both' or 'none'. `thresholds` feed
    practical.label_practical_significance (relative thresholds are relative to mean_b).
    """
    rows = []
    for family, group in family_groups(measured(metrics), FAMILY):
        variants = variant_values(group)
        family_rows = []
        for (a_key, b_key, side) in _oriented_pairs(list(variants), baseline_method):
            a, b = variants[a_key], variants[b_key]
            row = {
                **family, "method_a": a_key[0], "rank_a": a_key[1], "method_b": b_key[0], "rank_b": b_key[1],
                "baseline_side": side, "n_a": len(a), "n_b": len(b),
                "mean_a": float(a.mean()), "mean_b": float(b.mean()),
                "sd_a": sample_sd(a), "sd_b": sample_sd(b),
                "mean_difference": float(a.mean() - b.mean()), "confidence": confidence,
            }
            row.update(_difference_test(a, b, confidence))
            row.update(hedges_g(a.to_numpy(), b.to_numpy(), confidence))
            family_rows.append(row)
        corrected = correct_p_values([row["p_value"] for row in family_rows], correction, alpha)
        for row, p_corrected in zip(family_rows, corrected):
            row.update(p_corrected=float(p_corrected), correction=correction, alpha=alpha,
                       significant=bool(p_corrected < alpha))
        rows.extend(family_rows)
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS[:-3])
    return label_practical_significance(table, thresholds, alpha)[COMPARISON_COLUMNS]


COMPARISON_COLUMNS = FAMILY + [
    "method_a", "rank_a", "method_b", "rank_b", "baseline_side", "n_a", "n_b", "n_paired",
    "mean_a", "mean_b", "sd_a", "sd_b", "mean_difference", "sd_difference", "diff_ci_low", "diff_ci_high",
    "confidence", "test", "test_reason", "t", "df", "p_value", "p_corrected", "correction", "alpha", "significant",
    "hedges_g", "hedges_g_se", "hedges_g_ci_low", "hedges_g_ci_high", "hedges_g_note", "d_z",
    "threshold", "threshold_spec", "practical",
]
