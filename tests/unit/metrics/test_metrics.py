"""Quality metrics against hand computations (independent of the libraries that compute them)."""

import math
from collections import Counter

import pytest

from peftstudy import io
from peftstudy.metrics.aggregate import aggregate_metrics
from peftstudy.metrics.quality import bleu4, rouge_l
from peftstudy.metrics.scoring import score_run


def hand_bleu(hypotheses, references, max_n=4):
    """Papineni et al. corpus BLEU on whitespace tokens (inputs chosen so 13a tokenisation is a no-op)."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, max_n + 1):
            h_ngrams = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            r_ngrams = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, r_ngrams[g]) for g, c in h_ngrams.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * brevity * math.exp(log_precision)


def test_bleu4_matches_hand_computation():
    hyps = ["the cat sat on the mat today", "a quick brown fox jumps over the lazy dog"]
    refs = ["the cat sat on the mat", "the quick brown fox jumps over the lazy dog"]
    value, extra = bleu4(hyps, refs)
    assert value == pytest.approx(hand_bleu(hyps, refs), abs=1e-9)
    assert extra["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_bleu4_brevity_penalty_applies_to_short_output():
    hyps, refs = ["the cat sat on the mat"], ["the cat sat on the red mat today"]
    assert bleu4(hyps, refs)[0] == pytest.approx(hand_bleu(hyps, refs), abs=1e-9)


def test_rouge_l_is_lcs_f_measure():
    # LCS("the cat on the mat", "the cat sat on the mat") = 5 tokens: P = 5/5, R = 5/6.
    value, _ = rouge_l(["the cat on the mat"], ["the cat sat on the mat"])
    precision, recall = 1.0, 5 / 6
    assert value == pytest.approx(100 * 2 * precision * recall / (precision + recall))


def test_rouge_l_uses_stemming():
    assert rouge_l(["cats running"], ["cat runs"])[0] == pytest.approx(100.0)


def test_score_run_and_aggregate_into_tidy_table(tmp_path):
    generations = tmp_path / "generations.jsonl"
    io.write_jsonl(generations, [
        {"id": "1", "input": "x", "reference": "the cat sat on the mat", "prediction": "the cat sat on the mat"},
        {"id": "2", "input": "y", "reference": "a dog ran", "prediction": "a dog ran far"},
    ])
    training = {"trainable_parameters": 10, "total_parameters": 1000, "stored_bytes": 5, "train_time_s": 1.5,
                "time_per_step_s": 0.1, "tokens_per_s": 100.0, "best_validation_loss": 2.0, "steps": 15,
                "provenance": {"hardware": {"device": "cpu"}}, "settings": {"method": "lora"},
                "efficiency": {"device": "cpu", "measured": {"peak_memory_bytes": 5e8},
                               "not_measured": {"energy_kwh": "CPU: no readable RAPL energy counter"}}}
    generation = {"inference_ms_per_example": 3.0, "examples_per_s": 333.0, "perplexity": 12.5}
    scored = score_run(generations, training, generation, train_references=["the cat sat on a mat"])
    metrics = scored["metrics"]
    assert metrics["trainable_percent"] == pytest.approx(1.0)
    assert metrics["bleu4"] == pytest.approx(bleu4(["the cat sat on the mat", "a dog ran far"], ["the cat sat on the mat", "a dog ran"])[0])
    assert metrics["perplexity"] == 12.5 and metrics["train_peak_memory_bytes"] == 5e8
    assert metrics["train_energy_kwh"] is None and "RAPL" in scored["notes"]["train_energy_kwh"]
    assert metrics["meteor"] is None and "no WordNet" in scored["notes"]["meteor"]
    assert 0 < metrics["bertscore_f1"] <= 1 and 0 < metrics["novel_ngram_rate"] < 1
    scored["run"] = {"study": "s", "dataset": "d", "model": "m", "variant": "lora-r8", "seed": "3"}
    io.write_json(tmp_path / "metrics.json", scored)
    rows = aggregate_metrics([tmp_path / "metrics.json"], tmp_path / "metrics.csv")
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "study,dataset,model,method,rank,seed,metric,value,unit,device,note"
    assert rows == len(lines) - 1 == len(metrics)
    assert "s,d,m,lora,8,3,trainable_percent,1.0,%,," in lines
    assert "s,d,m,lora,8,3,train_time_s,1.5,s,cpu," in lines  # efficiency rows name their device
    assert "s,d,m,lora,8,3,train_energy_kwh,,kWh,cpu,not measured: CPU: no readable RAPL energy counter" in lines


def test_empty_generations_are_an_error(tmp_path):
    path = tmp_path / "generations.jsonl"
    path.write_text("")
    with pytest.raises(ValueError, match="no generations"):
        score_run(path, {}, {})


def test_quantized_weight_bytes_become_metrics(tmp_path):
    generations = tmp_path / "generations.jsonl"
    io.write_jsonl(generations, [{"id": "1", "input": "x", "reference": "a b c d", "prediction": "a b c d"}])
    training = {"trainable_parameters": 1, "total_parameters": 10, "stored_bytes": 5, "train_time_s": 1.0,
                "time_per_step_s": 0.1, "tokens_per_s": 1.0, "best_validation_loss": 1.0, "steps": 1,
                "method_extras": {"base_weight_bytes": 21440, "base_weight_bytes_unquantized": 98304, "bits": 4},
                "provenance": {"hardware": {"device": "cpu"}}, "settings": {"method": "lora"}}
    scored = score_run(generations, training, {"inference_ms_per_example": 1.0, "examples_per_s": 1.0})
    assert scored["metrics"]["base_weight_bytes"] == 21440 and scored["units"]["base_weight_bytes"] == "bytes"
    assert scored["metrics"]["base_weight_bytes_unquantized"] == 98304
    assert "bits" not in scored["metrics"]


TRAINING_RECORD = {"trainable_parameters": 1, "total_parameters": 10, "stored_bytes": 5, "train_time_s": 1.0,
                   "time_per_step_s": 0.1, "tokens_per_s": 1.0, "best_validation_loss": 1.0, "steps": 1,
                   "provenance": {"hardware": {"device": "cpu"}}, "settings": {"method": "lora"}}


def test_classification_runs_score_generated_labels_against_the_training_label_set(tmp_path):
    from sklearn.metrics import classification_report

    gold = ["perl", "perl", "python", "python", "python", "rust"]
    generated = ["perl", " Python ", "python", "python", "perl", "cobol"]  # case/space folded; cobol is no label
    generations = tmp_path / "generations.jsonl"
    io.write_jsonl(generations, [{"id": str(i), "input": "x", "reference": g, "prediction": p}
                                 for i, (g, p) in enumerate(zip(gold, generated))])
    scored = score_run(generations, TRAINING_RECORD, {"perplexity": 3.0}, task="classification",
                       train_references=["perl", "python", "rust", "perl"])
    metrics = scored["metrics"]
    # Independent route: scikit-learn's report over the declared classes on the folded predictions.
    folded = [" ".join(p.split()).casefold() for p in generated]
    report = classification_report(gold, folded, labels=["perl", "python", "rust"], output_dict=True, zero_division=0)
    assert metrics["accuracy"] == pytest.approx(100 * 3 / 6)  # perl->python, python->perl and cobol are wrong
    assert metrics["macro_f1"] == pytest.approx(100 * report["macro avg"]["f1-score"])
    # By hand: perl P = 1/2 (perl predicted twice, once right), R = 1/2; rust never predicted: F1 0.
    assert metrics["precision[perl]"] == pytest.approx(50.0) and metrics["recall[perl]"] == pytest.approx(50.0)
    assert metrics["recall[python]"] == pytest.approx(100 * 2 / 3) and metrics["f1[rust]"] == 0.0
    assert metrics["invalid_label_rate"] == pytest.approx(100 / 6)
    assert "bleu4" not in metrics and "ttr" not in metrics and metrics["perplexity"] == 3.0
    assert scored["units"]["accuracy"] == "%" and scored["cluster_labels"] is None
    with pytest.raises(ValueError, match="label set"):
        score_run(generations, TRAINING_RECORD, {}, task="classification")


def test_extractive_qa_runs_take_the_best_gold_answer(tmp_path):
    generations = tmp_path / "generations.jsonl"
    io.write_jsonl(generations, [
        {"id": "1", "input": "q", "reference": "Denver Broncos", "answers": ["Denver Broncos", "Broncos"],
         "prediction": "the Broncos"},
        {"id": "2", "input": "q", "reference": "netscan", "answers": ["netscan"], "prediction": "netscan gui"},
    ])
    metrics = score_run(generations, TRAINING_RECORD, {}, task="extractive_qa")["metrics"]
    assert metrics["exact_match"] == pytest.approx(50.0)  # "the Broncos" == "Broncos" after normalisation
    assert metrics["squad_f1"] == pytest.approx(100 * (1.0 + 2 / 3) / 2)  # netscan gui: P 1/2, R 1 -> F1 2/3
    io.write_jsonl(generations, [{"id": "1", "input": "q", "reference": "a", "prediction": "a"}])
    with pytest.raises(ValueError, match="without 'answers'"):
        score_run(generations, TRAINING_RECORD, {}, task="extractive_qa")


def test_training_state_memory_becomes_metrics_and_its_absence_is_explained(tmp_path):
    generations = tmp_path / "generations.jsonl"
    io.write_jsonl(generations, [{"id": "1", "input": "x", "reference": "a b c d", "prediction": "a b c d"}])
    training = {"trainable_parameters": 1, "total_parameters": 10, "provenance": {"hardware": {"device": "cpu"}},
                "settings": {"method": "lora"},
                "state_memory": {"parameter_bytes": 40, "buffer_bytes": 0, "gradient_bytes": 4,
                                 "optimizer_state_bytes": 12, "training_state_bytes": 56, "step_peak_tensor_bytes": 90}}
    scored = score_run(generations, training, {})
    assert {name: scored["metrics"][name] for name in ("train_parameter_bytes", "train_gradient_bytes",
                                                       "train_optimizer_state_bytes", "train_state_bytes")} == {
        "train_parameter_bytes": 40, "train_gradient_bytes": 4, "train_optimizer_state_bytes": 12,
        "train_state_bytes": 56}
    assert "train_state_bytes" not in scored["devices"]  # exact bytes, the same on any hardware
    assert scored["metrics"]["train_step_peak_tensor_bytes"] == 90 and scored["devices"]["train_step_peak_tensor_bytes"] == "cpu"
    del training["state_memory"]["step_peak_tensor_bytes"]
    assert "before step_peak_tensor_bytes" in score_run(generations, training, {})["notes"]["train_step_peak_tensor_bytes"]
    scored = score_run(generations, {**training, "state_memory": None}, {})
    assert scored["metrics"]["train_state_bytes"] is None and "no optimizer step" in scored["notes"]["train_state_bytes"]
    del training["state_memory"]
    assert "from before state_memory" in score_run(generations, training, {})["notes"]["train_gradient_bytes"]
