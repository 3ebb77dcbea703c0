"""The adaptive-seeds table: a study's own looks (runs used, training hours saved, agreement with the full grid where
it ran) and the design replayed on a fixed-seed grid."""

import numpy as np
import pandas as pd
import pytest

from peftstudy.report.adaptive_table import (
    adaptive_latex,
    adaptive_outcome,
    claims_agreement,
)

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
                     {**cell, "metric": "train_time_s", "value": 36.0 + seed}]
    return pd.DataFrame(rows)


def test_clear_differences_settle_early_and_the_conclusions_hold_from_the_kept_runs():
    joined, summary, used = adaptive_outcome(grid(noise=0.02), SETTINGS)
    assert (summary["runs"], summary["kept"], summary["comparisons"], summary["settled_early"]) == (15, 8, 2, 2)
    # full and r=8 seeds 4-5, r=4 seeds 3-5: their measured training times
    assert summary["training_hours_saved"] == pytest.approx((2 * (40 + 41) + 39 + 40 + 41) / 3600)
    assert not summary["hours_estimated"] and summary["mode"] == "replayed"
    assert summary["agree"] == 2 and joined["agrees"].all()
    assert set(joined["significant_full"]) == {True, False}  # r=4 significant, r=8 not, from all runs and kept ones
    assert len(used[used["metric"] == "bleu4"]) == 8
    tex = adaptive_latex(joined, summary, SETTINGS)
    assert "runs 8 of the fixed design's 15, training hours saved 0.0783" in tex
    assert r"d & m & 2 & 2 & 1 / 1 & 8 of 15 & 2 of 2 \\" in tex


def test_seed_noise_near_the_threshold_keeps_every_run():
    joined, summary, _ = adaptive_outcome(grid(noise=1.0), SETTINGS)
    assert (summary["kept"], summary["training_hours_saved"], summary["settled_early"]) == (15, 0.0, 0)
    assert summary["agree"] == summary["comparisons"] == 2  # the same runs: the same conclusions
    assert "no comparison settled before its last seed" in adaptive_latex(joined, summary, SETTINGS)


def test_a_grid_with_one_seed_per_cell_has_nothing_to_replay():
    one_seed = grid(noise=0.5)
    joined, summary, _ = adaptive_outcome(one_seed[one_seed["seed"] == 1], SETTINGS)
    assert joined.empty and summary["runs"] == 0
    assert "No (dataset, model) ran two or more seeds" in adaptive_latex(joined, summary, SETTINGS)


def record(runs, decisions, look=3):
    return {"look": look, "design": {"min": 2, "max": 5, "alpha": 0.05, "practical": {"bleu4": 0.5},
                                      "full_grid": False, "seeds": [1, 2, 3, 4, 5]},
            "runs": runs, "decisions": decisions}


def study_runs(frame):
    return [["s", row.dataset, row.model, row.method + (f"-r{row.rank}" if row.rank else ""), int(row.seed)]
            for row in frame[["dataset", "model", "method", "rank", "seed"]].drop_duplicates().itertuples()]


DECISIONS = [{"dataset": "d", "model": "m", "metric": "bleu4", "method": "lora", "rank": "4", "seeds_available": 2,
              "settled_at": 2, "decision": "different", "mean_difference": -4.0, "rci_low": -4.5, "rci_high": -3.5,
              "threshold": 0.5, "alpha": 0.025},
             {"dataset": "d", "model": "m", "metric": "bleu4", "method": "lora", "rank": "8", "seeds_available": 3,
              "settled_at": 3, "decision": "equivalent", "mean_difference": 0.0, "rci_low": -0.2, "rci_high": 0.2,
              "threshold": 0.5, "alpha": 0.025}]


def test_an_adaptive_study_that_ran_only_its_looks_runs_estimates_the_hours_it_saved():
    finished = grid(noise=0.02)
    ran = finished.query("seed <= 2 or (seed == 3 and rank != '4')")
    joined, summary, used = adaptive_outcome(ran, SETTINGS, record(study_runs(ran), DECISIONS))
    assert (summary["mode"], summary["runs"], summary["kept"], summary["looks"]) == ("run", 15, 8, 2)
    assert summary["agree"] is None and used is None and summary["hours_estimated"]
    # Each run not run at its cell's mean over the seeds it ran: full and r=8 37.5 s... (seeds 1-3: 38 s) x 2 each,
    # r=4 (seeds 1-2: 37.5 s) x 3.
    assert summary["training_hours_saved"] == pytest.approx((2 * 2 * 38 + 3 * 37.5) / 3600)
    tex = adaptive_latex(joined, summary, SETTINGS)
    assert "as this study ran them (2 look(s))" in tex and "(estimated from the seeds run)" in tex
    assert "the full grid did not run, so agreement with it is not measured" in tex and "n/a" in tex


def test_an_adaptive_study_that_also_ran_the_full_grid_measures_savings_and_agreement():
    finished = grid(noise=0.02)
    ran = finished.query("seed <= 2 or (seed == 3 and rank != '4')")
    joined, summary, used = adaptive_outcome(finished, SETTINGS, record(study_runs(ran), DECISIONS))
    assert (summary["kept"], summary["settled_early"], summary["agree"]) == (8, 2, 2)
    assert not summary["hours_estimated"]
    assert summary["training_hours_saved"] == pytest.approx((2 * (40 + 41) + 39 + 40 + 41) / 3600)
    assert sorted(used[(used["metric"] == "bleu4") & (used["rank"] == "4")]["seed"]) == ["1", "2"]


def test_claims_agree_when_every_check_has_the_same_verdict():
    full = pd.DataFrame({"claim_id": ["a", "a", "b"], "check": [1, 2, 1],
                         "verdict": ["supported", "supported", "not supported"],
                         "claim_verdict": ["supported", "supported", "not supported"]})
    kept = full.assign(verdict=["supported", "inconclusive", "not supported"],
                       claim_verdict=["inconclusive", "inconclusive", "not supported"])
    assert claims_agreement(full, kept) == {"claims": 2, "claims_agree": 1, "checks": 3, "checks_agree": 2}
