"""The study's tidy metrics table from every run's metrics.json (the aggregate_metrics job).

Apart from scoring.py because it reads the run matrix's identity (config.Run): scoring one run must not depend
on the study-config code (the workflow's code fingerprints follow imports).
"""

from __future__ import annotations

from peftstudy import io
from peftstudy.metrics.scoring import tidy_rows, write_metrics_table
from peftstudy.study.matrix import Run


def aggregate_metrics(metrics_paths, out_path) -> int:
    """Collect every run's metrics.json into the study's tidy metrics.csv; return the row count."""
    rows = []
    for path in metrics_paths:
        scored = io.read_json(path)
        identity = scored["run"]
        run = Run(identity["study"], identity["dataset"], identity["model"], identity["variant"], int(identity["seed"]))
        rows.extend(tidy_rows(run, scored))
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["method"], str(r["rank"]).zfill(6), r["seed"], r["metric"]))
    write_metrics_table(out_path, rows)
    return len(rows)
