"""LoRA's relatives and the prompt-based methods, all implemented by peft.

Defaults below are used when a method entry of the study config leaves a key out;
each class says where its defaults come from.
"""

from __future__ import annotations

import math
import warnings
import weakref

from peftstudy.methods.base import (
    FAN_IN_FAN_OUT,
    LoRA,
    PeftMethod,
    head_modules,
    lora_targets,
    shared_options,
    task_type,
)

# Virtual tokens of prefix and prompt tuning.
NUM_VIRTUAL_TOKENS = {"type": "integer", "minimum": 1}


def positive_rank(kind: str, rank: int | None) -> int:
    if rank is None or rank < 1:
        raise ValueError(f"{kind} needs a positive rank, got {rank!r}")
    return rank


class DoRA(LoRA):
    """LoRA with the weight decomposed into magnitude and direction (Liu et al., 2024).

    Same options and defaults as LoRA (alpha 16, dropout 0.05, attention targets,
    decoder_rank for T5); adds one trainable magnitude per output feature of every
    adapted matrix.
    """

    kind = "dora"
    label = "DoRA"  # LoRA's options, heads and FSDP support
    use_dora = True

    def expected_trainable(self, model, spec, rank, *, family):
        """LoRA's count plus one magnitude per output feature of every targeted matrix."""
        from peftstudy.methods.formulas import targeted_linears

        lora = super().expected_trainable(model, spec, rank, family=family)
        if lora is None:
            return None
        targets = targeted_linears(model, lora_targets(family, self.option(spec, "target_modules")))
        return lora[0] + sum(d_out for _, _, d_out in targets), f"{lora[1]} + sum of their d_out (magnitudes)"


class AdaLoRA(PeftMethod):
    """LoRA in SVD form whose rank budget is reallocated while training (Zhang et al., 2023).

    The swept rank is the *target* average rank. Defaults: ``init_rank`` =
    ceil(1.5 x rank) (the paper starts from 1.5x the final budget; 8 -> 12 is also
    peft's default pair), alpha 16 and dropout 0.05 (as the study's LoRA), attention
    targets. The schedule follows ``total_steps``: tinit = 10 % of the steps
    (warm-up without pruning), tfinal = 20 % (at least 1 step when there are 2 or
    more, so the final allocation is fixed and stored), budget updates every
    deltaT = max(1, total_steps // 100) steps, beta1 = beta2 = 0.85 (paper).

    The orthogonal regulariser (weight ``orth_reg_weight``, peft's default 0.5) is
    peft's, but peft adds it to ``outputs.loss`` only, and the study computes every
    loss from the logits (``batching.summed_token_loss``); so the training loop adds
    :meth:`regularization_loss` itself, the same quantity (tested against peft's).
    """

    kind = "adalora"
    options = shared_options(
        "ranks", "alpha", "dropout", "target_modules",
        init_rank={"type": "integer", "minimum": 1, "description": "AdaLoRA: initial rank before budget reallocation"},
        orth_reg_weight={"type": "number", "minimum": 0,
                         "description": "AdaLoRA: weight of the orthogonality penalty on P and Q (default 0.5)"},
    )
    # init_rank has no fixed default: ceil(1.5 x rank), computed in peft_config.
    defaults = {"alpha": 16, "dropout": 0.05, "target_modules": "attention", "orth_reg_weight": 0.5}
    required_options = ("ranks",)
    label = "AdaLoRA"
    trains_heads = True
    shardable = False
    not_shardable_reason = ("AdaLoRA's orthogonality penalty and rank reallocation compute with whole parameters "
                            "outside the forward pass, where FSDP holds only shards")
    # peft's rank allocator keeps its importance scores outside the state dict: a resumed run could not equal
    # an uninterrupted one, so an interrupted AdaLoRA run restarts from step 0 instead.
    resumable = False

    @staticmethod
    def schedule(total_steps: int) -> dict:
        tfinal = max(1, total_steps // 5) if total_steps >= 2 else 0
        return {"tinit": total_steps // 10, "tfinal": tfinal, "deltaT": max(1, total_steps // 100)}

    def peft_config(self, family, spec, rank, total_steps=None):
        from peft import AdaLoraConfig

        rank = positive_rank("AdaLoRA", rank)
        if total_steps is None or total_steps < 1:
            raise ValueError(
                "AdaLoRA schedules its rank budget over the planned number of optimizer steps: "
                f"prepare() needs total_steps (got {total_steps!r})"
            )
        init_rank = self.initial_rank(spec, rank)
        return AdaLoraConfig(
            task_type=task_type(family, spec),
            modules_to_save=head_modules(spec),
            target_r=rank,
            init_r=init_rank,
            lora_alpha=self.option(spec, "alpha"),
            lora_dropout=self.option(spec, "dropout"),
            target_modules=lora_targets(family, self.option(spec, "target_modules")),
            fan_in_fan_out=FAN_IN_FAN_OUT.get(family, False),
            total_step=total_steps,
            orth_reg_weight=self.option(spec, "orth_reg_weight"),
            beta1=0.85,
            beta2=0.85,
            **self.schedule(total_steps),
        )

    @staticmethod
    def initial_rank(spec, rank: int) -> int:
        """The rank every targeted matrix starts with, before the budget is reallocated."""
        # Default computed from the swept rank (not in ``defaults``): 1.5 x the target budget, rounded up.
        init_rank = spec.get("init_rank", math.ceil(1.5 * rank))
        if init_rank < rank:
            raise ValueError(f"AdaLoRA: init_rank ({init_rank}) must be at least the target rank ({rank})")
        return init_rank

    def expected_trainable(self, model, spec, rank, *, family):
        """The count at the start of training (what the run records): init_rank x (d_in + d_out + 1) per targeted
        matrix, P (r x d_in), Q (d_out x r) and the singular values E (r); ranknum is frozen."""
        from peftstudy.methods.formulas import lm_head_only, targeted_linears

        if not lm_head_only(spec):
            return None
        init_rank = self.initial_rank(spec, positive_rank("AdaLoRA", rank))
        targets = targeted_linears(model, lora_targets(family, self.option(spec, "target_modules")))
        return (init_rank * sum(d_in + d_out + 1 for _, d_in, d_out in targets),
                f"init_rank={init_rank} x sum over {len(targets)} target matrices of (d_in + d_out + 1)")

    def prepare(self, model, family, spec, rank, total_steps=None):
        from peft import get_peft_model

        model = get_peft_model(model, self.peft_config(family, spec, rank, total_steps))
        # ranknum holds the current rank (a constant divisor); peft leaves it trainable when the
        # base lives on the meta device. It must never be trained or counted.
        for name, parameter in model.named_parameters():
            if ".ranknum." in name:
                parameter.requires_grad_(False)
        return model

    def regularization_loss(self, model):
        """orth_reg_weight x mean over lora_A/lora_B of ||P P^T - I||_F (A) or ||P^T P - I||_F (B), as peft."""
        import torch

        adapter = model.base_model.trainable_adapter_name
        weight = model.base_model.peft_config[adapter].orth_reg_weight
        penalties = []
        for name, parameter in model.base_model.model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and adapter in name:
                covariance = parameter @ parameter.T if "lora_A" in name else parameter.T @ parameter
                identity = torch.eye(*covariance.shape, dtype=covariance.dtype, device=covariance.device)
                penalties.append(torch.linalg.matrix_norm(covariance - identity, ord="fro"))
        if not penalties or weight == 0:
            return None
        return weight * torch.stack(penalties).mean()

    def after_optimizer_step(self, model, step):
        # Needs the gradients of this step: the training loop calls it before zero_grad().
        model.base_model.update_and_allocate(step)

    def save(self, model, tokenizer, out_dir):
        with warnings.catch_warnings():
            # Ranks pruned to 0 are stored as (0, d) tensors; peft 0.21 mistakes them for unsharded ZeRO-3 ones.
            warnings.filterwarnings("ignore", message=".*LoRA tensor\\(s\\) have invalid shape")
            super().save(model, tokenizer, out_dir)

    def load_for_inference(self, base_dir, weights_dir, device, spec=None):
        with warnings.catch_warnings():
            # The stored allocation (rank_pattern keyed by lora_E) is applied by AdaLoRA's own loader;
            # peft 0.21's generic check still reports its keys as unmatched.
            warnings.filterwarnings("ignore", message="The following rank_pattern keys did not match")
            model, tokenizer, manifest = super().load_for_inference(base_dir, weights_dir, device, spec)
        # peft 0.21 sets trainable_adapter_name only on trainable AdaLoRA models, yet its forward()
        # reads it whenever the output has a loss: without this, model(..., labels=...) (T5) fails with
        # AttributeError: 'T5ForConditionalGeneration' object has no attribute 'trainable_adapter_name'.
        if "trainable_adapter_name" not in vars(model.base_model):
            model.base_model.trainable_adapter_name = model.active_adapter
        return model, tokenizer, manifest


class VeRA(PeftMethod):
    """Vector-based random matrix adaptation (Kopiczko et al., 2024).

    One pair of frozen random matrices (A: r x d_in, B: d_out x r, seeded with
    peft's projection_prng_key 0) is shared by all adapted layers; each layer
    trains lambda_d (r) and lambda_b (d_out). Layers of different shapes (GPT-2's
    fused c_attn d -> 3d and c_proj d -> d) use slices of matrices sized for the
    largest shape, so the default attention targets work for every family.
    Defaults: dropout 0.0, d_initial 0.1 (peft's defaults), attention targets; the
    shared matrices are stored with the adapter (save_projection) so a reload does
    not depend on regenerating them.
    """

    kind = "vera"
    options = shared_options("ranks", "dropout", "target_modules")
    defaults = {"dropout": 0.0, "target_modules": "attention"}
    required_options = ("ranks",)
    label = "VeRA"
    trains_heads = True
    shardable = True

    def peft_config(self, family, spec, rank):
        from peft import VeraConfig

        return VeraConfig(
            task_type=task_type(family, spec),
            modules_to_save=head_modules(spec),
            r=positive_rank("VeRA", rank),
            vera_dropout=self.option(spec, "dropout"),
            target_modules=lora_targets(family, self.option(spec, "target_modules")),
            fan_in_fan_out=FAN_IN_FAN_OUT.get(family, False),
            save_projection=True,
        )

    def expected_trainable(self, model, spec, rank, *, family):
        """Per targeted matrix lambda_b (d_out) and lambda_d (r); the shared random A and B are frozen."""
        from peftstudy.methods.formulas import lm_head_only, targeted_linears

        if not lm_head_only(spec):
            return None
        rank = positive_rank("VeRA", rank)
        targets = targeted_linears(model, lora_targets(family, self.option(spec, "target_modules")))
        return (sum(d_out + rank for _, _, d_out in targets),
                f"sum over {len(targets)} target matrices of (d_out + r={rank})")


# (IA)^3 rescales attention keys and values and the input of the feed-forward output layer.
IA3_TARGETS = {
    # GPT-2's keys and values come out of the fused c_attn (q, k and v): its whole output is rescaled.
    "gpt2": (r".*\.(attn\.c_attn|mlp\.c_proj)$", r".*\.mlp\.c_proj$"),
    "t5": (["k", "v", "wo"], ["wo"]),
    "bert": (r".*\.(attention\.self\.(key|value)|layer\.\d+\.output\.dense)$", r".*\.layer\.\d+\.output\.dense$"),
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
}
IA3_ATTENTION_TARGETS = {
    "gpt2": r".*\.attn\.c_attn$",
    "t5": ["k", "v"],
    "bert": r".*\.attention\.self\.(key|value)$",
    "llama": ["k_proj", "v_proj"],
}
IA3_FEEDFORWARD_SUFFIXES = {"gpt2": {"mlp.c_proj", "c_proj"}, "t5": {"wo"}, "bert": {"output.dense"}, "llama": {"down_proj"}}


def ia3_targets(family: str, target_modules):
    """(target_modules, feedforward_modules) for IA3.

    Absent or 'attention+mlp': keys, values and feed-forward output (the paper's
    choice); 'attention': keys and values only; a list: those modules, with the
    family's feed-forward output layer among them treated as feed-forward (scaled on
    its input, not its output).
    """
    if family not in IA3_TARGETS:
        raise ValueError(f"no default IA3 targets for model family {family!r}: list target_modules explicitly")
    if target_modules is None or target_modules == "attention+mlp":
        return IA3_TARGETS[family]
    if target_modules == "attention":
        return IA3_ATTENTION_TARGETS[family], []
    if isinstance(target_modules, list):
        return list(target_modules), [m for m in target_modules if m in IA3_FEEDFORWARD_SUFFIXES[family]]
    raise ValueError(f"IA3: target_modules must be 'attention', 'attention+mlp' or a list, got {target_modules!r}")


class IA3(PeftMethod):
    """(IA)^3, learned rescaling vectors (Liu et al., 2022).

    Default targets per family: GPT-2 c_attn (fused q/k/v output, 3d) and
    mlp.c_proj (input, d_ff); T5 k, v (output) and wo (input); BERT key, value and
    the feed-forward output dense; LLaMA k_proj, v_proj and down_proj. Vectors
    start at 1 (identity), as in peft and the paper.
    """

    kind = "ia3"
    options = shared_options("target_modules")
    # Keys, values and the feed-forward output (the paper's choice): see ia3_targets.
    defaults = {"target_modules": "attention+mlp"}
    label = "(IA)$^3$"
    trains_heads = True
    shardable = True

    def peft_config(self, family, spec, rank):
        from peft import IA3Config

        targets, feedforward = ia3_targets(family, self.option(spec, "target_modules"))
        return IA3Config(
            task_type=task_type(family, spec),
            modules_to_save=head_modules(spec),
            target_modules=targets,
            feedforward_modules=feedforward,
            fan_in_fan_out=FAN_IN_FAN_OUT.get(family, False),
        )

    def expected_trainable(self, model, spec, rank, *, family):
        """One scale per output feature of every targeted matrix, per input feature of a feed-forward one."""
        import re

        from peftstudy.methods.formulas import lm_head_only, targeted_linears

        if not lm_head_only(spec):
            return None
        targets, feedforward = ia3_targets(family, self.option(spec, "target_modules"))

        def is_feedforward(name):  # peft's IA3 rule: a regex on the whole name, or a plain suffix of it
            if isinstance(feedforward, str):
                return re.fullmatch(feedforward, name) is not None
            return any(name.endswith(suffix) for suffix in feedforward)

        selected = targeted_linears(model, targets)
        count = sum(d_in if is_feedforward(name) else d_out for name, d_in, d_out in selected)
        scaled_inputs = sum(map(is_feedforward, (name for name, _, _ in selected)))
        return count, (f"sum over {len(selected)} target matrices of d_out, d_in for the {scaled_inputs} "
                       "feed-forward ones")


class PrefixTuning(PeftMethod):
    """Prefix tuning (Li & Liang, 2021): trained key/value prefixes in every layer.

    Defaults: num_virtual_tokens 20, prefix_projection False (peft's default: the
    prefixes are the parameters; True adds the paper's MLP reparametrisation, hidden
    size d_model, used only while training - the stored adapter holds the prefixes).
    Decoder-only models get the prefix in every self-attention. For T5, peft 0.21
    builds one prefix (keys and values) per decoder layer for the decoder's
    self-attention; it also hands a copy to the cross-attention cache but then
    resets that cache, so cross-attention and the encoder get no prefix. Layer
    count and key width are taken from the decoder (num_decoder_layers, num_heads x
    d_kv). Generation needs one correction (see PrefixTuning.patch_peft_model).
    """

    kind = "prefix"
    options = shared_options(num_virtual_tokens=NUM_VIRTUAL_TOKENS, prefix_projection={"type": "boolean"})
    defaults = {"num_virtual_tokens": 20, "prefix_projection": False}
    label = "Prefix tuning"
    trains_heads = False
    shardable = True

    def peft_config(self, family, spec, rank):
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(
            task_type=task_type(family),
            num_virtual_tokens=self.option(spec, "num_virtual_tokens"),
            prefix_projection=self.option(spec, "prefix_projection"),
        )

    def prepare(self, model, family, spec, rank, total_steps=None):
        from peft import get_peft_model

        config = self.peft_config(family, spec, rank)
        if family == "t5":
            # peft would size the prefix from d_model and the encoder's layer count; the prefix lives
            # in the decoder's attention, whose keys are num_heads x d_kv wide.
            base = model.config
            config.num_layers = base.num_decoder_layers
            config.num_attention_heads = base.num_heads
            config.token_dim = base.num_heads * base.d_kv
        peft_model = get_peft_model(model, config)
        self.patch_peft_model(peft_model, family)
        return peft_model

    def expected_trainable(self, model, spec, rank, *, family):
        """num_virtual_tokens x layers x 2 (key, value) x key width D; with prefix_projection, the embedding
        (tokens x D) and the MLP D -> D -> layers x 2 x D (weights and biases) instead."""
        from peftstudy.methods.formulas import lm_head_only

        if not lm_head_only(spec):
            return None
        config = model.config
        if family == "gpt2":
            layers, width = config.n_layer, config.n_embd
        elif family == "t5":  # the decoder's self-attention (see the class docstring)
            layers, width = config.num_decoder_layers, config.num_heads * config.d_kv
        elif family == "llama":  # grouped-query attention: keys are num_key_value_heads x head_dim wide
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            layers, width = config.num_hidden_layers, head_dim * config.num_key_value_heads
        else:
            return None
        tokens, out = self.option(spec, "num_virtual_tokens"), layers * 2 * width
        words = f"{tokens} tokens x {layers} layers x 2 x D={width}"
        if not self.option(spec, "prefix_projection"):
            return tokens * out, words
        return (tokens * width + (width * width + width) + (width * out + out),
                f"{tokens} tokens x D={width} + MLP D -> D -> {layers} layers x 2 x D")

    def patch_peft_model(self, peft_model, family):
        """Make T5's generate() number decoder positions after the prefix, as its forward() does.

        In forward() T5 derives cache_position from the cache length, so the first decoder
        token sits at position num_virtual_tokens. peft 0.21's seq2seq generate() passes
        generate's own cache_position (0, 1, ...) unchanged (its causal-LM class shifts it),
        which puts the prefix keys in the query's future: T5's causal mask then hides the
        decoder's own tokens and its relative position buckets collapse. Shift it here.
        """
        from peftstudy.modeling.families import is_decoder_only

        if is_decoder_only(family):
            return
        virtual = peft_model.peft_config["default"].num_virtual_tokens
        prepare_inputs = peft_model.prepare_inputs_for_generation

        def prepare_inputs_after_prefix(*args, **kwargs):
            model_kwargs = prepare_inputs(*args, **kwargs)
            if model_kwargs.get("cache_position") is not None:
                model_kwargs["cache_position"] = model_kwargs["cache_position"] + virtual
            return model_kwargs

        # peft's generate() installs this (instance) attribute on the base model for the call.
        peft_model.prepare_inputs_for_generation = prepare_inputs_after_prefix



class PromptTuning(PeftMethod):
    """Prompt tuning (Lester et al., 2021): trained input embeddings prepended to the prompt.

    Defaults: num_virtual_tokens 20, prompt_init 'random' (peft's N(0, 1) init);
    'text' initialises the virtual tokens from the embeddings of prompt_init_text's
    tokens (repeated or cut to the prompt length, as peft does), default text
    "Describe the input in one sentence:". The text is tokenized with the base's own
    tokenizer, handed over by load_base_for_training, so no hub access is needed.

    For T5 the prompt goes in front of the encoder input only (one set of
    num_virtual_tokens, as in the paper; peft's default would also allocate an
    unused second set for the decoder). Decoder-only models need two corrections to
    peft 0.21 (see PromptTuning.patch_peft_model): logits of the virtual tokens are dropped, and
    position ids are restored in generate() so left-padded batches generate what
    single prompts do.
    """

    kind = "prompt"
    options = shared_options(num_virtual_tokens=NUM_VIRTUAL_TOKENS, prompt_init={"enum": ["random", "text"]},
                             prompt_init_text={"type": "string", "minLength": 1})
    label = "Prompt tuning"
    trains_heads = False
    shardable = True
    DEFAULT_INIT_TEXT = "Describe the input in one sentence:"
    defaults = {"num_virtual_tokens": 20, "prompt_init": "random", "prompt_init_text": DEFAULT_INIT_TEXT}

    def __init__(self):
        self._tokenizers = weakref.WeakKeyDictionary()

    def load_base_for_training(self, base_dir, spec, device):
        model, tokenizer, manifest = super().load_base_for_training(base_dir, spec, device)
        self._tokenizers[model] = tokenizer
        return model, tokenizer, manifest

    def peft_config(self, family, spec, rank):
        from peft import PromptTuningConfig, PromptTuningInit

        init = self.option(spec, "prompt_init")
        if init not in ("random", "text"):
            raise ValueError(f"prompt tuning: prompt_init must be 'random' or 'text', got {init!r}")
        return PromptTuningConfig(
            task_type=task_type(family),
            num_virtual_tokens=self.option(spec, "num_virtual_tokens"),
            num_transformer_submodules=1,
            # Text initialisation is done in prepare() with the local tokenizer.
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )

    def expected_trainable(self, model, spec, rank, *, family):
        """num_virtual_tokens x the input embeddings' width (one set of tokens, T5 included)."""
        from peftstudy.methods.formulas import lm_head_only

        if not lm_head_only(spec):
            return None
        tokens, width = self.option(spec, "num_virtual_tokens"), model.get_input_embeddings().weight.shape[1]
        return tokens * int(width), f"{tokens} virtual tokens x embedding width {width}"

    def _tokenizer_for(self, model):
        tokenizer = self._tokenizers.get(model)
        if tokenizer is not None:
            return tokenizer
        from pathlib import Path

        from transformers import AutoTokenizer

        location = getattr(model, "name_or_path", "")
        if location and Path(location).is_dir():
            return AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        raise ValueError(
            "prompt tuning with prompt_init 'text' needs the base's tokenizer: load the base with "
            "load_base_for_training() or from a local directory"
        )

    def prepare(self, model, family, spec, rank, total_steps=None):
        import torch
        from peft import PromptTuningInit, get_peft_model

        tokenizer = self._tokenizer_for(model) if self.option(spec, "prompt_init") == "text" else None
        peft_model = get_peft_model(model, self.peft_config(family, spec, rank))
        if tokenizer is not None:
            text = self.option(spec, "prompt_init_text")
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"prompt tuning: prompt_init_text {text!r} has no tokens")
            config = peft_model.peft_config["default"]
            count = config.num_virtual_tokens * config.num_transformer_submodules
            ids = (ids * math.ceil(count / len(ids)))[:count]
            embedding = peft_model.prompt_encoder["default"].embedding
            with torch.no_grad():
                vectors = peft_model.word_embeddings(torch.tensor(ids, device=embedding.weight.device))
                embedding.weight.copy_(vectors.float())
            # Recorded in adapter_config.json. peft reads the tokenizer location only when it
            # initialises a trainable prompt itself, never when loading one for inference.
            config.prompt_tuning_init = PromptTuningInit.TEXT
            config.prompt_tuning_init_text = text
            config.tokenizer_name_or_path = getattr(tokenizer, "name_or_path", None) or "local tokenizer"
        self.patch_peft_model(peft_model, family)
        return peft_model

    def patch_peft_model(self, peft_model, family):
        """Two fixes for prompt tuning of decoder-only models under peft 0.21.

        1. forward() returns logits for the virtual tokens too: drop them, so logits line
           up with input_ids (the loss in batching.summed_token_loss relies on it).
        2. generate() discards position_ids for prompt tuning ("Position ids are not
           supported ... Ignoring"), so the model numbers positions 0, 1, ... across the
           left padding and a padded prompt gets other positions than the same prompt
           alone. Recompute them from the attention mask (virtual tokens included), as
           transformers does for plain models.
        """
        from peftstudy.modeling.families import is_decoder_only

        if not is_decoder_only(family):
            return
        virtual = peft_model.peft_config["default"].num_virtual_tokens

        def hook(module, args, kwargs, output):
            inputs = kwargs.get("input_ids", args[0] if args else None)
            if inputs is None:
                inputs = kwargs.get("inputs_embeds")
            logits = getattr(output, "logits", None)
            # Only when the virtual tokens are there (not under peft's disable_adapter()).
            if logits is not None and inputs is not None and logits.shape[1] == inputs.shape[1] + virtual:
                output.logits = logits[:, virtual:]
            return output

        peft_model.register_forward_hook(hook, with_kwargs=True)

        prepare_inputs = peft_model.prepare_inputs_for_generation

        def prepare_inputs_with_positions(*args, **kwargs):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Position ids are not supported")
                model_kwargs = prepare_inputs(*args, **kwargs)
            mask = model_kwargs.get("attention_mask")
            inputs = model_kwargs.get("inputs_embeds")
            if inputs is None:
                inputs = model_kwargs.get("input_ids")
            if getattr(mask, "dim", lambda: 0)() == 2 and inputs is not None:
                positions = mask.long().cumsum(-1) - 1
                positions.masked_fill_(mask == 0, 1)
                model_kwargs["position_ids"] = positions[:, -inputs.shape[1] :]
            return model_kwargs

        # peft's generate() installs this (instance) attribute on the base model for the call.
        peft_model.prepare_inputs_for_generation = prepare_inputs_with_positions



# peft tuners that `kind: peft` does not run: prompt learning needs the corrections of PrefixTuning/PromptTuning,
# and these need more than one adapter, task ids or a model-specific wrapper.
PEFT_TYPES_REFUSED = {"XLORA": "it mixes several trained LoRA adapters", "POLY": "it routes by task ids",
                      "ADAPTION_PROMPT": "it wraps LLaMA attention modules only",
                      "TRAINABLE_TOKENS": "it trains token embeddings, not layers"}
# Tuners whose layers refuse GPT-2's Conv1D (fused, transposed weights), as peft 0.21 raises in get_peft_model:
# a table rather than building a model at validation, which must not load torch.
CONV1D_REFUSED = {"LOHA", "LOKR", "OFT", "BOFT", "HRA", "C3A", "SHIRA", "MISS", "ROAD"}
# Config keys the study sets itself (the swept rank is ``r`` where the tuner has one).
PEFT_KEYS_SET_BY_STUDY = ("peft_type", "task_type", "modules_to_save", "target_modules", "fan_in_fan_out")


def peft_tuner_config_class(peft_type: str):
    """peft's config dataclass of a tuner (its PeftConfig subclass), or a ValueError naming the known ones."""
    from peft import PromptLearningConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    known = {str(getattr(t, "value", t)): config for t, config in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    if peft_type not in known:
        raise ValueError(f"unknown peft_type {peft_type!r} (peft's tuners: {', '.join(sorted(known))})")
    if peft_type in PEFT_TYPES_REFUSED:
        raise ValueError(f"peft_type {peft_type!r} is not run as kind peft: {PEFT_TYPES_REFUSED[peft_type]}")
    config = known[peft_type]
    if issubclass(config, PromptLearningConfig):
        raise ValueError(f"peft_type {peft_type!r} is prompt learning: use kind prefix or prompt")
    return config


class PeftTuner(PeftMethod):
    """Any of peft's layer tuners by name (``peft_type``: LOHA, LOKR, OFT, BOFT, HRA, FOURIERFT, LN_TUNING, ...).

    ``peft_options`` are keyword arguments of that tuner's config dataclass, checked against its fields; peft's
    defaults fill the rest. The study sets task_type, modules_to_save (heads), target_modules (the option of that
    name, default the family's attention targets) and fan_in_fan_out; the swept rank, when the entry has ranks, is
    the config's ``r``. Saved and reloaded as a peft adapter like LoRA.
    """

    kind = "peft"
    options = shared_options(
        "ranks", "target_modules",
        peft_type={"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$",
                   "description": "peft: the tuner's PeftType name (LOHA, LOKR, OFT, BOFT, HRA, FOURIERFT, ...)"},
        peft_options={"type": "object", "description": "peft: keyword arguments of the tuner's config dataclass"},
    )
    defaults = {"target_modules": "attention", "peft_options": {}}
    required_options = ("peft_type",)
    label = "PEFT tuner"
    trains_heads = False  # classifier/span heads untested across tuners: text-to-text cells only
    shardable = False
    not_shardable_reason = "a tuner chosen by name has not been tested sharded"

    def spec_problems(self, spec) -> list[tuple[str, str]]:
        """(key, problem) of a study entry: its tuner and options, checked against peft (imported here)."""
        import dataclasses

        try:
            config = peft_tuner_config_class(spec["peft_type"])
        except ValueError as error:
            return [("peft_type", str(error))]
        fields = {field.name for field in dataclasses.fields(config)}
        problems = []
        for key in self.option(spec, "peft_options"):
            if key in PEFT_KEYS_SET_BY_STUDY or (key == "r" and "ranks" in spec):
                problems.append((f"peft_options.{key}", "set by the study, not by the tuner's options"))
            elif key not in fields:
                problems.append((f"peft_options.{key}", f"not a field of peft's {config.__name__}"))
        if "ranks" in spec and "r" not in fields:
            problems.append(("ranks", f"peft's {config.__name__} has no rank r to sweep"))
        return problems

    def family_problem(self, spec, family: str) -> str | None:
        """Why this entry's tuner cannot run on a model family (None: it can); from a known table."""
        if family == "gpt2" and spec.get("peft_type") in CONV1D_REFUSED:
            return f"peft's {spec['peft_type']} layers refuse GPT-2's Conv1D (known table, peft 0.21)"
        return None

    def peft_config(self, family, spec, rank):
        import dataclasses

        problems = self.spec_problems(spec)
        if self.family_problem(spec, family):
            problems.append(("peft_type", self.family_problem(spec, family)))
        if problems:
            raise ValueError("; ".join(f"{key}: {problem}" for key, problem in problems))
        config = peft_tuner_config_class(spec["peft_type"])
        fields = {field.name for field in dataclasses.fields(config)}
        kwargs = dict(self.option(spec, "peft_options"))
        if rank is not None:
            kwargs["r"] = positive_rank(spec["peft_type"], rank)
        if "fan_in_fan_out" in fields:
            kwargs["fan_in_fan_out"] = FAN_IN_FAN_OUT.get(family, False)
        return config(task_type=task_type(family, spec), modules_to_save=head_modules(spec),
                      target_modules=lora_targets(family, self.option(spec, "target_modules")), **kwargs)


METHODS = [DoRA(), AdaLoRA(), VeRA(), IA3(), PrefixTuning(), PromptTuning(), PeftTuner()]
