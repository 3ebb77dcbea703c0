from peftstudy.execution import zygote
from peftstudy.execution.jobs import logged

with logged(snakemake):
    zygote.call(
        "peftstudy.metrics.baseline_scoring:baseline_run",
        snakemake.params.spec,
        snakemake.input.train,
        snakemake.input.test,
        snakemake.output.generations,
        snakemake.output.record,
        task=snakemake.params.task,
        metric_settings=snakemake.params.settings,
        wordnet_dir=snakemake.input.wordnet,
        max_test_examples=snakemake.params.max_test_examples,
        code=snakemake.params.code,
        name=snakemake.wildcards.baseline,
        log=snakemake.log[0],
    )
