from peftstudy import io, stats
from peftstudy.execution.jobs import logged
from peftstudy.report import tables

with logged(snakemake):
    study = snakemake.params.study
    comparisons = stats.read_table(snakemake.input.comparisons)
    io.write_csv_frame(snakemake.output.csv, tables.significance_rows(comparisons, study))
    io.write_text(snakemake.output.tex, tables.significance_latex(comparisons, study))
