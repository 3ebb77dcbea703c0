"""ANOVAs against other routes: scipy's f_oneway and pingouin's pure-pandas one- and two-way ANOVA and Welch
ANOVA (the code uses statsmodels), hand formulas for eta^2, omega^2, Kruskal-Wallis H and Brown-Forsythe,
scipy's tukey_hsd for statsmodels' pairwise_tukeyhsd, and least squares by hand for unbalanced designs."""

import math

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as scipy_stats

from peftstudy.stats import one_way_anova, tukey_hsd, two_way_anova
from peftstudy.stats.anova import recommended_test

# pingouin 0.7 itself calls DataFrame.dropna(inplace=True), which pandas 3.1 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.dropna")

VARIANTS = [("full", ""), ("lora", "4"), ("lora", "8"), ("lora", "16")]


def tidy(groups, model="m", dataset="d", metric="bleu4"):
    """groups: {(method, rank): values}; values get seeds 0, 1, ..."""
    return pd.DataFrame([{"study": "s", "dataset": dataset, "model": model, "method": method, "rank": rank,
                          "seed": seed, "metric": metric, "value": float(value)}
                         for (method, rank), values in groups.items() for seed, value in enumerate(values)])


def normal_groups(seed=11, sizes=(6, 5, 6, 4), means=(30.0, 28.5, 29.6, 30.1), sd=1.0):
    rng = np.random.default_rng(seed)
    return {variant: rng.normal(mean, sd, size) for variant, size, mean in zip(VARIANTS, sizes, means)}


def long_frame(groups):
    return pd.DataFrame([{"group": f"{method}{rank}", "value": value}
                         for (method, rank), values in groups.items() for value in values])


def only_row(table):
    assert len(table) == 1
    return table.iloc[0]


def test_one_way_matches_scipy_pingouin_and_the_hand_effect_sizes():
    groups = normal_groups()
    row = only_row(one_way_anova(tidy(groups)))
    f, p = scipy_stats.f_oneway(*groups.values())
    reference = pg.anova(data=long_frame(groups), dv="value", between="group", detailed=True)
    assert (row["f"], row["p_value"]) == pytest.approx((f, p), rel=1e-10)
    assert row["f"] == pytest.approx(reference["F"].iloc[0], rel=1e-10)
    assert (row["df_between"], row["df_within"]) == (3, 17) and row["n_observations"] == 21
    values = np.concatenate(list(groups.values()))
    ss_between = sum(len(v) * (v.mean() - values.mean()) ** 2 for v in groups.values())
    ss_total = ((values - values.mean()) ** 2).sum()
    ms_within = (ss_total - ss_between) / 17
    assert row["eta_squared"] == pytest.approx(ss_between / ss_total, rel=1e-10)
    assert row["eta_squared"] == pytest.approx(reference["np2"].iloc[0], rel=1e-10)  # one-way: partial = total
    assert row["omega_squared"] == pytest.approx((ss_between - 3 * ms_within) / (ss_total + ms_within), rel=1e-10)


def test_welch_anova_matches_pingouin():
    groups = normal_groups(sizes=(6, 5, 7, 4))
    groups[("lora", "16")] = groups[("lora", "16")] * 3 - 60  # a wider spread, so the Welch weights matter
    row = only_row(one_way_anova(tidy(groups)))
    reference = pg.welch_anova(data=long_frame(groups), dv="value", between="group").iloc[0]
    assert (row["welch_f"], row["welch_p"]) == pytest.approx((reference["F"], reference["p_unc"]), rel=1e-9)
    assert (row["welch_df_between"], row["welch_df_within"]) == pytest.approx((reference["ddof1"], reference["ddof2"]))


def test_kruskal_matches_the_h_formula_without_ties():
    groups = normal_groups()
    row = only_row(one_way_anova(tidy(groups)))
    values = np.concatenate(list(groups.values()))
    ranks = scipy_stats.rankdata(values)
    n, start, h = len(values), 0, 0.0
    for group in groups.values():
        h += ranks[start:start + len(group)].sum() ** 2 / len(group)
        start += len(group)
    h = 12 / (n * (n + 1)) * h - 3 * (n + 1)
    assert row["kruskal_h"] == pytest.approx(h, rel=1e-10)
    assert row["kruskal_p"] == pytest.approx(scipy_stats.chi2.sf(h, 3), rel=1e-10)


def test_levene_median_is_brown_forsythe_and_shapiro_sees_the_residuals():
    groups = normal_groups()
    row = only_row(one_way_anova(tidy(groups)))
    deviations = [np.abs(v - np.median(v)) for v in groups.values()]
    f, p = scipy_stats.f_oneway(*deviations)
    assert (row["levene_statistic"], row["levene_p"]) == pytest.approx((f, p), rel=1e-10)
    residuals = np.concatenate([v - v.mean() for v in groups.values()])
    w, p = scipy_stats.shapiro(residuals)
    assert (row["shapiro_w"], row["shapiro_p"]) == pytest.approx((w, p), rel=1e-8)


def test_recommendation_follows_the_checks():
    assert recommended_test(0.5, 0.5, 0.01, 0.05)[:2] == (True, "classic_anova")
    assert recommended_test(0.5, 0.01, 0.01, 0.05)[:2] == (False, "welch_anova")
    assert recommended_test(0.01, 0.01, 0.01, 0.05)[:2] == (False, "kruskal_wallis")
    assert recommended_test(0.01, 0.5, 0.01, 0.05)[:2] == (False, "kruskal_wallis")
    assert recommended_test(math.nan, 0.5, 0.01, 0.05)[:2] == (False, "welch_anova")
    assert recommended_test(math.nan, 0.5, math.nan, 0.05)[:2] == (False, "kruskal_wallis")
    normal = only_row(one_way_anova(tidy(normal_groups())))
    assert normal["shapiro_p"] >= 0.05 and normal["levene_p"] >= 0.05
    assert (normal["assumptions_met"], normal["recommended"]) == (True, "classic_anova")
    skewed = {variant: np.array([1.0, 1.1, 0.9, 1.05, 0.95, 9.0]) + shift for variant, shift in zip(VARIANTS, range(4))}
    row = only_row(one_way_anova(tidy(skewed)))
    assert row["shapiro_p"] < 0.05 and row["recommended"] == "kruskal_wallis"


def test_undefined_families_are_skipped_with_a_reason():
    single = tidy({("full", ""): [1.0, 2.0, 3.0], ("lora", "8"): [2.0]})
    row = only_row(one_way_anova(single))
    assert "fewer than 2 variants" in row["skipped_reason"] and math.isnan(row["f"])
    assert row["excluded_variants"] == "lora r=8" and row["variants"] == "full"
    flat = only_row(one_way_anova(tidy({("full", ""): [1.0, 1.0], ("lora", "8"): [2.0, 2.0]})))
    assert "zero variance" in flat["skipped_reason"] and math.isnan(flat["p_value"])
    assert tukey_hsd(pd.concat([single, tidy({("full", ""): [1.0, 1.0], ("lora", "8"): [2.0, 2.0]}, model="x")])).empty


def test_nan_values_and_single_seed_variants_are_left_out():
    groups = normal_groups()
    data = pd.concat([tidy(groups), tidy({("lora", "32"): [29.0]}),
                      tidy({("full", ""): [math.nan]}).assign(seed=99)])
    row = only_row(one_way_anova(data))
    assert row["excluded_variants"] == "lora r=32" and row["n_observations"] == 21
    assert row["f"] == pytest.approx(scipy_stats.f_oneway(*groups.values())[0], rel=1e-10)


def test_welch_is_undefined_when_a_variant_has_zero_variance():
    groups = normal_groups()
    groups[("lora", "16")] = np.array([29.0, 29.0, 29.0, 29.0])
    row = only_row(one_way_anova(tidy(groups)))
    assert math.isnan(row["welch_p"]) and "zero variance" in row["welch_note"]
    assert row["f"] == pytest.approx(scipy_stats.f_oneway(*groups.values())[0], rel=1e-10)


def test_tukey_matches_scipy():
    groups = normal_groups()
    table = tukey_hsd(tidy(groups), alpha=0.05)
    reference = scipy_stats.tukey_hsd(*groups.values())
    interval = reference.confidence_interval(confidence_level=0.95)
    assert len(table) == 6
    position = {variant: index for index, variant in enumerate(VARIANTS)}
    for row in table.itertuples():
        i, j = position[(row.method_a, row.rank_a)], position[(row.method_b, row.rank_b)]
        assert i < j
        assert row.mean_difference == pytest.approx(groups[VARIANTS[i]].mean() - groups[VARIANTS[j]].mean())
        assert row.p_adjusted == pytest.approx(reference.pvalue[i, j], rel=1e-6, abs=1e-9)
        assert (row.ci_low, row.ci_high) == pytest.approx((interval.low[i, j], interval.high[i, j]), rel=1e-6)
        assert row.reject == (reference.pvalue[i, j] < 0.05)


def two_factor_design(cells, seed=3):
    """cells: {(variant, model): n}; the value depends on both, with noise."""
    rng = np.random.default_rng(seed)
    effects = {("full", ""): 1.0, ("lora", "8"): 0.0, ("lora", "16"): 0.6}
    frames = []
    for (variant, model), n in cells.items():
        values = 30 + effects[variant] + (1.5 if model == "big" else 0.0) + rng.normal(0, 0.5, n)
        frames.append(tidy({variant: values}, model=model))
    return pd.concat(frames, ignore_index=True)


def terms(table):
    return {row.term: row for row in table.itertuples()}


def test_balanced_two_way_matches_pingouin_and_types_agree():
    variants = [("full", ""), ("lora", "8"), ("lora", "16")]
    data = two_factor_design({(variant, model): 4 for variant in variants for model in ("small", "big")})
    table = two_way_anova(data, factor="model", anova_type=2)
    long = pd.DataFrame({"value": data["value"], "variant": data["method"] + data["rank"], "model": data["model"]})
    reference = pg.anova(data=long, dv="value", between=["variant", "model"], ss_type=2).set_index("Source")
    mine = terms(table)
    for term, source in (("method_variant", "variant"), ("model", "model"),
                         ("method_variant:model", "variant * model")):
        assert mine[term].sum_sq == pytest.approx(reference.loc[source, "SS"], rel=1e-9)
        assert mine[term].df == reference.loc[source, "DF"]
        assert (mine[term].f, mine[term].p_value) == pytest.approx(
            (reference.loc[source, "F"], reference.loc[source, "p_unc"]), rel=1e-9)
        assert mine[term].partial_eta_squared == pytest.approx(reference.loc[source, "np2"], rel=1e-9)
    assert mine["Residual"].sum_sq == pytest.approx(reference.loc["Residual", "SS"], rel=1e-9)
    type_three = terms(two_way_anova(data, factor="model", anova_type=3))
    assert set(type_three) == set(mine)  # the Intercept row of Type III is not a term of interest
    for term in mine:  # balanced design with sum-to-zero contrasts: Type II and Type III coincide
        assert type_three[term].sum_sq == pytest.approx(mine[term].sum_sq, rel=1e-9)


def residual_ss(columns, y):
    design = np.column_stack(columns)
    fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return float(((y - fitted) ** 2).sum())


def test_missing_cell_drops_the_interaction_and_matches_least_squares_by_hand():
    cells = {(("full", ""), "small"): 3, (("full", ""), "big"): 4, (("lora", "8"), "small"): 3,
             (("lora", "8"), "big"): 2, (("lora", "16"), "small"): 3}  # lora r=16 never ran on 'big'
    data = two_factor_design(cells)
    table = two_way_anova(data, factor="model")
    assert set(table["term"]) == {"method_variant", "model", "Residual"}
    assert set(table["note"]) == {"interaction dropped: some variant x model cells are empty"}
    assert set(table["formula"]) == {"value ~ C(method_variant, Sum) + C(model, Sum)"}
    y = data["value"].to_numpy()
    one = np.ones(len(y))
    variant_dummies = [(data["rank"] == rank).to_numpy(float) for rank in ("8", "16")]
    model_dummy = (data["model"] == "big").to_numpy(float)
    full = residual_ss([one, *variant_dummies, model_dummy], y)
    mine = terms(table)
    assert mine["method_variant"].sum_sq == pytest.approx(residual_ss([one, model_dummy], y) - full, rel=1e-9)
    assert mine["model"].sum_sq == pytest.approx(residual_ss([one, *variant_dummies], y) - full, rel=1e-9)
    assert mine["Residual"].df == len(y) - 4


def test_two_way_needs_two_levels_of_each_factor():
    data = two_factor_design({(("full", ""), "small"): 3, (("lora", "8"), "small"): 3})
    table = two_way_anova(data, factor="model")
    assert len(table) == 1 and "2 models" in table["skipped_reason"].iloc[0]
    by_dataset = two_way_anova(pd.concat([data, data.assign(dataset="e")]), factor="dataset")
    assert set(by_dataset.columns) >= {"study", "model", "metric", "factor"} and "dataset" not in by_dataset.columns
    assert set(by_dataset["term"]) == {"method_variant", "dataset", "method_variant:dataset", "Residual"}


def test_two_seeds_per_variant_leave_levene_undefined_and_say_so():
    groups = {variant: [30.0 + index, 30.5 + 2 * index] for index, variant in enumerate(VARIANTS)}
    row = only_row(one_way_anova(tidy(groups)))
    assert math.isnan(row["levene_p"]) and not row["assumptions_met"]
    assert "could not be checked" in row["recommendation_reason"] and row["recommended"] == "welch_anova"
    assert row["f"] == pytest.approx(scipy_stats.f_oneway(*groups.values())[0], rel=1e-10)
