# Adaptive seeds (a study with `seeds: {adaptive: ...}`): every adaptive cell first runs `min` seeds; the look after
# each round is a checkpoint whose record names the cells of the comparisons still open, and only those run the next
# seed (peftstudy.adaptive, stats/sequential.py). `snakemake -n` lists round one's runs and the first look; the
# rounds after it are planned once that look has run. The records are files: a stopped study resumes at its round.


checkpoint adaptive_look:
    input:
        adaptive_look_inputs,
    output:
        "results/{study}/adaptive/look{look}.json",
    log:
        "logs/{study}/adaptive_look/look{look}.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part(
            "adaptive_seeds",
            "seeds",
            "matrix",
            "methods",
            "exclusions",
            "statistics.baseline_method",
            "statistics.compare_metrics",
        ),
        runs=lambda w: [list(adaptive.run_fields(run)) for run in adaptive_look_runs(w.study, int(w.look))],
        run_count=lambda w: len(adaptive_look_runs(w.study, int(w.look))),
        code=code_of("adaptive_look.py"),
    message:
        "look after {wildcards.look} seeds of study {wildcards.study}, on {params.run_count} runs: it decides which "
        "cells run the next seed (the rounds after it depend on its record)"
    script:
        "../scripts/adaptive_look.py"
