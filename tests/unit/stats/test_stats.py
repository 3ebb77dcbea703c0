"""Statistics against independent routes (statsmodels where the code uses scipy, and hand formulas)."""

import math

import pandas as pd
import pytest
from statsmodels.stats.weightstats import DescrStatsW, ttest_ind

from peftstudy.stats import (
    confidence_interval,
    pairwise_comparisons,
    read_metrics,
    summarise,
)

FULL = [30.1, 31.4, 29.8, 30.6, 31.0]
LORA = [29.0, 29.9, 28.7, 29.5, 30.2]


def metrics_frame():
    rows = []
    for method, rank, values in (("full", "", FULL), ("lora", "8", LORA)):
        for seed, value in enumerate(values):
            rows.append({"study": "s", "dataset": "d", "model": "m", "method": method, "rank": rank,
                         "seed": seed, "metric": "bleu4", "value": value})
    return pd.DataFrame(rows)


def test_confidence_interval_matches_statsmodels():
    low, high = confidence_interval(FULL, 0.95)
    ref_low, ref_high = DescrStatsW(FULL).tconfint_mean(alpha=0.05)
    assert (low, high) == pytest.approx((ref_low, ref_high), rel=1e-12)


def test_summary_mean_std_n():
    summary = summarise(metrics_frame())
    full = summary[summary["method"] == "full"].iloc[0]
    assert full["n"] == 5
    assert full["mean"] == pytest.approx(sum(FULL) / 5)
    assert full["std"] == pytest.approx(math.sqrt(sum((v - sum(FULL) / 5) ** 2 for v in FULL) / 4))


def unpaired(frame):
    """LoRA on other seeds than full fine-tuning: nothing pairs the runs, so the test is Welch's."""
    return frame.assign(seed=[seed + 10 if method == "lora" else seed for seed, method in zip(frame["seed"], frame["method"])])


def test_welch_matches_statsmodels_unequal_variance():
    row = pairwise_comparisons(unpaired(metrics_frame()), "full").iloc[0]
    t, p, df = ttest_ind(LORA, FULL, usevar="unequal")
    assert row["t"] == pytest.approx(t) and row["p_value"] == pytest.approx(p) and row["df"] == pytest.approx(df)
    assert row["mean_difference"] == pytest.approx(sum(LORA) / 5 - sum(FULL) / 5)
    assert (row["method_a"], row["rank_a"], row["method_b"], row["test"]) == ("lora", "8", "full", "welch_t")


def test_single_seed_gives_no_interval_and_no_test():
    frame = metrics_frame().groupby(["method"]).head(1)
    assert math.isnan(summarise(frame)["ci_low"].iloc[0])
    assert math.isnan(pairwise_comparisons(unpaired(frame), "full")["p_value"].iloc[0])


def test_read_metrics_keeps_rank_as_text(tmp_path):
    path = tmp_path / "metrics.csv"
    metrics_frame().to_csv(path, index=False)
    frame = read_metrics(path)
    assert set(frame["rank"]) == {"", "8"}
