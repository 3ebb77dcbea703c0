"""QLoRA: LoRA on a base whose linear weights are quantized by bitsandbytes (Dettmers et al. 2023).

What is quantized
    The base is loaded through transformers' ``BitsAndBytesConfig``: 4-bit (default; NF4 with double
    quantization and bf16 compute, the QLoRA paper's recipe) or LLM.int8() 8-bit. transformers replaces
    the linear layers by ``bnb.nn.Linear4bit`` / ``bnb.nn.Linear8bitLt`` and keeps some modules in full
    precision. With transformers 4.57.6 + bitsandbytes 0.50.2 (verified in tests/unit/methods/test_methods_qlora.py):

    * GPT-2: every ``Conv1D`` is quantized (transformers converts it, transposing the weight into the
      ``Linear`` layout): ``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc``, ``mlp.c_proj`` - 4 per block.
      ``lm_head`` (tied to the token embedding) stays unquantized, as do embeddings and layer norms.
    * T5: ``q, k, v, o`` of every attention (encoder self; decoder self and cross) and ``wi`` are quantized -
      5 per encoder block, 9 per decoder block. ``wo`` is not: T5 declares it in ``_keep_in_fp32_modules``
      (its activations overflow in low precision), and ``lm_head`` is kept too.

    Because GPT-2's Conv1D weights end up in the ``Linear`` layout, LoRA runs with ``fan_in_fan_out=False``
    here (unlike plain LoRA on GPT-2). Modules that are not quantized (embeddings, norms, T5's ``wo``) are
    loaded in float32, which is what ``peft.prepare_model_for_kbit_training`` casts them to anyway; training
    and inference therefore see the same dtypes.

No silent fallback
    If bitsandbytes cannot be imported, or the loaded base contains no quantized linear module, loading
    raises :class:`QuantizationUnavailableError`; QLoRA never degrades to plain LoRA.

Optimizer
    The QLoRA paper pages AdamW's state to CPU memory (``bnb.optim.PagedAdamW``); paging is a CUDA
    unified-memory feature. This study's training loop (``peftstudy.training.optimizer.make_optimizer``) uses plain
    ``torch.optim.AdamW`` for every method, QLoRA included, on CPU and GPU alike; the run record says so
    (``record_extras``: ``optimizer`` and ``paged_optimizer: false``) rather than claiming paging.

Same numbers on every CPU
    bitsandbytes picks CPU kernels by CPU flags. On a CPU with AVX512-BF16 its ``Linear4bit`` repacks the
    4-bit weight in place, for good, at the first forward in eval mode without grad (absmax cast to bf16,
    the double-quantization state dropped), after which training crashes and scoring runs on another
    quantization state; on CPUs with AVX512 its 8-bit matmul is exact int32 (``torch._int_mm``) where
    elsewhere it is a float32 matmul. ``pin_cpu_kernels`` (called by ``load_quantized_base``, the one route
    every QLoRA base is loaded through) turns the repacking off and makes the int8 product exact on every CPU,
    as the CUDA kernel is. GPUs are untouched: both switches act on CPU tensors only.

Gradient checkpointing
    ``prepare_model_for_kbit_training`` is called with gradient checkpointing on (non-reentrant) unless the
    spec sets ``gradient_checkpointing: false``: on, as in the QLoRA recipe, it saves activation memory at
    the cost of a second forward pass (2.4x the step time of a tiny T5 on CPU) and does not change the
    computed gradients. The run record says which was used.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping

from peftstudy.methods.base import (
    LORA_OPTIONS,
    PEFT_WEIGHTS_FILE,
    LoRA,
    Method,
    checked_safetensors,
    head_modules,
)
from peftstudy.modeling.memory import DistinctBytes, quantization_state_tensors

QUANTIZED_CLASS_NAMES = {4: "Linear4bit", 8: "Linear8bitLt"}
COMPUTE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# The options that say how the base is quantized (their defaults: QLoRA.defaults), in the order they are recorded.
QUANTIZATION_OPTIONS = ("bits", "quant_type", "double_quant", "compute_dtype")
FOUR_BIT_ONLY = ("quant_type", "double_quant", "compute_dtype")
# The training loop's optimizer (peftstudy.training.optimizer.make_optimizer); recorded, never claimed to be paged.
TRAINING_LOOP_OPTIMIZER = "torch.optim.AdamW"
QUANTIZATION_FILE = "quantization.json"


class QuantizationUnavailableError(RuntimeError):
    """QLoRA cannot quantize the base; raised instead of silently training unquantized LoRA."""


def quantization_settings(spec: Mapping) -> dict:
    """The spec's quantization options with defaults filled in, checked."""
    qlora = QLoRA()
    settings = {key: qlora.option(spec, key) for key in QUANTIZATION_OPTIONS}
    if settings["bits"] not in (4, 8):
        raise ValueError(f"qlora: bits must be 4 or 8, got {settings['bits']!r}")
    if settings["bits"] == 8:
        given = [key for key in FOUR_BIT_ONLY if key in spec]
        if given:
            raise ValueError(f"qlora: {', '.join(given)} only apply to 4-bit quantization (bits: 4), not to bits: 8")
        return {"bits": 8}
    if settings["quant_type"] not in ("nf4", "fp4"):
        raise ValueError(f"qlora: quant_type must be nf4 or fp4, got {settings['quant_type']!r}")
    if settings["compute_dtype"] not in COMPUTE_DTYPES:
        raise ValueError(f"qlora: compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {settings['compute_dtype']!r}")
    return settings


def require_bitsandbytes():
    try:
        import bitsandbytes
    except Exception as error:  # ImportError, or a broken native library
        raise QuantizationUnavailableError(
            f"qlora needs bitsandbytes to quantize the base model, but it cannot be imported ({error}); "
            "refusing to train unquantized LoRA instead - install bitsandbytes or use method kind 'lora'"
        ) from None
    return bitsandbytes


def bnb_config(settings: Mapping):
    import torch
    from transformers import BitsAndBytesConfig

    if settings["bits"] == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings["quant_type"],
        bnb_4bit_use_double_quant=bool(settings["double_quant"]),
        bnb_4bit_compute_dtype=getattr(torch, COMPUTE_DTYPES[settings["compute_dtype"]]),
    )


def quantized_modules(model) -> dict[str, object]:
    """name -> module for every bitsandbytes-quantized linear layer of the model."""
    names = set(QUANTIZED_CLASS_NAMES.values())
    # bitsandbytes' own classes only: peft's LoRA wrappers around them are also called Linear4bit/Linear8bitLt.
    return {name: module for name, module in model.named_modules()
            if type(module).__name__ in names and type(module).__module__.startswith("bitsandbytes")}


def load_quantized_base(base_dir: Path, spec: Mapping, device: str, head: Mapping | None = None):
    """(model, tokenizer, manifest) like ``models.load_base``, with the linear weights quantized.

    A classifier or span head (``head``) stays unquantized: it starts random and is trained in full."""
    import torch
    from transformers import AutoConfig

    from peftstudy.modeling.heads import from_pretrained_options, model_class
    from peftstudy.modeling.loading import (
        base_location,
        load_tokenizer,
        set_generation_pad,
    )

    settings = quantization_settings(spec)
    require_bitsandbytes()
    manifest, location, revision = base_location(base_dir)
    family = manifest["family"]
    config = AutoConfig.from_pretrained(location, revision=revision, trust_remote_code=False)
    stored_dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32
    if isinstance(stored_dtype, str):
        stored_dtype = getattr(torch, stored_dtype)
    tokenizer = load_tokenizer(location, revision)
    model = model_class(family, head).from_pretrained(
        location,
        revision=revision,
        trust_remote_code=False,
        use_safetensors=True,
        quantization_config=_quantization_config(settings, head_modules({"head": head})),
        device_map={"": device or "cpu"},
        dtype=torch.float32,
        **from_pretrained_options(head, tokenizer),
    )
    found = quantized_modules(model)
    expected = QUANTIZED_CLASS_NAMES[settings["bits"]]
    if not found or any(type(m).__name__ != expected for m in found.values()):
        raise QuantizationUnavailableError(
            f"qlora asked for {settings['bits']}-bit weights but the loaded base has "
            f"{len(found)} bitsandbytes {expected} modules; refusing to train unquantized LoRA instead"
        )
    pin_cpu_kernels(model)
    set_generation_pad(model, tokenizer)
    # Kept on the model for the run record: the dtype the quantized weights had in the checkpoint.
    model.peftstudy_stored_dtype = stored_dtype
    model.peftstudy_quantization = settings
    return model, tokenizer, manifest


def pin_cpu_kernels(model) -> None:
    """Give every CPU the same bitsandbytes route (see the module docstring), whatever its flags."""
    for module in quantized_modules(model).values():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    _pin_exact_int8_matmul()


@functools.lru_cache(maxsize=1)
def _pin_exact_int8_matmul() -> None:
    """LLM.int8()'s int8 x int8 -> int32 product on CPU, exact on every CPU (float64 holds any such sum exactly),
    in place of bitsandbytes' choice by CPU flag (torch._int_mm with AVX512, else a float32 matmul that rounds
    once a partial sum passes 2**24)."""
    import warnings

    import torch

    require_bitsandbytes()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Overriding a previously registered kernel.*")
        warnings.filterwarnings("ignore", message=".*Warning only once for all operators.*")

        @torch.library.register_kernel("bitsandbytes::int8_linear_matmul", "cpu")
        def _int8_linear_matmul(A, B):
            return torch.matmul(A.double(), B.double().t()).to(torch.int32)


def assert_canonical_layout(model) -> None:
    """Raise if a 4-bit weight was repacked into bitsandbytes' CPU inference layout (``pin_cpu_kernels`` missed)."""
    repacked = [name for name, module in quantized_modules(model).items()
                if getattr(getattr(module.weight, "quant_state", None), "packing_format_for_cpu", False)]
    if repacked:
        raise RuntimeError(f"4-bit weights repacked into bitsandbytes' AVX512-BF16 CPU layout: {', '.join(repacked)}"
                           " (their quantization state is no longer the canonical one)")


def _quantization_config(settings: Mapping, skip_modules: list[str] | None = None):
    """Indirection point the tests use to simulate a quantization backend that does nothing."""
    config = bnb_config(settings)
    if skip_modules:  # else transformers keeps the output layer unquantized by itself
        config.llm_int8_skip_modules = skip_modules
    return config


def quantized_weight_bytes(model, stored_dtype=None) -> dict:
    """Bytes of the quantized linear weights, and what the same weights take unquantized.

    ``base_weight_bytes``: in-memory storage of every quantized weight - the packed 4-bit (uint8) or
    int8 data plus its quantization state: 4-bit: ``absmax`` (uint8 when double-quantized), the nested
    ``absmax``, ``offset`` and the code tables; 8-bit: the per-row scales ``SCB``. Each distinct tensor is
    counted once (bitsandbytes may share code tables between layers). Biases are not quantized and
    excluded from both numbers.
    ``base_weight_bytes_unquantized``: the same weights' logical parameter count times the byte size of
    the dtype they are stored in in the base checkpoint (``stored_dtype``; float32 for scratch bases).
    """
    import torch

    stored_dtype = stored_dtype or getattr(model, "peftstudy_stored_dtype", None) or torch.float32
    stored, logical = DistinctBytes(), 0
    for module in quantized_modules(model).values():
        logical += module.in_features * module.out_features
        stored.add(module.weight.data)
        stored.add_all(quantization_state_tensors(module.weight))
    itemsize = torch.empty((), dtype=stored_dtype).element_size()
    return {
        "base_weight_bytes": stored.total,
        "base_weight_bytes_unquantized": logical * itemsize,
        "quantized_parameters": logical,
        "stored_dtype": str(stored_dtype).replace("torch.", ""),
    }


class QLoRA(Method):
    kind = "qlora"
    options = {
        **LORA_OPTIONS,
        "bits": {"enum": [4, 8]},
        "quant_type": {"enum": ["nf4", "fp4"]},
        "double_quant": {"type": "boolean"},
        "compute_dtype": {"enum": list(COMPUTE_DTYPES)},
        "gradient_checkpointing": {"type": "boolean", "description": "QLoRA: recompute activations in the backward "
                                   "pass (default true, the QLoRA recipe; saves memory, same gradients)"},
    }
    # LoRA's defaults (peft_config builds LoRA's config) and the QLoRA paper's quantization recipe.
    defaults = {**LoRA.defaults, "bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bf16",
                "gradient_checkpointing": True}
    required_options = ("ranks",)
    label = "QLoRA"
    trains_heads = True
    shardable = False
    not_shardable_reason = ("QLoRA's quantized base (bitsandbytes, on CUDA) is loaded onto the device whole and "
                            "FSDP does not shard its quantized weights here")

    def load_base_for_training(self, base_dir, spec, device):
        return load_quantized_base(base_dir, spec, device, head=spec.get("head"))

    def peft_config(self, family, spec, rank):
        config = LoRA().peft_config(family, spec, rank)
        # GPT-2's Conv1D layers become Linear4bit/Linear8bitLt in the Linear layout: no transposition.
        config.fan_in_fan_out = False
        return config

    def prepare(self, model, family, spec, rank, total_steps=None):
        from peft import get_peft_model, prepare_model_for_kbit_training

        if not quantized_modules(model):
            raise QuantizationUnavailableError(
                "qlora.prepare got a model without bitsandbytes-quantized layers (load it with"
                " QLoRA.load_base_for_training); refusing to train unquantized LoRA instead"
            )
        checkpointing = bool(self.option(spec, "gradient_checkpointing"))
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        model = get_peft_model(model, self.peft_config(family, spec, rank))
        model.peftstudy_gradient_checkpointing = checkpointing
        return model

    def expected_trainable(self, model, spec, rank, *, family):
        """LoRA's formula on the same targets: the quantized weights are frozen, and ``model`` (unquantized, e.g. on
        the meta device) has the same shapes (d_in, d_out) as the quantized layers."""
        lora = LoRA().expected_trainable(model, spec, rank, family=family)
        return None if lora is None else (lora[0], f"{lora[1]} (LoRA on the quantized base)")

    def quantized_weight_bytes(self, model) -> dict:
        return quantized_weight_bytes(model)

    def record_extras(self, model) -> dict:
        """The quantization, its measured sizes and the optimizer actually used, for the training record."""
        sizes = quantized_weight_bytes(model)
        settings = getattr(model, "peftstudy_quantization", None)
        modules = quantized_modules(model)
        return {
            "base_weight_bytes": sizes["base_weight_bytes"],
            "base_weight_bytes_unquantized": sizes["base_weight_bytes_unquantized"],
            "quantization": {
                **(dict(settings) if settings else {}),
                "library": "bitsandbytes",
                "quantized_modules": len(modules),
                "quantized_parameters": sizes["quantized_parameters"],
                "unquantized_dtype": sizes["stored_dtype"],
            },
            "optimizer": TRAINING_LOOP_OPTIMIZER,
            "paged_optimizer": False,
            "gradient_checkpointing": getattr(model, "peftstudy_gradient_checkpointing", True),
        }

    def save(self, model, tokenizer, out_dir):
        from peftstudy import io

        assert_canonical_layout(model)  # the numbers were computed on the canonical quantization state
        model.save_pretrained(out_dir, safe_serialization=True)
        # The adapter only fits the base quantized the same way: keep the settings next to it.
        io.write_json(Path(out_dir) / QUANTIZATION_FILE, getattr(model, "peftstudy_quantization"))

    def load_for_inference(self, base_dir, weights_dir, device, spec=None):
        """The saved LoRA adapter on top of a base quantized exactly as for training."""
        from peft import PeftModel

        from peftstudy import io

        saved_path = Path(weights_dir) / QUANTIZATION_FILE
        saved = io.read_json(saved_path) if saved_path.exists() else None
        wanted = quantization_settings(spec) if spec is not None else saved
        if wanted is None:
            raise FileNotFoundError(f"{saved_path}: missing, and no method spec says how the base was quantized")
        if saved is not None and saved != wanted:
            raise ValueError(f"{weights_dir}: the adapter was trained on a base quantized with {saved},"
                             f" but the method spec asks for {wanted}")
        checked_safetensors(Path(weights_dir) / PEFT_WEIGHTS_FILE)
        base, tokenizer, manifest = load_quantized_base(base_dir, wanted, device, head=(spec or {}).get("head"))
        model = PeftModel.from_pretrained(base, weights_dir, is_trainable=False)
        model.eval()
        return model, tokenizer, manifest


METHODS = [QLoRA()]
