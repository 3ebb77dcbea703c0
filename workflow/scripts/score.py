from peftstudy import io
from peftstudy.metrics import score_run
from peftstudy.workflow_support import logged

with logged(snakemake):
    scored = score_run(
        snakemake.input.generations,
        io.read_json(snakemake.input.train_record),
        io.read_json(snakemake.input.generation_record),
    )
    scored["run"] = {key: snakemake.wildcards[key] for key in ("study", "dataset", "model", "variant", "seed")}
    io.write_json(snakemake.output[0], scored)
