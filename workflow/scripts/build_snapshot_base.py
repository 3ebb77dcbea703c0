from peftstudy.execution import zygote
from peftstudy.execution.jobs import logged

with logged(snakemake):
    spec = snakemake.params.spec
    zygote.call("peftstudy.training.bases:build_snapshot_base", spec, spec["corpus_spec"], snakemake.input.text,
                snakemake.output[0], threads=snakemake.threads, log=snakemake.log[0])
