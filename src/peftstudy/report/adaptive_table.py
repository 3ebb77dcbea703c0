"""The report's adaptive-seeds table. For a study run with adaptive seeds: what its looks decided, the runs they used
against the fixed design's, the training hours that saved and, where the study also ran the full grid to check
itself, whether its conclusions (significance and practical labels against the baseline method, and the claims'
verdicts) are the full grid's. For a fixed-seed study: the same design replayed on its finished grid."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from peftstudy.report.latex import latex_escape
from peftstudy.stats import pairwise_comparisons
from peftstudy.stats.sequential import planned_metrics, replay
from peftstudy.stats.tidy import measured

KEY = ["dataset", "model", "method", "rank", "seed"]
N_MIN = 2  # a replay's first look: two seeds, the fewest a paired t statistic needs


def _against_baseline(metrics: pd.DataFrame, settings: Mapping) -> pd.DataFrame:
    table = pairwise_comparisons(metrics, settings["baseline_method"], settings["correction"], settings["alpha"],
                                 settings["confidence"], settings.get("practical_thresholds"))
    table = table[(table["baseline_side"] == "b") & table["metric"].isin(settings["compare_metrics"])]
    return table.rename(columns={"method_a": "method", "rank_a": "rank"})[
        ["dataset", "model", "metric", "method", "rank", "significant", "practical"]]


def _runs_frame(runs) -> pd.DataFrame:
    """Run identities (study, dataset, model, variant, seed) as the tidy table's keys."""
    from peftstudy.study.matrix import parse_variant

    rows = []
    for _, dataset, model, variant, seed in runs:
        method, rank = parse_variant(variant)
        rows.append({"dataset": dataset, "model": model, "method": method, "rank": "" if rank is None else str(rank),
                     "seed": str(seed)})
    return pd.DataFrame(rows, columns=KEY)


def _keyed(metrics: pd.DataFrame) -> pd.DataFrame:
    return measured(metrics).assign(seed=lambda f: f["seed"].astype(str))


def adaptive_outcome(metrics: pd.DataFrame, settings: Mapping,
                     record: Mapping | None = None) -> tuple[pd.DataFrame, dict, pd.DataFrame | None]:
    """(one row per planned comparison: its look, decision and whether the study's labels agree with the full
    grid's; the summary; the metrics of the design's runs and the rest of the study, None where the full grid
    did not run). ``record``: the last look's record of an adaptive study (None: replay on the grid)."""
    metrics = _keyed(metrics)
    if record is None:
        decisions, kept, _ = replay(metrics, baseline_method=settings["baseline_method"],
                                    compare_metrics=planned_metrics(settings["compare_metrics"],
                                                                    settings.get("practical_thresholds")),
                                    thresholds=settings.get("practical_thresholds"), alpha=settings["alpha"],
                                    n_min=N_MIN)
        decisions = decisions.assign(rank=decisions["rank"].astype(str))
        grid = metrics.merge(decisions[["dataset", "model"]].drop_duplicates(), on=["dataset", "model"])[KEY]
        full = grid.drop_duplicates()
        seeds_per_cell = None
        mode = "replayed"
    else:
        decisions = pd.DataFrame(record["decisions"])
        decisions = decisions.assign(rank=decisions["rank"].fillna("").astype(str))
        kept = _runs_frame(record["runs"])
        seeds_per_cell = record["design"]["max"]
        cells = kept[["dataset", "model", "method", "rank"]].drop_duplicates()
        full = cells.merge(pd.DataFrame({"seed": [str(s) for s in record["design"]["seeds"][:seeds_per_cell]]}), how="cross")
        mode = "run"
    present = metrics[KEY].drop_duplicates()
    full_measured = len(full.merge(present, on=KEY)) == len(full)
    others = metrics.merge(full, on=KEY, how="left", indicator=True).query("_merge == 'left_only'").drop(columns="_merge")
    kept_metrics = pd.concat([others, metrics.merge(kept, on=KEY)])
    joined = decisions.copy()
    if full_measured:
        full_labels, kept_labels = _against_baseline(metrics, settings), _against_baseline(kept_metrics, settings)
        joined = joined.merge(full_labels, on=["dataset", "model", "metric", "method", "rank"], how="left").merge(
            kept_labels, on=["dataset", "model", "metric", "method", "rank"], how="left", suffixes=("_full", "_kept"))
        joined["agrees"] = ((joined["significant_full"] == joined["significant_kept"])
                            & (joined["practical_full"] == joined["practical_kept"]))
    else:
        joined["agrees"] = pd.NA
    saved = full.merge(kept, on=KEY, how="left", indicator=True).query("_merge == 'left_only'").drop(columns="_merge")
    times = metrics[metrics["metric"] == "train_time_s"]
    measured_saved = times.merge(saved, on=KEY)
    if full_measured or record is None:
        hours, estimated = float(measured_saved["value"].sum()) / 3600, False
    else:  # not run: each saved run at its cell's mean training time over the seeds it ran
        means = times.merge(kept, on=KEY).groupby(["dataset", "model", "method", "rank"])["value"].mean()
        hours = float(sum(means.get((r.dataset, r.model, r.method, r.rank), 0.0) for r in saved.itertuples())) / 3600
        estimated = True
    devices = sorted(set(times["device"].dropna().astype(str)) - {""}) if "device" in times else []
    per_cell = {key: (int(len(kept[(kept["dataset"] == key[0]) & (kept["model"] == key[1])])), int(len(group)))
                for key, group in full.groupby(["dataset", "model"])}
    summary = {"mode": mode, "runs": len(full), "kept": len(kept), "comparisons": len(joined), "cells": per_cell,
               "settled_early": int((joined["settled_at"] < joined["seeds_available"]).sum()) if mode == "replayed"
               else int((joined["settled_at"] < seeds_per_cell).sum()),
               "agree": int(joined["agrees"].fillna(False).sum()) if full_measured else None,
               "training_hours_saved": hours, "hours_estimated": estimated, "devices": devices,
               "looks": None if record is None else record["look"] - record["design"]["min"] + 1,
               "max_seeds": seeds_per_cell, "min_seeds": None if record is None else record["design"]["min"]}
    return joined, summary, kept_metrics if full_measured else None


def claims_agreement(full: pd.DataFrame, kept: pd.DataFrame) -> dict:
    """How many claims (and checks) get the same verdict from the adaptive runs as from the full grid."""
    both = full.merge(kept, on=["claim_id", "check"], suffixes=("_full", "_kept"))
    claims = both.drop_duplicates("claim_id")
    return {"claims": len(claims), "claims_agree": int((claims["claim_verdict_full"] == claims["claim_verdict_kept"]).sum()),
            "checks": len(both), "checks_agree": int((both["verdict_full"] == both["verdict_kept"]).sum())}


def adaptive_latex(joined: pd.DataFrame, summary: Mapping, settings: Mapping) -> str:
    """One row per (dataset, model): its comparisons, how many settled before the last seed and to what, the runs
    used and whether the conclusions are the full grid's; the totals in the caption."""
    if summary["mode"] == "run":
        how = (f"Adaptive seeds, as this study ran them ({summary['looks']} look(s)): every adaptive cell first ran "
               f"{summary['min_seeds']} seeds, and after each round a look")
    else:
        how = "Adaptive seeds, replayed on this grid: the seeds in their order, a look after each"
    hours = f"{summary['training_hours_saved']:.3g}" + (" (estimated from the seeds run)" if summary["hours_estimated"]
                                                        else "")
    on = " and ".join(summary["devices"]) or "the hardware that ran them"
    totals = (f"In all: runs {summary['kept']} of the fixed design's {summary['runs']}, training hours saved {hours} "
              f"(on {on}); ")
    if summary["comparisons"] and not summary["settled_early"]:
        totals += ("no comparison settled before its last seed (the seed-to-seed spread is too wide against the "
                   "differences and the practical thresholds for fewer seeds to decide), so no run was saved; ")
    if summary["agree"] is None:
        totals += "the full grid did not run, so agreement with it is not measured."
    else:
        totals += (f"the study's conclusions (significance and practical labels against {settings['baseline_method']})"
                   f" the same from these runs alone for {summary['agree']} of {summary['comparisons']} comparisons")
        if summary.get("claims"):
            totals += (f", the claims' verdicts for {summary['claims_agree']} of {summary['claims']} claims "
                       f"({summary['checks_agree']} of {summary['checks']} checks)")
        totals += "."
    lines = [
        r"\begin{table}[ht]", r"\centering", r"\small",
        r"\caption{" + latex_escape(how) + r" (repeated confidence intervals, Jennison \& Turnbull 1989, with"
        r" Pocock-type Lan--DeMets alpha spending, Bonferroni within each family of comparisons) gave another seed only"
        r" to the cells of a comparison still open; a comparison settles when its interval lies beyond the practical"
        r" threshold (different) or inside it (equivalent). " + latex_escape(totals) + r"}",
        r"\label{tab:adaptive_seeds}",
        r"\begin{tabular}{llrrrrl}", r"\toprule",
        r"Dataset & Model & Comparisons & Settled early & Different / equivalent & Runs & Same conclusions \\",
        r"\midrule",
    ]
    if joined.empty:
        lines.append(r"\multicolumn{7}{l}{No (dataset, model) ran two or more seeds against the baseline method.} \\")
    for (dataset, model), rows in joined.groupby(["dataset", "model"], sort=True):
        last = rows["seeds_available"] if summary["mode"] == "replayed" else summary.get("max_seeds", 0)
        early = rows[rows["settled_at"] < last]
        cells = summary["cells"].get((dataset, model), (0, 0))
        same = "n/a" if summary["agree"] is None else f"{int(rows['agrees'].fillna(False).sum())} of {len(rows)}"
        lines.append(" & ".join(latex_escape(cell) for cell in (
            dataset, model, len(rows), len(early),
            f"{int((rows['decision'] == 'different').sum())} / {int((rows['decision'] == 'equivalent').sum())}",
            f"{cells[0]} of {cells[1]}", same)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
