"""Tables of the measured metrics by group (quality, diversity, efficiency, cost) on the Table-1 dataset.

One row per (model, method variant): mean over seeds (± sample sd when n > 1). A metric that was not
measured shows 'n/m' and the table notes say why (from metrics.csv); efficiency tables name the device
every figure was measured on; the cost table prints the price sheet it was computed with.
"""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from .report import _isnan, in_study_order, latex_escape, method_label

# (metric, column header, scale, digits); scale converts the stored unit to the header's.
GROUPS = {
    "quality": ("Quality beyond Table 1", [
        ("rouge1", "ROUGE-1", 1, 2), ("rouge2", "ROUGE-2", 1, 2), ("rouge_lsum", "ROUGE-Lsum", 1, 2),
        ("meteor", "METEOR", 1, 2), ("bertscore_precision", "BERTScore P", 1, 3), ("bertscore_recall", "BERTScore R", 1, 3),
        ("bertscore_f1", "BERTScore F1", 1, 3), ("perplexity", "Perplexity", 1, 1)]),
    "diversity": ("Diversity of the outputs", [
        ("ttr", "TTR", 1, 3), ("mattr", "MATTR", 1, 3), ("yules_k", "Yule's K", 1, 0), ("distinct_1", "Dist-1", 1, 3),
        ("distinct_2", "Dist-2", 1, 3), ("novel_ngram_rate", "Novel 3-grams", 1, 3), ("repetition_rate", "Repeats", 1, 3),
        ("mean_pairwise_cosine", "Mean cos", 1, 3), ("semantic_clusters", "Clusters", 1, 1), ("silhouette", "Silhouette", 1, 3)]),
    "efficiency": ("Efficiency", [
        ("train_time_s", "Train (s)", 1, 1), ("time_per_step_s", "s/step", 1, 3), ("tokens_per_s", "Tokens/s", 1, 0),
        ("train_peak_memory_bytes", "Train peak (MB)", 1e-6, 0), ("train_energy_kwh", "Train energy (kWh)", 1, 4),
        ("inference_ms_per_example", "ms/example", 1, 2), ("examples_per_s", "Examples/s", 1, 1),
        ("generate_peak_memory_bytes", "Generate peak (MB)", 1e-6, 0)]),
    "cost": ("Cost", [
        ("training_cost", "Training", 1, None), ("training_energy_cost", "Training energy", 1, None),
        ("storage_cost_per_month", "Storage / month", 1, None), ("inference_cost_per_1000", "Inference / 1000", 1, None)]),
}
TABLE_NAMES = tuple(GROUPS)


def group_columns(name: str, study: Mapping) -> list[tuple]:
    columns = list(GROUPS[name][1])
    if name == "cost":
        for scenario in study.get("costs", {}).get("scenarios", []):
            columns.append((f"tco[{scenario['name']}]", f"TCO {scenario['name']}", 1, None))
    if name == "diversity":
        n = study.get("metrics", {}).get("diversity", {}).get("novel_ngram_n", 3)
        columns = [(m, f"Novel {n}-grams" if m == "novel_ngram_rate" else h, s, d) for m, h, s, d in columns]
    return columns


def group_table(name: str, summary: pd.DataFrame, metrics: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """The machine-readable twin: one row per cell, mean/std/n per metric of the group, full precision."""
    dataset = study["report"]["table1_dataset"]
    cells = summary[summary["dataset"] == dataset]
    rows = []
    for (model, method, rank), group in cells.groupby(["model", "method", "rank"], sort=False):
        by_metric = group.set_index("metric")
        row = {"dataset": dataset, "model": model, "method": method, "rank": rank}
        for metric, *_ in group_columns(name, study):
            if metric in by_metric.index:
                row[f"{metric}_mean"] = by_metric.loc[metric, "mean"]
                row[f"{metric}_std"] = by_metric.loc[metric, "std"]
                row[f"{metric}_n"] = int(by_metric.loc[metric, "n"])
        rows.append(row)
    return in_study_order(pd.DataFrame(rows), study)


def _cell(row, metric: str, scale: float, digits: int) -> str:
    mean, std = row.get(f"{metric}_mean", math.nan), row.get(f"{metric}_std", math.nan)
    if _isnan(mean):
        return "n/m"
    spec = ".3g" if digits is None else f".{digits}f"  # None: three significant digits (costs span decades)
    text = f"{mean * scale:{spec}}"
    return text if _isnan(std) else text + f" $\\pm$ {std * scale:{spec}}"


def group_notes(name: str, metrics: pd.DataFrame, study: Mapping) -> list[str]:
    """Why each not-measured metric of the group was not measured, and on which devices figures were taken."""
    dataset = study["report"]["table1_dataset"]
    names = [m for m, *_ in group_columns(name, study)]
    rows = metrics[(metrics["dataset"] == dataset) & metrics["metric"].isin(names)]
    notes = []
    reasons = rows[rows["value"].isna()].groupby("metric")["note"].agg(lambda s: sorted({t for t in s.dropna() if t}))
    for metric, texts in reasons.items():
        for text in texts:
            notes.append(f"{metric}: {text}")
    if name == "efficiency":
        devices = sorted(set(rows["device"].dropna()) - {""})
        notes.insert(0, "Measured on: " + (", ".join(devices) or "unrecorded device") + ".")
    if name == "cost" and not study.get("costs"):
        return ["No price sheet in the study config: no costs computed."]
    if name == "cost":
        sheet = study["costs"]["price_sheet"]
        prices = ", ".join(f"{k}: {v}/h" for k, v in sheet["device_hour"].items())
        notes.insert(0, f"Price sheet ({sheet['currency']}, {sheet['date']}; {sheet['source']}): device-hour {prices};"
                        f" kWh {sheet.get('kwh', 'n/a')}; storage GB-month {sheet.get('storage_gb_month', 'n/a')}.")
        for scenario in study["costs"].get("scenarios", []):
            notes.append(f"TCO {scenario['name']}: training + {scenario['months']} months x (storage + "
                         f"{scenario['requests_per_month']:,} requests per month).")
    return notes


def group_latex(name: str, table: pd.DataFrame, notes: list[str], study: Mapping) -> str:
    title, _ = GROUPS[name]
    columns = group_columns(name, study)
    dataset = study["report"]["table1_dataset"]
    lines = [r"\begin{table}[ht]", r"\centering", r"\scriptsize",
             rf"\caption{{{title} on \texttt{{{latex_escape(dataset)}}}: mean ($\pm$ sample sd when $n > 1$) over the seeds"
             rf" of each cell (see Table~\ref{{tab:methods}} for $n$). n/m: not measured (see the notes).}}",
             rf"\label{{tab:{name}}}",
             # Shrunk to the text width when wider (a wide table must never run off the page).
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             r"\begin{tabular}{ll" + "r" * len(columns) + "}", r"\toprule",
             "Model & Method & " + " & ".join(latex_escape(header) for _, header, *_ in columns) + r" \\", r"\midrule"]
    previous = None
    for _, row in table.iterrows():
        if previous is not None and row["model"] != previous:
            lines.append(r"\midrule")
        lines.append(" & ".join([
            r"\texttt{" + latex_escape(row["model"]) + "}" if row["model"] != previous else "",
            method_label(study, row["method"], row["rank"]),
            *(_cell(row, metric, scale, digits) for metric, _, scale, digits in columns),
        ]) + r" \\")
        previous = row["model"]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if notes:
        lines += [r"\par\smallskip\begin{minipage}{0.95\linewidth}\scriptsize",
                  *(latex_escape(note) + r"\\" for note in notes), r"\end{minipage}"]
    lines += [r"\end{table}", ""]
    return "\n".join(lines)
