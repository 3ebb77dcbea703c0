"""Correlations between metrics against hand formulas (numpy Pearson r with its t-distribution p; Spearman as
Pearson on ranks) and pingouin's corr."""

import math

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as scipy_stats

from peftstudy.stats import metric_correlations


def runs(dataset="d", n_seeds=4, seed=0):
    """Two variants x n_seeds runs with three metrics: rouge_l follows bleu4, train_time_s does not."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, rank in (("full", ""), ("lora", "8")):
        for run_seed in range(n_seeds):
            bleu = rng.normal(30, 2)
            for metric, value in (("bleu4", bleu), ("rouge_l", 0.8 * bleu + rng.normal(0, 1)),
                                  ("train_time_s", rng.normal(300, 20))):
                rows.append({"study": "s", "dataset": dataset, "model": "m", "method": method, "rank": rank,
                             "seed": run_seed, "metric": metric, "value": value})
    return pd.DataFrame(rows)


def aligned(frame, metric_a, metric_b):
    wide = frame.pivot_table(index=["dataset", "method", "rank", "seed"], columns="metric", values="value")
    pair = wide[[metric_a, metric_b]].dropna()
    return pair[metric_a].to_numpy(), pair[metric_b].to_numpy()


def pearson_by_hand(x, y):
    r = np.corrcoef(x, y)[0, 1]
    t = r * math.sqrt((len(x) - 2) / (1 - r**2))
    return r, 2 * scipy_stats.t.sf(abs(t), len(x) - 2)


def test_every_pair_matches_hand_formulas_and_pingouin():
    frame = runs(n_seeds=6)
    table = metric_correlations(frame)
    assert table[["metric_a", "metric_b"]].values.tolist() == [["bleu4", "rouge_l"], ["bleu4", "train_time_s"],
                                                                ["rouge_l", "train_time_s"]]
    for row in table.itertuples():
        x, y = aligned(frame, row.metric_a, row.metric_b)
        assert row.n == len(x) == 12
        assert (row.pearson_r, row.pearson_p) == pytest.approx(pearson_by_hand(x, y), rel=1e-9)
        # Spearman: Pearson on ranks; scipy's p uses the same t approximation
        assert (row.spearman_rho, row.spearman_p) == pytest.approx(
            pearson_by_hand(scipy_stats.rankdata(x), scipy_stats.rankdata(y)), rel=1e-9)
        for method, r_column, p_column in (("pearson", "pearson_r", "pearson_p"),
                                           ("spearman", "spearman_rho", "spearman_p")):
            reference = pg.corr(x, y, method=method).iloc[0]
            assert (getattr(row, r_column), getattr(row, p_column)) == pytest.approx(
                (reference["r"], reference["p_val"]), rel=1e-9)


def test_runs_align_by_run_key_and_nan_is_dropped():
    frame = runs(n_seeds=5)
    frame.loc[(frame["metric"] == "rouge_l") & (frame["seed"] == 0), "value"] = math.nan
    shuffled = frame.sample(frac=1, random_state=1)
    table = metric_correlations(shuffled)
    row = table[(table["metric_a"] == "bleu4") & (table["metric_b"] == "rouge_l")].iloc[0]
    x, y = aligned(frame, "bleu4", "rouge_l")
    assert row["n"] == 8 and row["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-9)
    assert table[(table["metric_b"] == "train_time_s")]["n"].tolist() == [10, 8]


def test_scope_per_dataset_or_over_the_study():
    frame = pd.concat([runs("d1", seed=1), runs("d2", seed=2)])
    per_dataset = metric_correlations(frame, scope="dataset")
    whole = metric_correlations(frame, scope="study")
    assert per_dataset["dataset"].tolist() == ["d1"] * 3 + ["d2"] * 3 and set(per_dataset["n"]) == {8}
    assert "dataset" not in whole.columns and set(whole["n"]) == {16}
    x, y = aligned(frame, "bleu4", "train_time_s")
    assert whole.iloc[1]["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-9)
    with pytest.raises(ValueError):
        metric_correlations(frame, scope="model")


def test_too_few_runs_and_constant_metrics_give_a_reason():
    frame = runs(n_seeds=1)
    table = metric_correlations(frame)
    assert set(table["n"]) == {2} and table["pearson_r"].isna().all()
    assert set(table["reason"]) == {"fewer than 3 runs measured both metrics"}
    constant = runs(n_seeds=3)
    constant.loc[constant["metric"] == "train_time_s", "value"] = 42.0
    table = metric_correlations(constant)
    flat = table[table["metric_b"] == "train_time_s"]
    assert flat["spearman_rho"].isna().all() and set(flat["reason"]) == {"a metric is constant over the shared runs"}
    assert table.loc[table["metric_b"] == "rouge_l", "reason"].tolist() == [""]
