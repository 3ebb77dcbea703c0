from pathlib import Path

from peftstudy.data import prepare_corpus
from peftstudy.execution.jobs import logged

with logged(snakemake):
    prepare_corpus(snakemake.params.spec, Path(snakemake.output.text), snapshot_dir=Path("data/snapshots"))
