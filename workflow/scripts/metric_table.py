from peftstudy import io, report_metrics, stats
from peftstudy.workflow_support import logged

with logged(snakemake):
    study, name = snakemake.params.study, snakemake.wildcards.table
    metrics = stats.read_metrics(snakemake.input.metrics)
    table = report_metrics.group_table(name, stats.read_table(snakemake.input.summary), metrics, study)
    with io.atomic_path(snakemake.output.csv) as tmp:
        table.to_csv(tmp, index=False)
    notes = report_metrics.group_notes(name, metrics, study)
    io.write_text(snakemake.output.tex, report_metrics.group_latex(name, table, notes, study))
