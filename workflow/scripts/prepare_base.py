from peftstudy import zygote
from peftstudy.workflow_support import logged

with logged(snakemake):
    corpus = snakemake.input[0] if len(snakemake.input) else None
    zygote.call("peftstudy.base:prepare_base", snakemake.params.spec, corpus, snakemake.output[0],
                threads=snakemake.threads, log=snakemake.log[0])
