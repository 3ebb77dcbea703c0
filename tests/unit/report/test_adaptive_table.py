"""The adaptive-seeds replay in the report: runs kept, training hours saved, conclusions from the kept runs alone."""

import numpy as np
import pandas as pd

from peftstudy.report.adaptive_table import adaptive_latex, adaptive_replay

SETTINGS = {"baseline_method": "full", "compare_metrics": ["bleu4"], "practical_thresholds": {"bleu4": 0.5},
            "alpha": 0.05, "correction": "holm", "confidence": 0.95}


def grid(noise: float) -> pd.DataFrame:
    """Full fine-tuning, LoRA r=4 four BLEU below it, LoRA r=8 level with it; five seeds of 36 s of training each."""
    rng = np.random.default_rng(3)
    rows = []
    for method, rank, mean in (("full", "", 30.0), ("lora", "4", 26.0), ("lora", "8", 30.0)):
        for seed in range(1, 6):
            cell = {"study": "s", "dataset": "d", "model": "m", "method": method, "rank": rank, "seed": seed}
            rows += [{**cell, "metric": "bleu4", "value": mean + rng.standard_normal() * noise},
                     {**cell, "metric": "train_time_s", "value": 36.0}]
    return pd.DataFrame(rows)


def test_clear_differences_settle_early_and_the_conclusions_hold_from_the_kept_runs():
    joined, summary = adaptive_replay(grid(noise=0.02), SETTINGS)
    assert (summary["runs"], summary["kept"], summary["comparisons"], summary["settled_early"]) == (15, 8, 2, 2)
    assert summary["training_hours_saved"] == 7 * 36 / 3600  # full and r=8 seeds 4-5, r=4 seeds 3-5
    assert summary["agree"] == 2 and joined["agrees"].all()
    assert set(joined["significant_full"]) == {True, False}  # r=4 significant, r=8 not, from all runs and kept ones
    tex = adaptive_latex(joined, summary, SETTINGS)
    assert "runs kept 8 of 15, training hours saved 0.07" in tex and r"d & m & 2 & 2 & 1 / 1 & 8 of 15 & 2 of 2 \\" in tex


def test_seed_noise_near_the_threshold_keeps_every_run():
    joined, summary = adaptive_replay(grid(noise=1.0), SETTINGS)
    assert (summary["kept"], summary["training_hours_saved"], summary["settled_early"]) == (15, 0.0, 0)
    assert summary["agree"] == summary["comparisons"] == 2  # the same runs: the same conclusions


def test_a_grid_with_one_seed_per_cell_has_nothing_to_replay():
    one_seed = grid(noise=0.5)
    joined, summary = adaptive_replay(one_seed[one_seed["seed"] == 1], SETTINGS)
    assert joined.empty and summary["runs"] == 0
    assert "No (dataset, model) ran two or more seeds" in adaptive_latex(joined, summary, SETTINGS)
