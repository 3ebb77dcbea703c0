"""Per-cell description over seeds: n, mean, sample SD and a confidence interval of the mean.

The t interval is the default (what reviewers expect with a handful of seeds); a seeded bootstrap interval
is available for metrics whose seed distribution is visibly skewed, and the table says which was used.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from peftstudy.stats.degenerate import is_constant, why_undefined
from peftstudy.stats.tidy import CELL, sample_sd

BOOTSTRAP_METHODS = {"percentile": "percentile", "bca": "BCa"}


def confidence_interval(values, confidence: float) -> tuple[float, float]:
    """t interval of the mean; NaN below 2 values; the value itself when they are identical up to rounding (a
    deterministic metric: no seed spread, and a ~1e-17 SD is rounding, not spread)."""
    from scipy import stats

    values = list(values)
    if why_undefined("mean_ci", values):
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if is_constant(values):
        return mean, mean
    sem = stats.sem(values)
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def bootstrap_interval(values, confidence: float, resamples: int, seed: int,
                       method: str = "BCa") -> tuple[float, float]:
    """scipy.stats.bootstrap interval of the mean, reproducible: a fresh generator seeded with `seed`.

    Every cell gets its own generator from the same seed, so a cell's interval does not depend on which
    other cells the table holds. Undefined (NaN) for fewer than 2 values; a point for identical values.
    """
    from scipy import stats

    values = np.asarray(list(values), dtype=float)
    if why_undefined("bootstrap_ci", values):
        return math.nan, math.nan
    if is_constant(values):
        return float(values.mean()), float(values.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns on degenerate resamples and then returns NaN, kept as such
        result = stats.bootstrap((values,), np.mean, n_resamples=int(resamples), confidence_level=confidence,
                                 method=method, vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _bootstrap_settings(bootstrap: Mapping) -> tuple[int, int, str]:
    unknown = set(bootstrap) - {"resamples", "seed", "method"}
    if unknown or "resamples" not in bootstrap or "seed" not in bootstrap:
        raise ValueError(f"bootstrap needs 'resamples' and 'seed' (optional 'method'), got {dict(bootstrap)!r}")
    method = str(bootstrap.get("method", "BCa"))
    if method.lower() not in BOOTSTRAP_METHODS:
        raise ValueError(f"bootstrap method must be 'percentile' or 'BCa', got {method!r}")
    return int(bootstrap["resamples"]), int(bootstrap["seed"]), BOOTSTRAP_METHODS[method.lower()]


def summarise(metrics: pd.DataFrame, confidence: float = 0.95, bootstrap: Mapping | None = None) -> pd.DataFrame:
    """n, mean, SD and CI per (cell, metric); NaN values are not measurements and are not counted.

    bootstrap=None gives the t interval; bootstrap={"resamples": N, "seed": S, "method": "BCa"|"percentile"}
    gives a seeded scipy.stats.bootstrap interval (BCa by default, as scipy). `ci_method` records which:
    't', 'bootstrap_bca' or 'bootstrap_percentile'; `ci_note` says why an interval is empty (NaN).
    """
    settings = _bootstrap_settings(bootstrap) if bootstrap is not None else None
    ci_method = "t" if settings is None else f"bootstrap_{settings[2].lower()}"
    rows = []
    for key, group in metrics.groupby(CELL + ["metric"], sort=True, dropna=False):
        values = group["value"].dropna().tolist()
        if settings is None:
            low, high = confidence_interval(values, confidence)
        else:
            low, high = bootstrap_interval(values, confidence, *settings)
        n = len(values)
        note = why_undefined("mean_ci" if settings is None else "bootstrap_ci", values)
        if not note and not (math.isfinite(low) and math.isfinite(high)):
            note = f"scipy.stats.bootstrap gave no {ci_method} interval for these values"
        rows.append({
            **dict(zip(CELL + ["metric"], key)),
            "n": n,
            "mean": sum(values) / n if n else math.nan,
            "std": sample_sd(values),
            "ci_low": low,
            "ci_high": high,
            "confidence": confidence,
            "ci_method": ci_method,
            "ci_note": note,
        })
    return pd.DataFrame(rows)
