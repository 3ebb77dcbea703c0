"""`peftstudy verify`: a results tree written by the stages' own writers verifies clean, and an edited weight byte,
an edited metric value, another package version, other code and re-hashed settings are each reported as drift
naming the artifact (the function and the console script alike)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peftstudy import checksums, io, provenance
from peftstudy.cli import main
from peftstudy.execution.snakefile import script_fingerprint
from peftstudy.generation import generate_run
from peftstudy.metrics.baseline_scoring import baseline_run
from peftstudy.metrics.scorers import fetch_scorers
from peftstudy.metrics.scoring import score_run_files
from peftstudy.training.loop import train_run
from peftstudy.verify import VerifyError, trained_settings, verify

TRAINING = dict(epochs=1, max_steps=2, batch_size=16, gradient_accumulation_steps=1, learning_rate=3e-3,
                weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="constant", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32")
GENERATION = {"batch_size": 8, "max_new_tokens": 6, "num_beams": 1, "no_repeat_ngram_size": 0}
RUN = "runs/d/gpt2/lora-r4/seed1"
CONSOLE_SCRIPT = Path(sys.executable).with_name("peftstudy")


@pytest.fixture(scope="module")
def scripts(repository):
    return repository / "workflow" / "scripts"


@pytest.fixture(scope="module")
def written(tiny_workspace, scripts, tmp_path_factory):
    """results/study with one run (train, generate, score) and one baseline, as the workflow's jobs write them."""
    workdir = tmp_path_factory.mktemp("verify")  # laid out as the workflow's: data/prepared, results/bases
    results, data, base = workdir / "results" / "study", workdir / "data/prepared/d", workdir / "results/bases/gpt2"
    shutil.copytree(tiny_workspace / "data", data)
    shutil.copytree(tiny_workspace / "base-gpt2", base)
    run = results / RUN
    code = {stage: script_fingerprint(scripts / f"{stage}.py")
            for stage in ("train", "generate", "score", "baseline", "fetch_scorers")}
    fetch_scorers(None, results / "scorers.json", code=code["fetch_scorers"])
    method_spec = {"kind": "lora", "alpha": 8, "dropout": 0.0}
    settings = {"dataset": "d", "model": "gpt2", "family": "gpt2", "method": "lora", "rank": 4,
                "method_spec": method_spec, "training": TRAINING, "seed": 1}
    train_run(settings, base, data, run / "weights", run / "train.json", code=code["train"])
    (run / "weights" / ".snakemake_timestamp").touch()  # what Snakemake adds to a directory output: not the artifact's
    generate_run(method_spec, "gpt2", base, run / "weights", data / "test.jsonl", run / "generations.jsonl",
                 run / "generation.json", GENERATION, 24, max_target_tokens=24, code=code["generate"],
                 generation_config_path=run / "generation_config.json")
    score_run_files({"study": "study", "dataset": "d", "model": "gpt2", "variant": "lora-r4", "seed": "1"},
                    run / "generations.jsonl", run / "train.json", run / "generation.json", run / "metrics.json",
                    train_path=data / "train.jsonl", task="classification", code=code["score"])
    baseline = results / "baselines" / "d" / "majority_class"
    baseline_run({"kind": "majority_class"}, data / "train.jsonl", data / "test.jsonl", baseline / "generations.jsonl",
                 baseline / "metrics.json", task="classification", code=code["baseline"])
    return results


@pytest.fixture
def results(written, tmp_path):
    """A private copy of the written tree (and the data and base it was made from), for a test to edit."""
    shutil.copytree(written.parent.parent, tmp_path / "work")
    return tmp_path / "work" / "results" / "study"


def console(*args, cwd=None):
    assert CONSOLE_SCRIPT.exists(), f"{CONSOLE_SCRIPT} missing: reinstall the package (pip install --no-deps -e .)"
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_a_fresh_results_tree_verifies_clean(results, repository, scripts):
    report = verify(results, scripts)
    assert report.clean, "\n".join(drift.line() for drift in report.drifts)
    workdir = results.parent.parent
    checked = {Path(path).relative_to(workdir).as_posix() for path in report.checked}
    assert {"data/prepared/d/manifest.json", "results/bases/gpt2/base.json",
            "results/bases/gpt2/model.safetensors"} <= checked  # what the run was trained from
    checked = {Path(path).relative_to(results).as_posix() for path in report.checked if Path(path).is_relative_to(results)}
    assert {f"{RUN}/train.json", f"{RUN}/generation.json", f"{RUN}/generations.jsonl", f"{RUN}/metrics.json",
            f"{RUN}/generation_config.json", f"{RUN}/weights/adapter_model.safetensors", "baselines/d/majority_class/metrics.json",
            "baselines/d/majority_class/generations.jsonl"} <= checked
    assert f"{RUN}/weights/.snakemake_timestamp" not in checked
    assert "scorers.json" in checked and any(path.startswith("scorers.json:bertscore/") for path in checked)
    # The console script, from the checkout's root: the default --scripts is its workflow/scripts.
    done = console("verify", results, cwd=repository)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"{len(report.checked)} artifacts checked, 0 drifted"]


def test_an_edited_weight_byte_is_named(results, scripts):
    weights = results / RUN / "weights" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    report = verify(results, scripts)
    assert [(drift.artifact, drift.what) for drift in report.drifts] == [
        (str(weights), "sha256 (as train.json records it)")]
    assert report.drifts[0].now == io.sha256_file(weights) != report.drifts[0].recorded
    done = console("verify", results, "--scripts", scripts)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{weights}: sha256 (as train.json records it): recorded ") and len(lines) == 2
    assert lines[-1] == f"{len(report.checked)} artifacts checked, 1 drifted"


def test_an_edited_metric_value_is_named(results, scripts):
    path = results / RUN / "metrics.json"
    record = io.read_json(path)
    record["metrics"]["accuracy"] += 1.0
    io.write_json(path, record)
    report = verify(results, scripts)
    assert [(drift.artifact, drift.what) for drift in report.drifts] == [
        (str(path), "content checksum (record_sha256)")]
    assert report.drifts[0].recorded == record[checksums.SEAL] != report.drifts[0].now
    done = console("verify", results, "--scripts", scripts)
    assert done.returncode == 1 and done.stdout.splitlines()[0].startswith(f"{path}: content checksum")
    assert done.stdout.splitlines()[-1].endswith(", 1 drifted")


def test_a_package_version_drift_is_reported_per_record(results, scripts, monkeypatch):
    real = provenance.package_versions
    monkeypatch.setattr(provenance, "package_versions", lambda names: {
        name: "0.0.0+drift" if name == "torch" else real([name])[name] for name in names})
    report = verify(results, scripts)
    drifts = {(Path(drift.artifact).relative_to(results).as_posix(), drift.what): (drift.recorded, drift.now)
              for drift in report.drifts}
    torch_version = real(["torch"])["torch"]
    assert drifts == {(f"{RUN}/train.json", "package torch (train)"): (torch_version, "0.0.0+drift"),
                      (f"{RUN}/generation.json", "package torch (generate)"): (torch_version, "0.0.0+drift"),
                      (f"{RUN}/metrics.json", "package torch (score)"): (torch_version, "0.0.0+drift"),
                      ("scorers.json", "package torch (fetch_scorers)"): (torch_version, "0.0.0+drift"),
                      ("baselines/d/majority_class/metrics.json", "package torch (baseline)"): (torch_version,
                                                                                                 "0.0.0+drift")}
    assert report.summary() == f"{len(report.checked)} artifacts checked, 5 drifted"
    assert main(["verify", str(results), "--scripts", str(scripts)]) == 1


def test_other_code_and_rehashed_settings_are_reported(results, scripts, tmp_path):
    # A train.py whose import closure is another: the train stage's code fingerprint drifts, the others' do not.
    other = tmp_path / "scripts"
    shutil.copytree(scripts, other)
    (other / "train.py").write_text("from peftstudy import io\n")
    # Settings edited and the record resealed: its checksum holds, its settings hash does not.
    path = results / RUN / "generation.json"
    record = io.read_json(path)
    record["provenance"]["hashed_settings"]["generation"]["max_new_tokens"] = 7
    io.write_json(path, checksums.sealed(record))
    report = verify(results, other)
    assert sorted((Path(drift.artifact).name, drift.what) for drift in report.drifts) == [
        ("generation.json", "settings hash (generate)"),
        ("metrics.json", "generate provenance (copied from generation.json)"),  # scored from the record before
        ("train.json", "code fingerprint (train: train.py)")]


def test_a_record_of_halved_micro_batches_verifies_against_the_settings_that_ran(results, scripts):
    """training.oom keeps the requested micro-batch as the run's settings; its hash is of the one that ran."""
    path = results / RUN / "train.json"
    record = io.read_json(path)
    used = {key: record["settings"]["training"][key] for key in ("batch_size", "gradient_accumulation_steps")}
    requested = {"batch_size": 2 * used["batch_size"], "gradient_accumulation_steps": 1}
    record["settings"] = {**record["settings"], "training": {**record["settings"]["training"], **requested}}
    record["micro_batching"] = {"requested": requested, "used": used, "out_of_memory_at": [requested]}
    io.write_json(path, checksums.sealed(record))
    assert provenance.canonical_hash(trained_settings(record)) == record["provenance"]["settings_hash"]
    assert verify(results, scripts).clean
    del record["micro_batching"]  # the requested settings are not what was hashed
    io.write_json(path, checksums.sealed(record))
    assert [drift.what for drift in verify(results, scripts).drifts] == ["settings hash (train)"]


def test_an_edited_scoring_model_manifest_is_named(results, scripts):
    path = results / "scorers.json"
    record = io.read_json(path)
    record["scorers"]["bertscore"]["version"] = "0.0.1"
    io.write_json(path, record)
    assert [(Path(drift.artifact).name, drift.what) for drift in verify(results, scripts).drifts] == [
        ("scorers.json", f"content checksum ({checksums.SEAL})")]


def test_missing_and_unrecorded_files_are_drift(results, scripts):
    run = results / RUN
    (run / "generations.jsonl").unlink()
    (run / "weights" / "extra.bin").write_bytes(b"x")
    (run / "generation_config.json").write_text("{}")
    report = verify(results, scripts)
    assert sorted((Path(drift.artifact).name, drift.what, drift.now) for drift in report.drifts) == [
        ("extra.bin", "sha256 (as train.json records it)", io.sha256_text("x")),
        ("generation_config.json", "sha256 (as generation.json records it)", io.sha256_text("{}")),
        ("generations.jsonl", "sha256 (as generation.json records it)", "missing"),
        ("generations.jsonl", "sha256 (as metrics.json records it)", "missing")]
    assert report.summary().endswith(", 3 drifted")


def test_a_record_written_before_checksums_is_drift_not_clean(results, scripts):
    path = results / RUN / "train.json"
    record = io.read_json(path)
    del record[checksums.SEAL], record["weights_sha256"]
    io.write_json(path, record)
    lines = [drift.line() for drift in verify(results, scripts).drifts]
    assert lines == [f"{path}: content checksum (record_sha256): recorded nothing, now "
                     f"{checksums.record_hash(record)[:16]}",
                     f"{results / RUN / 'weights'}: weights sha256 (train.json lists none): recorded nothing, now "
                     f"a checksum per file expected"]


def test_a_seal_survives_the_json_round_trip():
    record = {"counts": {3: 1, 10: 2}, "loss": float("nan"), "path": ("a", "b"), "text": "é"}
    sealed = checksums.sealed(record)
    again = json.loads(json.dumps(sealed, sort_keys=True))
    assert checksums.record_hash(again) == sealed[checksums.SEAL] == checksums.record_hash(sealed)
    again["counts"]["3"] = 2
    assert checksums.record_hash(again) != sealed[checksums.SEAL]


def test_nothing_to_verify_is_an_error_not_a_clean_pass(tmp_path, scripts, capsys):
    with pytest.raises(VerifyError, match="no such results directory"):
        verify(tmp_path / "absent", scripts)
    with pytest.raises(VerifyError, match="no run records"):
        verify(tmp_path, scripts)
    (tmp_path / "baselines/d/b").mkdir(parents=True)
    io.write_json(tmp_path / "baselines/d/b/metrics.json", {})
    with pytest.raises(VerifyError, match="no workflow script"):
        verify(tmp_path, tmp_path)
    assert main(["verify", str(tmp_path / "absent"), "--scripts", str(scripts)]) == 2
    assert "no such results directory" in capsys.readouterr().err


def test_help_names_each_command():
    done = console("--help")
    assert done.returncode == 0 and "verify" in done.stdout
    done = console("verify", "--help")
    assert done.returncode == 0 and "--scripts" in done.stdout and "results/<study>" in done.stdout
    assert console().returncode == 2  # a command is required


def test_re_prepared_data_or_a_changed_base_is_drift_of_the_runs_trained_on_them(results, scripts):
    workdir = results.parent.parent
    manifest = workdir / "data/prepared/d/manifest.json"
    manifest.write_text(manifest.read_text() + "\n")
    weights = workdir / "results/bases/gpt2/model.safetensors"
    flipped = bytearray(weights.read_bytes())
    flipped[-1] ^= 1
    weights.write_bytes(bytes(flipped))
    report = verify(results, scripts)
    lines = [drift.line() for drift in report.drifts]
    assert report.drifted == [str(manifest), str(weights)], lines
    assert any("sha256 (as train.json records it)" in line for line in lines)
    assert any("sha256 (as base.json records it)" in line for line in lines)
    # A base rebuilt (its manifest says other weights) is drift of the runs trained on the old one.
    base_json = workdir / "results/bases/gpt2/base.json"
    io.write_json(base_json, {**io.read_json(base_json), "sha256": "0" * 64})
    assert str(base_json) in verify(results, scripts).drifted
