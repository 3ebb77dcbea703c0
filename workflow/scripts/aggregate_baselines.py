from peftstudy.metrics.baseline_scoring import aggregate_baselines
from peftstudy.execution.jobs import logged

with logged(snakemake):
    aggregate_baselines(list(snakemake.input), snakemake.output[0], study=snakemake.wildcards.study)
