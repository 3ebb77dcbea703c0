from peftstudy.metrics.aggregate import aggregate_metrics
from peftstudy.workflow_support import logged

with logged(snakemake):
    aggregate_metrics(list(snakemake.input), snakemake.output[0])
