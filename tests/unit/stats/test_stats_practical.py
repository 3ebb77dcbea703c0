"""Practical-significance labels: one family per outcome, and 'equivalent' checked against statsmodels' TOST
(a 95 % CI inside the margins is TOST at 0.025 per side)."""

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.weightstats import ttost_paired

from peftstudy.stats import pairwise_comparisons, practical_label
from peftstudy.stats.practical import parse_threshold, threshold_for

BASE = np.array([30.0, 31.0, 29.5, 30.5, 30.2])
SHIFTS = {  # model -> the lora values as BASE plus these, seed by seed
    "meaningful": -2.0 + np.array([0.1, -0.1, 0.05, -0.05, 0.0]),
    "only": -0.2 + np.array([0.01, -0.01, 0.02, -0.02, 0.0]),
    "equivalent": np.array([0.1, -0.1, 0.05, -0.05, 0.02]),
    "inconclusive": np.array([1.5, -1.2, 0.8, -1.0, 0.3]),
}
THRESHOLDS = {"bleu4": 0.5, "train_time_s": "10%"}


def tidy(metric="bleu4", base=BASE, shifts=SHIFTS):
    rows = []
    for model, shift in shifts.items():
        for method, rank, values in (("full", "", base), ("lora", "8", base + shift)):
            rows += [{"study": "s", "dataset": "d", "model": model, "method": method, "rank": rank, "seed": seed,
                      "metric": metric, "value": float(value)} for seed, value in enumerate(values)]
    return pd.DataFrame(rows)


def labels(table):
    return dict(zip(table["model"], table["practical"]))


def test_each_outcome_gets_its_label():
    table = pairwise_comparisons(tidy(), baseline_method="full", thresholds=THRESHOLDS)
    assert labels(table) == {"meaningful": "significant_and_meaningful", "only": "significant_only",
                             "equivalent": "equivalent", "inconclusive": "inconclusive"}
    assert set(table["threshold"]) == {0.5} and set(table["threshold_spec"]) == {"0.5"}


def test_equivalent_agrees_with_statsmodels_tost_at_the_ci_level():
    table = pairwise_comparisons(tidy(), baseline_method="full", thresholds=THRESHOLDS, confidence=0.95)
    for model in ("equivalent", "inconclusive"):
        tost_p = ttost_paired(BASE + SHIFTS[model], BASE, -0.5, 0.5)[0]
        row = table[table["model"] == model].iloc[0]
        assert (row["practical"] == "equivalent") == (tost_p < 0.025)
        assert row["p_corrected"] >= 0.05


def test_metric_without_threshold_is_labelled_so():
    table = pairwise_comparisons(tidy(metric="meteor"), baseline_method="full", thresholds=THRESHOLDS)
    assert set(table["practical"]) == {"no_threshold"} and table["threshold"].isna().all()
    assert set(pairwise_comparisons(tidy(), "full")["practical"]) == {"no_threshold"}


def test_relative_threshold_is_a_share_of_the_baseline_mean():
    base = BASE * 10  # a 'train time' around 300 s: 10 % is about 30 s
    shifts = {"meaningful": -40.0 + np.array([0.5, -0.5, 0.2, -0.2, 0.0]),
              "only": -15.0 + np.array([0.5, -0.5, 0.2, -0.2, 0.0])}
    table = pairwise_comparisons(tidy("train_time_s", base, shifts), baseline_method="full", thresholds=THRESHOLDS)
    assert table["threshold"].tolist() == pytest.approx([0.1 * base.mean()] * 2)
    assert set(table["threshold_spec"]) == {"10%"}
    assert labels(table) == {"meaningful": "significant_and_meaningful", "only": "significant_only"}


@pytest.mark.parametrize(("arguments", "label"), [
    ((0.01, 0.05, 0.5, 0.3, 0.7, 0.5), "significant_and_meaningful"),  # |difference| == threshold counts
    ((0.01, 0.05, -0.49, -0.6, -0.3, 0.5), "significant_only"),
    ((0.2, 0.05, 0.1, -0.49, 0.49, 0.5), "equivalent"),
    ((0.2, 0.05, 0.1, -0.5, 0.49, 0.5), "inconclusive"),  # the CI must lie strictly inside the margins
    ((math.nan, 0.05, 0.1, math.nan, math.nan, 0.5), "inconclusive"),
    ((0.01, 0.05, 3.0, 2.0, 4.0, math.nan), "no_threshold"),
])
def test_the_rule(arguments, label):
    assert practical_label(*arguments) == label


def test_threshold_specs():
    assert parse_threshold(0.02) == (0.02, False) and parse_threshold("10%") == (pytest.approx(0.1), True)
    assert parse_threshold("0.3") == (0.3, False)
    assert threshold_for("train_time_s", THRESHOLDS, -200.0) == (pytest.approx(20.0), "10%")
    assert math.isnan(threshold_for("train_time_s", THRESHOLDS, math.nan)[0])
    with pytest.raises(ValueError):
        threshold_for("bleu4", {"bleu4": -1}, 1.0)
