from peftstudy.execution.jobs import logged
from peftstudy.stats.against_baselines import compare_files

with logged(snakemake):
    settings = snakemake.params.statistics
    compare_files(snakemake.input.runs, snakemake.input.baselines, snakemake.output.comparisons,
                  snakemake.output.learned, confidence=settings["confidence"],
                  resamples=settings["against_baselines"]["resamples"], seed=settings["against_baselines"]["seed"])
