"""Trainable-parameter formulas (peftstudy.methods.formulas): computed from the base's module shapes, they equal
the count training records (count_parameters after the method's prepare, as train_run does), and they are
not an echo of peft: a hand-computed case, linearity in the rank, and a run that trained other modules than its
settings say is caught."""

import math

import pytest
import torch

from peftstudy.methods import expected_trainable_for_run, get_method, meta_base
from peftstudy.modeling.loading import count_parameters


def recorded_count(base_dir, family, spec, rank):
    """What train_run records as trainable_parameters: the count after the method's own load and prepare."""
    method = get_method(spec["kind"])
    torch.manual_seed(0)
    model, _, _ = method.load_base_for_training(base_dir, spec, "cpu")
    model = method.prepare(model, family, spec, rank, total_steps=10)
    return count_parameters(model)[0]


CASES = [  # (family, method_spec, rank)
    ("gpt2", {"kind": "full"}, None),
    ("t5", {"kind": "full"}, None),
    ("gpt2", {"kind": "lora"}, 4),
    ("gpt2", {"kind": "lora", "target_modules": "attention+mlp"}, 2),
    ("gpt2", {"kind": "lora", "target_modules": ["c_proj"]}, 3),  # attention's and the MLP's c_proj
    ("t5", {"kind": "lora"}, 4),
    ("t5", {"kind": "lora", "target_modules": "attention+mlp"}, 2),
    ("t5", {"kind": "lora", "decoder_rank": 8}, 2),
    ("gpt2", {"kind": "dora"}, 4),
    ("t5", {"kind": "dora", "target_modules": "attention+mlp", "decoder_rank": 3}, 2),
    ("gpt2", {"kind": "adalora"}, 4),
    ("t5", {"kind": "adalora", "init_rank": 7}, 4),
    ("gpt2", {"kind": "ia3"}, None),
    ("gpt2", {"kind": "ia3", "target_modules": "attention"}, None),
    ("gpt2", {"kind": "ia3", "target_modules": ["c_attn", "c_proj", "c_fc"]}, None),
    ("t5", {"kind": "ia3"}, None),
    ("t5", {"kind": "ia3", "target_modules": ["q", "wi", "wo"]}, None),
    ("gpt2", {"kind": "vera"}, 4),
    ("t5", {"kind": "vera", "target_modules": "attention+mlp"}, 8),
    ("gpt2", {"kind": "bitfit"}, None),
    ("gpt2", {"kind": "prefix"}, None),
    ("gpt2", {"kind": "prefix", "num_virtual_tokens": 5, "prefix_projection": True}, None),
    ("t5", {"kind": "prefix", "num_virtual_tokens": 7}, None),
    ("t5", {"kind": "prefix", "num_virtual_tokens": 3, "prefix_projection": True}, None),
    ("gpt2", {"kind": "prompt", "num_virtual_tokens": 6}, None),
    ("t5", {"kind": "prompt"}, None),
    ("gpt2", {"kind": "ft_top_k", "top_k": 1}, None),
    ("t5", {"kind": "ft_top_k"}, None),
    ("gpt2", {"kind": "qlora"}, 4),
    ("t5", {"kind": "qlora", "bits": 8, "target_modules": "attention+mlp"}, 2),
]


@pytest.mark.parametrize("family, spec, rank", CASES, ids=[f"{s['kind']}-{f}-{i}" for i, (f, s, _) in enumerate(CASES)])
def test_formula_equals_the_recorded_count(tiny_workspace, family, spec, rank):
    if spec["kind"] == "qlora":
        pytest.importorskip("bitsandbytes")
    base_dir = tiny_workspace / f"base-{family}"
    expected = expected_trainable_for_run({"family": family, "method_spec": spec, "rank": rank}, base_dir)
    assert expected is not None, spec
    count, words = expected
    assert count == recorded_count(base_dir, family, spec, rank), words
    assert words


def test_formula_checks_a_written_training_record(tiny_workspace, tmp_path):
    """The integrity check's route: the settings and count train_run writes to train.json, one optimizer step."""
    from peftstudy import io
    from peftstudy.training.loop import train_run

    training = dict(epochs=1, max_steps=1, batch_size=8, gradient_accumulation_steps=1, learning_rate=1e-3,
                    weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="constant", max_grad_norm=1.0,
                    max_source_tokens=24, max_target_tokens=24, early_stopping_patience=None, precision="fp32")
    base_dir = tiny_workspace / "base-t5"
    train_run({"dataset": "d", "model": "t5", "family": "t5", "method": "dora", "rank": 2, "seed": 1,
               "method_spec": {"kind": "dora", "decoder_rank": 4}, "training": training},
              base_dir, tiny_workspace / "data", tmp_path / "weights", tmp_path / "train.json")
    record = io.read_json(tmp_path / "train.json")
    count, words = expected_trainable_for_run(record["settings"], base_dir)
    assert count == record["trainable_parameters"], words


def test_lora_count_is_linear_in_the_rank(tiny_workspace):
    base_dir = tiny_workspace / "base-gpt2"
    spec = {"kind": "lora", "target_modules": "attention+mlp"}
    counts = {rank: expected_trainable_for_run({"method_spec": spec, "rank": rank}, base_dir)[0]
              for rank in (1, 2, 4, 8, 16)}
    assert all(counts[rank] == rank * counts[1] for rank in counts)
    assert counts[16] == recorded_count(base_dir, "gpt2", spec, 16)


def test_lora_on_the_tiny_gpt2_by_hand(tiny_workspace):
    # 2 blocks x r=4 x (c_attn 32 -> 96, c_proj 32 -> 32) = 2 * 4 * (128 + 64).
    count, _ = expected_trainable_for_run({"method_spec": {"kind": "lora"}, "rank": 4}, tiny_workspace / "base-gpt2")
    assert count == 2 * 4 * (32 + 96 + 32 + 32) == 1536
    # (IA)^3: c_attn's output (96) and mlp.c_proj's input (4 x 32) per block.
    count, _ = expected_trainable_for_run({"method_spec": {"kind": "ia3"}, "rank": None}, tiny_workspace / "base-gpt2")
    assert count == 2 * (96 + 128)
    # Prefix tuning of the tiny T5: 20 tokens x 2 decoder layers x (key, value) x 4 heads x 8 dims.
    count, _ = expected_trainable_for_run({"method_spec": {"kind": "prefix"}, "rank": None}, tiny_workspace / "base-t5")
    assert count == 20 * 2 * 2 * 4 * 8


def test_a_run_that_trained_other_modules_is_caught(tiny_workspace, monkeypatch):
    """Training drops the attention c_proj from LoRA's targets; the formula, read from the settings, does not."""
    from peftstudy.methods import base

    base_dir = tiny_workspace / "base-gpt2"
    spec = {"kind": "lora"}
    expected, _ = expected_trainable_for_run({"method_spec": spec, "rank": 4}, base_dir)
    peft_config = base.LoRA.peft_config

    def c_attn_only(self, family, spec, rank):
        config = peft_config(self, family, spec, rank)
        config.target_modules = r".*\.attn\.c_attn$"
        return config

    monkeypatch.setattr(base.LoRA, "peft_config", c_attn_only)
    recorded = recorded_count(base_dir, "gpt2", spec, 4)
    assert recorded == expected - 2 * 4 * (32 + 32)  # the two c_proj matrices missing


def test_no_formula_for_task_heads_and_tuners_chosen_by_name(tiny_workspace):
    base_dir = tiny_workspace / "base-gpt2"
    head = {"kind": "classifier", "module": "score", "labels": ["a", "b"]}
    for spec, rank in (({"kind": "lora", "head": head}, 4), ({"kind": "full", "head": head}, None),
                       ({"kind": "peft", "peft_type": "LOHA"}, 4), ({"kind": "adapter"}, 8)):
        assert expected_trainable_for_run({"method_spec": spec, "rank": rank}, base_dir) is None, spec


def test_errors_name_the_problem(tiny_workspace):
    with pytest.raises(ValueError, match="family 'gpt2', but the run's settings say 't5'"):
        expected_trainable_for_run({"family": "t5", "method_spec": {"kind": "full"}}, tiny_workspace / "base-gpt2")
    with pytest.raises(ValueError, match="no bias parameters"):
        expected_trainable_for_run({"method_spec": {"kind": "bitfit"}}, tiny_workspace / "base-t5")
    with pytest.raises(ValueError, match="select no module"):
        expected_trainable_for_run({"method_spec": {"kind": "lora", "target_modules": ["nope"]}, "rank": 4},
                                   tiny_workspace / "base-gpt2")
    with pytest.raises(ValueError, match="positive rank"):
        expected_trainable_for_run({"method_spec": {"kind": "vera"}, "rank": 0}, tiny_workspace / "base-gpt2")


def test_the_base_is_built_without_weights(tiny_workspace):
    model, family = meta_base(tiny_workspace / "base-t5")
    assert family == "t5"
    assert all(parameter.is_meta for parameter in model.parameters())
    assert math.prod(model.shared.weight.shape) == model.config.vocab_size * model.config.d_model


def uneven_t5():
    """A T5 whose attention width (4 x 8) differs from d_model and whose encoder is deeper than its decoder."""
    import transformers

    return transformers.T5ForConditionalGeneration(transformers.T5Config(
        d_model=64, d_kv=8, d_ff=128, num_heads=4, num_layers=3, num_decoder_layers=2, vocab_size=100))


def gqa_llama():
    """A LLaMA with grouped-query attention: keys and values narrower than the hidden size."""
    import transformers

    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
        vocab_size=100))


@pytest.mark.parametrize("spec, rank", [
    ({"kind": "full"}, None), ({"kind": "lora", "target_modules": "attention+mlp"}, 4),
    ({"kind": "dora"}, 2), ({"kind": "adalora"}, 2), ({"kind": "vera"}, 4), ({"kind": "ia3"}, None),
    ({"kind": "prefix", "num_virtual_tokens": 5}, None), ({"kind": "prefix", "prefix_projection": True}, None),
    ({"kind": "prompt", "num_virtual_tokens": 5}, None), ({"kind": "ft_top_k", "top_k": 1}, None),
], ids=lambda value: value.get("kind") if isinstance(value, dict) else None)
@pytest.mark.parametrize("family, builder", [("t5", uneven_t5), ("llama", gqa_llama)])
def test_formula_on_uneven_architectures(family, builder, spec, rank):
    """Shapes the tiny bases do not tell apart: T5's attention width and decoder depth, LLaMA's narrow keys."""
    method = get_method(spec["kind"])
    with torch.device("meta"):
        count, words = method.expected_trainable(builder(), spec, rank, family=family)
        model = method.prepare(builder(), family, spec, rank, total_steps=10)
    assert count == count_parameters(model)[0], words
