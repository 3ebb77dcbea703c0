"""The report's adaptive-seeds table: the adaptive design (stats.sequential) replayed on the study's finished grid,
with the runs it would have kept, the training hours it would have saved and whether the study's own conclusions
(the significance and practical labels against the baseline method) come out the same from the kept runs alone."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from peftstudy.report.latex import latex_escape
from peftstudy.stats import pairwise_comparisons
from peftstudy.stats.sequential import replay

KEY = ["dataset", "model", "method", "rank", "seed"]
N_MIN = 2  # the first look: two seeds, the fewest a paired t statistic needs


def _against_baseline(metrics: pd.DataFrame, settings: Mapping) -> pd.DataFrame:
    table = pairwise_comparisons(metrics, settings["baseline_method"], settings["correction"], settings["alpha"],
                                 settings["confidence"], settings.get("practical_thresholds"))
    table = table[(table["baseline_side"] == "b") & table["metric"].isin(settings["compare_metrics"])]
    return table.rename(columns={"method_a": "method", "rank_a": "rank"})[
        ["dataset", "model", "metric", "method", "rank", "significant", "practical"]]


def adaptive_replay(metrics: pd.DataFrame, settings: Mapping) -> tuple[pd.DataFrame, dict]:
    """(one row per planned comparison: its look, decision and whether the conclusions agree; the summary)."""
    decisions, kept = replay(metrics, baseline_method=settings["baseline_method"],
                             compare_metrics=settings["compare_metrics"],
                             thresholds=settings.get("practical_thresholds"), alpha=settings["alpha"], n_min=N_MIN)
    metrics = metrics.assign(seed=metrics["seed"].astype(str), rank=metrics["rank"].fillna("").astype(str))
    replayed = metrics.merge(decisions[["dataset", "model"]].drop_duplicates(), on=["dataset", "model"])
    runs = replayed[KEY].drop_duplicates()
    kept_metrics = pd.concat([metrics.merge(runs, on=KEY, how="left", indicator=True).query("_merge == 'left_only'")
                              .drop(columns="_merge"), metrics.merge(kept, on=KEY)])
    full, adaptive = _against_baseline(metrics, settings), _against_baseline(kept_metrics, settings)
    joined = decisions.merge(full, on=["dataset", "model", "metric", "method", "rank"], how="left").merge(
        adaptive, on=["dataset", "model", "metric", "method", "rank"], how="left", suffixes=("_full", "_kept"))
    joined["agrees"] = ((joined["significant_full"] == joined["significant_kept"])
                        & (joined["practical_full"] == joined["practical_kept"]))
    dropped = runs.merge(kept, on=KEY, how="left", indicator=True).query("_merge == 'left_only'").drop(columns="_merge")
    times = metrics[metrics["metric"] == "train_time_s"].merge(dropped, on=KEY)
    per_cell = {key: (int(len(kept[(kept["dataset"] == key[0]) & (kept["model"] == key[1])])), int(len(group)))
                for key, group in runs.groupby(["dataset", "model"])}
    summary = {"runs": len(runs), "kept": len(kept), "comparisons": len(joined), "cells": per_cell,
               "settled_early": int((joined["settled_at"] < joined["seeds_available"]).sum()),
               "agree": int(joined["agrees"].sum()),
               "training_hours_saved": float(pd.to_numeric(times["value"]).sum()) / 3600}
    return joined, summary


def adaptive_latex(joined: pd.DataFrame, summary: Mapping, settings: Mapping) -> str:
    """One row per (dataset, model): its comparisons, how many settled before their last seed and to what, the runs
    kept and whether the conclusions hold from them; the totals in the caption."""
    lines = [
        r"\begin{table}[ht]", r"\centering", r"\small",
        r"\caption{Adaptive seeds, replayed on this grid: the seeds in their order, a look after each (repeated"
        r" confidence intervals with Pocock-type alpha spending, Bonferroni within each family of comparisons),"
        r" another seed only for the cells of a comparison still open; a comparison settles when its interval lies"
        r" beyond the practical threshold (different) or inside it (equivalent). "
        + latex_escape(f"In all: runs kept {summary['kept']} of {summary['runs']}, training hours saved "
                       f"{summary['training_hours_saved']:.3g} (on the hardware that ran them); the study's "
                       f"conclusions (significance and practical labels against {settings['baseline_method']}) "
                       f"the same from the kept runs alone for {summary['agree']} of {summary['comparisons']} "
                       "comparisons.")
        + r"}", r"\label{tab:adaptive_replay}",
        r"\begin{tabular}{llrrrrl}", r"\toprule",
        r"Dataset & Model & Comparisons & Settled early & Different / equivalent & Runs kept & Same conclusions \\",
        r"\midrule",
    ]
    if joined.empty:
        lines.append(r"\multicolumn{7}{l}{No (dataset, model) ran two or more seeds against the baseline method.} \\")
    for (dataset, model), rows in joined.groupby(["dataset", "model"], sort=True):
        early = rows[rows["settled_at"] < rows["seeds_available"]]
        cells = summary["cells"][(dataset, model)]
        lines.append(" & ".join(latex_escape(cell) for cell in (
            dataset, model, len(rows), len(early),
            f"{int((rows['decision'] == 'different').sum())} / {int((rows['decision'] == 'equivalent').sum())}",
            f"{cells[0]} of {cells[1]}", f"{int(rows['agrees'].sum())} of {len(rows)}")) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
