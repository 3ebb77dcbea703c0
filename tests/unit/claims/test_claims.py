"""Claims against results: each check kind's measured value against a hand computation, the verdict rule on
constructed supported / not supported / not testable cases, the bootstrap (seeded, paired or independent,
as scipy computes it), the reasons for untestable checks, the LaTeX table, the schema, and the shipped
configs' claims on the demo's real results."""

import copy
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from peftstudy.claims import verdicts as C
from peftstudy.claims.table import claims_latex
from peftstudy.stats import read_metrics, read_table, summarise
from peftstudy.study.config import (
    StudyConfigError,
    load_study,
    read_yaml,
    validate_study,
)

SEEDS = [0, 1, 2, 3]


def make_study(claims=(), **extra):
    study = {
        "study": "s", "seeds": SEEDS,
        "datasets": {"d": {}, "d2": {}},
        "models": {"m": {}, "m2": {}},
        "methods": {"full": {"kind": "full"}, "lora": {"kind": "lora", "ranks": [4, 8, 16]},
                    "prefix": {"kind": "prefix"}, "prompt": {"kind": "prompt"}},
        "matrix": [{"datasets": ["d"], "models": ["m", "m2"], "methods": ["full", "lora", "prefix", "prompt"]},
                   {"datasets": ["d2"], "models": ["m"], "methods": ["full"]}],
        "exclusions": [{"model": "m2", "method": "prompt", "reason": "prompt tuning does not fit m2"}],
        "statistics": {"rank_study": {"method": "lora", "metrics": ["bleu4"]}},
        "claims": list(claims),
    }
    study.update(extra)
    return study


def tidy(cells, study="s", unit="", note=""):
    """cells: {(dataset, model, method, rank, metric): values over seeds 0, 1, ... or {seed: value}}."""
    rows = []
    for (dataset, model, method, rank, metric), values in cells.items():
        items = values.items() if isinstance(values, dict) else enumerate(values)
        for seed, value in items:
            rows.append({"study": study, "dataset": dataset, "model": model, "method": method, "rank": rank,
                         "seed": seed, "metric": metric, "value": float(value), "unit": unit,
                         "device": "cpu", "note": note if math.isnan(float(value)) else ""})
    return pd.DataFrame(rows)


def claim(*checks, id="c1"):
    return {"id": id, "text": "a claim", "source": "seed 000 §5.1", "reported": "98-99%", "checks": list(checks)}


def evaluate(checks, metrics, summary=None, rank_table=None, **study_extra):
    study = make_study([claim(*checks)], **study_extra)
    return C.evaluate_claims(study, metrics, summary, rank_table, confidence=0.95, seed=0, resamples=2000)


LORA = [9.7, 9.9, 10.2, 9.8]
FULL = [10.0, 10.3, 10.4, 10.1]
BASE = tidy({("d", "m", "lora", "16", "bleu4"): LORA, ("d", "m", "full", "", "bleu4"): FULL})


def ratio_check(**bound):
    return {"kind": "ratio", "metric": "bleu4", "dataset": "d", "model": "m",
            "a": {"method": "lora", "rank": 16}, "b": {"method": "full"}, **bound}


# -- each kind's measured value and verdict ---------------------------------------------------------------------

def test_ratio_by_hand_and_verdicts():
    expected = np.mean(LORA) / np.mean(FULL)
    supported = evaluate([ratio_check(expected=[0.95, 0.99])], BASE).iloc[0]
    assert supported["measured"] == pytest.approx(expected)
    assert supported["ci_low"] <= expected <= supported["ci_high"]
    assert supported["verdict"] == C.SUPPORTED and "overlaps the claimed [0.95, 0.99]" in supported["reason"]
    assert supported["n"] == "4/4" and supported["interval"] == "paired bootstrap over seeds"
    assert supported["description"] == "BLEU-4 of lora r16 / full on d, m"
    below = evaluate([ratio_check(expected=[1.05, 1.2])], BASE).iloc[0]
    assert below["verdict"] == C.NOT_SUPPORTED and "entirely below" in below["reason"]
    above = evaluate([ratio_check(expected=[0.5, 0.8])], BASE).iloc[0]
    assert above["verdict"] == C.NOT_SUPPORTED and "entirely above" in above["reason"]


def test_difference_and_relative_change_by_hand():
    checks = [
        {"kind": "difference", "metric": "bleu4", "dataset": "d", "model": "m", "a": {"method": "lora", "rank": 16},
         "b": {"method": "full"}, "scale": 10.0, "expected": [-5, -2]},
        {"kind": "relative_change", "metric": "bleu4", "dataset": "d", "model": "m",
         "a": {"method": "lora", "rank": 16}, "b": {"method": "full"}, "expected": [-0.1, -0.05]},
    ]
    table = evaluate(checks, BASE)
    difference = 10 * (np.mean(LORA) - np.mean(FULL))
    change = (np.mean(LORA) - np.mean(FULL)) / np.mean(FULL)
    assert table["measured"].tolist() == pytest.approx([difference, change])
    assert table.loc[0, "verdict"] == C.SUPPORTED  # -3.0 [...] overlaps [-5, -2]
    assert table.loc[1, "verdict"] == C.NOT_SUPPORTED  # about -2.9 %: the CI lies above -5 %
    assert table.loc[1, "expected"] == "[-10%, -5%]"
    for _, row in table.iterrows():
        assert row["ci_low"] <= row["measured"] <= row["ci_high"]


def test_value_uses_the_summary_interval_scaled():
    metrics = tidy({("d", "m", "full", "", "train_peak_memory_bytes"): [38.0e9, 38.4e9, 38.9e9, 38.1e9]})
    summary = summarise(metrics, 0.95)
    check = {"kind": "value", "metric": "train_peak_memory_bytes", "dataset": "d", "model": "m",
             "a": {"method": "full"}, "scale": 1.0e-9, "unit": "GB", "expected": [37.1, 39.3]}
    row = evaluate([check], metrics, summary).iloc[0]
    cell = summary.iloc[0]
    assert row["measured"] == pytest.approx(cell["mean"] * 1e-9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((cell["ci_low"] * 1e-9, cell["ci_high"] * 1e-9))
    assert row["verdict"] == C.SUPPORTED and "summary.csv" in row["interval"]
    assert row["description"] == "peak training memory (GB) of full on d, m"
    # Without a summary: the same t interval, from the metrics.
    fallback = evaluate([check], metrics, None).iloc[0]
    assert (fallback["ci_low"], fallback["ci_high"]) == pytest.approx((row["ci_low"], row["ci_high"]))
    high = evaluate([{**check, "expected": [40, 41]}], metrics, summary).iloc[0]
    assert high["verdict"] == C.NOT_SUPPORTED


@pytest.mark.parametrize(("bound", "verdict"), [
    ({"at_most": 5}, C.SUPPORTED),       # CI [3, 6] reaches below 5
    ({"at_most": 2}, C.NOT_SUPPORTED),   # entirely above 2
    ({"at_least": 6}, C.SUPPORTED),
    ({"at_least": 7}, C.NOT_SUPPORTED),
    ({"expected": [6, 9]}, C.SUPPORTED),
    ({"expected": [1, 2.9]}, C.NOT_SUPPORTED),
])
def test_numeric_verdict_rule(bound, verdict):
    low, high = C.expected_interval({"kind": "value", **bound})
    assert C.numeric_verdict(3.0, 6.0, low, high)[0] == verdict


def test_both_bounds_make_an_interval():
    check = {"kind": "value", "at_least": 1, "at_most": 2}
    assert C.expected_interval(check) == (1.0, 2.0) and C.expected_text(check) == "[1, 2]"
    assert C.expected_text({"kind": "relative_change", "expected": [-0.75, -0.65]}) == "[-75%, -65%]"


def test_numeric_verdict_without_interval_is_not_testable():
    assert C.numeric_verdict(math.nan, math.nan, 0, 1)[0] == C.NOT_TESTABLE


def test_trainable_percent_bound_on_a_constant_metric():
    metrics = tidy({("d", "m", "lora", "16", "trainable_percent"): [6.66] * 3})
    check = {"kind": "value", "metric": "trainable_percent", "dataset": "d", "model": "m",
             "a": {"method": "lora", "rank": 16}, "at_most": 5}
    row = evaluate([check], metrics, summarise(metrics)).iloc[0]
    assert (row["measured"], row["ci_low"], row["ci_high"]) == pytest.approx((6.66, 6.66, 6.66))
    assert row["verdict"] == C.NOT_SUPPORTED and row["expected"] == "≤ 5"


# -- the bootstrap ----------------------------------------------------------------------------------------------

def test_bootstrap_is_seeded_and_brackets_the_estimate():
    first = C.bootstrap_ci("ratio", LORA, FULL, True, 0.95, 2000, 7)
    assert first == C.bootstrap_ci("ratio", LORA, FULL, True, 0.95, 2000, 7)
    assert first != C.bootstrap_ci("ratio", LORA, FULL, True, 0.95, 2000, 8)
    point = C.point_estimate("ratio", LORA, FULL)
    assert first[0] <= point <= first[1]


@pytest.mark.parametrize("paired", [True, False])
def test_bootstrap_is_scipys(paired):
    ours = C.bootstrap_ci("difference", LORA, FULL, paired, 0.9, 500, 3)
    theirs = stats.bootstrap((np.array(LORA), np.array(FULL)), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                             paired=paired, vectorized=True, n_resamples=500, confidence_level=0.9,
                             method="percentile", rng=np.random.default_rng(3)).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high))


def test_paired_only_for_same_dataset_model_and_seeds():
    same = BASE
    other_seeds = tidy({("d", "m", "lora", "16", "bleu4"): {0: 9.7, 1: 9.9, 2: 10.2, 3: 9.8},
                        ("d", "m", "full", "", "bleu4"): {4: 10.0, 5: 10.3, 6: 10.4}})
    other_model = tidy({("d", "m2", "lora", "16", "bleu4"): LORA, ("d", "m", "full", "", "bleu4"): FULL})
    check = ratio_check(expected=[0.9, 1.0])
    assert evaluate([check], same).iloc[0]["interval"] == "paired bootstrap over seeds"
    row = evaluate([check], other_seeds).iloc[0]
    assert row["interval"] == "independent bootstrap over seeds" and row["n"] == "4/3"
    assert row["measured"] == pytest.approx(np.mean(LORA) / np.mean([10.0, 10.3, 10.4]))
    cross = evaluate([{**check, "a": {"method": "lora", "rank": 16, "model": "m2"}}], other_model).iloc[0]
    assert cross["interval"] == "independent bootstrap over seeds"
    assert cross["description"] == "BLEU-4 of lora r16 (m2) / full (m) on d"
    expected = C.bootstrap_ci("ratio", LORA, FULL, False, 0.95, 2000, 0)
    assert (cross["ci_low"], cross["ci_high"]) == pytest.approx(expected)


# -- not testable here --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "reason"), [
    ({"model": "gpt2-large"}, "model gpt2-large is not in this study"),
    ({"dataset": "products", "model": "gpt2-large"}, "dataset products and model gpt2-large are not in this study"),
])
def test_missing_names_are_not_testable(change, reason):
    row = evaluate([ratio_check(expected=[0.9, 1.0], **change)], BASE).iloc[0]
    assert row["verdict"] == C.NOT_TESTABLE and row["reason"] == reason
    assert math.isnan(row["measured"]) and math.isnan(row["ci_low"])


@pytest.mark.parametrize(("a", "model", "reason"), [
    ({"method": "lora", "rank": 32}, "m", "lora has no rank 32 in this study (ranks 4, 8, 16)"),
    ({"method": "adapter", "rank": 64}, "m", "method adapter is not in this study"),
    ({"method": "prompt"}, "m2", "prompt on d, m2 is excluded: prompt tuning does not fit m2"),
    ({"method": "lora", "rank": 8, "dataset": "d2"}, "m", "lora r8 is not run on d2, m in this study"),
    ({"method": "prefix"}, "m", "no results yet for prefix on d, m"),
])
def test_cells_the_study_does_not_have(a, model, reason):
    row = evaluate([{"kind": "value", "metric": "bleu4", "dataset": "d", "model": model, "a": a,
                     "expected": [0, 1]}], BASE).iloc[0]
    assert row["verdict"] == C.NOT_TESTABLE and row["reason"] == reason


def test_metric_not_measured_is_not_testable_with_the_note():
    metrics = pd.concat([BASE, tidy({("d", "m", "full", "", "train_energy_kwh"): [math.nan] * 4},
                                    note="not measured: CPU: no readable RAPL energy counter")])
    row = evaluate([{"kind": "value", "metric": "train_energy_kwh", "dataset": "d", "model": "m",
                     "a": {"method": "full"}, "expected": [43.6, 47.8]}], metrics, summarise(metrics)).iloc[0]
    assert row["verdict"] == C.NOT_TESTABLE
    assert row["reason"] == "train_energy_kwh was not measured for full on d, m (CPU: no readable RAPL energy counter)"
    assert math.isnan(row["measured"])  # never filled in
    unrecorded = evaluate([{"kind": "value", "metric": "accuracy", "dataset": "d", "model": "m",
                            "a": {"method": "full"}, "expected": [90, 95]}], metrics).iloc[0]
    assert unrecorded["reason"] == "accuracy is not recorded for full on d, m"


def test_one_seed_is_not_testable_but_its_point_is_shown():
    metrics = tidy({("d", "m", "lora", "16", "bleu4"): [9.8], ("d", "m", "full", "", "bleu4"): FULL})
    row = evaluate([ratio_check(expected=[0.9, 1.0])], metrics).iloc[0]
    assert row["verdict"] == C.NOT_TESTABLE
    assert row["reason"] == "only 1 seed of lora r16 on d, m: no interval"
    assert row["n"] == "1/4" and math.isnan(row["ci_low"])
    assert row["measured"] == pytest.approx(9.8 / np.mean(FULL)) and row["measured_text"].endswith("(no CI)")


def test_zero_denominator_is_not_testable():
    metrics = tidy({("d", "m", "lora", "16", "bleu4"): LORA, ("d", "m", "full", "", "bleu4"): [0, 0, 0, 0]})
    row = evaluate([ratio_check(expected=[0.9, 1.0])], metrics).iloc[0]
    assert row["verdict"] == C.NOT_TESTABLE and "undefined" in row["reason"]


# -- ordering -------------------------------------------------------------------------------------------------------

def ordering(order="decreasing"):
    return {"kind": "ordering", "metric": "bleu4", "dataset": "d", "model": "m", "order": order,
            "cells": [{"method": "full"}, {"method": "lora", "rank": 16}, {"method": "prefix"}]}


def test_ordering_supported_not_supported_and_inconclusive():
    clear = tidy({("d", "m", "full", "", "bleu4"): [30, 31, 30.5, 30.2], ("d", "m", "lora", "16", "bleu4"): [20, 21, 20.4, 20.1],
                  ("d", "m", "prefix", "", "bleu4"): [10, 10.5, 10.2, 9.9]})
    row = evaluate([ordering()], clear).iloc[0]
    assert row["verdict"] == C.SUPPORTED and row["n"] == "4/4/4"
    assert row["measured_text"] == "full 30.4 > lora r16 20.4 > prefix 10.2"
    assert row["description"] == "BLEU-4: full > lora r16 > prefix on d, m"
    assert evaluate([ordering("increasing")], clear).iloc[0]["verdict"] == C.NOT_SUPPORTED
    noisy = tidy({("d", "m", "full", "", "bleu4"): [30, 31, 30.5, 30.2], ("d", "m", "lora", "16", "bleu4"): [25, 34, 28, 36],
                  ("d", "m", "prefix", "", "bleu4"): [10, 10.5, 10.2, 9.9]})
    inconclusive = evaluate([ordering()], noisy).iloc[0]
    assert inconclusive["verdict"] == C.NOT_TESTABLE and inconclusive["reason"].startswith("inconclusive at this n")
    one_seed = tidy({("d", "m", "full", "", "bleu4"): [30, 31], ("d", "m", "lora", "16", "bleu4"): [20, 21],
                     ("d", "m", "prefix", "", "bleu4"): [10]})
    row = evaluate([ordering()], one_seed).iloc[0]
    assert row["verdict"] == C.NOT_TESTABLE and "only 1 seed of prefix" in row["reason"]


# -- rank claims ------------------------------------------------------------------------------------------------------

def rank_table(best, fractions, knee=math.nan, n=3, metric="bleu4", knee_reason=""):
    return pd.DataFrame([{"study": "s", "dataset": "d", "model": "m", "metric": metric, "method": "lora",
                          "rank": str(rank), "n": n, "mean": 1.0, "knee_rank": knee, "knee_reason": knee_reason,
                          "best_rank": float(best), "best_rule": "the rule", "best_reason": "",
                          "bootstrap_choice_fraction": fraction, "bootstrap_resamples": 2000, "bootstrap_seed": 0}
                         for rank, fraction in fractions.items()])


def rank_check(kind="best_rank", ranks=(16,)):
    return {"kind": kind, "metric": "bleu4", "dataset": "d", "model": "m", "ranks": list(ranks)}


@pytest.mark.parametrize(("best", "fractions", "ranks", "verdict"), [
    (16, {4: 0.0, 8: 0.2, 16: 0.8}, [16], C.SUPPORTED),          # the best rank
    (8, {4: 0.0, 8: 0.9, 16: 0.1}, [16], C.SUPPORTED),           # chosen in 10 % >= 5 %
    (8, {4: 0.0, 8: 0.97, 16: 0.03}, [16], C.NOT_SUPPORTED),     # chosen in 3 %
    (8, {4: 0.0, 8: 0.97, 16: 0.03}, [32], C.NOT_TESTABLE),      # 32 is not in the sweep
    (16, {4: 0.0, 8: 0.2, 16: 0.8}, [16, 32], C.SUPPORTED),      # one claimed rank present and best
])
def test_best_rank_rule(best, fractions, ranks, verdict):
    row = evaluate([rank_check(ranks=ranks)], BASE, rank_table=rank_table(best, fractions)).iloc[0]
    assert row["verdict"] == verdict
    assert row["measured"] == best
    if verdict == C.NOT_TESTABLE:
        assert "not in this study's sweep (4, 8, 16)" in row["reason"]


def test_knee_rank_and_its_untestable_cases():
    fractions = {4: 0.1, 8: 0.2, 16: 0.7}
    assert evaluate([rank_check("knee_rank", [16])], BASE, rank_table=rank_table(16, fractions, knee=16)).iloc[0]["verdict"] == C.SUPPORTED
    assert evaluate([rank_check("knee_rank", [8])], BASE, rank_table=rank_table(16, fractions, knee=16)).iloc[0]["verdict"] == C.NOT_SUPPORTED
    row = evaluate([rank_check("knee_rank", [16])], BASE,
                   rank_table=rank_table(16, fractions, knee_reason="kneed found no knee on a concave increasing curve")).iloc[0]
    assert row["verdict"] == C.NOT_TESTABLE and "kneed found no knee" in row["reason"]
    row = evaluate([rank_check()], BASE, rank_table=rank_table(16, fractions, n=1)).iloc[0]
    assert row["verdict"] == C.NOT_TESTABLE and "only 1 seed" in row["reason"]
    row = evaluate([rank_check() | {"metric": "rouge_l"}], BASE, rank_table=rank_table(16, fractions)).iloc[0]
    assert row["reason"] == "the rank study does not cover rouge_l (statistics.rank_study.metrics)"
    row = evaluate([rank_check() | {"model": "gpt2-large"}], BASE, rank_table=rank_table(16, fractions)).iloc[0]
    assert row["reason"] == "model gpt2-large is not in this study"


def test_rank_claim_on_a_computed_rank_study():
    from peftstudy.stats import rank_study

    metrics = tidy({("d", "m", "lora", str(rank), "bleu4"): [10 + rank / 4 + noise for noise in (0, 0.1, -0.1)]
                    for rank in (4, 8, 16)})
    table = rank_study(metrics, "lora", {"bleu4": 0.5}, 0.95, 500, 0)
    row = evaluate([rank_check(ranks=[16])], metrics, rank_table=table).iloc[0]
    assert row["verdict"] == C.SUPPORTED and row["measured"] == 16


# -- claim verdicts ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("verdicts", "combined"), [
    ([C.SUPPORTED, C.SUPPORTED], C.SUPPORTED),
    ([C.SUPPORTED, C.NOT_TESTABLE], C.NOT_TESTABLE),
    ([C.SUPPORTED, C.NOT_SUPPORTED, C.NOT_TESTABLE], C.NOT_SUPPORTED),
    ([C.NOT_TESTABLE], C.NOT_TESTABLE),
])
def test_combine_verdicts(verdicts, combined):
    assert C.combine_verdicts(verdicts) == combined


def test_claim_verdict_column_combines_its_checks():
    study = make_study([claim(ratio_check(expected=[0.95, 0.99]), ratio_check(expected=[0.95, 0.99], model="gpt2-large"), id="a"),
                        claim(ratio_check(expected=[0.95, 0.99]), ratio_check(expected=[2, 3]), id="b"),
                        claim(ratio_check(expected=[0.95, 0.99]), id="c")])
    table = C.evaluate_claims(study, BASE, None, None)
    assert table["check"].tolist() == [1, 2, 1, 2, 1]
    assert table.groupby("claim_id", sort=False)["claim_verdict"].first().to_dict() == {
        "a": C.NOT_TESTABLE, "b": C.NOT_SUPPORTED, "c": C.SUPPORTED}
    assert list(table.columns) == C.COLUMNS


def test_validate_claims_rejects_what_the_schema_cannot():
    with pytest.raises(ValueError, match="duplicate claim id"):
        C.validate_claims(make_study([claim(ratio_check(expected=[0, 1])), claim(ratio_check(expected=[0, 1]))]))
    with pytest.raises(ValueError, match="swept over ranks"):
        C.validate_claims(make_study([claim(ratio_check(expected=[0, 1]) | {"a": {"method": "lora"}})]))
    with pytest.raises(ValueError, match="no model"):
        C.validate_claims(make_study([claim({k: v for k, v in ratio_check(expected=[0, 1]).items() if k != "model"})]))
    with pytest.raises(ValueError, match="low > high"):
        C.validate_claims(make_study([claim(ratio_check(expected=[1, 0]))]))


# -- LaTeX --------------------------------------------------------------------------------------------------------------

def test_latex_renders_and_escapes():
    study = make_study([{"id": "x", "text": "LoRA_r & 98% ± 1 of full", "source": "seed 000 §5.1",
                         "reported": "3-4× faster, $cheap$", "checks": [ratio_check(expected=[0.95, 0.99]),
                                                                        ratio_check(expected=[0.9, 1], model="gpt2-large")]}])
    table = C.evaluate_claims(study, BASE, None, None)
    tex = claims_latex(table, study)
    assert r"\label{tab:claims}" in tex and r"\begin{longtable}" in tex and r"\end{longtable}" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex
    assert r"LoRA\_r \& 98\% $\pm$ 1 of full" in tex and r"\S{}5.1" in tex and r"3-4$\times$ faster, \$cheap\$" in tex
    assert "percentile bootstrap over seeds (2000 resamples, seed 0)" in tex
    assert r"$n$ = seeds per cell, 4 here" in tex
    assert "not in this study" in tex and "supported" in tex
    assert "Best rank: supported when a claimed rank is the best rank or is chosen in at least 5\\%" in tex
    assert tex.count("&") - tex.count(r"\&") == 4 * (2 + 1 + 2)  # header twice, the claim's row, two checks


def test_latex_compiles(tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("no pdflatex")
    study = make_study([claim(ratio_check(expected=[0.95, 0.99]), ordering())])
    table = C.evaluate_claims(study, BASE, None, None)
    (tmp_path / "t.tex").write_text("\n".join([
        r"\documentclass{article}", r"\usepackage[margin=2cm,landscape]{geometry}", r"\usepackage{booktabs}",
        r"\usepackage{array}", r"\usepackage{longtable}", r"\begin{document}", claims_latex(table, study),
        r"\end{document}"]))
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]


# -- schema -------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_raw(repository):
    return read_yaml(repository / "config" / "demo.yaml")


@pytest.mark.parametrize(("check", "message"), [
    ({"kind": "ratio", "metric": "bleu4", "a": {"method": "full"}, "expected": [0, 1]}, ".b: required key is missing"),
    ({"kind": "ratio", "metric": "bleu4", "a": {"method": "full"}, "b": {"method": "full"}},
     ".expected: required key is missing"),
    ({"kind": "value", "metric": "bleu4", "a": {"method": "full"}, "expected": [0, 1], "at_most": 2},
     ".expected: [0, 1] should not be valid"),
    ({"kind": "value", "metric": "bleu4", "a": {"method": "full"}, "expected": [0, 1, 2]}, ".expected: [0, 1, 2] is too long"),
    ({"kind": "value", "metric": "bleu4", "a": {"method": "full", "seed": 1}, "at_most": 2}, ".a.seed: unknown key 'seed'"),
    ({"kind": "value", "metric": "bleu4", "a": {"method": "full", "rank": 0}, "at_most": 2}, ".a.rank: 0 is less than"),
    ({"kind": "best_rank", "metric": "bleu4", "dataset": "d", "model": "m"}, ".ranks: required key is missing"),
    ({"kind": "ordering", "metric": "bleu4", "cells": [{"method": "full"}]}, ".cells: [{'method': 'full'}] is too short"),
    ({"kind": "ratio", "metric": "bleu4", "a": {"method": "full"}, "b": {"method": "full"}, "at_most": 1, "scale": 2},
     ".scale: 2 should not be valid"),
    ({"kind": "best_rank", "metric": "bleu4", "dataset": "d", "model": "m", "ranks": [8], "at_most": 1},
     ".at_most: 1 should not be valid"),
    ({"kind": "guess", "metric": "bleu4"}, ".kind: 'guess' is not one of"),
])
def test_schema_rejects_malformed_claims(demo_raw, check, message):
    raw = copy.deepcopy(demo_raw)
    raw["claims"] = [{"id": "x", "text": "t", "source": "s", "reported": "r", "checks": [check]}]
    with pytest.raises(StudyConfigError) as error:
        validate_study(raw, "demo.yaml")
    assert f"demo.yaml: claims[0].checks[0]{message}" in str(error.value)


def test_schema_requires_claim_keys(demo_raw):
    raw = copy.deepcopy(demo_raw)
    raw["claims"] = [{"id": "x", "text": "t", "source": "s", "checks": [ratio_check(expected=[0, 1])]}]
    with pytest.raises(StudyConfigError, match=r"claims\[0\]\.reported: required key is missing"):
        validate_study(raw, "demo.yaml")


# -- the shipped configs on the demo's real results ---------------------------------------------------------------------

@pytest.mark.parametrize("config", ["config.yaml", "config/demo.yaml"])
def test_shipped_claims_on_the_demo_results(repository, config):
    results = repository / "results" / "demo"
    paths = [results / "metrics.csv", results / "stats" / "summary.csv", results / "stats" / "rank_study.csv"]
    study = load_study(repository / config)
    C.validate_claims(study)
    assert len(study["claims"]) == 11
    if not all(path.exists() for path in paths):
        pytest.skip("no demo results under results/demo")
    table = C.evaluate_claims(study, read_metrics(paths[0]), read_table(paths[1]), read_table(paths[2]),
                              confidence=study["statistics"]["confidence"], resamples=500)
    assert len(table) == sum(len(c["checks"]) for c in study["claims"])
    assert set(table["verdict"]) <= set(C.VERDICTS) and set(table["claim_verdict"]) <= set(C.VERDICTS)
    for _, row in table.iterrows():
        assert row["reason"], row["description"]
        if row["verdict"] in (C.SUPPORTED, C.NOT_SUPPORTED) and row["kind"] in C.NUMERIC_KINDS:
            assert math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"])
    by_id = table.groupby("claim_id")
    # Claims about models neither study of the demo's results has are never given a verdict.
    for claim_id in ("gpt2-large-memory", "gpt2-large-energy", "t5-base-lora16", "llama-7b", "gpt2-time-scaling"):
        assert (by_id.get_group(claim_id)["verdict"] == C.NOT_TESTABLE).all()
    bert = by_id.get_group("bert-sst2-lora")
    assert bert.iloc[0]["reason"] == "dataset sst2 and model bert-base are not in this study"
    if config == "config/demo.yaml":
        r32 = table[table["description"] == "BLEU-4 of lora r32 / full on debian-products, gpt2-en"].iloc[0]
        assert r32["reason"] == "lora has no rank 32 in this study (ranks 4, 8, 16)"
        tested = table[table["verdict"] != C.NOT_TESTABLE]
        assert len(tested) > 0 and tested["kind"].isin(C.NUMERIC_KINDS + C.RANK_KINDS + ("ordering",)).all()
    else:
        # The paper study's names are not the demo's: nothing of the demo's results is read for it.
        assert (table["verdict"] == C.NOT_TESTABLE).all()
    learned_path = results / "stats" / "learned.csv"
    if config == "config/demo.yaml" and learned_path.exists():
        learned = read_table(learned_path)
        gated = C.evaluate_claims(study, read_metrics(paths[0]), read_table(paths[1]), read_table(paths[2]),
                                  confidence=study["statistics"]["confidence"], resamples=500, learned=learned)
        # The gate reads learned.csv: LoRA r16's BLEU against full fine-tuning on products is testable iff both learned.
        cells = learned[(learned["dataset"] == "debian-products") & (learned["model"] == "gpt2-en")]
        both = set(cells[cells["method"].eq("full") | cells["rank"].eq("16")]["learned"].astype(str)) == {"True"}
        r16 = gated[gated["description"] == "BLEU-4 of lora r16 / full on debian-products, gpt2-en"].iloc[0]
        assert ("did not learn its task" in r16["reason"]) == (not both) and (both or r16["verdict"] == C.NOT_TESTABLE)
        # Time and memory checks keep their verdicts: what a method costs does not depend on what it learned.
        from peftstudy.stats.against_baselines import is_quality_metric

        cost = ~table["metric"].map(is_quality_metric)
        assert gated[cost]["verdict"].tolist() == table[cost]["verdict"].tolist()
    tex = claims_latex(table, study)
    assert r"\label{tab:claims}" in tex
