from pathlib import Path

from peftstudy import zygote
from peftstudy.workflow_support import logged

with logged(snakemake):
    zygote.call(
        "peftstudy.train:train_run",
        snakemake.params.settings,
        snakemake.input.base,
        Path(snakemake.input.data).parent,
        snakemake.output.weights,
        snakemake.output.record,
        threads=snakemake.threads,
        checkpoint_dir=snakemake.params.checkpoint_dir,
        log=snakemake.log[0],
    )
