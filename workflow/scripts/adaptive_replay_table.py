from peftstudy import io, stats
from peftstudy.execution.jobs import logged
from peftstudy.report.adaptive_table import adaptive_latex, adaptive_replay

with logged(snakemake):
    settings = snakemake.params.statistics
    joined, summary = adaptive_replay(stats.read_metrics(snakemake.input.metrics), settings)
    io.write_csv_frame(snakemake.output.csv, joined)
    io.write_text(snakemake.output.tex, adaptive_latex(joined, summary, settings))
