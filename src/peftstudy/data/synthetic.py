"""Seeded synthetic data for fast tests: small, instant, and with structure a tiny model can learn.

Real corpora take seconds to parse and need Debian packages; unit and workflow tests only
need examples whose reference follows from the input by a fixed rule (attribute list ->
templated sentence), so that "did training help?" has a checkable answer.
"""

from __future__ import annotations

import random
from typing import Iterator

ITEMS = ["lamp", "chair", "table", "kettle", "backpack", "jacket", "clock", "mug", "shelf", "bicycle"]
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "grey", "brown"]
MATERIALS = ["oak", "steel", "glass", "cotton", "leather", "bamboo"]
SIZES = ["small", "medium", "large"]
FEATURES = ["foldable", "waterproof", "dimmable", "stackable", "lightweight", "handmade"]
USES = {"lamp": "reading", "chair": "the garden", "table": "dinner", "kettle": "tea", "backpack": "hiking",
        "jacket": "winter", "clock": "the kitchen", "mug": "coffee", "shelf": "books", "bicycle": "the city"}


def _draw(rng: random.Random) -> dict[str, str]:
    return {"item": rng.choice(ITEMS), "colour": rng.choice(COLOURS), "material": rng.choice(MATERIALS),
            "size": rng.choice(SIZES), "feature": rng.choice(FEATURES)}


def describe(a: dict[str, str]) -> str:
    """The rule a model should learn: every attribute appears, in a fixed template."""
    return (f"A {a['size']} {a['colour']} {a['item']} made of {a['material']}. "
            f"It is {a['feature']} and ideal for {USES[a['item']]}.")


def pairs(count: int, seed: int) -> Iterator[dict]:
    """``count`` records {id, input, reference}; repeated attribute draws are left in for dedup to find."""
    rng = random.Random(f"synthetic-pairs:{seed}")
    for index in range(count):
        attributes = _draw(rng)
        yield {"id": f"syn-{index:06d}",
               "input": " | ".join(f"{key}: {value}" for key, value in attributes.items()),
               "reference": describe(attributes)}


def lines(count: int, seed: int) -> Iterator[str]:
    """General sentences over the same vocabulary, standing in for a pretraining corpus."""
    rng = random.Random(f"synthetic-lines:{seed}")
    templates = [
        "The {size} {item} is {colour}.",
        "This {item} is made of {material}.",
        "A {feature} {item} is useful for {use}.",
        "She bought a {colour} {item} made of {material}.",
        "Most {material} things are {feature}.",
    ]
    for _ in range(count):
        attributes = _draw(rng)
        yield rng.choice(templates).format(use=USES[attributes["item"]], **attributes)
