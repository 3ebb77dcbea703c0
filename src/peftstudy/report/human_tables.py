"""Table 2 (expert ratings per method and criterion) and the error-category frequencies, from the
ingested rating sheets; each says plainly when no ratings were ingested."""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from peftstudy.human_eval import CRITERIA, ERROR_CATEGORIES
from peftstudy.report.labels import in_study_order, method_label
from peftstudy.report.latex import is_nan, latex_escape


def _label(text: str) -> str:
    return latex_escape(text.replace("_", " ").capitalize())


def table2_latex(table2: pd.DataFrame, agreement: pd.DataFrame, study: Mapping, ratings_dir: str) -> str:
    head = [r"\begin{table}[ht]", r"\centering", r"\small"]
    if table2.empty:
        return "\n".join(head + [
            r"\caption{Expert evaluation (the paper's Table 2): no ratings were ingested. Export the blinded sheet"
            rf" (\texttt{{reports/{latex_escape(study['study'])}/human\_eval/rating\_sheet.csv}}) to the raters and put"
            rf" each filled sheet at \texttt{{{latex_escape(ratings_dir)}/<rater>.csv}}.}}",
            r"\label{tab:human}", r"\end{table}", ""])
    alphas = agreement.set_index("criterion")
    raters = int(agreement["raters"].max())
    alpha_text = "; ".join(f"{_label(c)} {alphas.loc[c, 'krippendorff_alpha_ordinal']:.2f}" for c in CRITERIA
                           if c in alphas.index and not is_nan(alphas.loc[c, "krippendorff_alpha_ordinal"]))
    lines = head + [
        rf"\caption{{Expert evaluation (scores 1--5): mean $\pm$ sd over items, each item's score averaged over its"
        rf" raters ({raters} raters). Krippendorff's $\alpha$ (ordinal): {alpha_text or 'not computable'}.}}",
        r"\label{tab:human}", r"\begin{tabular}{lll" + "r" * len(CRITERIA) + "}", r"\toprule",
        "Dataset & Model & Method & " + " & ".join(_label(c) for c in CRITERIA) + r" \\", r"\midrule"]
    cells = table2[["dataset", "model", "method", "rank"]].drop_duplicates()
    for _, row in in_study_order(cells, study, ("dataset", "model")).iterrows():
        rows = table2[(table2["dataset"] == row["dataset"]) & (table2["model"] == row["model"])
                      & (table2["method"] == row["method"]) & (table2["rank"] == row["rank"])].set_index("criterion")
        cells_text = []
        for criterion in CRITERIA:
            mean = rows.loc[criterion, "mean"] if criterion in rows.index else math.nan
            std = rows.loc[criterion, "std"] if criterion in rows.index else math.nan
            cells_text.append("--" if is_nan(mean) else f"{mean:.2f}" + ("" if is_nan(std) else f" $\\pm$ {std:.2f}"))
        lines.append(" & ".join([r"\texttt{" + latex_escape(row["dataset"]) + "}", r"\texttt{" + latex_escape(row["model"]) + "}",
                                 method_label(study, row["method"], row["rank"]), *cells_text]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def errors_table(errors: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Human error frequencies per (dataset, method variant), with the automatic repetition rate beside them."""
    if errors.empty:
        return errors
    wide = errors.pivot_table(index=["dataset", "method", "rank"], columns="category", values="frequency").reset_index()
    automatic = (summary[summary["metric"] == "repetition_rate"].groupby(["dataset", "method", "rank"])["mean"]
                 .mean().rename("repetition_automatic").reset_index())
    return wide.merge(automatic, on=["dataset", "method", "rank"], how="left")


def errors_latex(table: pd.DataFrame, study: Mapping) -> str:
    head = [r"\begin{table}[ht]", r"\centering", r"\small"]
    if table.empty:
        return "\n".join(head + [r"\caption{Error analysis: no ratings were ingested.}", r"\label{tab:errors}",
                                 r"\end{table}", ""])
    lines = head + [
        r"\caption{Error categories: share of item $\times$ rater judgements flagging each, per domain and method;"
        r" beside the human repetition figure, the automatic one (share of outputs repeating a word $n$-gram).}",
        r"\label{tab:errors}", r"\begin{tabular}{ll" + "r" * (len(ERROR_CATEGORIES) + 1) + "}", r"\toprule",
        "Dataset & Method & " + " & ".join(_label(c) for c in ERROR_CATEGORIES) + r" & Repetition (auto) \\", r"\midrule"]
    for _, row in in_study_order(table, study, ("dataset",)).iterrows():
        cells = ["--" if is_nan(row.get(c, math.nan)) else f"{row[c]:.2f}" for c in ERROR_CATEGORIES]
        auto = row.get("repetition_automatic", math.nan)
        cells.append("--" if is_nan(auto) else f"{auto:.2f}")
        lines.append(" & ".join([r"\texttt{" + latex_escape(row["dataset"]) + "}",
                                 method_label(study, row["method"], row["rank"]), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)
