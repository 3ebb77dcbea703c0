"""A trained LoRA run loads with plain peft and transformers, without peftstudy: its weights directory records the
base (adapter_config.json), holds the tokenizer and a model card, all listed in train.json; `peftstudy export`
makes a directory that, in a Python where peftstudy cannot be imported, reproduces the run's greedy generations."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from support.plain_python import WITHOUT_PEFTSTUDY

from peftstudy import checksums, io, model_card
from peftstudy.cli import main
from peftstudy.generation import generate_run
from peftstudy.training.loop import train_run

TRAINING = dict(epochs=2, max_steps=24, batch_size=16, gradient_accumulation_steps=1, learning_rate=1e-2,
                weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="constant", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32")
GENERATION = {"batch_size": 8, "max_new_tokens": 6, "num_beams": 1, "no_repeat_ngram_size": 2}
METHOD_SPEC = {"kind": "lora", "alpha": 8, "dropout": 0.0}
SETTINGS = {"dataset": "d", "model": "gpt2", "family": "gpt2", "method": "lora", "rank": 4,
            "method_spec": METHOD_SPEC, "training": TRAINING, "seed": 1}

# Runs in a fresh interpreter (-I: no PYTHONPATH, no user site) from the export directory, without peftstudy.
PLAIN_LOADER = WITHOUT_PEFTSTUDY + r"""
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

exported, weights, test_path, max_source = sys.argv[1:5]
found = {}
for directory, decoding in ((exported, exported), (weights, os.path.dirname(weights))):
    with open(os.path.join(directory, "adapter_config.json")) as handle:
        config = json.load(handle)
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], revision=config["revision"])
    model = PeftModel.from_pretrained(base, directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    generation = GenerationConfig.from_pretrained(decoding)
    predictions = []
    with open(test_path) as handle:
        for line in handle:
            text = json.loads(line)["input"]
            ids = (tokenizer(text, add_special_tokens=False)["input_ids"][: int(max_source)]
                   + tokenizer("\n", add_special_tokens=False)["input_ids"])
            with torch.no_grad():
                output = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                        generation_config=generation)
            predictions.append(tokenizer.decode(output[0, len(ids):], skip_special_tokens=True).strip())
    found[directory] = predictions
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def run(tiny_workspace, tmp_path_factory):
    """results/study/runs/d/gpt2/lora-r4/seed1, trained and generated, beside results/bases/gpt2 (as the workflow)."""
    workdir = tmp_path_factory.mktemp("portable")
    data, base = workdir / "data/prepared/d", workdir / "results/bases/gpt2"
    shutil.copytree(tiny_workspace / "data", data)
    shutil.copytree(tiny_workspace / "base-gpt2", base)
    run = workdir / "results/study/runs/d/gpt2/lora-r4/seed1"
    train_run(SETTINGS, base, data, run / "weights", run / "train.json")
    generate_run(METHOD_SPEC, "gpt2", base, run / "weights", data / "test.jsonl", run / "generations.jsonl",
                 run / "generation.json", GENERATION, 24, max_target_tokens=24,
                 generation_config_path=run / "generation_config.json")
    return run


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_the_weights_directory_records_its_base_tokenizer_and_card(run):
    weights, base = run / "weights", run.parents[5] / "bases" / "gpt2"
    config = io.read_json(weights / "adapter_config.json")
    assert (config["base_model_name_or_path"], config["revision"]) == (str(base), None)
    assert (weights / "tokenizer_config.json").is_file()
    card = (weights / "README.md").read_text()
    assert front_matter(card) == {"base_model": str(base), "library_name": "peft",
                                  "tags": ["peftstudy", "lora", "gpt2", "d"]}
    assert "no peftstudy code is needed" in card and "copy it along" in card
    assert "PeftModel.from_pretrained(base, '.')" in card
    assert "GenerationConfig.from_pretrained('..')" in card  # the run directory: the generate job writes it
    decoding = io.read_json(run / "generation_config.json")
    assert (decoding["max_new_tokens"], decoding["no_repeat_ngram_size"], decoding.get("do_sample", False)) == (6, 2, False)
    assert io.read_json(run / "generation.json")["generation_config_sha256"] == io.sha256_file(run / "generation_config.json")
    # Written before train.json was: its checksums list every file, the ones added here included.
    recorded = io.read_json(run / "train.json")["weights_sha256"]
    assert recorded == checksums.file_checksums(weights)
    assert {"README.md", "adapter_config.json", "tokenizer_config.json", "adapter_model.safetensors"} <= set(recorded)


def test_an_export_reproduces_the_generations_without_peftstudy(run, tmp_path):
    exported = tmp_path / "exported"
    assert main(["export", str(run), str(exported)]) == 0
    assert (exported / "base" / "model.safetensors").is_file()
    assert io.read_json(exported / "adapter_config.json")["base_model_name_or_path"] == "base"
    assert front_matter((exported / "README.md").read_text())["base_model"] == "base"
    generation = io.read_json(exported / "generation_config.json")
    assert generation == io.read_json(run / "generation_config.json")  # the generate job's, copied
    assert (generation["max_new_tokens"], generation.get("num_beams", 1), generation.get("do_sample", False)) == (6, 1, False)
    test_path = run.parents[5].parent / "data/prepared/d/test.jsonl"
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN_LOADER, str(exported), str(run / "weights"),
                           str(test_path), "24"], cwd=exported, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    wanted = [row["prediction"] for row in io.read_jsonl(run / "generations.jsonl")]
    assert any(wanted)  # the comparison is about text, not empty strings
    assert found[str(exported)] == wanted
    assert found[str(run / "weights")] == wanted
    # A second export into the now occupied directory is refused.
    assert main(["export", str(run), str(exported)]) == 2


@pytest.mark.parametrize(("kind", "family", "needs"), [
    ("lora", "t5", None), ("ia3", "gpt2", None), ("prefix", "gpt2", None), ("full", "gpt2", None),
    ("prompt", "gpt2", "PromptTuning.patch_peft_model"), ("prefix", "t5", "PrefixTuning.patch_peft_model"),
    ("bitfit", "gpt2", "peftstudy's own format"), ("qlora", "llama", "quantized"),
    ("peft", "llama", None), ("lora", "causal_lm", None), ("full", "seq2seq_lm", None), ("lora", "bert", "built by peftstudy"),
])
def test_the_card_says_which_runs_need_peftstudy(kind, family, needs):
    spec = {"kind": kind, **({"peft_type": "LOHA"} if kind == "peft" else {})}
    settings = {**SETTINGS, "family": family, "method_spec": spec}
    card = model_card.card(settings, "org/model", "0123abcd", False)
    meta = front_matter(card)
    assert meta["base_model"] == "org/model" and kind in meta["tags"]
    assert ("loha" in meta["tags"]) == (kind == "peft")
    if needs is None:
        assert "no peftstudy code is needed" in card and "peftstudy.methods" not in card
        loader = "AutoModelForCausalLM" if family in ("gpt2", "llama", "causal_lm") else "AutoModelForSeq2SeqLM"
        assert f"{loader}.from_pretrained(" in card
        if kind != "full":
            assert "from_pretrained('org/model', revision='0123abcd')" in card
    else:
        assert "Needs peftstudy" in card and needs in card
        assert f"get_method({kind!r}).load_for_inference(" in card and "results/bases/gpt2" in card
