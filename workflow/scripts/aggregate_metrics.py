from peftstudy.execution.jobs import logged
from peftstudy.metrics.aggregate import aggregate_metrics

with logged(snakemake):
    aggregate_metrics(list(snakemake.input), snakemake.output.metrics, snakemake.output.diverged)
