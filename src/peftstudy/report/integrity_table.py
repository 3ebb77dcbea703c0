"""The report's integrity table (stats.integrity): every check with what it looks for, then every finding."""

from __future__ import annotations

from typing import Sequence

from peftstudy.report.latex import latex_escape
from peftstudy.stats.integrity import CHECKS, Finding


def integrity_latex(findings: Sequence[Finding], *, source: str, formulas: tuple[int, int] | None = None) -> str:
    """The report's integrity table: every check with what it looks for and its number of findings, then each
    finding (a longtable: a flawed table can have many)."""
    lines = [
        r"\begin{longtable}{p{0.16\linewidth}p{0.30\linewidth}p{0.46\linewidth}}",
        rf"\caption{{Integrity of the results table ({latex_escape(source)}): each check, what it looks for and its"
        r" findings. A finding is a flag for a person to look at, not a verdict; a check with none passed on every"
        r" cell and run."
        + ("" if formulas is None else f" Trainable-parameter formulas: {formulas[0]} of {formulas[1]} runs checked"
                                      " (the others' methods have no closed formula here).")
        + r"}\label{tab:integrity}\\",
        r"\toprule", r"Check & Looks for & Findings \\", r"\midrule", r"\endfirsthead",
        r"\toprule", r"Check & Where & Detail \\", r"\midrule", r"\endhead",
    ]
    for check, what in CHECKS.items():
        count = sum(f.check == check for f in findings)
        lines.append(rf"\texttt{{{latex_escape(check)}}} & {latex_escape(what)} & "
                     + (f"{count}" if count else "none") + r" \\")
    if findings:
        lines += [r"\midrule", r"Check & Where & Detail \\", r"\midrule"]
        lines += [rf"\texttt{{{latex_escape(f.check)}}} & {latex_escape(f.where)} & {latex_escape(f.detail)} \\"
                  for f in findings]
    lines += [r"\bottomrule", r"\end{longtable}"]
    return "\n".join(lines) + "\n"
