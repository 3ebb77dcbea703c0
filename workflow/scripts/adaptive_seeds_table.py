from peftstudy import io, stats
from peftstudy.claims import verdicts
from peftstudy.execution.jobs import logged
from peftstudy.report.adaptive_table import (
    adaptive_latex,
    adaptive_outcome,
    claims_agreement,
)

with logged(snakemake):
    study = snakemake.params.study
    settings = study["statistics"]
    record = io.read_json(snakemake.input.record[0]) if snakemake.input.record else None
    joined, summary, used = adaptive_outcome(stats.read_metrics(snakemake.input.metrics), settings, record)
    if used is not None and study.get("claims"):
        # The claims' verdicts from the design's runs alone, with the statistics they read computed on those runs.
        options = settings["rank_study"]
        kept = verdicts.evaluate_claims(
            study, used, stats.summarise(used, settings["confidence"], settings["bootstrap"]),
            stats.rank_study(stats.select_metrics(used, options["metrics"]), options["method"],
                             settings["practical_thresholds"], settings["confidence"], options["resamples"],
                             options["seed"]),
            confidence=settings["confidence"], seed=options["seed"], resamples=options["resamples"],
            learned=stats.read_table(snakemake.input.learned))
        summary.update(claims_agreement(stats.read_table(snakemake.input.claims), kept))
    io.write_csv_frame(snakemake.output.csv, joined)
    io.write_text(snakemake.output.tex, adaptive_latex(joined, summary, settings))
