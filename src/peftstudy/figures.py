"""Figures (matplotlib, vector PDF), each a standalone target under reports/{study}/figures/."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from . import io


def _save(figure, out_path) -> None:
    """Write a PDF atomically, without the creation date (the same inputs give the same file)."""
    with io.atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None})


def output_clusters_from_runs(panels: Sequence[Mapping], embedding_model: str, out_path) -> None:
    """output_clusters with each series' cluster count read from its run's metrics.json (the workflow's entry)."""
    panels = [{**panel, "series": [{**s, "clusters": int(io.read_json(s["metrics"])["metrics"]["semantic_clusters"])}
                                   for s in panel["series"]]} for panel in panels]
    output_clusters(panels, embedding_model, out_path)


def output_clusters(panels: Sequence[Mapping], embedding_model: str, out_path) -> None:
    """One panel per model: the outputs of every method variant (one seed) embedded with the study's
    sentence-embedding model and projected on the first two principal components of all of them; the
    legend gives each variant's number of semantic clusters (metrics.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .metrics.diversity import embed

    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        texts, owners = [], []
        for index, series in enumerate(panel["series"]):
            rows = io.read_jsonl(series["generations"])
            texts.extend(row["prediction"] for row in rows)
            owners.extend([index] * len(rows))
        vectors = embed(texts, embedding_model)
        centred = vectors - vectors.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        points = centred @ components[:2].T
        owners = np.asarray(owners)
        colours = plt.get_cmap("tab20")
        for index, series in enumerate(panel["series"]):
            mask = owners == index
            axis.scatter(points[mask, 0], points[mask, 1], s=9, alpha=0.7, color=colours(index % 20),
                         marker="o" if index < 20 else "^", label=f"{series['label']} ({series['clusters']} cl.)")
        axis.set_title(panel["title"], fontsize=10)
        axis.set_xlabel("PC 1")
        axis.set_ylabel("PC 2")
        axis.legend(fontsize=6, ncol=2, loc="best", frameon=False)
    figure.tight_layout()
    _save(figure, out_path)
    plt.close(figure)
