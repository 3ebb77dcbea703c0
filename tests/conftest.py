import os
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def repository() -> Path:
    return REPOSITORY


TINY_WORDS = "red blue green small large old new fast slow warm cold bright dark soft hard quiet loud".split()
TINY_ARCHITECTURES = {
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 96},
    "t5": {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2},
}


def tiny_pair(rng, index):
    a, b, c = rng.sample(TINY_WORDS, 3)
    return {"id": f"{index:04d}", "input": f"{a} | {b} | {c}", "reference": f"a {a} thing , {b} and {c} ."}


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory):
    """Briefly pretrained tiny GPT-2 and T5 bases (base-gpt2/, base-t5/) and a learnable data set (data/)."""
    import random

    from peftstudy import io
    from peftstudy.training.pretrain import pretrain_base

    root = tmp_path_factory.mktemp("tiny")
    rng = random.Random(0)
    words = TINY_WORDS + ["a", "and", "thing", ",", "."]
    (root / "corpus.txt").write_text("\n".join(" ".join(rng.choices(words, k=12)) for _ in range(800)))
    for split, count in (("train", 192), ("validation", 32), ("test", 16)):
        io.write_jsonl(root / "data" / f"{split}.jsonl", [tiny_pair(rng, i) for i in range(count)])
    io.write_json(root / "data" / "manifest.json", {"counts": {}})
    for family, architecture in TINY_ARCHITECTURES.items():
        spec = {"name": family, "family": family, "architecture": architecture, "tokenizer": {"vocab_size": 200},
                "pretraining": {"corpus": "c", "steps": 30, "batch_size": 8, "sequence_tokens": 24}}
        pretrain_base(spec, root / "corpus.txt", root / f"base-{family}")
    return root


@pytest.fixture(scope="session")
def snakemake_runner():
    from support.workflow_runner import run_snakemake

    return run_snakemake


@pytest.fixture(scope="session")
def job_stats():
    from support.workflow_runner import parse_job_stats

    return parse_job_stats


@pytest.fixture(scope="module")
def fixed_batch(tiny_workspace, tmp_path_factory):
    """A data directory whose training and validation splits are the same 16 rows: one batch, every step."""
    from peftstudy import io

    root = tmp_path_factory.mktemp("fixed-batch")
    rows = io.read_jsonl(tiny_workspace / "data/train.jsonl")[:16]
    io.write_jsonl(root / "train.jsonl", rows)
    io.write_jsonl(root / "validation.jsonl", rows)
    io.write_json(root / "manifest.json", {"counts": {}})
    return root
