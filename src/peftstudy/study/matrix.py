"""The run matrix: a study's (dataset, model, method variant, seed) cells, with its declared exclusions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

VARIANT_PATTERN = re.compile(r"^(?P<method>[a-z][a-z0-9_]*)(?:-r(?P<rank>[1-9][0-9]*))?$")
SEED_PATTERN = re.compile(r"^[0-9]+$")  # a run's seed in its path (seed{seed}): the schema's non-negative integers


@dataclass(frozen=True, order=True)
class Run:
    """One training run: the unit every artifact under results/{study}/runs/ belongs to."""

    study: str
    dataset: str
    model: str
    variant: str
    seed: int

    @property
    def method(self) -> str:
        return parse_variant(self.variant)[0]

    @property
    def rank(self) -> int | None:
        return parse_variant(self.variant)[1]

    @property
    def directory(self) -> str:
        return f"results/{self.study}/runs/{self.dataset}/{self.model}/{self.variant}/seed{self.seed}"


def variant_name(method: str, rank: int | None) -> str:
    return method if rank is None else f"{method}-r{rank}"


def parse_variant(variant: str) -> tuple[str, int | None]:
    match = VARIANT_PATTERN.match(variant)
    if not match:
        raise ValueError(f"not a method variant: {variant!r} (expected 'method' or 'method-r<rank>')")
    rank = match.group("rank")
    return match.group("method"), int(rank) if rank else None


def is_excluded(study: Mapping, dataset: str, model: str, method: str) -> dict | None:
    """Return the exclusion that removes this cell, if any."""
    cell = {"dataset": dataset, "model": model, "method": method}
    for exclusion in study["exclusions"]:
        if all(exclusion.get(axis) in (None, cell[axis]) for axis in cell):
            return exclusion
    return None


def method_variants(study: Mapping, method: str, only_ranks: Iterable[int] | None = None) -> list[str]:
    """The method's variants (one per rank), restricted to ``only_ranks`` when a matrix block gives them."""
    spec = study["methods"][method]
    ranks = spec.get("ranks")
    if not ranks:
        return [method]
    return [variant_name(method, rank) for rank in ranks if only_ranks is None or rank in set(only_ranks)]


def block_cells(study: Mapping, block: Mapping) -> list[tuple[str, str, str]]:
    """(dataset, model, variant) of every cell of one matrix block, minus declared exclusions."""
    return [(dataset, model, variant) for dataset in block["datasets"] for model in block["models"]
            for method in block["methods"] if not is_excluded(study, dataset, model, method)
            for variant in method_variants(study, method, block.get("ranks"))]


def expand_runs(study: Mapping) -> list[Run]:
    """Every run of the study: the union of the matrix blocks, minus declared exclusions."""
    return sorted({Run(study["study"], *cell, seed) for block in study["matrix"] for cell in block_cells(study, block)
                   for seed in block.get("seeds", study["seeds"])})


def unanchored(pattern: str | re.Pattern) -> str:
    """A full-match regex (``^...$``, maybe with named groups) as a Snakemake wildcard constraint: unanchored (Snakemake
    anchors it) and without named groups (Snakemake names the wildcard's group itself)."""
    text = getattr(pattern, "pattern", pattern)
    return re.sub(r"\(\?P<\w+>", "(?:", text.removeprefix("^").removesuffix("$"))


def path_patterns(schema: Mapping) -> dict[str, str]:
    """What each name in an output path may be (the workflow's wildcard constraints), from where the names are
    defined: a study's and a dataset's, corpus's or model's name by the study schema (load_schema()), a method
    variant and a seed as a Run writes them."""
    name = unanchored(schema["$defs"]["name"]["pattern"])
    return {"study": unanchored(schema["properties"]["study"]["pattern"]), "dataset": name, "corpus": name,
            "model": name, "variant": unanchored(VARIANT_PATTERN), "seed": unanchored(SEED_PATTERN),
            "baseline": unanchored(schema["$defs"]["method_name"]["pattern"])}
