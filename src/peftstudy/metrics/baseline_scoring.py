"""A study's trivial baselines run and scored like its runs (the predictors are peftstudy.baselines)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from peftstudy import checksums, io, provenance
from peftstudy.baselines import gates, predict
from peftstudy.metrics import scoring


def baseline_run(spec: Mapping, train_path, test_path, generations_path, record_path, *, task: str,
                 metric_settings: Mapping | None = None, wordnet_dir=None, max_test_examples: int | None = None,
                 code: str | None = None, name: str | None = None) -> dict:
    """Predict the test split (as generation reads it: the first max_test_examples rows), write the predictions as a
    run's generations.jsonl, score them with the runs' own quality metrics and write the record (metrics.json)."""
    scoring.pin_scoring_threads()
    train, test = io.read_jsonl(train_path), io.read_jsonl(test_path)
    if max_test_examples:
        test = test[:max_test_examples]
    predictions, chosen = predict(spec, train, test)
    rows = [{"id": r["id"], "input": r["input"], "reference": r["reference"], "prediction": p,
             **({"answers": r["answers"]} if "answers" in r else {})} for r, p in zip(test, predictions)]
    io.write_jsonl(generations_path, rows)
    settings = scoring.metric_settings(metric_settings)
    scores = scoring.Scores()
    scoring.score_quality(scores, rows, task, settings, wordnet_dir=wordnet_dir,
                          train_references=[r["reference"] for r in train], source=generations_path,
                          decoding=f"baseline {spec['kind']}")
    hashed = {"spec": dict(spec), "task": task, "metrics": settings, "max_test_examples": max_test_examples}
    record = {
        "baseline": {"name": name or spec["kind"], **dict(spec)},
        "chosen": chosen,
        "task": task,
        "metrics": scores.values, "units": scores.units, "notes": scores.notes, "signatures": scores.signatures,
        "examples": len(rows),
        "example_scores": scores.example_record(rows),
        "generations_sha256": io.sha256_file(generations_path),
        # hashed_settings: what settings_hash is the hash of (`peftstudy verify` recomputes it).
        "provenance": provenance.record("baseline", hashed, code=code, hashed_settings=hashed),
    }
    record = checksums.sealed(record)
    io.write_json(record_path, record)
    return record


BASELINE_COLUMNS = ["study", "dataset", "baseline", "kind", "gate", "metric", "value", "unit", "note"]


def aggregate_baselines(record_paths: Sequence, out_path, *, study: str) -> int:
    """Every baseline record of a study as one long table, like metrics.csv (one row per baseline and metric);
    returns the number of rows. A record's dataset is its directory's parent's name
    (results/<study>/baselines/<dataset>/<baseline>/metrics.json)."""
    rows = []
    for path in sorted(map(Path, record_paths)):
        record = io.read_json(path)
        for metric, value in sorted(record["metrics"].items()):
            rows.append({"study": study, "dataset": path.parent.parent.name, "baseline": record["baseline"]["name"],
                         "kind": record["baseline"]["kind"], "gate": gates(record["baseline"]), "metric": metric,
                         "value": "" if value is None else repr(float(value)), "unit": record["units"].get(metric, ""),
                         "note": record["notes"].get(metric, "")})
    io.write_csv(out_path, rows, BASELINE_COLUMNS)
    return len(rows)
