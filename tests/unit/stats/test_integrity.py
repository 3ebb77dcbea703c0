"""The integrity check of a results table: each check finds its planted fault and nothing in a clean table, and on
seed 004's tables as published it flags the identical BERT QA LoRA / SFT rows."""

import random
from pathlib import Path

import pandas as pd
import pytest

from peftstudy.stats import integrity
from peftstudy.stats.integrity import (
    CHECKS,
    RunEvidence,
    check_table,
    significant_digits,
)

PUBLISHED = Path(__file__).resolve().parents[2] / "fixtures" / "seed004_published.csv"
CELLS = [("gpt2", "full", ""), ("gpt2", "lora", "4"), ("gpt2", "lora", "8"), ("gpt2", "lora", "16"),
         ("t5", "full", ""), ("t5", "lora", "4"), ("t5", "lora", "8"), ("t5", "lora", "16")]
TOTAL = {"gpt2": 124_439_808, "t5": 222_903_552}
PER_RANK = {"gpt2": 73_728, "t5": 110_592}


def clean_table(seeds=(1, 2, 3), seed=0) -> pd.DataFrame:
    """Eight cells x three seeds of plausible, internally consistent metrics."""
    rng = random.Random(seed)
    rows = []
    for model, method, rank in CELLS:
        trainable = TOTAL[model] if method == "full" else PER_RANK[model] * int(rank)
        quality = rng.uniform(20, 30)
        for s in seeds:
            p, r = rng.uniform(0.80, 0.86), rng.uniform(0.80, 0.86)
            em = rng.uniform(40, 60)
            values = {
                "bleu4": quality + rng.gauss(0, 0.5), "rouge_l": quality + 10 + rng.gauss(0, 0.5),
                "bertscore_precision": p, "bertscore_recall": r, "bertscore_f1": 2 * p * r / (p + r),
                "perplexity": rng.uniform(8, 12), "test_loss": rng.uniform(2.0, 2.5),
                "exact_match": em, "squad_f1": em + rng.uniform(1, 5), "ttr": rng.uniform(0.3, 0.4),
                "trainable_parameters": trainable, "total_parameters": TOTAL[model] + (0 if method == "full" else trainable),
            }
            values["trainable_percent"] = 100 * values["trainable_parameters"] / values["total_parameters"]
            rows += [{"dataset": "d", "model": model, "method": method, "rank": rank, "seed": str(s), "metric": m,
                      "value": v} for m, v in values.items()]
    return pd.DataFrame(rows)


def edit(table, where: dict, metric: str, value) -> pd.DataFrame:
    table = table.copy()
    mask = (table["metric"] == metric)
    for column, wanted in where.items():
        mask &= table[column] == wanted
    assert mask.any()
    table.loc[mask, "value"] = value
    return table


def checks_of(findings) -> list[str]:
    return sorted({f.check for f in findings})


def test_a_clean_table_has_no_finding():
    assert check_table(clean_table()) == []


def test_seed004_as_published_flags_the_identical_bert_qa_lora_and_sft_rows():
    findings = check_table(pd.read_csv(PUBLISHED, dtype=str, keep_default_na=False))
    identical = [f for f in findings if f.check == "identical_cells"]
    assert [f.where for f in identical] == ["qa/bert/lora = qa/bert/sft",
                                            "summarization/t5/lora = summarization/t5/sft"]
    assert "exact_match=62.11, squad_f1=62.58, test_loss=0.8653" in identical[0].detail
    assert "8 identical values" in identical[1].detail  # validation and test ROUGE, four of each
    contradictions = [f.where for f in findings if f.check == "contradiction"]
    assert contradictions == [f"summarization/bert/{m} bertscore_f1" for m in ("lora", "qlora", "sft")]
    assert [f.where for f in findings if f.check == "mixed_scales"] == [
        f"summarization {m}" for m in ("rouge1", "rouge2", "rouge_l", "rouge_lsum")]
    assert checks_of(findings) == ["contradiction", "identical_cells", "mixed_scales"]
    # Rounded to two decimals, GPT-2's LoRA and QLoRA share every per-class value: too few digits to flag.
    assert not any("sentiment/gpt2" in f.where for f in findings)


def test_identical_cells_are_flagged():
    """LoRA r = 16's row pasted over with r = 8's values (the parameter counts left as they were)."""
    table = clean_table()
    counts = table["metric"].isin(["trainable_parameters", "total_parameters", "trainable_percent"])
    r8 = (table["model"] == "t5") & (table["rank"] == "8") & ~counts
    r16 = (table["model"] == "t5") & (table["rank"] == "16") & ~counts
    table.loc[r16, "value"] = table.loc[r8, "value"].to_numpy()
    findings = check_table(table)
    assert [(f.check, f.where) for f in findings] == [("identical_cells", "d/t5/lora-r16 = d/t5/lora-r8")]
    assert "30 identical values" in findings[0].detail  # ten metrics x three seeds


def test_identical_seeds_are_flagged():
    table = clean_table()
    cell = (table["model"] == "gpt2") & (table["method"] == "full")
    first = table[cell & (table["seed"] == "1")].set_index("metric")["value"]
    for metric in ("bleu4", "rouge_l", "bertscore_f1", "bertscore_precision", "bertscore_recall", "perplexity",
                   "test_loss", "exact_match", "squad_f1", "ttr"):
        table = edit(table, {"model": "gpt2", "method": "full", "seed": "3"}, metric, first[metric])
    assert [(f.check, f.where) for f in check_table(table)] == [("identical_seeds", "d/gpt2/full seeds 1 and 3")]


@pytest.mark.parametrize("metric, value", [("bleu4", 104.0), ("ttr", 1.3), ("trainable_percent", -1.0),
                                           ("bertscore_recall", 1.2)])
def test_a_value_outside_its_range_is_flagged(metric, value):
    table = edit(clean_table(), {"model": "t5", "method": "full", "seed": "2"}, metric, value)
    findings = [f for f in check_table(table) if f.check == "out_of_range"]
    assert [f.where for f in findings] == [f"d/t5/full seed 2 {metric}"]


def test_a_float_rounding_past_a_bound_is_not_out_of_range():
    # The cosine of identical float32 embeddings: demo_methods' prefix-tuned T5 wrote one sentence for every input.
    table = edit(clean_table(), {"model": "t5", "method": "full", "seed": "2"}, "ttr", 1.0000001092886477)
    assert not [f for f in check_table(table) if f.check == "out_of_range"]


def test_one_metric_on_two_scales_is_flagged():
    table = clean_table()
    mask = (table["model"] == "t5") & (table["metric"] == "rouge_l")
    table.loc[mask, "value"] = table.loc[mask, "value"] / 100
    findings = [f for f in check_table(table) if f.check == "mixed_scales"]
    assert [f.where for f in findings] == ["d rouge_l"]
    assert "fractions for t5" in findings[0].detail and "percentages for gpt2" in findings[0].detail


@pytest.mark.parametrize("where, metric, value, expected", [
    ({"model": "gpt2", "method": "full", "seed": "1"}, "trainable_parameters", 124_000_000, "full fine-tuning trains"),
    ({"model": "t5", "rank": "16", "seed": "2"}, "trainable_parameters", 110_592 * 16 + 1, "per unit of rank"),
    ({"model": "gpt2", "rank": "4", "seed": "3"}, "trainable_percent", 0.5, "trainable_percent 0.5"),
])
def test_a_parameter_count_that_breaks_its_relations_is_flagged(where, metric, value, expected):
    findings = [f for f in check_table(edit(clean_table(), where, metric, value)) if f.check == "parameter_count"]
    assert findings and all(expected in f.detail or "trainable_percent" in f.detail for f in findings)
    assert any(expected in f.detail for f in findings)


def test_a_count_against_its_formula_is_checked_per_run():
    runs = [RunEvidence("d", "gpt2", "lora", "4", "1", trainable=294_912, expected_trainable=294_912, formula="r(d_in+d_out)"),
            RunEvidence("d", "gpt2", "lora", "8", "1", trainable=589_825, expected_trainable=589_824, formula="r(d_in+d_out)")]
    findings = check_table(clean_table(), runs)
    assert [(f.check, f.where) for f in findings] == [("parameter_count", "d/gpt2/lora-r8 seed 1")]
    assert "589825 trainable parameters recorded, 589824 by r(d_in+d_out)" in findings[0].detail


def test_seed_variance_zero_and_implausibly_large_are_flagged():
    table = clean_table()
    for seed in ("1", "2", "3"):
        table = edit(table, {"model": "gpt2", "method": "lora", "rank": "4", "seed": seed}, "perplexity", 9.5)
    table = edit(table, {"model": "t5", "method": "lora", "rank": "16", "seed": "3"}, "test_loss", 9.0)
    findings = [(f.check, f.where) for f in check_table(table)]
    assert findings == [("seed_variance", "d/gpt2/lora-r4 perplexity"), ("seed_variance", "d/t5/lora-r16 test_loss")]


def test_equal_seeds_on_a_metric_with_few_values_are_not_flagged():
    table = clean_table()
    for seed in ("1", "2", "3"):
        table = edit(table, {"model": "gpt2", "method": "full", "seed": seed}, "exact_match", 50.0)
        table = edit(table, {"model": "gpt2", "method": "full", "seed": seed}, "squad_f1", 55.0)
    assert check_table(table) == []


@pytest.mark.parametrize("metric, value, expected", [
    ("perplexity", 0.93, "perplexity"), ("exact_match", 70.0, "exact_match"), ("bertscore_f1", 0.9123456, "bertscore_f1"),
])
def test_metrics_that_contradict_each_other_are_flagged(metric, value, expected):
    table = edit(clean_table(), {"model": "gpt2", "method": "full", "seed": "2"}, metric, value)
    findings = [f for f in check_table(table) if f.check == "contradiction"]
    assert [f.where for f in findings] == [f"d/gpt2/full seed 2 {expected}"]


def test_a_class_f1_that_is_not_the_harmonic_mean_of_its_precision_and_recall_is_flagged():
    base = {"dataset": "s", "model": "bert", "method": "lora", "rank": "", "seed": ""}
    # As a CSV of a published table gives them: strings, whose written places set the rounding allowed for.
    rows = [dict(base, metric=m, value=v) for m, v in (("precision[pos]", "0.90"), ("recall[pos]", "0.80"),
                                                        ("f1[pos]", "0.80"), ("precision[neg]", "0.81"),
                                                        ("recall[neg]", "0.89"), ("f1[neg]", "0.85"))]
    findings = check_table(pd.DataFrame(rows))
    # f1[pos]: the harmonic mean is 0.847, beyond two-decimal rounding; f1[neg]: 0.848, within it.
    assert [(f.check, f.where) for f in findings] == [("contradiction", "s/bert/lora f1[pos]")]


def test_scores_above_zero_with_only_empty_outputs_are_a_contradiction():
    runs = [RunEvidence("d", "t5", "lora", "8", "1", empty_share=1.0), RunEvidence("d", "t5", "lora", "8", "2",
                                                                                   empty_share=0.2)]
    findings = check_table(clean_table(), runs)
    assert sorted(f.where for f in findings) == ["d/t5/lora-r8 seed 1 bleu4", "d/t5/lora-r8 seed 1 rouge_l"]


def test_outputs_copied_from_training_references_are_flagged():
    runs = [RunEvidence("d", "t5", "lora", "8", "1", copied_share=0.8),
            RunEvidence("d", "t5", "lora", "8", "2", copied_share=0.1)]
    findings = check_table(clean_table(), runs)
    assert [(f.check, f.where) for f in findings] == [("copied_outputs", "d/t5/lora-r8 seed 1")]
    assert "80 %" in findings[0].detail


def test_significant_digits_of_reported_values():
    assert [significant_digits(v) for v in (0.8653, 62.11, 100.0, 0.05, 25.4, 1 / 3)] == [4, 4, 1, 1, 3, 16]
    assert [significant_digits(v) for v in ("0.90", "25.40", "62.11", "1e-3", "100")] == [2, 4, 4, 1, 1]


def test_the_summary_lists_every_check_then_every_finding():
    findings = check_table(pd.read_csv(PUBLISHED, dtype=str, keep_default_na=False))
    rows = integrity.summary_rows(findings)
    assert [r["check"] for r in rows[:len(CHECKS)]] == list(CHECKS)
    assert {r["check"]: r["findings"] for r in rows[:len(CHECKS)]}["identical_cells"] == 2
    assert len(rows) == len(CHECKS) + len(findings)


def test_a_table_without_the_tidy_columns_is_refused_by_name():
    with pytest.raises(ValueError, match="no column metric"):
        check_table(pd.DataFrame({"dataset": ["d"], "model": ["m"], "method": ["x"], "value": [1.0]}))
