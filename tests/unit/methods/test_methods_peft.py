"""DoRA, AdaLoRA, VeRA, IA3, prefix and prompt tuning, BitFit, FT-top-k and LoRA's decoder_rank.

(a) trainable-parameter counts against closed forms on real architectures built on
the meta device (GPT-2 Medium: 24 layers, d=1024; T5-Base: 12+12 layers, d=768,
d_ff=3072, 12 heads x d_kv 64); (b) 24 training steps with train_run on the tiny bases
bring the validation loss below the base's; (c) generation after save -> reload is
deterministic, and the reloaded model reproduces the validation loss the trained
model had (the stored weights are the trained ones); prefix/prompt tuning give the
same tokens and step scores batched (GPT-2: left-padded, with the KV cache) as one by
one, and every cached step equals the training-time forward pass. BitFit on T5 must
fail clearly instead. About 50 s on 2 cores.
"""

import json

import pytest
import torch
import transformers

from peftstudy import io
from peftstudy.generation import generate_predictions, generate_run
from peftstudy.methods import get_method
from peftstudy.modeling.batching import collate, encode_pairs, encode_prompt
from peftstudy.modeling.families import is_decoder_only
from peftstudy.modeling.loading import count_parameters
from peftstudy.training.loop import evaluate_loss, train_run

# ---------------------------------------------------------------- (a) closed forms on real architectures

GPT2_LAYERS, GPT2_D = 24, 1024
T5_LAYERS, T5_D, T5_FF = 12, 768, 3072  # T5-Base; inner attention width = 12 heads x d_kv 64 = 768
T5_ATTENTION_BLOCKS = T5_LAYERS + 2 * T5_LAYERS  # encoder self; decoder self + cross


def on_meta(builder):
    with torch.device("meta"):
        return builder()


def gpt2_medium():
    return on_meta(lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=24, n_embd=1024, n_head=16)))


def t5_base():
    config = transformers.T5Config(d_model=768, d_kv=64, d_ff=3072, num_heads=12, num_layers=12)
    return on_meta(lambda: transformers.T5ForConditionalGeneration(config))


def trainable_after(kind, model, family, spec, rank=None, total_steps=None):
    return count_parameters(get_method(kind).prepare(model, family, spec, rank, total_steps=total_steps))[0]


def lora_count(rank, shapes):
    """LoRA adds r * (d_in + d_out) parameters per adapted matrix."""
    return sum(rank * (d_in + d_out) for d_in, d_out in shapes)


GPT2_ATTENTION = [(GPT2_D, 3 * GPT2_D), (GPT2_D, GPT2_D)]  # fused c_attn (d -> 3d) and attention c_proj


def test_dora_is_lora_plus_one_magnitude_per_output_feature():
    rank = 8
    trainable = trainable_after("dora", gpt2_medium(), "gpt2", {}, rank)
    assert trainable == GPT2_LAYERS * (lora_count(rank, GPT2_ATTENTION) + 3 * GPT2_D + GPT2_D)
    trainable = trainable_after("dora", t5_base(), "t5", {}, rank)
    assert trainable == T5_ATTENTION_BLOCKS * 4 * (lora_count(rank, [(T5_D, T5_D)]) + T5_D)


def test_adalora_allocates_init_rank_triplets_and_needs_total_steps():
    # SVD form P (r x d_in), Q (d_out x r), Lambda (r): r * (d_in + d_out) + r per matrix, r = init_rank.
    init = 12  # default ceil(1.5 * 8)
    trainable = trainable_after("adalora", gpt2_medium(), "gpt2", {}, 8, total_steps=100)
    assert trainable == GPT2_LAYERS * (lora_count(init, GPT2_ATTENTION) + 2 * init)
    trainable = trainable_after("adalora", t5_base(), "t5", {"init_rank": 6}, 4, total_steps=100)
    assert trainable == T5_ATTENTION_BLOCKS * 4 * (lora_count(6, [(T5_D, T5_D)]) + 6)
    with pytest.raises(ValueError, match="total_steps"):
        get_method("adalora").prepare(gpt2_medium(), "gpt2", {}, 8, total_steps=None)
    with pytest.raises(ValueError, match="init_rank"):
        get_method("adalora").prepare(gpt2_medium(), "gpt2", {"init_rank": 4}, 8, total_steps=100)


def test_adalora_schedule_always_leaves_a_budgeting_phase():
    schedule = get_method("adalora").schedule
    assert schedule(1000) == {"tinit": 100, "tfinal": 200, "deltaT": 10}
    for steps in range(1, 300):
        s = schedule(steps)
        assert s["tinit"] < steps - s["tfinal"], steps


@pytest.mark.parametrize("rank", [4, 256])
def test_vera_trains_lambda_b_and_lambda_d_per_layer(rank):
    # lambda_b has d_out entries, lambda_d has r; the random A and B are shared, frozen buffers.
    # GPT-2's c_attn (d -> 3d) and c_proj (d -> d) differ in shape: both use slices of one shared pair.
    trainable = trainable_after("vera", gpt2_medium(), "gpt2", {}, rank)
    assert trainable == GPT2_LAYERS * ((3 * GPT2_D + rank) + (GPT2_D + rank))
    trainable = trainable_after("vera", t5_base(), "t5", {}, rank)
    assert trainable == T5_ATTENTION_BLOCKS * 4 * (T5_D + rank)


def test_ia3_one_vector_per_targeted_module():
    # GPT-2: fused c_attn output (q, k and v: 3d) + mlp.c_proj input (d_ff = 4d).
    assert trainable_after("ia3", gpt2_medium(), "gpt2", {}) == GPT2_LAYERS * (3 * GPT2_D + 4 * GPT2_D)
    # T5: k and v outputs (768 each) in every attention block, wo input (d_ff) in every block.
    expected = T5_ATTENTION_BLOCKS * 2 * T5_D + 2 * T5_LAYERS * T5_FF
    assert trainable_after("ia3", t5_base(), "t5", {}) == expected
    assert trainable_after("ia3", t5_base(), "t5", {"target_modules": "attention"}) == T5_ATTENTION_BLOCKS * 2 * T5_D


def test_ia3_llama_keys_values_and_down_projection():
    config = transformers.LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                                      num_attention_heads=8, num_key_value_heads=2, vocab_size=1000)
    model = on_meta(lambda: transformers.LlamaForCausalLM(config))
    kv = 2 * 256 // 8
    assert trainable_after("ia3", model, "llama", {}) == 3 * (kv + kv + 512)


@pytest.mark.parametrize("tokens", [20, 5])
def test_prefix_is_tokens_x_layers_x_keys_and_values_x_width(tokens):
    trainable = trainable_after("prefix", gpt2_medium(), "gpt2", {"num_virtual_tokens": tokens})
    assert trainable == tokens * GPT2_LAYERS * 2 * GPT2_D
    # T5: peft builds one prefix (key and value) per *decoder* layer, 12 heads x d_kv wide, and feeds
    # it to both the decoder's self-attention and its cross-attention; the encoder gets none.
    trainable = trainable_after("prefix", t5_base(), "t5", {"num_virtual_tokens": tokens})
    assert trainable == tokens * T5_LAYERS * 2 * (12 * 64)


def test_prefix_projection_adds_the_reparametrisation_mlp():
    d, layers, n = GPT2_D, GPT2_LAYERS, 10
    trainable = trainable_after("prefix", gpt2_medium(), "gpt2", {"num_virtual_tokens": n, "prefix_projection": True})
    # embedding (n x d) -> Linear(d, d) -> tanh -> Linear(d, layers * 2 * d)
    assert trainable == n * d + (d * d + d) + (d * layers * 2 * d + layers * 2 * d)


@pytest.mark.parametrize("tokens", [20, 8])
def test_prompt_is_tokens_x_d_model(tokens):
    assert trainable_after("prompt", gpt2_medium(), "gpt2", {"num_virtual_tokens": tokens}) == tokens * GPT2_D
    # T5: encoder input only (peft's default would allocate a second, unused set for the decoder).
    assert trainable_after("prompt", t5_base(), "t5", {"num_virtual_tokens": tokens}) == tokens * T5_D


def test_bitfit_counts_every_bias_and_refuses_models_without_biases():
    # Per GPT-2 block: ln_1 d, c_attn 3d, attn c_proj d, ln_2 d, c_fc 4d, mlp c_proj d = 11d; plus ln_f d.
    assert trainable_after("bitfit", gpt2_medium(), "gpt2", {}) == GPT2_LAYERS * 11 * GPT2_D + GPT2_D
    with pytest.raises(ValueError, match="model family 't5' has no bias parameters"):
        get_method("bitfit").prepare(t5_base(), "t5", {}, None)


@pytest.mark.parametrize("top_k", [1, 2, 24])
def test_ft_top_k_gpt2_last_blocks_plus_final_norm(top_k):
    d = GPT2_D
    block = (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (2 * d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert block == 12 * d * d + 13 * d
    assert trainable_after("ft_top_k", gpt2_medium(), "gpt2", {"top_k": top_k}) == top_k * block + 2 * d


def test_ft_top_k_t5_last_blocks_of_encoder_and_decoder_plus_final_norms():
    d, ff, inner = T5_D, T5_FF, 12 * 64
    encoder_block = 4 * d * inner + 2 * d * ff + 2 * d  # q,k,v,o; wi, wo; two RMS norms (no biases)
    decoder_block = 8 * d * inner + 2 * d * ff + 3 * d  # self + cross attention; three norms
    assert trainable_after("ft_top_k", t5_base(), "t5", {}) == 2 * (encoder_block + decoder_block) + 2 * d
    with pytest.raises(ValueError, match="top_k=13 but encoder.block has only 12 blocks"):
        get_method("ft_top_k").prepare(t5_base(), "t5", {"top_k": 13}, None)


def test_ft_top_k_keeps_tied_embeddings_and_head_frozen():
    model = get_method("ft_top_k").prepare(gpt2_medium(), "gpt2", {"top_k": 24}, None)
    assert not model.transformer.wte.weight.requires_grad and model.lm_head.weight is model.transformer.wte.weight
    assert not model.transformer.wpe.weight.requires_grad


def test_lora_decoder_rank_on_t5():
    encoder_rank, decoder_rank = 4, 16
    trainable = trainable_after("lora", t5_base(), "t5", {"decoder_rank": decoder_rank}, encoder_rank)
    square = [(T5_D, T5_D)]
    assert trainable == T5_LAYERS * 4 * lora_count(encoder_rank, square) + 2 * T5_LAYERS * 4 * lora_count(decoder_rank, square)
    model = get_method("dora").prepare(t5_base(), "t5", {"decoder_rank": decoder_rank}, encoder_rank)
    assert model.base_model.model.decoder.block[0].layer[1].EncDecAttention.q.r["default"] == decoder_rank
    assert model.base_model.model.encoder.block[0].layer[0].SelfAttention.q.r["default"] == encoder_rank


def test_decoder_rank_is_an_error_for_decoder_only_models():
    for kind in ("lora", "dora"):
        with pytest.raises(ValueError, match="decoder_rank applies to encoder-decoder models"):
            get_method(kind).prepare(gpt2_medium(), "gpt2", {"decoder_rank": 8}, 4)


# ---------------------------------------------------------------- (b, c) training, reload and generation

TRAINING = dict(epochs=1, max_steps=24, batch_size=8, gradient_accumulation_steps=1, learning_rate=1e-2,
                weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="constant", max_grad_norm=1.0,
                max_source_tokens=24, max_target_tokens=24, early_stopping_patience=None, precision="fp32")
GENERATION = {"batch_size": 8, "max_new_tokens": 10, "num_beams": 1, "no_repeat_ngram_size": 0}

# (kind, rank, extra spec, learning rate): rates in each method's usual range, scaled for 24 steps.
CASES = {
    "dora": ("dora", 4, {"dropout": 0.0}, 1e-2),
    "adalora": ("adalora", 2, {"dropout": 0.0}, 1e-2),
    "vera": ("vera", 16, {}, 3e-2),
    "ia3": ("ia3", None, {}, 3e-2),
    "prefix": ("prefix", None, {"num_virtual_tokens": 4}, 3e-2),
    "prompt": ("prompt", None, {"num_virtual_tokens": 4, "prompt_init": "text", "prompt_init_text": "red blue"}, 3e-2),
    "bitfit": ("bitfit", None, {}, 1e-2),
    "ft_top_k": ("ft_top_k", None, {"top_k": 1}, 3e-3),
    "lora_decoder_rank": ("lora", 2, {"decoder_rank": 4, "dropout": 0.0}, 1e-2),
}
FAMILY_CASES = [(family, case) for case in CASES for family in ("gpt2", "t5")
                if (family, case) not in {("t5", "bitfit"), ("gpt2", "lora_decoder_rank")}]


def run_settings(family, case):
    kind, rank, spec, learning_rate = CASES[case]
    return {"dataset": "d", "model": family, "family": family, "method": kind, "rank": rank,
            "method_spec": {"kind": kind, **spec}, "training": {**TRAINING, "learning_rate": learning_rate},
            "seed": 3}


@pytest.fixture(scope="module")
def bases(tiny_workspace):
    """Base directories per family.

    The shared tiny GPT-2 (30 pretraining steps at lr 1e-3) is still close to uniform (validation loss
    ~4.68 with a 200-token vocabulary, ln 200 = 5.3): with a frozen embedding/LM head no PEFT method
    can move it within a few steps. This module pretrains the same architecture on the same corpus a
    little harder (60 steps at lr 1e-2, ~3 s); T5 uses the shared base.
    """
    from conftest import TINY_ARCHITECTURES

    from peftstudy.training.pretrain import pretrain_base

    gpt2 = tiny_workspace / "peft-methods" / "base-gpt2"
    if not (gpt2 / "base.json").exists():
        spec = {"name": "gpt2", "family": "gpt2", "architecture": TINY_ARCHITECTURES["gpt2"],
                "tokenizer": {"vocab_size": 200},
                "pretraining": {"corpus": "c", "steps": 60, "batch_size": 8, "sequence_tokens": 24,
                                "learning_rate": 1e-2}}
        pretrain_base(spec, tiny_workspace / "corpus.txt", gpt2)
    return {"gpt2": gpt2, "t5": tiny_workspace / "base-t5"}


def text_objective(tokenizer, family):
    from peftstudy.modeling.heads import TextObjective

    return TextObjective(tokenizer, family, 24, 24)


def validation_examples(workspace, tokenizer, family):
    return encode_pairs(io.read_jsonl(workspace / "data/validation.jsonl"), tokenizer, family, 24, 24)


@pytest.fixture(scope="module")
def base_validation_loss(tiny_workspace, bases):
    from peftstudy.modeling.loading import load_base

    losses = {}
    for family, base_dir in bases.items():
        model, tokenizer, _ = load_base(base_dir)
        losses[family] = evaluate_loss(model, validation_examples(tiny_workspace, tokenizer, family), text_objective(tokenizer, family),
                                       tokenizer.pad_token_id, TRAINING["batch_size"], "cpu")
    return losses


@pytest.fixture(scope="module")
def trained(tiny_workspace, bases):
    """Train each (family, case) once per module, on demand."""
    runs = {}

    def get(family, case):
        if (family, case) not in runs:
            out = tiny_workspace / "peft-methods" / f"{family}-{case}"
            record = train_run(run_settings(family, case), bases[family], tiny_workspace / "data",
                               out / "weights", out / "train.json")
            runs[family, case] = (out, record)
        return runs[family, case]

    return get


@pytest.mark.parametrize("family, case", FAMILY_CASES)
def test_training_lowers_loss_and_reload_reproduces_it(tiny_workspace, bases, base_validation_loss, trained,
                                                       family, case):
    out, record = trained(family, case)
    assert record["steps"] == TRAINING["max_steps"]
    # Held-out loss (deterministic, unlike single-batch losses) is lower than the base's.
    assert record["validation_losses"][-1] < base_validation_loss[family] - 1e-3, \
        (record["validation_losses"], base_validation_loss[family])
    assert 0 < record["trainable_parameters"] < record["total_parameters"]
    stored = sorted(f.name for f in (out / "weights").iterdir())
    assert any(name.endswith(".safetensors") for name in stored), stored
    assert not [name for name in stored if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], stored
    # The stored weights are the trained ones: the reloaded model has the validation loss the trainer saw.
    model, tokenizer, _ = get_method(CASES[case][0]).load_for_inference(
        bases[family], out / "weights", "cpu", run_settings(family, case)["method_spec"])
    reloaded = evaluate_loss(model, validation_examples(tiny_workspace, tokenizer, family), text_objective(tokenizer, family),
                             tokenizer.pad_token_id, TRAINING["batch_size"], "cpu")
    assert reloaded == pytest.approx(record["validation_losses"][-1], rel=1e-5)


@pytest.mark.parametrize("family, case", FAMILY_CASES)
def test_reloaded_generation_is_deterministic(tiny_workspace, bases, trained, family, case):
    out, _ = trained(family, case)
    test_path = tiny_workspace / "data/test.jsonl"
    for name in ("a", "b"):
        record = generate_run({"kind": CASES[case][0]}, family, bases[family], out / "weights", test_path,
                              out / f"{name}.jsonl", out / f"{name}.json", GENERATION, 24)
        assert record["examples"] == 16
    assert (out / "a.jsonl").read_bytes() == (out / "b.jsonl").read_bytes()


def greedy_steps(model, tokenizer, family, records, batch_size, steps=6):
    """(tokens, scores) of every greedy step, batched as generate_predictions batches (left padding for
    decoder-only models, KV cache on); eos is suppressed so every example runs all steps."""
    padding_side = "left" if is_decoder_only(family) else "right"
    tokens, scores = [], []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        batch = collate([{"input_ids": encode_prompt(tokenizer, family, r["input"], 24)} for r in chunk],
                        tokenizer.pad_token_id, padding_side)
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, num_beams=1,
                                    use_cache=True, pad_token_id=tokenizer.pad_token_id,
                                    eos_token_id=tokenizer.eos_token_id, output_scores=True,
                                    return_dict_in_generate=True)
        tokens.extend(output.sequences[:, -steps:].unbind(0))
        scores.extend(torch.stack(output.scores, dim=1).unbind(0))  # (batch, steps, vocab)
    return torch.stack(tokens), torch.stack(scores).clamp(min=-1e4)  # -inf (suppressed eos) comparable


def teacher_forced_logits(model, tokenizer, family, record, generated):
    """Logits of the training-time forward pass at the positions generate() scored."""
    prompt = encode_prompt(tokenizer, family, record["input"], 24)
    with torch.no_grad():
        if is_decoder_only(family):
            ids = torch.tensor([prompt + generated[:-1]])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, len(prompt) - 1 :]
        else:
            ids = torch.tensor([prompt])
            start = model.get_base_model().config.decoder_start_token_id
            decoder_ids = torch.tensor([[start] + generated[:-1]])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=decoder_ids).logits[0]
    return logits


@pytest.mark.parametrize("family", ["gpt2", "t5"])
@pytest.mark.parametrize("case", ["prefix", "prompt"])
def test_virtual_tokens_generate_the_same_batched_and_one_by_one(tiny_workspace, bases, trained, family, case):
    out, _ = trained(family, case)
    model, tokenizer, _ = get_method(CASES[case][0]).load_for_inference(bases[family], out / "weights", "cpu")
    records = [{**r, "input": r["input"] + " | red" * (i % 3)}
               for i, r in enumerate(io.read_jsonl(tiny_workspace / "data/test.jsonl"))]
    lengths = [len(encode_prompt(tokenizer, family, r["input"], 24)) for r in records]
    assert len(set(lengths)) > 2  # batches really are padded
    batched = generate_predictions(model, tokenizer, family, records, {**GENERATION, "batch_size": 16}, 24, "cpu")
    single = generate_predictions(model, tokenizer, family, records, {**GENERATION, "batch_size": 1}, 24, "cpu")
    assert batched == single
    # Texts of tiny models can be short or blank: compare every step's scores too.
    tokens, scores = greedy_steps(model, tokenizer, family, records, 16)
    single_tokens, single_scores = greedy_steps(model, tokenizer, family, records, 1)
    assert torch.equal(tokens, single_tokens)
    torch.testing.assert_close(scores, single_scores, atol=1e-4, rtol=1e-4)
    # Every cached generation step predicts what the training forward pass predicts on the same text.
    for index in (0, 1, 2):
        generated = tokens[index].tolist()
        expected = teacher_forced_logits(model, tokenizer, family, records[index], generated)
        keep = torch.arange(expected.shape[-1]) != tokenizer.eos_token_id  # eos is suppressed in the scores
        torch.testing.assert_close(scores[index][:, keep], expected[:, keep], atol=1e-4, rtol=1e-4)
    # The virtual tokens matter: the base model alone (prompt learning leaves it unmodified) differs.
    _, plain = greedy_steps(model.get_base_model(), tokenizer, family, records[:4], 4)
    assert not torch.allclose(plain, scores[:4], atol=1e-3)


def test_prompt_text_init_uses_the_text_token_embeddings(bases):
    method = get_method("prompt")
    model, tokenizer, _ = method.load_base_for_training(bases["gpt2"], {}, "cpu")
    spec = {"num_virtual_tokens": 5, "prompt_init": "text", "prompt_init_text": "red blue"}
    peft_model = method.prepare(model, "gpt2", spec, None)
    ids = tokenizer("red blue", add_special_tokens=False)["input_ids"]
    expected = model.transformer.wte.weight[(ids * 5)[:5]]
    assert torch.equal(peft_model.prompt_encoder["default"].embedding.weight, expected)
    assert peft_model.peft_config["default"].prompt_tuning_init == "TEXT"


def test_adalora_stores_the_reallocated_ranks(tiny_workspace, trained):
    out, _ = trained("gpt2", "adalora")
    config = json.loads((out / "weights" / "adapter_config.json").read_text())
    assert config["rank_pattern"], "the final budget allocation was not stored"
    kept = sum(sum(mask) for mask in config["rank_pattern"].values())
    assert kept <= CASES["adalora"][1] * len(config["rank_pattern"])  # at most the target budget


def test_partial_methods_store_only_the_trained_tensors(tiny_workspace, trained):
    from safetensors.torch import load_file

    for case, family in (("bitfit", "gpt2"), ("ft_top_k", "t5")):
        out, record = trained(family, case)
        manifest = json.loads((out / "weights" / "partial.json").read_text())
        tensors = load_file(out / "weights" / manifest["weights"])
        assert manifest["method"] == case and sorted(tensors) == manifest["parameters"]
        assert sum(t.numel() for t in tensors.values()) == record["trainable_parameters"]
    bitfit = json.loads((tiny_workspace / "peft-methods/gpt2-bitfit/weights/partial.json").read_text())
    assert all(name.endswith(".bias") for name in bitfit["parameters"])


def test_bitfit_on_t5_fails_clearly_in_training(tiny_workspace, bases):
    out = tiny_workspace / "peft-methods" / "t5-bitfit"
    with pytest.raises(ValueError, match="model family 't5' has no bias parameters"):
        train_run(run_settings("t5", "bitfit"), bases["t5"], tiny_workspace / "data", out / "weights",
                  out / "train.json")
    assert not (out / "weights").exists()


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_adalora_orthogonality_penalty_equals_peft_and_enters_training(tiny_workspace, bases, trained, family):
    """peft adds the penalty to outputs.loss only; ours (added by the loop to the logit loss) must be the same."""
    from peftstudy.modeling.loading import load_base

    method = get_method("adalora")
    model, tokenizer, _ = load_base(bases[family])
    model = method.prepare(model, family, {"dropout": 0.0, "orth_reg_weight": 0.3}, 2, total_steps=10)
    torch.manual_seed(1)
    with torch.no_grad():  # away from peft's near-orthogonal start, so the penalty is large
        for name, parameter in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                parameter.normal_(0, 0.5)
    model.eval()
    batch = collate(validation_examples(tiny_workspace, tokenizer, family)[:4], tokenizer.pad_token_id)
    with torch.no_grad():
        with_penalty = model(**batch).loss  # AdaLoraModel.forward adds weight x penalty
        without = model.base_model.model(**batch).loss
        ours = method.regularization_loss(model)
    assert float(ours) > 0.1
    assert float(with_penalty - without) == pytest.approx(float(ours), rel=1e-5)
    _, record = trained(family, "adalora")
    penalties = record["step_regularization"]
    assert penalties and len(penalties) == record["steps"] and all(p > 0 for p in penalties)
