"""causal_lm / seq2seq_lm: architectures the package has no family of, declared with their target modules."""

import copy
import shutil

import pytest
import torch
import transformers
import yaml

from peftstudy import io
from peftstudy import study as studyconfig
from peftstudy.generation import generate_run
from peftstudy.methods import get_method
from peftstudy.modeling.families import generation_class, is_decoder_only
from peftstudy.study.settings import run_settings

TRAINING = dict(epochs=1, max_steps=6, batch_size=8, gradient_accumulation_steps=1, learning_rate=1e-2,
                weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="constant", max_grad_norm=1.0,
                max_source_tokens=24, max_target_tokens=24, early_stopping_patience=None, precision="fp32")
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=128)


def test_generic_families_generate_with_the_auto_classes():
    assert is_decoder_only("causal_lm") and not is_decoder_only("seq2seq_lm")
    assert generation_class("causal_lm") is transformers.AutoModelForCausalLM
    assert generation_class("seq2seq_lm") is transformers.AutoModelForSeq2SeqLM


@pytest.mark.parametrize("config_class", [transformers.Qwen2Config, transformers.MistralConfig])
def test_a_local_base_of_another_architecture_trains_with_lora_and_generates(tiny_workspace, tmp_path, config_class):
    """A tiny random model of an architecture that is no built-in family, with the tiny GPT-2's tokenizer."""
    from peftstudy.training.loop import train_run

    source = tiny_workspace / "base-gpt2"
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    torch.manual_seed(0)
    config = config_class(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, **SMALL)
    base = tmp_path / "base"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(base, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, base / name)
    io.write_json(base / "base.json", {**io.read_json(source / "base.json"), "family": "causal_lm"})

    spec = {"kind": "lora", "target_modules": ["q_proj", "v_proj"], "dropout": 0.0}
    record = train_run({"dataset": "d", "model": "m", "family": "causal_lm", "method": "lora", "rank": 2,
                        "method_spec": spec, "training": TRAINING, "seed": 3},
                       base, tiny_workspace / "data", tmp_path / "weights", tmp_path / "train.json")
    # LoRA on q_proj (32 -> 32) and v_proj (32 -> 16, two key-value heads of 8) in 2 layers, rank 2.
    assert record["trainable_parameters"] == 2 * 2 * ((32 + 32) + (32 + 16))
    assert record["steps"] == 6 and all(0 < loss < 20 for loss in record["validation_losses"])
    model, _, manifest = get_method("lora").load_for_inference(base, tmp_path / "weights", "cpu", spec)
    assert manifest["family"] == "causal_lm" and type(model.base_model.model).__name__.startswith(
        config_class.__name__.removesuffix("Config"))
    generation = {"batch_size": 8, "max_new_tokens": 6, "num_beams": 1, "no_repeat_ngram_size": 0}
    generated = generate_run(spec, "causal_lm", base, tmp_path / "weights", tiny_workspace / "data/test.jsonl",
                             tmp_path / "test.jsonl", tmp_path / "test.json", generation, 24)
    assert generated["examples"] == 16


QWEN = {"source": "hub", "hub_id": "Qwen/Qwen2.5-0.5B", "revision": "0" * 40, "family": "causal_lm",
        "target_modules": {"lora": ["q_proj", "v_proj"]}}


@pytest.fixture
def study(repository):
    study = yaml.safe_load((repository / "config" / "demo.yaml").read_text())
    study["models"]["qwen"] = copy.deepcopy(QWEN)
    study["matrix"] = [{"datasets": ["debian-products"], "models": ["qwen"], "methods": ["lora"]}]
    study["exclusions"], study["overrides"] = [], []
    study["statistics"] = {**study.get("statistics", {}), "rank_study": {**study.get("statistics", {}).get(
        "rank_study", {}), "method": "lora"}, "baseline_method": "lora"}
    return study


def test_a_study_declares_a_hub_model_by_its_kind_and_target_modules(study):
    validated = studyconfig.validate_study(study, "demo.yaml")
    runs = [r for r in studyconfig.expand_runs(validated) if r.model == "qwen"]
    assert runs and all(run_settings(validated, r)["method_spec"]["target_modules"] == ["q_proj", "v_proj"]
                        for r in runs)


@pytest.mark.parametrize("mutate, key", [
    (lambda s: s["models"]["qwen"].pop("target_modules"), r"models.qwen.target_modules.lora: family causal_lm"),
    (lambda s: s["models"]["qwen"]["target_modules"].update(full=["q_proj"]), r"models.qwen.target_modules.full: not"),
    (lambda s: s["matrix"][0].update(methods=["lora", "ia3"]), r"kind 'ia3' needs the feed-forward"),
    (lambda s: s["models"]["qwen"].update(family="llama_typo"), r"models.qwen.family"),
])
def test_a_generic_model_without_what_it_needs_is_refused(study, mutate, key):
    mutate(study)
    with pytest.raises(studyconfig.StudyConfigError, match=key):
        studyconfig.validate_study(study, "demo.yaml")
