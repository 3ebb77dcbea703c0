# Scoring each run, then one tidy table per study.


# The scoring models (BERTScore's, the diversity metrics' embedder), fetched once per study before any scoring job,
# on the submitting node: it has network where compute nodes may not. Its params are the models alone, so a change
# of another scoring setting does not fetch again.
rule fetch_scorers:
    output:
        "results/{study}/scorers.json",
    log:
        "logs/{study}/fetch_scorers/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        models=lambda w: {
            role: {
                key: value
                for key, value in ((study_of(w).get("metrics") or {}).get(role) or {}).items()
                if key in ("model", "revision")
            }
            for role in ("bertscore", "embeddings")
        },
        code=code_of("fetch_scorers.py"),
    script:
        "../scripts/fetch_scorers.py"


rule score:
    input:
        generations=f"{RUN_DIR}/generations.jsonl",
        train_record=f"{RUN_DIR}/train.json",
        generation_record=f"{RUN_DIR}/generation.json",
        train="data/prepared/{dataset}/train.jsonl",
        wordnet="data/nltk",
        scorers="results/{study}/scorers.json",
    output:
        f"{RUN_DIR}/metrics.json",
    log:
        "logs/{study}/score/{dataset}/{model}/{variant}/seed{seed}.log",
    conda:
        "../../envs/peftstudy.yaml"
    resources:
        **rule_resources("score"),
        # Scoring jobs grouped into one SLURM job (the profile's group "scoring") run one after another in it.
        scoring_slot=1,
    params:
        settings=lambda w: study_of(w).get("metrics", {}),
        costs=lambda w: study_of(w).get("costs"),
        task=lambda w: dataset_task(DATASETS[w.dataset]),
        code=code_of("score.py"),
    script:
        "../scripts/score.py"


rule aggregate_metrics:
    input:
        study_metrics_inputs,
    output:
        metrics="results/{study}/metrics.csv",
        # Runs that diverged (training.on_divergence: record): out of metrics.csv, listed here and in the paper.
        diverged="results/{study}/diverged_runs.csv",
    log:
        "logs/{study}/aggregate_metrics/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        code=code_of("aggregate_metrics.py"),
    script:
        "../scripts/aggregate_metrics.py"
