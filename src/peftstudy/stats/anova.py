"""Analyses of variance across variants: one-way per family with its assumption checks and robust
alternatives, Tukey HSD post-hoc pairs, and two-way designs (variant x model, variant x dataset).

One-way families use only variants with at least 2 measured seeds (a variant seen once adds nothing to
the within-variant variance and cannot be checked); those left out are listed in `excluded_variants`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from peftstudy.stats.degenerate import is_constant, why_undefined
from peftstudy.stats.tidy import (
    FAMILY,
    family_groups,
    finite,
    measured,
    variant_label,
    variant_values,
)

ONE_WAY_COLUMNS = FAMILY + [
    "n_variants", "n_observations", "variants", "excluded_variants",
    "f", "df_between", "df_within", "p_value", "ss_between", "ss_within", "eta_squared", "omega_squared",
    "shapiro_w", "shapiro_p", "shapiro_note", "levene_statistic", "levene_p", "levene_note", "assumptions_met",
    "welch_f", "welch_df_between", "welch_df_within", "welch_p", "welch_note",
    "kruskal_h", "kruskal_df", "kruskal_p", "kruskal_note", "recommended", "recommendation_reason", "skipped_reason",
]
TUKEY_COLUMNS = FAMILY + ["method_a", "rank_a", "method_b", "rank_b", "mean_difference", "ci_low", "ci_high",
                          "p_adjusted", "reject", "alpha"]
TWO_WAY_TERMS = ("method_variant", "{factor}", "method_variant:{factor}", "Residual")


def _eligible_groups(group: pd.DataFrame):
    """(variants with >= 2 values as {(method, rank): values}, labels of the excluded ones)."""
    variants = variant_values(group)
    kept = {key: values for key, values in variants.items() if len(values) >= 2}
    excluded = [variant_label(*key) for key, values in variants.items() if len(values) < 2]
    return kept, excluded


def _long(kept: dict) -> pd.DataFrame:
    """value / variant columns; the variant is coded 'v000', 'v001', ... so every library orders levels alike."""
    return pd.DataFrame([{"value": float(value), "variant": f"v{index:03d}"}
                         for index, values in enumerate(kept.values()) for value in values])


def recommended_test(shapiro_p: float, levene_p: float, welch_p: float, alpha: float) -> tuple[bool, str, str]:
    """(assumptions_met, recommended test, why): normality failure -> Kruskal-Wallis; unequal variances ->
    Welch; both checks passed -> classic; a check that could not run (NaN p: undefined, never read as a pass or a
    failure) -> Welch (it does not need equal variances)."""
    normal = None if math.isnan(shapiro_p) else shapiro_p >= alpha
    equal = None if math.isnan(levene_p) else levene_p >= alpha
    if normal is False:
        return False, "kruskal_wallis", f"Shapiro-Wilk on residuals p < {alpha}: residuals not normal"
    if equal is False:
        if math.isnan(welch_p):
            return False, "kruskal_wallis", f"Levene p < {alpha} but Welch's ANOVA is undefined here"
        return False, "welch_anova", f"Levene (median) p < {alpha}: variances unequal"
    if normal and equal:
        return True, "classic_anova", f"Shapiro-Wilk and Levene both p >= {alpha}"
    if math.isnan(welch_p):
        return False, "kruskal_wallis", "an assumption could not be checked and Welch's ANOVA is undefined here"
    return False, "welch_anova", ("an assumption could not be checked (its test is undefined here: see shapiro_note"
                                  " and levene_note)")


def _guarded(why: str, test, *args, **kwargs) -> tuple[float, float, str]:
    """(statistic, p, '') of a scipy test, or (NaN, NaN, why) when degenerate.why_undefined said why it is
    undefined: a near-zero denominator gives a huge finite number (Levene W = 6e31 with 2 seeds), not a NaN."""
    if why:
        return math.nan, math.nan, why
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        result = test(*args, **kwargs)
    statistic, p = finite(result.statistic), finite(result.pvalue)
    if not (math.isfinite(statistic) and math.isfinite(p)):
        return math.nan, math.nan, f"{test.__name__} returned a non-finite statistic or p"
    return statistic, p, ""


def _one_way_family(kept: dict, alpha: float) -> dict:
    from scipy import stats
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm
    from statsmodels.stats.oneway import anova_oneway

    data = _long(kept)
    fit = ols("value ~ C(variant)", data=data).fit()
    table = anova_lm(fit, typ=2)
    ss_between, ss_within = float(table.loc["C(variant)", "sum_sq"]), float(table.loc["Residual", "sum_sq"])
    df_between, df_within = float(table.loc["C(variant)", "df"]), float(table.loc["Residual", "df"])
    ms_within = ss_within / df_within
    ss_total = ss_between + ss_within
    row = {
        "f": finite(table.loc["C(variant)", "F"]), "df_between": df_between, "df_within": df_within,
        "p_value": finite(table.loc["C(variant)", "PR(>F)"]), "ss_between": ss_between, "ss_within": ss_within,
        "eta_squared": ss_between / ss_total,
        "omega_squared": (ss_between - df_between * ms_within) / (ss_total + ms_within),
    }
    residuals = fit.resid.to_numpy()
    groups = [values.to_numpy() for values in kept.values()]
    row["shapiro_w"], row["shapiro_p"], row["shapiro_note"] = _guarded(
        why_undefined("shapiro_residuals", *groups), stats.shapiro, residuals)
    row["levene_statistic"], row["levene_p"], row["levene_note"] = _guarded(
        why_undefined("levene", *groups), stats.levene, *groups, center="median")
    welch_why = why_undefined("welch_anova", *groups)
    if welch_why:
        row.update(welch_f=math.nan, welch_df_between=math.nan, welch_df_within=math.nan, welch_p=math.nan,
                   welch_note=welch_why)
    else:
        welch = anova_oneway(data["value"].to_numpy(), data["variant"].to_numpy(), use_var="unequal")
        row.update(welch_f=finite(welch.statistic), welch_df_between=finite(welch.df[0]),
                   welch_df_within=finite(welch.df[1]), welch_p=finite(welch.pvalue), welch_note="")
    row["kruskal_h"], row["kruskal_p"], row["kruskal_note"] = _guarded(why_undefined("kruskal", *groups),
                                                                      stats.kruskal, *groups)
    row["kruskal_df"] = float(len(kept) - 1)
    met, recommended, reason = recommended_test(row["shapiro_p"], row["levene_p"], row["welch_p"], alpha)
    row.update(assumptions_met=met, recommended=recommended, recommendation_reason=reason, skipped_reason="")
    return row


def one_way_anova(metrics: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per family: classic one-way ANOVA (statsmodels OLS + anova_lm) with eta^2 = SS_b / SS_t and
    omega^2 = (SS_b - df_b MS_w) / (SS_t + MS_w), Shapiro-Wilk on the residuals, Levene (center='median',
    i.e. Brown-Forsythe), Welch's ANOVA (statsmodels anova_oneway, use_var='unequal') and Kruskal-Wallis
    (scipy), and `recommended`: 'classic_anova' when both checks pass at `alpha`, 'welch_anova' when variances
    are unequal (or a check could not run), 'kruskal_wallis' when residuals are not normal.

    Families where F is undefined (fewer than 2 variants with n >= 2, zero within-variant variance) get a
    row with `skipped_reason` and NaN statistics. A check or test undefined at this n (degenerate.why_undefined:
    Shapiro-Wilk with < 3 residual df, Levene when every variant's deviations from its median are equal, as with
    2 seeds, Welch with a constant variant) is NaN with its `*_note`, and the recommendation reads it as 'could not
    be checked', never as a pass or a failure.
    """
    rows = []
    for family, group in family_groups(measured(metrics), FAMILY):
        kept, excluded = _eligible_groups(group)
        row = {**family, "n_variants": len(kept), "n_observations": int(sum(len(v) for v in kept.values())),
               "variants": "; ".join(variant_label(*key) for key in kept), "excluded_variants": "; ".join(excluded)}
        if len(kept) < 2:
            row["skipped_reason"] = "fewer than 2 variants with at least 2 measured seeds"
        elif why := why_undefined("anova", *kept.values()):
            row["skipped_reason"] = why
        else:
            row.update(_one_way_family(kept, alpha))
        rows.append(row)
    return pd.DataFrame(rows, columns=ONE_WAY_COLUMNS)


def tukey_hsd(metrics: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Tukey HSD (Tukey-Kramer for unequal n; statsmodels pairwise_tukeyhsd) for every pair of a family,
    as a - b with its simultaneous CI at 1 - alpha and the family-wise adjusted p.

    Uses the same variants as one_way_anova (n >= 2); families it skips are omitted here.
    """
    from statsmodels.stats.multicomp import pairwise_tukeyhsd

    rows = []
    for family, group in family_groups(measured(metrics), FAMILY):
        kept, _ = _eligible_groups(group)
        if len(kept) < 2 or why_undefined("anova", *kept.values()):
            continue
        data = _long(kept)
        result = pairwise_tukeyhsd(data["value"].to_numpy(), data["variant"].to_numpy(), alpha=alpha)
        keys = list(kept)
        codes = [f"v{index:03d}" for index in range(len(keys))]
        assert list(result.groupsunique) == codes
        pairs = [(i, j) for i in range(len(keys)) for j in range(i + 1, len(keys))]
        for (i, j), meandiff, (low, high), p, reject in zip(pairs, result.meandiffs, result.confint,
                                                             result.pvalues, result.reject):
            # statsmodels reports mean_j - mean_i; the table reads a - b with a = i, b = j.
            rows.append({**family, "method_a": keys[i][0], "rank_a": keys[i][1], "method_b": keys[j][0],
                         "rank_b": keys[j][1], "mean_difference": -float(meandiff), "ci_low": -float(high),
                         "ci_high": -float(low), "p_adjusted": float(p), "reject": bool(reject), "alpha": alpha})
    return pd.DataFrame(rows, columns=TUKEY_COLUMNS)


def two_way_anova(metrics: pd.DataFrame, factor: str = "model", anova_type: int = 2) -> pd.DataFrame:
    """Variant x `factor` ('model' per (study, dataset, metric), or 'dataset' per (study, model, metric)).

    statsmodels OLS `value ~ C(method_variant, Sum) * C(factor, Sum)` with anova_lm of `anova_type`
    (2 by default: each main effect adjusted for the other; 3 tests each term given all others, which needs
    the sum-to-zero contrasts used here). partial eta^2 = SS_term / (SS_term + SS_residual).
    Unbalanced designs are fine; when a variant x factor cell is empty or no cell has 2 values the
    interaction is not estimable and is dropped (`note` says so); when even the additive model is not
    estimable (fewer than 2 levels of a factor, rank-deficient design, no residual df, zero residual
    variance) the group gets one row with `skipped_reason`.
    """
    if factor not in ("model", "dataset"):
        raise ValueError(f"factor must be 'model' or 'dataset', got {factor!r}")
    if anova_type not in (2, 3):
        raise ValueError(f"anova_type must be 2 or 3, got {anova_type!r}")
    fixed = "dataset" if factor == "model" else "model"
    keys = ["study", fixed, "metric"]
    rows = []
    for key, group in family_groups(measured(metrics), keys):
        rows.extend(_two_way_group(key, group, factor, anova_type))
    columns = keys + ["factor", "term", "sum_sq", "df", "f", "p_value", "partial_eta_squared", "anova_type",
                      "formula", "n_observations", "note", "skipped_reason"]
    return pd.DataFrame(rows, columns=columns)


def _two_way_group(key: dict, group: pd.DataFrame, factor: str, anova_type: int) -> list[dict]:
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    data = pd.DataFrame({"value": group["value"].to_numpy(),
                         "variant": [variant_label(m, r) for m, r in zip(group["method"], group["rank"])],
                         "level": group[factor].astype(str).to_numpy()})
    base = {**key, "factor": factor, "anova_type": anova_type, "n_observations": len(data)}
    skipped = {**base, "term": "", "note": "", "formula": ""}
    if data["variant"].nunique() < 2 or data["level"].nunique() < 2:
        return [{**skipped, "skipped_reason": f"needs at least 2 variants and 2 {factor}s"}]
    cells = data.groupby(["variant", "level"]).size()
    full_cells = len(cells) == data["variant"].nunique() * data["level"].nunique()
    note = ""
    if full_cells and len(data) > len(cells):
        formula = "value ~ C(variant, Sum) * C(level, Sum)"
    else:
        formula = "value ~ C(variant, Sum) + C(level, Sum)"
        note = ("interaction dropped: " + ("some variant x " + factor + " cells are empty" if not full_cells
                                           else "no cell has 2 values, so no residual df with it"))
    shown = formula.replace("variant", "method_variant").replace("level", factor)
    skipped["formula"] = shown
    fit = ols(formula, data=data).fit()
    if np.linalg.matrix_rank(fit.model.exog) < fit.model.exog.shape[1]:
        return [{**skipped, "skipped_reason": "design not estimable (rank-deficient)"}]
    if fit.df_resid < 1:
        return [{**skipped, "skipped_reason": "no residual degrees of freedom"}]
    if is_constant(fit.resid, float(data["value"].abs().max())):
        return [{**skipped, "skipped_reason": "zero residual variance: F undefined"}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = anova_lm(fit, typ=anova_type)
    names = {"C(variant, Sum)": "method_variant", "C(level, Sum)": factor,
             "C(variant, Sum):C(level, Sum)": f"method_variant:{factor}", "Residual": "Residual"}
    ss_residual = float(table.loc["Residual", "sum_sq"])
    rows = []
    for term, stats_row in table.iterrows():
        if term not in names:  # the Intercept of a Type III table
            continue
        sum_sq = float(stats_row["sum_sq"])
        is_residual = term == "Residual"
        rows.append({**base, "term": names[term], "sum_sq": sum_sq, "df": float(stats_row["df"]),
                     "f": math.nan if is_residual else finite(stats_row["F"]),
                     "p_value": math.nan if is_residual else finite(stats_row["PR(>F)"]),
                     "partial_eta_squared": math.nan if is_residual else sum_sq / (sum_sq + ss_residual),
                     "formula": shown,
                     "note": note, "skipped_reason": ""})
    return rows
