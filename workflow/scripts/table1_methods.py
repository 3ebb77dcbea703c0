from peftstudy import io, report, stats
from peftstudy.workflow_support import logged

with logged(snakemake):
    table = report.table1(stats.read_table(snakemake.input.summary), stats.read_table(snakemake.input.tests), snakemake.params.study)
    with io.atomic_path(snakemake.output.csv) as tmp:
        table.to_csv(tmp, index=False)
    io.write_text(snakemake.output.tex, report.table1_latex(table, snakemake.params.study))
