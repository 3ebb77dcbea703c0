"""Fine-tuning methods behind one registry: adding a method = a Method subclass + its entry here + tests.

Each method decides how the base is loaded for training (QLoRA quantizes it), which
parameters train, what runs after each optimizer step (AdaLoRA reallocates ranks),
what is stored, and how the stored result is loaded for generation.

Each method also describes itself (class attributes of :class:`Method`): the options a study
file may give its kind, as JSON-schema fragments (``options``, ``required_options``), its
report label and size symbol (``label``, ``size_symbol``), whether it trains classifier/span
heads (``trains_heads``) and trains under FSDP (``shardable``, ``not_shardable_reason``), the
model families it cannot run on (``not_applicable``), and extra training-record fields
(``record_extras``). The study's validation and schema, FSDP and the report read these from
:data:`METHODS`; no other module lists the methods, so a new method needs no edit elsewhere
(not even the study schema).

Model code (peftstudy.modeling, peft, transformers, adapters) is imported inside the methods that use it, on
purpose: the study validation and the report read a method's declared facts without loading any of it.
"""

from functools import lru_cache
from pathlib import Path
from typing import Mapping

from peftstudy.methods.base import (
    ATTENTION_AND_MLP_TARGETS,
    ATTENTION_TARGETS,
    FAN_IN_FAN_OUT,
    FullFineTuning,
    LoRA,
    Method,
    PeftMethod,
    lora_targets,
)

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.kind in METHODS:
        raise ValueError(f"method kind {method.kind!r} registered twice")
    for name, fragment in method.options.items():
        # One study-file key means one thing: an override without a method sets it for every kind.
        other = next((m for m in METHODS.values() if name in m.options and m.options[name] != fragment), None)
        if other is not None:
            raise ValueError(f"method kind {method.kind!r} declares option {name!r} unlike kind {other.kind!r}"
                             f" ({fragment!r} vs {other.options[name]!r}): give it another name")
    METHODS[method.kind] = method
    return method


from peftstudy.methods import adapterhub, partial, peft_family, quantized  # noqa: E402  (each lists its METHODS)

for _method in (FullFineTuning(), LoRA(), *peft_family.METHODS, *partial.METHODS, *quantized.METHODS,
                *adapterhub.METHODS):
    register(_method)


def get_method(kind: str) -> Method:
    try:
        return METHODS[kind]
    except KeyError:
        raise ValueError(f"unknown method kind {kind!r} (registered: {', '.join(sorted(METHODS))})") from None


__all__ = ["METHODS", "Method", "PeftMethod", "get_method", "register", "lora_targets", "ATTENTION_TARGETS",
           "ATTENTION_AND_MLP_TARGETS", "FAN_IN_FAN_OUT", "expected_trainable_for_run", "meta_base"]


@lru_cache(maxsize=8)
def meta_base(base_dir: Path):
    """(model, family) of a base directory, built from its config on the meta device: shapes without weights
    (once per process: a study's integrity check asks for each base once per run; no formula modifies it)."""
    import torch
    from transformers import AutoConfig

    from peftstudy.modeling.families import generation_class
    from peftstudy.modeling.loading import base_location

    manifest, location, revision = base_location(base_dir)
    family = manifest["family"]
    config = AutoConfig.from_pretrained(location, revision=revision, trust_remote_code=False)
    with torch.device("meta"):
        model = generation_class(family).from_config(config)
    return model, family


def expected_trainable_for_run(settings: Mapping, base_dir) -> tuple[int, str] | None:
    """(trainable parameters by the method's formula, the formula in words) for a run's settings (train.json
    ``settings``) on its base directory (results/bases/<model>), or None where the method has no formula here."""
    from peftstudy.methods.formulas import lm_head_only

    spec = settings["method_spec"]
    method = get_method(spec["kind"])
    if not lm_head_only(spec):  # no method has a formula with a task head, nor has BERT a generation head to build
        return None
    model, family = meta_base(Path(base_dir))
    if settings.get("family", family) != family:
        raise ValueError(f"{Path(base_dir) / 'base.json'}: family {family!r}, but the run's settings say "
                         f"{settings['family']!r}")
    return method.expected_trainable(model, spec, settings.get("rank"), family=family)
