from peftstudy import io, stats
from peftstudy.execution.jobs import logged

with logged(snakemake):
    settings = snakemake.params.statistics
    summary = stats.summarise(stats.read_metrics(snakemake.input[0]), settings["confidence"], settings["bootstrap"])
    io.write_csv_frame(snakemake.output[0], summary)
