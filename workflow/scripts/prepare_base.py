from peftstudy.base import prepare_base
from peftstudy.workflow_support import logged

with logged(snakemake):
    corpus = snakemake.input[0] if len(snakemake.input) else None
    prepare_base(snakemake.params.spec, corpus, snakemake.output[0], threads=snakemake.threads)
