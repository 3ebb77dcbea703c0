from pathlib import Path

from peftstudy.data import prepare_corpus
from peftstudy.execution.jobs import logged

with logged(snakemake):
    # The prepared directories of the datasets whose evaluation splits are taken out of the corpus.
    evaluation_dirs = {Path(path).parent.name: Path(path).parent for path in snakemake.input.evaluation}
    prepare_corpus(snakemake.params.spec, Path(snakemake.output.text), snapshot_dir=Path("data/snapshots"),
                   evaluation_dirs=evaluation_dirs)
