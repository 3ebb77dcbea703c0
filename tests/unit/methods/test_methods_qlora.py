"""QLoRA: the base really is quantized (which modules, how many bytes), LoRA trains on it, and nothing
falls back to plain LoRA.

Closed forms. Trainable parameters are the LoRA formula, r * (d_in + d_out) per adapted matrix, the
quantized weights being frozen. Quantized modules: GPT-2 4 per block (attn.c_attn, attn.c_proj, mlp.c_fc,
mlp.c_proj - transformers converts GPT-2's Conv1D), T5 5 per encoder block (q, k, v, o, wi) and 9 per
decoder block (self and cross q, k, v, o; wi); T5's wo (kept in float32 by transformers) and every
lm_head stay unquantized. Storage per quantized weight of n = d_in * d_out parameters:
  4-bit, double quantization: n/2 packed bytes + n/64 uint8 block scales + 4 * ceil(n/64/256) float32
      second-level scales + 4 (offset) + 16 * 4 (NF4/FP4 code) + 256 * 4 (code of the second level);
  4-bit, single quantization: n/2 + 4 * n/64 float32 block scales + 16 * 4;
  8-bit (LLM.int8): n int8 bytes + 4 * d_out float32 row scales.
Unquantized, the same weights take 4n bytes (the tiny bases are stored in float32).
"""

import contextlib
import math
import sys

import pytest
import torch

from peftstudy import io
from peftstudy.generation import generate_run
from peftstudy.methods import get_method
from peftstudy.methods import quantized as quantized_module
from peftstudy.methods.quantized import QuantizationUnavailableError, quantized_modules
from peftstudy.modeling.loading import count_parameters, load_base
from peftstudy.training.loop import train_run

# (module-name suffix, d_in, d_out) of every quantized weight per block, for the tiny bases of conftest.
GPT2_BLOCK = [("attn.c_attn", 32, 96), ("attn.c_proj", 32, 32), ("mlp.c_fc", 32, 128), ("mlp.c_proj", 128, 32)]
T5_ENCODER_BLOCK = [(f"layer.0.SelfAttention.{m}", 32, 32) for m in "qkvo"] + [("layer.1.DenseReluDense.wi", 32, 64)]
T5_DECODER_BLOCK = ([(f"layer.0.SelfAttention.{m}", 32, 32) for m in "qkvo"]
                    + [(f"layer.1.EncDecAttention.{m}", 32, 32) for m in "qkvo"] + [("layer.2.DenseReluDense.wi", 32, 64)])
QUANTIZED = {
    "gpt2": {f"transformer.h.{i}.{name}": (i_, o) for i in range(2) for name, i_, o in GPT2_BLOCK},
    "t5": {**{f"encoder.block.{i}.{name}": (i_, o) for i in range(2) for name, i_, o in T5_ENCODER_BLOCK},
           **{f"decoder.block.{i}.{name}": (i_, o) for i in range(2) for name, i_, o in T5_DECODER_BLOCK}},
}
UNQUANTIZED_LINEAR = {
    "gpt2": {"lm_head"},
    "t5": {"lm_head", "encoder.block.0.layer.1.DenseReluDense.wo", "encoder.block.1.layer.1.DenseReluDense.wo",
           "decoder.block.0.layer.2.DenseReluDense.wo", "decoder.block.1.layer.2.DenseReluDense.wo"},
}


def four_bit_bytes(n, double_quant=True):
    if double_quant:
        return n // 2 + n // 64 + 4 * math.ceil(n / 64 / 256) + 4 + 16 * 4 + 256 * 4
    return n // 2 + 4 * (n // 64) + 16 * 4


def eight_bit_bytes(n, d_out):
    return n + 4 * d_out


def lora_count(rank, shapes):
    return sum(rank * (d_in + d_out) for d_in, d_out in shapes)


def attention_lora_shapes(family):
    """The attention matrices LoRA adapts by default (base.ATTENTION_TARGETS), as (d_in, d_out)."""
    if family == "gpt2":
        return [(32, 96), (32, 32)] * 2  # c_attn, attention c_proj; 2 blocks
    return [(32, 32)] * 4 * (2 + 2 * 2)  # q, k, v, o; encoder self + decoder self and cross, 2 blocks each


@pytest.mark.parametrize("family", ["gpt2", "t5"])
@pytest.mark.parametrize("spec", [{}, {"bits": 8}, {"quant_type": "fp4", "double_quant": False, "compute_dtype": "fp32"}],
                         ids=["nf4-double", "int8", "fp4-single"])
def test_base_is_really_quantized_and_smaller(tiny_workspace, family, spec):
    method = get_method("qlora")
    model, _, _ = method.load_base_for_training(tiny_workspace / f"base-{family}", spec, "cpu")
    found = quantized_modules(model)
    assert set(found) == set(QUANTIZED[family])  # GPT-2: 8 (every Conv1D); T5: 28
    assert len(found) == {"gpt2": 8, "t5": 28}[family]
    linear_left = {n for n, m in model.named_modules() if type(m).__name__ in ("Linear", "Conv1D")}
    assert linear_left == UNQUANTIZED_LINEAR[family]
    bits = spec.get("bits", 4)
    for name, module in found.items():
        if bits == 4:
            assert type(module).__name__ == "Linear4bit"
            assert type(module.weight).__name__ == "Params4bit" and module.weight.dtype == torch.uint8
            state = module.weight.quant_state
            assert state.quant_type == spec.get("quant_type", "nf4")
            assert state.nested == spec.get("double_quant", True)
            assert module.compute_dtype == {"fp32": torch.float32}.get(spec.get("compute_dtype"), torch.bfloat16)
        else:
            assert type(module).__name__ == "Linear8bitLt"
            assert module.weight.dtype == torch.int8
    sizes = method.quantized_weight_bytes(model)
    shapes = QUANTIZED[family].values()
    assert sizes["base_weight_bytes_unquantized"] == sum(4 * i * o for i, o in shapes)
    if bits == 4:
        expected = sum(four_bit_bytes(i * o, spec.get("double_quant", True)) for i, o in shapes)
    else:
        expected = sum(eight_bit_bytes(i * o, o) for i, o in shapes)
    assert sizes["base_weight_bytes"] == expected
    assert sizes["base_weight_bytes"] < sizes["base_weight_bytes_unquantized"]


# A fixed batch (16 examples, seen at every step, validated on in eval mode): see test_methods_adapterhub.
TRAINING = dict(epochs=6, max_steps=6, batch_size=16, gradient_accumulation_steps=1, learning_rate=2e-3,
                weight_decay=0.01, warmup_ratio=0.0, lr_scheduler="cosine", max_grad_norm=1.0,
                max_source_tokens=24, max_target_tokens=24, early_stopping_patience=None, precision="fp32")
GENERATION = {"batch_size": 8, "max_new_tokens": 12, "num_beams": 1, "no_repeat_ngram_size": 0}


def settings(family, spec, rank=8):
    return {"dataset": "d", "model": family, "family": family, "method": "qlora", "rank": rank,
            "method_spec": {"kind": "qlora", "alpha": 32, "dropout": 0.0, **spec}, "training": TRAINING, "seed": 5}


@pytest.mark.parametrize("family, spec", [("gpt2", {}), ("t5", {}), ("gpt2", {"bits": 8}), ("t5", {"bits": 8})],
                         ids=["gpt2-nf4", "t5-nf4", "gpt2-int8", "t5-int8"])
def test_training_lowers_loss_and_reloaded_generation_is_deterministic(tiny_workspace, fixed_batch, tmp_path, family, spec):
    base_dir = tiny_workspace / f"base-{family}"
    run = settings(family, spec)
    record = train_run(run, base_dir, fixed_batch, tmp_path / "weights", tmp_path / "train.json")
    steps, validation = record["step_losses"], record["validation_losses"]
    assert steps[-1] < steps[0], steps
    assert validation[-1] < validation[0], validation
    if family == "t5":
        assert validation[-1] < validation[0] - 0.1, validation
    base_total = count_parameters(load_base(base_dir)[0])[1]
    assert record["trainable_parameters"] == lora_count(8, attention_lora_shapes(family))
    assert record["total_parameters"] == base_total + record["trainable_parameters"]  # Params4bit: 2 per byte
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "quantization.json",
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]  # tokenizer: for loading without peftstudy
    assert io.read_json(tmp_path / "weights/quantization.json")["bits"] == spec.get("bits", 4)

    for name in ("a", "b"):
        generate_run(run["method_spec"], family, base_dir, tmp_path / "weights", tiny_workspace / "data/test.jsonl",
                     tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json", GENERATION, 24)
    assert len(io.read_jsonl(tmp_path / "a.jsonl")) == 16
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_adapter_sits_on_quantized_layers_and_reloads_exactly(tiny_workspace, tmp_path, family):
    from peftstudy.modeling.batching import collate, encode_pairs

    torch.manual_seed(0)
    method = get_method("qlora")
    base, tokenizer, _ = method.load_base_for_training(tiny_workspace / f"base-{family}", {}, "cpu")
    model = method.prepare(base, family, {"alpha": 32, "dropout": 0.0}, 4)
    adapted = {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}
    assert adapted and all(type(m.base_layer).__name__ == "Linear4bit" for m in adapted.values())
    assert all(not m.fan_in_fan_out for m in adapted.values())  # GPT-2's Conv1D became Linear layout
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert count_parameters(model)[0] == lora_count(4, attention_lora_shapes(family))
    with torch.no_grad():
        for parameter in trainable:
            parameter.add_(0.05 * torch.randn_like(parameter))
    rows = io.read_jsonl(tiny_workspace / "data/test.jsonl")[:4]
    batch = collate(encode_pairs(rows, tokenizer, family, 24, 24), tokenizer.pad_token_id)
    kwargs = {"labels": batch["labels"]} if family == "t5" else {}

    def logits(m):
        m.eval()
        with torch.no_grad():
            return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs).logits

    expected = logits(model)
    method.save(model, tokenizer, tmp_path / "weights")
    loaded, _, _ = method.load_for_inference(tiny_workspace / f"base-{family}", tmp_path / "weights", "cpu", {"kind": "qlora"})
    assert len(quantized_modules(loaded)) == len(QUANTIZED[family])
    assert torch.allclose(logits(loaded), expected, rtol=0, atol=1e-6)


def test_record_extras(tiny_workspace):
    method = get_method("qlora")
    model, _, _ = method.load_base_for_training(tiny_workspace / "base-gpt2", {}, "cpu")
    model = method.prepare(model, "gpt2", {}, 4)
    extras = method.record_extras(model)
    assert extras["base_weight_bytes"] == sum(four_bit_bytes(i * o) for i, o in QUANTIZED["gpt2"].values())
    assert extras["base_weight_bytes_unquantized"] == 4 * 24576
    assert extras["quantization"] == {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bf16",
                                      "library": "bitsandbytes", "quantized_modules": 8, "quantized_parameters": 24576,
                                      "unquantized_dtype": "float32"}
    assert extras["optimizer"] == "torch.optim.AdamW" and extras["paged_optimizer"] is False
    assert extras["gradient_checkpointing"] is True


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_gradient_checkpointing_changes_memory_not_gradients(tiny_workspace, family):
    """Turning checkpointing off (cheaper on CPU) must leave the loss and every LoRA gradient unchanged.

    fp32 compute: with bf16 compute the recomputed forward rounds differently (gradients agree to ~5e-4).
    """
    from peftstudy.modeling.batching import collate, encode_pairs, summed_token_loss

    method = get_method("qlora")
    gradients, losses = {}, {}
    for checkpointing in (True, False):
        torch.manual_seed(0)
        spec = {"gradient_checkpointing": checkpointing, "dropout": 0.0, "compute_dtype": "fp32"}  # bf16 rounds
        base, tokenizer, _ = method.load_base_for_training(tiny_workspace / f"base-{family}", spec, "cpu")
        model = method.prepare(base, family, spec, 4)
        assert method.record_extras(model)["gradient_checkpointing"] is checkpointing
        assert model.base_model.model.is_gradient_checkpointing is checkpointing
        with torch.no_grad():  # LoRA B starts at zero; give it values so that A gets gradients too
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.copy_(0.05 * torch.randn_like(parameter))
        model.train()  # checkpointing is active in training mode only; dropout off so both passes compare
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        rows = io.read_jsonl(tiny_workspace / "data/train.jsonl")[:8]
        batch = collate(encode_pairs(rows, tokenizer, family, 24, 24), tokenizer.pad_token_id)
        loss, _ = summed_token_loss(model, batch, family)
        loss.backward()
        losses[checkpointing] = loss.item()
        gradients[checkpointing] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)
    assert gradients[True].keys() == gradients[False].keys() and gradients[True]
    for name, grad in gradients[True].items():
        other = gradients[False][name]
        assert torch.allclose(grad, other, rtol=1e-4, atol=1e-6), name


def test_missing_bitsandbytes_raises_instead_of_training_plain_lora(tiny_workspace, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(QuantizationUnavailableError, match="refusing to train unquantized LoRA"):
        train_run(settings("gpt2", {}), tiny_workspace / "base-gpt2", tiny_workspace / "data", tmp_path / "w",
                  tmp_path / "train.json")
    assert not (tmp_path / "w").exists()


def test_a_base_that_comes_back_unquantized_raises(tiny_workspace, monkeypatch):
    monkeypatch.setattr(quantized_module, "_quantization_config", lambda settings, skip_modules=None: None)  # a no-op backend
    with pytest.raises(QuantizationUnavailableError, match=r"asked for 4-bit weights but the loaded base has 0"):
        get_method("qlora").load_base_for_training(tiny_workspace / "base-t5", {}, "cpu")


def test_prepare_refuses_an_unquantized_model(tiny_workspace):
    model, _, _ = load_base(tiny_workspace / "base-t5")
    with pytest.raises(QuantizationUnavailableError, match="without bitsandbytes-quantized layers"):
        get_method("qlora").prepare(model, "t5", {}, 4)


def test_invalid_quantization_options(tiny_workspace, tmp_path):
    method = get_method("qlora")
    with pytest.raises(ValueError, match="only apply to 4-bit"):
        method.load_base_for_training(tiny_workspace / "base-t5", {"bits": 8, "quant_type": "fp4"}, "cpu")
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        method.load_base_for_training(tiny_workspace / "base-t5", {"bits": 3}, "cpu")
    io.write_json(tmp_path / "quantization.json", {"bits": 4, "quant_type": "nf4", "double_quant": True,
                                                   "compute_dtype": "bf16"})
    with pytest.raises(ValueError, match="trained on a base quantized with"):
        method.load_for_inference(tiny_workspace / "base-t5", tmp_path, "cpu", {"kind": "qlora", "bits": 8})


def test_decoder_rank_reaches_qlora_through_the_lora_config(tiny_workspace):
    """QLoRA builds its LoRA with LoRA.peft_config, so T5's decoder_rank applies: encoder r=4, decoder r=2."""
    method = get_method("qlora")
    model, _, _ = method.load_base_for_training(tiny_workspace / "base-t5", {}, "cpu")
    model = method.prepare(model, "t5", {"decoder_rank": 2}, 4)
    encoder = lora_count(4, [(32, 32)] * 4 * 2)  # q, k, v, o of 2 encoder blocks
    decoder = lora_count(2, [(32, 32)] * 8 * 2)  # self and cross q, k, v, o of 2 decoder blocks
    assert count_parameters(model)[0] == encoder + decoder


# ---------------------------------------------------------------------------------------------------------------
# The same numbers on CPUs with and without AVX512-BF16. bitsandbytes decides when it builds a Linear4bit
# (has_avx512bf16(), its CPU probe) whether an eval forward without grad repacks the 4-bit weight for good.
# Forcing the probe to say yes exercises that route on any machine; forcing it to say no is the other one.

def force_avx512bf16_probe(monkeypatch, present: bool):
    import bitsandbytes.functional
    import bitsandbytes.nn.modules

    monkeypatch.setattr(bitsandbytes.nn.modules, "has_avx512bf16", lambda: present)
    monkeypatch.setattr(bitsandbytes.functional, "has_avx512bf16", lambda: present)


def qlora_cycle(base_dir, data_dir, test_path, out, family, spec, interrupt_at=None, monkeypatch=None):
    """train (validating every epoch) -> [interrupted, resumed] -> save -> reload -> generate; what it produced."""
    import os
    import signal

    from peftstudy.training import checkpoint

    run = settings(family, spec)
    arguments = (run, base_dir, data_dir, out / "weights", out / "train.json")
    if interrupt_at is not None:
        method_class = type(get_method("qlora"))
        original = method_class.after_optimizer_step

        def stop_here(self, model, step):
            original(self, model, step)
            if step == interrupt_at:
                os.kill(os.getpid(), signal.SIGUSR1)

        with monkeypatch.context() as patch:
            patch.setattr(method_class, "after_optimizer_step", stop_here)
            with pytest.raises(checkpoint.TrainingInterrupted):
                train_run(*arguments, checkpoint_dir=out / "checkpoint")
    record = train_run(*arguments, checkpoint_dir=out / "checkpoint")
    generate_run(run["method_spec"], family, base_dir, out / "weights", test_path, out / "generations.jsonl",
                 out / "generation.json", GENERATION, 24)
    return {"step_losses": record["step_losses"], "validation_losses": record["validation_losses"],
            "resumed": record["resumed_from_step"],
            "weights": {p.name: p.read_bytes() for p in sorted((out / "weights").iterdir()) if p.name != "README.md"},
            "generations": (out / "generations.jsonl").read_bytes()}


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_avx512bf16_route_trains_validates_resumes_and_generates_like_the_plain_route(
        tiny_workspace, fixed_batch, tmp_path, monkeypatch, family):
    base_dir, test_path = tiny_workspace / f"base-{family}", tiny_workspace / "data/test.jsonl"
    force_avx512bf16_probe(monkeypatch, False)
    plain = qlora_cycle(base_dir, fixed_batch, test_path, tmp_path / "plain", family, {})
    force_avx512bf16_probe(monkeypatch, True)
    # Interrupted after step 3: three validation passes (eval, no grad) ran before training goes on.
    forced = qlora_cycle(base_dir, fixed_batch, test_path, tmp_path / "forced", family, {}, interrupt_at=3,
                         monkeypatch=monkeypatch)
    assert forced["resumed"] == [4] and plain["resumed"] is None
    assert len(forced["validation_losses"]) == 6
    for key in ("step_losses", "validation_losses", "weights", "generations"):
        assert forced[key] == plain[key], key


def test_the_forced_probe_reaches_the_repacking_and_the_pin_stops_it(tiny_workspace, monkeypatch):
    """Without pin_cpu_kernels, the forced probe makes one eval forward repack every 4-bit weight (so the test
    above really exercises the route); with it, the weights and their quantization state stay canonical:
    bit-identical to a freshly loaded base, in the layout bitsandbytes saves."""
    force_avx512bf16_probe(monkeypatch, True)
    method = get_method("qlora")
    base_dir = tiny_workspace / "base-gpt2"
    ids = torch.tensor([[5, 6, 7, 8, 9]])

    def state(model):  # the 4-bit weights and their quantization state (a forward casts biases to bf16 anyway)
        names = tuple(f"{name}.weight" for name in quantized_modules(model))
        return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(names)}

    fresh, _, _ = method.load_base_for_training(base_dir, {}, "cpu")
    expected = state(fresh)
    pinned, _, _ = method.load_base_for_training(base_dir, {}, "cpu")
    assert all(m.support_avx512bf16_for_cpu is False for m in quantized_modules(pinned).values())
    pinned.eval()
    with torch.no_grad():
        pinned(input_ids=ids)
    quantized_module.assert_canonical_layout(pinned)
    after = state(pinned)
    assert after.keys() == expected.keys() and any(k.endswith("quant_state.bitsandbytes__nf4") for k in after)
    assert all(torch.equal(after[k], expected[k]) for k in expected)

    monkeypatch.setattr(quantized_module, "pin_cpu_kernels", lambda model: None)
    unpinned, _, _ = method.load_base_for_training(base_dir, {}, "cpu")
    assert all(m.support_avx512bf16_for_cpu is True for m in quantized_modules(unpinned).values())
    unpinned.eval()
    with torch.no_grad(), contextlib.suppress(RuntimeError):  # the repacked layout's kernel: AVX512-BF16 CPUs only
        unpinned.transformer.h[0].mlp.c_proj(torch.zeros(1, 128))  # (a repack needs in_features >= 64)
    with pytest.raises(RuntimeError, match=r"repacked into bitsandbytes' AVX512-BF16 CPU layout: transformer.h.0.mlp.c_proj \("):
        quantized_module.assert_canonical_layout(unpinned)


def test_int8_matmul_is_exact_whatever_kernel_the_cpu_would_pick(tiny_workspace):
    """LLM.int8()'s int8 product: bitsandbytes uses torch._int_mm on AVX512 CPUs (exact) and a float32 matmul
    elsewhere, which rounds once a partial sum passes 2**24. The pinned kernel is exact on both."""
    from bitsandbytes.backends.default.ops import _int8_linear_matmul_impl

    get_method("qlora").load_base_for_training(tiny_workspace / "base-gpt2", {"bits": 8}, "cpu")  # pins
    A = torch.full((2, 2049), 127, dtype=torch.int8)
    B = torch.full((3, 2049), 127, dtype=torch.int8)
    B[1, :1000] = -127
    exact = A.long() @ B.long().t()  # 2049 * 16129 = 33,048,321 > 2**24, odd: float32 cannot hold it
    assert not torch.equal(_int8_linear_matmul_impl(A, B).long(), exact)  # the float32 route bitsandbytes may pick
    assert torch.equal(torch._int_mm(A, B.t()).long(), exact)  # the AVX512 route
    assert torch.equal(torch.ops.bitsandbytes.int8_linear_matmul(A, B).long(), exact)  # what runs after pinning
