"""The keys every statistic agrees on, and the one way a tidy metrics table is cleaned before any test.

A *cell* is one variant (method, rank) of one model on one dataset; a *run* adds the seed; a *family* is
the set of variants compared on one metric of one model and dataset (multiple-comparison corrections and
ANOVAs work within a family). Runs of one family that share a seed used the same data order and init seed,
which is what makes seed-matched pairing legitimate.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from peftstudy.stats.degenerate import is_constant

CELL = ["study", "dataset", "model", "method", "rank"]
RUN = CELL + ["seed"]
FAMILY = ["study", "dataset", "model", "metric"]
VARIANT = ["method", "rank"]


def measured(metrics: pd.DataFrame) -> pd.DataFrame:
    """Only measured values (NaN means 'not measured', never an observation), rank as text ('' = rank-less)."""
    frame = metrics[metrics["value"].notna()].copy()
    frame["rank"] = [("" if _missing(rank) else str(rank)) for rank in frame["rank"]]
    frame["value"] = frame["value"].astype(float)
    return frame


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def rank_number(rank: str) -> float:
    """Numeric rank, NaN for rank-less or non-numeric ranks."""
    try:
        return float(rank)
    except (TypeError, ValueError):
        return math.nan


def variant_sort_key(variant: tuple[str, str]) -> tuple:
    """Order variants by method, then numerically by rank ('8' before '16'), rank-less first."""
    method, rank = variant
    number = rank_number(rank)
    return (method, rank != "", math.isnan(number), 0.0 if math.isnan(number) else number, rank)


def variant_label(method: str, rank: str) -> str:
    return f"{method} r={rank}" if rank != "" else str(method)


def variant_values(family: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """(method, rank) -> values indexed by seed, in variant order; the family must already be `measured`."""
    groups = {key: group.set_index("seed")["value"] for key, group in family.groupby(VARIANT, sort=False)}
    return {key: groups[key] for key in sorted(groups, key=variant_sort_key)}


def family_groups(frame: pd.DataFrame, keys: list[str]):
    """(key dict, rows) per group of a measured frame, in sorted key order."""
    for key, group in frame.groupby(keys, sort=True):
        yield dict(zip(keys, key)), group


def finite(value) -> float:
    """A plain float (NaN when undefined), so that tables hold numbers and not numpy scalars."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def sample_sd(values) -> float:
    """Sample SD (ddof=1), exactly 0 for values equal up to rounding (degenerate.is_constant): the mean of n copies
    of x is not always x in floating point, and the resulting ~1e-15 'spread' would turn a deterministic metric
    into a huge effect size."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan
    return 0.0 if is_constant(values) else float(np.std(values, ddof=1))
