"""What SLURM adds per job: the same micro study with the local executor and through `--profile slurm`.

Starts the tests' single-node SLURM cluster (tests/support/slurm_cluster.py; root, Debian's slurm-wlm), runs the
micro study of tests/integration/test_slurm.py (no interruptions) once locally (`--cores 2`, zygote off, so
every job starts its own Python process as it does in a SLURM job) and once through SLURM in fresh work
directories, side by side in one invocation, and prints both wall times, the difference per SLURM job and
each job's submit-to-finish time as SLURM recorded it.

    .venv/bin/python benchmarks/slurm_overhead.py [--status-interval 3]
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))
sys.path.insert(0, str(REPOSITORY / "tests" / "integration"))

from support.slurm_cluster import single_node_cluster  # noqa: E402
from test_slurm import environment, snakemake_command, workdir_with_study  # noqa: E402


def timed(command: list[str], workdir: Path, env: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {workdir}:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def seconds_between(start: str, end: str) -> float:
    return (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status-interval", type=int, default=3,
                        help="the plugin's seconds before (and between) status checks (the profile says 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="peftstudy-slurm-bench-") as tmp:
        tmp = Path(tmp)
        local_dir = workdir_with_study(tmp / "local")
        local_s = timed(snakemake_command("--cores", "2"), local_dir, environment(PEFTSTUDY_ZYGOTE="0"))
        with single_node_cluster(tmp / "cluster") as cluster:
            slurm_dir = workdir_with_study(tmp / "slurm")
            command = snakemake_command("--profile", "slurm", "--slurm-init-seconds-before-status-checks",
                                        str(args.status_interval))
            slurm_s = timed(command, slurm_dir, environment(**cluster.env, PEFTSTUDY_SLURM_STATUS_COMMAND="squeue"))
            records = cluster.job_records()
    jobs = len(records)
    print(f"micro study, {jobs} SLURM jobs ({cluster.cpus} CPUs, status checks every {args.status_interval} s+)")
    print(f"  local executor, --cores 2: {local_s:7.1f} s")
    print(f"  --profile slurm:           {slurm_s:7.1f} s   ratio {slurm_s / local_s:.2f}")
    print(f"  difference per SLURM job:  {(slurm_s - local_s) / jobs:7.1f} s")
    for record in sorted(records, key=lambda r: int(r["JobId"])):
        queued = seconds_between(record["SubmitTime"], record["StartTime"])
        ran = seconds_between(record["StartTime"], record["EndTime"])
        print(f"  job {record['JobId']:>3} {record['Comment'][:60]:60s} queued {queued:5.0f} s, ran {ran:5.0f} s")


if __name__ == "__main__":
    main()
