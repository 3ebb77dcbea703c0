from peftstudy import io, report
from peftstudy.workflow_support import logged

with logged(snakemake):
    context = report.paper_context(snakemake.params.study, list(snakemake.input.runs), list(snakemake.input.data))
    io.write_text(snakemake.output[0], report.paper_latex(snakemake.params.study, context))
