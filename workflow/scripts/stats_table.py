from peftstudy import io, stats
from peftstudy.execution.jobs import logged
from peftstudy.report import stats_tables

with logged(snakemake):
    inputs = {name: stats.read_table(path) for name, path in snakemake.input.items()}
    table, tex = stats_tables.build(snakemake.wildcards.table, inputs, snakemake.params.study)
    io.write_csv_frame(snakemake.output.csv, table)
    io.write_text(snakemake.output.tex, tex)
