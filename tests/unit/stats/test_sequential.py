"""Adaptive seeds' sequential decisions: critical values that spend the error rate as declared, repeated confidence
intervals that keep their coverage under optional stopping, and, on synthetic metric tables with known true
differences, the family-wise error and power of the fixed five-seed design with fewer runs."""

import math

import numpy as np
import pytest
from scipy import stats

from peftstudy.stats import sequential
from peftstudy.stats.sequential import (
    DIFFERENT,
    EQUIVALENT,
    OPEN,
    UNDECIDED,
    Scenario,
    critical_values,
    look,
    simulate,
)


def test_critical_values_are_fixed_numbers_that_fall_with_each_look():
    values = critical_values(2, 5, 0.05)
    assert values == critical_values(2, 5, 0.05)  # seeded Monte Carlo: the same on every machine
    assert list(values) == sorted(values, reverse=True)
    # Each look is stricter than a fixed-sample t-test at the full alpha, and the last is close to it.
    for n, c in zip(range(2, 6), values):
        assert c > stats.t.isf(0.05 / 2, n - 1)
    assert values[-1] < 1.6 * stats.t.isf(0.05 / 2, 4)


def test_a_single_look_design_is_the_plain_t_test():
    (c,) = critical_values(5, 5, 0.05)
    assert c == pytest.approx(stats.t.isf(0.025, 4), rel=0.02)


@pytest.mark.parametrize("alpha", [0.05, 0.0125])
def test_the_error_is_spent_as_declared_under_optional_stopping(alpha):
    """Fresh normal data (another seed than the boundaries'): the share of null sequences rejected by look n is the
    spending function at n / max, within Monte-Carlo error; so stopping at any look keeps the error at alpha."""
    rng = np.random.default_rng(7)
    draws = rng.standard_normal((40_000, 5)) * 3.7 + 0.0  # any sd: the t statistic does not see it
    values = critical_values(2, 5, alpha)
    rejected = np.zeros(len(draws), dtype=bool)
    for n, c in zip(range(2, 6), values):
        x = draws[:, :n]
        t = np.abs(x.mean(axis=1)) / (x.std(axis=1, ddof=1) / math.sqrt(n))
        rejected |= t > c
        error = math.sqrt(alpha * (1 - alpha) / len(draws))
        assert rejected.mean() == pytest.approx(sequential.spent(alpha, n / 5), abs=4 * error + 1e-3)


def test_repeated_intervals_cover_the_true_difference_at_every_look_at_once():
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(4000):
        differences = 0.7 + rng.standard_normal(5) * 0.3
        covered += all(look(differences[:n], 2, 5, 0.05, None).low <= 0.7 <= look(differences[:n], 2, 5, 0.05, None).high
                       for n in range(2, 6))
    assert covered / 4000 >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / 4000)


def test_decisions_against_the_practical_threshold():
    assert look([5.0, 5.1, 4.9], 2, 5, 0.05, 1.0).decision == DIFFERENT  # the interval lies beyond +1
    assert look([-5.0, -5.1, -4.9], 2, 5, 0.05, 1.0).decision == DIFFERENT
    assert look([0.01, -0.02, 0.0], 2, 5, 0.05, 1.0).decision == EQUIVALENT  # inside (-1, 1)
    assert look([0.5, 1.5, 1.0], 2, 5, 0.05, 1.0).decision == OPEN
    assert look([0.5, 1.5, 1.0, 0.2, 1.9], 2, 5, 0.05, 1.0).decision == UNDECIDED  # the last look
    assert look([2.0, 2.0], 2, 5, 0.05, 1.0).decision == DIFFERENT  # no seed noise at all: settled at once
    with pytest.raises(ValueError, match="outside the design's 2..5"):
        look([1.0] * 6, 2, 5, 0.05, 1.0)
    with pytest.raises(ValueError, match="2 <= min <= max"):
        critical_values(1, 5, 0.05)


def test_only_the_cells_of_open_comparisons_get_another_seed():
    results = {("d", "lora-r4"): look([0.5, 1.5, 1.0], 2, 5, 0.05, 1.0), ("d", "lora-r8"): look([5.0, 5.1, 4.9], 2, 5, 0.05, 1.0)}
    cells = {("d", "lora-r4"): ("full", "lora-r4"), ("d", "lora-r8"): ("full", "lora-r8")}
    assert sequential.open_cells(results, cells) == {"full", "lora-r4"}


@pytest.mark.parametrize("differences", [(0.0, 0.0, 4.0, -4.0), (0.0, 0.0, 0.0, 0.0)], ids=["half-null", "all-null"])
def test_on_synthetic_tables_the_adaptive_design_keeps_the_error_and_power_of_five_seeds_with_fewer_runs(differences):
    """Four variants against a baseline per family; true differences of 0 or 4 practical thresholds; seed noise of a
    twentieth of a threshold (differences either clearly beyond or clearly within what matters). 3,000 tables."""
    result = simulate(Scenario(families=1, differences=differences, noise=0.05), 2, 5, 0.05, 3000, seed=22)
    error = 3 * math.sqrt(0.05 * 0.95 / result["tables"])  # three Monte-Carlo standard errors at alpha
    assert result["fixed_fwer"] <= 0.05 + error
    assert result["adaptive_fwer"] <= 0.05 + error  # valid under optional stopping...
    assert result["adaptive_fwer"] <= result["fixed_fwer"] + error  # ...and no looser than the fixed design
    if any(differences):
        assert result["adaptive_power"] >= result["fixed_power"] - 3 * math.sqrt(0.25 / (2 * result["tables"]))
        assert result["runs_share"] <= 0.60
    else:
        assert result["runs_share"] <= 0.66  # equivalence takes a look more than a large difference


def test_near_the_threshold_the_adaptive_design_saves_little_and_says_so():
    """Differences of one threshold with noise of half a threshold: most comparisons stay open to the last look,
    and the adaptive design loses power against five seeds for every comparison (the price of looking early)."""
    result = simulate(Scenario(families=1, differences=(1.0, 1.0, 0.0, 0.0), noise=0.5), 2, 5, 0.05, 1000, seed=23)
    assert result["runs_share"] > 0.9
    assert result["adaptive_power"] < result["fixed_power"]


def grid(noise: float, seeds=5, seed=3):
    """A finished grid: full fine-tuning, LoRA r=4 far below it (4 BLEU) and LoRA r=8 level with it, five seeds."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for method, rank, mean in (("full", "", 30.0), ("lora", "4", 26.0), ("lora", "8", 30.0)):
        for s in range(1, seeds + 1):
            rows.append({"study": "s", "dataset": "d", "model": "m", "method": method, "rank": rank, "seed": s,
                         "metric": "bleu4", "value": mean + rng.standard_normal() * noise})
    return pd.DataFrame(rows)


def test_a_replay_on_a_finished_grid_keeps_the_first_seeds_of_the_cells_it_needed():
    decisions, kept, waiting = sequential.replay(grid(noise=0.02), baseline_method="full", compare_metrics=["bleu4"],
                                        thresholds={"bleu4": 0.5}, alpha=0.05)
    by_variant = {(row.method, row.rank): row for row in decisions.itertuples()}
    assert by_variant[("lora", "4")].decision == DIFFERENT and by_variant[("lora", "8")].decision == EQUIVALENT
    assert by_variant[("lora", "4")].alpha == pytest.approx(0.025)  # Bonferroni over the family's two comparisons
    # r=4 settles at its first look (2 seeds), r=8 at the next: the baseline runs as long as any comparison is open.
    assert (by_variant[("lora", "4")].settled_at, by_variant[("lora", "8")].settled_at) == (2, 3)
    runs = kept.groupby(["method", "rank"])["seed"].apply(list).to_dict()
    assert runs == {("full", ""): ["1", "2", "3"], ("lora", "4"): ["1", "2"], ("lora", "8"): ["1", "2", "3"]}
    assert len(kept) == 8 and waiting.empty  # of the grid's 15; a finished grid leaves no cell waiting


def test_a_replay_with_seed_noise_near_the_threshold_keeps_every_run():
    decisions, kept, waiting = sequential.replay(grid(noise=1.0), baseline_method="full", compare_metrics=["bleu4"],
                                        thresholds={"bleu4": 0.5}, alpha=0.05)
    assert (decisions["settled_at"] == 5).all() and len(kept) == 15
    assert "undecided" in set(decisions["decision"])


def test_a_look_on_the_runs_so_far_names_the_cells_waiting_for_their_next_seed():
    """An adaptive study's first look (two of at most five seeds run): r=4 settles (as in the replay above), r=8 is
    still open, so it and the baseline wait for the third seed; r=4 waits for nothing."""
    ran = grid(noise=0.02).query("seed <= 2")
    decisions, kept, waiting = sequential.replay(ran, baseline_method="full", compare_metrics=["bleu4"],
                                                 thresholds={"bleu4": 0.5}, alpha=0.05, n_max=5,
                                                 seed_order=[1, 2, 3, 4, 5])
    by_variant = {(row.method, row.rank): row.decision for row in decisions.itertuples()}
    assert by_variant == {("lora", "4"): DIFFERENT, ("lora", "8"): OPEN}
    assert waiting[["method", "rank", "next_look"]].values.tolist() == [["full", "", 3], ["lora", "8", 3]]
    assert len(kept) == 6
    # Given its third seed, r=8 settles as in the replay of the whole grid, and nothing waits any more.
    ran = grid(noise=0.02).query("seed <= 2 or (seed == 3 and rank != '4')")
    decisions, kept, waiting = sequential.replay(ran, baseline_method="full", compare_metrics=["bleu4"],
                                                 thresholds={"bleu4": 0.5}, alpha=0.05, n_max=5,
                                                 seed_order=[1, 2, 3, 4, 5])
    assert set(decisions["decision"]) == {DIFFERENT, EQUIVALENT} and waiting.empty and len(kept) == 8


def test_a_look_in_the_study_seed_order_and_a_planned_metric_needs_a_threshold():
    finished = grid(noise=0.02)
    # Seeds run in the order 5, 4, 3, 2, 1: the first look is on seeds 5 and 4.
    decisions, kept, _ = sequential.replay(finished, baseline_method="full", compare_metrics=["bleu4"],
                                           thresholds={"bleu4": 0.5}, alpha=0.05, seed_order=[5, 4, 3, 2, 1])
    assert sorted(kept[kept["rank"] == "4"]["seed"]) == ["4", "5"]
    assert sequential.planned_metrics(["bleu4", "meteor", "train_time_s"], {"bleu4": 0.5, "train_time_s": "10%"}) == [
        "bleu4", "train_time_s"]
