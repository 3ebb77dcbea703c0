from peftstudy.execution import zygote
from peftstudy.execution.jobs import logged

with logged(snakemake):
    settings = snakemake.params.settings
    zygote.call(
        "peftstudy.generation:generate_run",
        settings["method_spec"],
        settings["family"],
        snakemake.input.base,
        snakemake.input.weights,
        snakemake.input.test,
        snakemake.output.generations,
        snakemake.output.record,
        settings["generation"],
        settings["max_source_tokens"],
        max_target_tokens=settings["max_target_tokens"],
        threads=snakemake.threads,
        code=snakemake.params.code,
        training_record_path=snakemake.input.record,
        generation_config_path=snakemake.output.generation_config,
        log=snakemake.log[0],
    )
