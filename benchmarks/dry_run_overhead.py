"""How much the project's Snakefile adds to Snakemake's own cost of planning a run.

Two comparisons, each side by side in one invocation against a trivial Snakefile with the same number of jobs (one
rule, no input functions, no params, no resources), each side run `--repeats` times, interleaved, the median
reported:

- dry run: `snakemake -n all` on the paper study (config.yaml), against `snakemake -n` on the trivial Snakefile;
- no-op rerun: `snakemake --cores 2 demo` on the finished demo, against `snakemake --cores 2` on the trivial
  Snakefile with all its jobs done (built once, untimed, before the repeats). Both must find nothing to do.

    .venv/bin/snakemake --cores 2 demo          # once, for the no-op rerun
    .venv/bin/python benchmarks/dry_run_overhead.py [--repeats 3] [--dry-run-only]
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
NOTHING_TO_DO = "Nothing to be done"


def timed_snakemake(directory: Path, args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(SNAKEMAKE + args, cwd=directory, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {directory}:\n{result.stderr[-2000:]}")
    return elapsed, result.stdout + result.stderr


def timed_no_op(directory: Path, args: list[str]) -> float:
    """A rerun that must run nothing: anything else would time a different thing."""
    elapsed, output = timed_snakemake(directory, args)
    if NOTHING_TO_DO not in output:
        raise SystemExit(f"snakemake {' '.join(args)} in {directory} is not a no-op:\n{output[-2000:]}")
    return elapsed


def job_total(output: str) -> int:
    match = re.search(r"^total\s+(\d+)\s*$", output, re.MULTILINE)
    if not match:
        raise SystemExit("no job stats in the dry run's output")
    return int(match.group(1))


def trivial_snakefile(jobs: int) -> str:
    return (f"rule all:\n    input: expand('out/{{i}}.txt', i=range({jobs - 1}))\n"
            "rule a:\n    output: 'out/{i}.txt'\n    shell: 'touch {output}'\n")


def report(title: str, ours: list[float], theirs: list[float], jobs: int) -> None:
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"{title} ({jobs} jobs, median of {len(ours)}):")
    print(f"  this project:       {ours_median:.2f} s  (all: {', '.join(f'{t:.2f}' for t in ours)})")
    print(f"  trivial Snakefile:  {theirs_median:.2f} s  (all: {', '.join(f'{t:.2f}' for t in theirs)})")
    print(f"  ratio project / trivial: {ours_median / theirs_median:.2f}")
    print(f"  per job: project {1000 * ours_median / jobs:.2f} ms, trivial {1000 * theirs_median / jobs:.2f} ms")


def dry_run_comparison(repeats: int, scratch: Path) -> None:
    project, trivial, jobs = [], [], 0
    for _ in range(repeats):  # interleaved, so that machine load affects both alike
        elapsed, output = timed_snakemake(REPOSITORY, ["-n", "all"])
        project.append(elapsed)
        jobs = job_total(output)
        (scratch / "Snakefile").write_text(trivial_snakefile(jobs))
        trivial.append(timed_snakemake(scratch, ["-n", "--cores", "1"])[0])
    report("snakemake -n all, the paper study", project, trivial, jobs)


def no_op_comparison(repeats: int, scratch: Path) -> None:
    rerun = ["--cores", "2", "demo"]
    _, output = timed_snakemake(REPOSITORY, ["-n", *rerun])
    if NOTHING_TO_DO not in output:
        raise SystemExit("the demo is not finished (or its code or config changed since): run "
                         "`snakemake --cores 2 demo` first, or pass --dry-run-only")
    jobs = job_total(timed_snakemake(REPOSITORY, ["-n", "--forceall", *rerun])[1])
    (scratch / "Snakefile").write_text(trivial_snakefile(jobs))
    timed_snakemake(scratch, ["--cores", "2"])  # build the trivial workflow once: its reruns then run nothing
    project, trivial = [], []
    for _ in range(repeats):
        project.append(timed_no_op(REPOSITORY, rerun))
        trivial.append(timed_no_op(scratch, ["--cores", "2"]))
    report("snakemake --cores 2 demo, a no-op rerun of the finished demo", project, trivial, jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-run-only", action="store_true", help="skip the no-op rerun of the demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="peftstudy-dry-run-") as dry, \
            tempfile.TemporaryDirectory(prefix="peftstudy-no-op-") as done:
        dry_run_comparison(args.repeats, Path(dry))
        if not args.dry_run_only:
            no_op_comparison(args.repeats, Path(done))


if __name__ == "__main__":
    main()
