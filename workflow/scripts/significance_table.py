from peftstudy import io, report, stats
from peftstudy.workflow_support import logged

with logged(snakemake):
    tests = stats.read_table(snakemake.input.tests)
    with io.atomic_path(snakemake.output.csv) as tmp:
        report.significance_rows(tests, snakemake.params.study).to_csv(tmp, index=False)
    io.write_text(snakemake.output.tex, report.significance_latex(tests, snakemake.params.study))
