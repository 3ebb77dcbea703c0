"""How a claim's checks and results are worded in the claims table (these texts are CSV columns: keep them stable)."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from peftstudy.metrics import catalogue
from peftstudy.study.claims import RANK_KINDS, check_cells, expected_interval


def metric_name(metric: str) -> str:
    """How a check's description names the metric: the catalogue's phrase ('exact match'), else its name."""
    return catalogue.phrase(metric)


def cell_label(cell: Mapping, fields: Sequence[str] = ()) -> str:
    label = cell["method"] + (f" r{cell['rank']}" if cell["rank"] != "" else "")
    extra = [str(cell[field]) for field in fields]
    return label + (f" ({', '.join(extra)})" if extra else "")


def where_text(cells: Sequence[Mapping]) -> tuple[list[str], str]:
    """(fields that differ between the cells, 'on dataset, model' of the shared ones)."""
    differ = [axis for axis in ("dataset", "model") if len({c[axis] for c in cells}) > 1]
    shared = [str(cells[0][axis]) for axis in ("dataset", "model") if axis not in differ]
    return differ, (" on " + ", ".join(shared) if shared else "")


def describe_check(check: Mapping, study: Mapping | None = None) -> str:
    """The check in plain words, e.g. 'ROUGE-L of lora r16 / full on products, gpt2'."""
    kind, metric = check["kind"], metric_name(check["metric"])
    unit = f" ({check['unit']})" if check.get("unit") else ""
    if kind in RANK_KINDS:
        method = check.get("method") or rank_method(study)
        what = "best" if kind == "best_rank" else "knee"
        return f"{what} {method} rank by {metric} on {check['dataset']}, {check['model']}"
    cells = check_cells(check)
    differ, where = where_text(cells)
    labels = [cell_label(cell, differ) for cell in cells]
    if kind == "ratio":
        return f"{metric} of {labels[0]} / {labels[1]}{where}"
    if kind == "difference":
        return f"{metric}{unit} of {labels[0]} - {labels[1]}{where}"
    if kind == "relative_change":
        return f"{metric} of {labels[0]} vs {labels[1]}, relative change{where}"
    if kind == "value":
        return f"{metric}{unit} of {labels[0]}{where}"
    symbol = " > " if check.get("order", "decreasing") == "decreasing" else " < "
    return f"{metric}: {symbol.join(labels)}{where}"


def format_number(value: float, kind: str = "value", digits: int = 3) -> str:
    """A measured number to `digits` significant digits (relative changes as signed percentages)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if kind == "relative_change":
        return f"{100 * value:+.{digits}g}%"
    return f"{value:.{digits}g}"


def expected_text(check: Mapping) -> str:
    kind = check["kind"]
    if kind in RANK_KINDS:
        return "r = " + " or ".join(str(rank) for rank in check["ranks"])
    if kind == "ordering":
        return check.get("order", "decreasing")
    low, high = expected_interval(check)
    claimed = lambda value: format_number(value, kind, digits=6)  # noqa: E731 - as typed in the config
    if math.isinf(high):
        return f"≥ {claimed(low)}"
    if math.isinf(low):
        return f"≤ {claimed(high)}"
    if low == high:
        return claimed(low)
    return f"[{claimed(low)}, {claimed(high)}]"


def interval_text(low: float, high: float, kind: str = "value") -> str:
    return f"[{format_number(low, kind)}, {format_number(high, kind)}]"


def and_list(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def plain_text(value) -> str:
    """A text cell of a CSV ('' for a missing one, which pandas reads as NaN)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def rank_method(study: Mapping | None) -> str:
    if study is None:
        return "lora"
    return study.get("statistics", {}).get("rank_study", {}).get("method", "lora")
