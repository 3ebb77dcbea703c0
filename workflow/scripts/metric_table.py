from peftstudy import io, stats
from peftstudy.execution.jobs import logged
from peftstudy.report import metric_tables

with logged(snakemake):
    study, name = snakemake.params.study, snakemake.wildcards.table
    metrics = stats.read_metrics(snakemake.input.metrics)
    table = metric_tables.group_table(name, stats.read_table(snakemake.input.summary), metrics, study,
                                      stats.read_table(snakemake.input.baselines))
    with io.atomic_path(snakemake.output.csv) as tmp:
        table.to_csv(tmp, index=False)
    notes = metric_tables.group_notes(name, metrics, study)
    io.write_text(snakemake.output.tex, metric_tables.group_latex(name, table, notes, study))
