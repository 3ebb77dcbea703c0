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

from peftstudy.study.matrix import Run, is_excluded, method_variants, variant_name

RECORD_VERSION = 1


def design(study: Mapping) -> dict | None:
    """The study's adaptive design (study.config resolves it from `seeds`), or None for a fixed seed list."""
    return study.get("adaptive_seeds")


def adaptive_cells(study: Mapping) -> list[tuple[str, str, str]]:
    """(dataset, model, variant) of every cell of a block without its own seeds: the cells the looks decide."""
    cells = set()
    for block in study["matrix"]:
        if "seeds" in block:
            continue
        for dataset in block["datasets"]:
            for model in block["models"]:
                for method in block["methods"]:
                    if not is_excluded(study, dataset, model, method):
                        cells.update((dataset, model, v) for v in method_variants(study, method, block.get("ranks")))
    return sorted(cells)


def fixed_runs(study: Mapping) -> list[Run]:
    """The runs of the blocks that name their own seeds: run whatever the looks decide."""
    runs = set()
    for block in study["matrix"]:
        if "seeds" not in block:
            continue
        for dataset in block["datasets"]:
            for model in block["models"]:
                for method in block["methods"]:
                    if not is_excluded(study, dataset, model, method):
                        runs.update(Run(study["study"], dataset, model, variant, seed)
                                    for variant in method_variants(study, method, block.get("ranks"))
                                    for seed in block["seeds"])
    return sorted(runs)


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


def look(study: Mapping, look_at: int, metrics_paths: Sequence[str], runs: Iterable[Run]) -> dict:
    """The look after ``look_at`` seeds: each planned comparison's decision so far on the runs of this look, and
    the runs of the cells still open at their next seed (none: the design is finished)."""
    import pandas as pd

    from peftstudy.metrics.aggregate import collect_rows
    from peftstudy.metrics.scoring import METRICS_COLUMNS
    from peftstudy.stats.sequential import planned_metrics, replay

    plan, statistics = design(study), study["statistics"]
    rows, diverged = collect_rows(metrics_paths)
    decisions, used, waiting = replay(
        pd.DataFrame(rows, columns=METRICS_COLUMNS), baseline_method=statistics["baseline_method"],
        compare_metrics=planned_metrics(statistics["compare_metrics"], plan["practical"]),
        thresholds=plan["practical"], alpha=plan["alpha"], n_min=plan["min"], n_max=plan["max"],
        seed_order=[str(seed) for seed in study["seeds"]])
    runs = sorted(runs)
    adaptive = set(adaptive_cells(study))
    following = []
    for cell in waiting.itertuples(index=False):
        variant = variant_name(cell.method, int(cell.rank) if str(cell.rank) else None)
        if (cell.dataset, cell.model, variant) not in adaptive:
            continue  # a fixed block's cell runs its own seeds
        following.append(Run(study["study"], cell.dataset, cell.model, variant, study["seeds"][cell.next_look - 1]))
    return {
        "version": RECORD_VERSION, "study": study["study"], "look": look_at,
        "design": {key: plan[key] for key in ("min", "max", "alpha", "practical", "full_grid")},
        "seeds": list(study["seeds"]), "runs": [list(run_fields(run)) for run in runs],
        "diverged": [list(run_fields(run)) for run, _ in sorted(diverged, key=lambda pair: pair[0])],
        "next": [list(run_fields(run)) for run in sorted(following)], "finished": not following,
        "decisions": [{key: None if isinstance(value, float) and math.isnan(value) else value
                       for key, value in row.items()} for row in decisions.to_dict(orient="records")],
    }


def run_fields(run: Run) -> tuple:
    return run.study, run.dataset, run.model, run.variant, run.seed


def cells_of(runs: Iterable[Run]) -> dict[tuple[str, str, str], int]:
    """(dataset, model, variant) -> how many seeds it ran."""
    counts: dict = {}
    for run in runs:
        counts[(run.dataset, run.model, run.variant)] = counts.get((run.dataset, run.model, run.variant), 0) + 1
    return counts


def variant_of(method: str, rank: str) -> str:
    return variant_name(method, int(rank) if str(rank) else None)


