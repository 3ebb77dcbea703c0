from peftstudy.data.wordnet import prepare_wordnet
from peftstudy.execution.jobs import logged

with logged(snakemake):
    prepare_wordnet(snakemake.input.lexnames, snakemake.output[0])
