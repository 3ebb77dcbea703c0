"""The throwaway single-node SLURM cluster of tests/support/slurm_cluster.py: it comes up idle, runs batch jobs (with a
fake GPU), cancels with SIGTERM before SIGKILL, requeues, and leaves nothing behind."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.slurm_cluster import (  # noqa: E402
    BACKUP_SUFFIX,
    KILL_WAIT,
    MARKER,
    SLURM_DIR,
    STATE_PATH,
    ClusterError,
    cluster_unavailable_reason,
    machine_lock,
    single_node_cluster,
)

REASON = cluster_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no single-node SLURM cluster here: {REASON}")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(directory.rglob("*"))} if directory.exists() else {}


def wait_for_file_lines(path: Path, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(lines := path.read_text().splitlines()) >= count:
            return lines
        time.sleep(0.2)
    raise AssertionError(f"{path} has not {count} lines after {timeout} s: "
                         f"{path.read_text() if path.exists() else '(missing)'}")


def our_processes(pids) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]



def slurm_daemons() -> list[str]:
    """`pgrep -a` lines of any slurmctld, slurmd or slurmstepd on the machine (zombies included)."""
    return [line for name in ("slurmctld", "slurmd", "slurmstepd")
            for line in subprocess.run(["pgrep", "-a", "-x", name], capture_output=True, text=True).stdout.splitlines()]


# The two teardown tests run first, before the module's cluster starts (one cluster at a time per machine).

def test_teardown_after_keyboard_interrupt_leaves_nothing_behind(tmp_path):
    """A site's own slurm.conf (a sentinel here when there is none) is put back byte for byte."""
    with machine_lock():  # /etc/slurm stays as it is while we look (another session's cluster waits)
        created = not (SLURM_DIR / "slurm.conf").exists()
        if created:
            (SLURM_DIR / "slurm.conf").write_text("# a site's own slurm.conf (sentinel of test_slurm_cluster.py)\n")
        try:
            keyboard_interrupt_inside_the_cluster(tmp_path)
        finally:
            if created:
                (SLURM_DIR / "slurm.conf").unlink(missing_ok=True)


def keyboard_interrupt_inside_the_cluster(tmp_path):
    before = snapshot(SLURM_DIR)
    with pytest.raises(KeyboardInterrupt):
        with single_node_cluster(tmp_path) as cluster:
            assert (SLURM_DIR / "slurm.conf").read_text() != before["slurm.conf"].decode()
            job_id = cluster.sbatch("--wrap", "sleep 300", "--output", str(tmp_path / "sleep.out"))
            cluster.wait_for_job(job_id, timeout=30, states=("RUNNING",))
            pids = [p.pid for p in cluster._popens.values()]
            raise KeyboardInterrupt
    assert cluster.teardown_errors == []
    assert our_processes(pids) == []
    assert slurm_daemons() == []
    assert snapshot(SLURM_DIR) == before
    assert not STATE_PATH.exists()
    assert cluster_unavailable_reason() is None


KILLED_SESSION = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from support.slurm_cluster import single_node_cluster
with single_node_cluster({workdir!r}) as cluster:
    job_id = cluster.sbatch("--wrap", "sleep 300", "--output", {workdir!r} + "/sleep.out")
    cluster.wait_for_job(job_id, timeout=30, states=("RUNNING",))
    os.kill(os.getpid(), signal.SIGKILL)  # no teardown, no atexit
"""


def test_a_session_killed_outright_is_cleaned_up_by_the_next(tmp_path):
    code = KILLED_SESSION.format(tests=str(Path(__file__).resolve().parents[1]), workdir=str(tmp_path / "killed"))
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert STATE_PATH.exists() and slurm_daemons()  # its daemons and job live on
    assert cluster_unavailable_reason() is None  # ... but they are ours to clean up
    with single_node_cluster(tmp_path / "next") as cluster:
        assert cluster.node_state() == "idle" and cluster.squeue() == []
    assert cluster.teardown_errors == []
    with machine_lock():
        assert slurm_daemons() == []
        assert not STATE_PATH.exists()
        assert not [p.name for p in SLURM_DIR.iterdir() if p.name.endswith(BACKUP_SUFFIX)
                    or (p.is_file() and p.read_text(errors="replace").startswith(MARKER))]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with single_node_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def test_cluster_comes_up_idle(cluster):
    assert cluster.conf_path == SLURM_DIR / "slurm.conf"
    assert cluster.node_state() == "idle"
    node = cluster.node()
    assert node["NodeName"] == cluster.node_name == os.uname().nodename.split(".")[0]
    assert int(node["CPUTot"]) == os.cpu_count()
    assert node["Gres"] == "gpu:fake:1"
    assert cluster.squeue() == []


def test_wrap_job_runs_and_writes_its_output(cluster, tmp_path):
    output = tmp_path / "out.txt"
    job_id = cluster.sbatch("--wrap", "echo job=$SLURM_JOB_ID", "--output", str(output))
    record = cluster.wait_for_job(job_id, timeout=30)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0"
    assert output.read_text().strip() == f"job={job_id}"
    assert any(r["JobId"] == str(job_id) for r in cluster.job_records())  # kept for MinJobAge after the end


def test_gpu_job_schedules_and_sees_one_device(cluster, tmp_path):
    output = tmp_path / "gpu.txt"
    job_id = cluster.sbatch("--gpus=1", "--wrap", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES",
                            "--output", str(output))
    assert cluster.wait_for_job(job_id, timeout=30)["JobState"] == "COMPLETED"
    assert output.read_text().strip() == "CUDA_VISIBLE_DEVICES=0"


def test_scancel_sends_sigterm_first_then_waits_before_sigkill(cluster, tmp_path):
    marker = tmp_path / "marker.txt"
    script = f"""#!/bin/bash
trap 'echo TERM >> {marker}; sleep 2; echo still-alive-after-TERM >> {marker}; exit 0' TERM
echo started >> {marker}
sleep 300 &
wait
"""
    job_id = cluster.sbatch("--output", str(tmp_path / "job.out"), script=script)
    wait_for_file_lines(marker, 1, timeout=30)
    cancelled = time.monotonic()
    cluster.run(["scancel", str(job_id)])
    assert wait_for_file_lines(marker, 3, timeout=KILL_WAIT + 5) == ["started", "TERM", "still-alive-after-TERM"]
    assert cluster.wait_for_job(job_id, timeout=KILL_WAIT + 10)["JobState"] == "CANCELLED"
    assert time.monotonic() - cancelled < KILL_WAIT  # the trap's exit ended it, not the SIGKILL


def test_requeue_runs_the_job_again_under_the_same_id(cluster, tmp_path):
    starts = tmp_path / "starts.txt"
    script = f"""#!/bin/bash
echo "$SLURM_JOB_ID ${{SLURM_RESTART_COUNT:-0}}" >> {starts}
sleep 300
"""
    job_id = cluster.sbatch("--output", str(tmp_path / "job.out"), script=script)
    try:
        wait_for_file_lines(starts, 1, timeout=30)
        requeued = time.monotonic()
        cluster.run(["scontrol", "requeue", str(job_id)])
        # A requeued job may start again only cred_expire + 1 s later (AuthInfo=cred_expire; Slurm's default: 120).
        lines = wait_for_file_lines(starts, 2, timeout=cluster.cred_expire + 20)
        assert time.monotonic() - requeued > cluster.cred_expire
        assert lines == [f"{job_id} 0", f"{job_id} 1"]
        assert cluster.job(job_id)["Restarts"] == "1"
    finally:
        cluster.run(["scancel", str(job_id)])
    cluster.wait_idle(timeout=KILL_WAIT + 20)


def test_wait_idle_raises_on_a_held_job_instead_of_hanging(cluster, tmp_path):
    job_id = cluster.sbatch("--hold", "--wrap", "true", "--output", str(tmp_path / "held.out"))
    try:
        with pytest.raises(ClusterError, match="held"):
            cluster.wait_idle(timeout=20)
    finally:
        cluster.run(["scancel", str(job_id)])
    cluster.wait_idle(timeout=20)
