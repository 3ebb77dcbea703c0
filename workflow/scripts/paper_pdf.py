from peftstudy.report import build_pdf
from peftstudy.workflow_support import logged

with logged(snakemake):
    build_pdf(snakemake.input.tex, snakemake.output[0])
