"""The study's tidy metrics table from every run's metrics.json (the aggregate_metrics job).

Apart from scoring.py because it reads the run matrix's identity (config.Run): scoring one run must not depend
on the study-config code (the workflow's code fingerprints follow imports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from peftstudy import io
from peftstudy.metrics.scoring import tidy_rows, write_metrics_table
from peftstudy.study.matrix import Run

DIVERGED_COLUMNS = ["study", "dataset", "model", "method", "rank", "seed", "step", "epoch", "what", "loss",
                    "learning_rate", "scheduled_learning_rate"]


def diverged_row(run: Run, scored: Mapping) -> dict:
    """One diverged run (on_divergence: record) as diverged_runs.csv and the report list it."""
    diverged = scored["diverged"]
    return {"study": run.study, "dataset": run.dataset, "model": run.model, "method": run.method,
            "rank": "" if run.rank is None else run.rank, "seed": run.seed,
            **{key: diverged.get(key, "") for key in DIVERGED_COLUMNS[6:]}}


def collect_rows(metrics_paths) -> tuple[list[dict], list[tuple[Run, dict]]]:
    """Every run's tidy rows (scoring.tidy_rows), and each run that diverged (no metric values) with its record."""
    rows, diverged = [], []
    for path in metrics_paths:
        scored = io.read_json(path)
        identity = scored["run"]
        run = Run(identity["study"], identity["dataset"], identity["model"], identity["variant"], int(identity["seed"]))
        if "diverged" in scored:
            if scored["metrics"]:
                raise ValueError(f"{path}: marked diverged but has metric values (a record written by hand?); "
                                 f"rescore the run")
            diverged.append((run, scored))
            continue
        rows.extend(tidy_rows(run, scored))
    return rows, diverged


def aggregate_metrics(metrics_paths, out_path, diverged_path=None) -> int:
    """Collect every run's metrics.json into the study's tidy metrics.csv; return the row count.

    A diverged run (on_divergence: record) has no metric values: it is left out of metrics.csv, so no statistic
    reads it, and listed in diverged_path (by default diverged_runs.csv beside metrics.csv; written even when
    empty, as the workflow's declared output)."""
    rows, diverged_runs = collect_rows(metrics_paths)
    diverged = [diverged_row(run, scored) for run, scored in diverged_runs]
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["method"], str(r["rank"]).zfill(6), r["seed"], r["metric"]))
    write_metrics_table(out_path, rows)
    diverged.sort(key=lambda r: (r["dataset"], r["model"], r["method"], str(r["rank"]).zfill(6), r["seed"]))
    io.write_csv(diverged_path or Path(out_path).with_name("diverged_runs.csv"), diverged, DIVERGED_COLUMNS)
    return len(rows)
