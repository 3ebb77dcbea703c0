"""A researcher's own data and model through the real workflow: a CSV file (`source: files`), a hub model of an
architecture the package has no family of (`family: causal_lm`, a tiny Qwen2 in a Hugging Face cache at a pinned
commit, read offline), LoRA and a peft tuner the package does not wrap (`kind: peft`, LoHa). Each run's weights then
load with plain peft and transformers, in a Python without peftstudy, and reproduce the run's generations."""

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.plain_python import WITHOUT_PEFTSTUDY
from support.workflow_runner import REPOSITORY, run_snakemake

COMMIT = "5eed0000000000000000000000000000000c0ffe"
HUB_ID = "local-lab/qwen2-tiny"
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]
THINGS = ["apple", "car", "house", "shirt", "bird", "cup", "door", "lamp", "book", "boat", "chair", "kite"]

STUDY = {
    "study": "own",
    "title": "own data and model",
    "seeds": [1, 2],
    "datasets": {
        "my-pairs": {"source": "files", "task": "generation", "file": "data/user/pairs.csv",
                     "columns": {"input": "src", "reference": "tgt"}, "seed": 5,
                     "description": "a thing and its colour -> a sentence", "licence": "CC0 (made by the test)"},
    },
    "models": {
        "qwen-tiny": {"family": "causal_lm", "source": "hub", "hub_id": HUB_ID, "revision": COMMIT,
                      "target_modules": {"lora": ["q_proj", "v_proj"], "peft": ["q_proj", "v_proj"]}},
    },
    "methods": {
        "lora": {"kind": "lora", "ranks": [2], "alpha": 8, "dropout": 0.0, "training": {"learning_rate": 0.01}},
        "loha": {"kind": "peft", "peft_type": "LOHA", "ranks": [2], "peft_options": {"alpha": 4},
                 "training": {"learning_rate": 0.01}},
    },
    "training": {
        "epochs": 2, "batch_size": 16, "gradient_accumulation_steps": 1, "learning_rate": 0.01, "weight_decay": 0.0,
        "warmup_ratio": 0.0, "lr_scheduler": "constant", "max_grad_norm": 1.0, "max_source_tokens": 16,
        "max_target_tokens": 16, "early_stopping_patience": None, "precision": "fp32",
    },
    "generation": {"batch_size": 32, "max_new_tokens": 8, "num_beams": 1, "no_repeat_ngram_size": 2},
    "resources": {"jobs": {"train": {"gpus": 0}, "generate": {"gpus": 0}}},
    "matrix": [{"datasets": ["my-pairs"], "models": ["qwen-tiny"], "methods": ["lora", "loha"]}],
    "statistics": {"baseline_method": "lora", "rank_study": {"method": "lora"}},
}

# Runs in a fresh interpreter (-I) from which every sys.path entry holding peftstudy is dropped (the package is
# installed editable): plain peft and transformers load the base from the hub cache at its commit, the adapter from
# the run's weights/ and the decoding settings from the run directory.
PLAIN_LOADER = WITHOUT_PEFTSTUDY + r"""
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

run_dir, max_source = sys.argv[1], int(sys.argv[2])
weights = os.path.join(run_dir, "weights")
with open(os.path.join(weights, "adapter_config.json")) as handle:
    config = json.load(handle)
base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], revision=config["revision"])
model = PeftModel.from_pretrained(base, weights).eval()
tokenizer = AutoTokenizer.from_pretrained(weights)
generation = GenerationConfig.from_pretrained(run_dir)
predictions = []
with open(os.path.join(run_dir, "generations.jsonl")) as handle:
    for line in handle:
        ids = (tokenizer(json.loads(line)["input"], add_special_tokens=False)["input_ids"][:max_source]
               + tokenizer("\n", add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            output = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    generation_config=generation)
        predictions.append(tokenizer.decode(output[0, len(ids):], skip_special_tokens=True).strip())
print(json.dumps({"peft_type": config["peft_type"], "predictions": predictions}))
"""


def user_rows(count=240, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        thing, colour = rng.choice(THINGS), rng.choice(COLOURS)
        rows.append({"src": f"thing: {thing} {i} colour: {colour}", "tgt": f"The {thing} {i} is {colour}."})
    return rows


def write_tiny_qwen(cache: Path, rows) -> Path:
    """A random tiny Qwen2 with a tokenizer trained on the rows, as the hub cache holds a repository at a commit."""
    import torch
    import transformers

    from peftstudy.modeling.loading import train_tokenizer

    snapshot = cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    tokenizer = train_tokenizer("llama", [r["src"] + " " + r["tgt"] for r in rows], 400)
    torch.manual_seed(0)
    config = transformers.Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128, bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(snapshot, safe_serialization=True)
    tokenizer.save_pretrained(snapshot)
    (cache / f"models--{HUB_ID.replace('/', '--')}" / "refs").mkdir()
    (cache / f"models--{HUB_ID.replace('/', '--')}" / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("own")
    rows = user_rows()
    (path / "data/user").mkdir(parents=True)
    with open(path / "data/user/pairs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["src", "tgt"])
        writer.writeheader()
        writer.writerows(rows)
    write_tiny_qwen(path / "hf" / "hub", rows)
    (path / "config").mkdir()
    (path / "config" / "own.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    (path / "tmp").mkdir()
    snakemake(path, "own")
    return path


def environment(workdir):
    return {"HF_HOME": str(workdir / "hf"), "HF_HUB_CACHE": str(workdir / "hf" / "hub"), "HF_HUB_OFFLINE": "1",
            "TMPDIR": str(workdir / "tmp")}


def snakemake(workdir, *args):
    return run_snakemake(["--snakefile", REPOSITORY / "Snakefile", "--directory", workdir, "--configfile",
                          workdir / "config" / "own.yaml", "--cores", "2", *args], env=environment(workdir))


@pytest.mark.slow
def test_the_user_csv_and_the_hub_model_go_through_the_study(workdir):
    import pandas as pd

    manifest = json.loads((workdir / "data/prepared/my-pairs/manifest.json").read_text())
    recorded = json.dumps(manifest)
    assert "data/user/pairs.csv" in recorded
    assert __import__("hashlib").sha256((workdir / "data/user/pairs.csv").read_bytes()).hexdigest() in recorded
    counts = manifest["counts"]
    assert counts["read"] == counts["kept"] == counts["train"] + counts["validation"] + counts["test"] == 240
    base = json.loads((workdir / "results/bases/qwen-tiny/base.json").read_text())
    assert (base["family"], base["resolved_revision"]) == ("causal_lm", COMMIT)
    metrics = pd.read_csv(workdir / "results/own/metrics.csv")
    trainable = metrics[metrics["metric"] == "trainable_parameters"].groupby("method")["value"].first()
    # q_proj 32 -> 32 and v_proj 32 -> 16 (two key-value heads of 8) in 2 layers, rank 2: LoRA r(d_in + d_out) per
    # module; LoHa two Hadamard factors of that shape, 2r(d_in + d_out).
    assert trainable["lora"] == 2 * 2 * ((32 + 32) + (32 + 16))
    assert trainable["loha"] == 2 * 2 * 2 * ((32 + 32) + (32 + 16))
    assert set(metrics["method"]) == {"lora", "loha"} and len(set(metrics["seed"])) == 2
    assert (workdir / "reports/own/paper.pdf").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("variant, peft_type", [("lora-r2", "LORA"), ("loha-r2", "LOHA")])
def test_each_run_loads_with_plain_peft_and_reproduces_its_generations(workdir, variant, peft_type):
    run_dir = workdir / "results/own/runs/my-pairs/qwen-tiny" / variant / "seed1"
    config = json.loads((run_dir / "weights/adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == (HUB_ID, COMMIT)
    card = (run_dir / "weights/README.md").read_text()
    assert "no peftstudy code is needed" in card and f"revision='{COMMIT}'" in card
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN_LOADER, str(run_dir), "16"], capture_output=True,
                          text=True, timeout=300, env={**environment(workdir), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    wanted = [json.loads(line)["prediction"] for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert found["peft_type"] == peft_type
    assert any(wanted) and found["predictions"] == wanted
