from peftstudy.execution import zygote
from peftstudy.execution.jobs import logged

with logged(snakemake):
    corpus = snakemake.input[0] if len(snakemake.input) else None
    zygote.call("peftstudy.training.bases:prepare_base", snakemake.params.spec, corpus, snakemake.output[0],
                threads=snakemake.threads, log=snakemake.log[0])
