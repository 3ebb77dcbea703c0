from peftstudy import io, stats
from peftstudy.execution.jobs import logged
from peftstudy.report import baseline_tables

with logged(snakemake):
    study = snakemake.params.study
    table = baseline_tables.learned_table(stats.read_table(snakemake.input.comparisons),
                                          stats.read_table(snakemake.input.learned), study)
    io.write_csv_frame(snakemake.output.csv, table)
    io.write_text(snakemake.output.tex, baseline_tables.learned_latex(table, study, study["statistics"]["confidence"]))
