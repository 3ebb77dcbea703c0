"""The report: tables (a CSV twin and booktabs LaTeX each), figures and the paper, rendered from the tidy results.

The report only formats: every number comes from metrics.csv and the statistics."""
