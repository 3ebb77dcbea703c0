from peftstudy import io, stats
from peftstudy.execution.jobs import logged
from peftstudy.report import human_tables

with logged(snakemake):
    study = snakemake.params.study
    table2, agreement = stats.read_table(snakemake.input.table2), stats.read_table(snakemake.input.agreement)
    with io.atomic_path(snakemake.output.table2_csv) as tmp:
        table2.to_csv(tmp, index=False)
    io.write_text(snakemake.output.table2_tex,
                  human_tables.table2_latex(table2, agreement, study, snakemake.params.settings["ratings_dir"]))
    errors = human_tables.errors_table(stats.read_table(snakemake.input.errors), stats.read_table(snakemake.input.summary))
    with io.atomic_path(snakemake.output.errors_csv) as tmp:
        errors.to_csv(tmp, index=False)
    io.write_text(snakemake.output.errors_tex, human_tables.errors_latex(errors, study))
