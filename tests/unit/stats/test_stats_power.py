"""Power and seeds needed against pingouin's own noncentral-t power (the code uses statsmodels) and against
a seeded Monte-Carlo simulation of the t-tests themselves."""

import math

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as scipy_stats

from peftstudy.stats import pairwise_comparisons, seed_power
from peftstudy.stats.power import independent_power, paired_power

FULL = [30.1, 31.4, 29.8, 30.6, 31.0]
LORA = [29.0, 29.9, 28.7, 29.5, 30.2]


def tidy(variants, metric="bleu4"):
    return pd.DataFrame([{"study": "s", "dataset": "d", "model": "m", "method": method, "rank": rank, "seed": seed,
                          "metric": metric, "value": value}
                         for (method, rank), values in variants.items() for seed, value in values.items()])


def power_table(variants, thresholds=None, metric="bleu4"):
    comparisons = pairwise_comparisons(tidy(variants, metric), "full", thresholds={"bleu4": 0.5} if thresholds is None
                                       else thresholds)
    table = seed_power(comparisons)
    assert len(table) == 1
    return table.iloc[0]


def test_independent_design_matches_pingouin():
    row = power_table({("full", ""): dict(enumerate(FULL)), ("lora", "8"): dict(enumerate(LORA[:4], start=10))})
    n_a, n_b = 4, 5
    pooled = math.sqrt(((n_a - 1) * np.var(LORA[:4], ddof=1) + (n_b - 1) * np.var(FULL, ddof=1)) / (n_a + n_b - 2))
    effect = 0.5 / pooled
    assert (row["design"], row["sd_kind"]) == ("independent", "pooled")
    assert row["sd_used"] == pytest.approx(pooled) and row["standardized_effect"] == pytest.approx(effect)
    assert row["power_current"] == pytest.approx(pg.power_ttest2n(nx=n_a, ny=n_b, d=effect), rel=1e-6)
    assert row["seeds_needed"] == math.ceil(pg.power_ttest(d=effect, power=0.8))
    assert pg.power_ttest(d=effect, n=row["seeds_needed"]) >= 0.8 > pg.power_ttest(d=effect, n=row["seeds_needed"] - 1)


def test_paired_design_uses_the_sd_of_differences_and_matches_pingouin():
    row = power_table({("full", ""): dict(enumerate(FULL)), ("lora", "8"): dict(enumerate(LORA))})
    differences = np.array(LORA) - np.array(FULL)
    effect = 0.5 / differences.std(ddof=1)
    assert (row["design"], row["sd_kind"], row["n_current"]) == ("paired", "difference", 5)
    assert row["power_current"] == pytest.approx(pg.power_ttest(d=effect, n=5, contrast="paired"), rel=1e-6)
    assert row["seeds_needed"] == math.ceil(pg.power_ttest(d=effect, power=0.8, contrast="paired"))


@pytest.mark.parametrize(("design", "effect", "n"), [("independent", 0.9, 12), ("paired", 0.7, 10)])
def test_power_matches_a_monte_carlo_of_the_test(design, effect, n):
    rng = np.random.default_rng(2024)
    simulations = 4000
    if design == "independent":
        a, b = rng.normal(effect, 1, (simulations, n)), rng.normal(0, 1, (simulations, n))
        p = scipy_stats.ttest_ind(a, b, axis=1).pvalue
        power = independent_power(effect, n, n, 0.05)
    else:
        p = scipy_stats.ttest_1samp(rng.normal(effect, 1, (simulations, n)), 0, axis=1).pvalue
        power = paired_power(effect, n, 0.05)
    assert 0.5 < power < 0.9
    assert np.mean(p < 0.05) == pytest.approx(power, abs=0.03)  # 4,000 draws: standard error < 0.008


def test_nan_with_a_reason():
    variants = {("full", ""): dict(enumerate(FULL)), ("lora", "8"): dict(enumerate(LORA))}
    no_threshold = power_table(variants, thresholds={})
    assert math.isnan(no_threshold["seeds_needed"]) and "no practical threshold" in no_threshold["reason"]
    constant_difference = {("full", ""): {0: 1.0, 1: 2.0, 2: 4.0}, ("lora", "8"): {0: 1.5, 1: 2.5, 2: 4.5}}
    zero = power_table(constant_difference)
    assert zero["design"] == "paired" and zero["sd_used"] == 0 and "SD is 0" in zero["reason"]
    assert math.isnan(zero["power_current"])
    constant = power_table({("full", ""): {0: 1.0, 1: 1.0}, ("lora", "8"): {5: 2.0, 6: 2.0}})
    assert constant["design"] == "independent" and "SD is 0" in constant["reason"]
    single = power_table({("full", ""): dict(enumerate(FULL)), ("lora", "8"): {9: 29.0}})
    assert math.isnan(single["sd_used"]) and "fewer than 2" in single["reason"]
