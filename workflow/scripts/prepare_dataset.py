from pathlib import Path

from peftstudy.data import prepare_dataset
from peftstudy.execution.jobs import logged

with logged(snakemake):
    prepare_dataset(snakemake.params.spec, Path(snakemake.output.manifest).parent, snapshot_dir=Path("data/snapshots"))
