"""Reading metric and stats CSVs so that keys compare exactly (rank stays text, '' for rank-less methods)."""

from __future__ import annotations

import pandas as pd


def read_metrics(path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"rank": "string"}, keep_default_na=False, na_values={"value": [""]})
    frame["rank"] = frame["rank"].fillna("")
    return frame


def read_table(path) -> pd.DataFrame:
    """Read a stats CSV keeping rank as text ('' for rank-less methods) so that keys compare exactly."""
    frame = pd.read_csv(path, dtype={"rank": "string"}, keep_default_na=False, na_values=["", "nan", "NaN"])
    if "rank" in frame:
        frame["rank"] = frame["rank"].fillna("")
    return frame
