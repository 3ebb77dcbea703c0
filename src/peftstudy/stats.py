"""Statistics over seeds, from the tidy metrics table (scipy does the maths).

Per cell: n, mean, sample std, t-based confidence interval. Each method variant
is compared with the baseline (full fine-tuning) by Welch's t-test per metric.
"""

from __future__ import annotations

import math

import pandas as pd

CELL = ["study", "dataset", "model", "method", "rank"]
RUN = CELL + ["seed"]


def read_metrics(path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"rank": "string"}, keep_default_na=False, na_values={"value": [""]})
    frame["rank"] = frame["rank"].fillna("")
    return frame


def confidence_interval(values, confidence: float) -> tuple[float, float]:
    from scipy import stats

    values = list(values)
    if len(values) < 2:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    sem = stats.sem(values)
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def summarise(metrics: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    rows = []
    for key, group in metrics.groupby(CELL + ["metric"], sort=True, dropna=False):
        values = group["value"].dropna().tolist()
        low, high = confidence_interval(values, confidence)
        n = len(values)
        rows.append({
            **dict(zip(CELL + ["metric"], key)),
            "n": n,
            "mean": sum(values) / n if n else math.nan,
            "std": float(pd.Series(values).std(ddof=1)) if n > 1 else math.nan,
            "ci_low": low,
            "ci_high": high,
            "confidence": confidence,
        })
    return pd.DataFrame(rows)


def welch_tests(metrics: pd.DataFrame, baseline_method: str = "full") -> pd.DataFrame:
    """Welch's t-test of every non-baseline variant against the baseline, per (dataset, model, metric)."""
    from scipy import stats

    rows = []
    for (study, dataset, model, metric), group in metrics.groupby(["study", "dataset", "model", "metric"], sort=True):
        baseline = group[group["method"] == baseline_method]["value"].dropna()
        for (method, rank), variant in group[group["method"] != baseline_method].groupby(["method", "rank"], sort=True):
            values = variant["value"].dropna()
            row = {
                "study": study, "dataset": dataset, "model": model, "metric": metric, "method": method, "rank": rank,
                "baseline_method": baseline_method, "n_variant": len(values), "n_baseline": len(baseline),
                "mean_variant": values.mean() if len(values) else math.nan,
                "mean_baseline": baseline.mean() if len(baseline) else math.nan,
                "test": "welch_t", "t": math.nan, "df": math.nan, "p_value": math.nan,
            }
            row["mean_difference"] = row["mean_variant"] - row["mean_baseline"]
            if len(values) >= 2 and len(baseline) >= 2 and (values.var() > 0 or baseline.var() > 0):
                result = stats.ttest_ind(values, baseline, equal_var=False)
                row.update(t=float(result.statistic), p_value=float(result.pvalue), df=float(result.df))
            rows.append(row)
    return pd.DataFrame(rows)


def read_table(path) -> pd.DataFrame:
    """Read a stats CSV keeping rank as text ('' for rank-less methods) so that keys compare exactly."""
    frame = pd.read_csv(path, dtype={"rank": "string"}, keep_default_na=False, na_values=["", "nan", "NaN"])
    if "rank" in frame:
        frame["rank"] = frame["rank"].fillna("")
    return frame
