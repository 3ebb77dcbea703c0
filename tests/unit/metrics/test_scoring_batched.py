"""Batched scoring: BERTScore in batches equals bert-score's one-sentence-per-batch computation, is bit-identical
whatever the process's hash seed, and each model is loaded once per process however often a run is scored."""

import json
import math
import os
import subprocess
import sys

import pytest

from peftstudy import io
from peftstudy.metrics import quality, scoring

WORDS = "the package provides tools data library files for python with support and many formats".split()


def sample_pairs(count, seed=0):
    import random

    rng = random.Random(seed)
    # Many sentences of equal length (bert-score's sort key, and the padding), repeated sentences, a sentence that
    # is both a prediction and a reference, and an empty prediction (bert-score scores it 0).
    pairs = [(" ".join(rng.choices(WORDS, k=rng.randint(1, 12))), " ".join(rng.choices(WORDS, k=rng.randint(3, 14))))
             for _ in range(count)]
    pairs[3] = (pairs[2][1], pairs[2][1])
    pairs[5] = (pairs[4][0], pairs[6][1])
    pairs[7] = ("", pairs[7][1])
    return [p for p, _ in pairs], [r for _, r in pairs]


@pytest.fixture(scope="module")
def minilm():
    tokenizer, model = quality.loaded_model("bertscore", quality.resolve_model(quality.OFFLINE_MINILM), "cpu",
                                            num_layers=6)
    return tokenizer, model


def test_batched_bertscore_equals_bert_score_one_sentence_per_batch(minilm):
    import bert_score

    predictions, references = sample_pairs(40)
    location = quality.resolve_model(quality.OFFLINE_MINILM)
    # The reference: bert-score itself, one sentence per batch (the former setting: no padding, no batch neighbours).
    p, r, f = bert_score.score(predictions, references, model_type=location, num_layers=6, batch_size=1, idf=False,
                               device="cpu")
    expected = [list(row) for row in zip(p.tolist(), r.tolist(), f.tolist())]
    assert expected[7][:2] == [0.0, 0.0]  # the empty prediction
    tokenizer, model = minilm
    # Batch size 1 is bert-score's computation exactly; larger batches agree to float rounding.
    assert quality.bertscore_pairs(model, tokenizer, predictions, references, 1, "cpu").tolist() == expected
    for batch_size in (3, 16, 64):
        batched = quality.bertscore_pairs(model, tokenizer, predictions, references, batch_size, "cpu").tolist()
        worst = max(abs(a - b) for row, want in zip(batched, expected) for a, b in zip(row, want))
        assert worst < 1e-6, (batch_size, worst)
    values, _ = quality.bertscore(predictions, references, scoring.METRIC_DEFAULTS["bertscore"])
    assert scoring.METRIC_DEFAULTS["bertscore"]["batch_size"] > 1
    for index, name in enumerate(("bertscore_precision", "bertscore_recall", "bertscore_f1")):
        assert values[name] == pytest.approx(math.fsum(row[index] for row in expected) / len(expected), abs=1e-6)


def test_batch_size_must_be_positive(minilm):
    with pytest.raises(ValueError, match="batch_size must be positive"):
        quality.bertscore_pairs(*reversed(minilm), ["a"], ["a"], 0, "cpu")


BERTSCORE_IN_A_PROCESS = """
import json, sys
from peftstudy.metrics import quality, scoring
scoring.pin_scoring_threads()
predictions, references = json.loads(sys.argv[1])
result = {}
for batch_size in (8, 64):
    settings = {**scoring.METRIC_DEFAULTS["bertscore"], "batch_size": batch_size}
    values, _ = quality.bertscore(predictions, references, settings)
    tokenizer, model = quality.loaded_model("bertscore", quality.resolve_model(settings["model"]), "cpu", num_layers=6)
    pairs = quality.bertscore_pairs(model, tokenizer, predictions, references, batch_size, "cpu")
    result[batch_size] = {"means": {k: repr(v) for k, v in values.items()},
                          "pairs": [repr(x) for x in pairs.flatten().tolist()]}
result["loads"] = sum(quality.MODEL_LOADS.values())
print(json.dumps(result))
"""


def test_batched_bertscore_is_bit_identical_whatever_the_process_hash_seed(repository):
    """bert-score's own batches follow a set's order, i.e. the hash seed; ours must not: each pair's P/R/F1 and
    the means, in processes with different PYTHONHASHSEED, are bit for bit the same (batches of 8 and of 64,
    with many sentences of equal length, so that the batches' order and neighbours would show)."""
    predictions, references = sample_pairs(90, seed=1)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(repository / "src"), os.environ.get("PYTHONPATH")]))}
    outputs = set()
    for hash_seed in ("1", "2", "random"):
        out = subprocess.run([sys.executable, "-c", BERTSCORE_IN_A_PROCESS, json.dumps([predictions, references])],
                             env={**env, "PYTHONHASHSEED": hash_seed}, capture_output=True, text=True, check=True,
                             timeout=300).stdout
        result = json.loads(out.strip().splitlines()[-1])
        assert result["loads"] == 1  # every call above shares the one loaded model
        outputs.add(json.dumps(result, sort_keys=True))
    assert len(outputs) == 1


TRAINING_RECORD = {"trainable_parameters": 10, "total_parameters": 1000, "stored_bytes": 5, "train_time_s": 1.5,
                   "time_per_step_s": 0.1, "tokens_per_s": 100.0, "best_validation_loss": 2.0, "steps": 15,
                   "provenance": {"hardware": {"device": "cpu"}}, "settings": {"method": "lora"}}


def test_each_model_is_loaded_once_per_process_however_often_runs_are_scored(tmp_path, monkeypatch):
    import bert_score.utils
    import sentence_transformers

    loads = []
    get_model = bert_score.utils.get_model

    def counting_get_model(*args, **kwargs):
        loads.append("bertscore")
        return get_model(*args, **kwargs)

    class CountingSentenceTransformer(sentence_transformers.SentenceTransformer):
        def __init__(self, *args, **kwargs):
            loads.append("sentence-transformers")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(bert_score.utils, "get_model", counting_get_model)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", CountingSentenceTransformer)
    monkeypatch.setattr(quality, "_MODELS", {})  # a process that has loaded nothing yet
    monkeypatch.setattr(quality, "MODEL_LOADS", type(quality.MODEL_LOADS)())
    predictions, references = sample_pairs(12, seed=2)
    generations = tmp_path / "generations.jsonl"
    io.write_jsonl(generations, [{"id": str(i), "input": "x", "prediction": p, "reference": r}
                                 for i, (p, r) in enumerate(zip(predictions, references))])
    first = scoring.score_run(generations, TRAINING_RECORD, {"perplexity": 3.0})
    second = scoring.score_run(generations, TRAINING_RECORD, {"perplexity": 3.0})
    assert sorted(loads) == ["bertscore", "sentence-transformers"]
    assert sorted(quality.MODEL_LOADS.values()) == [1, 1]
    assert first["metrics"] == second["metrics"]  # a model used again gives the same values
    # Another setting of a model is another model (here: fewer layers).
    quality.bertscore(predictions, references, {**scoring.METRIC_DEFAULTS["bertscore"], "num_layers": 3})
    assert loads.count("bertscore") == 2
