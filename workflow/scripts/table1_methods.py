from peftstudy import io, stats
from peftstudy.execution.jobs import logged
from peftstudy.report import tables

with logged(snakemake):
    study = snakemake.params.study
    table = tables.table1(stats.read_table(snakemake.input.summary), stats.read_table(snakemake.input.comparisons), study,
                          stats.read_table(snakemake.input.baselines), stats.read_table(snakemake.input.against))
    io.write_csv_frame(snakemake.output.csv, table)
    io.write_text(snakemake.output.tex, tables.table1_latex(table, study))
