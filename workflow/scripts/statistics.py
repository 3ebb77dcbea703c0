from peftstudy import io, stats
from peftstudy.workflow_support import logged

with logged(snakemake):
    metrics = stats.read_metrics(snakemake.input[0])
    settings = snakemake.params.statistics
    with io.atomic_path(snakemake.output.summary) as tmp:
        stats.summarise(metrics, settings["confidence"]).to_csv(tmp, index=False)
    with io.atomic_path(snakemake.output.tests) as tmp:
        stats.welch_tests(metrics, settings["baseline_method"]).to_csv(tmp, index=False)
