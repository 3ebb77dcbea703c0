# Scoring each run, then one tidy table per study.


rule score:
    input:
        generations=f"{RUN_DIR}/generations.jsonl",
        train_record=f"{RUN_DIR}/train.json",
        generation_record=f"{RUN_DIR}/generation.json",
        train="data/prepared/{dataset}/train.jsonl",
        wordnet="data/nltk",
    output:
        f"{RUN_DIR}/metrics.json",
    params:
        settings=lambda w: study_of(w).get("metrics", {}),
        costs=lambda w: study_of(w).get("costs"),
        task=lambda w: dataset_task(DATASETS[w.dataset]),
        code=code_of("score.py"),
    resources:
        **rule_resources("score"),
        # Scoring jobs grouped into one SLURM job (the profile's group "scoring") run one after another in it.
        scoring_slot=1,
    log:
        "logs/{study}/score/{dataset}/{model}/{variant}/seed{seed}.log",
    script:
        "../scripts/score.py"


rule aggregate_metrics:
    input:
        study_metrics_inputs,
    output:
        metrics="results/{study}/metrics.csv",
        # Runs that diverged (training.on_divergence: record): out of metrics.csv, listed here and in the paper.
        diverged="results/{study}/diverged_runs.csv",
    params:
        code=code_of("aggregate_metrics.py"),
    log:
        "logs/{study}/aggregate_metrics/job.log",
    localrule: True
    script:
        "../scripts/aggregate_metrics.py"
