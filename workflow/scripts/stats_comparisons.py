from peftstudy import io, stats
from peftstudy.execution.jobs import logged

with logged(snakemake):
    settings = snakemake.params.statistics
    metrics = stats.select_metrics(stats.read_metrics(snakemake.input[0]), settings["compare_metrics"])
    comparisons = stats.pairwise_comparisons(metrics, settings["baseline_method"], settings["correction"],
                                             settings["alpha"], settings["confidence"], settings["practical_thresholds"])
    io.write_csv_frame(snakemake.output.comparisons, comparisons)
    io.write_csv_frame(snakemake.output.power, stats.seed_power(comparisons, settings["alpha"], settings["power"]))
