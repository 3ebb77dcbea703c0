"""kind peft: any of peft's layer tuners by name, its options checked against the tuner's config dataclass."""

import copy

import pytest
import torch
import transformers
import yaml

from peftstudy import study as studyconfig
from peftstudy.generation import generate_run
from peftstudy.methods import get_method
from peftstudy.methods.peft_family import CONV1D_REFUSED
from peftstudy.modeling.loading import count_parameters
from peftstudy.training.loop import train_run

TUNER = get_method("peft")


def tiny_t5():
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_heads=2, num_layers=1)
    return transformers.T5ForConditionalGeneration(config)


def test_loha_counts_two_hadamard_factor_pairs_per_targeted_matrix():
    model = TUNER.prepare(tiny_t5(), "t5", {"kind": "peft", "peft_type": "LOHA", "target_modules": ["q", "v"]}, 2)
    # LoHa: W = (A1 B1) * (A2 B2), each pair r x (d_in + d_out); q and v of encoder self, decoder self and cross.
    assert count_parameters(model)[0] == 6 * 2 * 2 * (16 + 16)


@pytest.mark.parametrize("spec, key, message", [
    ({"peft_type": "LOHA", "peft_options": {"alpha_typo": 3}}, "peft_options.alpha_typo", "not a field of peft's LoHaConfig"),
    ({"peft_type": "LOKR", "ranks": [2], "peft_options": {"r": 4}}, "peft_options.r", "set by the study"),
    ({"peft_type": "NOT_A_TUNER"}, "peft_type", "unknown peft_type 'NOT_A_TUNER'"),
    ({"peft_type": "PREFIX_TUNING"}, "peft_type", "prompt learning: use kind prefix or prompt"),
    ({"peft_type": "LN_TUNING", "ranks": [2]}, "ranks", "no rank r to sweep"),
])
def test_spec_problems_name_the_key(spec, key, message):
    problems = TUNER.spec_problems({"kind": "peft", **spec})
    assert [k for k, _ in problems] == [key] and message in problems[0][1]


def test_the_conv1d_table_matches_peft():
    """Every tuner the table refuses on GPT-2 does raise on a Conv1D in peft; FOURIERFT (not in it) builds."""
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    options = {"OFT": {"oft_block_size": 4}, "BOFT": {"boft_block_size": 4}}
    for peft_type in sorted(CONV1D_REFUSED):
        spec = {"kind": "peft", "peft_type": peft_type, "target_modules": ["c_attn"],
                "peft_options": options.get(peft_type, {})}
        assert "Conv1D" in TUNER.family_problem(spec, "gpt2")
        assert TUNER.family_problem(spec, "llama") is None
        from peft import get_peft_model

        with pytest.raises((TypeError, ValueError), match="Conv1D"):
            get_peft_model(transformers.GPT2LMHeadModel(config),
                           TUNER.peft_config("llama", spec, None))  # bypass the table: peft itself refuses
    spec = {"kind": "peft", "peft_type": "FOURIERFT", "peft_options": {"n_frequency": 8}}
    assert TUNER.family_problem(spec, "gpt2") is None
    assert count_parameters(TUNER.prepare(transformers.GPT2LMHeadModel(config), "gpt2", spec, None))[0] == 2 * 8


def test_study_refuses_unknown_options_and_conv1d_cells(repository):
    demo = yaml.safe_load((repository / "config" / "demo.yaml").read_text())
    study = copy.deepcopy(demo)
    study["methods"]["loha"] = {"kind": "peft", "peft_type": "LOHA", "peft_options": {"bogus": 1}}
    with pytest.raises(studyconfig.StudyConfigError, match=r"methods.loha.peft_options.bogus: not a field"):
        studyconfig.validate_study(study, "demo.yaml")
    study["methods"]["loha"] = {"kind": "peft", "peft_type": "LOHA", "peft_options": {"alpha": 4}}
    study["matrix"] = [{"datasets": ["debian-products"], "models": ["gpt2-en", "t5-en"], "methods": ["loha"]}]
    study["exclusions"], study["overrides"] = [], []
    study["seeds"] = [1]  # fixed: the demo's adaptive seeds compare with full fine-tuning, which this matrix leaves out
    with pytest.raises(studyconfig.StudyConfigError, match=r"method 'loha' cannot run on model 'gpt2-en' .*Conv1D"):
        studyconfig.validate_study(study, "demo.yaml")
    study["exclusions"] = [{"model": "gpt2-en", "method": "loha", "reason": "LoHa refuses Conv1D"}]
    runs = studyconfig.expand_runs(studyconfig.validate_study(study, "demo.yaml"))
    assert {r.model for r in runs if r.method == "loha"} == {"t5-en"}


def test_lokr_trains_saves_reloads_and_generates_on_t5(tiny_workspace):
    base = tiny_workspace / "base-t5"
    out = tiny_workspace / "any-peft-tuner"
    training = dict(epochs=1, max_steps=6, batch_size=8, gradient_accumulation_steps=1, learning_rate=1e-2,
                    weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="constant", max_grad_norm=1.0,
                    max_source_tokens=24, max_target_tokens=24, early_stopping_patience=None, precision="fp32")
    spec = {"kind": "peft", "peft_type": "LOKR", "target_modules": ["q", "v"], "peft_options": {"alpha": 4}}
    record = train_run({"dataset": "d", "model": "t5", "family": "t5", "method": "peft", "rank": 2,
                        "method_spec": spec, "training": training, "seed": 3},
                       base, tiny_workspace / "data", out / "weights", out / "train.json")
    assert record["steps"] == 6
    assert 0 < record["trainable_parameters"] < record["total_parameters"]
    assert (out / "weights" / "adapter_model.safetensors").is_file()
    model, _, _ = TUNER.load_for_inference(base, out / "weights", "cpu", spec)
    assert type(model.peft_config["default"]).__name__ == "LoKrConfig" and model.peft_config["default"].r == 2
    generation = {"batch_size": 8, "max_new_tokens": 6, "num_beams": 1, "no_repeat_ngram_size": 0}
    generated = generate_run(spec, "t5", base, out / "weights", tiny_workspace / "data/test.jsonl",
                             out / "test.jsonl", out / "test.json", generation, 24)
    assert generated["examples"] == 16
