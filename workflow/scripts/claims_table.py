from peftstudy import io, stats
from peftstudy.claims import verdicts
from peftstudy.claims.table import claims_latex
from peftstudy.execution.jobs import logged

with logged(snakemake):
    study = snakemake.params.study
    settings = study["statistics"]
    table = verdicts.evaluate_claims(study, stats.read_metrics(snakemake.input.metrics),
                                   stats.read_table(snakemake.input.summary), stats.read_table(snakemake.input.rank_study),
                                   confidence=settings["confidence"], seed=settings["rank_study"]["seed"],
                                   resamples=settings["rank_study"]["resamples"],
                                   learned=stats.read_table(snakemake.input.learned))
    io.write_csv_frame(snakemake.output.csv, table)
    io.write_text(snakemake.output.tex, claims_latex(table, study))
