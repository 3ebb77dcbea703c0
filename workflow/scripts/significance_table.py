from peftstudy import io, report, stats
from peftstudy.workflow_support import logged

with logged(snakemake):
    study = snakemake.params.study
    comparisons = stats.read_table(snakemake.input.comparisons)
    io.write_csv_frame(snakemake.output.csv, report.significance_rows(comparisons, study))
    io.write_text(snakemake.output.tex, report.significance_latex(comparisons, study))
