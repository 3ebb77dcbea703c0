"""LaTeX rendering helpers shared by every table and the paper. A leaf: imports nothing of the package."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}


def latex_escape(text) -> str:
    return "".join(LATEX_SPECIALS.get(char, char) for char in str(text))


def is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def flagged(value) -> bool:
    """A flag column's value: True, False, or missing (NaN in the trivial rows, or no such column)."""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    if is_nan(mean):
        return "--"
    if is_nan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} $\\pm$ {std:.{digits}f}"


def tabular(header: Sequence[str], rows: Sequence[Sequence], spec: str) -> str:
    body = [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows]
    return "\n".join([rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}"])


UNICODE_LATEX = {"±": r"$\pm$", "×": r"$\times$", "−": "-", "–": "--", "—": "---", "≤": r"$\le$",
                 "≥": r"$\ge$", "§": r"\S{}", "≈": r"$\approx$", "→": r"$\to$", "∞": r"$\infty$"}


def tex_text(text: Any) -> str:
    escaped = latex_escape("" if text is None or (isinstance(text, float) and math.isnan(text)) else text)
    return "".join(UNICODE_LATEX.get(char, char) for char in escaped)
