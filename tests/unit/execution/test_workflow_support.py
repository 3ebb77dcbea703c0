"""Glue for the workflow scripts (the code fingerprints are tested in test_fingerprint.py)."""

from pathlib import Path

import pytest


def test_job_header_names_the_slurm_job_its_requeues_and_gpus():
    from peftstudy.execution.jobs import job_header

    local = job_header({})
    assert local.startswith("# job: ") and "SLURM" not in local and local.endswith("\n")
    cluster = job_header({"SLURM_JOB_ID": "4711", "SLURM_RESTART_COUNT": "1", "CUDA_VISIBLE_DEVICES": "0"})
    assert "SLURM job 4711, requeued 1x, CUDA_VISIBLE_DEVICES=0" in cluster


# ------------------------------------------------------------------------------------ what a failed job says


def test_one_line_cause_is_type_and_first_line_of_the_message():
    from peftstudy.execution.jobs import one_line_cause

    assert one_line_cause(IndexError("index out of range in self")) == "IndexError: index out of range in self"
    assert one_line_cause(ValueError("first\n\n  second\n")) == "ValueError: first [...]"
    assert one_line_cause(KeyboardInterrupt()) == "KeyboardInterrupt"
    long = one_line_cause(RuntimeError("x" * 1000), limit=80)
    assert len(long) == 80 and long.startswith("RuntimeError: xxx") and long.endswith(" [...]")


def test_cell_label_and_the_jobs_console_block():
    from peftstudy.execution.jobs import cell_label, job_failure_block

    wildcards = {"study": "demo", "dataset": "debian-products", "model": "gpt2-tiny", "variant": "qlora-r8",
                 "seed": "1"}
    assert cell_label("train", wildcards) == \
        "train study=demo dataset=debian-products model=gpt2-tiny variant=qlora-r8 seed=1"
    assert cell_label("prepare_wordnet", {}) == "prepare_wordnet"
    block = job_failure_block("train", wildcards, "RuntimeError: boom", "logs/demo/train/x.log")
    assert block.splitlines() == ["peftstudy: train study=demo dataset=debian-products model=gpt2-tiny "
                                  "variant=qlora-r8 seed=1 failed",
                                  "  cause: RuntimeError: boom",
                                  "  log:   logs/demo/train/x.log (full traceback)"]


def test_rerun_target_prefers_a_file_output_to_a_directory():
    from peftstudy.execution.snakefile import rerun_target

    run = "results/demo/runs/debian-products/gpt2-tiny/qlora-r8/seed1"
    assert rerun_target([(f"{run}/weights", True), (f"{run}/train.json", False)]) == f"{run}/train.json"
    assert rerun_target([("a.csv", False), ("a.tex", False)]) == "a.csv"
    assert rerun_target([("results/bases/gpt2-tiny", True)]) == "results/bases/gpt2-tiny"
    assert rerun_target([]) is None


@pytest.mark.parametrize("command, rerun", [
    ("--cores 2 demo", "snakemake --cores 2 T"),
    ("--profile slurm all", "snakemake --profile slurm T"),
    ("--cores 2", "snakemake --cores 2 T"),  # the default target
    ("demo --cores 2 -F", "snakemake --cores 2 T"),  # options that force or pick jobs are left out
    ("--forcerun train score --cores=2 --until=train demo all", "snakemake --cores=2 T"),
    ("-c2 -kp demo -- all", "snakemake -c2 -kp T"),
    ("--cores 2 demo --report reports/demo/report.html", "snakemake --cores 2 T"),
    ("--set-threads train=4 -s /x/Snakefile -d 'my dir' --cores 2 micro",
     "snakemake --set-threads train=4 -s /x/Snakefile -d 'my dir' --cores 2 T"),
    # a value of a many-valued option is never taken for a target, nor the target for its value
    ("--cores 2 --configfile a.yaml b.yaml", "snakemake T --cores 2 --configfile a.yaml b.yaml"),
    ("--configfile a.yaml -F demo", "snakemake T --configfile a.yaml"),
])
def test_rerun_command_replaces_the_targets_and_keeps_the_options(command, rerun):
    import shlex

    from peftstudy.execution.snakefile import rerun_command

    assert rerun_command(shlex.split(command), "T") == rerun


def test_failure_summary_lists_each_cell_its_cause_log_and_rerun_command():
    from peftstudy.execution.snakefile import failure_summary

    cell = {"rule": "train", "wildcards": {"study": "demo", "seed": "1"}, "cause": "IndexError: out of range",
            "log": "logs/demo/train/seed1.log", "target": "results/demo/seed1/train.json"}
    summary = failure_summary([cell, {"rule": "prepare_wordnet", "wildcards": {}, "cause": None, "log": None,
                                      "target": "data/nltk"}], ["--cores", "2", "demo"])
    lines = summary.splitlines()
    assert lines[0] == lines[-1] == "=" * 100 and "2 jobs failed" in lines[1]
    assert lines[3:7] == ["train study=demo seed=1", "  cause: IndexError: out of range",
                          "  log:   logs/demo/train/seed1.log",
                          "  rerun: snakemake --cores 2 results/demo/seed1/train.json"]
    assert lines[8:12] == ["prepare_wordnet", "  cause: unknown", "  log:   (this rule keeps no log)",
                           "  rerun: snakemake --cores 2 data/nltk"]
    assert failure_summary([], ["demo"]) == ""
    many = failure_summary([cell] * 25, ["demo"]).splitlines()
    assert "... and 5 more" in many[-2] and len(many) < 25 * 6
    absolute = failure_summary([cell], ["demo"], absolute_logs=True)
    assert f"  log:   {(Path.cwd() / 'logs/demo/train/seed1.log').resolve()}" in absolute


def test_recorded_cause_reads_this_runs_facts_else_the_logs_last_line(tmp_path):
    import os

    from peftstudy.execution.jobs import failure_path, write_failure_facts
    from peftstudy.execution.snakefile import recorded_cause

    log = tmp_path / "job.log"
    log.write_text("# job: ...\nloading\nKilled\n")
    assert recorded_cause(log).endswith("last log line: Killed") and "not recorded" in recorded_cause(log)
    write_failure_facts(failure_path(log), {"cause": "ValueError: bad"})
    assert recorded_cause(log) == "ValueError: bad"
    assert not list(tmp_path.glob("*.partial"))
    os.utime(failure_path(log), (1000, 1000))  # left by an earlier run: not this failure's cause
    assert recorded_cause(log, since=2000.0).endswith("last log line: Killed")
    assert "no log" in recorded_cause(None)
    assert recorded_cause(tmp_path / "missing.log").startswith("not recorded")


def test_report_failed_jobs_reads_snakemakes_failed_jobs(tmp_path, monkeypatch):
    import io
    from types import SimpleNamespace

    from peftstudy.execution.jobs import failure_path, write_failure_facts
    from peftstudy.execution.snakefile import report_failed_jobs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    (tmp_path / "logs").mkdir()
    write_failure_facts(failure_path("logs/seed1.log"), {"cause": "IndexError: out of range"})

    class Output(str):  # like Snakemake's output file objects
        def __new__(cls, path, is_directory):
            self = super().__new__(cls, path)
            self.is_directory = is_directory
            return self

    job = SimpleNamespace(jobid=6, rule=SimpleNamespace(name="train"), log=["logs/seed1.log"],
                          wildcards_dict={"study": "demo", "seed": "1"},
                          output=[Output("runs/seed1/weights", True), Output("runs/seed1/train.json", False)])
    out = io.StringIO()
    report_failed_jobs(SimpleNamespace(scheduler=SimpleNamespace(failed=[job])), ["--cores", "2", "demo"], out=out)
    text = out.getvalue()
    assert "train study=demo seed=1\n  cause: IndexError: out of range\n  log:   logs/seed1.log\n" \
           "  rerun: snakemake --cores 2 runs/seed1/train.json\n" in text
    out = io.StringIO()
    report_failed_jobs(SimpleNamespace(scheduler=SimpleNamespace(failed=[])), ["demo"], out=out)
    assert out.getvalue() == ""


LOGGED_JOB = """
import sys
from types import SimpleNamespace
from peftstudy.execution.jobs import logged
from peftstudy.execution.zygote import JobFailed

snakemake = SimpleNamespace(log=[sys.argv[1]], rule="score", wildcards={"study": "demo", "seed": "2"})
with logged(snakemake):
    print("working")
    if sys.argv[2] == "error":
        def deep(n):
            if n == 0:
                raise ValueError("no such metric\\nsecond line")
            deep(n - 1)
        deep(3)
    elif sys.argv[2] == "zygote":
        print("Traceback (most recent call last):\\n  (the child's frames)\\nIndexError: out of range")
        raise JobFailed("peftstudy.metrics:score failed: IndexError: out of range", "IndexError: out of range",
                        traceback_in_log=True)
    elif sys.argv[2] == "exit0":
        sys.exit(0)
"""


@pytest.mark.parametrize("mode", ["error", "zygote"])
def test_a_failed_job_prints_a_short_block_and_logs_one_traceback(tmp_path, mode):
    import json
    import os
    import subprocess
    import sys

    from peftstudy.execution.jobs import failure_path

    log = tmp_path / "logs" / "score.log"
    failure_path(log).parent.mkdir(parents=True)
    failure_path(log).write_text("{}")  # left by an earlier attempt
    job = subprocess.run([sys.executable, "-c", LOGGED_JOB, str(log), mode], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src")})
    cause = "ValueError: no such metric [...]" if mode == "error" else "IndexError: out of range"
    assert job.returncode == 1
    assert job.stdout == ""
    assert job.stderr == (f"peftstudy: score study=demo seed=2 failed\n  cause: {cause}\n"
                          f"  log:   {log} (full traceback)\n")
    text = log.read_text()
    assert text.startswith("# job: ") and "working\n" in text
    assert text.count("Traceback (most recent call last)") == 1 and text.endswith(f"peftstudy: job failed: {cause}\n")
    if mode == "error":
        assert "in deep" in text and "ValueError: no such metric\nsecond line" in text
    facts = json.loads(failure_path(log).read_text())
    assert facts["cause"] == cause and facts["rule"] == "score" and facts["wildcards"] == {"study": "demo", "seed": "2"}
    assert facts["log"] == str(log)


def test_a_job_that_succeeds_clears_an_earlier_failure(tmp_path):
    import os
    import subprocess
    import sys

    from peftstudy.execution.jobs import failure_path

    log = tmp_path / "job.log"
    failure_path(log).write_text("{}")
    for mode in ("ok", "exit0"):
        job = subprocess.run([sys.executable, "-c", LOGGED_JOB, str(log), mode], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src")})
        assert job.returncode == 0 and job.stderr == "" and not failure_path(log).exists()
    assert log.read_text().count("working\n") == 2
