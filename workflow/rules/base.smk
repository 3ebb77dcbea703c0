# Base models: pretrained here from config (demo) or fetched once from the hub at a pinned revision.


rule prepare_base:
    input:
        base_inputs,
    output:
        directory("results/bases/{model}"),
    log:
        "logs/shared/prepare_base/{model}.log",
    benchmark:
        "logs/benchmarks/prepare_base/{model}.tsv"
    conda:
        "../../envs/peftstudy.yaml"
    threads: job_threads("pretrain")
    resources:
        **rule_resources("pretrain"),
    params:
        spec=base_spec,
        code=code_of("prepare_base.py"),
    script:
        "../scripts/prepare_base.py"


# A shipped base (source: snapshot), pretrained again from its recipe: `snakemake --cores 2 <study>_bases`.
# The result has the layout of data/bases/<model>/; copying it there ships it (docs/demo.md, "The demo's bases").
rule build_snapshot_base:
    input:
        unpack(snapshot_corpus_inputs),
    output:
        directory("results/base_builds/{model}"),
    log:
        "logs/shared/build_snapshot_base/{model}.log",
    benchmark:
        "logs/benchmarks/build_snapshot_base/{model}.tsv"
    wildcard_constraints:
        model="|".join(SNAPSHOT_MODELS) or "(?!)",
    conda:
        "../../envs/peftstudy.yaml"
    threads: job_threads("pretrain")
    resources:
        **rule_resources("pretrain"),
    params:
        spec=base_spec,
        code=code_of("build_snapshot_base.py"),
    script:
        "../scripts/build_snapshot_base.py"
