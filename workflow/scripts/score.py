from peftstudy.execution import zygote
from peftstudy.execution.jobs import logged

with logged(snakemake):
    zygote.call(
        "peftstudy.metrics.scoring:score_run_files",
        {key: snakemake.wildcards[key] for key in ("study", "dataset", "model", "variant", "seed")},
        snakemake.input.generations,
        snakemake.input.train_record,
        snakemake.input.generation_record,
        snakemake.output[0],
        settings=snakemake.params.settings,
        costs=snakemake.params.costs,
        wordnet_dir=snakemake.input.wordnet,
        train_path=snakemake.input.train,
        code=snakemake.params.code,
        task=snakemake.params.task,
        log=snakemake.log[0],
    )
