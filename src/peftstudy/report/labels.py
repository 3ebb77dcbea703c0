"""How methods and variants are named and ordered in every table."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from peftstudy.methods import METHODS
from peftstudy.report.latex import is_nan, latex_escape


def kind_label(kind: str) -> str:
    """LaTeX name of a method kind: the method's label (Method.label), else the kind itself."""
    method = METHODS.get(kind)
    return method.label if method is not None and method.label else latex_escape(kind)


def method_label(study: Mapping, method: str, rank) -> str:
    """LaTeX label: the kind's name, plus the config name when it differs (e.g. two adapter styles)."""
    kind = study["methods"][method]["kind"]
    label = kind_label(kind)
    if method != kind:
        label += r" {\footnotesize(" + latex_escape(method) + ")}"
    if rank in ("", None) or is_nan(rank):
        return label
    symbol = METHODS[kind].size_symbol if kind in METHODS else "r"  # adapters sweep their bottleneck size (b)
    return f"{label} ${symbol}={rank}$"


def registered_label(name: str) -> str:
    """The label of the registered method kind `name`, else `name` unchanged (a caption escapes it later)."""
    method = METHODS.get(name)
    return method.label if method is not None and method.label else name


def _rank_key(rank) -> int:
    return -1 if rank in ("", None) or is_nan(rank) else int(rank)


def in_study_order(table: pd.DataFrame, study: Mapping, leading: tuple[str, ...] = ("model",)) -> pd.DataFrame:
    """Rows by the leading columns, then methods in the order the study declares them, then rank."""
    if table.empty:
        return table
    order = {name: index for index, name in enumerate(study["methods"])}
    table = table.copy()
    table["_order"] = [tuple(row[k] for k in leading) + (order.get(row["method"], len(order)), _rank_key(row["rank"]))
                       for _, row in table.iterrows()]
    return table.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
