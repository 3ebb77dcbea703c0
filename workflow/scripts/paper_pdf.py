from peftstudy.execution.jobs import logged
from peftstudy.report.paper import build_pdf

with logged(snakemake):
    build_pdf(snakemake.input.tex, snakemake.output[0])
