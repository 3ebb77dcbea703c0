from peftstudy import io, stats
from peftstudy.execution.jobs import logged

with logged(snakemake):
    settings = snakemake.params.statistics
    metrics = stats.select_metrics(stats.read_metrics(snakemake.input[0]), settings["compare_metrics"])
    io.write_csv_frame(snakemake.output[0], stats.metric_correlations(metrics, "dataset"))
