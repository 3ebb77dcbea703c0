"""The zygote is a speed-up only: a job run in a warm fork computes exactly what a fresh process does."""

import json

import pytest

from peftstudy.execution import zygote

TRAINING = dict(epochs=1, batch_size=16, gradient_accumulation_steps=1, learning_rate=3e-3, weight_decay=0.01,
                warmup_ratio=0.1, lr_scheduler="cosine", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32")


def settings():
    return {"dataset": "d", "model": "m", "family": "gpt2", "method": "lora", "rank": 4,
            "method_spec": {"kind": "lora", "alpha": 8, "dropout": 0.05}, "training": TRAINING, "seed": 3}


def run(workspace, out, mode, monkeypatch):
    monkeypatch.setenv("PEFTSTUDY_ZYGOTE", mode)
    zygote.call("peftstudy.training.loop:train_run", settings(), str(workspace / "base-gpt2"), str(workspace / "data"),
                str(out / "weights"), str(out / "train.json"), log=str(out / "log.txt"))
    return json.loads((out / "train.json").read_text())


def test_zygote_result_is_bit_identical_to_a_plain_process(tiny_workspace, tmp_path, monkeypatch):
    direct = run(tiny_workspace, tmp_path / "direct", "0", monkeypatch)
    forked = run(tiny_workspace, tmp_path / "forked", "1", monkeypatch)
    assert forked["step_losses"] == direct["step_losses"]
    assert (tmp_path / "forked/weights/adapter_model.safetensors").read_bytes() == \
        (tmp_path / "direct/weights/adapter_model.safetensors").read_bytes()


def test_failure_in_the_fork_is_raised_with_the_log_path(tiny_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTSTUDY_ZYGOTE", "1")
    with pytest.raises(RuntimeError, match=r"failed: FileNotFoundError.*full log") as failure:
        zygote.call("peftstudy.training.loop:train_run", settings(), str(tmp_path / "no-such-base"), str(tiny_workspace / "data"),
                    str(tmp_path / "w"), str(tmp_path / "t.json"), log=str(tmp_path / "log.txt"))
    log = (tmp_path / "log.txt").read_text()
    assert "base model manifest missing" in log and log.count("Traceback (most recent call last)") == 1
    assert not (tmp_path / "t.json").exists()
    # What logged() shows on the console: the child's one-line cause; the traceback is in the log already.
    assert isinstance(failure.value, zygote.JobFailed) and failure.value.traceback_in_log
    assert failure.value.cause.startswith("FileNotFoundError: ") and "manifest missing" in failure.value.cause
    assert "\n" not in failure.value.cause


def test_disabled_under_slurm(monkeypatch):
    monkeypatch.setenv("PEFTSTUDY_ZYGOTE", "auto")
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    assert not zygote.enabled()
