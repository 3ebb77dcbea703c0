"""Tables of the study's statistics (ANOVA, correlations, rank study, seed power) and of its comparisons across
QLoRA, architectures and domains. Each builder returns the machine-readable twin (full precision); each
``*_latex`` only formats it. Every number comes from results/{study}/stats/ or the summary.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

from peftstudy.data.prepare import dataset_task
from peftstudy.metrics import catalogue
from peftstudy.report.labels import in_study_order, method_label
from peftstudy.report.latex import is_nan, latex_escape

TEST_NAMES = {"classic_anova": "ANOVA", "welch_anova": "Welch ANOVA", "kruskal_wallis": "Kruskal--Wallis"}
STATS_TABLES = ("anova", "correlations", "rank_study", "power", "qlora", "architecture", "domain")


def _metric(name: str) -> str:
    return latex_escape(catalogue.label(name))


def _heading(name: str) -> str:
    return latex_escape(catalogue.heading(name))


def _number(value, spec: str = ".3g") -> str:
    return "--" if value is None or is_nan(value) else f"{value:{spec}}"


def _p(value) -> str:
    return "--" if value is None or is_nan(value) else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def _reasons(table: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The distinct non-empty texts of these reason/note columns (CSV reads an empty one back as NaN)."""
    found = {str(value) for column in columns if column in table.columns for value in table[column].dropna()}
    return sorted(text for text in found if text and text != "nan")


def _table(label: str, caption: str, header: Sequence[str], rows: Sequence[Sequence[str]], spec: str,
           notes: Sequence[str] = (), size: str = r"\scriptsize") -> str:
    """A booktabs table shrunk to the text width when wider; rows already LaTeX."""
    lines = [r"\begin{table}[ht]", r"\centering", size, rf"\caption{{{caption}}}", rf"\label{{tab:{label}}}"]
    if rows:
        lines += [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
                  rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule",
                  *(" & ".join(row) + r" \\" for row in rows), r"\bottomrule", r"\end{tabular}}"]
    else:
        lines.append(r"\emph{Nothing to show for this study (see the caption).}")
    if notes:
        lines += [r"\par\smallskip\begin{minipage}{0.95\linewidth}\scriptsize",
                  *(latex_escape(note) + r"\\" for note in notes), r"\end{minipage}"]
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def _variant(study: Mapping, method: str, rank) -> str:
    return method_label(study, method, rank)


# ---------------------------------------------------------------------------- ANOVA


def anova_rows(one_way: pd.DataFrame, two_way: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """One-way ANOVA per (dataset, model, metric) with its checks and the recommended test, then the two-way
    terms; skipped families keep their reason."""
    one = one_way.assign(analysis="one-way") if len(one_way) else one_way
    two = two_way.assign(analysis="two-way") if len(two_way) else two_way
    return pd.concat([one, two], ignore_index=True) if len(one) or len(two) else pd.DataFrame()


def anova_latex(table: pd.DataFrame, study: Mapping) -> str:
    alpha = study["statistics"]["alpha"]
    rows = []
    one = table[table["analysis"] == "one-way"] if len(table) else table
    for _, row in one.iterrows():
        if isinstance(row.get("skipped_reason"), str) and row["skipped_reason"]:
            continue
        recommended = row["recommended"]
        p_recommended = {"classic_anova": row["p_value"], "welch_anova": row["welch_p"],
                         "kruskal_wallis": row["kruskal_p"]}.get(recommended, math.nan)
        rows.append([rf"\texttt{{{latex_escape(row['dataset'])} / {latex_escape(row['model'])}}}", _metric(row["metric"]),
                     str(int(row["n_variants"])), str(int(row["n_observations"])),
                     f"{_number(row['f'], '.2f')} ({int(row['df_between'])}, {int(row['df_within'])})", _p(row["p_value"]),
                     _number(row["eta_squared"], ".2f"), _number(row["omega_squared"], ".2f"),
                     _p(row["shapiro_p"]), _p(row["levene_p"]),
                     TEST_NAMES.get(recommended, latex_escape(str(recommended))), _p(p_recommended)])
    two = table[table["analysis"] == "two-way"] if len(table) else table
    notes = [f"Two-way (method x {row['factor']}): {row['metric']} on"
             f" {row['model'] if row['factor'] == 'dataset' else row['dataset']}, {row['term']}:"
             f" F = {_number(row['f'], '.2f')}, p = {_p(row['p_value'])}, partial eta2 = {_number(row['partial_eta_squared'], '.2f')}"
             for _, row in two.iterrows()
             if not (isinstance(row.get("skipped_reason"), str) and row["skipped_reason"]) and row["term"] != "Residual"]
    skipped = sorted({str(r) for r in table.get("skipped_reason", pd.Series(dtype=str)).dropna() if str(r)})
    if skipped:
        notes.append("Skipped: " + "; ".join(skipped[:6]) + (" ..." if len(skipped) > 6 else ""))
    undefined = _reasons(one, ("shapiro_note", "levene_note", "welch_note", "kruskal_note"))
    notes = [f"-- (undefined at this n): {reason}" for reason in undefined[:6]] + notes
    caption = (r"One-way ANOVA across method variants with at least two seeds, per dataset, model and metric: $F$"
               r" (df), $p$, $\eta^2$ and $\omega^2$; Shapiro--Wilk on the residuals and Levene (median) as assumption"
               r" checks, and the test they recommend (classic ANOVA, Welch's ANOVA for unequal variances, Kruskal--Wallis"
               rf" for non-normal residuals) with its $p$. Tukey HSD pairs are in \texttt{{results/{latex_escape(study['study'])}/stats/tukey\_hsd.csv}};"
               rf" $\alpha = {alpha}$.")
    header = ["Dataset / model", "Metric", "$k$", "$N$", "$F$ (df)", "$p$", r"$\eta^2$", r"$\omega^2$", "Shapiro $p$",
              "Levene $p$", "Recommended", "$p$"]
    return _table("anova", caption, header, rows, "llrrrrrrrrlr", notes[:25])


# ---------------------------------------------------------------------------- correlations


def correlation_rows(correlations: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    dataset = study["report"]["table1_dataset"]
    if correlations.empty:
        return correlations
    return correlations[correlations["dataset"] == dataset].reset_index(drop=True)


def correlations_latex(table: pd.DataFrame, study: Mapping) -> str:
    alpha = study["statistics"]["alpha"]
    rows = [[_metric(r["metric_a"]), _metric(r["metric_b"]), str(int(r["n"])),
             _number(r["pearson_r"], "+.2f") + ("*" if not is_nan(r["pearson_p"]) and r["pearson_p"] < alpha else ""),
             _p(r["pearson_p"]), _number(r["spearman_rho"], "+.2f"), _p(r["spearman_p"])]
            for _, r in table.iterrows()]
    caption = (rf"Correlation between metrics across the runs on \texttt{{{latex_escape(study['report']['table1_dataset'])}}}"
               rf" (every run of every variant; $n$ runs): Pearson $r$ and Spearman $\rho$ with two-sided $p$ (uncorrected);"
               rf" * marks $p < {alpha}$. See also Figure~\ref{{fig:correlation_heatmap}}.")
    notes = [f"-- (undefined): {reason}" for reason in _reasons(table, ("reason",))]
    return _table("correlations", caption, ["Metric", "Metric", "$n$", "$r$", "$p$", r"$\rho$", "$p$"], rows, "llrrrrr",
                  notes)


# ---------------------------------------------------------------------------- rank study


def rank_study_rows(rank_study: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    return rank_study.reset_index(drop=True)


def rank_study_latex(table: pd.DataFrame, study: Mapping) -> str:
    options = study["statistics"]["rank_study"]
    rows = []
    if len(table):
        for (dataset, model, metric), group in table.groupby(["dataset", "model", "metric"], sort=True):
            group = group.assign(_rank=group["rank"].astype(int)).sort_values("_rank")
            means = "; ".join(f"{int(r['_rank'])}: {_number(r['mean'], '.3g')}"
                              + ("" if is_nan(r["ci_low"]) else f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]")
                              for _, r in group.iterrows())
            first = group.iloc[0]
            best = first["best_rank"]
            share = group[group["_rank"] == best]["bootstrap_choice_fraction"] if not is_nan(best) else pd.Series(dtype=float)
            best_text = "--" if is_nan(best) else f"{int(best)}" + (f" ({100 * share.iloc[0]:.0f}\\,\\%)" if len(share) and not is_nan(share.iloc[0]) else "")
            knee = "--" if is_nan(first["knee_rank"]) else str(int(first["knee_rank"]))
            rows.append([rf"\texttt{{{latex_escape(dataset)} / {latex_escape(model)}}}", _metric(metric),
                         str(int(group["n"].max())), means, knee, best_text])
    caption = (rf"Rank study of \texttt{{{latex_escape(options['method'])}}}: mean [{int(100 * study['statistics']['confidence'])}\,\% CI]"
               r" per rank, the saturation point (knee of the mean-vs-rank curve, Kneedle), and the best rank: the smallest"
               r" rank whose mean is within the practical threshold of the best mean, with the share of"
               rf" {options['resamples']} seed bootstraps that choose it. See Figure~\ref{{fig:rank_saturation}}.")
    notes = [f"-- (undefined): {reason}" for reason in _reasons(table, ("ci_note", "knee_reason", "bootstrap_reason"))]
    return _table("rank_study", caption, ["Dataset / model", "Metric", "$n$", "Mean per rank", "Knee", "Best rank"],
                  rows, "llrp{0.5\\linewidth}rr", notes[:6])


# ---------------------------------------------------------------------------- seed power


def power_rows(power: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    if power.empty:
        return power
    baseline = study["statistics"]["baseline_method"]
    rows = power[(power["dataset"] == study["report"]["table1_dataset"]) & (power["method_b"] == baseline)
                 & (power["rank_b"] == "")]
    return rows.rename(columns={"method_a": "method", "rank_a": "rank"}).pipe(in_study_order, study, ("model", "metric"))


def power_latex(table: pd.DataFrame, study: Mapping) -> str:
    target = study["statistics"]["power"]
    rows, omitted = [], 0
    for _, r in table.iterrows():
        if is_nan(r.get("threshold", math.nan)):
            continue
        if is_nan(r.get("power_current", math.nan)) and is_nan(r.get("seeds_needed", math.nan)):
            omitted += 1
            continue
        rows.append([rf"\texttt{{{latex_escape(r['model'])}}}", _variant(study, r["method"], r["rank"]), _metric(r["metric"]),
                     latex_escape(str(r.get("design", ""))), _number(r["threshold"], ".3g"), _number(r["sd_used"], ".3g"),
                     str(int(r["n_current"])) if not is_nan(r["n_current"]) else "--", _number(r["power_current"], ".2f"),
                     "--" if is_nan(r["seeds_needed"]) else str(int(r["seeds_needed"]))])
    reasons = sorted({str(x) for x in table.get("reason", pd.Series(dtype=str)).dropna() if str(x)})
    caption = (rf"Were the seeds enough? For each comparison with the baseline that has a practical threshold: the"
               rf" standard deviation observed across seeds, the power to detect a difference of the threshold with the"
               rf" seeds run ($\alpha = {study['statistics']['alpha']}$, two-sided $t$-test of the design used), and the seeds"
               rf" per method needed for {int(100 * target)}\,\% power.")
    return _table("power", caption, ["Model", "Method", "Metric", "Design", "Threshold", "SD", "$n$", "Power", "Seeds needed"],
                  rows, "lllllrrrr", [f"{omitted} comparisons with a threshold omitted: power undefined (e.g. a side"
                                      " run on one seed)."] * bool(omitted) + [f"Not computed: {r}" for r in reasons[:5]])


# ---------------------------------------------------------------------------- QLoRA, architecture, domain

# Its columns, shown as the metric catalogue says.
QLORA_METRICS = ("bleu4", "rouge_l", "train_peak_memory_bytes", "train_state_bytes", "train_step_peak_tensor_bytes",
                 "train_time_s", "inference_ms_per_example", "base_weight_bytes")


def _cell_means(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """(model, method, rank, metric) -> mean, std, n on one dataset."""
    return summary[summary["dataset"] == dataset]


def qlora_rows(summary: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """QLoRA variants beside full fine-tuning and LoRA of the same rank, with changes relative to full."""
    dataset = study["report"]["table1_dataset"]
    cells = _cell_means(summary, dataset)
    kinds = {name: spec["kind"] for name, spec in study["methods"].items()}
    rows = []
    for model, group in cells.groupby("model", sort=True):
        qlora = group[group["method"].map(kinds) == "qlora"]
        if qlora.empty:
            continue
        ranks = set(qlora["rank"])
        keep = group[(group["method"].map(kinds) == "qlora") | (group["method"] == study["statistics"]["baseline_method"])
                     | ((group["method"].map(kinds) == "lora") & group["rank"].isin(ranks))]
        full = group[group["method"] == study["statistics"]["baseline_method"]].set_index("metric")["mean"]
        for (method, rank), variant in keep.groupby(["method", "rank"], sort=False):
            by_metric = variant.set_index("metric")
            row = {"dataset": dataset, "model": model, "method": method, "rank": rank, "n": int(by_metric["n"].max())}
            for metric in QLORA_METRICS:
                if metric in by_metric.index:
                    row[f"{metric}_mean"] = by_metric.loc[metric, "mean"]
                    if metric in full.index and full[metric]:
                        row[f"{metric}_vs_full"] = by_metric.loc[metric, "mean"] / full[metric] - 1
            rows.append(row)
    return in_study_order(pd.DataFrame(rows), study)


def qlora_latex(table: pd.DataFrame, study: Mapping) -> str:
    rows = []
    for _, r in table.iterrows():
        cells = []
        for metric in QLORA_METRICS:
            mean = r.get(f"{metric}_mean", math.nan)
            change = r.get(f"{metric}_vs_full", math.nan)
            text = "--" if is_nan(mean) else f"{mean * catalogue.scale(metric):{catalogue.entry(metric).spec}}"
            if not is_nan(change) and r["method"] != study["statistics"]["baseline_method"] and metric != "base_weight_bytes":
                text += f" ({100 * change:+.0f}\\,\\%)"
            cells.append(text)
        rows.append([rf"\texttt{{{latex_escape(r['model'])}}}", _variant(study, r["method"], r["rank"]), str(r["n"]), *cells])
    caption = (rf"QLoRA efficiency on \texttt{{{latex_escape(study['report']['table1_dataset'])}}}: QLoRA beside full"
               r" fine-tuning and LoRA of the same rank; means over the seeds, in brackets the change relative to full"
               r" fine-tuning. Base weights: the bytes the frozen base occupies (quantized for QLoRA).")
    return _table("qlora", caption, ["Model", "Method", "$n$", *(_heading(m) for m in QLORA_METRICS)], rows,
                  "llr" + "r" * len(QLORA_METRICS))


def _mean_sd(row) -> str:
    if is_nan(row["mean"]):
        return "--"
    return f"{row['mean']:.2f}" + ("" if is_nan(row["std"]) else f" $\\pm$ {row['std']:.2f}")


def _pivot_rows(summary: pd.DataFrame, study: Mapping, metric: str, datasets: Sequence[str], across: str) -> pd.DataFrame:
    cells = summary[summary["dataset"].isin(datasets) & (summary["metric"] == metric)]
    return in_study_order(cells[["dataset", "model", "method", "rank", "n", "mean", "std"]].reset_index(drop=True),
                          study, ("model",) if across == "dataset" else ())


def architecture_rows(summary: pd.DataFrame, study: Mapping, metric: str = "rouge_l") -> pd.DataFrame:
    """Each method variant on every model, on the Table-1 dataset."""
    return _pivot_rows(summary, study, metric, [study["report"]["table1_dataset"]], "model")


def domain_rows(summary: pd.DataFrame, study: Mapping, metric: str = "rouge_l") -> pd.DataFrame:
    """Each method variant on every text dataset the study trains on, per model."""
    used = [d for d in study["datasets"] if any(d in block["datasets"] for block in study["matrix"])]
    text = [d for d in used if dataset_task(study["datasets"][d]) == "generation"]
    return _pivot_rows(summary, study, metric, text, "dataset")


def _pivot_latex(table: pd.DataFrame, study: Mapping, label: str, caption: str, column: str, block: str | None) -> str:
    if table.empty:
        return _table(label, caption, [], [], "l")
    columns = list(dict.fromkeys(table[column]))
    rows, previous = [], None
    groups = table.groupby(block, sort=False) if block else [(None, table)]
    for key, group in groups:
        for (method, rank), variant in group.groupby(["method", "rank"], sort=False):
            by_column = {r[column]: r for _, r in variant.iterrows()}
            first = block and key != previous
            rows.append([rf"\texttt{{{latex_escape(key)}}}" if first else ("" if block else None),
                         _variant(study, method, rank),
                         *(_mean_sd(by_column[c]) if c in by_column else "--" for c in columns)])
            previous = key
    rows = [[cell for cell in row if cell is not None] for row in rows]
    header = ([block.capitalize()] if block else []) + ["Method", *(rf"\texttt{{{latex_escape(c)}}}" for c in columns)]
    return _table(label, caption, header, rows, ("l" if block else "") + "l" + "r" * len(columns))


def architecture_latex(table: pd.DataFrame, study: Mapping, metric: str = "rouge_l") -> str:
    caption = (rf"Architectures compared: {_metric(metric)} (mean $\pm$ sample sd over seeds) of each method on each model,"
               rf" on \texttt{{{latex_escape(study['report']['table1_dataset'])}}}. -- : the cell was not run.")
    return _pivot_latex(table, study, "architecture", caption, "model", None)


def domain_latex(table: pd.DataFrame, study: Mapping, metric: str = "rouge_l") -> str:
    caption = (rf"Domains compared: {_metric(metric)} (mean $\pm$ sample sd over seeds) of each method on each text dataset"
               r" the study trains on, per model. -- : the cell was not run.")
    return _pivot_latex(table, study, "domain", caption, "dataset", "model")


# name -> (twin from the stats frames, its LaTeX)
BUILDERS = {
    "anova": (lambda frames, study: anova_rows(frames["anova_oneway"], frames["anova_twoway"], study), anova_latex),
    "correlations": (lambda frames, study: correlation_rows(frames["correlations"], study), correlations_latex),
    "rank_study": (lambda frames, study: rank_study_rows(frames["rank_study"], study), rank_study_latex),
    "power": (lambda frames, study: power_rows(frames["power"], study), power_latex),
    "qlora": (lambda frames, study: qlora_rows(frames["summary"], study), qlora_latex),
    "architecture": (lambda frames, study: architecture_rows(frames["summary"], study), architecture_latex),
    "domain": (lambda frames, study: domain_rows(frames["summary"], study), domain_latex),
}


def build(name: str, inputs: Mapping[str, pd.DataFrame], study: Mapping) -> tuple[pd.DataFrame, str]:
    """(twin, LaTeX) of one stats table from the frames it reads."""
    if name not in BUILDERS:
        raise ValueError(f"unknown stats table {name!r}; expected one of {', '.join(STATS_TABLES)}")
    rows, latex = BUILDERS[name]
    table = rows(inputs, study)
    return table, latex(table, study)
