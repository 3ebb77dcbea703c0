from peftstudy import claims, io, stats
from peftstudy.workflow_support import logged

with logged(snakemake):
    study = snakemake.params.study
    settings = study["statistics"]
    table = claims.evaluate_claims(study, stats.read_metrics(snakemake.input.metrics),
                                   stats.read_table(snakemake.input.summary), stats.read_table(snakemake.input.rank_study),
                                   confidence=settings["confidence"], seed=settings["rank_study"]["seed"],
                                   resamples=settings["rank_study"]["resamples"])
    io.write_csv_frame(snakemake.output.csv, table)
    io.write_text(snakemake.output.tex, claims.claims_latex(table, study))
