import pandas as pd

from peftstudy import io
from peftstudy.execution.jobs import logged
from peftstudy.metrics.evidence import study_evidence
from peftstudy.report.integrity_table import integrity_latex
from peftstudy.stats import integrity

with logged(snakemake):
    table = pd.read_csv(snakemake.input.metrics, dtype=str, keep_default_na=False)
    evidence = study_evidence(list(snakemake.input.runs), dict(zip(snakemake.params.generation_datasets,
                                                                   snakemake.input.train)),
                              dict(zip(snakemake.params.models, snakemake.input.bases)))
    runs = [integrity.RunEvidence(**fields) for fields in evidence]
    findings = integrity.check_table(table, runs)
    io.write_csv(snakemake.output.csv, integrity.summary_rows(findings), list(integrity.SUMMARY_COLUMNS))
    formulas = (sum(run.expected_trainable is not None for run in runs), len(runs))
    io.write_text(snakemake.output.tex, integrity_latex(findings, source=f"{snakemake.input.metrics} and its runs",
                                                        formulas=formulas))
