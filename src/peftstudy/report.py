"""LaTeX tables and the paper, rendered from the tidy statistics (the report only formats).

Every table is written twice: a CSV at full precision (the machine-readable
twin) and the booktabs ``.tex`` rendered from it.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from . import io
from .config import parse_variant
from .provenance import canonical_hash
from .data.prepare import dataset_task

METHOD_LABELS = {
    "full": "Full fine-tuning", "lora": "LoRA", "dora": "DoRA", "adalora": "AdaLoRA", "vera": "VeRA",
    "ia3": "(IA)$^3$", "qlora": "QLoRA", "prefix": "Prefix tuning", "prompt": "Prompt tuning", "bitfit": "BitFit",
    "ft_top_k": "FT top-$k$", "adapter": "Bottleneck adapter", "mam": "MAM adapter", "unipelt": "UniPELT",
    "lora_prefix": "LoRA + prefix",
}
BOTTLENECK_KINDS = {"adapter", "mam", "unipelt"}
QUALITY_COLUMNS = (("bleu4", "BLEU-4"), ("rouge_l", "ROUGE-L"))
# Table 1's two quality columns by the task of its dataset (seeds 001/004 compare classifiers and QA).
QUALITY_COLUMNS_BY_TASK = {"generation": QUALITY_COLUMNS,
                           "classification": (("accuracy", "Accuracy (\\%)"), ("macro_f1", "Macro-F1 (\\%)")),
                           "extractive_qa": (("exact_match", "EM (\\%)"), ("squad_f1", "F1 (\\%)"))}


def quality_columns(study: Mapping) -> tuple:
    from .data.prepare import dataset_task

    return QUALITY_COLUMNS_BY_TASK[dataset_task(study["datasets"][study["report"]["table1_dataset"]])]
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}


def latex_escape(text) -> str:
    return "".join(LATEX_SPECIALS.get(char, char) for char in str(text))


def method_label(study: Mapping, method: str, rank) -> str:
    """LaTeX label: the kind's name, plus the config name when it differs (e.g. two adapter styles)."""
    kind = study["methods"][method]["kind"]
    label = METHOD_LABELS.get(kind, latex_escape(kind))
    if method != kind:
        label += r" {\footnotesize(" + latex_escape(method) + ")}"
    if rank in ("", None) or _isnan(rank):
        return label
    symbol = "b" if kind in BOTTLENECK_KINDS else "r"  # adapters sweep their bottleneck size
    return f"{label} ${symbol}={rank}$"


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    if _isnan(mean):
        return "--"
    if _isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} $\\pm$ {std:.{digits}f}"


def _rank_key(rank) -> int:
    return -1 if rank in ("", None) or _isnan(rank) else int(rank)


def in_study_order(table: pd.DataFrame, study: Mapping, leading: tuple[str, ...] = ("model",)) -> pd.DataFrame:
    """Rows by the leading columns, then methods in the order the study declares them, then rank."""
    if table.empty:
        return table
    order = {name: index for index, name in enumerate(study["methods"])}
    table = table.copy()
    table["_order"] = [tuple(row[k] for k in leading) + (order.get(row["method"], len(order)), _rank_key(row["rank"]))
                       for _, row in table.iterrows()]
    return table.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def baseline_comparisons(comparisons: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """Each variant against the baseline method (the comparisons whose side b is the baseline), keyed like a
    cell (method, rank = side a)."""
    if comparisons.empty:
        return comparisons
    baseline = study["statistics"]["baseline_method"]
    rows = comparisons[(comparisons["baseline_side"] == "b") & (comparisons["method_b"] == baseline)]
    return rows.rename(columns={"method_a": "method", "rank_a": "rank"}).reset_index(drop=True)


# Table 1's efficiency columns: (metric, header, scale to the header's unit, digits).
TABLE1_EFFICIENCY = (("train_time_s", "Train time (s)", 1, 1), ("train_peak_memory_bytes", "Peak memory (MB)", 1e-6, 0),
                     ("train_energy_kwh", "Energy (kWh)", 1, 4), ("training_cost", "Cost", 1, None))


def table1(summary: pd.DataFrame, comparisons: pd.DataFrame, study: Mapping) -> pd.DataFrame:
    """Methods compared on the study's Table-1 dataset: one row per (model, method, rank); quality marked
    where it differs from the baseline after the family's multiple-comparison correction."""
    dataset = study["report"]["table1_dataset"]
    cells = summary[summary["dataset"] == dataset]
    against = baseline_comparisons(comparisons, study)
    rows = []
    for (model, method, rank), group in cells.groupby(["model", "method", "rank"], sort=False):
        by_metric = group.set_index("metric")
        row = {"dataset": dataset, "model": model, "method": method, "rank": rank, "n": int(by_metric["n"].max())}
        for metric in (*(m for m, _ in quality_columns(study)), "trainable_parameters", "trainable_percent", "stored_bytes",
                       *(m for m, *_ in TABLE1_EFFICIENCY)):
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
    return in_study_order(pd.DataFrame(rows), study)


def _efficiency_cell(row, metric: str, scale: float, digits) -> str:
    mean = row.get(f"{metric}_mean", math.nan)
    if _isnan(mean):
        return "n/m"
    spec = ".3g" if digits is None else f".{digits}f"
    return f"{mean * scale:{spec}}"


def table1_latex(table: pd.DataFrame, study: Mapping) -> str:
    dataset = study["report"]["table1_dataset"]
    settings = study["statistics"]
    baseline = METHOD_LABELS.get(settings["baseline_method"], settings["baseline_method"])
    correction = {"holm": "Holm", "fdr_bh": "Benjamini--Hochberg"}[settings["correction"]]
    currency = study.get("costs", {}).get("price_sheet", {}).get("currency", "")
    headers = [h if m != "training_cost" else f"Cost ({currency})" for m, h, *_ in TABLE1_EFFICIENCY]
    lines = [
        r"\begin{table}[ht]", r"\centering", r"\small",
        rf"\caption{{Methods compared on \texttt{{{latex_escape(dataset)}}}: mean $\pm$ sample standard deviation over $n$ seeds;"
        rf" efficiency columns are means (n/m: not measured on this hardware, see Table~\ref{{tab:efficiency}})."
        rf" $^\dagger$: differs from {latex_escape(baseline.lower())} at $\alpha = {settings['alpha']}$ after {correction}"
        r" correction within each (model, metric) family, by a paired $t$-test where the seeds pair the runs and Welch's"
        r" otherwise (Table~\ref{tab:significance}).}",
        r"\label{tab:methods}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        r"\begin{tabular}{llrllrr" + "r" * len(TABLE1_EFFICIENCY) + "}", r"\toprule",
        r"Model & Method & $n$ & " + " & ".join(header for _, header in quality_columns(study))
        + r" & Trainable (\%) & Stored (MB) & "
        + " & ".join(latex_escape(h) for h in headers) + r" \\",
        r"\midrule",
    ]
    previous_model = None
    for _, row in table.iterrows():
        if previous_model is not None and row["model"] != previous_model:
            lines.append(r"\midrule")
        quality = []
        for metric, _ in quality_columns(study):
            cell = mean_std(row.get(f"{metric}_mean", math.nan), row.get(f"{metric}_std", math.nan))
            quality.append(cell + (r"$^\dagger$" if row.get(f"{metric}_significant") else ""))
        lines.append(" & ".join([
            r"\texttt{" + latex_escape(row["model"]) + "}" if row["model"] != previous_model else "",
            method_label(study, row["method"], row["rank"]),
            str(row["n"]),
            *quality,
            f"{row.get('trainable_percent_mean', math.nan):.3g}",
            f"{row.get('stored_bytes_mean', math.nan) / 1e6:.3g}",
            *(_efficiency_cell(row, m, scale, digits) for m, _, scale, digits in TABLE1_EFFICIENCY),
        ]) + r" \\")
        previous_model = row["model"]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)


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
    return "--" if _isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


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
        if not _isnan(row["diff_ci_low"]):
            difference += f" [{row['diff_ci_low']:+.2f}, {row['diff_ci_high']:+.2f}]"
        g = "--" if _isnan(row["hedges_g"]) else f"{row['hedges_g']:+.2f}"
        if not _isnan(row.get("hedges_g_ci_low", math.nan)):
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


def _tabular(header: Sequence[str], rows: Sequence[Sequence], spec: str) -> str:
    body = [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows]
    return "\n".join([rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}"])


# The paper's figures (each a target under reports/{study}/figures/) and their captions: what n is, what is drawn.
FIGURES = {
    "rank_saturation": ("Rank study: mean quality per LoRA rank with its confidence band over the seeds, the"
                        " saturation point (dashed, Kneedle) and the best rank by the declared rule (star; the share of"
                        " seed bootstraps choosing it in each panel's title). Table~\\ref{tab:rank_study} has the numbers."),
    "quality_vs_parameters": ("Quality against trainable parameters (log scale) on the Table-1 dataset: each variant's"
                              " mean ($\\pm$ sd over seeds when $n > 1$); the line is the Pareto front (no variant has"
                              " fewer trainable parameters and higher quality)."),
    "efficiency": ("Training peak memory, time and energy per variant on the Table-1 dataset: means with sd error"
                   " bars over the seeds ($n$ as in Table~\\ref{tab:methods}); a quantity this hardware cannot measure"
                   " is marked not measured, never drawn as zero."),
    "correlation_heatmap": ("Pearson correlation between the compared metrics across every run on the Table-1 dataset;"
                            " * marks $p < \\alpha$ (uncorrected; Table~\\ref{tab:correlations})."),
    "diversity": ("Diversity of the outputs per variant on the Table-1 dataset: distinct-1/2, MATTR and the mean"
                  " pairwise cosine similarity of the outputs' embeddings (means $\\pm$ sd over seeds)."),
    "output_clusters": ("Semantic clustering of the outputs: every method variant's test outputs (first seed) embedded"
                        " with the sentence-embedding model and projected on their first two principal components; the"
                        " legend gives each variant's number of clusters (average linkage, cosine distance threshold"
                        " from the config). Methods whose outputs collapse to one point produce the same text for every"
                        " input."),
}


# The Results section: (subsection heading, whether it starts a page, its tables), in order. The workflow
# builds exactly these tables for the paper (common.smk reads paper_tables()).
RESULTS_SECTIONS = (
    (None, False, ("table1_methods", "significance", "anova", "power")),
    ("The data", True, ("data_card",)),
    ("The papers' claims beside this study's measurements", True, ("claims_check",)),
    ("Rank, quantization, architecture and domain", True, ("rank_study", "qlora", "architecture", "domain")),
    ("Quality, diversity, efficiency and cost", True, ("quality", "diversity", "efficiency", "cost", "correlations")),
    ("Classification and question answering", True, ("classification", "extractive_qa", "per_class")),
    ("Human evaluation", False, ("table2_human", "human_errors")),
)


def paper_tables() -> list[str]:
    return [name for _, _, tables in RESULTS_SECTIONS for name in tables]


def results_latex() -> str:
    lines = []
    for heading, new_page, tables in RESULTS_SECTIONS:
        if new_page:
            lines.append(r"\clearpage")
        if heading:
            lines.append(rf"\subsection{{{heading}}}")
        lines += [rf"\input{{tables/{name}.tex}}" for name in tables]
    return "\n".join(lines)


def figures_latex() -> str:
    blocks = []
    for name, caption in FIGURES.items():
        blocks += [r"\begin{figure}[p]", r"\centering",
                   rf"\includegraphics[width=\linewidth,height=0.8\textheight,keepaspectratio]{{figures/{name}.pdf}}",
                   rf"\caption{{{caption}}}", rf"\label{{fig:{name}}}", r"\end{figure}", ""]
    return "\n".join(blocks)


def run_provenance_latex(context: Mapping) -> str:
    """The per-run provenance table (a longtable: one row per run) with its machine and package legends."""
    rows = context.get("provenance_rows") or []
    if not rows:
        return ""
    stage_header = " & ".join(rf"\multicolumn{{3}}{{c}}{{{stage}}}" for stage in PROVENANCE_STAGES)
    header = ("Dataset & Model & Variant & Seed & " + " & ".join(["settings", "code", "machine"] * len(PROVENANCE_STAGES))
              + r" \\")
    body = "\n".join(" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows)
    legend = lambda items: "\n".join(rf"\item \textbf{{{key}}}: {latex_escape(text)}" for key, text in items)
    return rf"""
\subsection{{Per-run provenance}}
For every run and stage: the first hex digits of the SHA-256 of the run's resolved settings for that stage, of the
stage's code fingerprint (the package modules its workflow script imports), and the machine (M, with the facts that
decide which kernels run) and package versions (P) it ran with.
{{\footnotesize
\begin{{longtable}}{{llll{"lll" * len(PROVENANCE_STAGES)}}}
\toprule
 & & & & {stage_header} \\
{header}
\midrule
\endhead
{body}
\bottomrule
\end{{longtable}}}}
Machines:
\begin{{itemize}}
{legend(context["provenance_machines"])}
\end{{itemize}}
Package versions:
\begin{{itemize}}
{legend(context["provenance_packages"])}
\end{{itemize}}
"""


def paper_latex(study: Mapping, context: Mapping) -> str:
    """The paper: setup generated from the config and the recorded runs, then the tables, then provenance."""
    datasets = _tabular(
        ["Dataset", "Stands in for", "Source", "Licence", "Train", "Val.", "Test", "Runs"],
        [[name, spec.get("domain", ""), spec.get("corpus", spec.get("hub_id", "")) + f" ({spec['source']})",
          spec.get("licence", "not stated"),
          *(context["data_counts"].get(name, {}).get(split, "") for split in ("train", "validation", "test")),
          context["runs_per_dataset"].get(name, 0)]
         for name, spec in study["datasets"].items() if name in context["data_counts"]],
        r"l>{\raggedright\arraybackslash}p{5.5cm}l>{\raggedright\arraybackslash}p{5.5cm}rrrr",
    )
    models = _tabular(
        ["Model", "Family", "Source", "Parameters", "Base"],
        [[name, spec["family"], spec["source"], f"{context['model_parameters'].get(name, 0):,}",
          context["model_notes"].get(name, "")] for name, spec in study["models"].items() if name in context["model_parameters"]],
        "lllrl",
    )
    hyper = _tabular(["Method", "Kind", "Cells", "LR", "Epochs", "Batch x accum.", "Method settings"],
                     context["hyperparameter_rows"], r"lllrrl>{\raggedright\arraybackslash}p{9cm}")
    quantization = ""
    if context.get("quantization_rows"):
        quantization = (r"\paragraph{Quantized base weights.} Bytes of the quantized linear weights (packed data and"
                        r" quantization constants) against the same weights unquantized, as measured in each run."
                        "\n\\begin{center}\n" + _tabular(
                            ["Model", "Method", "Quantization", "Quantized (MB)", "Unquantized (MB)", "Saving (\\%)"],
                            context["quantization_rows"], "lllrrr") + "\n\\end{center}\n")
    shared = {k: v for k, v in study["training"].items() if k not in ("learning_rate", "epochs", "batch_size", "gradient_accumulation_steps")}
    exclusions = "\n".join(
        rf"\item {latex_escape(', '.join(f'{k}={v}' for k, v in e.items() if k != 'reason'))}: {latex_escape(e['reason'])}"
        for e in study["exclusions"]
    ) or r"\item None declared."
    packages = ", ".join(f"{latex_escape(k)} {latex_escape(v)}" for k, v in sorted(context["packages"].items()) if v)
    checksums = "\n".join(
        rf"\item \texttt{{{latex_escape(name)}}}: \texttt{{{digest[:16]}}}" for name, digest in sorted(context["data_checksums"].items())
    )
    hardware = context["hardware"]
    signatures = "\n".join(rf"\item {latex_escape(name)}: \texttt{{{latex_escape(text)}}}"
                           for name, text in sorted(context["metric_signatures"].items()) if text) or r"\item none recorded"
    figures, results = figures_latex(), results_latex()
    return rf"""\documentclass[10pt]{{article}}
\usepackage[margin=2cm,landscape]{{geometry}}
\usepackage{{booktabs}}
\usepackage{{array}}
\usepackage{{longtable}}
\usepackage{{graphicx}}
\usepackage{{hyperref}}
\title{{{latex_escape(study['title'])}}}
\author{{{latex_escape(study['report'].get('authors', 'Generated by peftstudy'))}}}
\date{{Study \texttt{{{latex_escape(study['study'])}}}, config {context['config_hash'][:12]}}}
\begin{{document}}
\maketitle

{latex_escape(study.get('description', ''))}

\section{{Setup}}
Every number in this report was computed by the pipeline from the runs listed in the provenance appendix;
nothing was typed in. {context['run_count']} training runs: {len(context['methods_used'])} method(s),
{latex_escape(seeds_text(study))}.

\paragraph{{Data.}} Splits are seeded (80/10/10 unless configured), deduplicated and recorded with checksums.
\begin{{center}}
{datasets}
\end{{center}}

\paragraph{{Models.}}
\begin{{center}}
{models}
\end{{center}}

\paragraph{{Hyper-parameters.}} Shared: {latex_escape(', '.join(f'{k}={v}' for k, v in shared.items()))}.
Generation: {latex_escape(', '.join(f'{k}={v}' for k, v in study['generation'].items()))}.
\begin{{center}}
{hyper}
\end{{center}}
{quantization}
\paragraph{{Metrics.}} On the test split. Quality: BLEU-4, ROUGE-1/2/L/Lsum F1 and METEOR (0--100),
BERTScore precision, recall and F1 (0--1), and the perplexity of the fine-tuned model on the references (token-weighted).
Diversity of the outputs: type--token ratio, moving-average TTR, Yule's $K$, distinct-$n$, the rate of $n$-grams absent
from the training references, the share of outputs repeating an $n$-gram, the mean pairwise cosine similarity of their
sentence embeddings and their clusters. Efficiency per phase (training, generation) on the device that ran it, and costs
from the study's price sheet. Signatures of the scorers:
\begin{{itemize}}
{signatures}
\end{{itemize}}

\paragraph{{Hardware and software.}} Device {latex_escape(hardware.get('device'))}, CPU {latex_escape(hardware.get('cpu', 'unknown'))},
{latex_escape(hardware.get('gpu', 'no GPU'))}, {hardware.get('torch_threads')} torch thread(s) per job, Python {latex_escape(hardware.get('python'))}
(the first run's training machine; every run's is in the provenance appendix).

\paragraph{{Declared exclusions.}}
\begin{{itemize}}
{exclusions}
\end{{itemize}}

\clearpage
\section{{Results}}
{results}

\clearpage
\section{{Figures}}
{figures}

\clearpage
\section{{Limitations}}
\begin{{itemize}}
{context['limitations']}
\end{{itemize}}

\appendix
\section{{Provenance}}
\begin{{itemize}}
\item Study config SHA-256: \texttt{{{context['config_hash']}}}
\item Code version(s): \texttt{{{latex_escape(', '.join(context['code_versions']))}}}
\item Packages: {packages}
\item Prepared data (manifest SHA-256):
\begin{{itemize}}
{checksums}
\end{{itemize}}
\end{{itemize}}
{run_provenance_latex(context)}
\end{{document}}
"""


def build_pdf(tex_path: str | Path, pdf_path: str | Path) -> None:
    """latexmk in a scratch directory; the PDF appears at pdf_path only when the build succeeded."""
    tex_path = Path(tex_path).resolve()
    if shutil.which("latexmk") is None:
        raise RuntimeError("latexmk not found: install TeX Live and latexmk (the README's set-up command does)")
    with tempfile.TemporaryDirectory(prefix="peftstudy-latex-") as build:
        command = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", f"-outdir={build}", tex_path.name]
        result = subprocess.run(command, cwd=tex_path.parent, capture_output=True, text=True)
        built = Path(build) / (tex_path.stem + ".pdf")
        if result.returncode != 0 or not built.exists():
            log = Path(build) / (tex_path.stem + ".log")
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else result.stdout[-3000:]
            raise RuntimeError(f"latexmk failed on {tex_path}:\n{tail}")
        with io.atomic_path(pdf_path) as tmp:
            shutil.copyfile(built, tmp)


def seeds_text(study: Mapping) -> str:
    """The seeds, naming the matrix blocks that use fewer or other seeds than the study's."""
    text = "seeds " + ", ".join(map(str, study["seeds"]))
    for block in study["matrix"]:
        if "seeds" in block and list(block["seeds"]) != list(study["seeds"]):
            seeds = ", ".join(map(str, block["seeds"]))
            text += f"; {', '.join(block['methods'])}: seed{'s' if len(block['seeds']) > 1 else ''} {seeds} only"
    return text


def _cells_text(cells: set, all_cells: set) -> str:
    """'all' when one setting covers every cell of the method, else the (model, dataset) cells it covers."""
    if cells == all_cells:
        return "all"
    datasets = {dataset for dataset, _ in all_cells}
    if len(datasets) == 1:
        return ", ".join(sorted(model for _, model in cells))
    return ", ".join(f"{model}/{dataset}" for dataset, model in sorted(cells))


def hyperparameter_rows(study: Mapping, settings_cells: Mapping) -> list[list]:
    """One row per distinct (method, training settings, method settings), with the cells that used it."""
    rows = []
    for method in study["methods"]:
        groups = [(settings, cells) for (name, _), (settings, cells) in settings_cells.items() if name == method]
        all_cells = set().union(*(cells for _, cells in groups)) if groups else set()
        for settings, cells in sorted(groups, key=lambda g: sorted(g[1])):
            training, spec = settings["training"], settings["method_spec"]
            extra = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "kind")
            ranks = study["methods"][method].get("ranks")
            if ranks:
                extra = f"ranks={ranks}" + (", " + extra if extra else "")
            rows.append([method, spec["kind"], _cells_text(cells, all_cells), f"{training['learning_rate']:g}",
                         training["epochs"], f"{training['batch_size']}x{training['gradient_accumulation_steps']}", extra])
    return rows


def quantization_rows(study: Mapping, quantized: Mapping) -> list[list]:
    rows = []
    for (model, method, rank), values in sorted(quantized.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or 0)):
        stored = sum(v[0] for v in values) / len(values)
        unquantized = sum(v[1] for v in values) / len(values)
        spec = values[0][2]
        bits = spec.get("bits", 4)
        scheme = f"{bits}-bit" + (f" {spec.get('quant_type', 'nf4').upper()}" + (", double" if spec.get("double_quant", True) else "")
                                  if bits == 4 else " LLM.int8()")
        label = method + (f" r={rank}" if rank is not None else "")
        rows.append([model, label, scheme, f"{stored / 1e6:.3f}", f"{unquantized / 1e6:.3f}",
                     f"{100 * (1 - stored / unquantized):.1f}" if unquantized else "--"])
    return rows


PROVENANCE_STAGES = ("train", "generate", "score")


def run_provenance(scored: Mapping) -> dict:
    """stage -> provenance record of one scored run (records written before per-stage provenance: train only)."""
    recorded = scored["provenance"]
    if "code_version" in recorded:  # one record, the training stage's
        return {"train": recorded}
    return {stage: recorded[stage] for stage in PROVENANCE_STAGES if recorded.get(stage)}


def capability_summary(hardware: Mapping) -> str:
    """The kernel-deciding facts of one stage's machine, in one line."""
    facts = hardware.get("capability") or {}
    parts = [hardware.get("gpu") or facts.get("cpu") or hardware.get("cpu") or "unknown CPU"]
    if facts.get("torch_cpu_capability"):
        parts.append(f"torch {facts['torch_cpu_capability']}")
    flags = [flag for flag in facts.get("cpu_flags", []) if flag.startswith(("avx512_bf16", "avx512_vnni", "amx"))]
    parts.append("+".join(flags) if flags else "no AVX512-BF16/VNNI/AMX")
    if facts.get("torch_blas"):
        parts.append(f"BLAS {facts['torch_blas']}")
    parts.append(f"{facts.get('torch_threads', hardware.get('torch_threads'))} thread(s)")
    if facts.get("environment"):
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(facts["environment"].items())))
    return ", ".join(str(part) for part in parts)


def provenance_tables(runs: Sequence[tuple[Mapping, Mapping]]) -> dict:
    """The appendix's per-run provenance: settings hash and code fingerprint of each stage, the machine each stage
    ran on (with its capability facts, numbered), and each distinct set of package versions (numbered)."""
    machines: dict[str, int] = {}
    package_sets: dict[str, int] = {}
    package_texts: dict[int, Mapping] = {}
    rows = []
    for run, stages in sorted(runs, key=lambda item: (item[0]["dataset"], item[0]["model"], item[0]["variant"],
                                                     int(item[0]["seed"]))):
        row = [run["dataset"], run["model"], run["variant"], str(run["seed"])]
        for stage in PROVENANCE_STAGES:
            record = stages.get(stage)
            if record is None:
                row += ["--", "--", "--"]
                continue
            machine = machines.setdefault(capability_summary(record.get("hardware", {})), len(machines) + 1)
            key = json.dumps(record.get("packages", {}), sort_keys=True)
            if key not in package_sets:
                package_sets[key] = len(package_sets) + 1
                package_texts[package_sets[key]] = record.get("packages", {})
            row += [(record.get("settings_hash") or "--")[:10], (record.get("code_fingerprint") or "--")[:10],
                    f"M{machine}/P{package_sets[key]}"]
        rows.append(row)
    return {
        "provenance_rows": rows,
        "provenance_machines": [[f"M{number}", text] for text, number in sorted(machines.items(), key=lambda m: m[1])],
        "provenance_packages": [[f"P{number}", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v)]
                                for number, versions in sorted(package_texts.items())],
    }


def paper_context(study: Mapping, metrics_paths: Sequence[str], data_manifest_paths: Sequence[str]) -> dict:
    """What the paper needs besides the tables: counts, parameters, hardware and provenance of the runs."""
    data_counts, data_checksums = {}, {}
    for path in data_manifest_paths:
        name = Path(path).parent.name
        manifest = io.read_json(path)
        data_counts[name] = manifest.get("counts", {})
        data_checksums[name] = io.sha256_file(path)
    model_parameters, code_versions, methods_used = {}, set(), []
    packages, hardware, signatures, runs_per_dataset = {}, {}, {}, {}
    provenance_runs: list[tuple[Mapping, dict]] = []
    settings_cells: dict[tuple, set] = {}
    quantized: dict[tuple, list] = {}
    for path in metrics_paths:
        scored = io.read_json(path)
        settings = scored["settings"]
        key = (settings["method"], canonical_hash({"training": settings["training"], "method_spec": settings["method_spec"]}))
        settings_cells.setdefault(key, (settings, set()))[1].add((settings["dataset"], settings["model"]))
        if "base_weight_bytes" in scored["metrics"]:
            quantized.setdefault((settings["model"], settings["method"], settings["rank"]), []).append(
                (scored["metrics"]["base_weight_bytes"], scored["metrics"]["base_weight_bytes_unquantized"],
                 settings["method_spec"]))
        runs_per_dataset[scored["run"]["dataset"]] = runs_per_dataset.get(scored["run"]["dataset"], 0) + 1
        signatures = signatures or scored.get("signatures", {})
        run = scored["run"]
        model_parameters.setdefault(run["model"], int(scored["metrics"]["total_parameters"]))
        method = parse_variant(run["variant"])[0]
        if method == study["statistics"]["baseline_method"]:
            model_parameters[run["model"]] = int(scored["metrics"]["total_parameters"])
        if method not in methods_used:
            methods_used.append(method)
        stages = run_provenance(scored)
        code_versions.update(stage["code_version"] for stage in stages.values())
        packages = packages or stages["train"]["packages"]
        hardware = hardware or stages["train"]["hardware"]
        provenance_runs.append((run, stages))
    model_notes = {}
    for name, spec in study["models"].items():
        if spec["source"] == "scratch":
            p = spec["pretraining"]
            model_notes[name] = f"built from config, pretrained {p['steps']} steps on {p['corpus']}"
        elif spec["source"] == "package":
            model_notes[name] = f"{spec.get('hub_id', spec['package'])}, as shipped by the Python package {spec['package']}"
        elif spec["source"] == "warm_start":
            origin = spec.get("package") or f"{spec['hub_id']}@{spec['revision']}"
            model_notes[name] = f"BERT2BERT warm-started from {origin} (new cross-attention, seed {spec.get('init_seed', 0)})"
        else:
            model_notes[name] = f"{spec['hub_id']}@{spec['revision']}"
    limitations = [
        f"Seeds per cell: {seeds_text(study)}; intervals and tests rest on that n, and cells run once have"
        " neither.",
        "Comparisons are corrected for multiplicity within each (dataset, model, metric) family only, not across"
        " metrics or models; the correlations are uncorrected. With few seeds the tests have little power (see the"
        " seed-power table) and the assumption checks of the ANOVA are weak.",
        "Wall times are measured on the machine that ran each job; on a shared machine they vary between runs.",
    ]
    if any(spec["source"] == "scratch" for spec in study["models"].values()):
        limitations.insert(0, "The models are tiny and were pretrained here for seconds: absolute scores are far below"
                              " those of the papers' pretrained models and only the comparison between methods is meaningful.")
    if any(spec["source"] in ("snapshot", "system") for spec in study["datasets"].values()):
        limitations.insert(1, "The datasets are real human-written texts from Debian packages standing in for the"
                              " paper's domains, not the paper's own (unpublished) data.")
    tasks = {dataset_task(spec) for spec in study["datasets"].values()} - {"generation"}
    if tasks:
        limitations.append("Classification and question answering are done text-to-text, without a classification or"
                           " span head: a label is chosen by its likelihood under the fine-tuned model, an answer is"
                           " generated and scored as text.")
    return {
        "config_hash": canonical_hash(study),
        "data_counts": data_counts,
        "data_checksums": data_checksums,
        "model_parameters": model_parameters,
        "model_notes": model_notes,
        "methods_used": [m for m in study["methods"] if m in methods_used],
        "code_versions": sorted(code_versions),
        "packages": packages,
        "hardware": hardware,
        **provenance_tables(provenance_runs),
        "run_count": len(metrics_paths),
        "hyperparameter_rows": hyperparameter_rows(study, settings_cells),
        "quantization_rows": quantization_rows(study, quantized),
        "runs_per_dataset": runs_per_dataset,
        "metric_signatures": signatures,
        "limitations": "\n".join(rf"\item {latex_escape(text)}" for text in limitations),
    }
