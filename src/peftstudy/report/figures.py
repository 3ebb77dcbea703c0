"""Figures (matplotlib, vector PDF), each a standalone target under reports/{study}/figures/."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from peftstudy import io
from peftstudy.metrics import catalogue
from peftstudy.metrics.diversity import embed
from peftstudy.report.labels import in_study_order
from peftstudy.stats.direction import higher_is_better as direction


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


    if not panels:  # a study of classifiers and QA only: no free-text outputs to cluster
        figure, axis = plt.subplots(figsize=(6.5, 1.5))
        axis.axis("off")
        axis.text(0.5, 0.5, "No free-text outputs: this study's datasets are classification and QA only.",
                  ha="center", va="center")
        _save(figure, out_path)
        plt.close(figure)
        return
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


# --------------------------------------------------------------------------------------------------------------
# Figures from the statistics tables (stats/*.csv read with stats.read_table), sized for a LaTeX page.

PAGE_WIDTH = 6.5  # inches: the text width of the paper
MAX_HEIGHT = 9.0  # inches: at most a page of text
FONT_SIZES = {"font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6,
              "ytick.labelsize": 6, "legend.fontsize": 6, "figure.titlesize": 8}
# (metric, axis title, scale): the metric catalogue's heading and scale.
EFFICIENCY_METRICS = tuple((metric, catalogue.heading(metric), catalogue.scale(metric))
                           for metric in ("train_peak_memory_bytes", "train_time_s", "train_energy_kwh"))
DIVERSITY_METRICS = ("distinct_1", "distinct_2", "mattr", "mean_pairwise_cosine")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _blank_rank(rank) -> bool:
    return rank is None or (isinstance(rank, float) and math.isnan(rank)) or str(rank) in ("", "nan", "<NA>")


def _variant_label(method: str, rank) -> str:
    """Plain-text variant name: 'lora r=8', or the method alone when it has no rank."""
    if _blank_rank(rank):
        return str(method)
    return f"{method} r={rank}"


def _no_data(axis, text: str = "no data") -> None:
    axis.text(0.5, 0.5, text, transform=axis.transAxes, ha="center", va="center", color="0.4", fontsize=7)
    axis.set_xticks([])
    axis.set_yticks([])


SUMMARY_COLUMNS = ("dataset", "model", "method", "rank", "metric", "n", "mean", "std")
RANK_STUDY_COLUMNS = ("dataset", "model", "metric", "rank", "n", "mean", "ci_low", "ci_high", "confidence",
                      "knee_rank", "best_rank", "bootstrap_choice_fraction")
CORRELATION_COLUMNS = ("dataset", "metric_a", "metric_b", "n", "pearson_r", "pearson_p")


def _with_columns(frame, columns):
    """The frame with any missing expected column added (empty text for keys, NaN for numbers), so that a
    partial table draws 'no data' panels instead of raising."""
    import pandas as pd

    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    missing = [column for column in columns if column not in frame.columns]
    if not missing:
        return frame
    text = {"dataset", "model", "method", "rank", "metric", "metric_a", "metric_b"}
    return frame.assign(**{column: "" if column in text else math.nan for column in missing})


def _dataset(study: Mapping, dataset) -> str:
    return dataset if dataset is not None else study.get("report", {}).get("table1_dataset")


def _ordered(values, declared) -> list:
    """The distinct values, those declared first in their declared order, then the rest as they come."""
    values = [value for value in dict.fromkeys(values) if not _blank_rank(value)]
    declared = [value for value in declared if value in values]
    return declared + [value for value in values if value not in declared]


def _models(study: Mapping, frame, dataset) -> list[str]:
    """The models of a dataset: those the study's matrix plans for it and those with rows, in study order."""
    planned = [model for entry in study.get("matrix", []) if dataset in entry.get("datasets", [])
               for model in entry.get("models", [])]
    present = list(frame.loc[frame["dataset"] == dataset, "model"])
    return _ordered(planned + present, list(study.get("models", {})))


def _variants(frame, study: Mapping) -> list[tuple[str, str]]:
    """(method, rank) pairs of the frame's rows, methods in the order the study declares them, then by rank."""
    if frame.empty:
        return []
    keys = frame[["method", "rank"]].drop_duplicates().assign(model="")
    keys = in_study_order(keys, study)
    return [(row["method"], "" if _blank_rank(row["rank"]) else str(row["rank"])) for _, row in keys.iterrows()]


def _rank_key(rank) -> str:
    return "" if _blank_rank(rank) else str(rank)


def _cells(frame) -> dict:
    """{(method, rank, metric): (n, mean, std)} of the frame's rows, NaNs where not finite."""
    table = {}
    for method, rank, metric, n, mean, std in zip(frame["method"], frame["rank"], frame["metric"], frame["n"],
                                                  frame["mean"], frame["std"]):
        table.setdefault((method, _rank_key(rank), metric),
                         (int(n) if _finite(n) else 0, float(mean) if _finite(mean) else math.nan,
                          float(std) if _finite(std) else math.nan))
    return table


def _cell(cells: Mapping, method: str, rank, metric: str):
    """(n, mean, std) of one variant's metric, NaNs when absent."""
    return cells.get((method, _rank_key(rank), metric), (0, math.nan, math.nan))


def _error(n: int, std: float) -> float:
    """The error bar: the sample SD when there are at least two seeds, else none (0 draws no bar)."""
    return std if n > 1 and _finite(std) else 0.0


def _bar_height(count: int) -> float:
    """Inches of figure height per horizontal bar (or group of bars) so that 30+ variants stay legible."""
    return 0.14 if count <= 20 else 0.11


def _save_figure(figure, out_path) -> None:
    plt = _pyplot()
    _save(figure, out_path)
    plt.close(figure)


# -- 1. rank saturation -----------------------------------------------------------------------------------------

def rank_saturation(rank_study, study: Mapping, out_path, metrics: Sequence[str] | None = None) -> None:
    """One panel per (dataset, model) x metric of the rank study: mean over seeds against the LoRA rank (log2
    axis, ticks at the ranks) with the t confidence band (none where n = 1), the knee (dashed line) and the
    chosen rank (star); each panel's title gives the chosen rank, the share of bootstrap resamples that choose
    it, and the knee."""
    plt = _pyplot()
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rank_study = _with_columns(rank_study, RANK_STUDY_COLUMNS)
    declared = list(study.get("statistics", {}).get("rank_study", {}).get("metrics", []))
    present = list(rank_study["metric"])
    metrics = _ordered(present, declared) if metrics is None else list(metrics)
    groups = []
    if not rank_study.empty:
        for dataset in _ordered(rank_study["dataset"], list(study.get("datasets", {}))):
            subset = rank_study[rank_study["dataset"] == dataset]
            groups += [(dataset, model) for model in _ordered(subset["model"], list(study.get("models", {})))]
    ncols = max(1, min(len(metrics), 3))
    rows_per_group = max(1, math.ceil(len(metrics) / ncols))
    nrows = max(1, len(groups) * rows_per_group)
    height = min(MAX_HEIGHT, 0.55 + 1.7 * nrows)
    confidence = rank_study["confidence"].dropna()
    band = f"{float(confidence.iloc[0]) * 100:.0f}% CI" if len(confidence) else "CI"
    with plt.rc_context(FONT_SIZES):
        figure, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH, height), squeeze=False)
        if not groups or not metrics:
            _no_data(axes[0][0], "no rank-study data")
            for axis in axes.flat[1:]:
                axis.set_visible(False)
        for group_index, (dataset, model) in enumerate(groups):
            for slot in range(rows_per_group * ncols):
                axis = axes[group_index * rows_per_group + slot // ncols][slot % ncols]
                if slot >= len(metrics):
                    axis.set_visible(False)
                    continue
                metric = metrics[slot]
                title = f"{dataset} / {model}: {metric}"
                rows = rank_study[(rank_study["dataset"] == dataset) & (rank_study["model"] == model)
                                  & (rank_study["metric"] == metric)]
                rows = rows.assign(_rank=[float(rank) if _finite(rank) else math.nan for rank in rows["rank"]])
                rows = rows[rows["_rank"].gt(0) & rows["mean"].notna()].sort_values("_rank", kind="stable")
                if rows.empty:
                    axis.set_title(title, fontsize=5.5)
                    _no_data(axis)
                    continue
                ranks = rows["_rank"].to_numpy(dtype=float)
                means = rows["mean"].to_numpy(dtype=float)
                low = rows["ci_low"].to_numpy(dtype=float)
                high = rows["ci_high"].to_numpy(dtype=float)
                axis.set_xscale("log", base=2)
                banded = np.isfinite(low) & np.isfinite(high)
                if banded.any():
                    axis.fill_between(ranks, np.where(banded, low, np.nan), np.where(banded, high, np.nan),
                                      color="C0", alpha=0.2, linewidth=0)
                axis.plot(ranks, means, marker="o", markersize=3, color="C0", linewidth=1)
                notes = []
                best = rows["best_rank"].iloc[0]
                if _finite(best):
                    chosen = rows[np.isclose(ranks, float(best))]
                    note = f"best r={float(best):g}"
                    if not chosen.empty:
                        axis.plot([float(best)], [float(chosen["mean"].iloc[0])], marker="*", markersize=9,
                                  color="C3", linestyle="none", zorder=5)
                        fraction = chosen["bootstrap_choice_fraction"].iloc[0]
                        if _finite(fraction):
                            note += f" ({float(fraction) * 100:.0f}% of bootstrap)"
                    notes.append(note)
                else:
                    notes.append("no best rank")
                knee = rows["knee_rank"].iloc[0]
                if _finite(knee):
                    axis.axvline(float(knee), color="0.3", linestyle="--", linewidth=0.8)
                    notes.append(f"knee r={float(knee):g}")
                else:
                    notes.append("no knee")
                axis.set_title(title + "\n" + ", ".join(notes), fontsize=5.5)
                axis.set_xticks(ranks)
                axis.set_xticklabels([f"{rank:g}" for rank in ranks])
                axis.minorticks_off()
                axis.set_xlim(ranks[0] / 1.35, ranks[-1] * 1.35)
                axis.grid(linewidth=0.3, alpha=0.5)
        key = [Line2D([], [], color="C0", marker="o", markersize=3, linewidth=1, label="mean over seeds"),
               Patch(color="C0", alpha=0.2, label=band),
               Line2D([], [], color="0.3", linestyle="--", linewidth=0.8, label="knee"),
               Line2D([], [], color="C3", marker="*", markersize=7, linestyle="none", label="chosen rank")]
        if groups and metrics:
            figure.legend(handles=key, loc="upper center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 1.0))
            figure.supxlabel(f"{study.get('statistics', {}).get('rank_study', {}).get('method', 'LoRA')} rank "
                             "(log2 scale)", fontsize=7)
            figure.tight_layout(pad=0.4, h_pad=0.5, w_pad=0.6, rect=(0, 0, 1, 1 - 0.22 / height))
        else:
            figure.tight_layout(pad=0.4)
        _save_figure(figure, out_path)


# -- 2. quality against trainable parameters --------------------------------------------------------------------

def pareto_front(points: Sequence[tuple[float, float, str]], higher_is_better: bool = True) -> list[str]:
    """The labels of the points (x = cost, y = quality) that no other point dominates, in x order.

    A point dominates another when its x is <= and its y is >= (<= when lower is better), one of them strictly;
    equal points do not dominate each other, so ties are all on the front. Points with a NaN are ignored.
    """
    clean = [(float(x), float(y) if higher_is_better else -float(y), str(label))
             for x, y, label in points if _finite(x) and _finite(y)]
    front = [(x, y, label) for x, y, label in clean
             if not any(ox <= x and oy >= y and (ox < x or oy > y) for ox, oy, _ in clean)]
    return [label for _, _, label in sorted(front, key=lambda point: (point[0], -point[1]))]


def _spread_labels(positions: Sequence[tuple[float, float]], labels: Sequence[str], char_width: float,
                   line_height: float) -> list[tuple[float, float]]:
    """Label anchors (axes fractions, left-centre of each label, starting just right of its point) moved down or
    up in half-line steps until no label box overlaps another label or a marker (deterministic, greedy)."""
    marker = 1.4 * char_width
    boxes: list[tuple[float, float, float]] = [(x - marker, y, 2 * marker) for x, y in positions]  # (left, y, width)
    anchors: list = [None] * len(labels)
    order = sorted(range(len(labels)), key=lambda i: (-positions[i][1], positions[i][0], i))
    for index in order:
        x, y = positions[index]
        x += 0.9 * marker
        width = char_width * len(labels[index])

        def clashes(candidate, own=index):
            return any(abs(candidate - by) < line_height * 0.9 and x < bx + bw and bx < x + width
                       for position, (bx, by, bw) in enumerate(boxes) if position != own)

        candidate = y
        for step in range(80):
            free = [c for c in (y - step * line_height * 0.5, y + step * line_height * 0.5)
                    if not clashes(c) and -0.02 <= c <= 1.0]
            if free:
                candidate = free[0]
                break
        boxes.append((x, candidate, width))
        anchors[index] = (x, candidate)
    return anchors


def quality_vs_parameters(summary, study: Mapping, out_path, metric: str = "rouge_l", dataset=None) -> None:
    """One panel per model of the Table-1 dataset: each variant's mean `metric` (± SD over seeds where n > 1)
    against its mean trainable-parameter share (log axis), labelled; the Pareto front (no other variant
    trains fewer parameters and scores at least as well) as a step line, its variants in red."""
    plt = _pyplot()
    from matplotlib.lines import Line2D


    dataset = _dataset(study, dataset)
    higher = direction(metric)
    higher = True if higher is None else higher
    summary = _with_columns(summary, SUMMARY_COLUMNS)
    frame = summary[summary["dataset"] == dataset]
    models = _models(study, summary, dataset) or [None]
    ncols = 1 if len(models) == 1 else 2
    nrows = math.ceil(len(models) / ncols)
    panel_height = min(4.2 if ncols == 1 else 3.4, (MAX_HEIGHT - 0.5) / nrows)
    height = 0.5 + panel_height * nrows
    with plt.rc_context(FONT_SIZES):
        figure, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH, height), squeeze=False)
        for axis in axes.flat[len(models):]:
            axis.set_visible(False)
        drawn = False
        for axis, model in zip(axes.flat, models):
            axis.set_title(f"{dataset} / {model}" if model else str(dataset))
            rows = frame[frame["model"] == model] if model else frame.iloc[0:0]
            rows = rows[rows["metric"].isin([metric, "trainable_percent"])]
            cells = _cells(rows)
            points, errors = [], []
            for method, rank in _variants(rows, study):
                n, mean, std = _cell(cells, method, rank, metric)
                _, share, _ = _cell(cells, method, rank, "trainable_percent")
                if _finite(mean) and _finite(share) and share > 0:
                    points.append((share, mean, _variant_label(method, rank)))
                    errors.append(_error(n, std))
            if not points:
                _no_data(axis, "no data" if rows.empty else f"no {metric} or trainable % data")
                continue
            front = pareto_front(points, higher)
            on_front = set(front)
            for (x, y, label), error in zip(points, errors):
                axis.errorbar([x], [y], yerr=[error] if error else None, fmt="o", markersize=3, elinewidth=0.6,
                              capsize=1.5, color="C3" if label in on_front else "C0", zorder=3)
            where = {label: (x, y) for x, y, label in points}
            axis.plot([where[label][0] for label in front], [where[label][1] for label in front],
                      drawstyle="steps-post", color="C3", linewidth=0.9, alpha=0.8,
                      label="Pareto front", zorder=2)
            xs = [x for x, _, _ in points]
            ys = [y for _, y, _ in points]
            axis.set_xscale("log")
            axis.set_xlim(min(xs) / 1.6, max(xs) * 2.2)  # room on the right for the labels
            span = (max(ys) - min(ys)) or max(abs(max(ys)), 1.0)
            top = max(y + e for y, e in zip(ys, errors))
            bottom = min(y - e for y, e in zip(ys, errors))
            axis.set_ylim(bottom - 0.08 * span, top + 0.1 * span)
            axis.set_xlabel("trainable parameters (%, log scale)")
            axis.set_ylabel(metric)
            axis.grid(linewidth=0.3, alpha=0.4)
            # labels in axes fractions, nudged apart so that 30+ variants stay readable
            x_low, x_high = (math.log10(v) for v in axis.get_xlim())
            y_low, y_high = axis.get_ylim()
            positions = [((math.log10(x) - x_low) / (x_high - x_low), (y - y_low) / (y_high - y_low))
                         for x, y, _ in points]
            labels = [label for _, _, label in points]
            fontsize = 5 if len(points) <= 20 else 4.3
            char_width = fontsize * 0.56 / 72 / (PAGE_WIDTH / ncols * 0.8)
            line_height = fontsize * 1.2 / 72 / (panel_height * 0.72)
            anchors = _spread_labels(positions, labels, char_width, line_height)
            for (x, y, label), (_, y_point), (x_text, y_text) in zip(points, positions, anchors):
                moved = abs(y_text - y_point) > line_height * 0.6
                axis.annotate(label, xy=(x, y), xycoords="data", xytext=(x_text, y_text), textcoords="axes fraction",
                              fontsize=fontsize, va="center", ha="left", color="0.1", zorder=4,
                              bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none",
                                    "alpha": 0.7},
                              arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.3, "shrinkA": 0,
                                          "shrinkB": 2} if moved else None)
            drawn = True
        if drawn:
            figure.legend(handles=[
                Line2D([], [], color="C3", marker="o", markersize=3, linewidth=0.9, label="Pareto front"),
                Line2D([], [], color="C0", marker="o", markersize=3, linestyle="none", label="dominated"),
                Line2D([], [], color="0.2", marker="|", markersize=5, linestyle="none",
                       label="± SD over seeds (n > 1)")],
                loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.0))
            figure.tight_layout(pad=0.4, rect=(0, 0, 1, 1 - 0.22 / height))
        else:
            figure.tight_layout(pad=0.4)
        _save_figure(figure, out_path)


# -- 3. efficiency --------------------------------------------------------------------------------------------

def _model_rows(frame, model):
    return frame[frame["model"] == model] if model else frame.iloc[0:0]


def _per_model(summary, study: Mapping, dataset, metrics):
    """The dataset's rows of these metrics, split by model: (frame, models, variants per model, cells per
    model, variant counts) — what the bar figures lay out."""
    dataset = _dataset(study, dataset)
    summary = _with_columns(summary, SUMMARY_COLUMNS)
    frame = summary[(summary["dataset"] == dataset) & summary["metric"].isin(list(metrics))]
    models = _models(study, summary, dataset) or [None]
    per_model = {model: _model_rows(frame, model) for model in models}
    variants = {model: _variants(rows, study) for model, rows in per_model.items()}
    cells = {model: _cells(rows) for model, rows in per_model.items()}
    counts = [max(1, len(keys)) for keys in variants.values()]
    return frame, models, variants, cells, counts


def efficiency_bars(summary, study: Mapping, out_path, dataset=None) -> None:
    """Rows = models of the Table-1 dataset, columns = training peak memory (MB), time (s) and energy (kWh):
    one horizontal bar per variant (mean, SD error bar where n > 1). A metric with no measured value for a
    model says 'not measured' (energy often is not measured on a CPU) rather than drawing zeros; a column
    measured for no model is drawn narrower."""
    plt = _pyplot()

    names = [metric for metric, _, _ in EFFICIENCY_METRICS]
    frame, models, variants, cells, counts = _per_model(summary, study, dataset, names)
    heights = [0.65 + _bar_height(max(counts)) * count for count in counts]
    measured = [bool(frame.loc[frame["metric"] == metric, "mean"].notna().any()) for metric in names]
    widths = [1.0 if any(measured) and flag else 0.6 for flag in measured]
    with plt.rc_context(FONT_SIZES):
        figure, axes = plt.subplots(len(models), len(names), squeeze=False,
                                    figsize=(PAGE_WIDTH, min(MAX_HEIGHT, 0.3 + sum(heights))),
                                    gridspec_kw={"height_ratios": heights, "width_ratios": widths})
        fontsize = 6 if max(counts) <= 20 else 4.5
        for row_axes, model in zip(axes, models):
            keys = variants[model]
            for column, (axis, (metric, title, factor)) in enumerate(zip(row_axes, EFFICIENCY_METRICS)):
                axis.set_title(f"{model}\n{title}" if model else title, fontsize=6.5)
                if not keys:
                    _no_data(axis)
                    continue
                values = [_cell(cells[model], method, rank, metric) for method, rank in keys]
                positions = list(range(len(keys)))
                axis.set_ylim(len(keys) - 0.5, -0.5)
                axis.set_yticks(positions)
                axis.set_yticklabels([_variant_label(m, r) for m, r in keys] if column == 0 else [],
                                     fontsize=fontsize)
                if not any(_finite(mean) for _, mean, _ in values):
                    axis.text(0.5, 0.5, "not measured", transform=axis.transAxes, ha="center", va="center",
                              color="0.4", fontsize=7)
                    axis.set_xticks([])
                    continue
                drawn = [(position, mean * factor, _error(n, std) * factor)
                         for position, (n, mean, std) in zip(positions, values) if _finite(mean)]
                axis.barh([p for p, _, _ in drawn], [m for _, m, _ in drawn], xerr=[e for _, _, e in drawn],
                          height=0.7, color="C0", error_kw={"elinewidth": 0.6, "capsize": 1.2, "ecolor": "0.2"})
                for position, (_, mean, _) in zip(positions, values):
                    if not _finite(mean):
                        axis.text(0, position, " n/a", va="center", ha="left", fontsize=fontsize, color="0.4")
                axis.set_xlim(left=0)
                axis.grid(axis="x", linewidth=0.3, alpha=0.5)
                axis.set_axisbelow(True)
        figure.tight_layout(pad=0.4, h_pad=0.5, w_pad=1.0)
        _save_figure(figure, out_path)


# -- 4. metric correlations -----------------------------------------------------------------------------------

def correlation_matrix(correlations, dataset, order: Sequence[str] = ()):
    """(metric names, Pearson r matrix, p matrix) of one dataset from the pairwise rows (each pair listed once):
    both triangles filled, r = 1 on the diagonal (p NaN there), NaN where a pair is missing or undefined.
    Metrics named in `order` come first in that order, then the rest as they first appear."""
    import numpy as np

    correlations = _with_columns(correlations, CORRELATION_COLUMNS)
    rows = correlations[correlations["dataset"] == dataset]
    names = _ordered([name for pair in zip(rows["metric_a"], rows["metric_b"]) for name in pair], list(order))
    index = {name: i for i, name in enumerate(names)}
    r = np.full((len(names), len(names)), np.nan)
    p = np.full((len(names), len(names)), np.nan)
    for _, row in rows.iterrows():
        i, j = index.get(row["metric_a"]), index.get(row["metric_b"])
        if i is None or j is None or i == j:
            continue
        r_value = float(row["pearson_r"]) if _finite(row["pearson_r"]) else np.nan
        p_value = float(row["pearson_p"]) if _finite(row["pearson_p"]) else np.nan
        r[i, j] = r[j, i] = r_value
        p[i, j] = p[j, i] = p_value
    np.fill_diagonal(r, 1.0)
    return names, r, p


def correlation_heatmap(correlations, study: Mapping, out_path, dataset=None) -> None:
    """The Pearson r matrix of the Table-1 dataset's metrics (over all runs), colour fixed to [-1, 1]; each cell
    gives r, with * where p < alpha; undefined pairs grey 'n/a'; n (runs) in the title."""
    plt = _pyplot()
    import numpy as np

    dataset = _dataset(study, dataset)
    alpha = float(study.get("statistics", {}).get("alpha", 0.05))
    names, r, p = correlation_matrix(correlations, dataset, study.get("statistics", {}).get("compare_metrics", ()))
    correlations = _with_columns(correlations, CORRELATION_COLUMNS)
    rows = correlations[correlations["dataset"] == dataset]
    ns = sorted({int(n) for n in rows["n"] if _finite(n)})
    n_text = "" if not ns else (f", n = {ns[0]} runs" if len(ns) == 1 else f", n = {ns[0]}-{ns[-1]} runs")
    k = len(names)
    side = min(PAGE_WIDTH - 0.5, 1.6 + 0.42 * k)
    with plt.rc_context(FONT_SIZES):
        figure, axis = plt.subplots(figsize=(PAGE_WIDTH if k > 1 else 4.0, min(MAX_HEIGHT, side + 0.3)))
        axis.set_title(f"Pearson correlation between metrics: {dataset}{n_text}")
        if k < 2:
            _no_data(axis, "no data" if k == 0 else "only one metric: no pairs")
            for spine in axis.spines.values():
                spine.set_visible(False)
        else:
            cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
            image = axis.imshow(np.ma.masked_invalid(r), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
            fontsize = 7 if k <= 8 else (5.5 if k <= 12 else (4.5 if k <= 16 else 3.5))
            for i in range(k):
                for j in range(k):
                    value = r[i, j]
                    if not np.isfinite(value):
                        text, colour = "n/a", "0.35"
                    else:
                        star = "*" if i != j and np.isfinite(p[i, j]) and p[i, j] < alpha else ""
                        text = f"{value:.2f}{star}" if i != j else "1"
                        colour = "white" if abs(value) > 0.6 else "black"
                    axis.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)
            axis.set_xticks(range(k))
            axis.set_yticks(range(k))
            axis.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor")
            axis.set_yticklabels(names)
            axis.tick_params(length=0)
            bar = figure.colorbar(image, ax=axis, fraction=0.04, pad=0.02)
            bar.set_label(f"Pearson r  (* p < {alpha:g})")
        figure.tight_layout(pad=0.4)
        _save_figure(figure, out_path)


# -- 5. output diversity --------------------------------------------------------------------------------------

def diversity_comparison(summary, study: Mapping, out_path, dataset=None) -> None:
    """One panel per model of the Table-1 dataset: grouped horizontal bars per variant of distinct-1,
    distinct-2, MATTR and mean pairwise cosine similarity of the outputs (mean, SD where n > 1). The panels
    are stacked (rows = models) when they fit a page, else side by side."""
    plt = _pyplot()

    dataset = _dataset(study, dataset)
    frame, models, variants, cells, counts = _per_model(summary, study, dataset, DIVERSITY_METRICS)
    group_height = 0.17 if max(counts) <= 20 else 0.13
    stacked = [0.6 + group_height * count for count in counts]
    legend_height = 0.3
    if sum(stacked) + legend_height > MAX_HEIGHT and len(models) > 1:  # too tall as rows: side by side
        ncols = min(len(models), 3)
        nrows = math.ceil(len(models) / ncols)
        height = min(MAX_HEIGHT, legend_height + nrows * (0.6 + group_height * max(counts)))
        ratios = [1] * nrows
    else:
        ncols, nrows = 1, len(models)
        height = min(MAX_HEIGHT, legend_height + sum(stacked))
        ratios = stacked
    bar = 0.8 / len(DIVERSITY_METRICS)
    with plt.rc_context(FONT_SIZES):
        figure, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH, height), squeeze=False,
                                    gridspec_kw={"height_ratios": ratios})
        for axis in axes.flat[len(models):]:
            axis.set_visible(False)
        fontsize = 6 if max(counts) <= 20 else 4.5
        handles = {}
        for axis, model in zip(axes.flat, models):
            keys = variants[model]
            axis.set_title(f"{dataset} / {model}" if model else str(dataset))
            if not keys:
                _no_data(axis)
                continue
            for position in range(1, len(keys), 2):
                axis.axhspan(position - 0.5, position + 0.5, color="0.94", linewidth=0, zorder=0)
            drawn = False
            for offset, metric in enumerate(DIVERSITY_METRICS):
                values = [_cell(cells[model], method, rank, metric) for method, rank in keys]
                present = [(position - 0.4 + bar * (offset + 0.5), mean, _error(n, std))
                           for position, (n, mean, std) in enumerate(values) if _finite(mean)]
                if not present:
                    continue
                drawn = True
                handles[metric] = axis.barh([p for p, _, _ in present], [m for _, m, _ in present],
                                            xerr=[e for _, _, e in present], height=bar * 0.92, color=f"C{offset}",
                                            label=metric, zorder=2,
                                            error_kw={"elinewidth": 0.5, "capsize": 0.8, "ecolor": "0.2"})
            axis.set_ylim(len(keys) - 0.5, -0.5)
            axis.set_yticks(range(len(keys)))
            axis.set_yticklabels([_variant_label(m, r) for m, r in keys], fontsize=fontsize)
            if not drawn:
                axis.text(0.5, 0.5, "no diversity metrics", transform=axis.transAxes, ha="center", va="center",
                          color="0.4", fontsize=7)
                axis.set_xticks([])
                continue
            axis.axvline(0, color="0.3", linewidth=0.5)
            axis.grid(axis="x", linewidth=0.3, alpha=0.5)
            axis.set_axisbelow(True)
        if handles:
            figure.legend([handles[m] for m in DIVERSITY_METRICS if m in handles],
                          [m for m in DIVERSITY_METRICS if m in handles], loc="lower center",
                          ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 0.0))
            figure.tight_layout(pad=0.4, rect=(0, legend_height / height, 1, 1))
        else:
            figure.tight_layout(pad=0.4)
        _save_figure(figure, out_path)
