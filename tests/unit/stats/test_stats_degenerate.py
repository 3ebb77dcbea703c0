"""Degenerate statistics are undefined, never huge: for every statistic the package computes, an input where it
is undefined at this n (zero variance up to rounding, too few values, ties everywhere, a constant variable) gives
NaN and its reason, and a nearby defined input still matches scipy / pingouin / kneed (the guard hides nothing)."""

import math

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from kneed import KneeLocator
from scipy import stats as scipy_stats

from peftstudy.stats import against_baselines as ab
from peftstudy.stats import (
    bootstrap_interval,
    hedges_g,
    is_constant,
    metric_correlations,
    one_way_anova,
    pairwise_comparisons,
    rank_study,
    seed_power,
    summarise,
    tukey_hsd,
    two_way_anova,
    why_undefined,
)
from peftstudy.stats.degenerate import RULES

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.dropna")

# The demo's case: 2 seeds per variant, so each variant's deviations from its median are equal (0.1 and 0.2)
# in exact arithmetic, and differ by a rounding error in floating point: scipy's Levene W was 1e31, p 1e-31.
DEMO = {("full", ""): [0.1, 0.3], ("lora", "8"): [0.2, 0.6]}
NEAR_CONSTANT = 0.1 + 0.2  # 0.30000000000000004: equal to 0.3 up to rounding


def tidy(groups, metric="bleu4", model="m", dataset="d", seeds=None):
    """{(method, rank): values} -> tidy rows, values on seeds 0, 1, ... (or `seeds[variant]`)."""
    return pd.DataFrame([{"study": "s", "dataset": dataset, "model": model, "method": method, "rank": rank,
                          "seed": (seeds or {}).get((method, rank), range(len(values)))[index], "metric": metric,
                          "value": float(value)}
                         for (method, rank), values in groups.items() for index, value in enumerate(values)])


def one_way(groups):
    table = one_way_anova(tidy(groups))
    assert len(table) == 1
    return table.iloc[0]


def comparison(a, b, same_seeds=True):
    seeds = None if same_seeds else {("full", ""): range(100, 100 + len(b))}
    table = pairwise_comparisons(tidy({("lora", "8"): a, ("full", ""): b}, seeds=seeds), "full")
    assert len(table) == 1
    return table.iloc[0]


def correlation(x, y):
    frame = pd.concat([tidy({("full", ""): x}, metric="bleu4"), tidy({("full", ""): y}, metric="rouge_l")])
    return metric_correlations(frame).iloc[0]


def knee(means):
    table = rank_study(tidy({("lora", str(rank)): [m, m] for rank, m in zip((2, 4, 8, 16, 32), means)}), "lora")
    return table.iloc[0]


# -- the degenerate side: (statistic, value, its reason) from the public functions -----------------------------------

def _levene():
    row = one_way(DEMO)
    return row["levene_statistic"], row["levene_note"]


def _levene_p():
    row = one_way(DEMO)
    return row["levene_p"], row["levene_note"]


def _shapiro():
    row = one_way(DEMO)  # residuals +/-0.1, +/-0.2: 2 degrees of freedom, symmetric by construction
    return row["shapiro_p"], row["shapiro_note"]


def _welch_anova():
    row = one_way({("full", ""): [1.0, 2.0, 3.5], ("lora", "8"): [NEAR_CONSTANT, 0.3, 0.3]})
    return row["welch_p"], row["welch_note"]


def _classic_f():
    row = one_way({("full", ""): [NEAR_CONSTANT, 0.3], ("lora", "8"): [0.7, 0.7]})
    return row["f"], row["skipped_reason"]


def _eta_squared():
    row = one_way({("full", ""): [NEAR_CONSTANT, 0.3], ("lora", "8"): [0.7, 0.7]})
    return row["eta_squared"], row["skipped_reason"]


def _two_way():
    groups = {(method, rank): values for method, rank, values in
              (("full", "", [NEAR_CONSTANT, 0.3]), ("lora", "8", [0.5, 0.5]))}
    shifted = {variant: [value + 1 for value in values] for variant, values in groups.items()}
    frame = pd.concat([tidy(groups, model="m1"), tidy(shifted, model="m2")])
    row = two_way_anova(frame, "model").iloc[0]
    return row["f"], row["skipped_reason"]


def _paired_t():
    row = comparison([0.3, 0.5], [0.1, 0.3])  # differences 0.19999999999999998 and 0.2: scipy's t was 1e16
    assert row["test"] == "none" and row["sd_difference"] == 0.0
    return row["p_value"], row["test_reason"]


def _d_z():
    row = comparison([0.3, 0.5], [0.1, 0.3])
    return row["d_z"], row["test_reason"]


def _welch_t():
    row = comparison([NEAR_CONSTANT, 0.3], [0.7, 0.7], same_seeds=False)
    return row["t"], row["test_reason"]


def _welch_t_one_seed():
    row = comparison([0.5], [0.7, 0.9], same_seeds=False)
    return row["p_value"], row["test_reason"]


def _hedges_g():
    row = comparison([NEAR_CONSTANT, 0.3], [0.7, 0.7], same_seeds=False)  # pooled SD ~3e-17: g was ~1e16
    return row["hedges_g"], row["hedges_g_note"]


def _pearson():
    row = correlation([NEAR_CONSTANT, 0.3, 0.3], [1.0, 2.0, 3.0])  # scipy says r = -0.5
    return row["pearson_r"], row["reason"]


def _spearman():
    row = correlation([NEAR_CONSTANT, 0.3, 0.3], [1.0, 2.0, 3.0])
    return row["spearman_rho"], row["reason"]


def _t_interval():
    row = summarise(tidy({("full", ""): [0.4]})).iloc[0]
    return row["ci_low"], row["ci_note"]


def _bootstrap_interval():
    row = summarise(tidy({("full", ""): [0.4]}), bootstrap={"resamples": 99, "seed": 0}).iloc[0]
    return row["ci_high"], row["ci_note"]


def _knee():
    row = knee([0.3, NEAR_CONSTANT, 0.3, NEAR_CONSTANT, 0.3])  # a rounding wiggle, not a curve
    return row["knee_rank"], row["knee_reason"]


def _rank_choice_share():
    table = rank_study(tidy({("lora", "2"): [1.0, 1.2], ("lora", "4"): [1.5], ("lora", "8"): [1.6, 1.4]}), "lora")
    return table["bootstrap_choice_fraction"].iloc[0], table["bootstrap_reason"].iloc[0]


def _rank_interval():
    table = rank_study(tidy({("lora", "2"): [1.0, 1.2], ("lora", "4"): [1.5], ("lora", "8"): [1.6, 1.4]}), "lora")
    row = table[table["rank"] == "4"].iloc[0]
    return row["ci_low"], row["ci_note"]


def _baseline_interval():
    cells = {("d", "m", "full", ""): {"ids": ["a"], "seeds": 2, "scores": {"rouge_l": np.array([0.9])}}}
    baselines = {"results/s/baselines/d/copy/metrics.json": {"baseline": {"name": "copy", "kind": "copy_input"},
                                                             "example_scores": {"ids": ["a"],
                                                                                "scores": {"rouge_l": [0.1]}}}}
    table = ab.compare_with_baselines(cells, baselines, resamples=99)
    row = table.iloc[0]
    assert row["verdict"] == ab.NOT_SEPARATED  # a single example cannot show 'better'
    learned = ab.learned(table, {"d": "generation"}).iloc[0]
    assert bool(learned["learned"]) is False and learned["learned"] is not None and "not shown" in learned["reason"]
    return row["cell_ci_low"], row["note"]


def _power():
    comparisons = pairwise_comparisons(tidy({("lora", "8"): [0.3, 0.5], ("full", ""): [0.1, 0.3]}), "full",
                                       thresholds={"bleu4": 0.05})
    row = seed_power(comparisons).iloc[0]
    return row["power_current"], row["reason"]


DEGENERATE = [
    ("levene_statistic", _levene, "deviations from its median are equal"),
    ("levene_p", _levene_p, "W is 0/0"),
    ("shapiro_p", _shapiro, "residual degrees of freedom"),
    ("welch_anova", _welch_anova, "a group has zero variance"),
    ("classic_f", _classic_f, "zero variance within every group"),
    ("eta_squared", _eta_squared, "zero variance within every group"),
    ("two_way_f", _two_way, "zero residual variance"),
    ("paired_t", _paired_t, "same difference"),
    ("d_z", _d_z, "SD of the differences is 0"),
    ("welch_t", _welch_t, "both variants have zero variance"),
    ("welch_t_one_seed", _welch_t_one_seed, "fewer than 2 measured seeds"),
    ("hedges_g", _hedges_g, "zero variance within every group"),
    ("pearson", _pearson, "constant"),
    ("spearman", _spearman, "constant"),
    ("t_interval", _t_interval, "needs at least 2 values, got 1"),
    ("bootstrap_interval", _bootstrap_interval, "needs at least 2 values, got 1"),
    ("knee", _knee, "flat curve"),
    ("rank_choice_share", _rank_choice_share, "needs at least 2 values in a group, got 1"),
    ("rank_interval", _rank_interval, "needs at least 2 values, got 1"),
    ("baseline_interval", _baseline_interval, "needs at least 2 values, got 1"),
    ("power", _power, "observed SD is 0"),
]


@pytest.mark.parametrize(("statistic", "compute", "reason"), DEGENERATE, ids=[case[0] for case in DEGENERATE])
def test_a_degenerate_input_gives_nan_and_says_why(statistic, compute, reason):
    value, why = compute()
    assert math.isnan(value), f"{statistic} is undefined here but was reported as {value!r}"
    assert isinstance(why, str) and reason in why


def test_the_demo_levene_case_no_longer_drives_the_recommendation():
    """Before: Levene W 1e31, p 1e-31 -> 'variances unequal' -> Welch. Now neither check could run, and the
    recommendation says so; the F itself is defined and unchanged."""
    assert scipy_stats.levene(*DEMO.values(), center="median").statistic > 1e20  # the number scipy gives
    row = one_way(DEMO)
    assert math.isnan(row["levene_p"]) and math.isnan(row["shapiro_p"]) and not row["assumptions_met"]
    assert row["recommended"] == "welch_anova" and "could not be checked" in row["recommendation_reason"]
    assert "unequal" not in row["recommendation_reason"]
    assert row["f"] == pytest.approx(scipy_stats.f_oneway(*DEMO.values()).statistic, rel=1e-10)
    assert row["welch_p"] == pytest.approx(pg.welch_anova(
        data=pd.DataFrame({"g": ["a", "a", "b", "b"], "v": DEMO[("full", "")] + DEMO[("lora", "8")]}),
        dv="v", between="g")["p_unc"].iloc[0], rel=1e-8)


def test_kruskal_with_every_value_tied_is_undefined_and_tukey_skips_constant_families():
    assert "every value is tied" in why_undefined("kruskal", [0.3, NEAR_CONSTANT], [0.3, 0.3])
    assert why_undefined("kruskal", [1.0, 1.0], [1.0, 2.0]) == ""
    assert tukey_hsd(tidy({("full", ""): [NEAR_CONSTANT, 0.3], ("lora", "8"): [0.7, 0.7]})).empty


# -- the defined side: the guard does not hide real values ---------------------------------------------------------

A, B = [0.31, 0.52, 0.48, 0.40], [0.12, 0.33, 0.25, 0.29]


def test_defined_anova_checks_match_scipy_and_pingouin():
    groups = {("full", ""): [0.1, 0.3, 0.35], ("lora", "8"): [0.2, 0.6, 0.9], ("lora", "16"): [0.5, 0.52, 0.8]}
    row = one_way(groups)
    values = list(groups.values())
    assert (row["levene_statistic"], row["levene_p"]) == pytest.approx(
        tuple(scipy_stats.levene(*values, center="median")), rel=1e-10)
    residuals = np.concatenate([np.subtract(v, np.mean(v)) for v in values])
    assert row["shapiro_p"] == pytest.approx(scipy_stats.shapiro(residuals).pvalue, rel=1e-8)
    assert row["kruskal_p"] == pytest.approx(scipy_stats.kruskal(*values).pvalue, rel=1e-10)
    long = pd.DataFrame([{"g": str(i), "v": v} for i, vs in enumerate(values) for v in vs])
    assert row["welch_p"] == pytest.approx(pg.welch_anova(data=long, dv="v", between="g")["p_unc"].iloc[0], rel=1e-8)
    assert row["p_value"] == pytest.approx(scipy_stats.f_oneway(*values).pvalue, rel=1e-10)
    assert row[["shapiro_note", "levene_note", "welch_note", "kruskal_note"]].tolist() == ["", "", "", ""]


def test_defined_t_tests_effect_sizes_and_correlations_match_scipy_and_pingouin():
    paired = comparison(A, B)
    assert paired["test"] == "paired_t" and paired["p_value"] == pytest.approx(scipy_stats.ttest_rel(A, B).pvalue,
                                                                                 rel=1e-10)
    welch = comparison(A, B, same_seeds=False)
    assert welch["p_value"] == pytest.approx(scipy_stats.ttest_ind(A, B, equal_var=False).pvalue, rel=1e-10)
    assert welch["hedges_g"] == pytest.approx(pg.compute_effsize(A, B, eftype="hedges"), rel=1e-10)
    assert hedges_g(A, B)["hedges_g_note"] == ""
    x, y = [0.3, 0.31, 0.35, 0.5], [1.0, 3.0, 2.0, 4.0]
    row = correlation(x, y)
    assert row["pearson_r"] == pytest.approx(scipy_stats.pearsonr(x, y).statistic, rel=1e-10)
    assert row["spearman_rho"] == pytest.approx(scipy_stats.spearmanr(x, y).statistic, rel=1e-10)


def test_defined_intervals_knee_and_baseline_intervals_match_scipy_and_kneed():
    row = summarise(tidy({("full", ""): A})).iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        scipy_stats.t.interval(0.95, len(A) - 1, np.mean(A), scipy_stats.sem(A)), rel=1e-10)
    assert row["ci_note"] == ""
    reference = scipy_stats.bootstrap((np.array(A),), np.mean, n_resamples=999, method="BCa",
                                      rng=np.random.default_rng(4)).confidence_interval
    assert bootstrap_interval(A, 0.95, 999, 4) == pytest.approx((reference.low, reference.high), rel=1e-12)
    means = [0.2, 0.5, 0.6, 0.62, 0.63]
    knee_row = knee(means)
    expected = KneeLocator([2, 4, 8, 16, 32], means, curve="concave", direction="increasing").knee
    assert knee_row["knee_rank"] == expected and knee_row["knee_reason"] == ""
    scores = np.array([0.2, 0.5, 0.9, 0.4])
    low, high = ab.mean_interval(scores, 0.95, 999, 0)
    reference = scipy_stats.bootstrap((scores,), np.mean, n_resamples=999, method="percentile",
                                      rng=np.random.default_rng(0)).confidence_interval
    assert (low, high) == pytest.approx((reference.low, reference.high), rel=1e-12)


# -- the guard itself ---------------------------------------------------------------------------------------------

def test_is_constant_is_rounding_only_not_a_small_real_spread():
    assert is_constant([NEAR_CONSTANT, 0.3]) and is_constant([0.0, 0.0]) and is_constant([])
    assert not is_constant([1e10, 1e10 + 1])  # one byte in ten gigabytes is a real difference
    assert not is_constant([1e-9, 2e-9])  # tiny values are compared with their own magnitude
    assert is_constant([1e-17], scale=0.3)  # a residual of data of magnitude 0.3


@pytest.mark.parametrize("statistic", sorted(RULES))
def test_every_rule_accepts_defined_data_and_refuses_too_few_values(statistic):
    defined = [[0.1, 0.25, 0.7, 0.3], [0.2, 0.6, 0.4, 0.45]]
    groups = 1 if statistic in ("mean_ci", "bootstrap_ci", "knee", "bootstrap_choice") else 2
    assert why_undefined(statistic, *defined[:groups]) == ""
    assert why_undefined(statistic, *([[0.5]] * groups)) != ""


def test_an_unknown_statistic_is_an_error():
    with pytest.raises(ValueError, match="unknown statistic 'cohen'"):
        why_undefined("cohen", [1.0, 2.0])
