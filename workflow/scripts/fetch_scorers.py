from peftstudy.execution.jobs import logged
from peftstudy.metrics.scorers import fetch_scorers

with logged(snakemake):
    fetch_scorers(snakemake.params.models, snakemake.output[0], code=snakemake.params.code)
