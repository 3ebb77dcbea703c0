"""`snakemake --profile slurm` against a real single-node SLURM cluster (tests/support/slurm_cluster.py).

The same micro study runs with the local executor and through SLURM, where after their first checkpoint one
training job is cancelled (`scancel`), one requeued (`scontrol requeue`) and one sent the SIGTERM that SLURM
sends before a time limit (`--signal=TERM@...`, here `scancel --signal=TERM`, which signals the job's steps only). The SLURM run must finish
with the local run's numbers, and SLURM's own records must show that its jobs ran there.
"""

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
sys.path.insert(0, str(REPOSITORY / "tests"))
from support.slurm_cluster import cluster_unavailable_reason, single_node_cluster  # noqa: E402

pytestmark = pytest.mark.slow

STUDY = {
    "study": "cluster",
    "title": "SLURM micro study",
    "seeds": [1, 2],
    "corpora": {"cluster-corpus": {"source": "synthetic", "corpus": "synthetic", "max_lines": 2000, "seed": 3}},
    "datasets": {"cluster-data": {"source": "synthetic", "corpus": "synthetic", "max_examples": 400, "seed": 5}},
    "models": {
        "gpt2-cluster": {
            "family": "gpt2", "source": "scratch",
            "architecture": {"n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 96},
            "tokenizer": {"vocab_size": 300},
            "pretraining": {"corpus": "cluster-corpus", "steps": 30, "batch_size": 16, "sequence_tokens": 32},
        },
    },
    "methods": {
        "full": {"kind": "full"},
        "lora": {"kind": "lora", "ranks": [4], "alpha": 8, "dropout": 0.0, "training": {"learning_rate": 0.005}},
    },
    # 240 optimizer steps (about 6 s here): long enough to be interrupted after the first checkpoint.
    "training": {
        "epochs": 6, "batch_size": 8, "gradient_accumulation_steps": 1, "learning_rate": 0.002, "weight_decay": 0.01,
        "warmup_ratio": 0.1, "lr_scheduler": "cosine", "max_grad_norm": 1.0, "max_source_tokens": 24,
        "max_target_tokens": 24, "early_stopping_patience": None, "checkpoint_every_steps": 10, "precision": "fp32",
    },
    "generation": {"batch_size": 32, "max_new_tokens": 12, "num_beams": 1, "no_repeat_ngram_size": 0},
    "matrix": [{"datasets": ["cluster-data"], "models": ["gpt2-cluster"], "methods": ["full", "lora"]}],
    # Small requests so that jobs share the 2-CPU node; training asks for the node's (fake) GPU, which torch does
    # not see: it trains on the CPU because the study allows it (else it would fail, peftstudy.devices).
    "resources": {
        "jobs": {
            "prepare": {"gpus": 0, "cpus": 1, "mem_mb": 1000, "runtime": 15},
            "pretrain": {"gpus": 0, "cpus": 1, "mem_mb": 1500, "runtime": 15},
            "train": {"gpus": 1, "cpus": 1, "mem_mb": 1500, "runtime": 15, "allow_cpu_fallback": True},
            "generate": {"gpus": 0, "cpus": 1, "mem_mb": 1500, "runtime": 15},
            "score": {"gpus": 0, "cpus": 1, "mem_mb": 2500, "runtime": 15},
        },
    },
}
TARGET = "results/cluster/metrics.csv"
RUN = "results/cluster/runs/cluster-data/gpt2-cluster/{variant}/seed{seed}"
CANCELLED = ("full", 1)  # scancel'ed after its first checkpoint: Snakemake's retry resumes it
REQUEUED = ("lora-r4", 2)  # scontrol requeue'd after its first checkpoint: SLURM reruns it, it resumes
SIGNALLED = ("full", 2)  # SIGTERM to its steps: it checkpoints and fails, Snakemake's retry resumes it
# What differs between two correct runs of the same study: clocks, memory, hardware.
MEASURED = ("_s", "_bytes", "_kwh", "_per_s", "_ms_per_example", "_w", "tokens_per", "cost", "roi", "utilization",
            "temperature")


def workdir_with_study(path: Path) -> Path:
    (path / "config").mkdir(parents=True)
    (path / "config" / "cluster.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    (path / "slurm").mkdir()
    shutil.copy(REPOSITORY / "slurm" / "config.yaml", path / "slurm" / "config.yaml")
    return path


def snakemake_command(*args):
    """The workflow from the repository, run in a work directory holding the study and the profile."""
    return [str(SNAKEMAKE), "--snakefile", str(REPOSITORY / "Snakefile"), "--configfile", "config/cluster.yaml",
            *args, TARGET]


def environment(**extra):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = workdir_with_study(tmp_path_factory.mktemp("local"))
    started = time.perf_counter()
    result = subprocess.run(snakemake_command("--cores", "2"), cwd=workdir, env=environment(PEFTSTUDY_ZYGOTE="0"),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, time.perf_counter() - started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(f"this machine cannot run a single-node SLURM cluster: {reason}")
    with single_node_cluster(tmp_path_factory.mktemp("slurmd")) as running:
        yield running


def running_train_job(cluster, variant, seed):
    comment = f"rule_train_wildcards_cluster_cluster-data_gpt2-cluster_{variant}_{seed}"
    for record in cluster.job_records():
        if record.get("Comment") == comment and record.get("JobState") == "RUNNING":
            return record["JobId"]
    return None


class Interrupter(threading.Thread):
    """Cancels, requeues and signals a training job each, once it has written its first checkpoint."""

    def __init__(self, cluster, workdir):
        super().__init__(daemon=True)
        self.cluster, self.workdir = cluster, workdir
        self.done = {}  # action -> SLURM job id
        self.error = None
        self.stop = threading.Event()

    def checkpointed(self, variant, seed):
        path = self.workdir / f"checkpoints/cluster/cluster-data/gpt2-cluster/{variant}/seed{seed}/checkpoint.pt"
        return path.exists()

    def run(self):
        plan = {"scancel": CANCELLED, "requeue": REQUEUED, "signal": SIGNALLED}
        commands = {"scancel": ["scancel"], "requeue": ["scontrol", "requeue"], "signal": ["scancel", "--signal=TERM"]}
        try:
            while plan and not self.stop.wait(0.2):
                for action, (variant, seed) in list(plan.items()):
                    job_id = running_train_job(self.cluster, variant, seed) if self.checkpointed(variant, seed) else None
                    if job_id is None:
                        continue
                    self.cluster.run([*commands[action], job_id])
                    self.done[action] = job_id
                    del plan[action]
        except Exception as error:  # reported by the test
            self.error = error


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = workdir_with_study(tmp_path_factory.mktemp("slurm"))
    interrupter = Interrupter(cluster, workdir)
    interrupter.start()
    started = time.perf_counter()
    # No slurmdbd here, so no sacct: the plugin polls squeue (the site setting under test).
    env = environment(**cluster.env, PEFTSTUDY_SLURM_STATUS_COMMAND="squeue")
    # Status checks every few seconds, not the profile's 20 s + 10 s per idle check (that spares a real controller).
    command = snakemake_command("--profile", "slurm", "--slurm-init-seconds-before-status-checks", "3")
    try:
        result = subprocess.run(command, cwd=workdir, env=env, capture_output=True,
                                text=True, timeout=900)
    except subprocess.TimeoutExpired as timeout:
        raise AssertionError(f"the SLURM run did not finish in 900 s:\n{(timeout.stderr or b'')[-6000:].decode()}\n"
                             f"{cluster.describe()}") from None
    finally:
        interrupter.stop.set()
    elapsed = time.perf_counter() - started
    assert interrupter.error is None, interrupter.error
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}\n{cluster.describe()}"
    return workdir, elapsed, interrupter.done, result.stdout + result.stderr


def quality_metrics(workdir):
    metrics = pd.read_csv(workdir / TARGET, dtype={"rank": "string"}, keep_default_na=False)
    keep = ~metrics["metric"].str.contains("|".join(MEASURED)) & (metrics["unit"] != "s")
    columns = ["method", "rank", "seed", "metric"]
    return metrics[keep].drop(columns=["device", "note"]).sort_values(columns).reset_index(drop=True)


def test_jobs_ran_through_slurm_with_their_resources(slurm_run, cluster):
    workdir, _, _, output = slurm_run
    records = cluster.job_records()
    by_rule = {}
    for record in records:
        by_rule.setdefault(record["Comment"].split("_wildcards_")[0], []).append(record)
    # 1 corpus, 1 dataset, 1 base, 4 trainings (+1 retry each of the cancelled and the signalled one), 4
    # generations, the 4 scorings grouped into one job; the requeued job keeps its id.
    counts = {rule: len(jobs) for rule, jobs in by_rule.items()}
    assert counts == {"rule_prepare_corpus": 1, "rule_prepare_dataset": 1, "rule_prepare_base": 1, "rule_train": 6,
                      "rule_generate": 4, "rule_scoring_score": 1}, output[-3000:]
    for record in by_rule["rule_train"]:
        assert "gpu" in record.get("TresPerJob", ""), record  # --gpus=1
        assert record["TimeLimit"] in ("00:15:00", "00:23:00"), record  # the retry gets 1.5x the runtime
    grouped = by_rule["rule_scoring_score"][0]
    assert grouped["NumCPUs"] == "1" and grouped["TimeLimit"] == "01:00:00", grouped  # 4 jobs in a row
    # Each job's log is named by its SLURM job id.
    logged_ids = {path.stem for path in (workdir / "logs" / "slurm").rglob("*.log")}
    assert {record["JobId"] for record in records} <= logged_ids
    # The training logs name the SLURM job and the GPU SLURM gave it.
    train_log = (workdir / "logs/cluster/train/cluster-data/gpt2-cluster/lora-r4/seed1.log").read_text()
    assert "SLURM job" in train_log and "CUDA_VISIBLE_DEVICES=0" in train_log


def test_cancelled_requeued_and_signalled_trainings_resume_to_the_numbers_of_a_local_run(slurm_run, local_run, cluster):
    import json

    workdir, _, interrupted, _ = slurm_run
    local_dir, _ = local_run
    assert set(interrupted) == {"scancel", "requeue", "signal"}
    assert cluster.job(interrupted["scancel"])["JobState"] == "CANCELLED"
    assert cluster.job(interrupted["signal"])["JobState"] == "FAILED"  # stopped itself after saving its state
    requeued = cluster.job(interrupted["requeue"])
    assert requeued["JobState"] == "COMPLETED" and int(requeued["Restarts"]) == 1
    for variant, seed in (CANCELLED, REQUEUED, SIGNALLED):
        run = RUN.format(variant=variant, seed=seed)
        record = json.loads((workdir / run / "train.json").read_text())
        uninterrupted = json.loads((local_dir / run / "train.json").read_text())
        assert record["resumed_from_step"], f"{run} was not resumed from a checkpoint"
        assert uninterrupted["resumed_from_step"] is None
        assert record["step_losses"] == uninterrupted["step_losses"]
        assert record["validation_losses"] == uninterrupted["validation_losses"]
    assert not any((workdir / "checkpoints").rglob("checkpoint.pt"))  # removed once the weights are written
    pd.testing.assert_frame_equal(quality_metrics(workdir), quality_metrics(local_dir))
