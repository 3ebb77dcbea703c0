"""Scoring one run: quality from its generations, cost from its training record.

Deliberately torch-free: scoring jobs start in about a second, so the demo's
budget goes to training, not to imports. Each metric is one registry entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import io

QualityMetric = Callable[[Sequence[str], Sequence[str]], tuple[float, dict]]


def bleu4(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, dict]:
    """Corpus BLEU-4 with sacrebleu's defaults (13a tokenisation, exp smoothing), 0-100."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    score = bleu.corpus_score(list(predictions), [list(references)])
    # The signature is complete only after scoring (it records the effective settings).
    return score.score, {"signature": str(bleu.get_signature())}


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, dict]:
    """Mean sentence-level ROUGE-L F1 with Porter stemming (as the reference implementation), 0-100."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return 100 * sum(scores) / max(len(scores), 1), {"signature": "rouge-score|rougeL|fmeasure|stemmer:porter|mean"}


QUALITY_METRICS: dict[str, QualityMetric] = {"bleu4": bleu4, "rouge_l": rouge_l}

# Taken as recorded by the training / generation stages; the name carries the unit.
TRAINING_RECORD_METRICS = (
    "trainable_parameters", "total_parameters", "stored_bytes", "train_time_s", "time_per_step_s",
    "tokens_per_s", "best_validation_loss", "steps",
)
GENERATION_RECORD_METRICS = ("inference_ms_per_example", "examples_per_s")
# Recorded by some methods only (QLoRA: the base's weight bytes, quantized and as they would be unquantized).
METHOD_EXTRA_METRICS = ("base_weight_bytes", "base_weight_bytes_unquantized")


def score_run_files(run: Mapping, generations_path, training_record_path, generation_record_path, out_path) -> None:
    """Score one run from its files and write metrics.json (the unit the workflow runs, in the zygote)."""
    scored = score_run(generations_path, io.read_json(training_record_path), io.read_json(generation_record_path))
    scored["run"] = dict(run)
    io.write_json(out_path, scored)


def score_run(generations_path: str | Path, training_record: Mapping, generation_record: Mapping) -> dict:
    rows = io.read_jsonl(generations_path)
    if not rows:
        raise ValueError(f"{generations_path}: no generations to score")
    predictions = [row["prediction"] for row in rows]
    references = [row["reference"] for row in rows]
    values, signatures = {}, {}
    for name, metric in QUALITY_METRICS.items():
        values[name], extra = metric(predictions, references)
        signatures[name] = extra.get("signature")
    for name in TRAINING_RECORD_METRICS:
        values[name] = training_record[name]
    values["trainable_percent"] = 100 * training_record["trainable_parameters"] / training_record["total_parameters"]
    extras = training_record.get("method_extras") or {}
    values.update({name: extras[name] for name in METHOD_EXTRA_METRICS if name in extras})
    for name in GENERATION_RECORD_METRICS:
        values[name] = generation_record[name]
    return {
        "metrics": values,
        "signatures": signatures,
        "examples": len(rows),
        "generations_sha256": io.sha256_file(generations_path),
        "device": training_record["provenance"]["hardware"].get("device"),
        # What the run was trained with (the report prints every cell's hyper-parameters from these).
        "settings": training_record["settings"],
        "provenance": training_record["provenance"],
    }


METRICS_COLUMNS = ["study", "dataset", "model", "method", "rank", "seed", "metric", "value"]


def tidy_rows(run, scored: Mapping) -> list[dict]:
    """One row per (run, metric): the long format every later stage reads."""
    return [
        {
            "study": run.study, "dataset": run.dataset, "model": run.model, "method": run.method,
            "rank": "" if run.rank is None else run.rank, "seed": run.seed, "metric": name, "value": value,
        }
        for name, value in sorted(scored["metrics"].items())
    ]


def write_metrics_table(path: str | Path, rows: Sequence[Mapping]) -> None:
    import csv
    import io as stdio

    buffer = stdio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "value": repr(float(row["value"])) if row["value"] is not None else ""})
    io.write_text(path, buffer.getvalue())


def aggregate_metrics(metrics_paths, out_path) -> int:
    """Collect every run's metrics.json into the study's tidy metrics.csv; return the row count."""
    from .config import Run

    rows = []
    for path in metrics_paths:
        scored = io.read_json(path)
        identity = scored["run"]
        run = Run(identity["study"], identity["dataset"], identity["model"], identity["variant"], int(identity["seed"]))
        rows.extend(tidy_rows(run, scored))
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["method"], str(r["rank"]).zfill(6), r["seed"], r["metric"]))
    write_metrics_table(out_path, rows)
    return len(rows)
