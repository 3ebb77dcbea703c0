# Data: extract, clean, deduplicate and split each dataset once; build the pretraining corpora.


rule prepare_dataset:
    input:
        dataset_inputs,
    output:
        splits=expand("data/prepared/{{dataset}}/{split}.jsonl", split=SPLITS),
        manifest="data/prepared/{dataset}/manifest.json",
    log:
        "logs/shared/prepare_dataset/{dataset}.log",
    conda:
        "../../envs/peftstudy.yaml"
    resources:
        **rule_resources("prepare"),
    params:
        spec=lambda w: DATASETS[w.dataset],
        code=code_of("prepare_dataset.py"),
    script:
        "../scripts/prepare_dataset.py"


rule prepare_corpus:
    input:
        snapshots=corpus_inputs,
        evaluation=corpus_evaluation_splits,
    output:
        text="data/corpora/{corpus}.txt",
        manifest="data/corpora/{corpus}.manifest.json",
    log:
        "logs/shared/prepare_corpus/{corpus}.log",
    conda:
        "../../envs/peftstudy.yaml"
    resources:
        **rule_resources("prepare"),
    params:
        spec=lambda w: CORPORA[w.corpus],
        code=code_of("prepare_corpus.py"),
    script:
        "../scripts/prepare_corpus.py"


# WordNet 3.0 in nltk's layout, for METEOR (from Debian's wordnet-base + the shipped lexnames table).
rule prepare_wordnet:
    input:
        lexnames=str(Path(workflow.basedir) / "data/snapshots/wordnet_lexnames.tsv"),
    output:
        directory("data/nltk"),
    log:
        "logs/shared/prepare_wordnet/job.log",
    localrule: True
    conda:
        "../../envs/peftstudy.yaml"
    params:
        code=code_of("prepare_wordnet.py"),
    script:
        "../scripts/prepare_wordnet.py"
