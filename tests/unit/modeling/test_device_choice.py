"""The device a job computes on: what its study asked for against what it sees, no silent CPU fallback, and a
record of the choice in what it writes (peftstudy.devices, modeling.loading.pick_device)."""

import os
from types import SimpleNamespace

import pytest
import torch

from peftstudy import devices, provenance
from peftstudy.execution import cluster, jobs
from peftstudy.modeling.loading import pick_device

GPU_NAME = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def machine(monkeypatch):
    """A machine seeing `visible` CUDA devices (CUDA_VISIBLE_DEVICES as given), with the job asking `asked` GPUs
    (None: not a workflow job) and the study allowing the CPU or not."""
    monkeypatch.delenv(devices.OVERRIDE_VARIABLE, raising=False)

    def set_up(visible, cuda_visible_devices=None, asked=None, allow=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: visible > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: GPU_NAME)
        if cuda_visible_devices is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cuda_visible_devices)
        for variable in (devices.GPUS_VARIABLE, devices.FALLBACK_VARIABLE):
            monkeypatch.delenv(variable, raising=False)
        if asked is not None:
            devices.export_job_request(asked, allow, _Setter(monkeypatch))

    return set_up


class _Setter(dict):
    """An environment that monkeypatch restores: export_job_request writes through it."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.monkeypatch = monkeypatch

    def __setitem__(self, name, value):
        self.monkeypatch.setenv(name, value)


@pytest.mark.parametrize("asked, visible, cuda_visible_devices", [
    (1, 0, ""),          # a GPU job on a node whose GPU torch does not see
    (2, 0, None),        # a data-parallel job on a CPU node
    (4, 2, "0,1"),       # granted fewer GPUs than asked
])
def test_a_job_that_does_not_see_the_gpus_it_asked_for_fails_naming_both(machine, asked, visible,
                                                                         cuda_visible_devices):
    machine(visible, cuda_visible_devices, asked=asked)
    plural = "" if asked == 1 else "s"
    with pytest.raises(devices.DeviceUnavailable) as raised:
        pick_device()
    message = str(raised.value)
    assert f"the job asked for {asked} GPU{plural} (the study's resources: gpus: {asked})" in message
    assert f"but sees {visible} CUDA device" in message and "torch.cuda.device_count()" in message
    assert f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}" in message


@pytest.mark.parametrize("asked", [1, 2])
def test_the_study_may_allow_the_cpu_which_is_said_and_recorded(machine, capsys, asked):
    machine(0, "", asked=asked, allow=True)
    assert pick_device() == "cpu"
    err = capsys.readouterr().err
    assert f"asked for {asked} GPU" in err and "computing on the CPU, as the study allows" in err
    choice = devices.last_choice()
    assert choice == {"device": "cpu", "device_type": "cpu", "device_name": None, "requested_gpus": asked,
                      "visible_gpus": 0, "cuda_visible_devices": "", "override": None, "allow_cpu_fallback": True,
                      "cpu_fallback": True}
    assert provenance.record("train", {}, device="cpu")["hardware"]["device_choice"] == choice
    for other in (None, "cuda:0"):  # a record of a stage that chose no device, or another one: not this choice
        assert "device_choice" not in provenance.record(device=other)["hardware"]


def test_the_cpu_fallback_never_covers_fewer_gpus_than_asked(machine):
    machine(2, "0,1", asked=4, allow=True)
    with pytest.raises(devices.DeviceUnavailable, match="asked for 4 GPUs .* but sees 2 CUDA devices"):
        pick_device()


def test_a_job_that_asked_for_no_gpu_and_code_outside_a_job_run_as_before(machine, capsys):
    machine(0, asked=0)  # the demo: gpus: 0
    assert pick_device() == "cpu"
    assert devices.last_choice()["requested_gpus"] == 0 and devices.last_choice()["cpu_fallback"] is False
    machine(0)  # a test or a notebook: nothing asked
    assert pick_device() == "cpu" and devices.last_choice()["requested_gpus"] is None
    machine(1, "0")
    assert pick_device() == "cuda"
    assert capsys.readouterr().err == ""


def test_a_job_on_the_gpus_it_asked_for_records_them(machine):
    machine(4, "0,1,2,3", asked=4)
    assert pick_device() == "cuda"
    assert devices.last_choice() == {"device": "cuda", "device_type": "cuda", "device_name": GPU_NAME,
                                     "requested_gpus": 4, "visible_gpus": 4, "cuda_visible_devices": "0,1,2,3",
                                     "override": None, "allow_cpu_fallback": False, "cpu_fallback": False}


def test_peftstudy_device_overrides_the_check(machine, monkeypatch):
    machine(0, "", asked=1)
    monkeypatch.setenv(devices.OVERRIDE_VARIABLE, "cpu")
    assert pick_device() == "cpu"
    assert devices.last_choice()["override"] == "cpu" and devices.last_choice()["cpu_fallback"] is False


@pytest.mark.parametrize("variable, value", [(devices.GPUS_VARIABLE, "two"), (devices.FALLBACK_VARIABLE, "yes")])
def test_a_malformed_request_in_the_environment_is_named(machine, monkeypatch, variable, value):
    machine(0)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be .*got {value!r}"):
        pick_device()


def test_the_study_setting_reaches_the_job_through_its_resources(machine, monkeypatch):
    """study resources -> the rule's resources (cluster.slurm_resources) -> the job's environment (jobs.logged)."""
    study = {"models": {"m": {}}, "methods": {"lora": {}},
             "resources": {"jobs": {"train": {"gpus": 2, "allow_cpu_fallback": True}, "generate": {"gpus": 1}},
                           "cells": [{"method": "lora", "jobs": ["score"], "set": {"allow_cpu_fallback": True}}]}}
    train = cluster.slurm_resources(study, "train", model="m", method="lora")
    assert (train["gpu"], train["allow_cpu_fallback"]) == (2, 1)
    assert cluster.slurm_resources(study, "generate", model="m", method="lora")["allow_cpu_fallback"] is None
    assert cluster.slurm_resources(study, "score", model="m", method="lora")["allow_cpu_fallback"] is None  # no GPU
    machine(0, "")
    for resources, expected in ((train, ("2", "1")), ({"gpu": None, "allow_cpu_fallback": None}, ("0", "0"))):
        job = SimpleNamespace(resources=SimpleNamespace(**resources), log=[])
        with jobs.logged(job):
            assert (os.environ[devices.GPUS_VARIABLE], os.environ[devices.FALLBACK_VARIABLE]) == expected
        for variable in (devices.GPUS_VARIABLE, devices.FALLBACK_VARIABLE):  # not monkeypatch: it would restore
            os.environ.pop(variable)  # the value logged() set, as the one to put back after the test


def test_the_study_sets_it_as_a_boolean_next_to_gpus(repository):
    from peftstudy.study.config import StudyConfigError, read_yaml, validate_study

    study = read_yaml(repository / "config" / "demo.yaml")
    study["resources"]["jobs"]["train"] = {"gpus": 1, "allow_cpu_fallback": True}
    assert validate_study(study, "demo.yaml")["resources"]["jobs"]["train"]["allow_cpu_fallback"] is True
    study["resources"]["jobs"]["train"]["allow_cpu_fallback"] = "yes"
    with pytest.raises(StudyConfigError, match="allow_cpu_fallback"):
        validate_study(study, "demo.yaml")


def test_a_training_job_records_its_device_choice_or_writes_nothing(machine, tiny_workspace, tmp_path, capsys):
    """End to end through train_run: refused, it writes no weights and no record; allowed, train.json says so."""
    from peftstudy.training.loop import train_run

    training = dict(epochs=1, batch_size=16, gradient_accumulation_steps=1, learning_rate=3e-3, weight_decay=0.0,
                    warmup_ratio=0.0, lr_scheduler="constant", max_grad_norm=1.0, max_source_tokens=24,
                    max_target_tokens=24, early_stopping_patience=None, precision="fp32")
    settings = {"dataset": "d", "model": "gpt2", "family": "gpt2", "method": "lora", "rank": 2,
                "method_spec": {"kind": "lora", "alpha": 8, "dropout": 0.0}, "training": training, "seed": 1}
    arguments = (settings, tiny_workspace / "base-gpt2", tiny_workspace / "data")
    machine(0, "", asked=1)
    with pytest.raises(devices.DeviceUnavailable, match="asked for 1 GPU"):
        train_run(*arguments, tmp_path / "refused" / "weights", tmp_path / "refused" / "train.json")
    assert not (tmp_path / "refused").exists()
    machine(0, "", asked=1, allow=True)
    record = train_run(*arguments, tmp_path / "allowed" / "weights", tmp_path / "allowed" / "train.json")
    choice = record["provenance"]["hardware"]["device_choice"]
    assert (choice["device"], choice["requested_gpus"], choice["cpu_fallback"]) == ("cpu", 1, True)
    assert "computing on the CPU, as the study allows" in capsys.readouterr().err
