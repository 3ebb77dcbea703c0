from peftstudy import io
from peftstudy.execution.jobs import logged
from peftstudy.report import paper

with logged(snakemake):
    context = paper.paper_context(snakemake.params.study, list(snakemake.input.runs), list(snakemake.input.data),
                                  snakemake.input.scorers)
    io.write_text(snakemake.output[0], paper.paper_latex(snakemake.params.study, context))
