"""Tables of the measured metrics by group: quality, diversity, efficiency and cost on the Table-1 dataset;
classification, extractive QA and per-class scores on the datasets of those tasks.

One row per (model, method variant): mean over seeds (± sample sd when n > 1). A metric that was not
measured shows 'n/m' and the table notes say why (from metrics.csv); efficiency tables name the device
every figure was measured on; the cost table prints the price sheet it was computed with.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import pandas as pd

from peftstudy.data.prepare import dataset_task
from peftstudy.metrics import catalogue
from peftstudy.report.labels import in_study_order, method_label
from peftstudy.report.latex import is_nan, latex_escape
from peftstudy.report.tables import (
    is_trivial,
    trivial_label,
    trivial_mask,
    trivial_rows,
)

# name -> (title, its metrics); headers, scales and digits are the metric catalogue's.
GROUPS = {
    "quality": ("Quality beyond Table 1", ["rouge1", "rouge2", "rouge_lsum", "meteor", "bertscore_precision",
                                           "bertscore_recall", "bertscore_f1", "perplexity"]),
    "diversity": ("Diversity of the outputs", ["ttr", "mattr", "yules_k", "distinct_1", "distinct_2", "novel_ngram_rate",
                                               "repetition_rate", "mean_pairwise_cosine", "semantic_clusters",
                                               "silhouette"]),
    "efficiency": ("Efficiency", ["train_time_s", "time_per_step_s", "tokens_per_s", "train_peak_memory_bytes",
                                  "train_state_bytes", "train_step_peak_tensor_bytes", "train_energy_kwh",
                                  "inference_ms_per_example", "examples_per_s", "generate_peak_memory_bytes"]),
    "cost": ("Cost", ["training_cost", "training_energy_cost", "storage_cost_per_month", "inference_cost_per_1000"]),
}
# Tables over every dataset of one task (seeds 001/004), rather than over the Table-1 dataset.
TASK_GROUPS = {
    "classification": ("Text classification", ["accuracy", "macro_f1", "invalid_label_rate"]),
    "extractive_qa": ("Extractive question answering (SQuAD v1.1 scoring)", ["exact_match", "squad_f1"]),
}
GROUPS.update(TASK_GROUPS)
PER_CLASS = "per_class"
TABLE_NAMES = (*GROUPS, PER_CLASS)


def table_datasets(name: str, study: Mapping) -> list[str]:
    """The datasets a table covers: every dataset of its task, or the Table-1 dataset."""
    task = "classification" if name == PER_CLASS else name
    if task in TASK_GROUPS:
        used = {dataset for block in study["matrix"] for dataset in block["datasets"]}
        return [d for d, spec in study["datasets"].items() if d in used and dataset_task(spec) == task]
    return [study["report"]["table1_dataset"]]


def group_columns(name: str, study: Mapping) -> list[tuple]:
    """(metric, header, scale, digits) of each column: the cost table adds each scenario's TCO (and ROI)."""
    metrics = list(GROUPS[name][1])
    if name == "cost":
        for scenario in study.get("costs", {}).get("scenarios", []):
            metrics.append(f"tco[{scenario['name']}]")
            if "value_per_1000_requests" in scenario:
                metrics.append(f"roi[{scenario['name']}]")
    n = study.get("metrics", {}).get("diversity", {}).get("novel_ngram_n", 3)
    return [(metric, f"Novel {n}-grams" if metric == "novel_ngram_rate" else catalogue.heading(metric),
             catalogue.scale(metric), catalogue.digits(metric)) for metric in metrics]


# The tables that show the trivial baselines (peftstudy.baselines) below each dataset's cells: the quality ones.
WITH_TRIVIAL = ("quality", "classification", "extractive_qa")


def group_table(name: str, summary: pd.DataFrame, metrics: pd.DataFrame, study: Mapping,
                baselines: pd.DataFrame | None = None) -> pd.DataFrame:
    """The machine-readable twin: one row per cell, mean/std/n per metric of the group, full precision; in the
    quality tables, then each dataset's trivial baselines (`baselines`: baselines.csv; method "baseline:<name>")."""
    if name == PER_CLASS:
        return per_class_table(summary, study)
    cells = summary[summary["dataset"].isin(table_datasets(name, study))]
    rows = []
    for (dataset, model, method, rank), group in cells.groupby(["dataset", "model", "method", "rank"], sort=False):
        by_metric = group.set_index("metric")
        row = {"dataset": dataset, "model": model, "method": method, "rank": rank}
        for metric, *_ in group_columns(name, study):
            if metric in by_metric.index:
                row[f"{metric}_mean"] = by_metric.loc[metric, "mean"]
                row[f"{metric}_std"] = by_metric.loc[metric, "std"]
                row[f"{metric}_n"] = int(by_metric.loc[metric, "n"])
        rows.append(row)
    table = in_study_order(pd.DataFrame(rows), study, ("dataset", "model"))
    if name not in WITH_TRIVIAL:
        return table
    metric_names = [metric for metric, *_ in group_columns(name, study)]
    blocks = []
    for dataset in table_datasets(name, study):
        blocks.append(table[table["dataset"] == dataset] if len(table) else table)
        blocks.append(pd.DataFrame(trivial_rows(baselines, dataset, metric_names)))
    return pd.concat([block for block in blocks if len(block)], ignore_index=True) if any(map(len, blocks)) else table


PER_CLASS_MEASURES = ("precision", "recall", "f1")  # the metrics <measure>[<class>] of each class
CLASS_METRIC = re.compile(rf"^({'|'.join(PER_CLASS_MEASURES)})\[(.+)\]$")


def _per_class(measure: str) -> catalogue.Metric:
    """The catalogue's entry of a per-class measure (the family <measure>[<class>])."""
    return catalogue.entry(f"{measure}[class]")


def per_class_table(summary: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """One row per (cell, class): precision, recall and F1 (mean/std/n over seeds) from the per-class rows."""
    cells = summary[summary["dataset"].isin(table_datasets(PER_CLASS, study))]
    rows: dict[tuple, dict] = {}
    for _, entry in cells.iterrows():
        match = CLASS_METRIC.match(entry["metric"])
        if not match:
            continue
        measure, label = match.groups()
        key = (entry["dataset"], entry["model"], entry["method"], entry["rank"], label)
        row = rows.setdefault(key, dict(zip(("dataset", "model", "method", "rank", "class"), key)))
        row.update({f"{measure}_mean": entry["mean"], f"{measure}_std": entry["std"], f"{measure}_n": int(entry["n"])})
    table = pd.DataFrame(list(rows.values()))
    if table.empty:
        return table
    # Classes by name within each cell: in_study_order's sort is stable.
    return in_study_order(table.sort_values("class", kind="stable"), study, ("dataset", "model"))


def _cell(row, metric: str, scale: float, digits: int) -> str:
    mean, std = row.get(f"{metric}_mean", math.nan), row.get(f"{metric}_std", math.nan)
    if is_nan(mean):
        return "--" if is_trivial(row) else "n/m"  # a baseline has no likelihood, time or memory to measure
    spec = ".3g" if digits is None else f".{digits}f"  # None: three significant digits (costs span decades)
    text = f"{mean * scale:{spec}}"
    return text if is_nan(std) else text + f" $\\pm$ {std * scale:{spec}}"


def group_notes(name: str, metrics: pd.DataFrame, study: Mapping) -> list[str]:
    """Why each not-measured metric of the group was not measured, and on which devices figures were taken."""
    if name == PER_CLASS:
        return ["A generated label outside the label set is a miss for its true class and no class's prediction."]
    names = [m for m, *_ in group_columns(name, study)]
    rows = metrics[metrics["dataset"].isin(table_datasets(name, study)) & metrics["metric"].isin(names)]
    notes = []
    if name == "classification":
        for dataset in table_datasets(name, study):
            settings = {**study.get("generation", {}), **study["datasets"][dataset].get("generation", {})}
            if settings.get("classification_decoding", "likelihood") == "likelihood":
                notes.append(f"{dataset}: the label is the one of the label set with the highest likelihood under the"
                             " fine-tuned model (rank classification), so none falls outside it.")
            else:
                notes.append(f"{dataset}: the label is generated as text and compared whitespace-collapsed and"
                             " casefolded; one outside the label set counts as wrong.")
        notes.append("Macro-F1 averages the declared classes.")
    if name == "extractive_qa":
        notes.append("The answer is generated as text and scored by SQuAD v1.1's official normalisation (lower case,"
                     " no punctuation or articles), best over the gold answers.")
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
            if "value_per_1000_requests" in scenario:
                notes.append(f"ROI {scenario['name']}: ({scenario['value_per_1000_requests']} {sheet['currency']} per 1,000"
                             " requests x the requests served - TCO) / TCO.")
            notes.append(f"TCO {scenario['name']}: training + {scenario['months']} months x (storage + "
                         f"{scenario['requests_per_month']:,} requests per month).")
    return notes


def group_latex(name: str, table: pd.DataFrame, notes: list[str], study: Mapping) -> str:
    if name == PER_CLASS:
        return per_class_latex(table, notes, study)
    title, _ = GROUPS[name]
    columns = group_columns(name, study)
    datasets = table_datasets(name, study)
    where = ", ".join(rf"\texttt{{{latex_escape(d)}}}" for d in datasets)
    if not datasets:
        return _no_dataset_table(name, title, study)
    cells = table[~trivial_mask(table)]
    n_text = ("see Table~\\ref{tab:methods} for $n$" if name not in TASK_GROUPS else
              "$n$ = " + ", ".join(sorted({str(int(v)) for c in cells.columns if c.endswith("_n") for v in cells[c].dropna()})))
    lines = [r"\begin{table}[ht]", r"\centering", r"\scriptsize",
             rf"\caption{{{title} on {where}: mean ($\pm$ sample sd when $n > 1$) over the seeds"
             rf" of each cell ({n_text}). n/m: not measured (see the notes)."
             + (" Trivial: baselines predicting from the training split alone, no model (one deterministic run)."
                if trivial_mask(table).any() else "")
             + "}",
             rf"\label{{tab:{name}}}",
             # Shrunk to the text width when wider (a wide table must never run off the page).
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             r"\begin{tabular}{ll" + "r" * len(columns) + "}", r"\toprule",
             ("Dataset / model" if name in TASK_GROUPS else "Model") + " & Method & "
             + " & ".join(latex_escape(header) for _, header, *_ in columns) + r" \\", r"\midrule"]
    previous = None
    for _, row in table.iterrows():
        trivial = is_trivial(row)
        block = (row["dataset"], row["model"])
        model = row["model"] if name not in TASK_GROUPS else f"{row['dataset']} / {row['model']}"
        if trivial:
            model = "Trivial" if name not in TASK_GROUPS else f"{row['dataset']} / trivial"
        if previous is not None and block != previous:
            lines.append(r"\midrule")
        lines.append(" & ".join([
            ((r"\textit{" if trivial else r"\texttt{") + latex_escape(model) + "}") if block != previous else "",
            latex_escape(trivial_label(row)) if trivial else method_label(study, row["method"], row["rank"]),
            *(_cell(row, metric, scale, digits) for metric, _, scale, digits in columns),
        ]) + r" \\")
        previous = block
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if notes:
        lines += [r"\par\smallskip\begin{minipage}{0.95\linewidth}\scriptsize",
                  *(latex_escape(note) + r"\\" for note in notes), r"\end{minipage}"]
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def _no_dataset_table(name: str, title: str, study: Mapping) -> str:
    task = name.replace("_", " ")
    return "\n".join([r"\begin{table}[ht]", r"\centering", rf"\caption{{{title}.}}", rf"\label{{tab:{name}}}",
                      rf"\emph{{This study has no {task} dataset.}}", r"\end{table}", ""])


def per_class_latex(table: pd.DataFrame, notes: list[str], study: Mapping) -> str:
    if table.empty:
        return _no_dataset_table(PER_CLASS, "Per-class precision, recall and F1", study)
    lines = [r"\begin{table}[ht]", r"\centering", r"\scriptsize",
             r"\caption{Per-class precision, recall and F1 (\%) of the classification datasets: mean ($\pm$ sample sd"
             r" when $n > 1$) over seeds.}",
             rf"\label{{tab:{PER_CLASS}}}",
             r"\begin{tabular}{lllrrr}", r"\toprule",
             "Dataset / model & Method & Class & "
             + " & ".join(latex_escape(_per_class(measure).label) for measure in PER_CLASS_MEASURES) + r" \\",
             r"\midrule"]
    previous = None
    for _, row in table.iterrows():
        cell = (row["dataset"], row["model"], row["method"], row["rank"])
        if previous is not None and cell != previous:
            lines.append(r"\midrule")
        first = cell != previous
        lines.append(" & ".join([
            r"\texttt{" + latex_escape(f"{row['dataset']} / {row['model']}") + "}" if first else "",
            method_label(study, row["method"], row["rank"]) if first else "",
            r"\texttt{" + latex_escape(row["class"]) + "}",
            *(_cell(row, measure, _per_class(measure).scale, _per_class(measure).digits) for measure in PER_CLASS_MEASURES),
        ]) + r" \\")
        previous = cell
    lines += [r"\bottomrule", r"\end{tabular}"]
    if notes:
        lines += [r"\par\smallskip\begin{minipage}{0.95\linewidth}\scriptsize", *(latex_escape(note) + r"\\" for note in notes),
                  r"\end{minipage}"]
    lines += [r"\end{table}", ""]
    return "\n".join(lines)
