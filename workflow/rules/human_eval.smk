# Human evaluation: a blinded rating sheet out; the raters' filled sheets in (Table 2, agreement, errors).
# The sheet's codes are keyed by a secret made on the first run, results/{study}/human_eval/blinding_secret (0600,
# beside the key; not an output, so a rerun keeps it and the codes of sheets handed out stay valid).


rule rating_sheet:
    input:
        generations=human_eval_generations,
    output:
        sheet="reports/{study}/human_eval/rating_sheet.csv",
        key="results/{study}/human_eval/blinding_key.csv",
    log:
        "logs/{study}/rating_sheet/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        runs=human_eval_runs,
        settings=human_eval_settings("examples_per_cell", "seed"),
        code=code_of("rating_sheet.py"),
    script:
        "../scripts/rating_sheet.py"


rule human_ratings:
    input:
        key="results/{study}/human_eval/blinding_key.csv",
        ratings=human_eval_rating_files,
    output:
        table2="results/{study}/human_eval/table2.csv",
        agreement="results/{study}/human_eval/agreement.csv",
        errors="results/{study}/human_eval/errors.csv",
        ratings="results/{study}/human_eval/ratings.csv",
    log:
        "logs/{study}/human_ratings/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        code=code_of("human_ratings.py"),
    script:
        "../scripts/human_ratings.py"


rule human_tables:
    input:
        table2="results/{study}/human_eval/table2.csv",
        agreement="results/{study}/human_eval/agreement.csv",
        errors="results/{study}/human_eval/errors.csv",
        summary="results/{study}/stats/summary.csv",
    output:
        table2_csv="reports/{study}/tables/table2_human.csv",
        table2_tex="reports/{study}/tables/table2_human.tex",
        errors_csv="reports/{study}/tables/human_errors.csv",
        errors_tex="reports/{study}/tables/human_errors.tex",
    log:
        "logs/{study}/human_tables/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        study=study_part("methods"),
        settings=human_eval_settings("ratings_dir"),
        code=code_of("human_tables.py"),
    script:
        "../scripts/human_tables.py"
