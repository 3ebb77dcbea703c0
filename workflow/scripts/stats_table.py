from peftstudy import io, report_stats, stats
from peftstudy.workflow_support import logged

with logged(snakemake):
    inputs = {name: stats.read_table(path) for name, path in snakemake.input.items()}
    table, tex = report_stats.build(snakemake.wildcards.table, inputs, snakemake.params.study)
    io.write_csv_frame(snakemake.output.csv, table)
    io.write_text(snakemake.output.tex, tex)
