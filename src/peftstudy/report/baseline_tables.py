"""The table that says, per trained dataset, whether each cell learned its task: its gate metrics with their
bootstrap intervals over test examples beside every trivial baseline's (stats.against_baselines)."""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from peftstudy.baselines import BASELINES
from peftstudy.metrics import catalogue
from peftstudy.report.labels import in_study_order, method_label
from peftstudy.report.latex import flagged, is_nan, latex_escape
from peftstudy.stats.against_baselines import BETTER, GATE_METRICS, gating


def learned_table(comparisons: pd.DataFrame, learned: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """One row per cell, then one per baseline, of each trained dataset: for each gate metric of its task the mean
    and its interval; a cell's `<metric>_beats_gates` (better than every gating baseline) and `learned`."""
    rows = []
    if comparisons.empty:
        return pd.DataFrame(rows)
    comparisons = comparisons[comparisons["metric"].isin({m for ms in GATE_METRICS.values() for m in ms})]
    for dataset, on_dataset in comparisons.groupby("dataset", sort=True):
        cells = []
        for (model, method, rank), cell in on_dataset.groupby(["model", "method", "rank"], sort=False):
            verdict = learned[(learned["dataset"] == dataset) & (learned["model"] == model)
                              & (learned["method"] == method) & (learned["rank"] == rank)]
            row = {"dataset": dataset, "model": model, "method": method, "rank": rank, "baseline": "",
                   "seeds": int(cell["seeds"].iloc[0]), "examples": int(cell["examples"].iloc[0]),
                   "task": verdict["task"].iloc[0] if len(verdict) else "",
                   "learned": verdict["learned"].iloc[0] if len(verdict) else None,
                   "reason": verdict["reason"].iloc[0] if len(verdict) else ""}
            for metric, on_metric in cell.groupby("metric", sort=False):
                first = on_metric.iloc[0]
                gated = gating(on_metric)
                row |= {f"{metric}_mean": first["cell_mean"], f"{metric}_ci_low": first["cell_ci_low"],
                        f"{metric}_ci_high": first["cell_ci_high"],
                        f"{metric}_beats_gates": bool(len(gated)) and bool((gated["verdict"] == BETTER).all())}
            cells.append(row)
        rows += in_study_order(pd.DataFrame(cells), study).to_dict("records")
        first_cell = on_dataset[["model", "method", "rank"]].iloc[0]
        of_first = on_dataset[(on_dataset[["model", "method", "rank"]] == first_cell).all(axis=1)]
        for name, baseline in of_first.groupby("baseline", sort=False):
            row = {"dataset": dataset, "model": "", "method": "", "rank": "", "baseline": name,
                   "baseline_kind": baseline["baseline_kind"].iloc[0], "gate": str(baseline["gate"].iloc[0]) == "True",
                   "examples": int(baseline["examples"].iloc[0])}
            for _, line in baseline.iterrows():
                row |= {f"{line['metric']}_mean": line["baseline_mean"], f"{line['metric']}_ci_low": line["baseline_ci_low"],
                        f"{line['metric']}_ci_high": line["baseline_ci_high"]}
            rows.append(row)
    return pd.DataFrame(rows)


def _interval_cell(row, metric: str) -> str:
    mean = row.get(f"{metric}_mean", math.nan)
    if is_nan(mean):
        return "--"
    scale, spec = catalogue.scale(metric), catalogue.entry(metric).spec
    if is_nan(row.get(f"{metric}_ci_low", math.nan)) or is_nan(row.get(f"{metric}_ci_high", math.nan)):
        return f"{mean * scale:{spec}} [--]"  # no interval (fewer than 2 test examples): never 'nan'
    return (f"{mean * scale:{spec}} [{row[f'{metric}_ci_low'] * scale:{spec}}, "
            f"{row[f'{metric}_ci_high'] * scale:{spec}}]")


def learned_latex(table: pd.DataFrame, study: Mapping, confidence: float) -> str:
    """Per dataset: its cells (a gate metric marked where the cell beats every gating baseline), then its baselines."""
    level = round(100 * confidence)
    lines = [
        r"\begin{table}[ht]", r"\centering", r"\small",
        rf"\caption{{Did each cell learn its task? Mean with its {level}\,\% percentile bootstrap interval over the test"
        r" examples (a cell's per-example score is its seeds' mean); each trivial baseline is one prediction per example"
        r" from the training split alone. $^\star$: the cell's interval lies above every gating baseline's (no overlap);"
        r" a cell \emph{learned} its task when it does so on at least one metric. Gating: every baseline but the nearest"
        r" training example's reference (a retrieval system, reported as it comes out). The claims about quality"
        r" are tested on cells that learned (Table~\ref{tab:claims}).}",
        r"\label{tab:learned}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        r"\begin{tabular}{lllll}", r"\toprule",
    ]
    if table.empty:
        lines += [r"\multicolumn{5}{l}{No trained dataset has a trivial baseline.} \\"]
    for dataset, block in table.groupby("dataset", sort=False):
        cells = block[block["baseline"].fillna("") == ""]
        task = next((t for t in cells.get("task", []) if isinstance(t, str) and t), "generation")
        metrics = list(GATE_METRICS[task])
        headers = [latex_escape(catalogue.heading(m)) for m in metrics] + [""] * (2 - len(metrics))
        if lines[-1] != r"\toprule":
            lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{5}}{{l}}{{\texttt{{{latex_escape(dataset)}}} ({latex_escape(task.replace('_', ' '))},"
                     rf" {int(block['examples'].max())} test examples)}} \\")
        lines.append(r"Model & Method ($n$ seeds) & " + " & ".join(headers) + r" & Learned \\")
        lines.append(r"\cmidrule(lr){1-5}")
        for _, row in cells.iterrows():
            values = [_interval_cell(row, m) + (r"$^\star$" if flagged(row.get(f"{m}_beats_gates")) else "")
                      for m in metrics] + [""] * (2 - len(metrics))
            learned = {"True": "yes", "False": "no"}.get(str(row.get("learned")), "undefined")
            lines.append(" & ".join([r"\texttt{" + latex_escape(row["model"]) + "}",
                                     f"{method_label(study, row['method'], row['rank'])} ({int(row['seeds'])})",
                                     *values, learned]) + r" \\")
        for index, (_, row) in enumerate(block[block["baseline"].fillna("") != ""].iterrows()):
            kind = row["baseline_kind"]
            label = BASELINES[kind].label if kind in BASELINES else kind
            label += "" if row["baseline"] == kind else f" ({row['baseline']})"
            values = [_interval_cell(row, m) for m in metrics] + [""] * (2 - len(metrics))
            lines.append(" & ".join([r"\textit{Trivial}" if index == 0 else "",
                                     latex_escape(label) + ("" if row["gate"] else r" (no gate)"), *values, ""]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)
