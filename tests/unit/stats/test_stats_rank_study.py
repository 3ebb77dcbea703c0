"""Rank study: the knee against the Kneedle definition computed by hand, the best-rank rule on noiseless
curves, and the bootstrap choice frequencies against exact enumeration of every resample."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.weightstats import DescrStatsW

from peftstudy.stats import higher_is_better, rank_study

RANKS = [2, 4, 8, 16, 32, 64]


def tidy(per_rank, metric="bleu4", method="lora"):
    """per_rank: {rank: values over seeds 0, 1, ...}."""
    return pd.DataFrame([{"study": "s", "dataset": "d", "model": "m", "method": method, "rank": str(rank),
                          "seed": seed, "metric": metric, "value": float(value)}
                         for rank, values in per_rank.items() for seed, value in enumerate(values)])


def family(table):
    return table.iloc[0]


def kneedle_by_hand(x, y, higher):
    """Satopaa et al. (2011): normalise both axes to [0, 1] (flipping y when lower is better, so the curve
    rises), and the knee is where the curve is furthest above the chord y = x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    x_n, y_n = (x - x.min()) / np.ptp(x), (y - y.min()) / np.ptp(y)
    if not higher:
        y_n = 1 - y_n
    return float(x[np.argmax(y_n - x_n)])


@pytest.mark.parametrize(("metric", "curve", "higher"), [
    ("bleu4", lambda r: 30 - 10 * math.exp(-r / 8), True),
    ("perplexity", lambda r: 12 + 20 * math.exp(-r / 6), False),
])
def test_knee_matches_kneedle_by_hand(metric, curve, higher):
    means = [curve(rank) for rank in RANKS]
    table = rank_study(tidy({rank: [mean, mean] for rank, mean in zip(RANKS, means)}, metric=metric))
    row = family(table)
    assert row["higher_is_better"] == higher and row["knee_reason"] == ""
    assert row["knee_rank"] == kneedle_by_hand(RANKS, means, higher)
    assert RANKS[0] < row["knee_rank"] < RANKS[-1]


def test_knee_needs_three_ranks_and_a_bend():
    two = family(rank_study(tidy({4: [1.0, 1.2], 8: [2.0, 2.1]})))
    assert math.isnan(two["knee_rank"]) and two["knee_reason"] == "fewer than 3 ranks"
    flat = family(rank_study(tidy({4: [1.0], 8: [1.0], 16: [1.0]})))
    assert math.isnan(flat["knee_rank"]) and "flat" in flat["knee_reason"]


NOISELESS = {4: [20.0, 20.0], 8: [24.0, 24.0], 16: [24.8, 24.8], 32: [25.0, 25.0]}


@pytest.mark.parametrize(("thresholds", "best"), [({"bleu4": 0.5}, 16), ({"bleu4": "4%"}, 8), ({}, 32),
                                                  ({"bleu4": 10}, 4)])
def test_best_rank_is_the_smallest_within_the_threshold_of_the_best(thresholds, best):
    table = rank_study(tidy(NOISELESS), thresholds=thresholds, bootstrap_resamples=200)
    assert set(table["best_rank"]) == {best}
    # no seed variation: every resample picks the same rank
    assert dict(zip(table["rank"], table["bootstrap_choice_fraction"])) == {
        str(rank): float(rank == best) for rank in NOISELESS}


def test_lower_is_better_picks_the_smallest_rank_near_the_minimum():
    perplexity = {4: [30.0, 30.0], 8: [20.0, 20.0], 16: [18.2, 18.2], 32: [18.0, 18.0]}
    assert family(rank_study(tidy(perplexity, metric="perplexity"), thresholds={"perplexity": 0.5}))["best_rank"] == 16
    cost = {4: [100.0, 101.0], 8: [120.0, 122.0], 16: [140.0, 139.0]}
    assert family(rank_study(tidy(cost, metric="train_time_s")))["best_rank"] == 4


def choice_probability_by_enumeration(per_rank, threshold):
    """Exact probability that each rank is chosen when every rank's seeds are resampled with replacement."""
    ranks = sorted(per_rank)
    resamples = [list(itertools.product(per_rank[rank], repeat=len(per_rank[rank]))) for rank in ranks]
    chosen = dict.fromkeys(ranks, 0.0)
    for combination in itertools.product(*resamples):
        means = [sum(sample) / len(sample) for sample in combination]
        best = max(means)
        winner = next(rank for rank, mean in zip(ranks, means) if mean >= best - threshold)
        chosen[winner] += 1 / math.prod(len(r) for r in resamples)
    return chosen


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_bootstrap_choice_frequencies_match_exact_enumeration(threshold):
    per_rank = {4: [10.0, 12.0], 8: [9.0, 12.5], 16: [10.5, 11.0, 12.2]}
    thresholds = {"bleu4": threshold} if threshold else {}
    table = rank_study(tidy(per_rank), thresholds=thresholds, bootstrap_resamples=4000, seed=1)
    exact = choice_probability_by_enumeration(per_rank, threshold)
    observed = dict(zip(table["rank"].astype(int), table["bootstrap_choice_fraction"]))
    assert sum(observed.values()) == pytest.approx(1.0)
    for rank in per_rank:  # 4,000 resamples: standard error <= 0.008
        assert observed[rank] == pytest.approx(exact[rank], abs=0.03)


def test_bootstrap_is_deterministic_with_its_seed():
    per_rank = {4: [10.0, 12.0, 11.0], 8: [9.0, 12.5, 11.5], 16: [10.5, 11.0, 12.2]}
    first = rank_study(tidy(per_rank), bootstrap_resamples=500, seed=7)
    pd.testing.assert_frame_equal(first, rank_study(tidy(per_rank), bootstrap_resamples=500, seed=7))
    other = rank_study(tidy(per_rank), bootstrap_resamples=500, seed=8)
    assert first["bootstrap_choice_fraction"].tolist() != other["bootstrap_choice_fraction"].tolist()


def test_per_rank_description_and_what_is_left_out():
    per_rank = {16: [24.0, 25.5, 24.9], 4: [20.0, 21.0, math.nan], 8: [23.0]}
    data = pd.concat([tidy(per_rank), tidy({"": [30.0, 31.0]}, method="full"), tidy({8: [1.0, 2.0]}, method="dora")])
    table = rank_study(data, method="lora")
    assert table["rank"].tolist() == ["4", "8", "16"] and table["n"].tolist() == [2, 1, 3]
    sixteen = table[table["rank"] == "16"].iloc[0]
    assert (sixteen["ci_low"], sixteen["ci_high"]) == pytest.approx(DescrStatsW([24.0, 25.5, 24.9]).tconfint_mean())
    assert math.isnan(table[table["rank"] == "8"].iloc[0]["ci_low"])


def test_unknown_direction_gives_reasons_unless_declared():
    data = tidy({4: [1.0, 1.1], 8: [2.0, 2.2], 16: [2.3, 2.4]}, metric="my_score")
    assert higher_is_better("my_score") is None
    unknown = family(rank_study(data))
    assert math.isnan(unknown["best_rank"]) and "direction unknown" in unknown["best_reason"]
    assert math.isnan(unknown["bootstrap_choice_fraction"])
    assert family(rank_study(data, directions={"my_score": True}))["best_rank"] == 16


def test_direction_map():
    assert higher_is_better("bertscore_f1") and higher_is_better("rouge_lsum") and higher_is_better("squad_f1")
    assert higher_is_better("train_peak_memory_bytes") is False and higher_is_better("train_energy_kwh") is False
    assert higher_is_better("tco[startup]") is False and higher_is_better("perplexity") is False
