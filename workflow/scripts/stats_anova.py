import pandas as pd

from peftstudy import io, stats
from peftstudy.execution.jobs import logged

with logged(snakemake):
    settings = snakemake.params.statistics
    metrics = stats.select_metrics(stats.read_metrics(snakemake.input[0]), settings["compare_metrics"])
    io.write_csv_frame(snakemake.output.one_way, stats.one_way_anova(metrics, settings["alpha"]))
    io.write_csv_frame(snakemake.output.tukey, stats.tukey_hsd(metrics, settings["alpha"]))
    two_way = pd.concat([stats.two_way_anova(metrics, factor) for factor in ("model", "dataset")], ignore_index=True)
    io.write_csv_frame(snakemake.output.two_way, two_way)
