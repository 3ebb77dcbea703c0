"""Do two metrics move together across runs (e.g. is BERTScore telling us more than ROUGE-L)?

Runs are aligned by (study, dataset, model, method, rank, seed); a pair of metrics uses the runs that
measured both. Pooling runs of different models or datasets mixes between-group and within-group
association (Simpson's paradox), so read the study-wide scope with care.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from peftstudy.stats.degenerate import why_undefined
from peftstudy.stats.tidy import RUN, finite, measured

SCOPES = {"dataset": ["study", "dataset"], "study": ["study"]}


def metric_correlations(metrics: pd.DataFrame, scope: str = "dataset") -> pd.DataFrame:
    """Pearson r and Spearman rho (scipy) with two-sided p and n, for every pair of metrics, per
    (study, dataset) (scope='dataset') or per study over all its runs (scope='study').

    Pairs with fewer than 3 shared runs, or where a metric is constant over them (up to rounding:
    degenerate.why_undefined; scipy would turn a ~1e-17 spread into an arbitrary r), get NaN and a `reason`.
    """
    from scipy import stats

    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {sorted(SCOPES)}, got {scope!r}")
    keys = SCOPES[scope]
    runs = measured(metrics).set_index(RUN + ["metric"])["value"].unstack("metric")  # raises on duplicated runs
    rows = []
    for key, group in runs.groupby(level=keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        present = sorted(column for column in group.columns if group[column].notna().any())
        columns = {metric: group[metric].to_numpy(dtype=float) for metric in present}
        for metric_a, metric_b in itertools.combinations(present, 2):
            both = np.isfinite(columns[metric_a]) & np.isfinite(columns[metric_b])
            x, y = columns[metric_a][both], columns[metric_b][both]
            row = {**dict(zip(keys, key)), "metric_a": metric_a, "metric_b": metric_b, "n": int(both.sum()),
                   "pearson_r": math.nan, "pearson_p": math.nan, "spearman_rho": math.nan, "spearman_p": math.nan,
                   "reason": ""}
            if len(x) < 3:
                row["reason"] = "fewer than 3 runs measured both metrics"
            elif why_undefined("pearson", x, y):  # Spearman's conditions are the same
                row["reason"] = "a metric is constant over the shared runs"
            else:
                pearson = stats.pearsonr(x, y)
                spearman = stats.spearmanr(x, y)
                row.update(pearson_r=finite(pearson.statistic), pearson_p=finite(pearson.pvalue),
                           spearman_rho=finite(spearman.statistic), spearman_p=finite(spearman.pvalue))
            rows.append(row)
    columns = keys + ["metric_a", "metric_b", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p", "reason"]
    return pd.DataFrame(rows, columns=columns)
