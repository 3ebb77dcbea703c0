"""Cells against the trivial baselines: per-example intervals, verdicts, the learned gate."""

import numpy as np
import pandas as pd
import pytest

from peftstudy.stats import against_baselines as ab


def run_record(dataset, variant, seed, ids, **scores):
    return {"run": {"study": "t", "dataset": dataset, "model": "m", "variant": variant, "seed": str(seed)},
            "example_scores": {"ids": ids, "scores": {k: list(map(float, v)) for k, v in scores.items()}}}


def baseline_record(name, kind, ids, task="generation", **scores):
    return {"baseline": {"name": name, "kind": kind}, "task": task,
            "example_scores": {"ids": ids, "scores": {k: list(map(float, v)) for k, v in scores.items()}}}


def test_a_cells_example_scores_are_its_seeds_means_so_its_mean_is_the_mean_of_the_seeds_metric():
    ids = ["a", "b", "c"]
    runs = {"s1": run_record("d", "full", 1, ids, rouge_l=[10, 20, 30]),
            "s2": run_record("d", "full", 2, ids, rouge_l=[30, 20, 10], bertscore_f1=[0.1, 0.2, 0.3])}
    cells = ab.cell_example_scores(runs)
    cell = cells[("d", "m", "full", "")]
    assert cell["seeds"] == 2 and list(cell["scores"]) == ["rouge_l"]  # only what every seed scored
    np.testing.assert_allclose(cell["scores"]["rouge_l"], [20, 20, 20])
    assert ab.cell_example_scores({"s": run_record("d", "lora-r8", 1, ids, rouge_l=[1, 2, 3])}).keys() == {("d", "m", "lora", "8")}


def test_seeds_that_scored_other_examples_are_an_error_naming_the_file():
    runs = {"one.json": run_record("d", "full", 1, ["a", "b"], rouge_l=[1, 2]),
            "two.json": run_record("d", "full", 2, ["a", "c"], rouge_l=[1, 2])}
    with pytest.raises(ValueError, match="two.json: scored other test examples than one.json"):
        ab.cell_example_scores(runs)
    with pytest.raises(ValueError, match="old.json: no example_scores"):
        ab.cell_example_scores({"old.json": {"run": {}}})


def test_the_mean_interval_is_scipys_percentile_bootstrap_and_close_to_the_t_interval_on_normal_data():
    from scipy import stats

    values = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    low, high = ab.mean_interval(values, 0.95, 4000, seed=0)
    t_low, t_high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert low == pytest.approx(t_low, abs=0.03) and high == pytest.approx(t_high, abs=0.03)
    assert (low, high) == ab.mean_interval(values, 0.95, 4000, seed=0)  # seeded: the same every time
    assert ab.mean_interval([5.0, 5.0, 5.0], 0.95, 100, seed=0) == (5.0, 5.0)  # nothing to resample
    assert all(np.isnan(ab.mean_interval([], 0.95, 100, seed=0)))


def comparisons(cell_rouge, copy_rouge, neighbour_rouge, n=60, cell_bert=None, copy_bert=None):
    ids = [str(i) for i in range(n)]
    rng = np.random.default_rng(0)
    noise = lambda: rng.normal(0, 1, n)  # noqa: E731
    cell_scores = {"rouge_l": cell_rouge + noise()}
    copy_scores = {"rouge_l": copy_rouge + noise()}
    if cell_bert is not None:
        cell_scores["bertscore_f1"], copy_scores["bertscore_f1"] = cell_bert + noise() / 100, copy_bert + noise() / 100
    runs = {"r.json": run_record("d", "full", 1, ids, **cell_scores)}
    baselines = {"results/t/baselines/d/copy_input/metrics.json": baseline_record("copy_input", "copy_input", ids, **copy_scores),
                 "results/t/baselines/d/nearest_neighbour/metrics.json":
                     baseline_record("nearest_neighbour", "nearest_neighbour", ids, rouge_l=neighbour_rouge + noise())}
    return ab.compare_with_baselines(ab.cell_example_scores(runs), baselines, resamples=500)


def test_verdicts_need_non_overlapping_intervals_and_the_nearest_neighbour_does_not_gate():
    table = comparisons(cell_rouge=30, copy_rouge=20, neighbour_rouge=40)
    rows = table.set_index("baseline")
    assert rows.loc["copy_input", "verdict"] == ab.BETTER and rows.loc["nearest_neighbour", "verdict"] == ab.WORSE
    assert rows.loc["copy_input", "cell_ci_low"] > rows.loc["copy_input", "baseline_ci_high"]
    assert rows.loc["copy_input", "difference"] == pytest.approx(rows.loc["copy_input", "cell_mean"] - rows.loc["copy_input", "baseline_mean"])
    assert rows["gate"].tolist() == [True, False]
    learned = ab.learned(table, {"d": "generation"})
    assert learned["learned"].tolist() == [True]
    assert learned["reason"].iloc[0] == "better than copy of an input field on ROUGE-L (95 % intervals over 60 test examples)"

    close = comparisons(cell_rouge=20.2, copy_rouge=20, neighbour_rouge=10)
    assert close.set_index("baseline").loc["copy_input", "verdict"] == ab.NOT_SEPARATED
    learned = ab.learned(close, {"d": "generation"})
    assert learned["learned"].tolist() == [False] and learned["reason"].iloc[0].startswith("ROUGE-L not above copy of an input field")


def test_learning_on_one_gate_metric_is_enough_and_a_worse_one_is_named():
    table = comparisons(cell_rouge=30, copy_rouge=20, neighbour_rouge=10, cell_bert=0.3, copy_bert=0.6)
    verdicts = table.set_index(["baseline", "metric"])["verdict"]
    assert verdicts[("copy_input", "bertscore_f1")] == ab.WORSE and verdicts[("copy_input", "rouge_l")] == ab.BETTER
    assert ab.learned(table, {"d": "generation"})["learned"].tolist() == [True]


def test_a_baseline_scored_on_other_examples_is_an_error():
    runs = {"r.json": run_record("d", "full", 1, ["a", "b"], rouge_l=[1, 2])}
    baselines = {"results/t/baselines/d/copy_input/metrics.json": baseline_record("copy_input", "copy_input", ["a", "x"], rouge_l=[1, 2])}
    with pytest.raises(ValueError, match="copy_input/metrics.json: the baseline predicted other test examples"):
        ab.compare_with_baselines(ab.cell_example_scores(runs), baselines)


def test_files_round_trip_and_an_undefined_gate_says_why(tmp_path):
    from peftstudy import io, stats

    ids = ["a", "b", "c"]
    run = tmp_path / "runs" / "metrics.json"
    io.write_json(run, run_record("d", "full", 1, ids, rouge_l=[50, 60, 70]))
    nearest = tmp_path / "baselines" / "d" / "nearest_neighbour" / "metrics.json"
    io.write_json(nearest, baseline_record("nearest_neighbour", "nearest_neighbour", ids, rouge_l=[1, 2, 3]))
    ab.compare_files([run], [nearest], tmp_path / "against.csv", tmp_path / "learned.csv", confidence=0.9,
                     resamples=200, seed=1)
    table, learned = stats.read_table(tmp_path / "against.csv"), stats.read_table(tmp_path / "learned.csv")
    assert table["verdict"].tolist() == [ab.BETTER] and table["rank"].tolist() == [""]
    assert pd.isna(learned["learned"].iloc[0]) and learned["reason"].iloc[0].startswith("undefined: no gating")


def test_quality_metrics_are_those_a_claim_needs_learned_cells_for():
    assert all(map(ab.is_quality_metric, ["bleu4", "rouge_l", "bertscore_f1", "accuracy", "f1[positive]"]))
    assert not any(map(ab.is_quality_metric, ["train_time_s", "train_step_peak_tensor_bytes", "trainable_percent"]))
