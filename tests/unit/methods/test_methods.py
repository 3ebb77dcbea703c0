"""Trainable-parameter counts against closed forms, on real architectures built from their configs."""

import pytest
import torch
import transformers

from peftstudy.methods import get_method
from peftstudy.modeling.loading import count_parameters


def lora_count(rank, shapes):
    """LoRA adds r * (d_in + d_out) parameters per adapted matrix."""
    return sum(rank * (d_in + d_out) for d_in, d_out in shapes)


def on_meta(builder):
    with torch.device("meta"):
        return builder()


def gpt2_medium():
    return on_meta(lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=24, n_embd=1024, n_head=16)))


def test_lora_gpt2_medium_c_attn_only_matches_published_formula():
    model = get_method("lora").prepare(gpt2_medium(), "gpt2", {"target_modules": ["c_attn"]}, 4)
    trainable, _ = count_parameters(model)
    assert trainable == 393_216 == 24 * lora_count(4, [(1024, 3072)])


@pytest.mark.parametrize("rank", [4, 8, 16, 32, 64])
def test_lora_gpt2_attention_targets_c_attn_and_attention_c_proj_only(rank):
    model = get_method("lora").prepare(gpt2_medium(), "gpt2", {}, rank)
    trainable, total = count_parameters(model)
    assert trainable == 24 * lora_count(rank, [(1024, 3072), (1024, 1024)])
    assert total == 354_823_168 + trainable  # GPT-2 Medium base (tied embeddings counted once)


def test_lora_t5_base_q_k_v_o():
    config = transformers.T5Config(d_model=768, d_kv=64, d_ff=3072, num_heads=12, num_layers=12)
    model = get_method("lora").prepare(on_meta(lambda: transformers.T5ForConditionalGeneration(config)), "t5", {}, 8)
    trainable, _ = count_parameters(model)
    attention_blocks = 12 + 2 * 12  # encoder self; decoder self + cross
    assert trainable == attention_blocks * 4 * lora_count(8, [(768, 768)])


def test_lora_llama_attention_projections():
    config = transformers.LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                                      num_attention_heads=8, num_key_value_heads=2, vocab_size=1000)
    model = get_method("lora").prepare(on_meta(lambda: transformers.LlamaForCausalLM(config)), "llama", {}, 16)
    trainable, _ = count_parameters(model)
    kv = 2 * 256 // 8  # grouped-query attention: k/v project to num_key_value_heads * head_dim
    assert trainable == 3 * lora_count(16, [(256, 256), (256, kv), (256, kv), (256, 256)])


def test_lora_attention_plus_mlp_targets_gpt2():
    model = get_method("lora").prepare(gpt2_medium(), "gpt2", {"target_modules": "attention+mlp"}, 4)
    trainable, _ = count_parameters(model)
    assert trainable == 24 * lora_count(4, [(1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024)])


def test_full_fine_tuning_trains_everything():
    model = get_method("full").prepare(gpt2_medium(), "gpt2", {}, None)
    trainable, total = count_parameters(model)
    assert trainable == total == 354_823_168


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown method kind 'nope'"):
        get_method("nope")


def test_lora_needs_a_positive_rank():
    with pytest.raises(ValueError, match="positive rank"):
        get_method("lora").prepare(gpt2_medium(), "gpt2", {}, 0)
