# Trivial baselines: each trained dataset's test split predicted from its training split alone (no model), scored
# with the runs' metrics: what a fine-tuned cell has to beat.


rule baseline:
    input:
        train="data/prepared/{dataset}/train.jsonl",
        test="data/prepared/{dataset}/test.jsonl",
        wordnet="data/nltk",
        scorers="results/{study}/scorers.json",
    output:
        generations="results/{study}/baselines/{dataset}/{baseline}/generations.jsonl",
        record="results/{study}/baselines/{dataset}/{baseline}/metrics.json",
    log:
        "logs/{study}/baseline/{dataset}/{baseline}.log",
    conda:
        "../../envs/peftstudy.yaml"
    resources:
        **rule_resources("baseline"),
    params:
        spec=baseline_spec,
        task=lambda w: dataset_task(DATASETS[w.dataset]),
        settings=lambda w: study_of(w).get("metrics", {}),
        max_test_examples=baseline_test_examples,
        code=code_of("baseline.py"),
    script:
        "../scripts/baseline.py"


rule aggregate_baselines:
    input:
        study_baseline_records,
    output:
        "results/{study}/baselines.csv",
    log:
        "logs/{study}/aggregate_baselines/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        code=code_of("aggregate_baselines.py"),
    script:
        "../scripts/aggregate_baselines.py"
