"""An adaptive study through the real workflow: round one runs every cell's first two seeds, the look after it (a
checkpoint) settles the comparisons it can, only the cells of the open ones run the third seed, and the report's
table counts the runs. The looks are steered by what is certain whatever the tiny models learn: the share of
trainable parameters does not vary between seeds (LoRA against full fine-tuning: different at the first look), and
perplexity, which always varies a little, decided at alpha 1e-6 is still open after two seeds."""

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from support.micro import MICRO
from support.workflow_runner import REPOSITORY, parse_job_stats, run_snakemake

STUDY = {
    **{key: MICRO[key] for key in ("corpora", "training", "generation", "resources")},
    "study": "adapt",
    "title": "adaptive seeds",
    "seeds": {"values": [1, 2, 3],
              "adaptive": {"min": 2, "max": 3, "alpha": 0.05, "practical": {"trainable_percent": 1.0}}},
    "datasets": {"micro-data": {**MICRO["datasets"]["micro-data"], "max_examples": 200},
                 "micro-sections": MICRO["datasets"]["micro-sections"]},
    "models": {"gpt2-micro": MICRO["models"]["gpt2-micro"]},
    "methods": {"full": {"kind": "full"}, "lora": {**MICRO["methods"]["lora"], "ranks": [2]}},
    "matrix": [{"datasets": ["micro-data", "micro-sections"], "models": ["gpt2-micro"], "methods": ["full", "lora"]}],
    "statistics": {"compare_metrics": ["rouge_l", "accuracy", "trainable_percent", "perplexity"]},
}


def snakemake(workdir, *args):
    (Path(workdir) / "tmp").mkdir(exist_ok=True)
    return run_snakemake(["--snakefile", REPOSITORY / "Snakefile", "--directory", workdir, "--configfile",
                          Path(workdir) / "config" / "adapt.yaml", "--cores", "2", *args],
                         env={"TMPDIR": str(Path(workdir) / "tmp")})


def planned(workdir, *targets):
    result = snakemake(workdir, "-n", *targets)
    return parse_job_stats(result.stdout + result.stderr), result.stdout + result.stderr


def write_study(workdir, study):
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "adapt.yaml").write_text(yaml.safe_dump(study, sort_keys=False))


def read_json(path):
    return json.loads(Path(path).read_text())


def run_dirs(workdir):
    runs = workdir / "results/adapt/runs"
    return sorted(str(p.relative_to(runs)) for p in runs.glob("*/*/*/seed*"))


def runs(datasets_seeds):
    return sorted(f"{dataset}/gpt2-micro/{variant}/seed{seed}" for dataset, seeds in datasets_seeds.items()
                  for variant in ("full", "lora-r2") for seed in seeds)


@pytest.mark.slow
def test_an_adaptive_study_runs_round_one_then_only_what_its_looks_leave_open(tmp_path):
    workdir = tmp_path
    (workdir / "data/snapshots").mkdir(parents=True)
    shutil.copy(REPOSITORY / "data/snapshots/debian_descriptions.jsonl.gz", workdir / "data/snapshots")
    write_study(workdir, STUDY)

    # The dry run: round one (2 datasets x (full, LoRA r2) x seeds 1-2) and the look that plans the rest.
    counts, output = planned(workdir, "adapt")
    assert counts["train"] == counts["score"] == 8 and counts["adaptive_look"] == 1
    assert "look after 2 seeds of study adapt, on 8 runs" in output
    assert "DAG of jobs will be updated after completion." in output

    # Every comparison settles at the first look (trainable share: different): the third seed never runs.
    snakemake(workdir, "adapt")
    first = read_json(workdir / "results/adapt/adaptive/look2.json")
    assert {(d["dataset"], d["metric"], d["decision"]) for d in first["decisions"]} == {
        ("micro-data", "trainable_percent", "different"), ("micro-sections", "trainable_percent", "different")}
    assert first["finished"] and first["next"] == []
    assert run_dirs(workdir) == runs({"micro-data": (1, 2), "micro-sections": (1, 2)})
    table = (workdir / "reports/adapt/tables/adaptive_seeds.tex").read_text()
    assert "as this study ran them (1 look(s))" in table and "runs 8 of the fixed design's 12" in table
    assert "(estimated from the seeds run)" in table and "agreement with it is not measured" in table
    assert (workdir / "reports/adapt/paper.pdf").read_bytes()[:5] == b"%PDF-"
    assert planned(workdir, "adapt")[0] == {}  # finished: nothing to do
    trained = {path: path.stat().st_mtime_ns for path in (workdir / "results/adapt/runs").glob("*/*/*/seed*/train.json")}

    # A stricter design (perplexity too, at alpha 1e-6): the first look decides again on the runs there are, and
    # perplexity stays open in both datasets, so every cell runs seed 3 and a second look ends the design.
    stricter = copy.deepcopy(STUDY)
    stricter["seeds"]["adaptive"].update(alpha=1.0e-6, practical={"trainable_percent": 1.0, "perplexity": 0.001})
    write_study(workdir, stricter)
    table_path = "reports/adapt/tables/adaptive_seeds.tex"  # from here on the table alone: no figures or paper
    counts = planned(workdir, table_path)[0]
    assert counts["adaptive_look"] == 1 and "train" not in counts  # round one's runs are reused as they are
    snakemake(workdir, table_path)
    first = read_json(workdir / "results/adapt/adaptive/look2.json")
    assert {(d["dataset"], d["metric"], d["decision"]) for d in first["decisions"]} == {
        ("micro-data", "trainable_percent", "different"), ("micro-sections", "trainable_percent", "different"),
        ("micro-data", "perplexity", "open"), ("micro-sections", "perplexity", "open")}
    assert len(first["next"]) == 4 and {run[4] for run in first["next"]} == {3}
    last = read_json(workdir / "results/adapt/adaptive/look3.json")
    assert last["finished"] and len(last["runs"]) == 12
    # The last look decides every comparison: none is open any more (perplexity different or undecided).
    assert {d["decision"] for d in last["decisions"] if d["metric"] == "perplexity"} <= {"undecided", "different"}
    assert run_dirs(workdir) == runs({"micro-data": (1, 2, 3), "micro-sections": (1, 2, 3)})
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in trained.items())  # seeds 1-2 trained once
    assert "runs 12 of the fixed design's 12" in (workdir / "reports/adapt/tables/adaptive_seeds.tex").read_text()

    # Stopped after its first look (the second look's record and what follows it gone): it resumes there, training
    # nothing again.
    for path in ("results/adapt/adaptive/look3.json", "results/adapt/metrics.csv", table_path):
        (workdir / path).unlink()
    counts = planned(workdir, table_path)[0]
    assert counts["adaptive_look"] == 1 and "train" not in counts and "score" not in counts
    snakemake(workdir, table_path)
    resumed = read_json(workdir / "results/adapt/adaptive/look3.json")
    assert {key: resumed[key] for key in ("runs", "next", "finished", "decisions", "metrics_sha256")} == {
        key: last[key] for key in ("runs", "next", "finished", "decisions", "metrics_sha256")}

    # `peftstudy verify` takes both looks again from the runs' metrics: nothing drifted.
    from peftstudy.verify import verify

    report = verify(workdir / "results/adapt", REPOSITORY / "workflow" / "scripts")
    assert report.clean, [drift.line() for drift in report.drifts]
    assert {str(workdir / f"results/adapt/adaptive/look{n}.json") for n in (2, 3)} <= set(report.checked)
