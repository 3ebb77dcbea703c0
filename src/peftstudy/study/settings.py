"""Per-run settings: what one training or generation job reads, with every default filled in."""

from __future__ import annotations

from typing import Mapping

from peftstudy.data.prepare import dataset_task
from peftstudy.modeling import heads
from peftstudy.study.matrix import Run


def training_settings(study: Mapping, method: str, model: str | None = None, dataset: str | None = None) -> dict:
    """Training hyper-parameters of one cell: study-wide, then the method's, then matching cell overrides.

    Overrides apply in the order they are listed; each names at least one of model, method and dataset
    (seed 004 tunes the learning rate per model x method cell).
    """
    settings = {**study["training"], **study["methods"][method].get("training", {})}
    cell = {"model": model, "method": method, "dataset": dataset}
    for override in study.get("overrides", []):
        if all(override.get(axis) in (None, cell[axis]) for axis in cell):
            settings.update(override.get("training", {}))
    return settings


def method_options(study: Mapping, method: str, model: str | None = None, dataset: str | None = None) -> dict:
    """The method's options in one cell: its entry's, then the options of matching cell overrides."""
    spec = {k: v for k, v in study["methods"][method].items() if k not in ("training", "ranks", "description")}
    cell = {"model": model, "method": method, "dataset": dataset}
    for override in study.get("overrides", []):
        if all(override.get(axis) in (None, cell[axis]) for axis in cell):
            spec.update(override.get("options", {}))
    return spec


def run_settings(study: Mapping, run: Run) -> dict:
    """Everything that determines a training run's result, used as the rule's params.

    Snakemake reruns a job when its params change, so this must hold every setting
    the run depends on and nothing else (no other run's settings).
    """
    method_spec = method_options(study, run.method, run.model, run.dataset)
    training = training_settings(study, run.method, run.model, run.dataset)
    dataset = study["datasets"][run.dataset]
    head = heads.head_spec(study["models"][run.model], dataset, dataset_task(dataset), training, method_spec["kind"])
    if head["kind"] != "lm":  # the model's classifier or span head, which the method trains with it
        method_spec["head"] = head
    return {
        "dataset": run.dataset,
        "model": run.model,
        "family": study["models"][run.model]["family"],
        "method": run.method,
        "rank": run.rank,
        "method_spec": method_spec,
        "training": training,
        "seed": run.seed,
    }
