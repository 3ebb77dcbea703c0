"""`peftstudy verify results/<study>`: is every artifact still what its records say it was, made by the code and
packages installed now?

Per file of a study's runs and baselines it re-checks what was recorded when the file was written: a JSON
record's checksum of its own content, the checksums of the weights and generations it lists, each stage's
settings hash (recomputed from the settings the record keeps), its code fingerprint (against the workflow
scripts' import closures now) and its package versions (against this environment); and a run's inputs: the
prepared data's manifest and the base model's weights it was trained from; and an adaptive study's looks, taken
again from the runs' metrics. A difference is drift: the
file was changed after it was written, or rerunning its stage now would run other code or packages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from peftstudy import checksums, io, provenance
from peftstudy.execution.snakefile import script_fingerprints
from peftstudy.model_card import GENERATION_CONFIG

# The workflow script that runs each stage recorded under results/<study> (its code fingerprint is that script's).
STAGE_SCRIPTS = {"train": "train.py", "generate": "generate.py", "score": "score.py", "baseline": "baseline.py",
                 "fetch_scorers": "fetch_scorers.py", "adaptive_look": "adaptive_look.py"}
SCORERS = "scorers.json"  # results/<study>/scorers.json: the scoring models as fetched
RUN_RECORDS = ("train.json", "generation.json", "metrics.json")
SHOWN_HASH_CHARS = 16  # a drift line shows hashes this long; the Drift keeps them whole


class VerifyError(ValueError):
    """The results directory or the scripts directory cannot be verified at all (not a drift)."""


@dataclass(frozen=True)
class Drift:
    artifact: str
    what: str
    recorded: Any
    now: Any

    def line(self) -> str:
        return f"{self.artifact}: {self.what}: recorded {_shown(self.recorded)}, now {_shown(self.now)}"


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:SHOWN_HASH_CHARS]
    return str(value)


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return sorted({drift.artifact for drift in self.drifts})

    @property
    def clean(self) -> bool:
        return not self.drifts

    def summary(self) -> str:
        return f"{len(self.checked)} artifacts checked, {len(self.drifted)} drifted"


class Environment:
    """What a stage would run with now: its script's code fingerprint and the installed package versions, each
    computed once per verification."""

    def __init__(self, scripts_dir: str | Path):
        self.scripts_dir = Path(scripts_dir)
        missing = [name for name in STAGE_SCRIPTS.values() if not (self.scripts_dir / name).is_file()]
        if missing:
            raise VerifyError(f"{self.scripts_dir}: no workflow script {', '.join(missing)} (run from the checkout "
                              f"that made the results, or give its scripts directory with --scripts)")
        stages = sorted(STAGE_SCRIPTS)
        scripts = [self.scripts_dir / STAGE_SCRIPTS[stage] for stage in stages]
        self.fingerprints = dict(zip(stages, script_fingerprints(scripts)))
        self._versions: dict[str, str | None] = {}

    def version(self, package: str) -> str | None:
        if package not in self._versions:
            self._versions.update(provenance.package_versions([package]))
        return self._versions[package]


def verify(results_dir: str | Path, scripts_dir: str | Path) -> Report:
    """Check every run and baseline of results/<study>; raise VerifyError when there is nothing to check."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise VerifyError(f"{results_dir}: no such results directory (give results/<study>)")
    run_dirs = sorted({path.parent for name in RUN_RECORDS for path in results_dir.glob(f"runs/*/*/*/seed*/{name}")})
    baseline_records = sorted(results_dir.glob("baselines/*/*/metrics.json"))
    if not run_dirs and not baseline_records:
        raise VerifyError(f"{results_dir}: no run records (runs/<dataset>/<model>/<variant>/seed<n>/train.json, ...) "
                          f"and no baseline records (baselines/<dataset>/<baseline>/metrics.json)")
    environment, report = Environment(scripts_dir), Report()
    workdir = results_dir.resolve().parent.parent  # results/<study> -> the directory Snakemake ran in
    for run_dir in run_dirs:
        _check_run(run_dir, environment, report)
        _check_inputs(run_dir, workdir, report)
    for path in baseline_records:
        record = _read(path, report)
        if record is not None:
            _check_record(path, record, report)
            _check_stage(path, record.get("provenance"), "baseline", environment, report)
            _check_file(path.parent / "generations.jsonl", record.get("generations_sha256"), path.name, report)
    if (results_dir / SCORERS).is_file():
        _check_scorers(results_dir / SCORERS, environment, report)
    for path in sorted(results_dir.glob("adaptive/look*.json")):
        _check_look(path, workdir, environment, report)
    return report


def _check_look(path: Path, workdir: Path, environment: Environment, report: Report) -> None:
    """An adaptive study's look: its record, its provenance, and its decisions taken again from the runs' metrics
    (the seeds the study ran rest on them)."""
    from peftstudy.adaptive import drifts

    record = _read(path, report)
    if record is None:
        return
    _check_record(path, record, report)
    _check_stage(path, record.get("provenance"), "adaptive_look", environment, report)
    report.drifts.extend(Drift(str(path), what, recorded, now) for what, recorded, now in drifts(record, workdir))


def _check_scorers(path: Path, environment: Environment, report: Report) -> None:
    """The scoring models' manifest, and every file of each model in this machine's cache (or package) against
    the sha256 recorded at the fetch: a model changed under the same name would change every score."""
    from peftstudy.metrics.scorers import drifted_files

    record = _read(path, report)
    if record is None:
        return
    _check_record(path, record, report)
    _check_stage(path, record.get("provenance"), "fetch_scorers", environment, report)
    for role, entry in (record.get("scorers") or {}).items():
        report.checked.extend(f"{path}:{role}/{name}" for name in sorted(entry.get("sha256") or {}))
    for role, name, recorded, now in drifted_files(record):
        report.drifts.append(Drift(f"{path}:{role}/{name}", "scoring model file sha256 (as scorers.json records it)",
                                   recorded, now))


def _check_run(run_dir: Path, environment: Environment, report: Report) -> None:
    records = {name: _read(run_dir / name, report) for name in RUN_RECORDS if (run_dir / name).exists()}
    train, generation, metrics = (records.get(name) for name in RUN_RECORDS)
    if train is not None:
        path = run_dir / "train.json"
        _check_record(path, train, report)
        _check_stage(path, train.get("provenance"), "train", environment, report, trained_settings(train))
        _check_weights(run_dir / "weights", train.get("weights_sha256"), report)
    if generation is not None:
        path = run_dir / "generation.json"
        _check_record(path, generation, report)
        _check_stage(path, generation.get("provenance"), "generate", environment, report)
        _check_file(run_dir / "generations.jsonl", generation.get("generations_sha256"), path.name, report)
        if generation.get("generation_config_sha256"):  # absent in records written before it existed
            _check_file(run_dir / GENERATION_CONFIG, generation["generation_config_sha256"], path.name, report)
    if metrics is not None:
        path = run_dir / "metrics.json"
        _check_record(path, metrics, report)
        stages = metrics.get("provenance") or {}
        _check_stage(path, stages.get("score"), "score", environment, report)
        _check_file(run_dir / "generations.jsonl", metrics.get("generations_sha256"), path.name, report)
        # Scored from the records beside it: their provenance is the one metrics.json copied.
        for stage, source in (("train", train), ("generate", generation)):
            if source is not None and stages.get(stage) != source.get("provenance"):
                report.drifts.append(Drift(str(path), f"{stage} provenance (copied from {_record_of(stage)})",
                                           _hash_or_none(stages.get(stage)), _hash_or_none(source.get("provenance"))))


def _check_inputs(run_dir: Path, workdir: Path, report: Report) -> None:
    """What a run was trained from, as train.json records it: the prepared data's manifest and the base model's
    weights (a base rebuilt or data re-prepared since makes every run trained on the old one stale)."""
    path = run_dir / "train.json"
    train = io.read_json(path) if path.is_file() else None
    if not isinstance(train, dict):
        return  # unreadable: reported by _check_run already
    settings = train.get("settings") or {}
    if settings.get("dataset"):
        _check_file(workdir / "data" / "prepared" / settings["dataset"] / "manifest.json",
                    train.get("data_manifest_sha256"), "train.json", report)
    if settings.get("model"):
        base_dir = workdir / "results" / "bases" / settings["model"]
        manifest = io.read_json(base_dir / "base.json") if (base_dir / "base.json").is_file() else {}
        recorded, now = (train.get("base") or {}).get("sha256"), manifest.get("sha256", "missing")
        if str(base_dir / "base.json") not in report.checked:
            report.checked.append(str(base_dir / "base.json"))
        if recorded != now:
            report.drifts.append(Drift(str(base_dir / "base.json"), "base weights sha256 (as train.json records it)",
                                       recorded, now))
        if (base_dir / "model.safetensors").is_file():  # a base built here: its weights against its own manifest
            _check_file(base_dir / "model.safetensors", manifest.get("sha256"), "base.json", report)


def _record_of(stage: str) -> str:
    return {"train": "train.json", "generate": "generation.json"}[stage]


def _hash_or_none(value) -> str | None:
    return None if value is None else provenance.canonical_hash(value)


def trained_settings(train: Mapping) -> Any:
    """The settings a training record's settings_hash is the hash of: its `settings`, with the micro-batch that
    actually ran where out-of-memory retries halved it (training.oom keeps the requested one as the run's identity)."""
    settings = train.get("settings")
    used = (train.get("micro_batching") or {}).get("used")
    if settings is None or not used:
        return settings
    return {**settings, "training": {**settings["training"], **used}}


def _read(path: Path, report: Report) -> dict | None:
    report.checked.append(str(path))
    try:
        return io.read_json(path)
    except (OSError, json.JSONDecodeError) as error:
        report.drifts.append(Drift(str(path), "readable JSON record", "a JSON record", f"unreadable ({error})"))
        return None


def _check_record(path: Path, record: Mapping, report: Report) -> None:
    """The record's checksum of its own content: any edit after it was written shows here."""
    now = checksums.record_hash(record)
    if record.get(checksums.SEAL) != now:
        report.drifts.append(Drift(str(path), f"content checksum ({checksums.SEAL})",
                                   record.get(checksums.SEAL), now))


def _check_stage(path: Path, block: Mapping | None, stage: str, environment: Environment, report: Report,
                 settings: Any = None) -> None:
    """One stage's provenance: settings hash (from `settings`, else the block's hashed_settings), code fingerprint,
    package versions."""
    if not block:
        report.drifts.append(Drift(str(path), f"provenance ({stage})", None, "a provenance block expected"))
        return
    hashed = settings if settings is not None else block.get("hashed_settings")
    now = None if hashed is None else provenance.canonical_hash(hashed)
    if now is None or block.get("settings_hash") != now:
        what = f"settings hash ({stage})" if now is not None else f"settings hash ({stage}; no settings recorded)"
        report.drifts.append(Drift(str(path), what, block.get("settings_hash"), now))
    if block.get("code_fingerprint") != environment.fingerprints[stage]:
        report.drifts.append(Drift(str(path), f"code fingerprint ({stage}: {STAGE_SCRIPTS[stage]})",
                                   block.get("code_fingerprint"), environment.fingerprints[stage]))
    packages = block.get("packages")
    if not packages:
        report.drifts.append(Drift(str(path), f"package versions ({stage})", None, "versions expected"))
        return
    for package, recorded in sorted(packages.items()):
        now_version = environment.version(package)
        if recorded != now_version:
            report.drifts.append(Drift(str(path), f"package {package} ({stage})", recorded or "not installed",
                                       now_version or "not installed"))


def _check_file(path: Path, recorded: str | None, recorded_in: str, report: Report) -> None:
    """A data file against the sha256 a record lists for it (generations.jsonl, checked once per record)."""
    if str(path) not in report.checked:
        report.checked.append(str(path))
    now = io.sha256_file(path) if path.is_file() else "missing"
    if recorded != now:
        report.drifts.append(Drift(str(path), f"sha256 (as {recorded_in} records it)", recorded, now))


def _check_weights(weights_dir: Path, recorded: Mapping | None, report: Report) -> None:
    """Every weights file against train.json's weights_sha256; a file it does not list is drift too."""
    if recorded is None:
        report.checked.append(str(weights_dir))
        report.drifts.append(Drift(str(weights_dir), "weights sha256 (train.json lists none)", None,
                                   "a checksum per file expected"))
        return
    present = checksums.file_checksums(weights_dir) if weights_dir.is_dir() else {}
    for name in sorted(set(recorded) | set(present)):
        path = str(weights_dir / name)
        report.checked.append(path)
        if recorded.get(name) != present.get(name):
            report.drifts.append(Drift(path, "sha256 (as train.json records it)", recorded.get(name),
                                       present.get(name, "missing")))
