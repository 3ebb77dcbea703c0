"""How much the project's Snakefile adds to Snakemake's own cost of a dry run.

Runs, side by side in one invocation, `snakemake -n all` on the paper study (config.yaml) and on a
trivial Snakefile with the same number of jobs (one rule, no input functions, no params), and prints
both wall times and their ratio. Each is run `--repeats` times; the median is reported.

    .venv/bin/python benchmarks/dry_run_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def timed_dry_run(directory: Path, args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(SNAKEMAKE + ["-n", *args], cwd=directory, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dry run failed in {directory}:\n{result.stderr[-2000:]}")
    return elapsed, result.stdout + result.stderr


def job_total(output: str) -> int:
    match = re.search(r"^total\s+(\d+)\s*$", output, re.MULTILINE)
    if not match:
        raise SystemExit("no job stats in the dry run's output")
    return int(match.group(1))


def trivial_snakefile(jobs: int) -> str:
    return (f"rule all:\n    input: expand('out/{{i}}.txt', i=range({jobs - 1}))\n"
            "rule a:\n    output: 'out/{i}.txt'\n    shell: 'touch {output}'\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats

    project, output = [], ""
    trivial = []
    with tempfile.TemporaryDirectory(prefix="peftstudy-dry-run-") as scratch:
        for _ in range(repeats):  # interleaved, so that machine load affects both alike
            elapsed, output = timed_dry_run(REPOSITORY, ["all"])
            project.append(elapsed)
            jobs = job_total(output)
            (Path(scratch) / "Snakefile").write_text(trivial_snakefile(jobs))
            trivial.append(timed_dry_run(Path(scratch), ["--cores", "1"])[0])
    ours, theirs = statistics.median(project), statistics.median(trivial)
    print(f"jobs in the paper study's DAG:         {jobs}")
    print(f"snakemake -n all (this project):       {ours:.2f} s  (median of {repeats})")
    print(f"snakemake -n, trivial Snakefile:       {theirs:.2f} s  (same job count)")
    print(f"ratio project / trivial:               {ours / theirs:.2f}")
    print(f"per job: project {1000 * ours / jobs:.2f} ms, trivial {1000 * theirs / jobs:.2f} ms")


if __name__ == "__main__":
    main()
