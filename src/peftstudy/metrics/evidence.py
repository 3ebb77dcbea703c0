"""What a study's run artifacts show for the integrity check: each run's share of empty outputs, of outputs that
are verbatim training references, and its trainable-parameter count against its method's formula on its base
(built on the meta device: no weights read). Plain dicts of stats.integrity.RunEvidence's fields: the statistics
read tables and import nothing that loads a model, so this module does not import them either."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from peftstudy import io
from peftstudy.study.matrix import parse_variant


def _normalised(text: str) -> str:
    return " ".join(str(text).split())


def training_references(train_path) -> set:
    return {_normalised(row["reference"]) for row in io.read_jsonl(train_path) if row.get("reference")}


def run_evidence(metrics_path, train_references: Mapping[str, set] | None = None,
                 expected: tuple[int, str] | None = None) -> dict | None:
    """What a run's artifacts beside its metrics.json show; None for a run that diverged (it has no outputs).
    ``train_references``: per generation dataset, its training references (normalised), for copied outputs."""
    path = Path(metrics_path)
    scored = io.read_json(path)
    if "diverged" in scored:
        return None
    run = scored["run"]
    method, rank = parse_variant(run["variant"])
    predictions = [_normalised(row.get("prediction", "")) for row in io.read_jsonl(path.with_name("generations.jsonl"))]
    non_empty = [p for p in predictions if p]
    references = (train_references or {}).get(run["dataset"])
    copied = sum(p in references for p in non_empty) / len(non_empty) if references is not None and non_empty else None
    train = io.read_json(path.with_name("train.json")) if path.with_name("train.json").is_file() else {}
    return {"dataset": run["dataset"], "model": run["model"], "method": method,
            "rank": "" if rank is None else str(rank), "seed": str(run["seed"]),
            "empty_share": (len(predictions) - len(non_empty)) / len(predictions) if predictions else None,
            "copied_share": copied, "trainable": train.get("trainable_parameters"),
            "expected_trainable": None if expected is None else expected[0],
            "formula": None if expected is None else expected[1]}


def study_evidence(metrics_paths: Sequence[str], train_paths: Mapping[str, str],
                   base_dirs: Mapping[str, str]) -> list[dict]:
    """Every run's evidence: its outputs against its generation dataset's training references (``train_paths``:
    the generation datasets only) and its trainable count against its method's formula on its base."""
    references = {dataset: training_references(path) for dataset, path in train_paths.items()}
    evidence = []
    for path in metrics_paths:
        expected = None
        record = Path(path).with_name("train.json")
        if record.is_file():
            settings = io.read_json(record).get("settings") or {}
            if settings.get("model") in base_dirs:
                expected = expected_trainable(settings, base_dirs[settings["model"]])
        run = run_evidence(path, references, expected)
        if run is not None:
            evidence.append(run)
    return evidence


def expected_trainable(settings: Mapping, base_dir) -> tuple[int, str] | None:
    """The run's method formula on its base (methods.formulas); None where the method has none."""
    from peftstudy.methods import expected_trainable_for_run

    return expected_trainable_for_run(settings, Path(base_dir).resolve())
