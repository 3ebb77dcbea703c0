from pathlib import Path

import pandas as pd

from peftstudy import io
from peftstudy.data import card
from peftstudy.execution.jobs import logged
from peftstudy.report import data_card
from peftstudy.study import training_settings

with logged(snakemake):
    study = snakemake.params.study
    data_dirs = {Path(path).parent.name: Path(path).parent for path in snakemake.input.manifests}
    # The token limits of the baseline method's training settings: the truncation the data card reports.
    limits = {(dataset, model): training_settings(study, study["statistics"]["baseline_method"], model, dataset)
              for dataset, model in snakemake.params.pairs}
    rows = card.data_card_rows(data_dirs, snakemake.params.bases, limits)
    with io.atomic_path(snakemake.output.csv) as tmp:
        pd.DataFrame(rows, columns=card.COLUMNS).to_csv(tmp, index=False)
    io.write_text(snakemake.output.tex, data_card.data_card_latex(rows))
