"""pairwise_comparisons against independent routes: statsmodels t-tests and intervals (the code uses scipy),
pingouin's effect sizes, hand formulas for Hedges' g and its SE, Holm and Benjamini-Hochberg by hand."""

import math

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from peftstudy.stats import hedges_g, pairwise_comparisons

FULL = [30.1, 31.4, 29.8, 30.6, 31.0]
LORA = [29.0, 29.9, 28.7, 29.5, 30.2]


def tidy(variants, metric="bleu4", model="m"):
    """{(method, rank): {seed: value}} -> tidy metrics rows."""
    return pd.DataFrame([{"study": "s", "dataset": "d", "model": model, "method": method, "rank": rank, "seed": seed,
                          "metric": metric, "value": value}
                         for (method, rank), values in variants.items() for seed, value in values.items()])


def seeds(values, start=0):
    return {start + index: value for index, value in enumerate(values)}


def pair(table, method_a, rank_a, method_b, rank_b):
    rows = table[(table["method_a"] == method_a) & (table["rank_a"] == rank_a)
                 & (table["method_b"] == method_b) & (table["rank_b"] == rank_b)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_different_seeds_use_welch_and_match_statsmodels():
    table = pairwise_comparisons(tidy({("full", ""): seeds(FULL), ("lora", "8"): seeds(LORA, start=10)}),
                                 baseline_method="full")
    row = pair(table, "lora", "8", "full", "")
    t, p, df = ttest_ind(LORA, FULL, usevar="unequal")
    low, high = CompareMeans(DescrStatsW(LORA), DescrStatsW(FULL)).tconfint_diff(alpha=0.05, usevar="unequal")
    assert (row["test"], row["n_paired"], row["baseline_side"]) == ("welch_t", 0, "b")
    assert "different seeds" in row["test_reason"]
    assert (row["t"], row["df"], row["p_value"]) == pytest.approx((t, df, p), rel=1e-10)
    assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((low, high), rel=1e-10)
    assert row["mean_difference"] == pytest.approx(np.mean(LORA) - np.mean(FULL))


def test_same_seeds_are_paired_by_seed_and_match_the_one_sample_t_on_differences():
    lora = seeds(LORA)
    shuffled = dict(reversed(list(lora.items())))  # row order must not matter, only the seed
    table = pairwise_comparisons(tidy({("full", ""): seeds(FULL), ("lora", "8"): shuffled}), baseline_method="full")
    row = pair(table, "lora", "8", "full", "")
    differences = DescrStatsW(np.array(LORA) - np.array(FULL))
    t, p, df = differences.ttest_mean(0)
    assert (row["test"], row["n_paired"]) == ("paired_t", 5)
    assert (row["t"], row["df"], row["p_value"]) == pytest.approx((t, df, p), rel=1e-10)
    assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(differences.tconfint_mean(0.05), rel=1e-10)
    assert row["sd_difference"] == pytest.approx(differences.std_mean * math.sqrt(5))


def test_paired_d_z_matches_pingouin_and_t_over_root_n():
    row = pairwise_comparisons(tidy({("full", ""): seeds(FULL), ("lora", "8"): seeds(LORA)}), "full").iloc[0]
    assert row["d_z"] == pytest.approx(pg.compute_effsize(LORA, FULL, paired=True, eftype="cohen_dz"), rel=1e-10)
    assert row["d_z"] == pytest.approx(row["t"] / math.sqrt(5), rel=1e-10)


def test_hedges_g_matches_pingouin_and_the_hand_formulas():
    a, b = np.array([29.0, 29.9, 28.7, 29.5]), np.array(FULL)
    result = hedges_g(a, b, confidence=0.95)
    n_a, n_b = len(a), len(b)
    pooled = math.sqrt(((n_a - 1) * a.var(ddof=1) + (n_b - 1) * b.var(ddof=1)) / (n_a + n_b - 2))
    g = (a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (n_a + n_b) - 9))
    se = math.sqrt((n_a + n_b) / (n_a * n_b) + g**2 / (2 * (n_a + n_b)))
    assert result["hedges_g"] == pytest.approx(pg.compute_effsize(a, b, paired=False, eftype="hedges"), rel=1e-10)
    assert result["hedges_g"] == pytest.approx(g, rel=1e-12)
    assert result["hedges_g_se"] == pytest.approx(se, rel=1e-12)
    assert (result["hedges_g_ci_low"], result["hedges_g_ci_high"]) == pytest.approx((g - 1.959963984540054 * se,
                                                                                     g + 1.959963984540054 * se))
    # pingouin's interval uses the same Hedges & Olkin SE with a t quantile: recover the SE from its width
    low, high = pg.compute_esci(stat=g, nx=n_a, ny=n_b, eftype="cohen", confidence=0.95, decimals=14)
    assert (high - low) / 2 / scipy_stats.t.ppf(0.975, n_a + n_b - 2) == pytest.approx(se, rel=1e-9)


def holm_by_hand(p_values):
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - position) * p_values[index]))
        adjusted[index] = running
    return adjusted


def bh_by_hand(p_values):
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 1.0
    for position in reversed(range(m)):
        index = order[position]
        running = min(running, p_values[index] * m / (position + 1))
        adjusted[index] = running
    return adjusted


def four_variants():
    rng = np.random.default_rng(5)
    base = rng.normal(30, 1, 4)
    return tidy({("full", ""): seeds(base), ("lora", "4"): seeds(base - 1.5 + rng.normal(0, 0.4, 4)),
                 ("lora", "8"): seeds(base - 0.4 + rng.normal(0, 0.4, 4)),
                 ("lora", "16"): seeds(base + rng.normal(0, 0.4, 4))})


@pytest.mark.parametrize(("correction", "by_hand"), [("holm", holm_by_hand), ("fdr_bh", bh_by_hand)])
def test_correction_across_the_family_matches_the_hand_procedure(correction, by_hand):
    table = pairwise_comparisons(four_variants(), baseline_method="full", correction=correction)
    assert len(table) == 6 and set(table["correction"]) == {correction}
    assert table["p_corrected"].tolist() == pytest.approx(by_hand(table["p_value"].tolist()), rel=1e-12)
    assert table["significant"].tolist() == (table["p_corrected"] < 0.05).tolist()


def test_holm_and_bh_differ_and_families_are_corrected_separately():
    two_models = pd.concat([four_variants(), four_variants().assign(model="other")])
    holm = pairwise_comparisons(two_models, correction="holm")
    bh = pairwise_comparisons(two_models, correction="fdr_bh")
    for model in ("m", "other"):
        family = holm[holm["model"] == model]
        assert family["p_corrected"].tolist() == pytest.approx(holm_by_hand(family["p_value"].tolist()), rel=1e-12)
    assert (bh["p_corrected"] <= holm["p_corrected"] + 1e-15).all() and (bh["p_corrected"] < holm["p_corrected"]).any()


def test_baseline_is_side_b_and_pairs_without_it_are_marked():
    table = pairwise_comparisons(four_variants(), baseline_method="full")
    with_baseline = table[table["baseline_side"] == "b"]
    assert len(with_baseline) == 3 and set(with_baseline["method_b"]) == {"full"}
    assert set(table.loc[table["baseline_side"] == "none", "method_a"]) == {"lora"}
    assert table[["rank_a", "rank_b"]].values.tolist()[3:] == [["4", "8"], ["4", "16"], ["8", "16"]]
    unoriented = pairwise_comparisons(four_variants())
    assert set(unoriented["baseline_side"]) == {"none"} and (unoriented["method_a"] == "full").sum() == 3


def test_single_seed_and_zero_variance_are_untestable_and_leave_the_correction():
    variants = {("full", ""): seeds(FULL), ("lora", "8"): seeds(LORA), ("lora", "4"): {0: 20.0},
                ("lora", "16"): seeds([30.0] * 5, start=20)}
    constant = {("full", ""): seeds([1.0] * 3), ("lora", "8"): seeds([2.0] * 3, start=5)}
    table = pairwise_comparisons(pd.concat([tidy(variants), tidy(constant, metric="stored_bytes")]), "full")
    single = pair(table, "lora", "4", "full", "")
    assert single["test"] == "none" and "fewer than 2" in single["test_reason"] and math.isnan(single["p_value"])
    flat = pair(table[table["metric"] == "stored_bytes"], "lora", "8", "full", "")
    assert flat["test"] == "none" and "zero variance" in flat["test_reason"]
    assert (flat["diff_ci_low"], flat["diff_ci_high"], flat["mean_difference"]) == (1.0, 1.0, 1.0)
    family = table[table["metric"] == "bleu4"]
    tested = family[family["p_value"].notna()]
    assert len(tested) == 3  # lora r=16 vs full, vs lora r=8 (Welch: other seeds) and lora r=8 vs full
    assert tested["p_corrected"].tolist() == pytest.approx(holm_by_hand(tested["p_value"].tolist()), rel=1e-12)
    assert family.loc[family["p_value"].isna(), "p_corrected"].isna().all()


def test_seeds_that_repeat_a_difference_exactly_are_untestable_when_paired():
    table = pairwise_comparisons(tidy({("full", ""): seeds([1.0, 2.0, 4.0]), ("lora", "8"): seeds([1.5, 2.5, 4.5])}),
                                 "full")
    row = table.iloc[0]
    assert row["test"] == "none" and "same difference" in row["test_reason"]
    assert (row["diff_ci_low"], row["diff_ci_high"]) == (0.5, 0.5)


def test_nan_values_are_dropped_before_choosing_and_running_the_test():
    variants = {("full", ""): seeds(FULL), ("lora", "8"): seeds(LORA)}
    with_gap = tidy(variants)
    with_gap.loc[(with_gap["method"] == "lora") & (with_gap["seed"] == 4), "value"] = math.nan
    row = pairwise_comparisons(with_gap, "full").iloc[0]
    t, p, df = ttest_ind(LORA[:4], FULL, usevar="unequal")
    assert (row["n_a"], row["test"]) == (4, "welch_t") and row["p_value"] == pytest.approx(p, rel=1e-10)


def test_rows_are_deterministic_and_ordered_by_family():
    data = pd.concat([four_variants().assign(metric="rouge_l"), four_variants()])
    first = pairwise_comparisons(data.sample(frac=1, random_state=3), "full")
    second = pairwise_comparisons(data, "full")
    pd.testing.assert_frame_equal(first, second)
    assert first["metric"].tolist() == ["bleu4"] * 6 + ["rouge_l"] * 6


def test_identical_values_have_exactly_zero_spread_despite_floating_point_means():
    # (x + x + x) / 3 != x for x = 0.1: a naive SD is ~1e-17 and would give an enormous effect size
    assert np.std([0.1] * 3, ddof=1) > 0
    table = pairwise_comparisons(tidy({("full", ""): seeds([0.1] * 3), ("lora", "8"): seeds([0.1] * 3, start=7)}),
                                 "full")
    row = table.iloc[0]
    assert (row["sd_a"], row["sd_b"], row["test"]) == (0.0, 0.0, "none") and math.isnan(row["hedges_g"])
    # 6.657420249653259 - 100 on every seed: identical differences whose naive SD is ~1e-14
    x = 6.657420249653259
    assert np.std([x - 100] * 3, ddof=1) > 0
    paired = pairwise_comparisons(tidy({("full", ""): seeds([100.0] * 3), ("lora", "8"): seeds([x] * 3)}), "full")
    row = paired.iloc[0]
    assert (row["sd_difference"], row["test"]) == (0.0, "none") and math.isnan(row["d_z"])
