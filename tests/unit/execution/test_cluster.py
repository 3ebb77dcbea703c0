"""Cluster resources as data: study config + site settings -> the SLURM plugin's resources; the profile."""

import pytest

from peftstudy.execution import cluster
from peftstudy.study.config import (
    StudyConfigError,
    load_study,
    read_yaml,
    validate_study,
)

STUDY = {
    "models": {"small": {}, "big": {}},
    "methods": {"full": {}, "lora": {}},
    "resources": {
        "jobs": {"train": {"gpus": 1, "cpus": 8, "mem_mb": 32000, "runtime": 360}},
        "cells": [
            {"model": "big", "set": {"gpu_model": "a100", "mem_mb": 64000}},
            {"model": "big", "method": "full", "jobs": ["train"], "set": {"gpus": 4, "runtime": 1440}},
            {"method": "lora", "jobs": ["generate"], "set": {"runtime": 30}},
        ],
    },
}


def test_needs_come_from_job_defaults_then_study_then_matching_cells_in_order():
    assert cluster.job_needs(STUDY, "train", "small", "lora") == {"gpus": 1, "cpus": 8, "mem_mb": 32000, "runtime": 360}
    assert cluster.job_needs(STUDY, "train", "big", "full") == {
        "gpus": 4, "cpus": 8, "mem_mb": 64000, "runtime": 1440, "gpu_model": "a100"}
    assert cluster.job_needs(STUDY, "generate", "small", "lora") == {**cluster.JOB_DEFAULTS["generate"], "runtime": 30}
    assert cluster.job_needs({}, "score") == cluster.JOB_DEFAULTS["score"]
    with pytest.raises(cluster.ClusterSettingsError, match="unknown job kind 'eval'"):
        cluster.job_needs(STUDY, "eval")


def test_slurm_resources_use_the_plugin_names_and_grow_with_each_attempt():
    site = {"partition": "cpu", "gpu_partition": "gpu", "account": "proj42"}
    first = cluster.slurm_resources(STUDY, "train", model="big", method="full", site=site)
    assert first == {"gpu": 4, "gpu_model": "a100", "constraint": None, "cpus_per_task": 8, "mem_mb": 64000,
                     "runtime": 1440, "slurm_partition": "gpu", "slurm_account": "proj42",
                     "slurm_extra": "--signal=TERM@300", "allow_cpu_fallback": None}
    third = cluster.slurm_resources(STUDY, "train", model="big", method="full", attempt=3, site=site)
    assert (third["mem_mb"], third["runtime"]) == (144000, 3240)  # x 1.5 per retry
    scoring = cluster.slurm_resources(STUDY, "score", site=site)
    assert scoring["gpu"] is None and scoring["gpu_model"] is None and scoring["slurm_partition"] == "cpu"
    assert scoring["slurm_extra"] is None  # only training checkpoints on SIGTERM
    assert cluster.slurm_resources(STUDY, "train", model="small", method="lora")["slurm_partition"] is None
    quiet = {**STUDY, "resources": {**STUDY["resources"], "stop_signal_lead_s": 0, "attempt_scaling": 2}}
    assert cluster.slurm_resources(quiet, "train", model="small", attempt=2)["slurm_extra"] is None
    assert cluster.slurm_resources(quiet, "train", model="small", attempt=2)["mem_mb"] == 64000
    assert set(first) == set(cluster.SLURM_RESOURCE_NAMES)


def test_site_settings_environment_beats_the_local_file(tmp_path):
    local = tmp_path / "local.yaml"
    assert cluster.site_settings({}, local) == {}
    local.write_text("partition: short\naccount: lab\nstatus_command: squeue\n")
    assert cluster.site_settings({}, local) == {"partition": "short", "account": "lab"}
    environ = {"PEFTSTUDY_SLURM_PARTITION": "long", "PEFTSTUDY_SLURM_GPU_PARTITION": "a100"}
    assert cluster.site_settings(environ, local) == {"partition": "long", "gpu_partition": "a100", "account": "lab"}
    local.write_text("partiton: short\n")
    with pytest.raises(cluster.ClusterSettingsError, match=r"local.yaml: unknown setting 'partiton'"):
        cluster.site_settings({}, local)
    local.write_text("- short\n")
    with pytest.raises(cluster.ClusterSettingsError, match="expected a mapping"):
        cluster.site_settings({}, local)


def test_study_resources_are_validated_with_the_key_named(repository):
    study = read_yaml(repository / "config" / "demo.yaml")
    study["resources"] = {"cells": [{"model": "gpt3", "set": {"gpus": 1}}]}
    with pytest.raises(StudyConfigError, match=r"demo.yaml: resources.cells\[0\].model: unknown model 'gpt3'"):
        validate_study(study, "config/demo.yaml")
    study["resources"] = {"jobs": {"train": {"gpu": 1}}}
    with pytest.raises(StudyConfigError, match=r"resources.jobs.train"):
        validate_study(study, "config/demo.yaml")
    study["resources"] = {"jobs": {"train": {"gpu_model": "a100; rm -rf /"}}}
    with pytest.raises(StudyConfigError, match=r"resources.jobs.train.gpu_model"):
        validate_study(study, "config/demo.yaml")


def test_paper_study_asks_for_a100s_where_seed_000_measured_more_than_24_gb(repository):
    study = load_study(repository / "config.yaml")
    large_full = cluster.job_needs(study, "train", "gpt2-large", "full")  # 38.2 GB in seed 000
    assert large_full["gpus"] == 1 and large_full["gpu_model"] == "a100"
    llama_lora = cluster.job_needs(study, "train", "llama-7b", "lora")  # 24.5 GB
    assert llama_lora["gpu_model"] == "a100"
    assert cluster.job_needs(study, "train", "llama-7b", "qlora")["gpu_model"] is None  # 18.7 GB: any 24 GB card
    assert cluster.job_needs(study, "train", "gpt2-small", "lora").get("gpu_model") is None


def _parse_profile(repository, monkeypatch, tmp_path, environ):
    from snakemake.profiles import ProfileConfigFileParser

    (tmp_path / "slurm").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path)  # the profile reads slurm/local.yaml relative to the working directory
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with open(repository / "slurm" / "config.yaml") as stream:
        return ProfileConfigFileParser().parse(stream)


def test_profile_reads_the_status_command_from_the_environment_or_local_file(repository, monkeypatch, tmp_path):
    monkeypatch.delenv("PEFTSTUDY_SLURM_STATUS_COMMAND", raising=False)
    parsed = _parse_profile(repository, monkeypatch, tmp_path, {})
    assert parsed["executor"] == "slurm" and parsed["retries"] == "2"
    assert "slurm-status-command" not in parsed  # the plugin's own choice (sacct where accounting is on)
    assert parsed["group-components"] == ["scoring=8"]
    (tmp_path / "slurm" / "local.yaml").write_text("status_command: squeue\n")
    assert _parse_profile(repository, monkeypatch, tmp_path, {})["slurm-status-command"] == "squeue"
    parsed = _parse_profile(repository, monkeypatch, tmp_path, {"PEFTSTUDY_SLURM_STATUS_COMMAND": "sacct"})
    assert parsed["slurm-status-command"] == "sacct"
