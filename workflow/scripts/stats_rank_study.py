from peftstudy import io, stats
from peftstudy.execution.jobs import logged

with logged(snakemake):
    settings = snakemake.params.statistics
    options = settings["rank_study"]
    metrics = stats.select_metrics(stats.read_metrics(snakemake.input[0]), options["metrics"])
    table = stats.rank_study(metrics, options["method"], settings["practical_thresholds"], settings["confidence"],
                             options["resamples"], options["seed"])
    io.write_csv_frame(snakemake.output[0], table)
