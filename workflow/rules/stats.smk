# Statistics from the tidy metrics table, each a standalone CSV under results/{study}/stats/ (the report only
# formats them). What is compared, the thresholds and the correction come from the study's `statistics`; each rule
# gets only the settings it reads, so changing one reruns only what depends on it.


rule statistics:
    input:
        "results/{study}/metrics.csv",
    output:
        "results/{study}/stats/summary.csv",
    log:
        "logs/{study}/statistics/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        statistics=statistics_settings("confidence", "bootstrap"),
        code=code_of("stats_summary.py"),
    script:
        "../scripts/stats_summary.py"


rule comparisons:
    input:
        "results/{study}/metrics.csv",
    output:
        comparisons="results/{study}/stats/comparisons.csv",
        power="results/{study}/stats/power.csv",
    log:
        "logs/{study}/comparisons/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        statistics=statistics_settings(
            "baseline_method", "correction", "alpha", "confidence", "practical_thresholds", "compare_metrics", "power"
        ),
        code=code_of("stats_comparisons.py"),
    script:
        "../scripts/stats_comparisons.py"


rule anova:
    input:
        "results/{study}/metrics.csv",
    output:
        one_way="results/{study}/stats/anova_oneway.csv",
        tukey="results/{study}/stats/tukey_hsd.csv",
        two_way="results/{study}/stats/anova_twoway.csv",
    log:
        "logs/{study}/anova/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        statistics=statistics_settings("alpha", "compare_metrics"),
        code=code_of("stats_anova.py"),
    script:
        "../scripts/stats_anova.py"


rule correlations:
    input:
        "results/{study}/metrics.csv",
    output:
        "results/{study}/stats/correlations.csv",
    log:
        "logs/{study}/correlations/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        statistics=statistics_settings("compare_metrics"),
        code=code_of("stats_correlations.py"),
    script:
        "../scripts/stats_correlations.py"


rule rank_study:
    input:
        "results/{study}/metrics.csv",
    output:
        "results/{study}/stats/rank_study.csv",
    log:
        "logs/{study}/rank_study/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        statistics=statistics_settings("rank_study", "practical_thresholds", "confidence"),
        code=code_of("stats_rank_study.py"),
    script:
        "../scripts/stats_rank_study.py"


# Each cell against the trivial baselines of its dataset, example by example: whether it learned its task.
rule against_baselines:
    input:
        runs=study_metrics_inputs,
        baselines=study_baseline_records,
    output:
        comparisons="results/{study}/stats/against_baselines.csv",
        learned="results/{study}/stats/learned.csv",
    log:
        "logs/{study}/against_baselines/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        statistics=statistics_settings("confidence", "against_baselines"),
        code=code_of("stats_against_baselines.py"),
    script:
        "../scripts/stats_against_baselines.py"
