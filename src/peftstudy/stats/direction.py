"""Which way is better for each metric: the rank study needs it to find the best rank and the knee.

The directions are the metric catalogue's (peftstudy.metrics.catalogue): names and fnmatch patterns, in its order.
"""

from __future__ import annotations

import fnmatch
from typing import Mapping

from peftstudy.metrics import catalogue

HIGHER_IS_BETTER: dict[str, bool] = catalogue.directions()


def higher_is_better(metric: str, directions: Mapping[str, bool] | None = None) -> bool | None:
    """True/False for a known metric (exact name first, then shell patterns), None when unknown.

    `directions` extends or overrides HIGHER_IS_BETTER (same name/pattern keys).
    """
    table = {**HIGHER_IS_BETTER, **(directions or {})}
    if metric in table:
        return bool(table[metric])
    for pattern, higher in table.items():
        if fnmatch.fnmatchcase(metric, pattern):
            return bool(higher)
    return None
