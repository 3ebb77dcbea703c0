from peftstudy.execution import zygote
from peftstudy.execution.jobs import logged

with logged(snakemake):
    zygote.call("peftstudy.training.bases:build_snapshot_base", snakemake.params.spec, snakemake.input.text,
                snakemake.output[0], threads=snakemake.threads, log=snakemake.log[0])
