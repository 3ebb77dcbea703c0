from peftstudy import adaptive, io
from peftstudy.execution.jobs import logged
from peftstudy.study.matrix import Run

with logged(snakemake):
    record = adaptive.look(snakemake.params.study, int(snakemake.wildcards.look), list(snakemake.input),
                           [Run(*fields) for fields in snakemake.params.runs], code=snakemake.params.code)
    io.write_json(snakemake.output[0], record)
