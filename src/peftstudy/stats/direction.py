"""Which way is better for each metric: the rank study needs it to find the best rank and the knee."""

from __future__ import annotations

import fnmatch
from typing import Mapping

HIGHER_IS_BETTER: dict[str, bool] = {
    # quality: higher is better
    "bleu4": True, "rouge1": True, "rouge2": True, "rouge_l": True, "rouge_lsum": True, "meteor": True,
    "bertscore_*": True, "accuracy": True, "macro_f1": True, "exact_match": True, "squad_f1": True,
    # costs: lower is better
    "perplexity": False, "train_time_s": False, "*_peak_memory_bytes": False, "*_energy_kwh": False,
    "training_cost": False, "training_energy_cost": False, "storage_cost_per_month": False,
    "inference_cost_per_1000": False, "tco[[]*": False,  # fnmatch: "[[]" is a literal "["
}


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
