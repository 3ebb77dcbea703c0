"""Data-parallel training under torchrun (2 CPU processes on gloo) gives the numbers of a single process.

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

from peftstudy import checkpoint, distributed
from peftstudy.methods import get_method
from peftstudy.train import train_run

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available")

PROCESSES = 2
# 192 training examples in micro-batches of 15: 13 of them, so each epoch ends with a step of one micro-batch,
# which leaves the second rank without one; the 32 validation examples make 3 batches, shared unevenly too.
TRAINING = dict(epochs=2, batch_size=15, gradient_accumulation_steps=4, learning_rate=3e-3, weight_decay=0.01,
                warmup_ratio=0.1, lr_scheduler="cosine", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32")
STOP_AT = 2  # the resumed case is stopped after this step (0-based), mid-epoch


def settings(kind, rank=None, dropout=0.0, training=TRAINING):
    return {"dataset": "d", "model": "gpt2", "family": "gpt2", "method": kind, "rank": rank,
            "method_spec": {"kind": kind, "alpha": 8, "dropout": dropout}, "training": training, "seed": 5}


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


def in_torchrun(cases):
    """What the tests need from one torchrun launch: each case's record (a case with stop_at is stopped there,
    then resumed), and whether DDP was told to look for unused parameters around a module with one and around a
    module without."""
    records = []
    for case in cases:
        checkpoint_dir = Path(case["out"]) / "checkpoint"
        if case["stop_at"] is not None:
            with signal_to_rank_0_after(case["settings"]["method_spec"]["kind"], case["stop_at"]):
                with pytest.raises(checkpoint.TrainingInterrupted):
                    train_run(*arguments(case), checkpoint_dir=checkpoint_dir)
        records.append(train_run(*arguments(case), checkpoint_dir=checkpoint_dir))
    ranks = distributed.Ranks.from_environment()
    with ranks.process_group("cpu"):
        with_unused = torch.nn.ModuleDict({"used": torch.nn.Linear(2, 1), "unused": torch.nn.Linear(2, 1)})
        all_used = torch.nn.ModuleDict({"used": torch.nn.Linear(2, 1)})
        find_unused = [ranks.wrap(module, lambda probed: probed["used"](torch.ones(1, 2)).sum()).find_unused_parameters
                       for module in (with_unused, all_used)]
    return {"records": records, "find_unused_parameters": find_unused}


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
def launched(tiny_workspace, bases, tmp_path_factory, importable_here):
    """in_torchrun's result, with name -> (output directory, record) of each case trained by torchrun's
    processes and, as "<name>-single", by this one."""
    root = tmp_path_factory.mktemp("distributed")
    cases = {
        "full": settings("full"),
        "lora": settings("lora", 4),
        # With dropout: each rank draws its own masks, and a resumed run must restore each rank's random state.
        "dropout": settings("lora", 4, dropout=0.1),
        "dropout-resumed": settings("lora", 4, dropout=0.1),
    }
    requests = {name: {"settings": run_settings, "out": str(root / name), "data": str(tiny_workspace / "data"),
                       "base": str(bases["dropout" if name.startswith("dropout") else "deterministic"]),
                       "stop_at": STOP_AT if name.endswith("resumed") else None}
                for name, run_settings in cases.items()}
    result = distributed.launch("test_distributed:in_torchrun", PROCESSES, list(requests.values()))
    runs = {name: (root / name, record) for name, record in zip(requests, result["records"])}
    for name in ("full", "lora"):
        single = {**requests[name], "out": str(root / f"{name}-single")}
        runs[f"{name}-single"] = (root / f"{name}-single", train_run(*arguments(single)))
    return result, runs


def trainable_weights(directory):
    return {name: tensor for path in directory.glob("*.safetensors") for name, tensor in load_file(path).items()}


@pytest.mark.parametrize("name", ["full", "lora"])
def test_two_processes_train_as_one_does(launched, name):
    (directory, record), (single_directory, single) = launched[1][name], launched[1][f"{name}-single"]
    assert record["distributed"] == {"world_size": PROCESSES, "backend": "gloo"}
    assert single["distributed"] == {"world_size": 1, "backend": None}
    assert record["steps"] == single["steps"] == 8 and record["tokens_seen"] == single["tokens_seen"]
    numpy.testing.assert_allclose(record["step_losses"], single["step_losses"], rtol=1e-5)
    numpy.testing.assert_allclose(record["validation_losses"], single["validation_losses"], rtol=1e-5)
    weights, single_weights = trainable_weights(directory / "weights"), trainable_weights(single_directory / "weights")
    assert weights.keys() == single_weights.keys()
    for key, tensor in weights.items():
        numpy.testing.assert_allclose(tensor.numpy(), single_weights[key].numpy(), rtol=1e-4, atol=1e-6, err_msg=key)
    # Rank 0 wrote the record; its efficiency holds both ranks' measurements.
    assert json.loads((directory / "train.json").read_text())["step_losses"] == record["step_losses"]
    assert len(record["efficiency"]["per_rank"]) == PROCESSES


def test_a_run_stopped_on_one_rank_resumes_to_the_numbers_of_an_uninterrupted_one(launched):
    (directory, uninterrupted), (resumed_directory, resumed) = launched[1]["dropout"], launched[1]["dropout-resumed"]
    assert resumed["resumed_from_step"] == [STOP_AT + 1]
    assert resumed["step_losses"] == uninterrupted["step_losses"]
    assert resumed["validation_losses"] == uninterrupted["validation_losses"]
    assert ((resumed_directory / "weights/adapter_model.safetensors").read_bytes()
            == (directory / "weights/adapter_model.safetensors").read_bytes())
    assert not (resumed_directory / "checkpoint").exists()


def test_ddp_looks_for_unused_parameters_only_when_a_probe_pass_leaves_one(launched):
    assert launched[0]["find_unused_parameters"] == [True, False]


def test_a_stop_signal_to_the_launcher_reaches_every_rank_and_raises_training_interrupted(importable_here):
    with pytest.raises(checkpoint.TrainingInterrupted, match=f"stopped by signal {int(signal.SIGUSR1)}$"):
        distributed.launch("test_distributed:wait_for_stop", PROCESSES, os.getpid())


def test_accumulation_not_shared_equally_is_a_clear_error(tiny_workspace, tmp_path):
    run_settings = settings("lora", 4, training={**TRAINING, "gradient_accumulation_steps": 3})
    with pytest.raises(RuntimeError, match="must be a multiple of 2") as raised:
        distributed.launch("peftstudy.train:train_run", PROCESSES, run_settings, tiny_workspace / "base-gpt2",
                           tiny_workspace / "data", tmp_path / "weights", tmp_path / "train.json")
    assert "failed in torchrun with 2 processes" in str(raised.value)
    assert not (tmp_path / "weights").exists()


def test_a_job_trains_in_one_process_per_gpu_only_where_cuda_has_them():
    from peftstudy.distributed import processes_for_gpus

    assert processes_for_gpus(1) == 1
    if not torch.cuda.is_available():
        assert processes_for_gpus(4) == 1  # a cluster study run locally on CPU: same effective batch, one process
    else:
        with pytest.raises(RuntimeError, match="asked for 1000 GPUs but sees"):
            processes_for_gpus(1000)
