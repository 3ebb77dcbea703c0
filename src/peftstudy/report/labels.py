"""How methods and variants are named and ordered in every table."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from peftstudy.report.latex import is_nan, latex_escape

METHOD_LABELS = {
    "full": "Full fine-tuning", "lora": "LoRA", "dora": "DoRA", "adalora": "AdaLoRA", "vera": "VeRA",
    "ia3": "(IA)$^3$", "qlora": "QLoRA", "prefix": "Prefix tuning", "prompt": "Prompt tuning", "bitfit": "BitFit",
    "ft_top_k": "FT top-$k$", "adapter": "Bottleneck adapter", "mam": "MAM adapter", "unipelt": "UniPELT",
    "lora_prefix": "LoRA + prefix",
}


BOTTLENECK_KINDS = {"adapter", "mam", "unipelt"}


def method_label(study: Mapping, method: str, rank) -> str:
    """LaTeX label: the kind's name, plus the config name when it differs (e.g. two adapter styles)."""
    kind = study["methods"][method]["kind"]
    label = METHOD_LABELS.get(kind, latex_escape(kind))
    if method != kind:
        label += r" {\footnotesize(" + latex_escape(method) + ")}"
    if rank in ("", None) or is_nan(rank):
        return label
    symbol = "b" if kind in BOTTLENECK_KINDS else "r"  # adapters sweep their bottleneck size
    return f"{label} ${symbol}={rank}$"


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
