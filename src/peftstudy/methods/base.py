"""The method interface, full fine-tuning and LoRA (the study's two reference methods)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

# JSON-schema fragments of the options several kinds accept. One definition each: an option key means the same
# thing in every method entry of a study file (and in an override that selects no method); the registry refuses
# a kind that declares a key another kind declares differently.
SHARED_OPTIONS = {
    "ranks": {
        "description": "swept size: LoRA-family rank, or bottleneck size for adapters; one run variant per value",
        "type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "uniqueItems": True,
    },
    "alpha": {"type": "number", "exclusiveMinimum": 0},
    "dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},  # 1 would drop every activation
    "target_modules": {
        "description": "'attention' (all linear layers of attention, the paper's choice), 'attention+mlp', or an "
                       "explicit list of module-name suffixes",
        "oneOf": [{"enum": ["attention", "attention+mlp"]},
                  {"type": "array", "items": {"type": "string"}, "minItems": 1}],
    },
}


def shared_options(*names: str, **own: Mapping) -> dict[str, Mapping]:
    """A kind's options: the named shared ones, then its own (name=JSON-schema fragment)."""
    return {**{name: SHARED_OPTIONS[name] for name in names}, **own}


# LoRA's options (DoRA and QLoRA take them too).
LORA_OPTIONS = shared_options(
    "ranks", "alpha", "dropout", "target_modules",
    decoder_rank={"type": "integer", "minimum": 1, "description": "encoder-decoder models: LoRA rank of the decoder "
                                                                  "(the swept rank applies to the encoder)"},
)

# Linear layers of attention per family (the paper's LoRA targets), and of the MLP.
ATTENTION_TARGETS = {
    # GPT-2's c_proj exists in attention and MLP: anchor on the attention block.
    "gpt2": r".*\.attn\.(c_attn|c_proj)$",
    "t5": ["q", "k", "v", "o"],
    "bert": ["query", "key", "value", "attention.output.dense"],
    # Self-attention of encoder and decoder, and the decoder's cross-attention.
    "bert2bert": r".*\.((query|key|value)|(cross)?attention\.output\.dense)$",
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
ATTENTION_AND_MLP_TARGETS = {
    "gpt2": r".*\.(attn\.(c_attn|c_proj)|mlp\.(c_fc|c_proj))$",
    "t5": ["q", "k", "v", "o", "wi", "wo"],
    "bert": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
    "bert2bert": r".*\.((query|key|value)|(cross)?attention\.output\.dense|intermediate\.dense|layer\.\d+\.output\.dense)$",
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
# GPT-2 stores weights transposed (Conv1D): LoRA must know, or its matrices get the wrong shape.
FAN_IN_FAN_OUT = {"gpt2": True}

PEFT_WEIGHTS_FILE = "adapter_model.safetensors"  # what peft's save_pretrained(safe_serialization=True) writes


def checked_safetensors(path: Path) -> Path:
    """``path`` when it is a whole safetensors file. Weights are only ever read from safetensors: without this
    check the loaders would fall back to a pickle beside it (peft's adapter_model.bin, transformers'
    pytorch_model.bin), and unpickling a file can run code; a truncated file's error would not name it."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (weights are read from safetensors only, never from a pickle)")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except SafetensorError as error:
        raise ValueError(f"{path}: not a complete safetensors file ({error}); rerun the step that wrote it") from None
    return path


class Method:
    """A fine-tuning method, and everything the rest of the package knows about it.

    The class attributes below are the method's description: the study's validation (study/config.py), the study
    schema (load_schema), FSDP (training/fsdp.py) and the report's labels (report/labels.py) read them from the
    registry (peftstudy.methods.METHODS) and keep no table of their own. A new method is a subclass that sets
    them, its entry in the registry, and tests.

    An option's default is declared once, in ``defaults``, and read with :meth:`option`; it is not part of the
    option's schema fragment, which must be the same for every kind that takes the option while defaults may
    differ (LoRA's dropout 0.05, VeRA's 0.0).
    """

    # Name of the method in a study file (a method entry's ``kind``) and in the registry.
    kind: str = ""
    # The keys a study's entry of this kind may give besides kind, description and training (and the keys an
    # override's options may set, ranks excepted), each with the JSON-schema fragment its value must match:
    # study.config.load_schema adds them to the study schema; any other key is an error.
    options: Mapping[str, Mapping] = {}
    # Default value of each option a study entry may leave out (option name -> value; every name is one of
    # ``options``), read through :meth:`option`. Options without an entry here have no fixed default: they are
    # required, absent means "not used" (decoder_rank), or the default is computed from the rank (AdaLoRA's
    # init_rank) where the option is read.
    defaults: Mapping[str, object] = {}
    # Options an entry of this kind must give (ranked kinds: the swept ranks).
    required_options: tuple[str, ...] = ()
    # The method's name in every report table (LaTeX); empty: the kind, escaped.
    label: str = ""
    # Symbol of the swept size in labels: "r" for a rank, "b" for adapters' bottleneck size ($b=64$).
    size_symbol: str = "r"
    # Whether it can train a model with a classifier or span head (the head itself always trains); a study cell
    # that would need it otherwise is refused at validation.
    trains_heads: bool = False
    # Whether it trains under FSDP (training.data_parallel: fsdp) with a single process's numbers and weights,
    # as tests/unit/training/test_distributed.py checks; if not, why (the error says so, never a DDP fallback).
    shardable: bool = False
    not_shardable_reason: str = "it has not been tested sharded"
    # Model families it cannot run on at all, with the reason: a study must declare those cells as exclusions.
    not_applicable: Mapping[str, str] = {}
    # Whether an interrupted run can resume from a checkpoint with the numbers of an uninterrupted one.
    resumable: bool = True

    def option(self, spec: Mapping, name: str):
        """The value of option ``name``: the spec's when it gives one, else the method's default (``defaults``)."""
        if name in spec:
            return spec[name]
        try:
            return self.defaults[name]
        except KeyError:
            declared = "an option" if name in self.options else "not an option"
            raise KeyError(f"method kind {self.kind!r}: option {name!r} ({declared} of this kind) is not given and "
                           "has no default") from None

    def expected_trainable(self, model, spec: Mapping, rank: int | None, *, family: str) -> tuple[int, str] | None:
        """(the trainable-parameter count this method's formula gives on ``model``, the formula in words), or None
        where the method has no closed formula here.

        ``model`` is the base of model family ``family``; only its module shapes are read, so one built on the
        meta device will do (peftstudy.methods.expected_trainable_for_run builds it for a run). The
        formula is computed by hand, not by peft, so that it can check the count a run recorded.
        """
        return None

    def record_extras(self, model) -> dict:
        """Fields the method adds to the training record of the trained model (QLoRA: its quantization); none."""
        return {}

    def load_base_for_training(self, base_dir: Path, spec: Mapping, device: str):
        """(model, tokenizer, manifest) to adapt; QLoRA overrides this to load quantized weights."""
        from peftstudy.modeling.loading import load_base

        return load_base(base_dir, device, head=spec.get("head"))

    def prepare(self, model, family: str, spec: Mapping, rank: int | None, total_steps: int | None = None):
        """Return the model to train, with exactly the method's parameters trainable.

        total_steps is the planned number of optimizer steps (AdaLoRA schedules its budget with it).
        """
        raise NotImplementedError

    def after_optimizer_step(self, model, step: int) -> None:
        """Hook for methods that change structure while training (AdaLoRA's rank reallocation)."""

    def regularization_loss(self, model):
        """A term the method adds to the training objective (AdaLoRA's orthogonality penalty), or None."""
        return None

    def save(self, model, tokenizer, out_dir: Path) -> None:
        raise NotImplementedError

    def load_for_inference(self, base_dir: Path, weights_dir: Path, device: str, spec: Mapping | None = None):
        raise NotImplementedError


class FullFineTuning(Method):
    kind = "full"
    options = {}
    label = "Full fine-tuning"
    trains_heads = True
    shardable = True

    def prepare(self, model, family, spec, rank, total_steps=None):
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model

    def expected_trainable(self, model, spec, rank, *, family):
        from peftstudy.methods.formulas import lm_head_only, unique_numel

        if not lm_head_only(spec):
            return None
        return unique_numel(model.parameters()), "every parameter of the base (a tied tensor once)"

    def save(self, model, tokenizer, out_dir):
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)

    def load_for_inference(self, base_dir, weights_dir, device, spec=None):
        from peftstudy.modeling.heads import model_class
        from peftstudy.modeling.loading import (
            base_location,
            load_tokenizer,
            set_generation_pad,
        )

        manifest, location, revision = base_location(base_dir)
        tokenizer = load_tokenizer(location, revision)
        for path in sorted(Path(weights_dir).glob("*.safetensors")) or [Path(weights_dir) / "model.safetensors"]:
            checked_safetensors(path)
        try:
            model = model_class(manifest["family"], (spec or {}).get("head")).from_pretrained(
                weights_dir, trust_remote_code=False, use_safetensors=True
            )
        except ValueError as error:  # e.g. a T5 run's weights where a GPT-2 run's belong
            raise ValueError(f"{weights_dir}: these weights do not load as a {manifest['family']} model (the base"
                             f" {base_dir}): {str(error).splitlines()[0][:300]}") from None
        set_generation_pad(model, tokenizer)
        return model.to(device), tokenizer, manifest


def task_type(family: str, spec: Mapping | None = None):
    """peft's task type: of the model's head (a classifier or span head), else of the family's generation head."""
    from peft import TaskType

    head = (spec or {}).get("head", {}).get("kind", "lm")
    if head == "classifier":
        return TaskType.SEQ_CLS
    if head == "span":
        return TaskType.QUESTION_ANS
    from peftstudy.modeling.families import ENCODER_DECODER_FAMILIES

    return TaskType.SEQ_2_SEQ_LM if family in ENCODER_DECODER_FAMILIES else TaskType.CAUSAL_LM


def head_modules(spec: Mapping | None) -> list[str] | None:
    """The new head's module (its weights start random): trained and saved by every method (modules_to_save)."""
    head = (spec or {}).get("head") or {}
    return [head["module"]] if head.get("module") else None


def lora_targets(family: str, target_modules) -> list[str] | str:
    if isinstance(target_modules, list):
        return target_modules
    table = ATTENTION_AND_MLP_TARGETS if target_modules == "attention+mlp" else ATTENTION_TARGETS
    if family not in table:
        raise ValueError(f"no default LoRA targets for model family {family!r}: list target_modules explicitly")
    return table[family]


class PeftMethod(Method):
    """Methods implemented by peft: saved as an adapter (safetensors), loaded on top of the base."""

    def peft_config(self, family: str, spec: Mapping, rank: int | None):
        raise NotImplementedError

    def prepare(self, model, family, spec, rank, total_steps=None):
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config(family, spec, rank))

    def save(self, model, tokenizer, out_dir):
        model.save_pretrained(out_dir, safe_serialization=True)

    def load_for_inference(self, base_dir, weights_dir, device, spec=None):
        from peft import PeftModel

        from peftstudy.modeling.loading import load_base

        checked_safetensors(Path(weights_dir) / PEFT_WEIGHTS_FILE)
        base, tokenizer, manifest = load_base(base_dir, head=(spec or {}).get("head"))
        model = PeftModel.from_pretrained(base, weights_dir, is_trainable=False)
        self.patch_peft_model(model, manifest["family"])
        return model.to(device), tokenizer, manifest

    def patch_peft_model(self, peft_model, family: str) -> None:
        """Corrections to peft's model that training and inference both need (prefix/prompt tuning)."""


# Module names of the decoder stack of encoder-decoder models (a peft rank_pattern regex).
DECODER_PATTERN = {"t5": r"decoder\..*", "bert2bert": r"decoder\..*"}


def decoder_rank_pattern(family: str, spec: Mapping) -> dict:
    """peft rank_pattern giving the decoder of an encoder-decoder model its own rank (spec key decoder_rank).

    Alpha stays the same number everywhere, so each stack gets the scaling alpha / r that
    a plain LoRA run of its rank would have.
    """
    decoder_rank = spec.get("decoder_rank")
    if decoder_rank is None:
        return {}
    if family not in DECODER_PATTERN:
        raise ValueError(
            f"decoder_rank applies to encoder-decoder models (t5) only; model family {family!r} has a single "
            "stack, whose rank is the swept one (ranks)"
        )
    if not isinstance(decoder_rank, int) or decoder_rank < 1:
        raise ValueError(f"decoder_rank must be a positive integer, got {decoder_rank!r}")
    return {DECODER_PATTERN[family]: decoder_rank}


class LoRA(PeftMethod):
    """LoRA (Hu et al., 2022). Defaults: alpha 16, dropout 0.05, attention targets.

    For T5, ``decoder_rank`` gives the decoder (self- and cross-attention) its own rank;
    the swept rank then applies to the encoder.
    """

    kind = "lora"
    options = LORA_OPTIONS
    # No decoder_rank default: without it the decoder has the swept rank.
    defaults = {"alpha": 16, "dropout": 0.05, "target_modules": "attention"}
    required_options = ("ranks",)
    label = "LoRA"
    trains_heads = True
    shardable = True
    use_dora = False

    def peft_config(self, family, spec, rank):
        from peft import LoraConfig

        if rank is None or rank < 1:
            raise ValueError(f"{type(self).__name__} needs a positive rank, got {rank!r}")
        return LoraConfig(
            task_type=task_type(family, spec),
            modules_to_save=head_modules(spec),
            r=rank,
            lora_alpha=self.option(spec, "alpha"),
            lora_dropout=self.option(spec, "dropout"),
            target_modules=lora_targets(family, self.option(spec, "target_modules")),
            fan_in_fan_out=FAN_IN_FAN_OUT.get(family, False),
            bias="none",
            rank_pattern=decoder_rank_pattern(family, spec),
            use_dora=self.use_dora,
        )

    def expected_trainable(self, model, spec, rank, *, family):
        """r x sum over the targeted matrices of (d_in + d_out): A (r x d_in) and B (d_out x r), nothing else (bias
        'none'; an lm head adds no modules_to_save); the decoder's matrices take decoder_rank where given."""
        from peftstudy.methods.formulas import lm_head_only, rank_of, targeted_linears

        if not lm_head_only(spec):
            return None
        if rank is None or rank < 1:
            raise ValueError(f"{type(self).__name__} needs a positive rank, got {rank!r}")
        pattern = decoder_rank_pattern(family, spec)
        targets = targeted_linears(model, lora_targets(family, self.option(spec, "target_modules")))
        count = sum(rank_of(name, rank, pattern) * (d_in + d_out) for name, d_in, d_out in targets)
        ranks = f"r={rank}" + (f" (decoder {spec['decoder_rank']})" if pattern else "")
        return count, f"{ranks} x sum over {len(targets)} target matrices of (d_in + d_out)"
