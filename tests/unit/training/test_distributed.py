"""Data-parallel training under torchrun (2 CPU processes on gloo), DDP or FSDP, gives the numbers of a single process.

One torchrun launch trains every case: starting it (each process imports the stack) is most of the time.
"""

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy
import pytest
import torch
import torch.distributed
from safetensors.torch import load_file

from peftstudy.methods import get_method
from peftstudy.training import checkpoint, distributed, fsdp
from peftstudy.training.loop import train_run

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available")

PROCESSES = 2
# 192 training examples in micro-batches of 15: 13 of them, so each epoch ends with a step of one micro-batch,
# which leaves the second rank without one; the 32 validation examples make 3 batches, shared unevenly too.
TRAINING = dict(epochs=2, batch_size=15, gradient_accumulation_steps=4, learning_rate=3e-3, weight_decay=0.01,
                warmup_ratio=0.1, lr_scheduler="cosine", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32")
STOP_AT = 2  # the resumed case is stopped after this step (0-based), mid-epoch
FSDP = {**TRAINING, "data_parallel": "fsdp"}
# The other methods FSDP supports train in short runs (3 steps, the first at learning rate 0 in warm-up).
SHORT = {**TRAINING, "epochs": 1, "max_steps": 3}
SHORT_STEPS = 3
OTHER_FSDP_METHODS = [kind for kind in fsdp.supported_methods() if kind not in ("full", "lora")]
RANKED = {"dora", "vera", "adapter", "mam", "unipelt", "lora_prefix"}
# The resumed FSDP case is stopped mid-epoch 2: its checkpoint holds a best_state (sharded, then gathered) too.
FSDP_STOP_AT = 5


CLASSIFIER = {"kind": "classifier", "labels": ["early", "late"], "module": "score"}


def settings(kind, rank=None, dropout=0.0, training=TRAINING, head=None):
    spec = {"kind": kind, "alpha": 8, "dropout": dropout} | ({"head": head} if head else {})
    return {"dataset": "d", "model": "gpt2", "family": "gpt2", "method": kind, "rank": rank,
            "method_spec": spec, "training": training, "seed": 5}


@pytest.fixture(scope="module")
def classification_data(tiny_workspace, tmp_path_factory):
    """The tiny pairs as a two-label task (is the first word early in the alphabet?), for a classifier head."""
    from peftstudy import io

    out = tmp_path_factory.mktemp("classification")
    for split in ("train", "validation", "test"):
        rows = io.read_jsonl(tiny_workspace / "data" / f"{split}.jsonl")
        io.write_jsonl(out / f"{split}.jsonl", [{"id": r["id"], "input": r["input"],
                                                 "reference": "early" if r["input"] < "m" else "late"} for r in rows])
    io.write_json(out / "manifest.json", {"task": "classification"})
    return out


def arguments(case):
    out = Path(case["out"])
    return case["settings"], case["base"], case["data"], out / "weights", out / "train.json"


@contextlib.contextmanager
def signal_to_rank_0_after(kind, stop_at):
    """A SIGUSR1 to rank 0 alone after that optimizer step: the ranks must still stop together."""
    method_class = type(get_method(kind))
    original = method_class.after_optimizer_step

    def stop_here(self, model, step):
        original(self, model, step)
        if step == stop_at and os.environ["RANK"] == "0":
            os.kill(os.getpid(), signal.SIGUSR1)

    method_class.after_optimizer_step = stop_here
    try:
        yield
    finally:
        method_class.after_optimizer_step = original


def trained_recording_gradient_norms(case, **kwargs):
    """train_run's record, with the norm of the whole gradient at each step as clipping saw it: Adam's update
    hardly depends on the gradient's scale, the norm does (a DTensor under FSDP: its value is the same on all)."""
    norms, clip = [], torch.nn.utils.clip_grad_norm_

    def recording(parameters, max_norm, *args, **kw):
        norm = clip(parameters, max_norm, *args, **kw)
        norms.append(float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm))
        return norm

    torch.nn.utils.clip_grad_norm_ = recording
    try:
        return {**train_run(*arguments(case), **kwargs), "gradient_norms": norms}
    finally:
        torch.nn.utils.clip_grad_norm_ = clip


class Blocks(torch.nn.Sequential):
    _no_split_modules = ["Linear"]  # as a transformers model names its blocks


def in_torchrun(cases):
    """What the tests need from one torchrun launch: each case's record (a case with stop_at is stopped there,
    then resumed), whether DDP was told to look for unused parameters around a module with one and around a
    module without, and how FSDP sharded a two-block module (blocks sharded, each rank's parameter shapes, the
    shards gathered whole and cut again)."""
    records = []
    for case in cases:
        checkpoint_dir = Path(case["out"]) / "checkpoint"
        if case["stop_at"] is not None:
            with signal_to_rank_0_after(case["settings"]["method_spec"]["kind"], case["stop_at"]):
                with pytest.raises(checkpoint.TrainingInterrupted):
                    train_run(*arguments(case), checkpoint_dir=checkpoint_dir)
        records.append(trained_recording_gradient_norms(case, checkpoint_dir=checkpoint_dir))
    ranks = distributed.Ranks.from_environment()
    with ranks.process_group("cpu"):
        with_unused = torch.nn.ModuleDict({"used": torch.nn.Linear(2, 1), "unused": torch.nn.Linear(2, 1)})
        all_used = torch.nn.ModuleDict({"used": torch.nn.Linear(2, 1)})
        find_unused = [ranks.wrap(module, lambda probed: probed["used"](torch.ones(1, 2)).sum()).find_unused_parameters
                       for module in (with_unused, all_used)]
    sharding = distributed.Ranks.from_environment("fsdp")
    with sharding.process_group("cpu"):
        torch.manual_seed(0)  # the same weights on both ranks
        blocks = Blocks(torch.nn.Linear(4, 5), torch.nn.Linear(5, 3))
        whole = {name: p.detach().clone() for name, p in blocks.named_parameters()}
        sharding.wrap(blocks, None)
        shards = dict(blocks.named_parameters())
        # As train.py puts an earlier epoch's best weights back: a copy of the shards, copied into them.
        best = {name: p.detach().clone() for name, p in shards.items()}
        with torch.no_grad():
            for name, p in shards.items():
                p.mul_(2.0)
                p.copy_(best[name])
        gathered, cut = fsdp.gather(shards), fsdp.shard_like(whole, shards)
        sharded = {"root": fsdp.is_sharded(blocks), "blocks": [fsdp.is_sharded(block) for block in blocks],
                   "shapes": {name: list(p.to_local().shape) for name, p in shards.items()},
                   # Whole tensors gathered on rank 0 only; cut back into each rank's shards, they are the shards.
                   "gathered": None if gathered is None else all(torch.equal(gathered[n], whole[n]) for n in whole),
                   "cut": sharding.gather(all(torch.equal(cut[n].to_local(), p.to_local()) for n, p in shards.items()))}
    return {"records": records, "find_unused_parameters": find_unused, "sharded": sharded}


def wait_for_stop(launcher_pid):
    """Rank 0 sends the launching process a SIGUSR1; every rank waits until the signal reaches it through
    torchrun, as a training loop would between two steps."""
    with checkpoint.StopRequest() as stop:
        if os.environ["RANK"] == "0":
            os.kill(launcher_pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while stop.signal is None and time.monotonic() < deadline:
            time.sleep(0.05)
    raise checkpoint.TrainingInterrupted(f"stopped by signal {stop.signal}")


@pytest.fixture(scope="module")
def importable_here():
    """torchrun's processes import this file's functions."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(Path(__file__).parent), prepend=os.pathsep)
        yield


@pytest.fixture(scope="module")
def bases(tiny_workspace, tmp_path_factory):
    """The tiny GPT-2 base, and a copy without dropout: only then can two processes compute what one does."""
    deterministic = tmp_path_factory.mktemp("base") / "base-gpt2"
    shutil.copytree(tiny_workspace / "base-gpt2", deterministic)
    config = json.loads((deterministic / "config.json").read_text())
    config.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    (deterministic / "config.json").write_text(json.dumps(config))
    return {"dropout": tiny_workspace / "base-gpt2", "deterministic": deterministic}


@pytest.fixture(scope="module")
def launched(tiny_workspace, bases, classification_data, tmp_path_factory, importable_here):
    """in_torchrun's result, with name -> (output directory, record) of each case trained by torchrun's
    processes and, as "<name>-single", by this one."""
    root = tmp_path_factory.mktemp("distributed")
    # name: (settings, base, stop_at)
    cases = {
        "full": (settings("full"), "deterministic", None),
        "lora": (settings("lora", 4), "deterministic", None),
        # With dropout: each rank draws its own masks, and a resumed run must restore each rank's random state.
        "dropout": (settings("lora", 4, dropout=0.1), "dropout", None),
        "dropout-resumed": (settings("lora", 4, dropout=0.1), "dropout", STOP_AT),
        "fsdp-full": (settings("full", training=FSDP), "deterministic", None),
        "fsdp-lora": (settings("lora", 4, training=FSDP), "deterministic", None),
        # Full fine-tuning (FSDP's use case) of the base with dropout, uninterrupted and stopped then resumed.
        "fsdp-dropout": (settings("full", training=FSDP), "dropout", None),
        "fsdp-dropout-resumed": (settings("full", training=FSDP), "dropout", FSDP_STOP_AT),
        **{f"fsdp-{kind}": (settings(kind, 4 if kind in RANKED else None, training={**SHORT, "data_parallel": "fsdp"}),
                            "deterministic", None)
           for kind in OTHER_FSDP_METHODS},
        # LoRA with a new classifier head (seed 004's GPT-2 sentiment cells): the head trains with the adapter.
        "classifier": (settings("lora", 4, head=CLASSIFIER), "deterministic", None),
        "fsdp-classifier": (settings("lora", 4, training=FSDP, head=CLASSIFIER), "deterministic", None),
    }
    requests = {name: {"settings": run_settings, "out": str(root / name), "base": str(bases[base]), "stop_at": stop_at,
                       "data": str(classification_data if "classifier" in name else tiny_workspace / "data")}
                for name, (run_settings, base, stop_at) in cases.items()}
    result = distributed.launch("test_distributed:in_torchrun", PROCESSES, list(requests.values()))
    runs = {name: (root / name, record) for name, record in zip(requests, result["records"])}
    # The single-process references of DDP's and FSDP's runs alike (one process wraps nothing: same numbers).
    for name in ("full", "lora", "classifier", *OTHER_FSDP_METHODS):
        single = {**requests.get(name, requests[f"fsdp-{name}"]), "out": str(root / f"{name}-single")}
        runs[f"{name}-single"] = (root / f"{name}-single", trained_recording_gradient_norms(single))
    return result, runs


def trainable_weights(directory):
    return {name: tensor for path in directory.glob("*.safetensors") for name, tensor in load_file(path).items()}


@pytest.mark.parametrize("name", ["full", "lora", "fsdp-full", "fsdp-lora", "classifier", "fsdp-classifier",
                                  *(f"fsdp-{kind}" for kind in OTHER_FSDP_METHODS)])
def test_two_processes_train_as_one_does(launched, name):
    """DDP, and FSDP with the model sharded over the two processes, give a single process's losses and weights
    (FSDP's gradient clipping takes the norm of the whole sharded gradient, which exceeds max_grad_norm at every
    step of full fine-tuning here), and the weights FSDP's rank 0 gathers are the method's usual files."""
    reference = name.removeprefix("fsdp-")
    (directory, record), (single_directory, single) = launched[1][name], launched[1][f"{reference}-single"]
    strategy = "fsdp" if name.startswith("fsdp") else "ddp"
    assert record["distributed"] == {"world_size": PROCESSES, "backend": "gloo", "strategy": strategy}
    assert single["distributed"] == {"world_size": 1, "backend": None, "strategy": None}
    steps = SHORT_STEPS if reference in OTHER_FSDP_METHODS else 8
    assert record["steps"] == single["steps"] == steps and record["tokens_seen"] == single["tokens_seen"]
    assert sorted(path.name for path in (directory / "weights").iterdir()) == \
        sorted(path.name for path in (single_directory / "weights").iterdir())
    numpy.testing.assert_allclose(record["gradient_norms"], single["gradient_norms"], rtol=1e-5)
    numpy.testing.assert_allclose(record["step_losses"], single["step_losses"], rtol=1e-5)
    numpy.testing.assert_allclose(record["validation_losses"], single["validation_losses"], rtol=1e-5)
    weights, single_weights = trainable_weights(directory / "weights"), trainable_weights(single_directory / "weights")
    assert weights.keys() == single_weights.keys()
    for key, tensor in weights.items():
        numpy.testing.assert_allclose(tensor.numpy(), single_weights[key].numpy(), rtol=1e-4, atol=1e-6, err_msg=key)
    # Rank 0 wrote the record; its efficiency holds both ranks' measurements.
    assert json.loads((directory / "train.json").read_text())["step_losses"] == record["step_losses"]
    assert len(record["efficiency"]["per_rank"]) == PROCESSES


@pytest.mark.parametrize("name, stop_at, weights", [("dropout", STOP_AT, "adapter_model.safetensors"),
                                                     ("fsdp-dropout", FSDP_STOP_AT, "model.safetensors")])
def test_a_run_stopped_on_one_rank_resumes_to_the_numbers_of_an_uninterrupted_one(launched, name, stop_at, weights):
    (directory, uninterrupted), (resumed_directory, resumed) = launched[1][name], launched[1][f"{name}-resumed"]
    assert resumed["resumed_from_step"] == [stop_at + 1]
    assert resumed["step_losses"] == uninterrupted["step_losses"]
    assert resumed["validation_losses"] == uninterrupted["validation_losses"]
    assert (resumed_directory / "weights" / weights).read_bytes() == (directory / "weights" / weights).read_bytes()
    assert not (resumed_directory / "checkpoint").exists()


def test_fsdp_shards_each_block_and_the_root_and_gathers_them_whole(launched):
    sharded = launched[0]["sharded"]
    assert sharded["root"] and sharded["blocks"] == [True, True]
    # Rank 0 holds the first half of every parameter's rows (rounded up: rank 1 has the rest).
    assert sharded["shapes"] == {"0.weight": [3, 4], "0.bias": [3], "1.weight": [2, 5], "1.bias": [2]}
    assert sharded["gathered"] is True and sharded["cut"] == [True, True]


@pytest.mark.parametrize("kind, reason", [("adalora", "AdaLoRA's orthogonality penalty"),
                                          ("qlora", "QLoRA's quantized base")])
def test_fsdp_refuses_a_method_it_cannot_train(tiny_workspace, tmp_path, kind, reason):
    """Whatever the number of processes: no silent fallback to DDP."""
    arguments = (tiny_workspace / "base-gpt2", tiny_workspace / "data", tmp_path / "weights", tmp_path / "train.json")
    with pytest.raises(ValueError, match=rf"^method '{kind}' cannot train with training.data_parallel: fsdp \({reason}"
                                         r".*Set data_parallel: ddp in this method's training settings"):
        train_run(settings(kind, 4, training=FSDP), *arguments)
    assert not (tmp_path / "weights").exists()


def test_fsdp_refuses_a_method_not_tested_sharded_and_an_unknown_strategy(tiny_workspace, tmp_path):
    with pytest.raises(ValueError, match=r"method 'new' cannot train .* \(it has not been tested sharded\)"):
        fsdp.check_method("new")
    arguments = (tiny_workspace / "base-gpt2", tiny_workspace / "data", tmp_path / "weights", tmp_path / "train.json")
    with pytest.raises(ValueError, match="data_parallel must be one of ddp, fsdp, got 'zero3'"):
        train_run(settings("full", training={**TRAINING, "data_parallel": "zero3"}), *arguments)


def test_ddp_looks_for_unused_parameters_only_when_a_probe_pass_leaves_one(launched):
    assert launched[0]["find_unused_parameters"] == [True, False]


def test_a_stop_signal_to_the_launcher_reaches_every_rank_and_raises_training_interrupted(importable_here):
    with pytest.raises(checkpoint.TrainingInterrupted, match=f"stopped by signal {int(signal.SIGUSR1)}$"):
        distributed.launch("test_distributed:wait_for_stop", PROCESSES, os.getpid())


def test_accumulation_not_shared_equally_is_a_clear_error(tiny_workspace, tmp_path):
    run_settings = settings("lora", 4, training={**TRAINING, "gradient_accumulation_steps": 3})
    with pytest.raises(RuntimeError, match="must be a multiple of 2") as raised:
        distributed.launch("peftstudy.training.loop:train_run", PROCESSES, run_settings, tiny_workspace / "base-gpt2",
                           tiny_workspace / "data", tmp_path / "weights", tmp_path / "train.json")
    assert "failed in torchrun with 2 processes" in str(raised.value)
    assert not (tmp_path / "weights").exists()


def fake_cuda(monkeypatch, visible: int, cuda_visible_devices: str | None):
    """torch sees `visible` CUDA devices, with CUDA_VISIBLE_DEVICES set so (None: unset)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    if cuda_visible_devices is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cuda_visible_devices)


def test_a_job_trains_in_one_process_per_gpu_it_asked_for_and_sees(monkeypatch):
    from peftstudy.training.distributed import processes_for_gpus

    fake_cuda(monkeypatch, 4, "0,1,2,3")
    assert processes_for_gpus(4) == 4
    assert processes_for_gpus(1) == 1 and processes_for_gpus(0) == 1


@pytest.mark.parametrize("allow", [False, True])
def test_a_job_that_sees_fewer_gpus_than_it_asked_for_fails_whatever_the_study_allows(monkeypatch, allow):
    from peftstudy.devices import DeviceUnavailable
    from peftstudy.training.distributed import processes_for_gpus

    fake_cuda(monkeypatch, 2, "2,3")
    with pytest.raises(DeviceUnavailable, match=r"asked for 4 GPUs \(the study's resources: gpus: 4\) but sees 2 "
                                                r"CUDA devices .*CUDA_VISIBLE_DEVICES='2,3'"):
        processes_for_gpus(4, allow_cpu_fallback=allow)


def test_a_multi_gpu_job_that_sees_no_cuda_fails_unless_the_study_allows_the_cpu(monkeypatch, capsys):
    from peftstudy import devices
    from peftstudy.training.distributed import processes_for_gpus

    fake_cuda(monkeypatch, 0, "")
    for variable in (devices.GPUS_VARIABLE, devices.FALLBACK_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(devices.DeviceUnavailable, match=r"asked for 2 GPUs .* but sees 0 CUDA devices "
                                                        r"\(torch.cuda.device_count\(\); CUDA_VISIBLE_DEVICES=''\).*"
                                                        r"allow_cpu_fallback: true"):
        processes_for_gpus(2)
    assert capsys.readouterr().err == ""
    assert processes_for_gpus(2, allow_cpu_fallback=True) == 1  # one process: the same effective batch
    assert "asked for 2 GPUs" in capsys.readouterr().err  # said in the job's log
    # Where the caller does not say, the job's environment does (execution.jobs.logged puts the study's there).
    monkeypatch.setenv(devices.GPUS_VARIABLE, "2")
    monkeypatch.setenv(devices.FALLBACK_VARIABLE, "1")
    assert processes_for_gpus(2) == 1
    monkeypatch.setenv(devices.FALLBACK_VARIABLE, "0")
    with pytest.raises(devices.DeviceUnavailable):
        processes_for_gpus(2)
