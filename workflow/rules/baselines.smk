# Trivial baselines: each trained dataset's test split predicted from its training split alone (no model), scored
# with the runs' metrics: what a fine-tuned cell has to beat.


rule baseline:
    input:
        train="data/prepared/{dataset}/train.jsonl",
        test="data/prepared/{dataset}/test.jsonl",
        wordnet="data/nltk",
    output:
        generations="results/{study}/baselines/{dataset}/{baseline}/generations.jsonl",
        record="results/{study}/baselines/{dataset}/{baseline}/metrics.json",
    params:
        spec=baseline_spec,
        task=lambda w: dataset_task(DATASETS[w.dataset]),
        settings=lambda w: study_of(w).get("metrics", {}),
        max_test_examples=baseline_test_examples,
        code=code_of("baseline.py"),
    resources:
        **rule_resources("baseline"),
    log:
        "logs/{study}/baseline/{dataset}/{baseline}.log",
    script:
        "../scripts/baseline.py"


rule aggregate_baselines:
    input:
        study_baseline_records,
    output:
        "results/{study}/baselines.csv",
    params:
        code=code_of("aggregate_baselines.py"),
    log:
        "logs/{study}/aggregate_baselines/job.log",
    localrule: True
    script:
        "../scripts/aggregate_baselines.py"
