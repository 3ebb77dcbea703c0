"""Trainable-parameter counts by formula, from the base model's module shapes (never from peft).

An integrity check compares a run's recorded ``trainable_parameters`` (train.json) with what its method's formula
gives on the same base: each method states its formula (``Method.expected_trainable``) and these helpers read the
shapes and select the targeted modules. Target lists are resolved by the package's own functions (the ones
training uses); which modules they select follows peft's documented rule, re-implemented here.
"""

from __future__ import annotations

import re
from typing import Mapping


def linear_shape(module) -> tuple[int, int] | None:
    """(d_in, d_out) of a linear layer: torch Linear (weight d_out x d_in) or GPT-2's Conv1D (weight d_in x d_out);
    None for any other module."""
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, Conv1D):
        d_in, d_out = module.weight.shape
        return int(d_in), int(d_out)
    if isinstance(module, torch.nn.Linear):
        d_out, d_in = module.weight.shape
        return int(d_in), int(d_out)
    return None


def selects(targets, name: str) -> bool:
    """peft's target_modules rule: a string is a regular expression the whole module name must match; a list
    names modules by their full name or by a dotted suffix of it."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return name in targets or any(name.endswith(f".{target}") for target in targets)


def targeted_linears(model, targets) -> list[tuple[str, int, int]]:
    """(name, d_in, d_out) of every module ``targets`` selects; an error where one is not a linear layer (no
    formula here) or where none is selected (training would have failed)."""
    found = []
    for name, module in model.named_modules():
        if not name or not selects(targets, name):
            continue
        shape = linear_shape(module)
        if shape is None:
            raise ValueError(f"target_modules {targets!r} select {name} ({type(module).__name__}), not a linear "
                             "layer: no trainable-parameter formula for it")
        found.append((name, *shape))
    if not found:
        raise ValueError(f"target_modules {targets!r} select no module of the {type(model).__name__} base")
    return found


def rank_of(name: str, rank: int, rank_pattern: Mapping[str, int]) -> int:
    """The rank peft gives module ``name``: the first rank_pattern key matching a dotted suffix of the name."""
    for pattern, pattern_rank in rank_pattern.items():
        if re.match(rf"(.*\.)?({pattern})$", name):
            return pattern_rank
    return rank


def unique_numel(parameters) -> int:
    """Elements of the parameters, a shared (tied) tensor counted once."""
    seen, total = set(), 0
    for parameter in parameters:
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


def lm_head_only(spec: Mapping) -> bool:
    """Whether the run trains the base's own generation head: classifier and span heads are peftstudy modules
    with no formula here."""
    return (spec.get("head") or {}).get("kind", "lm") == "lm"


