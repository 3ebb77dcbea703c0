from pathlib import Path

import pandas as pd

from peftstudy import io, report_data
from peftstudy.workflow_support import logged

with logged(snakemake):
    data_dirs = {Path(path).parent.name: Path(path).parent for path in snakemake.input.manifests}
    rows = report_data.data_card_rows(snakemake.params.study, data_dirs, snakemake.params.bases,
                                      [tuple(pair) for pair in snakemake.params.pairs])
    with io.atomic_path(snakemake.output.csv) as tmp:
        pd.DataFrame(rows, columns=report_data.COLUMNS).to_csv(tmp, index=False)
    io.write_text(snakemake.output.tex, report_data.data_card_latex(rows))
