"""Table 1 (methods) and the significance table, rendered from the statistics."""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from peftstudy.data.prepare import dataset_task
from peftstudy.metrics import catalogue
from peftstudy.report.labels import in_study_order, method_label, registered_label
from peftstudy.report.latex import flagged, is_nan, latex_escape, mean_std
from peftstudy.stats.against_baselines import BETTER, gating

# Table 1's two quality metrics by the task of its dataset (seeds 001/004 compare classifiers and QA); its
# efficiency columns. Headers, scales and digits are the metric catalogue's.
QUALITY_METRICS_BY_TASK = {"generation": ("bleu4", "rouge_l"), "classification": ("accuracy", "macro_f1"),
                           "extractive_qa": ("exact_match", "squad_f1")}
TABLE1_SIZE = ("trainable_percent", "stored_bytes")
TABLE1_EFFICIENCY = ("train_time_s", "train_peak_memory_bytes", "train_energy_kwh", "training_cost")


def quality_columns(study: Mapping) -> tuple:
    """(metric, LaTeX header) of Table 1's quality columns."""
    metrics = QUALITY_METRICS_BY_TASK[dataset_task(study["datasets"][study["report"]["table1_dataset"]])]
    return tuple((metric, latex_escape(catalogue.heading(metric))) for metric in metrics)


def baseline_comparisons(comparisons: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """Each variant against the baseline method (the comparisons whose side b is the baseline), keyed like a
    cell (method, rank = side a)."""
    if comparisons.empty:
        return comparisons
    baseline = study["statistics"]["baseline_method"]
    rows = comparisons[(comparisons["baseline_side"] == "b") & (comparisons["method_b"] == baseline)]
    return rows.rename(columns={"method_a": "method", "rank_a": "rank"}).reset_index(drop=True)


def table1(summary: pd.DataFrame, comparisons: pd.DataFrame, study: Mapping,
           baselines: pd.DataFrame | None = None, versus_trivial: pd.DataFrame | None = None) -> pd.DataFrame:
    """Methods compared on the study's Table-1 dataset: one row per (model, method, rank); quality marked
    where it differs from the baseline method after the family's multiple-comparison correction, and where it is not
    above every gating trivial baseline (not_above_trivial); then one row per trivial baseline (`baselines`:
    baselines.csv; `versus_trivial`: stats/against_baselines.csv)."""
    dataset = study["report"]["table1_dataset"]
    cells = summary[summary["dataset"] == dataset]
    against = baseline_comparisons(comparisons, study)
    rows = []
    for (model, method, rank), group in cells.groupby(["model", "method", "rank"], sort=False):
        by_metric = group.set_index("metric")
        row = {"dataset": dataset, "model": model, "method": method, "rank": rank, "n": int(by_metric["n"].max())}
        for metric in (*(m for m, _ in quality_columns(study)), "trainable_parameters", "trainable_percent", "stored_bytes",
                       *TABLE1_EFFICIENCY):
            if metric in by_metric.index:
                row[f"{metric}_mean"] = by_metric.loc[metric, "mean"]
                row[f"{metric}_std"] = by_metric.loc[metric, "std"]
        for metric, _ in quality_columns(study):
            match = against[(against["dataset"] == dataset) & (against["model"] == model) & (against["method"] == method)
                            & (against["rank"] == rank) & (against["metric"] == metric)] if len(against) else against
            row[f"{metric}_test"] = match["test"].iloc[0] if len(match) else ""
            row[f"{metric}_p_corrected"] = float(match["p_corrected"].iloc[0]) if len(match) else math.nan
            row[f"{metric}_significant"] = bool(len(match)) and str(match["significant"].iloc[0]) == "True"
        rows.append(row)
    table = in_study_order(pd.DataFrame(rows), study)
    trivial = trivial_rows(baselines, dataset, [m for m, _ in quality_columns(study)])
    for metric, _ in quality_columns(study):
        table[f"{metric}_not_above_trivial"] = [not_above_trivial(row, metric, trivial, versus_trivial)
                                                for _, row in table.iterrows()]
    return pd.concat([table, pd.DataFrame(trivial)], ignore_index=True) if trivial else table


def not_above_trivial(row, metric: str, trivial: list[dict], against: pd.DataFrame | None) -> bool:
    """Whether a cell is not above every gating trivial baseline on a metric: by the intervals over test examples
    (stats.against_baselines: not "better" than each) where the metric has per-example scores; otherwise (a
    corpus-level metric: BLEU-4) its mean is not above the best gating baseline's mean."""
    if against is not None and len(against):
        rows = against[(against["dataset"] == row["dataset"]) & (against["model"] == row["model"])
                       & (against["method"] == row["method"]) & (against["rank"] == row["rank"])
                       & (against["metric"] == metric)]
        rows = gating(rows)
        if len(rows):
            return not (rows["verdict"] == BETTER).all()
    means = [r[f"{metric}_mean"] for r in trivial if r.get("gate", True) and not is_nan(r.get(f"{metric}_mean", math.nan))]
    mean = row.get(f"{metric}_mean", math.nan)
    return bool(means) and not mean > max(means)


def trivial_rows(baselines: pd.DataFrame | None, dataset: str, metrics: list[str]) -> list[dict]:
    """Table rows of the trivial baselines on one dataset (peftstudy.baselines): model "", method
    "baseline:<name>", one deterministic prediction per example (no seeds: n = 1, no sd)."""
    if baselines is None or baselines.empty:
        return []
    rows = []
    on_dataset = baselines[baselines["dataset"] == dataset]
    for name, group in on_dataset.groupby("baseline", sort=False):
        values = group.set_index("metric")["value"]
        row = {"dataset": dataset, "model": "", "method": f"baseline:{name}", "rank": math.nan, "n": 1,
               "baseline_kind": group["kind"].iloc[0],
               "gate": str(group["gate"].iloc[0]) != "False" if "gate" in group else True}
        for metric in metrics:
            row[f"{metric}_mean"] = float(values[metric]) if metric in values.index else math.nan
            row[f"{metric}_std"], row[f"{metric}_n"] = math.nan, 1
        rows.append(row)
    return rows


def _size_cell(row, metric: str) -> str:
    """A size column (trainable %, stored MB; 'nan' when absent), dividing by 1 / scale as Table 1 always has:
    x / 1e6 and x * 1e-6 can differ in the last bit, and so in the third digit shown."""
    return f"{row.get(f'{metric}_mean', math.nan) / (1 / catalogue.scale(metric)):{catalogue.entry(metric).spec}}"


def _efficiency_cell(row, metric: str) -> str:
    mean = row.get(f"{metric}_mean", math.nan)
    if is_nan(mean):
        return "n/m"
    return f"{mean * catalogue.scale(metric):{catalogue.entry(metric).spec}}"


def table1_latex(table: pd.DataFrame, study: Mapping) -> str:
    dataset = study["report"]["table1_dataset"]
    settings = study["statistics"]
    baseline = registered_label(settings["baseline_method"])
    correction = {"holm": "Holm", "fdr_bh": "Benjamini--Hochberg"}[settings["correction"]]
    currency = study.get("costs", {}).get("price_sheet", {}).get("currency", "")
    headers = [catalogue.heading(metric, currency) for metric in TABLE1_EFFICIENCY]
    sizes = [catalogue.heading(metric) for metric in TABLE1_SIZE]
    cells, trivial = table[~trivial_mask(table)], table[trivial_mask(table)]
    lines = [
        r"\begin{table}[ht]", r"\centering", r"\small",
        rf"\caption{{Methods compared on \texttt{{{latex_escape(dataset)}}}: mean $\pm$ sample standard deviation over $n$ seeds;"
        rf" efficiency columns are means (n/m: not measured on this hardware, see Table~\ref{{tab:efficiency}})."
        rf" $^\dagger$: differs from {latex_escape(baseline.lower())} at $\alpha = {settings['alpha']}$ after {correction}"
        r" correction within each (model, metric) family, by a paired $t$-test where the seeds pair the runs and Welch's"
        r" otherwise (Table~\ref{tab:significance})."
        + (r" $^\ddagger$: not above every gating trivial baseline (the Trivial rows: predictions from the training"
           r" split alone, no model; all but the nearest example's reference): its bootstrap interval over the test"
           r" examples overlaps or lies below a baseline's (Table~\ref{tab:learned})"
           + (", or, for a corpus-level metric (BLEU-4), its mean is not above the best baseline's"
              if "bleu4" in dict(quality_columns(study)) else "") + "." if len(trivial) else "") + "}",
        r"\label{tab:methods}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        r"\begin{tabular}{llrllrr" + "r" * len(TABLE1_EFFICIENCY) + "}", r"\toprule",
        r"Model & Method & $n$ & " + " & ".join(header for _, header in quality_columns(study))
        + " & " + " & ".join(latex_escape(h) for h in (*sizes, *headers)) + r" \\",
        r"\midrule",
    ]
    previous_model = None
    for _, row in cells.iterrows():
        if previous_model is not None and row["model"] != previous_model:
            lines.append(r"\midrule")
        quality = []
        for metric, _ in quality_columns(study):
            cell = mean_std(row.get(f"{metric}_mean", math.nan), row.get(f"{metric}_std", math.nan))
            quality.append(cell + (r"$^\dagger$" if row.get(f"{metric}_significant") else "")
                           + (r"$^\ddagger$" if flagged(row.get(f"{metric}_not_above_trivial")) else ""))
        lines.append(" & ".join([
            r"\texttt{" + latex_escape(row["model"]) + "}" if row["model"] != previous_model else "",
            method_label(study, row["method"], row["rank"]),
            str(row["n"]),
            *quality,
            *(_size_cell(row, metric) for metric in TABLE1_SIZE),
            *(_efficiency_cell(row, metric) for metric in TABLE1_EFFICIENCY),
        ]) + r" \\")
        previous_model = row["model"]
    for index, (_, row) in enumerate(trivial.iterrows()):
        if index == 0:
            lines.append(r"\midrule")
        blank = ["--"] * (len(TABLE1_SIZE) + len(TABLE1_EFFICIENCY))
        lines.append(" & ".join([
            r"\textit{Trivial}" if index == 0 else "",
            latex_escape(trivial_label(row)), "--",
            *(mean_std(row.get(f"{metric}_mean", math.nan), math.nan) for metric, _ in quality_columns(study)),
            *blank]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)


def is_trivial(row) -> bool:
    """Whether a table row is a trivial baseline's (see trivial_rows)."""
    return str(row.get("method", "")).startswith("baseline:")


def trivial_mask(table: pd.DataFrame) -> pd.Series:
    """is_trivial of every row of a table."""
    return table["method"].astype(str).str.startswith("baseline:") if "method" in table else pd.Series(dtype=bool)


def trivial_label(row) -> str:
    from peftstudy.baselines import BASELINES

    name = str(row["method"]).removeprefix("baseline:")
    label = BASELINES[row["baseline_kind"]].label
    return label if name == row["baseline_kind"] else f"{label} ({name})"


PRACTICAL_LABELS = {"significant_and_meaningful": "sig. + meaningful", "significant_only": "sig. only",
                    "equivalent": "equivalent", "inconclusive": "inconclusive", "no_threshold": "no threshold"}


TEST_LABELS = {"paired_t": "paired", "welch_t": "Welch", "none": "--"}


def significance_rows(comparisons: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """The significance table's rows: each variant against the baseline on the quality metrics of the
    Table-1 dataset (its machine-readable twin, at full precision)."""
    rows = baseline_comparisons(comparisons, study)
    if rows.empty:
        return rows
    dataset = study["report"]["table1_dataset"]
    rows = rows[(rows["dataset"] == dataset) & rows["metric"].isin([m for m, _ in quality_columns(study)])]
    order = {metric: index for index, (metric, _) in enumerate(quality_columns(study))}
    rows = in_study_order(rows.assign(_metric=rows["metric"].map(order)), study, ("model", "_metric"))
    return rows.drop(columns="_metric")


def _p_text(p) -> str:
    return "--" if is_nan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def significance_latex(comparisons: pd.DataFrame, study: Mapping) -> str:
    """Each variant against the baseline: difference with CI, the test used, corrected p, Hedges' g with CI and
    the practical-significance label."""
    dataset = study["report"]["table1_dataset"]
    settings = study["statistics"]
    rows = significance_rows(comparisons, study)
    thresholds = ", ".join(f"{latex_escape(k)} {latex_escape(str(v))}" for k, v in settings["practical_thresholds"].items())
    correction = {"holm": "Holm", "fdr_bh": "Benjamini--Hochberg"}[settings["correction"]]
    lines = [
        r"\begin{table}[ht]", r"\centering", r"\scriptsize",
        rf"\caption{{Each method against {latex_escape(settings['baseline_method'])} on \texttt{{{latex_escape(dataset)}}}:"
        rf" difference of means (variant $-$ baseline) with its {int(100 * settings['confidence'])}\,\% CI; a paired $t$-test"
        r" when both were run on the same seeds (same data order and initialisation), Welch's otherwise; two-sided $p$"
        rf" after {correction} correction within each (model, metric) family; Hedges' $g$ (pooled SD) with its CI."
        rf" Practical significance against the thresholds ({thresholds}): significant and at least the threshold,"
        r" significant only, equivalent (the CI inside $\pm$threshold), or inconclusive. $n$ = seeds per side.}",
        r"\label{tab:significance}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        r"\begin{tabular}{lllrrlrrl}", r"\toprule",
        r"Model & Method & Metric & $n$ & $\Delta$ mean [CI] & Test & $p_{\mathrm{corr}}$ & $g$ [CI] & Practical \\",
        r"\midrule",
    ]
    names = dict(quality_columns(study))
    previous = None
    for _, row in rows.iterrows():
        if previous is not None and row["model"] != previous:
            lines.append(r"\midrule")
        difference = f"{row['mean_difference']:+.2f}"
        if not is_nan(row["diff_ci_low"]):
            difference += f" [{row['diff_ci_low']:+.2f}, {row['diff_ci_high']:+.2f}]"
        g = "--" if is_nan(row["hedges_g"]) else f"{row['hedges_g']:+.2f}"
        if not is_nan(row.get("hedges_g_ci_low", math.nan)):
            g += f" [{row['hedges_g_ci_low']:+.2f}, {row['hedges_g_ci_high']:+.2f}]"
        lines.append(" & ".join([
            r"\texttt{" + latex_escape(row["model"]) + "}" if row["model"] != previous else "",
            method_label(study, row["method"], row["rank"]),
            names[row["metric"]],
            f"{int(row['n_a'])}/{int(row['n_b'])}",
            difference,
            TEST_LABELS.get(row["test"], latex_escape(str(row["test"]))),
            _p_text(row["p_corrected"]),
            g,
            PRACTICAL_LABELS.get(row["practical"], latex_escape(str(row["practical"]))),
        ]) + r" \\")
        previous = row["model"]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)
