"""Reading metric and stats CSVs so that keys compare exactly (rank stays text, '' for rank-less methods)."""

from __future__ import annotations

import pandas as pd


def read_metrics(path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"rank": "string"}, keep_default_na=False, na_values={"value": [""]})
    frame["rank"] = frame["rank"].fillna("")
    return frame


def read_table(path) -> pd.DataFrame:
    """Read a stats CSV keeping ranks as text ('' for rank-less methods) so that keys compare exactly."""
    header = pd.read_csv(path, nrows=0).columns
    columns = [c for c in ("rank", "rank_a", "rank_b") if c in header]
    frame = pd.read_csv(path, dtype={c: "string" for c in columns}, keep_default_na=False,
                        na_values=["", "nan", "NaN"])
    for column in columns:
        frame[column] = frame[column].fillna("")
    return frame


def select_metrics(metrics: pd.DataFrame, names) -> pd.DataFrame:
    """The rows of these metrics (the study's compare_metrics): statistics over every recorded metric would
    dilute the corrections with quantities nobody compares."""
    return metrics[metrics["metric"].isin(list(names))].reset_index(drop=True)
