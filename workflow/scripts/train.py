from pathlib import Path

from peftstudy.execution import zygote
from peftstudy.execution.jobs import logged
from peftstudy.training import distributed

with logged(snakemake):
    arguments = (snakemake.params.settings, snakemake.input.base, Path(snakemake.input.data).parent,
                 snakemake.output.weights)
    processes = distributed.processes_for_gpus(int(getattr(snakemake.resources, "gpu", None) or 1))
    if processes > 1:  # data parallel, one process per GPU (a CUDA out-of-memory error fails the attempt)
        distributed.launch("peftstudy.training.loop:train_run", processes, *map(str, arguments), snakemake.output.record,
                           threads=snakemake.threads, checkpoint_dir=snakemake.params.checkpoint_dir,
                           code=snakemake.params.code)
    else:
        zygote.call("peftstudy.training.oom:train_run", *arguments, record_path=snakemake.output.record,
                    threads=snakemake.threads, checkpoint_dir=snakemake.params.checkpoint_dir,
                    code=snakemake.params.code, max_halvings=snakemake.params.max_oom_halvings, log=snakemake.log[0])
