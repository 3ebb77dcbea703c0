from pathlib import Path

from peftstudy.train import train_run
from peftstudy.workflow_support import logged

with logged(snakemake):
    train_run(
        snakemake.params.settings,
        snakemake.input.base,
        Path(snakemake.input.data).parent,
        snakemake.output.weights,
        snakemake.output.record,
        threads=snakemake.threads,
    )
