"""A failed cell says what failed, in one screen: its cell, the one-line cause, its log and the command that reruns
only that cell (the full traceback goes to the log, not the console)."""

import copy
import shlex
from pathlib import Path

import pytest
from test_workflow import MICRO, snakemake, write_study

RUN = "results/micro/runs/micro-data/gpt2-micro/lora-r2/seed1"
LOG = "logs/micro/train/micro-data/gpt2-micro/lora-r2/seed1.log"
CELL = "train study=micro dataset=micro-data model=gpt2-micro variant=lora-r2 seed=1"
CAUSE = "IndexError: index out of range in self"


def failing_study():
    """One dataset, one model, one method, one seed; the prompts are longer than the model has positions, which
    the config allows and training fails on (an embedding lookup out of range)."""
    study = copy.deepcopy(MICRO)
    study.update(seeds=[1], overrides=[], claims=[],
                 matrix=[{"datasets": ["micro-data"], "models": ["gpt2-micro"], "methods": ["lora"]}])
    study["datasets"] = {"micro-data": dict(MICRO["datasets"]["micro-data"], max_examples=120)}
    model = copy.deepcopy(MICRO["models"]["gpt2-micro"])
    model["architecture"]["n_positions"] = 32
    model["pretraining"].update(steps=4, sequence_tokens=32)
    study["models"] = {"gpt2-micro": model}
    study["methods"] = {"full": {"kind": "full"},  # the statistics' baseline; not run
                        "lora": {"kind": "lora", "ranks": [2], "alpha": 8, "dropout": 0.0}}
    study["training"] = dict(MICRO["training"], max_source_tokens=48, max_target_tokens=48)
    return study


@pytest.mark.slow
def test_a_failed_cell_is_reported_in_one_screen_and_reruns_alone(tmp_path):
    from support.workflow_runner import parse_job_stats, run_snakemake

    study = failing_study()
    write_study(tmp_path, study)
    failed = snakemake(tmp_path, "micro", check=False)
    console = failed.stdout + failed.stderr
    assert failed.returncode != 0, console[-3000:]

    # The full traceback is in the job's log, once; the console has none.
    log = tmp_path / LOG
    assert log.read_text().count("Traceback (most recent call last)") == 1 and CAUSE in log.read_text()
    assert "Traceback (most recent call last)" not in console, console[-6000:]

    # The job's own block, then the end-of-run summary: the cell, its one-line cause, its log, the rerun command.
    assert f"peftstudy: {CELL} failed\n  cause: {CAUSE}\n  log:   {LOG} (full traceback)\n" in console
    summary = console[console.index("peftstudy: 1 job failed."):]
    lines = summary.splitlines()
    assert lines[1:4] == ["", CELL, f"  cause: {CAUSE}"]
    assert lines[4] == f"  log:   {log.resolve()}"  # absolute: Snakemake ran in --directory, not where it started
    assert lines[5].startswith("  rerun: snakemake ")
    assert lines[6] == "=" * 100
    rerun = shlex.split(lines[5][len("  rerun: "):])
    assert rerun[-1] == f"{RUN}/train.json" and "micro" not in rerun[1:-1]  # the cell's target, not the study's
    # One screen: what the console ends with says it all.
    last_screen = "\n".join(console.splitlines()[-25:])
    assert all(part in last_screen for part in (CELL, CAUSE, LOG, lines[5])), console[-3000:]

    # After fixing the cause, the printed command (run from where the first one was) reruns that cell only.
    study["training"].update(max_source_tokens=12, max_target_tokens=12)
    write_study(tmp_path, study)
    fixed = run_snakemake(rerun[1:])
    assert parse_job_stats(fixed.stdout + fixed.stderr) == {"train": 1}, fixed.stderr[-3000:]
    assert (tmp_path / RUN / "train.json").exists()
    assert not Path(f"{log}.failure.json").exists()  # cleared when the job ran again
