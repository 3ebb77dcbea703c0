"""summarise: the t interval as before, and the seeded bootstrap interval checked against pingouin's
independent bootstrap (its own resampling and its own BCa) with a Monte-Carlo tolerance."""

import math

import numpy as np
import pandas as pd
import pingouin as pg
import pytest

from peftstudy.stats import summarise

VALUES = [30.1, 31.4, 29.8, 30.6, 31.0, 28.2, 30.9, 33.5]
SKEWED = [1.1, 1.3, 1.2, 1.6, 1.4, 2.2, 3.9, 1.0, 1.5, 6.0]


def frame(values, method="lora", rank="8", metric="bleu4"):
    return pd.DataFrame([{"study": "s", "dataset": "d", "model": "m", "method": method, "rank": rank, "seed": seed,
                          "metric": metric, "value": value} for seed, value in enumerate(values)])


def only_row(summary):
    assert len(summary) == 1
    return summary.iloc[0]


def test_default_is_the_t_interval_with_the_columns_of_before():
    summary = summarise(frame(VALUES), 0.9)
    assert {"study", "dataset", "model", "method", "rank", "metric", "n", "mean", "std", "ci_low", "ci_high",
            "confidence"} <= set(summary.columns)
    row = only_row(summary)
    assert row["ci_method"] == "t" and row["confidence"] == 0.9


@pytest.mark.parametrize(("method", "pingouin_method", "label"), [("percentile", "per", "bootstrap_percentile"),
                                                                  ("BCa", "bca", "bootstrap_bca")])
def test_bootstrap_interval_matches_pingouin(method, pingouin_method, label):
    row = only_row(summarise(frame(SKEWED), 0.95, bootstrap={"resamples": 20000, "seed": 1, "method": method}))
    low, high = pg.compute_bootci(np.array(SKEWED), func="mean", method=pingouin_method, n_boot=20000, seed=7,
                                  decimals=10)
    assert row["ci_method"] == label
    # Two Monte-Carlo estimates of the same quantiles (resampling noise here is ~0.05); on these skewed values
    # BCa and percentile differ by ~0.4 at the top, so the tolerance still tells the two methods apart.
    assert row["ci_low"] == pytest.approx(low, abs=0.08) and row["ci_high"] == pytest.approx(high, abs=0.08)


def test_bca_and_percentile_differ_on_skewed_values():
    settings = {"resamples": 20000, "seed": 1}
    bca = only_row(summarise(frame(SKEWED), bootstrap={**settings, "method": "BCa"}))
    percentile = only_row(summarise(frame(SKEWED), bootstrap={**settings, "method": "percentile"}))
    assert bca["ci_high"] - percentile["ci_high"] > 0.3


def test_bootstrap_is_deterministic_with_its_seed_and_moves_with_another_seed():
    first = summarise(frame(VALUES), bootstrap={"resamples": 999, "seed": 3, "method": "percentile"})
    again = summarise(frame(VALUES), bootstrap={"resamples": 999, "seed": 3, "method": "percentile"})
    other = summarise(frame(VALUES), bootstrap={"resamples": 999, "seed": 4, "method": "percentile"})
    pd.testing.assert_frame_equal(first, again)
    assert (first["ci_low"].iloc[0], first["ci_high"].iloc[0]) != (other["ci_low"].iloc[0], other["ci_high"].iloc[0])


def test_a_cell_interval_does_not_depend_on_the_other_cells():
    alone = summarise(frame(VALUES), bootstrap={"resamples": 999, "seed": 3})
    together = summarise(pd.concat([frame([1.0, 2.0, 4.0], method="full", rank=""), frame(VALUES)]),
                         bootstrap={"resamples": 999, "seed": 3})
    lora = together[together["method"] == "lora"].iloc[0]
    assert (lora["ci_low"], lora["ci_high"]) == (alone["ci_low"].iloc[0], alone["ci_high"].iloc[0])


def test_nan_values_are_not_measurements():
    row = only_row(summarise(frame(VALUES + [math.nan])))
    reference = only_row(summarise(frame(VALUES)))
    assert row["n"] == len(VALUES)
    assert (row["mean"], row["std"], row["ci_low"]) == (reference["mean"], reference["std"], reference["ci_low"])


def test_single_seed_and_zero_variance_under_the_bootstrap():
    single = only_row(summarise(frame([3.0]), bootstrap={"resamples": 99, "seed": 0}))
    assert single["n"] == 1 and math.isnan(single["ci_low"]) and math.isnan(single["ci_high"])
    constant = only_row(summarise(frame([2.5, 2.5, 2.5]), bootstrap={"resamples": 99, "seed": 0}))
    assert (constant["ci_low"], constant["ci_high"]) == (2.5, 2.5)


@pytest.mark.parametrize("bootstrap", [{"resamples": 10}, {"seed": 1}, {"resamples": 10, "seed": 1, "method": "x"},
                                       {"resamples": 10, "seed": 1, "typo": 1}])
def test_incomplete_bootstrap_settings_are_refused(bootstrap):
    with pytest.raises(ValueError):
        summarise(frame(VALUES), bootstrap=bootstrap)
