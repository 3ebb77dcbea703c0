# Base models: pretrained here from config (demo) or fetched once from the hub at a pinned revision.


rule prepare_base:
    input:
        base_inputs,
    output:
        directory("results/bases/{model}"),
    params:
        spec=base_spec,
        code=code_of("prepare_base.py"),
    resources:
        **rule_resources("pretrain"),
    threads: job_threads("pretrain")
    log:
        "logs/shared/prepare_base/{model}.log",
    benchmark:
        "logs/benchmarks/prepare_base/{model}.tsv"
    script:
        "../scripts/prepare_base.py"
