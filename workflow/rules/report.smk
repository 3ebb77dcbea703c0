# Tables (each its own target, CSV twin + booktabs .tex) and the paper PDF. Each rule gets only the keys of the study
# its script reads (study_part), so editing a key reruns only the tables and figures showing it; the paper reads all.


rule table1_methods:
    input:
        summary="results/{study}/stats/summary.csv",
        comparisons="results/{study}/stats/comparisons.csv",
        baselines="results/{study}/baselines.csv",
        against="results/{study}/stats/against_baselines.csv",
    output:
        csv=report(
            "reports/{study}/tables/table1_methods.csv", caption="../report/table1_methods.rst", category="Tables"
        ),
        tex="reports/{study}/tables/table1_methods.tex",
    log:
        "logs/{study}/table1_methods/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part(
            "datasets",
            "methods",
            "costs",
            "report.table1_dataset",
            "statistics.baseline_method",
            "statistics.correction",
            "statistics.alpha",
        ),
        code=code_of("table1_methods.py"),
    script:
        "../scripts/table1_methods.py"


# Whether each cell learned its task: its quality beside the trivial baselines', with intervals over test examples.
rule learned_table:
    input:
        comparisons="results/{study}/stats/against_baselines.csv",
        learned="results/{study}/stats/learned.csv",
    output:
        csv=report("reports/{study}/tables/learned.csv", caption="../report/learned.rst", category="Tables"),
        tex="reports/{study}/tables/learned.tex",
    log:
        "logs/{study}/learned_table/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part("methods", "statistics.confidence"),
        code=code_of("learned_table.py"),
    script:
        "../scripts/learned_table.py"


rule significance_table:
    input:
        comparisons="results/{study}/stats/comparisons.csv",
    output:
        csv=report("reports/{study}/tables/significance.csv", caption="../report/significance.rst", category="Tables"),
        tex="reports/{study}/tables/significance.tex",
    log:
        "logs/{study}/significance_table/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part(
            "datasets",
            "methods",
            "report.table1_dataset",
            "statistics.baseline_method",
            "statistics.correction",
            "statistics.confidence",
            "statistics.practical_thresholds",
        ),
        code=code_of("significance_table.py"),
    script:
        "../scripts/significance_table.py"


rule paper_tex:
    input:
        tables=paper_tables,
        metrics="results/{study}/metrics.csv",
        data=study_data_manifests,
        runs=lambda w: run_paths(w.study, "metrics.json"),
        scorers="results/{study}/scorers.json",
    output:
        "reports/{study}/paper.tex",
    log:
        "logs/{study}/paper_tex/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_of,  # all of it: the paper states the study's settings and the hash of its config
        code=code_of("paper_tex.py"),
    script:
        "../scripts/paper_tex.py"


rule paper_pdf:
    input:
        tex="reports/{study}/paper.tex",
        tables=paper_tables,
        figures=paper_figures,
    output:
        report("reports/{study}/paper.pdf", caption="../report/paper.rst", category="Paper"),
    log:
        "logs/{study}/paper_pdf/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        code=code_of("paper_pdf.py"),
    script:
        "../scripts/paper_pdf.py"


# The measured metrics by group (quality, diversity, efficiency, cost), each table its own target.
rule metric_table:
    input:
        summary="results/{study}/stats/summary.csv",
        metrics="results/{study}/metrics.csv",
        baselines="results/{study}/baselines.csv",
    output:
        csv=report("reports/{study}/tables/{table}.csv", caption="../report/metric_table.rst", category="Tables"),
        tex="reports/{study}/tables/{table}.tex",
    log:
        "logs/{study}/metric_table/{table}.log",
    wildcard_constraints:
        table=paper_report.wildcard_constraint("metric_table"),
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part("datasets", "matrix", "methods", "generation", "metrics", "costs", "report.table1_dataset"),
        code=code_of("metric_table.py"),
    script:
        "../scripts/metric_table.py"


# The data card: sizes, lengths in words and in each model's tokens, label balance, leakage.
rule data_card:
    input:
        manifests=study_data_manifests,
        bases=lambda w: list(study_model_bases(w).values()),
    output:
        csv=report("reports/{study}/tables/data_card.csv", caption="../report/data_card.rst", category="Tables"),
        tex="reports/{study}/tables/data_card.tex",
    log:
        "logs/{study}/data_card/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part("training", "methods", "overrides", "statistics.baseline_method"),
        bases=study_model_bases,
        pairs=study_dataset_model_pairs,
        code=code_of("data_card.py"),
    script:
        "../scripts/data_card.py"


# Tables of the statistics (ANOVA, correlations, rank study, seed power) and of the QLoRA, architecture and
# domain comparisons, each its own target.
rule stats_table:
    input:
        summary="results/{study}/stats/summary.csv",
        power="results/{study}/stats/power.csv",
        anova_oneway="results/{study}/stats/anova_oneway.csv",
        anova_twoway="results/{study}/stats/anova_twoway.csv",
        correlations="results/{study}/stats/correlations.csv",
        rank_study="results/{study}/stats/rank_study.csv",
    output:
        csv=report("reports/{study}/tables/{table}.csv", caption="../report/stats_table.rst", category="Tables"),
        tex="reports/{study}/tables/{table}.tex",
    log:
        "logs/{study}/stats_table/{table}.log",
    wildcard_constraints:
        table=paper_report.wildcard_constraint("stats_table"),
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part(
            "datasets",
            "matrix",
            "methods",
            "report.table1_dataset",
            "statistics.alpha",
            "statistics.confidence",
            "statistics.baseline_method",
            "statistics.power",
            "statistics.rank_study",
        ),
        code=code_of("stats_table.py"),
    script:
        "../scripts/stats_table.py"


# The integrity check of the study's results table (stats/integrity.py): copies, impossible values, contradictions,
# outputs copied from training references, parameter counts against their formulas.
rule integrity_table:
    input:
        metrics="results/{study}/metrics.csv",
        runs=lambda w: run_paths(w.study, "metrics.json"),
        train=lambda w: [f"data/prepared/{d}/train.jsonl" for d in study_generation_datasets(w)],
        bases=lambda w: list(study_model_bases(w).values()),
    output:
        csv=report("reports/{study}/tables/integrity.csv", caption="../report/integrity.rst", category="Tables"),
        tex="reports/{study}/tables/integrity.tex",
    log:
        "logs/{study}/integrity_table/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        generation_datasets=study_generation_datasets,
        models=lambda w: list(study_model_bases(w)),
        code=code_of("integrity_table.py"),
    script:
        "../scripts/integrity_table.py"


# Adaptive seeds: what an adaptive study's looks decided (its last look's record), or the design replayed on a
# fixed-seed study's grid (stats/sequential.py); the runs used, the training hours saved, and whether the study's
# conclusions and the claims' verdicts are the same from those runs alone as from the full grid.
rule adaptive_seeds_table:
    input:
        metrics="results/{study}/metrics.csv",
        claims="reports/{study}/tables/claims_check.csv",
        learned="results/{study}/stats/learned.csv",
        record=lambda w: [adaptive_last_look(w)] if adaptive.design(study_of(w)) else [],
    output:
        csv=report(
            "reports/{study}/tables/adaptive_seeds.csv", caption="../report/adaptive_seeds.rst", category="Tables"
        ),
        tex="reports/{study}/tables/adaptive_seeds.tex",
    log:
        "logs/{study}/adaptive_seeds_table/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part(
            "claims",
            "datasets",
            "models",
            "methods",
            "matrix",
            "exclusions",
            "seeds",
            "statistics.baseline_method",
            "statistics.compare_metrics",
            "statistics.practical_thresholds",
            "statistics.alpha",
            "statistics.correction",
            "statistics.confidence",
            "statistics.bootstrap",
            "statistics.rank_study",
        ),
        code=code_of("adaptive_seeds_table.py"),
    script:
        "../scripts/adaptive_seeds_table.py"


rule claims_table:
    input:
        metrics="results/{study}/metrics.csv",
        summary="results/{study}/stats/summary.csv",
        rank_study="results/{study}/stats/rank_study.csv",
        learned="results/{study}/stats/learned.csv",
    output:
        csv=report("reports/{study}/tables/claims_check.csv", caption="../report/claims_check.rst", category="Tables"),
        tex="reports/{study}/tables/claims_check.tex",
    log:
        "logs/{study}/claims_table/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        # The claims, the names and matrix their cells are checked against, and the rank study's settings.
        study=study_part(
            "claims",
            "datasets",
            "models",
            "methods",
            "matrix",
            "exclusions",
            "seeds",
            "statistics.confidence",
            "statistics.rank_study",
        ),
        code=code_of("claims_table.py"),
    script:
        "../scripts/claims_table.py"


# Figures drawn from the statistics, each its own target.
rule figure_stats:
    input:
        summary="results/{study}/stats/summary.csv",
        rank_study="results/{study}/stats/rank_study.csv",
        correlations="results/{study}/stats/correlations.csv",
    output:
        report("reports/{study}/figures/{figure}.pdf", caption="../report/figure_stats.rst", category="Figures"),
    log:
        "logs/{study}/figure_stats/{figure}.log",
    wildcard_constraints:
        figure=paper_report.wildcard_constraint("figure_stats"),
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part(
            "datasets",
            "models",
            "matrix",
            "methods",
            "report.table1_dataset",
            "statistics.alpha",
            "statistics.compare_metrics",
            "statistics.rank_study",
        ),
        code=code_of("figure_stats.py"),
    script:
        "../scripts/figure_stats.py"


rule figure_output_clusters:
    input:
        generations=lambda w: [s["generations"] for p in cluster_figure_panels(w) for s in p["series"]],
        metrics=lambda w: [s["metrics"] for p in cluster_figure_panels(w) for s in p["series"]],
    output:
        report(
            "reports/{study}/figures/output_clusters.pdf", caption="../report/output_clusters.rst", category="Figures"
        ),
    log:
        "logs/{study}/figure_output_clusters/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        panels=cluster_figure_panels,
        embedding_model=lambda w: study_of(w).get("metrics", {}).get("embeddings", {}).get("model", "all-MiniLM-L6-v2"),
        code=code_of("figure_output_clusters.py"),
    script:
        "../scripts/figure_output_clusters.py"
