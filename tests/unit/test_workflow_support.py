"""The code fingerprints that make Snakemake redo a stage when its package code changes."""

import pytest

from peftstudy.workflow_support import code_fingerprint


def test_fingerprints_are_stable_and_differ_by_stage():
    assert code_fingerprint("data") == code_fingerprint("data")
    assert code_fingerprint("data") != code_fingerprint("metrics")
    assert code_fingerprint("train.py", "methods") != code_fingerprint("generate.py", "methods")
    with pytest.raises(FileNotFoundError, match="no such package source"):
        code_fingerprint("nonexistent.py")


def test_fingerprint_follows_file_contents(tmp_path, monkeypatch):
    import peftstudy.workflow_support as support

    package = tmp_path / "peftstudy"
    (package / "stage").mkdir(parents=True)
    (package / "stage" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(support, "__file__", str(package / "workflow_support.py"))
    before = code_fingerprint("stage")
    (package / "stage" / "a.py").write_text("x = 2\n")
    assert code_fingerprint("stage") != before


def test_job_header_names_the_slurm_job_its_requeues_and_gpus():
    from peftstudy.workflow_support import job_header

    local = job_header({})
    assert local.startswith("# job: ") and "SLURM" not in local and local.endswith("\n")
    cluster = job_header({"SLURM_JOB_ID": "4711", "SLURM_RESTART_COUNT": "1", "CUDA_VISIBLE_DEVICES": "0"})
    assert "SLURM job 4711, requeued 1x, CUDA_VISIBLE_DEVICES=0" in cluster
