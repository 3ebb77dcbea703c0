"""Scoring's share of a study's job-seconds, and scoring itself timed and compared before/after a change.

1. The share (default): from a finished build of a study's target (default `demo`), the seconds each job of its
   DAG took, summed per rule, and the scoring rules' share of the total, against the 15 % target (issue 18).
   The jobs are the target's DAG (`snakemake <target> --summary`, which lists every output file and its rule);
   each job's start and end come from Snakemake's metadata (.snakemake/metadata/: one JSON record per output
   file, named by its path in URL-safe base64; `starttime` is when the job marked the output incomplete, i.e.
   started, `endtime` the output's modification time). A job with several outputs has several records: they
   are counted once, by (rule, job hash, log files), from the earliest start to the latest end. This is
   measured from one build, not a median: its figure is as noisy as that build was (say so when quoting it).

2. `--time-scoring N`: `score_run_files` on one run's real files, timed in fresh processes (one job is one
   process; the third-party stack and the WordNet database are loaded before the clock starts, as the zygote
   has them), the code at `--baseline-ref` (default HEAD, i.e. before uncommitted changes) against the working
   tree, interleaved, N times each; medians printed.

3. `--compare`: every scored metric of every run of the study whose files exist, computed by both codes; prints
   the largest absolute difference per metric that differs at all (identical metrics are counted, not listed).

4. `--rescore N`: the score jobs themselves, baseline vs working tree, N times each, interleaved: in a copy of the
   checkout (results, data and Snakemake's metadata included; the main checkout is not touched), the baseline's
   src/peftstudy/metrics/ or the working tree's is put in place and every finished run's metrics.json is rebuilt
   (`snakemake --forcerun score --rerun-triggers mtime <the metrics.json files>`: nothing upstream reruns), through
   the zygote as in a real build. Prints the median score job-seconds of each and their ratio (not a share: the
   passes run under the machine's load at the time, not the build's in 1).

5. `--rebuild N`: the whole target built from scratch (`--forceall`) in such a copy, baseline vs working tree,
   interleaved, N times each; each build's table as in 1, and the median share of each (minutes per build).

6. `--batch-sizes 1,8,16,64`: BERTScore's embedding batch size swept on one run's sentences, in one warm process
   (median of 3 each): the basis of the default batch size.

    .venv/bin/python benchmarks/scoring_share.py [--study demo] [--time-scoring 3] [--compare] [--rescore 3]
        [--rebuild 1] [--batch-sizes 1,8,16,64] [--json out.json]

Run timings under the machine's benchmark lock: `flock /tmp/peftstudy-bench.lock .venv/bin/python ...`.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
TARGET_SHARE = 0.15
SCORING_RULES = ("score",)


# ---------------------------------------------------------------------------------------------- 1. the share

def dag_outputs(target: str, checkout: Path = REPOSITORY) -> dict[str, str]:
    """Output file -> rule, for every job in the DAG of `target` (Snakemake's --summary)."""
    command = [sys.executable, "-m", "snakemake", target, "--summary", "--nolock", "--quiet"]
    result = subprocess.run(command, cwd=checkout, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    outputs, header = {}, None
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if fields[0] == "output_file":
            header = fields
            continue
        if header and len(fields) == len(header):
            row = dict(zip(header, fields))
            outputs[row["output_file"]] = row["rule"]
    if not outputs:
        raise SystemExit(f"no output files in the summary of {target!r}:\n{result.stdout[-2000:]}")
    return outputs


def metadata_records(root: Path) -> dict[str, dict]:
    """Output path -> its metadata record. A long path's base64 name is split into directories, each but the
    last prefixed with '@' (snakemake.persistence.file._record_path)."""
    records = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            parts = [part.removeprefix("@") for part in path.relative_to(root).parts]
            try:
                output = base64.urlsafe_b64decode("".join(parts)).decode()
                records[output] = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):  # not a record (or one being written)
                continue
    return records


def job_seconds(outputs: dict[str, str], records: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """One entry per job: rule, seconds, start, end, outputs. Also the outputs without a usable record."""
    jobs, missing = {}, []
    for output, rule in outputs.items():
        record = records.get(output)
        if not record or record.get("starttime") is None or record.get("endtime") is None or record.get("incomplete"):
            missing.append(output)
            continue
        key = (record["rule"], record.get("job_hash"), tuple(record.get("log") or ()))
        job = jobs.setdefault(key, {"rule": record["rule"], "start": record["starttime"], "end": record["endtime"],
                                    "outputs": []})
        job["start"] = min(job["start"], record["starttime"])
        job["end"] = max(job["end"], record["endtime"])
        job["outputs"].append(output)
    for job in jobs.values():
        job["seconds"] = job["end"] - job["start"]
    return sorted(jobs.values(), key=lambda job: job["start"]), missing


def share_report(jobs: list[dict], scoring_rules: tuple[str, ...]) -> dict:
    per_rule = collections.defaultdict(lambda: {"jobs": 0, "seconds": 0.0})
    for job in jobs:
        per_rule[job["rule"]]["jobs"] += 1
        per_rule[job["rule"]]["seconds"] += job["seconds"]
    total = sum(entry["seconds"] for entry in per_rule.values())
    scoring = sum(per_rule[rule]["seconds"] for rule in scoring_rules if rule in per_rule)
    return {"per_rule": dict(per_rule), "total_s": total, "scoring_s": scoring,
            "scoring_share": scoring / total if total else float("nan"),
            "wall_s": max(job["end"] for job in jobs) - min(job["start"] for job in jobs) if jobs else 0.0,
            "first_start": min((job["start"] for job in jobs), default=None),
            "last_end": max((job["end"] for job in jobs), default=None)}


def print_share(report: dict, target: str, scoring_rules: tuple[str, ...], jobs: int, missing: list[str]) -> None:
    print(f"job-seconds of {target!r}: {jobs} jobs, built {time.ctime(report['first_start'])} .. "
          f"{time.ctime(report['last_end'])} (wall {report['wall_s']:.0f} s); one build, not a median")
    print(f"{'rule':<28}{'jobs':>6}{'seconds':>11}{'share':>9}")
    for rule, entry in sorted(report["per_rule"].items(), key=lambda item: -item[1]["seconds"]):
        share = entry["seconds"] / report["total_s"] if report["total_s"] else float("nan")
        print(f"{rule:<28}{entry['jobs']:>6}{entry['seconds']:>11.1f}{share:>9.1%}")
    print(f"{'total':<28}{jobs:>6}{report['total_s']:>11.1f}")
    verdict = "meets" if report["scoring_share"] <= TARGET_SHARE else "MISSES"
    print(f"scoring ({', '.join(scoring_rules)}): {report['scoring_s']:.1f} s = {report['scoring_share']:.1%} of the "
          f"job-seconds; {verdict} the target of <= {TARGET_SHARE:.0%}")
    if missing:
        print(f"not counted, no finished record ({len(missing)}): " + ", ".join(missing[:5])
              + (" ..." if len(missing) > 5 else ""))


# ------------------------------------------------------------------------ 2. and 3. scoring, before and after

# Runs in a fresh process with PYTHONPATH at one version of the package: loads what the zygote has loaded before a
# job starts, then scores each requested run and prints one JSON line per run (seconds and metrics).
SCORE_IN_A_PROCESS = r"""
import json, sys, tempfile, time
from pathlib import Path
for module in ("torch", "transformers", "peft", "tokenizers", "safetensors", "numpy", "pandas", "sacrebleu",
               "rouge_score.rouge_scorer", "sentence_transformers", "bert_score", "sklearn.metrics"):
    __import__(module)
from peftstudy.execution import zygote
from peftstudy.metrics import scoring
zygote.english_wordnet(sys.argv[2] + "/data/nltk")
for job in json.loads(sys.argv[1]):
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "metrics.json"
        started = time.perf_counter()
        scoring.score_run_files(job["run"], *job["files"], out, settings=job["settings"], costs=job["costs"],
                                wordnet_dir=sys.argv[2] + "/data/nltk", train_path=job["train"], task=job["task"])
        seconds = time.perf_counter() - started
        print(json.dumps({"run": job["run"], "seconds": seconds, "metrics": json.loads(out.read_text())["metrics"]}))
"""


def study_runs(study_name: str, config: Path) -> list[dict]:
    """Every run of the study whose generation files exist, with the arguments its score job passes."""
    sys.path.insert(0, str(REPOSITORY / "src"))
    from peftstudy.data.prepare import dataset_task
    from peftstudy.study.config import load_study

    study = load_study(config)
    jobs = []
    for generations in sorted((REPOSITORY / "results" / study_name / "runs").glob("*/*/*/seed*/generations.jsonl")):
        directory = generations.parent
        if not all((directory / name).exists() for name in ("train.json", "generation.json")):
            continue
        dataset, model, variant, seed = directory.relative_to(REPOSITORY / "results" / study_name / "runs").parts
        jobs.append({
            "run": {"study": study_name, "dataset": dataset, "model": model, "variant": variant,
                    "seed": seed.removeprefix("seed")},
            "files": [str(generations), str(directory / "train.json"), str(directory / "generation.json")],
            "settings": study.get("metrics", {}), "costs": study.get("costs"),
            "train": str(REPOSITORY / "data" / "prepared" / dataset / "train.jsonl"),
            "task": dataset_task(study["datasets"][dataset]),
        })
    return jobs


def package_at(ref: str, scratch: Path) -> Path:
    """src/ of the package as committed at `ref`, extracted under scratch."""
    archive = scratch / "src.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "archive", "--format=tar", ref, "src"], cwd=REPOSITORY, stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(scratch / "baseline", filter="data")
    return scratch / "baseline" / "src"


def score_in_a_process(source: Path, jobs: list[dict]) -> list[dict]:
    env = {**os.environ, "PEFTSTUDY_ZYGOTE": "0", "PYTHONPATH": str(source)}
    result = subprocess.run([sys.executable, "-c", SCORE_IN_A_PROCESS, json.dumps(jobs), str(REPOSITORY)],
                            cwd=REPOSITORY, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"scoring with {source} failed:\n{result.stderr[-3000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def time_scoring(baseline: Path, jobs: list[dict], repeats: int) -> dict:
    """Median seconds of score_run_files on the first job's files, baseline vs working tree, interleaved."""
    times = {"baseline": [], "working tree": []}
    for _ in range(repeats):
        for label, source in (("baseline", baseline), ("working tree", REPOSITORY / "src")):
            times[label].append(score_in_a_process(source, jobs[:1])[0]["seconds"])
    return {label: {"median_s": statistics.median(values), "runs_s": values} for label, values in times.items()}


def compare_metrics(baseline: Path, jobs: list[dict]) -> dict:
    """Per metric: how many runs differ and the largest absolute difference, baseline vs working tree."""
    before = score_in_a_process(baseline, jobs)
    after = score_in_a_process(REPOSITORY / "src", jobs)
    differences, identical = collections.defaultdict(list), collections.Counter()
    for old, new in zip(before, after):
        for name in sorted(set(old["metrics"]) | set(new["metrics"])):
            a, b = old["metrics"].get(name), new["metrics"].get(name)
            if name in ("scoring_time_s",):
                continue
            if a == b:
                identical[name] += 1
            elif a is None or b is None:
                differences[name].append(float("inf"))
            else:
                differences[name].append(abs(a - b))
    return {"runs": len(jobs), "identical_metrics": len(set(identical) - set(differences)),
            "differing": {name: {"runs": len(values), "max_abs": max(values)} for name, values in differences.items()}}


def copy_of_the_checkout(scratch: Path) -> Path:
    """The checkout with its results, data and Snakemake metadata (not its venv, git directory, logs or caches)."""
    workspace = scratch / "checkout"
    skip = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "locks", "incomplete",
                                  "shadow", "logs")
    shutil.copytree(REPOSITORY, workspace, ignore=skip, symlinks=True)
    return workspace


def use_metrics_code(workspace: Path, source: Path) -> None:
    """Put src/peftstudy/metrics/ of `source` (a src/ directory) in the workspace; the rest of the package stays."""
    metrics_package = workspace / "src" / "peftstudy" / "metrics"
    shutil.rmtree(metrics_package)
    shutil.copytree(source / "peftstudy" / "metrics", metrics_package, ignore=shutil.ignore_patterns("__pycache__"))


def snakemake_in(workspace: Path, arguments: list[str], label: str) -> float:
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "snakemake", *arguments, "--quiet", "all"], cwd=workspace,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(arguments[:3])} ... with the {label} code failed:\n"
                         f"{done.stderr[-3000:]}")
    return started


def variants(baseline: Path, repeats: int):
    for _ in range(repeats):
        yield from (("baseline", baseline), ("working tree", REPOSITORY / "src"))


def rescore(baseline: Path, runs: list[dict], repeats: int, cores: int) -> dict:
    """Score job-seconds (and the scoring time the jobs record) of every run's score job, baseline vs working tree."""
    results = {"baseline": [], "working tree": []}
    with tempfile.TemporaryDirectory(prefix="peftstudy-rescore-") as scratch:
        workspace = copy_of_the_checkout(Path(scratch))
        targets = [str(Path(job["files"][0]).parent.relative_to(REPOSITORY) / "metrics.json") for job in runs]
        for label, source in variants(baseline, repeats):
            use_metrics_code(workspace, source)
            started = snakemake_in(workspace, [*targets, "--cores", str(cores), "--forcerun", "score",
                                               "--rerun-triggers", "mtime"], label)
            jobs, missing = job_seconds(dict.fromkeys(targets, "score"),
                                        metadata_records(workspace / ".snakemake" / "metadata"))
            rebuilt = [job for job in jobs if job["start"] >= started]
            if missing or len(rebuilt) != len(targets):
                raise SystemExit(f"rescoring with the {label} code rebuilt {len(rebuilt)} of {len(targets)} runs")
            recorded = [json.loads((workspace / target).read_text()).get("scoring_time_s", 0.0) for target in targets]
            results[label].append({"job_seconds": sum(job["seconds"] for job in jobs),
                                   "scoring_time_s": sum(recorded)})
    return {label: {"median_job_seconds": statistics.median(r["job_seconds"] for r in values),
                    "median_scoring_time_s": statistics.median(r["scoring_time_s"] for r in values),
                    "passes": values, "jobs": len(runs)} for label, values in results.items()}


def rebuild(baseline: Path, target: str, repeats: int, cores: int, scoring_rules: tuple[str, ...]) -> dict:
    """The whole target built from scratch (--forceall) in a copy of the checkout, baseline vs working tree
    interleaved, and each build's job-seconds per rule and scoring share."""
    results = {"baseline": [], "working tree": []}
    with tempfile.TemporaryDirectory(prefix="peftstudy-rebuild-") as scratch:
        workspace = copy_of_the_checkout(Path(scratch))
        for label, source in variants(baseline, repeats):
            use_metrics_code(workspace, source)
            started = snakemake_in(workspace, [target, "--cores", str(cores), "--forceall"], label)
            jobs, missing = job_seconds(dag_outputs(target, workspace),
                                        metadata_records(workspace / ".snakemake" / "metadata"))
            if missing or any(job["start"] < started for job in jobs):
                raise SystemExit(f"the {label} build of {target!r} left jobs unbuilt: {missing[:5]}")
            report = share_report(jobs, scoring_rules)
            print(f"{label} build:")
            print_share(report, target, scoring_rules, len(jobs), missing)
            results[label].append({**report, "jobs": len(jobs)})
    return {label: {"median_share": statistics.median(r["scoring_share"] for r in values), "builds": values}
            for label, values in results.items()}


SWEEP_IN_A_PROCESS = r"""
import json, statistics, sys, time
from peftstudy import io
from peftstudy.metrics import quality, scoring
scoring.pin_scoring_threads()
rows = io.read_jsonl(sys.argv[1])
predictions, references = [r["prediction"] for r in rows], [r["reference"] for r in rows]
settings = scoring.metric_settings(json.loads(sys.argv[2]))["bertscore"]
tokenizer, model = quality.loaded_model("bertscore", quality.resolve_model(settings["model"], settings.get("revision")),
                                        "cpu", num_layers=settings["num_layers"])
quality.bertscore_pairs(model, tokenizer, predictions, references, 16, "cpu")  # warm-up
for batch_size in json.loads(sys.argv[3]):
    times = []
    for _ in range(3):
        started = time.perf_counter()
        quality.bertscore_pairs(model, tokenizer, predictions, references, batch_size, "cpu")
        times.append(time.perf_counter() - started)
    print(json.dumps({"batch_size": batch_size, "median_s": statistics.median(times), "runs_s": times}))
"""


def batch_size_sweep(job: dict, batch_sizes: list[int]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src")}
    done = subprocess.run([sys.executable, "-c", SWEEP_IN_A_PROCESS, job["files"][0], json.dumps(job["settings"]),
                           json.dumps(batch_sizes)], cwd=REPOSITORY, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the batch-size sweep failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="demo")
    parser.add_argument("--target", help="the Snakemake target whose DAG is counted (default: the study's name)")
    parser.add_argument("--config", type=Path, help="the study's file (default: config/<study>.yaml)")
    parser.add_argument("--scoring-rules", default=",".join(SCORING_RULES), help="comma-separated (default: score)")
    parser.add_argument("--time-scoring", type=int, default=0, metavar="N",
                        help="also time score_run_files, baseline vs working tree, N times each")
    parser.add_argument("--compare", action="store_true", help="also compare every metric, baseline vs working tree")
    parser.add_argument("--rescore", type=int, default=0, metavar="N",
                        help="also rerun every score job in a copy of the checkout, baseline vs working tree, "
                             "N times each")
    parser.add_argument("--rebuild", type=int, default=0, metavar="N",
                        help="also build the whole target from scratch in a copy of the checkout, baseline vs working "
                             "tree, N times each (minutes per build)")
    parser.add_argument("--cores", type=int, default=2, help="--cores of those builds (default 2, the demo's)")
    parser.add_argument("--batch-sizes", help="also sweep BERTScore's batch size, e.g. 1,8,16,64")
    parser.add_argument("--baseline-ref", default="HEAD", help="git ref of the baseline code (default: HEAD)")
    parser.add_argument("--no-share", action="store_true", help="skip the job-seconds share")
    parser.add_argument("--json", type=Path, help="write everything measured here too")
    args = parser.parse_args()
    # Terminated: still remove the copies of the checkout (TemporaryDirectory cleans up on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scoring_rules = tuple(rule for rule in args.scoring_rules.split(",") if rule)
    result = {"study": args.study}

    if not args.no_share:
        target = args.target or args.study
        jobs, missing = job_seconds(dag_outputs(target), metadata_records(REPOSITORY / ".snakemake" / "metadata"))
        if not jobs:
            raise SystemExit(f"no finished job of {target!r} has a metadata record: build it first")
        report = share_report(jobs, scoring_rules)
        print_share(report, target, scoring_rules, len(jobs), missing)
        result["share"] = {**{k: v for k, v in report.items()}, "jobs": len(jobs), "missing": missing}

    if args.time_scoring or args.compare or args.rescore or args.batch_sizes or args.rebuild:
        runs = study_runs(args.study, args.config or REPOSITORY / "config" / f"{args.study}.yaml")
        generation_runs = [job for job in runs if job["task"] == "generation"] or runs
        if not runs:
            raise SystemExit(f"no run of {args.study!r} has its generations yet")
        with tempfile.TemporaryDirectory(prefix="peftstudy-scoring-") as scratch:
            baseline = package_at(args.baseline_ref, Path(scratch))
            if args.time_scoring:
                first = generation_runs[0]["run"]
                timing = time_scoring(baseline, generation_runs, args.time_scoring)
                print(f"score_run_files on {'/'.join(str(v) for v in first.values())} "
                      f"(one process per call, stack preloaded; median of {args.time_scoring}):")
                for label, entry in timing.items():
                    print(f"  {label:<14}{entry['median_s']:>8.2f} s   "
                          + " ".join(f"{value:.2f}" for value in entry["runs_s"]))
                result["timing"] = {"run": first, **timing}
            if args.compare:
                comparison = compare_metrics(baseline, runs)
                print(f"metrics, baseline ({args.baseline_ref}) vs working tree, on {comparison['runs']} runs: "
                      f"{comparison['identical_metrics']} metrics identical in every run")
                for name, entry in sorted(comparison["differing"].items()):
                    print(f"  {name:<28} differs in {entry['runs']} runs, max |difference| {entry['max_abs']:.3g}")
                result["comparison"] = comparison
            if args.rescore:
                rescored = rescore(baseline, runs, args.rescore, args.cores)
                print(f"score jobs rebuilt ({len(runs)} runs, --cores {args.cores}; median of {args.rescore}):")
                for label, entry in rescored.items():
                    print(f"  {label:<14}{entry['median_job_seconds']:>8.1f} job-seconds "
                          f"({entry['median_scoring_time_s']:.1f} s inside score_run_files)   passes: "
                          + " ".join(f"{p['job_seconds']:.1f}" for p in entry["passes"]))
                ratio = rescored["working tree"]["median_job_seconds"] / rescored["baseline"]["median_job_seconds"]
                # Not a share: these passes ran under whatever load the machine had then, not the build's in 1.
                print(f"  working tree / baseline: {ratio:.2f}")
                result["rescore"] = {**rescored, "ratio": ratio}
            if args.rebuild:
                rebuilt = rebuild(baseline, args.target or args.study, args.rebuild, args.cores, scoring_rules)
                print(f"scoring's share of a build from scratch (median of {args.rebuild}): baseline "
                      f"{rebuilt['baseline']['median_share']:.1%}, working tree "
                      f"{rebuilt['working tree']['median_share']:.1%}"
                      f" (target <= {TARGET_SHARE:.0%})")
                result["rebuild"] = rebuilt
            if args.batch_sizes:
                sweep = batch_size_sweep(generation_runs[0], [int(b) for b in args.batch_sizes.split(",")])
                name = "/".join(str(v) for v in generation_runs[0]["run"].values())
                print(f"BERTScore embedding batch size on {name}"
                      " (one warm process, one thread; median of 3):")
                for entry in sweep:
                    print(f"  batch {entry['batch_size']:>4}: {entry['median_s']:.3f} s")
                result["batch_sizes"] = sweep
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
