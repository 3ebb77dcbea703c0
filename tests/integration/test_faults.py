"""Faults on real processes: SIGKILL of a training job (mid-step, mid-checkpoint, mid-weights, mid-record), a loss that
diverges, two Snakemakes on one study, a read-only or full results directory, SIGKILL of the Snakemake controller.

Each ends either with the numbers of an uninterrupted run or with a clear error, and never with a file that looks
complete but is not."""

import copy
import json
import math
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

REPOSITORY = Path(__file__).resolve().parents[2]
DRIVER = REPOSITORY / "tests" / "support" / "kill_driver.py"
SEED = 20  # of the kill points
EVERY = 4  # checkpoint_every_steps
TRAINING = dict(epochs=2, batch_size=16, gradient_accumulation_steps=1, learning_rate=3e-3, weight_decay=0.01,
                warmup_ratio=0.1, lr_scheduler="cosine", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32", checkpoint_every_steps=EVERY)
STEPS = 2 * 192 // 16  # two epochs of the tiny workspace's 192 training examples


def run_settings(kind="lora", **training):
    return {"dataset": "d", "model": "gpt2", "family": "gpt2", "method": kind, "rank": 4 if kind == "lora" else None,
            "method_spec": {"kind": kind, "alpha": 8, "dropout": 0.0}, "training": {**TRAINING, **training}, "seed": 5}


class Driver:
    """tests/support/kill_driver.py: forks one training job per request; the test SIGKILLs it where it paused."""

    def __init__(self, log: Path):
        self.log = log
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY / "src"),
                                                                         os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=open(log, "w"), text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line.strip()) for line in self.process.stdout],
                         daemon=True).start()
        assert self._next() == "ready"

    def _next(self, timeout=180) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the kill driver said nothing for {timeout} s; its log:\n"
                                 f"{self.log.read_text()[-3000:]}") from None

    def train(self, out: Path, workspace: Path, settings=None, pause=None, at=None, checkpoints=True):
        """Run one training job; SIGKILL it where it pauses. Returns (exit status, pause point or None)."""
        request = {"settings": settings or run_settings(), "base": str(workspace / "base-gpt2"),
                   "data": str(workspace / "data"), "weights": str(out / "weights"), "record": str(out / "train.json"),
                   "checkpoint_dir": str(out / "checkpoint") if checkpoints else None, "pause": pause, "at": at}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        pid = int(self._next().removeprefix("started "))
        line, paused = self._next(), None
        if line.startswith("paused "):
            paused = line.split(" ", 2)[2]
            os.kill(pid, signal.SIGKILL)
            line = self._next()
        return int(line.removeprefix("exited ")), paused

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    started = Driver(tmp_path_factory.mktemp("driver") / "driver.log")
    yield started
    started.close()


def weights_of(directory: Path) -> dict:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def checkpoint_step(out: Path):
    """The loop step of the run's checkpoint, loaded whole (a torn file fails to load), or None without one."""
    path = out / "checkpoint" / "checkpoint.pt"
    if not path.exists():
        return None
    return torch.load(path, weights_only=True)["loop"]["step"]


def assert_nothing_half_written(out: Path):
    """What a killed job leaves: its final outputs absent, or whole; anything else a hidden temporary name."""
    for path in out.rglob("*"):
        relative = path.relative_to(out)
        if relative.parts[0] in ("weights", "train.json") or relative == Path("checkpoint") / "checkpoint.pt":
            continue
        if relative == Path("checkpoint"):
            continue
        temporary = [part for part in relative.parts if part.startswith(".") and part.endswith(".tmp")]
        assert temporary, f"{relative}: left by a killed job under a name that is not a hidden temporary one"
    if (out / "train.json").exists():
        json.loads((out / "train.json").read_text())


@pytest.mark.slow
def test_sigkill_at_seeded_points_then_rerun_gives_the_uninterrupted_numbers(tiny_workspace, driver, tmp_path):
    """SIGKILL at 5 steps drawn by random.Random(SEED), while a checkpoint is written, while the final weights are
    written and while train.json is written: after each kill no output looks complete but is torn, and the reruns
    end bit-identical (losses and weights) to a run that was never interrupted."""
    reference = tmp_path / "reference"
    assert driver.train(reference, tiny_workspace, checkpoints=False) == (0, None)
    expected = json.loads((reference / "train.json").read_text())
    assert expected["steps"] == STEPS

    rng = random.Random(SEED)
    kill_steps = rng.sample(range(STEPS - 1), 5)  # 0-based optimizer steps: paused after it ran, before it counts
    checkpoint_kill = rng.choice(range(EVERY, STEPS + 1, EVERY))
    # In the order the run reaches them: a step kill at k comes while step k + 1 runs, before its checkpoint.
    events = sorted([(k + 1, 0, "step", k) for k in kill_steps] + [(checkpoint_kill, 1, "checkpoint_write",
                                                                     checkpoint_kill)])
    events.append((STEPS + 1, 0, "weights_write", None))
    out = tmp_path / "killed"
    resumed_from = []
    for position, _, point, at in events:
        resumes_at = checkpoint_step(out)
        if resumes_at is not None:
            resumed_from.append(resumes_at)
        status, paused = driver.train(out, tiny_workspace, pause=point, at=at)
        assert status == -signal.SIGKILL and paused == (point if at is None else f"{point} {at}"), (status, paused)
        assert not (out / "train.json").exists() and not (out / "weights").exists(), point
        # The checkpoint left is whole: the last one before the kill (a torn write leaves the one before it).
        done = position - 1 if point == "step" else position - (point == "checkpoint_write") * EVERY
        last = (min(done, STEPS) // EVERY) * EVERY
        assert checkpoint_step(out) == (last or None), (point, at)
        assert_nothing_half_written(out)
    resumed_from.append(checkpoint_step(out))
    assert driver.train(out, tiny_workspace) == (0, None)
    record = json.loads((out / "train.json").read_text())
    # A session killed before its next checkpoint leaves no trace of its resume: the next resumes there again.
    assert record["resumed_from_step"] == list(dict.fromkeys(resumed_from)) and len(resumed_from) >= 5
    for key in ("step_losses", "validation_losses", "best_validation_loss", "steps", "tokens_seen"):
        assert record[key] == expected[key], key
    assert weights_of(out / "weights") == weights_of(reference / "weights")
    assert not (out / "checkpoint").exists()

    # Killed while writing train.json (the weights are written, the checkpoint gone): as Snakemake does, the rerun
    # starts with the job's outputs deleted; no train.json is left torn.
    shutil.rmtree(out / "weights")
    (out / "train.json").unlink()
    assert driver.train(out, tiny_workspace, pause="record_write") == (-signal.SIGKILL, "record_write")
    assert not (out / "train.json").exists()
    assert weights_of(out / "weights") == weights_of(reference / "weights")  # whole, from its atomic move
    assert_nothing_half_written(out)
    shutil.rmtree(out / "weights")
    assert driver.train(out, tiny_workspace) == (0, None)
    record = json.loads((out / "train.json").read_text())
    assert record["step_losses"] == expected["step_losses"] and record["resumed_from_step"] is None
    assert weights_of(out / "weights") == weights_of(reference / "weights")


# ------------------------------------------------------------------------------------------ divergence


def test_a_diverging_run_fails_naming_the_step_the_loss_and_the_learning_rate(tiny_workspace, tmp_path):
    from peftstudy.training.loop import TrainingDiverged, train_run

    out = tmp_path / "diverged"
    settings = run_settings("full", learning_rate=1000.0, checkpoint_every_steps=2)
    with pytest.raises(TrainingDiverged, match=r"the training loss is nan at optimizer step (\d+) .* "
                                               r"training\.learning_rate 1000\.0; lower training\.learning_rate") as error:
        train_run(settings, tiny_workspace / "base-gpt2", tiny_workspace / "data", out / "weights",
                  out / "train.json", checkpoint_dir=out / "checkpoint")
    step = int(str(error.value).split("optimizer step ")[1].split()[0])
    assert 1 <= step < STEPS
    # Nothing downstream can read it: no weights, no record; a checkpoint left is from before, with finite losses.
    assert not (out / "weights").exists() and not (out / "train.json").exists()
    saved = torch.load(out / "checkpoint" / "checkpoint.pt", weights_only=True)["loop"]
    assert saved["step"] < step and all(math.isfinite(loss) for loss in saved["step_losses"])


def test_the_first_non_finite_step_is_the_one_named(tiny_workspace, tmp_path, monkeypatch):
    """A NaN injected into step 5's loss (steps 6 on stay finite): the error names step 5, not a later one."""
    from peftstudy.training import loop

    calls = {"n": 0}
    original = loop.TrainingData.loss

    def loss(self, network, indices):
        calls["n"] += 1
        value = original(self, network, indices)
        return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setattr(loop.TrainingData, "loss", loss)
    out = tmp_path / "nan"
    with pytest.raises(loop.TrainingDiverged, match=r"the training loss is nan at optimizer step 5 \(epoch 1\)"):
        loop.train_run(run_settings("lora", learning_rate=1e-9), tiny_workspace / "base-gpt2", tiny_workspace / "data",
                       out / "weights", out / "train.json")
    assert not (out / "weights").exists() and not (out / "train.json").exists()


def test_on_divergence_is_fail_or_record():
    from test_workflow import MICRO

    from peftstudy.study.config import StudyConfigError, validate_study

    study = copy.deepcopy(MICRO)
    study["training"]["on_divergence"] = "fail"
    study["methods"]["lora"]["training"]["on_divergence"] = "record"
    validate_study(study, "micro.yaml")
    study["methods"]["lora"]["training"]["on_divergence"] = "ignore"
    with pytest.raises(StudyConfigError, match="on_divergence: 'ignore' is not one of"):
        validate_study(study, "micro.yaml")


DIVERGED_RUN = "runs/d/gpt2/full/seed5"  # run_settings("full"): dataset d, model gpt2, seed 5


@pytest.fixture(scope="module")
def recorded_divergence(tiny_workspace, tmp_path_factory):
    """A run of results/study whose loss diverges under on_divergence: record: its train_run's return value and
    its directory (train.json, weights/; the checkpoint directory beside it)."""
    from peftstudy.execution.snakefile import script_fingerprint
    from peftstudy.training.loop import train_run

    results = tmp_path_factory.mktemp("record") / "results" / "study"
    run = results / DIVERGED_RUN
    settings = run_settings("full", learning_rate=1000.0, checkpoint_every_steps=2, on_divergence="record")
    returned = train_run(settings, tiny_workspace / "base-gpt2", tiny_workspace / "data", run / "weights",
                         run / "train.json", checkpoint_dir=run.parent / "checkpoint",
                         code=script_fingerprint(REPOSITORY / "workflow" / "scripts" / "train.py"))
    return returned, results


def test_a_diverging_run_with_on_divergence_record_returns_and_writes_a_marked_train_json(recorded_divergence):
    from peftstudy import checksums
    from peftstudy.training.loop import DIVERGED_MARKER

    returned, results = recorded_divergence
    run = results / DIVERGED_RUN
    record = json.loads((run / "train.json").read_text())
    assert record == returned and record[checksums.SEAL] == checksums.record_hash(record)
    diverged = record["diverged"]
    assert diverged["what"] == "training loss" and diverged["loss"] == "nan" and diverged["learning_rate"] == 1000.0
    assert 1 <= diverged["step"] < STEPS and record["steps"] == diverged["step"]
    assert re.search(rf"the training loss is nan at optimizer step {diverged['step']} .*training\.learning_rate "
                     r"1000\.0; .*train\.json records the divergence; .*\(training\.on_divergence: record\)",
                     diverged["message"])
    # The learning rate of that step: cosine decay after ceil(0.1 * 24) = 3 warm-up steps, from 1000.
    assert diverged["step"] > 3
    expected = 1000.0 * 0.5 * (1 + math.cos(math.pi * (diverged["step"] - 1 - 3) / (STEPS - 3)))
    assert diverged["scheduled_learning_rate"] == pytest.approx(expected, rel=1e-9)
    # Every step before the diverged one, finite; none of the usual results (no losses, times or throughput).
    assert len(record["step_losses"]) == diverged["step"] - 1
    assert all(math.isfinite(loss) for loss in record["step_losses"])
    assert not {"best_validation_loss", "train_time_s", "tokens_per_s", "stored_bytes"} & set(record)
    # No weights: a marker only, listed for `peftstudy verify`; no checkpoint left to resume into the divergence.
    assert sorted(path.name for path in (run / "weights").iterdir()) == [DIVERGED_MARKER]
    assert list(record["weights_sha256"]) == [DIVERGED_MARKER]
    assert json.loads((run / "weights" / DIVERGED_MARKER).read_text())["diverged"] == diverged
    assert not (run.parent / "checkpoint").exists()


@pytest.fixture(scope="module")
def scored_divergence(recorded_divergence, tiny_workspace):
    """The diverged run generated and scored as the workflow's jobs do it; and a normal run's metrics.json (a
    minimal one, for aggregation)."""
    from peftstudy import io
    from peftstudy.execution.snakefile import script_fingerprint
    from peftstudy.generation import generate_run
    from peftstudy.metrics.scoring import score_run_files

    _, results = recorded_divergence
    run, data, scripts = results / DIVERGED_RUN, tiny_workspace / "data", REPOSITORY / "workflow" / "scripts"
    generation = {"batch_size": 8, "max_new_tokens": 6, "num_beams": 1, "no_repeat_ngram_size": 0}
    spec = run_settings("full")["method_spec"]
    generate_run(spec, "gpt2", tiny_workspace / "base-gpt2", run / "weights", data / "test.jsonl",
                 run / "generations.jsonl", run / "generation.json", generation, 24, max_target_tokens=24,
                 code=script_fingerprint(scripts / "generate.py"), training_record_path=run / "train.json",
                 generation_config_path=run / "generation_config.json")
    score_run_files({"study": "study", "dataset": "d", "model": "gpt2", "variant": "full", "seed": "5"},
                    run / "generations.jsonl", run / "train.json", run / "generation.json", run / "metrics.json",
                    train_path=data / "train.jsonl", code=script_fingerprint(scripts / "score.py"))
    normal = results.parent.parent / "normal" / "metrics.json"  # outside the tree `peftstudy verify` checks
    io.write_json(normal, {"run": {"study": "study", "dataset": "d", "model": "gpt2", "variant": "lora-r4", "seed": "5"},
                           "metrics": {"rougeL": 0.25}, "units": {"rougeL": "F1"}})
    return results, normal


def test_a_diverged_run_is_marked_downstream_and_left_out_of_the_metrics(scored_divergence, tiny_workspace, tmp_path):
    import pandas as pd

    from peftstudy.metrics.aggregate import aggregate_metrics
    from peftstudy.verify import verify

    results, normal = scored_divergence
    run = results / DIVERGED_RUN
    diverged = json.loads((run / "train.json").read_text())["diverged"]
    generated = json.loads((run / "generation.json").read_text())
    assert generated["diverged"] == diverged and generated["examples"] == 0
    assert (run / "generations.jsonl").read_bytes() == b""  # no generations: there are no weights to generate with
    scored = json.loads((run / "metrics.json").read_text())
    assert scored["diverged"] == diverged and scored["metrics"] == {} and scored["run"]["variant"] == "full"
    # `peftstudy verify` re-checks the diverged run's records, its weights marker and its empty generations.
    workdir = results.parent.parent  # where verify finds what the run was trained from, as the workflow lays it out
    shutil.copytree(tiny_workspace / "data", workdir / "data/prepared/d", dirs_exist_ok=True)
    shutil.copytree(tiny_workspace / "base-gpt2", workdir / "results/bases/gpt2", dirs_exist_ok=True)
    report = verify(results, REPOSITORY / "workflow" / "scripts")
    assert report.clean, "\n".join(drift.line() for drift in report.drifts)
    checked = {Path(path).relative_to(results).as_posix() for path in report.checked if Path(path).is_relative_to(results)}
    assert {f"{DIVERGED_RUN}/{name}" for name in ("train.json", "generation.json", "metrics.json",
                                                   "generations.jsonl", "generation_config.json",
                                                   "weights/DIVERGED.json")} <= checked

    rows = aggregate_metrics([run / "metrics.json", normal], tmp_path / "metrics.csv", tmp_path / "diverged_runs.csv")
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert rows == 1 and metrics["method"].tolist() == ["lora"] and metrics["metric"].tolist() == ["rougeL"]
    listed = pd.read_csv(tmp_path / "diverged_runs.csv", keep_default_na=False).to_dict("records")
    assert len(listed) == 1
    assert {k: listed[0][k] for k in ("dataset", "model", "method", "seed", "step", "what", "loss", "learning_rate")} \
        == {"dataset": "d", "model": "gpt2", "method": "full", "seed": 5, "step": diverged["step"],
            "what": "training loss", "loss": "nan", "learning_rate": 1000.0}
    # No diverged run: the list is there, with its header only (the workflow's declared output).
    aggregate_metrics([normal], tmp_path / "alone" / "metrics.csv")
    assert (tmp_path / "alone" / "diverged_runs.csv").read_text().startswith("study,dataset,model,method,rank,seed,step")
    assert len((tmp_path / "alone" / "diverged_runs.csv").read_text().splitlines()) == 1
    # A record marked diverged that still carries metric values is refused, naming it.
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({**scored, "metrics": {"rougeL": 0.1}}))
    with pytest.raises(ValueError, match="edited.json: marked diverged but has metric values"):
        aggregate_metrics([edited], tmp_path / "edited.csv")


def test_the_report_lists_the_runs_that_diverged(scored_divergence, tmp_path):
    from test_workflow import MICRO

    from peftstudy.report import paper
    from peftstudy.study.config import validate_study

    results, _ = scored_divergence
    diverged = json.loads((results / DIVERGED_RUN / "train.json").read_text())["diverged"]
    study = validate_study(copy.deepcopy(MICRO), "micro.yaml")
    context = paper.paper_context(study, [str(results / DIVERGED_RUN / "metrics.json")], [])
    assert context["diverged_runs"] == [["d", "gpt2", "full", 5, f"{diverged['step']} (training loss)", "nan", "1000",
                                         f"{diverged['scheduled_learning_rate']:.3g}"]]
    latex = paper.paper_latex(study, context)
    start = latex.index(r"\paragraph{Runs that diverged (excluded).}")
    end = latex.index(r"\end{center}", start)
    section = latex[start : end + len(r"\end{center}")]
    assert r"1 run(s) diverged" in section and rf"d & gpt2 & full & 5 & {diverged['step']} (training loss) & nan" in section
    # Without a diverged run the paper says nothing of it.
    assert "Runs that diverged" not in paper.paper_latex(study, {**context, "diverged_runs": []})
    # The section compiles (booktabs, as the paper's preamble loads it).
    if shutil.which("latexmk") is None:
        pytest.skip("latexmk not installed: the section's LaTeX was checked as text only")
    (tmp_path / "section.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                          f"{section}\n\\end{{document}}\n")
    paper.build_pdf(tmp_path / "section.tex", tmp_path / "section.pdf")
    assert (tmp_path / "section.pdf").read_bytes()[:5] == b"%PDF-"


# ---------------------------------------------------------------------------------- full or read-only disk


def _mount(*args) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


@pytest.fixture
def small_filesystem(tmp_path):
    """A 128 KiB tmpfs: the tiny model's weights and checkpoint do not fit. Skipped where mounting is not allowed."""
    point = tmp_path / "mounted"
    point.mkdir()
    if shutil.which("mount") is None or not _mount("-t", "tmpfs", "-o", "size=128k", "tmpfs", point):
        pytest.skip("mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN): cannot make a disk full")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.mark.slow
def test_a_full_or_read_only_results_directory_fails_naming_the_path_and_a_rerun_completes(
        tiny_workspace, driver, small_filesystem, tmp_path):
    reference = tmp_path / "reference"
    full = run_settings("full")  # its weights (the whole model) do not fit the small file system
    assert driver.train(reference, tiny_workspace, full, checkpoints=False) == (0, None)
    out = small_filesystem / "run"
    for fault, options, errno_text in (("full", "remount,size=128k", "No space left on device"),
                                       ("read-only", "remount,ro,size=64m", "Read-only file system")):
        shutil.rmtree(out, ignore_errors=True)
        if fault == "read-only":
            out.mkdir()
        assert _mount("-o", options, small_filesystem), fault
        log_start = driver.log.stat().st_size
        status, _ = driver.train(out, tiny_workspace, full)
        message = driver.log.read_text()[log_start:]
        assert status == 1, message[-3000:]
        assert errno_text in message and str(out) in message.splitlines()[-1], message[-3000:]
        assert not (out / "train.json").exists() and not (out / "weights").exists()
        assert_nothing_half_written(out) if out.exists() else None
        assert _mount("-o", "remount,rw,size=64m", small_filesystem), fault
        assert driver.train(out, tiny_workspace, full) == (0, None), fault
        assert weights_of(out / "weights") == weights_of(reference / "weights")
        assert json.loads((out / "train.json").read_text())["step_losses"] == \
            json.loads((reference / "train.json").read_text())["step_losses"]


# ------------------------------------------------------------------------------------- the Snakemake controller

RUN = "results/micro/runs/micro-data/gpt2-micro/{variant}/seed1/train.json"
TARGETS = [RUN.format(variant=variant) for variant in ("full", "lora-r2")]


def tiny_study():
    from test_workflow import MICRO

    study = copy.deepcopy(MICRO)
    study.update(seeds=[1], overrides=[], claims=[],
                 matrix=[{"datasets": ["micro-data"], "models": ["gpt2-micro"], "methods": ["full", "lora"],
                          "ranks": [2]}])
    study["datasets"] = {"micro-data": dict(MICRO["datasets"]["micro-data"], max_examples=200)}
    study["models"] = {"gpt2-micro": copy.deepcopy(MICRO["models"]["gpt2-micro"])}
    study["models"]["gpt2-micro"]["pretraining"]["steps"] = 10
    study["methods"] = {"full": {"kind": "full"}, "lora": {"kind": "lora", "ranks": [2], "alpha": 8, "dropout": 0.0}}
    # Long enough (LoRA 3 s, full 12 s) to be caught running; early stopping off: every run has all its epochs.
    study["training"] = dict(MICRO["training"], epochs=16, early_stopping_patience=None)
    return study


def controller(workdir, *args):
    """A Snakemake process on the study's train targets (zygote on, its own TMPDIR), not waited for."""
    from support.workflow_runner import SNAKEMAKE

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(workdir / "tmp"), "PEFTSTUDY_ZYGOTE": "1"}
    command = [str(SNAKEMAKE), "--snakefile", str(REPOSITORY / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config" / "micro.yaml"), "--cores", "2", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process, timeout=300) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """The tiny study with its data, base and two train cells built (their train.json the reference numbers)."""
    from test_workflow import write_study

    workdir = tmp_path_factory.mktemp("faults-study")
    (workdir / "tmp").mkdir()
    write_study(workdir, tiny_study())
    status, output = finished(controller(workdir, *TARGETS))
    assert status == 0, output[-3000:]
    return workdir


def losses(workdir):
    return {target: json.loads((workdir / target).read_text())["step_losses"] for target in TARGETS}


def wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@pytest.mark.slow
def test_a_second_snakemake_on_the_same_study_is_refused_by_the_lock(study_dir):
    reference = losses(study_dir)
    first = controller(study_dir, "--forcerun", "train", TARGETS[0])
    try:
        wait_for(lambda: any((study_dir / ".snakemake" / "locks").glob("*.lock")), "the first Snakemake's lock")
        status, output = finished(controller(study_dir, "--forcerun", "train", TARGETS[0]))
        assert first.poll() is None, "the first Snakemake ended before the second was refused: make its job longer"
    finally:
        first_status, first_output = finished(first)
    assert status != 0 and "LockException" in output and "Directory cannot be locked" in output, output[-3000:]
    assert first_status == 0, first_output[-3000:]
    assert losses(study_dir) == reference  # the forced rerun, undisturbed, gives the same numbers
    status, output = finished(controller(study_dir, "-n", *TARGETS))
    assert status == 0 and "Nothing to be done" in output, output[-3000:]


def study_processes(workdir) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command) of the live processes started for this study: their environment has its TMPDIR."""
    marker = f"TMPDIR={workdir / 'tmp'}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z":  # a zombie runs and writes nothing (its parent reaps it)
            found.append((int(entry.name), int(parent), command))
    return found


@pytest.mark.slow
def test_sigkill_of_the_controller_leaves_no_job_running_and_a_rerun_completes_with_the_same_numbers(study_dir):
    """SIGKILL of Snakemake while a train job runs in the zygote: the job (its script process and the zygote child)
    stops within seconds, writing nothing. The rerun needs `--unlock` first (the lock of the killed Snakemake stays),
    not `--rerun-incomplete` (the stopped job left no output); it ends with the numbers of the uninterrupted runs."""
    reference = losses(study_dir)
    logs = study_dir / "logs" / "micro" / "train"
    shutil.rmtree(logs, ignore_errors=True)
    killed = controller(study_dir, "--forcerun", "train", *TARGETS)
    try:
        wait_for(lambda: any("epoch 2: validation" in log.read_text() for log in logs.rglob("*.log")),
                 "a train job's second epoch")
        running = [log for log in logs.rglob("*.log")]
        os.kill(killed.pid, signal.SIGKILL)
    finally:
        finished(killed)

    def only_the_zygote_server_is_left():
        processes = study_processes(study_dir)
        pids = {pid for pid, _, _ in processes}
        # The zygote server idles out on its own a minute later; its children are jobs.
        return all("peftstudy.execution.zygote" in command and parent not in pids for _, parent, command in processes)

    wait_for(only_the_zygote_server_is_left, "the end of the orphaned job", timeout=15)
    sizes = {log: log.stat().st_size for log in running}
    time.sleep(2)
    assert {log: log.stat().st_size for log in running} == sizes  # nothing writes any more
    # The killed job wrote no output (Snakemake removed its old one when it started it).
    killed_job = [log for log in running if "epoch 2: validation" in log.read_text()]
    assert len(killed_job) == 1 and not (study_dir / RUN.format(variant=killed_job[0].parent.name)).exists(), \
        [(log, log.read_text()[-300:]) for log in running]

    status, output = finished(controller(study_dir, *TARGETS))
    assert status != 0 and "Directory cannot be locked" in output, output[-3000:]
    status, output = finished(controller(study_dir, "--unlock"))
    assert status == 0, output[-3000:]
    status, output = finished(controller(study_dir, *TARGETS))
    assert status == 0 and "IncompleteFilesException" not in output, output[-3000:]
    assert losses(study_dir) == reference
