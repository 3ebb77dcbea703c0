"""Pretraining, fine-tuning and generation on tiny models: learning, determinism, save/load round trips."""

import json

import pytest
import torch

from peftstudy import io
from peftstudy.generation import generate_predictions, generate_run
from peftstudy.methods import get_method
from peftstudy.training.loop import train_run
from peftstudy.training.pretrain import span_corrupt

TRAINING = dict(epochs=2, batch_size=16, gradient_accumulation_steps=2, learning_rate=3e-3, weight_decay=0.01,
                warmup_ratio=0.1, lr_scheduler="cosine", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32")
GENERATION = {"batch_size": 8, "max_new_tokens": 12, "num_beams": 1, "no_repeat_ngram_size": 0}


@pytest.fixture(scope="module")
def workspace(tiny_workspace):
    return tiny_workspace


def settings(family, kind, rank=None, seed=1):
    return {"dataset": "d", "model": family, "family": family, "method": kind, "rank": rank,
            "method_spec": {"kind": kind, "alpha": 8, "dropout": 0.0}, "training": TRAINING, "seed": seed}


def train(workspace, family, kind, rank=None, seed=1, name="run"):
    out = workspace / f"{name}-{family}-{kind}-{seed}"
    record = train_run(settings(family, kind, rank, seed), workspace / f"base-{family}", workspace / "data",
                       out / "weights", out / "train.json")
    return out, record


def test_pretraining_lowers_the_loss_and_writes_a_loadable_base(workspace):
    for family in ("gpt2", "t5"):
        manifest = json.loads((workspace / f"base-{family}" / "base.json").read_text())
        assert manifest["pretraining_loss_last"] < manifest["pretraining_loss_first"]
        assert (workspace / f"base-{family}" / "model.safetensors").exists()


@pytest.mark.parametrize("family", ["gpt2", "t5"])
@pytest.mark.parametrize("kind, rank", [("full", None), ("lora", 4)])
def test_training_lowers_loss_and_reload_generates_identically(workspace, family, kind, rank):
    out, record = train(workspace, family, kind, rank)
    # Length-grouped batches differ in length, hence in their loss: the learning shows on the validation split.
    assert record["validation_losses"][-1] < record["validation_losses"][0], record["validation_losses"]
    assert record["trainable_parameters"] <= record["total_parameters"]
    assert all(f.suffix != ".bin" for f in (out / "weights").iterdir())  # safetensors only
    settings_gen = dict(GENERATION)
    run_a = generate_run({"kind": kind}, family, workspace / f"base-{family}", out / "weights", workspace / "data/test.jsonl",
                         out / "a.jsonl", out / "a.json", settings_gen, 24)
    generate_run({"kind": kind}, family, workspace / f"base-{family}", out / "weights", workspace / "data/test.jsonl",
                 out / "b.jsonl", out / "b.json", settings_gen, 24)
    assert run_a["examples"] == 16
    assert (out / "a.jsonl").read_bytes() == (out / "b.jsonl").read_bytes()


def test_same_seed_is_bit_identical_and_another_seed_differs(workspace):
    _, first = train(workspace, "gpt2", "lora", 4, seed=7, name="det-a")
    _, second = train(workspace, "gpt2", "lora", 4, seed=7, name="det-b")
    _, other = train(workspace, "gpt2", "lora", 4, seed=8, name="det-c")
    assert first["step_losses"] == second["step_losses"]
    assert first["validation_losses"] == second["validation_losses"]
    assert other["step_losses"] != first["step_losses"]
    a = (workspace / "det-a-gpt2-lora-7/weights/adapter_model.safetensors").read_bytes()
    b = (workspace / "det-b-gpt2-lora-7/weights/adapter_model.safetensors").read_bytes()
    assert a == b


def test_merged_lora_gives_the_same_logits(workspace):
    out, _ = train(workspace, "gpt2", "lora", 4, name="merge")
    model, tokenizer, _ = get_method("lora").load_for_inference(workspace / "base-gpt2", out / "weights", "cpu")
    ids = torch.tensor([tokenizer("red | blue | green\n")["input_ids"]])
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        merged = model.merge_and_unload()(input_ids=ids).logits
    assert torch.allclose(adapted, merged, atol=1e-5)


def test_batched_generation_equals_one_by_one(workspace):
    out, _ = train(workspace, "gpt2", "full", name="batch")
    model, tokenizer, _ = get_method("full").load_for_inference(workspace / "base-gpt2", out / "weights", "cpu")
    records = io.read_jsonl(workspace / "data/test.jsonl")[:6]
    batched = generate_predictions(model, tokenizer, "gpt2", records, {**GENERATION, "batch_size": 6}, 24, "cpu")
    single = generate_predictions(model, tokenizer, "gpt2", records, {**GENERATION, "batch_size": 1}, 24, "cpu")
    assert batched == single


def test_span_corruption_keeps_every_token_once():
    tokens = list(range(10, 40))
    sentinels = [900, 901, 902, 903]
    source, target = span_corrupt(tokens, sentinels, 1, torch.Generator().manual_seed(0))
    kept = [t for t in source if t not in sentinels and t != 1]
    dropped = [t for t in target if t not in sentinels and t != 1]
    assert sorted(kept + dropped) == tokens
    assert source[-1] == target[-1] == 1


def test_tokenizer_training_is_reproducible_across_processes(tmp_path):
    """Rust hash-map order differs per process: train in two fresh interpreters and compare."""
    import subprocess
    import sys

    (tmp_path / "corpus.txt").write_text("\n".join(f"line {i} of the corpus with words {i % 7} and {i % 11}" for i in range(400)))
    script = ("import sys, hashlib; from peftstudy.modeling.loading import train_tokenizer; "
              "t = train_tokenizer(sys.argv[1], open(sys.argv[2]).read().splitlines(), 120); "
              "print(hashlib.sha256(t.backend_tokenizer.to_str().encode()).hexdigest())")
    for family in ("gpt2", "t5"):
        digests = {subprocess.run([sys.executable, "-c", script, family, str(tmp_path / "corpus.txt")], check=True,
                                  capture_output=True, text=True).stdout for _ in range(2)}
        assert len(digests) == 1, family


def test_the_t5_tokenizer_splits_punctuation_off_words_and_decodes_back():
    """Glued punctuation ("functions,") spent the demo T5's vocabulary on rare pairs and kept its pretraining at the
    unigram loss; SentencePiece-style, the word and its comma are separate pieces, and decoding restores the text."""
    from peftstudy.modeling.loading import train_tokenizer

    lines = [f"The {word} library provides functions, objects (especially {word} ones)." for word in
             ("window", "audio", "graph", "image", "text", "network")] * 20
    tokenizer = train_tokenizer("t5", lines, 200)
    pieces = tokenizer.tokenize("The audio library provides functions, objects (especially audio ones).")
    assert "," in pieces and "(" in pieces and ")." not in pieces and not any(p.endswith(",") and p != "," for p in pieces)
    text = "The graph library provides functions, objects (especially graph ones)."
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def _weights(directory):
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.mark.parametrize("family, kind, rank, stop_at", [("gpt2", "lora", 4, 2), ("t5", "full", None, 8),
                                                         ("gpt2", "full", None, 5)])
def test_interrupted_training_resumes_to_the_numbers_of_an_uninterrupted_run(workspace, monkeypatch, family, kind,
                                                                             rank, stop_at):
    """SIGUSR1 mid-run saves the state and stops; the rerun resumes and ends bit-identical on CPU (mid-epoch,
    and at an epoch's last step: stop_at 5 is the end of the first epoch's 6 steps)."""
    import os
    import signal

    from peftstudy.training import checkpoint

    reference_dir, reference = train(workspace, family, kind, rank, seed=3, name="uninterrupted")
    method_class = type(get_method(kind))
    original = method_class.after_optimizer_step

    def stop_here(self, model, step):
        original(self, model, step)
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGUSR1)

    monkeypatch.setattr(method_class, "after_optimizer_step", stop_here)
    out = workspace / f"resumed-{family}-{kind}-{stop_at}"
    run_settings = settings(family, kind, rank, seed=3)
    arguments = (run_settings, workspace / f"base-{family}", workspace / "data", out / "weights", out / "train.json")
    with pytest.raises(checkpoint.TrainingInterrupted, match=f"at step {stop_at + 1}"):
        train_run(*arguments, checkpoint_dir=out / "checkpoint")
    assert (out / "checkpoint" / checkpoint.CHECKPOINT_FILE).is_file() and not (out / "weights").exists()
    monkeypatch.undo()

    resumed = train_run(*arguments, checkpoint_dir=out / "checkpoint")
    assert resumed["resumed_from_step"] == [stop_at + 1]
    assert resumed["step_losses"] == reference["step_losses"]
    assert resumed["validation_losses"] == reference["validation_losses"]
    # The state's bytes, measured at the resumed session's first step, are the uninterrupted run's; that step's
    # peak is its own (another batch, with the optimizer's state already there), above the state it holds.
    peak = resumed["state_memory"].pop("step_peak_tensor_bytes")
    assert peak > resumed["state_memory"]["training_state_bytes"]
    assert resumed["state_memory"] == {k: v for k, v in reference["state_memory"].items() if k != "step_peak_tensor_bytes"}
    assert _weights(out / "weights") == _weights(reference_dir / "weights")
    assert not (out / "checkpoint").exists()  # removed once the weights are written


def test_periodic_checkpoints_and_a_checkpoint_of_other_settings_is_not_resumed(workspace):
    import torch

    from peftstudy.training import checkpoint

    out = workspace / "periodic"
    run_settings = settings("gpt2", "lora", 4, seed=3)
    run_settings = {**run_settings, "training": {**TRAINING, "checkpoint_every_steps": 4}}
    arguments = (workspace / "base-gpt2", workspace / "data", out / "weights", out / "train.json")
    (out / "checkpoint").mkdir(parents=True)
    torch.save({"fingerprint": "other settings"}, out / "checkpoint" / checkpoint.CHECKPOINT_FILE)
    record = train_run(run_settings, *arguments, checkpoint_dir=out / "checkpoint")
    assert record["resumed_from_step"] is None and not (out / "checkpoint").exists()
    _, reference = train(workspace, "gpt2", "lora", 4, seed=3, name="uninterrupted")
    assert record["step_losses"] == reference["step_losses"]  # saving checkpoints changes nothing


def _same_state(a, b) -> bool:
    """LoopStates are equal field by field: tensors by value, the data-order generator by its state."""
    import dataclasses

    def same(x, y):
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
        if isinstance(x, torch.Generator):
            return isinstance(y, torch.Generator) and torch.equal(x.get_state(), y.get_state())
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)):
            return isinstance(y, (list, tuple)) and len(x) == len(y) and all(map(same, x, y))
        return type(x) is type(y) and x == y

    return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def test_loop_state_round_trips_through_a_checkpoint(tmp_path):
    """Every field of the loop's state comes back from a checkpoint as it was saved, in the checkpoint format of
    runs written before LoopState existed; so do the weights and the global random state."""
    from transformers import get_scheduler

    from peftstudy.training import checkpoint
    from peftstudy.training.checkpoint import LoopState
    from peftstudy.training.optimizer import make_optimizer

    def built():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
        optimizer = make_optimizer(model, 0.1, 0.01)
        return model, optimizer, get_scheduler("cosine", optimizer, num_warmup_steps=1, num_training_steps=10)

    model, optimizer, scheduler = built()
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    state = LoopState.start(seed=11)
    state.order = torch.randperm(20, generator=state.order_rng).tolist()
    state.epoch, state.next_group, state.step, state.tokens_seen = 2, 4, 7, 1234
    state.step_losses, state.step_penalties, state.validation_losses = [3.5, 2.25], [0.0, 0.125], [2.5]
    state.best_loss, state.best_epoch, state.epochs_without_gain = 2.5, 1, 1
    state.best_state = {name: p.detach().clone() + 1 for name, p in model.named_parameters()}
    state.elapsed_s, state.resumed_from_step = 12.5, [3]
    state.random_states = [[torch.get_rng_state(), None]]
    torch.manual_seed(5)
    global_random = torch.get_rng_state()

    assert checkpoint.save(tmp_path, "fingerprint", model, optimizer, scheduler, state) == tmp_path / "checkpoint.pt"
    payload = checkpoint.load(tmp_path, "fingerprint")
    assert set(payload) == {"fingerprint", "model", "optimizer", "scheduler", "torch_rng", "cuda_rng", "order_rng",
                            "loop"}
    assert set(payload["loop"]) == {"epoch", "order", "next_group", "step", "tokens_seen", "padded_tokens", "step_losses",
                                    "step_penalties", "validation_losses", "best_loss", "best_epoch", "best_state",
                                    "epochs_without_gain", "elapsed_s", "resumed_from_step", "random_states"}
    torch.rand(3)  # moves the global generator on: restore must set it back
    fresh_model, fresh_optimizer, fresh_scheduler = built()
    restored = checkpoint.restore(payload, fresh_model, fresh_optimizer, fresh_scheduler)

    assert _same_state(restored, state) and not _same_state(restored, LoopState.start(seed=11))
    assert torch.equal(torch.get_rng_state(), global_random)
    assert torch.equal(torch.randperm(20, generator=restored.order_rng), torch.randperm(20, generator=state.order_rng))
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh_model.state_dict()[name], tensor), name
    for index, moments in optimizer.state_dict()["state"].items():
        assert all(torch.equal(fresh_optimizer.state_dict()["state"][index][k], v) for k, v in moments.items())
    assert fresh_scheduler.state_dict() == scheduler.state_dict()


def test_a_run_uses_the_threads_it_is_given_and_records_its_batching_and_progress(workspace, capfd):
    import torch

    before = torch.get_num_threads()
    out = workspace / "threads"
    try:
        record = train_run(settings("gpt2", "lora", 4, seed=5), workspace / "base-gpt2", workspace / "data",
                           out / "weights", out / "train.json", threads=2)
    finally:
        torch.set_num_threads(before)
    assert record["provenance"]["hardware"]["torch_threads"] == 2
    batching = record["batching"]
    assert batching["strategy"] == "random" and batching["micro_batch_size"] == TRAINING["batch_size"]
    assert 0 <= batching["padding_fraction"] < 1
    log = capfd.readouterr().err.splitlines()
    assert log[0] == f"train: {record['steps']} steps to go"
    assert any(line.startswith(f"train: step {record['steps']}/{record['steps']} (100%)") and "tokens/s" in line
               for line in log), log
    assert sum(line.startswith("train: epoch ") for line in log) == record["epochs_run"]


def test_length_grouped_batching_pads_less_than_random(workspace):
    out = workspace / "length-grouped"
    grouped_settings = {**settings("gpt2", "full", seed=5), "training": {**TRAINING, "batching": "length_grouped"}}
    grouped = train_run(grouped_settings, workspace / "base-gpt2", workspace / "data", out / "weights",
                        out / "train.json")
    _, shuffled = train(workspace, "gpt2", "full", seed=5, name="random")
    assert grouped["batching"]["strategy"] == "length_grouped"
    assert shuffled["batching"]["padding_fraction"] > grouped["batching"]["padding_fraction"]
    assert shuffled["tokens_seen"] == grouped["tokens_seen"]  # the same examples, batched differently
