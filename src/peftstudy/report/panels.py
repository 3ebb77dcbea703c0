"""What the output-clusters figure draws, chosen from the study and its runs (the figure_output_clusters rule's
inputs and params); figures.output_clusters_from_runs draws it.

Kept apart from figures (matplotlib) so that the workflow, which calls this for every dry run, loads neither.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from peftstudy.data.prepare import dataset_task
from peftstudy.study.matrix import parse_variant


def output_cluster_panels(study: Mapping, runs: Iterable) -> list[dict]:
    """One panel per model of the Table-1 dataset (or, when that one is not free text, the study's first free-text
    dataset), models by name: every method variant's first seed (its generations and metrics), variants in the
    order the study declares their methods, then by rank. [] when the study generates no free text.

    runs: the study's runs (Run objects).
    """
    free_text = [name for name in [study["report"]["table1_dataset"], *study["datasets"]]
                 if dataset_task(study["datasets"][name]) == "generation"]
    if not free_text:
        return []
    dataset = free_text[0]
    panels: dict[str, dict] = {}
    for run in runs:
        if run.dataset != dataset:
            continue
        series = panels.setdefault(run.model, {})
        if run.variant not in series or run.seed < series[run.variant]["seed"]:
            series[run.variant] = {"seed": run.seed, "label": run.variant,
                                   "generations": f"{run.directory}/generations.jsonl",
                                   "metrics": f"{run.directory}/metrics.json"}
    order = {name: index for index, name in enumerate(study["methods"])}

    def position(series: Mapping) -> tuple:
        method, rank = parse_variant(series["label"])
        return order[method], rank or 0

    return [{"title": f"{model} on {dataset}: outputs per method (first seed)",
             "series": sorted(series.values(), key=position)}
            for model, series in sorted(panels.items())]
