"""Fine-tuning methods behind one registry: adding a method = one module entry + schema + tests.

Each method decides how the base is loaded for training (QLoRA quantizes it), which
parameters train, what runs after each optimizer step (AdaLoRA reallocates ranks),
what is stored, and how the stored result is loaded for generation.
"""

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
           "ATTENTION_AND_MLP_TARGETS", "FAN_IN_FAN_OUT"]
