"""The claims table in LaTeX, rendered from the verdicts' tidy rows."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from peftstudy.claims.verdicts import (
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
    VERDICT_RULE,
)
from peftstudy.report.latex import tex_text

VERDICT_LATEX = {SUPPORTED: "supported", NOT_SUPPORTED: "not supported", NOT_TESTABLE: "not testable here"}


def claims_latex(table: pd.DataFrame, study: Mapping) -> str:
    """The claims table (label tab:claims): per claim its text, source, the paper's figure and the combined
    verdict; under it each check with what it tests, the measured value [CI] (n) and its verdict and reason.
    A longtable (it runs over pages: the preamble needs \\usepackage{longtable} and \\usepackage{array});
    the note under it prints the verdict rule, the interval method and the range of n."""
    name = tex_text(study.get("study", ""))
    header = (r"Claim / check & Source & Reported (tested) & Measured [CI], $n$ & Verdict \\")
    # Ragged-right paragraph columns (the array package's >{...}): long reasons wrap without stretched spaces.
    spec = "@{}" + "".join(r">{\raggedright\arraybackslash}p{" + f"{width}" + r"\linewidth}"
                           for width in (0.36, 0.08, 0.17, 0.2, 0.09)) + "@{}"
    confidence = table["confidence"].dropna()
    level = f"{float(confidence.iloc[0]):.0%}" if len(confidence) else "95%"
    resamples = table["bootstrap_resamples"].dropna()
    seeds = table["bootstrap_seed"].dropna()
    ns = sorted({int(part) for text in table["n"].astype(str) for part in text.split("/") if part.isdigit()})
    n_text = (f"$n$ = seeds per cell, {ns[0]}" + (f"--{ns[-1]}" if ns[-1] != ns[0] else "") + " here"
              if ns else "no cell of this study has results for these claims")
    note = (f"{tex_text(VERDICT_RULE)} CIs: {tex_text(level)} percentile bootstrap over seeds"
            + (f" ({int(resamples.iloc[0])} resamples, seed {int(seeds.iloc[0])})" if len(resamples) and len(seeds) else "")
            + r", paired when both cells share dataset, model and seeds, else independent;"
            r" a single value: the $t$ interval of its mean. " + n_text + ".")
    lines = [
        r"\begingroup\scriptsize\setlength{\LTcapwidth}{\linewidth}",
        rf"\begin{{longtable}}{{{spec}}}",
        rf"\caption{{Claims of the reproduced papers beside what study \texttt{{{name}}} measured."
        r" Every measured value, interval and verdict is computed from the results.}\label{tab:claims}\\",
        r"\toprule", header, r"\midrule", r"\endfirsthead",
        r"\toprule", header, r"\midrule", r"\endhead",
        r"\midrule", r"\multicolumn{5}{r}{\emph{continued}}\\", r"\endfoot",
        r"\bottomrule", rf"\multicolumn{{5}}{{@{{}}p{{0.95\linewidth}}@{{}}}}{{{note}}}\\", r"\endlastfoot",
    ]
    if table.empty:
        lines.append(r"\multicolumn{5}{l}{\emph{This study lists no claims.}}\\")
    first = True
    for claim_id, rows in table.groupby("claim_id", sort=False):
        head = rows.iloc[0]
        if not first:
            lines.append(r"\midrule")
        first = False
        lines.append(" & ".join([
            r"\textbf{" + tex_text(head["claim_text"]) + "}", tex_text(head["source"]), tex_text(head["reported"]), "",
            r"\textbf{" + VERDICT_LATEX[head["claim_verdict"]] + "}",
        ]) + r" \\*")
        for _, row in rows.iterrows():
            tested = tex_text(row["expected"])
            if row["check_reported"]:
                tested = tex_text(row["check_reported"]) + r"\newline(tested: " + tested + ")"
            measured = tex_text(row["measured_text"])
            if row["n"]:
                measured += r"\newline $n$ = " + tex_text(row["n"])
            lines.append(" & ".join([
                r"\hspace*{1em}" + tex_text(row["description"]) + r"\newline{\itshape " + tex_text(row["reason"]) + "}",
                "", tested, measured, VERDICT_LATEX[row["verdict"]],
            ]) + r" \\")
    lines += [r"\end{longtable}", r"\endgroup", ""]
    return "\n".join(lines)
