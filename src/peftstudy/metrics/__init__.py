"""Metrics: quality (quality.py), diversity (diversity.py), efficiency (efficiency.py), and scoring a run
into the tidy metrics table (scoring.py)."""

from .quality import bleu4, rouge, rouge_l
from .scoring import (METRICS_COLUMNS, aggregate_metrics, metric_settings, score_run, score_run_files, tidy_rows,
                      write_metrics_table)

__all__ = ["METRICS_COLUMNS", "aggregate_metrics", "bleu4", "metric_settings", "rouge", "rouge_l", "score_run",
           "score_run_files", "tidy_rows", "write_metrics_table"]
