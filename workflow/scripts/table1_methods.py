from peftstudy import io, report, stats
from peftstudy.workflow_support import logged

with logged(snakemake):
    study = snakemake.params.study
    table = report.table1(stats.read_table(snakemake.input.summary), stats.read_table(snakemake.input.comparisons), study)
    io.write_csv_frame(snakemake.output.csv, table)
    io.write_text(snakemake.output.tex, report.table1_latex(table, study))
