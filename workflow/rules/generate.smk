# Generation on the test split, batched.


rule generate:
    input:
        weights=f"{RUN_DIR}/weights",
        record=f"{RUN_DIR}/train.json",
        base="results/bases/{model}",
        test="data/prepared/{dataset}/test.jsonl",
    output:
        generations=f"{RUN_DIR}/generations.jsonl",
        record=f"{RUN_DIR}/generation.json",
        generation_config=f"{RUN_DIR}/generation_config.json",
    log:
        "logs/{study}/generate/{dataset}/{model}/{variant}/seed{seed}.log",
    conda:
        "../../envs/peftstudy.yaml"
    threads: job_threads("generate")
    resources:
        **rule_resources("generate"),
    params:
        settings=generation_settings,
        code=code_of("generate.py"),
    script:
        "../scripts/generate.py"
