"""A scratch LLaMA base: trained tokenizer, built and pretrained model, loadable without peftstudy, fine-tuned."""

import copy
import json
import math
import random
import subprocess
import sys

import pytest
import torch
import yaml

from peftstudy import io
from peftstudy import study as studyconfig
from peftstudy.generation import generate_run
from peftstudy.modeling.loading import (
    build_model,
    count_parameters,
    load_base,
    train_tokenizer,
)
from peftstudy.training.loop import train_run
from peftstudy.training.pretrain import pretrain_base

WORDS = "red blue green small large old new fast slow warm cold bright dark soft hard quiet loud a and thing , .".split()
# head_dim 8 with 4 heads: the attention is 32 wide, not hidden_size, so the count below tells the two apart.
ARCHITECTURE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=8, max_position_embeddings=128)
TRAINING = dict(epochs=3, batch_size=16, gradient_accumulation_steps=1, learning_rate=1e-2,
                weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="constant", max_grad_norm=1.0,
                max_source_tokens=24, max_target_tokens=24, early_stopping_patience=None, precision="fp32")
GENERATION = {"batch_size": 8, "max_new_tokens": 6, "num_beams": 1, "no_repeat_ngram_size": 0}


def corpus_lines(count=600, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=12)) for _ in range(count)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A pretrained tiny LLaMA base (base/) and a learnable text-to-text data set (data/)."""
    root = tmp_path_factory.mktemp("llama")
    (root / "corpus.txt").write_text("\n".join(corpus_lines()))
    rng = random.Random(1)
    for split, count in (("train", 64), ("validation", 16), ("test", 8)):
        pairs = [rng.sample(WORDS[:17], 3) for _ in range(count)]
        io.write_jsonl(root / "data" / f"{split}.jsonl", [
            {"id": f"{i:04d}", "input": f"{a} | {b} | {c}", "reference": f"a {a} thing , {b} and {c} ."}
            for i, (a, b, c) in enumerate(pairs)])
    io.write_json(root / "data" / "manifest.json", {"counts": {}})
    spec = {"name": "llama-tiny", "family": "llama", "architecture": ARCHITECTURE, "tokenizer": {"vocab_size": 300},
            "pretraining": {"corpus": "c", "steps": 40, "batch_size": 8, "sequence_tokens": 24}}
    pretrain_base(spec, root / "corpus.txt", root / "base")
    return root


def test_the_tokenizer_round_trips_text_and_has_llamas_special_tokens():
    tokenizer = train_tokenizer("llama", corpus_lines(200), 300)
    special = {"unk": ("<unk>", tokenizer.unk_token_id), "bos": ("<s>", tokenizer.bos_token_id),
               "eos": ("</s>", tokenizer.eos_token_id), "pad": ("<pad>", tokenizer.pad_token_id)}
    assert {key: value for key, value in special.items()} == {
        "unk": ("<unk>", 0), "bos": ("<s>", 1), "eos": ("</s>", 2), "pad": ("<pad>", 3)}
    # Byte-level: text the corpus never showed (capitals, digits, accents, emoji) comes back unchanged.
    for text in ("red and blue thing .", "Zebra  über 42!\tnew line\nend", "émoji 🙂 ok"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    # LLaMA's convention: BOS starts a text when special tokens are asked for, and only then.
    assert tokenizer("red blue")["input_ids"][0] == tokenizer.bos_token_id
    assert tokenizer.bos_token_id not in tokenizer("red blue", add_special_tokens=False)["input_ids"]
    assert len(tokenizer("red blue green", add_special_tokens=False)["input_ids"]) < len("red blue green")


def llama_parameters(architecture, vocab, tied):
    """LLaMA's parameter count by hand: embeddings, per layer q,k,v,o (k and v for the key-value heads only),
    gate/up/down and two RMSNorm weights, the final norm and an LM head unless tied to the embeddings."""
    d, inner, layers = architecture["hidden_size"], architecture["intermediate_size"], architecture["num_hidden_layers"]
    head_dim = architecture.get("head_dim", d // architecture["num_attention_heads"])
    q_width = architecture["num_attention_heads"] * head_dim
    kv_width = architecture.get("num_key_value_heads", architecture["num_attention_heads"]) * head_dim
    attention = d * q_width + 2 * d * kv_width + q_width * d
    per_layer = attention + 3 * d * inner + 2 * d
    return vocab * d + layers * per_layer + d + (0 if tied else vocab * d)


@pytest.mark.parametrize("architecture", [
    ARCHITECTURE,
    {**ARCHITECTURE, "tie_word_embeddings": True},
    {"hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 3, "num_attention_heads": 6},  # no GQA
])
def test_the_built_model_has_the_llama_parameter_count(architecture):
    tokenizer = train_tokenizer("llama", corpus_lines(200), 120)
    model = build_model("llama", architecture, tokenizer)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (1, 2, 3)
    assert model.config.vocab_size == len(tokenizer)
    trainable, total = count_parameters(model)
    expected = llama_parameters(architecture, len(tokenizer), architecture.get("tie_word_embeddings", False))
    assert trainable == total == expected


def test_pretraining_lowers_the_loss_and_saves_safetensors(workspace):
    base = workspace / "base"
    manifest = io.read_json(base / "base.json")
    assert manifest["family"] == "llama" and manifest["source"] == "scratch"
    assert manifest["pretraining_loss_last"] < manifest["pretraining_loss_first"] - 0.5, manifest
    # Below the loss of guessing uniformly over the vocabulary, on lines the model never saw.
    assert manifest["heldout"]["objective"] == "causal_lm"
    assert manifest["heldout"]["loss"] < math.log(manifest["vocab_size"])
    assert manifest["sha256"] == io.sha256_file(base / "model.safetensors")
    assert not list(base.glob("*.bin"))
    assert manifest["total_parameters"] == llama_parameters(ARCHITECTURE, manifest["vocab_size"], tied=False)


LOAD_WITHOUT_PEFTSTUDY = """
import json, sys, torch, transformers
model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], use_safetensors=True)
tokenizer = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
ids = tokenizer("red blue green", return_tensors="pt")["input_ids"]
with torch.no_grad():
    logits = model(input_ids=ids).logits
assert not any(name.startswith("peftstudy") for name in sys.modules)
print(json.dumps({"model": type(model).__name__, "tokenizer": type(tokenizer).__name__, "ids": ids[0].tolist(),
                  "special": [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token],
                  "logits": logits[0, -1, :5].tolist()}))
"""


def test_the_saved_base_loads_with_plain_transformers(workspace):
    base = workspace / "base"
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_PEFTSTUDY, str(base)], capture_output=True, text=True,
                          cwd=workspace, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["model"] == "LlamaForCausalLM" and loaded["special"] == ["<s>", "</s>", "<pad>", "<unk>"]
    model, tokenizer, _ = load_base(base, "cpu")
    assert loaded["ids"] == tokenizer("red blue green")["input_ids"] and loaded["ids"][0] == tokenizer.bos_token_id
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([loaded["ids"]])).logits
    assert torch.allclose(torch.tensor(loaded["logits"]), logits[0, -1, :5], atol=1e-5)


def run_settings(kind, rank=None):
    return {"dataset": "d", "model": "llama-tiny", "family": "llama", "method": kind, "rank": rank,
            "method_spec": {"kind": kind, "alpha": 8, "dropout": 0.0}, "training": TRAINING, "seed": 1}


@pytest.mark.parametrize("kind, rank", [("lora", 4), ("full", None)])
def test_lora_and_full_fine_tuning_train_and_generate(workspace, kind, rank):
    out = workspace / kind
    record = train_run(run_settings(kind, rank), workspace / "base", workspace / "data", out / "weights",
                       out / "train.json")
    total = llama_parameters(ARCHITECTURE, io.read_json(workspace / "base" / "base.json")["vocab_size"], tied=False)
    if kind == "lora":
        # The llama family's default targets, q_proj k_proj v_proj o_proj: r * (d_in + d_out) each, per layer.
        d, q_width, kv_width = 64, 4 * 8, 2 * 8
        per_layer = (d + q_width) + 2 * (d + kv_width) + (q_width + d)
        assert record["trainable_parameters"] == rank * per_layer * ARCHITECTURE["num_hidden_layers"]
        assert record["total_parameters"] == total + record["trainable_parameters"]
    else:
        assert record["trainable_parameters"] == record["total_parameters"] == total
    assert record["steps"] == 3 * 64 // 16 and len(record["validation_losses"]) == 3
    assert record["validation_losses"][-1] < record["validation_losses"][0], record["validation_losses"]
    generated = generate_run({"kind": kind}, "llama", workspace / "base", out / "weights",
                             workspace / "data/test.jsonl", out / "test.jsonl", out / "test.json", GENERATION, 24)
    assert generated["examples"] == 8
    rows = io.read_jsonl(out / "test.jsonl")
    assert len(rows) == 8 and any(row["prediction"].strip() for row in rows)


@pytest.fixture
def study(repository):
    study = yaml.safe_load((repository / "config" / "demo.yaml").read_text())
    corpus = next(iter(study["corpora"]))
    study["models"]["llama-tiny"] = {
        "family": "llama", "source": "scratch", "architecture": dict(ARCHITECTURE), "tokenizer": {"vocab_size": 2000},
        "pretraining": {"corpus": corpus, "steps": 10}}
    study["matrix"] = [{"datasets": [study["matrix"][0]["datasets"][0]], "models": ["llama-tiny"],
                        "methods": ["full", "lora"]}]
    study["exclusions"], study["overrides"], study["claims"] = [], [], []
    study["statistics"] = {**study.get("statistics", {}), "rank_study": {**study.get("statistics", {}).get(
        "rank_study", {}), "method": "lora"}, "baseline_method": "lora"}
    return study


def test_a_study_declares_a_scratch_llama_and_refuses_a_family_without_a_builder(study, tmp_path):
    validated = studyconfig.validate_study(copy.deepcopy(study), "demo.yaml")
    assert validated["models"]["llama-tiny"]["family"] == "llama"
    study["models"]["llama-tiny"]["family"] = "bert"
    with pytest.raises(studyconfig.StudyConfigError,
                       match=r"^demo.yaml: models.llama-tiny.family: source scratch builds .* gpt2, llama, t5, "
                             r"not 'bert'"):
        studyconfig.validate_study(study, "demo.yaml")
    # The builder refuses it too, naming the model, before it reads the corpus.
    spec = {**study["models"]["llama-tiny"], "name": "llama-tiny"}
    with pytest.raises(ValueError, match=r"models.llama-tiny.family: no scratch builder for family 'bert'"):
        pretrain_base(spec, tmp_path / "absent.txt", tmp_path / "base")
