"""Adaptive seeds in the workflow: the runs each look of an adaptive study needs, and what a look decides.

A study with ``seeds: {adaptive: {min, max, ...}}`` runs its cells in rounds. Round one is every adaptive cell's first
``min`` seeds; the look after it (the adaptive_look checkpoint) decides each planned comparison with
stats.sequential (repeated confidence intervals with alpha spending) and names the cells of the comparisons still
open; only those get the next seed, and the next look decides again, up to ``max`` seeds. Each look's record is a
file, so a study stopped between rounds resumes where it was, and the record of the last look lists every run the
design used.

Cells of a matrix block that names its own seeds are fixed: they run those seeds whatever the looks decide.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from peftstudy.study.matrix import Run, block_cells, variant_name

RECORD_VERSION = 1


def design(study: Mapping) -> dict | None:
    """The study's adaptive design (study.config resolves it from `seeds`), or None for a fixed seed list."""
    return study.get("adaptive_seeds")


def adaptive_cells(study: Mapping) -> list[tuple[str, str, str]]:
    """(dataset, model, variant) of every cell of a block without its own seeds: the cells the looks decide."""
    return sorted({cell for block in study["matrix"] if "seeds" not in block for cell in block_cells(study, block)})


def fixed_runs(study: Mapping) -> list[Run]:
    """The runs of the blocks that name their own seeds: run whatever the looks decide."""
    return sorted({Run(study["study"], *cell, seed) for block in study["matrix"] if "seeds" in block
                   for cell in block_cells(study, block) for seed in block["seeds"]})


def first_look_runs(study: Mapping) -> list[Run]:
    """Round one: every adaptive cell's first ``min`` seeds."""
    plan = design(study)
    return [Run(study["study"], *cell, seed) for cell in adaptive_cells(study) for seed in study["seeds"][:plan["min"]]]


def runs_of_record(record: Mapping) -> list[Run]:
    return [Run(*run) for run in record["runs"]]


def next_look_runs(record: Mapping) -> list[Run]:
    """The runs of the look after ``record``'s: its runs and the next seed of each waiting cell."""
    return sorted(set(runs_of_record(record)) | {Run(*run) for run in record["next"]})


def full_grid_runs(study: Mapping) -> list[Run]:
    """Every adaptive cell at every seed: the fixed design the adaptive one is measured against."""
    return [Run(study["study"], *cell, seed) for cell in adaptive_cells(study) for seed in study["seeds"]]


def look_settings(study: Mapping) -> dict:
    """Everything a look decides by, kept in its record: the design, the seeds' order, the baseline method, the
    planned metrics and the adaptive cells (so that `peftstudy verify` can take the look again from the record)."""
    plan = design(study)
    return {"study": study["study"], **{key: plan[key] for key in ("min", "max", "alpha", "practical", "full_grid")},
            "seeds": list(study["seeds"]), "baseline_method": study["statistics"]["baseline_method"],
            "metrics": list(plan["metrics"]), "cells": [list(cell) for cell in adaptive_cells(study)]}


def decide(settings: Mapping, metrics_paths: Sequence[str], runs: Iterable[Run]) -> dict:
    """Each planned comparison's decision on these runs' metrics.json, and the next seed of every adaptive cell of a
    comparison still open (none: the design is finished)."""
    import pandas as pd

    from peftstudy.metrics.aggregate import collect_rows
    from peftstudy.metrics.scoring import METRICS_COLUMNS
    from peftstudy.stats.sequential import replay

    rows, diverged = collect_rows(metrics_paths)
    decisions, _, waiting = replay(
        pd.DataFrame(rows, columns=METRICS_COLUMNS), baseline_method=settings["baseline_method"],
        compare_metrics=settings["metrics"], thresholds=settings["practical"], alpha=settings["alpha"],
        n_min=settings["min"], n_max=settings["max"], seed_order=[str(seed) for seed in settings["seeds"]])
    adaptive = {tuple(cell) for cell in settings["cells"]}
    following = []
    for cell in waiting.itertuples(index=False):
        variant = variant_name(cell.method, int(cell.rank) if str(cell.rank) else None)
        if (cell.dataset, cell.model, variant) in adaptive:  # a fixed block's cell runs its own seeds
            following.append(Run(settings["study"], cell.dataset, cell.model, variant,
                                 settings["seeds"][cell.next_look - 1]))
    return {
        "runs": [list(run_fields(run)) for run in sorted(runs)],
        "diverged": [list(run_fields(run)) for run, _ in sorted(diverged, key=lambda pair: pair[0])],
        "next": [list(run_fields(run)) for run in sorted(following)], "finished": not following,
        "decisions": [{key: None if isinstance(value, float) and math.isnan(value) else value
                       for key, value in row.items()} for row in decisions.to_dict(orient="records")],
    }


def look(study: Mapping, look_at: int, metrics_paths: Sequence[str], runs: Iterable[Run], *,
         code: str | None = None) -> dict:
    """The record of the look after ``look_at`` seeds (sealed, with its provenance and the sha256 of every
    metrics.json it read)."""
    from peftstudy import checksums, io, provenance

    settings = look_settings(study)
    return checksums.sealed({
        "version": RECORD_VERSION, "look": look_at, "design": settings, **decide(settings, metrics_paths, runs),
        "metrics_sha256": {str(path): io.sha256_file(path) for path in sorted(metrics_paths)},
        "provenance": provenance.record("adaptive_look", settings, code=code, hashed_settings=settings),
    })


def drifts(record: Mapping, workdir) -> list[tuple[str, object, object]]:
    """(what, recorded, now) for each way a look's record no longer follows from its runs: a metrics.json changed
    since the look, or the decisions taken again from the record's own settings differ (`peftstudy verify`)."""
    from pathlib import Path

    from peftstudy import io

    found = []
    for path, recorded in sorted((record.get("metrics_sha256") or {}).items()):
        now = io.sha256_file(Path(workdir) / path) if (Path(workdir) / path).is_file() else "missing"
        if now != recorded:
            found.append((f"{path} sha256 (as the look read it)", recorded, now))
    if found:
        return found
    runs = runs_of_record(record)
    again = decide(record["design"], [str(Path(workdir) / run.directory / "metrics.json") for run in runs], runs)
    for key in ("decisions", "next", "finished"):
        if again[key] != record.get(key):
            found.append((f"{key} (the look taken again from its runs)", record.get(key), again[key]))
    return found


def run_fields(run: Run) -> tuple:
    return run.study, run.dataset, run.model, run.variant, run.seed
