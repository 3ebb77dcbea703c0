# Training: one job per (study, dataset, model, method variant, seed).


rule train:
    input:
        data="data/prepared/{dataset}/manifest.json",
        base="results/bases/{model}",
    output:
        weights=directory(f"{RUN_DIR}/weights"),
        record=f"{RUN_DIR}/train.json",
    log:
        "logs/{study}/train/{dataset}/{model}/{variant}/seed{seed}.log",
    conda:
        "../../envs/peftstudy.yaml"
    threads: job_threads("train")
    resources:
        **rule_resources("train"),
    params:
        settings=settings_of_run,
        code=code_of("train.py"),
        # Outside the declared outputs (Snakemake deletes those before a rerun): a rerun resumes from here.
        max_oom_halvings=lambda w: cluster.resource_setting(study_of(w), "max_oom_halvings"),
        checkpoint_dir=lambda w: f"checkpoints/{w.study}/{w.dataset}/{w.model}/{w.variant}/seed{w.seed}",
    script:
        "../scripts/train.py"
