"""Scoring one run into named metrics with units, and collecting every run into the tidy metrics.csv.

A metric that cannot be measured on the hardware a run used is kept as a row with no value and a note
saying why: never estimated, never zero.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from peftstudy import checksums, io, provenance
from peftstudy.metrics import cost, diversity, quality

SCORING_THREADS = 1  # see score_run_files: thread counts change the last bits of a reduction
# Defaults of the study config's `metrics` section (see the schema).
METRIC_DEFAULTS = {
    # Embedding batches of 16 sentences, formed by quality.bertscore in an order of the run's outputs alone
    # (bert-score's own order follows Python's per-process hash seed), so scores stay bit-reproducible. Sorted by
    # length, batches of 16 pad little: on one CPU thread they embed a demo run's sentences about 1.4x faster than
    # batches of 64 and 1.7x faster than one sentence per batch (benchmarks/scoring_share.py --batch-sizes). On a
    # GPU, larger is faster.
    "bertscore": {"model": "all-MiniLM-L6-v2", "num_layers": 6, "rescale_with_baseline": False, "batch_size": 16},
    "embeddings": {"model": "all-MiniLM-L6-v2", "batch_size": 64},
    "diversity": {"mattr_window": 50, "distinct_n": [1, 2], "novel_ngram_n": 3, "repetition_n": 2,
                  "cluster_distance": 0.5},
}

QUALITY_UNITS = {
    "bleu4": "0-100", "rouge1": "F1 x100", "rouge2": "F1 x100", "rouge_l": "F1 x100", "rouge_lsum": "F1 x100",
    "meteor": "0-100", "bertscore_precision": "0-1", "bertscore_recall": "0-1", "bertscore_f1": "0-1",
    "perplexity": "per token",
}
DIVERSITY_UNITS = {
    "ttr": "ratio", "mattr": "ratio", "yules_k": "K", "novel_ngram_rate": "ratio", "repetition_rate": "ratio",
    "mean_pairwise_cosine": "cosine", "semantic_clusters": "count", "clusters_per_output": "ratio",
    "silhouette": "-1..1",
}
# Taken as recorded by the training / generation stages.
TRAINING_RECORD_METRICS = {
    "trainable_parameters": "count", "total_parameters": "count", "stored_bytes": "bytes", "train_time_s": "s",
    "time_per_step_s": "s", "tokens_per_s": "tokens/s", "best_validation_loss": "nats/token", "steps": "count",
}
GENERATION_RECORD_METRICS = {"inference_ms_per_example": "ms", "examples_per_s": "examples/s"}
# The training record's state_memory (modeling.memory), as train_<key>: exact bytes, the same on any hardware.
STATE_MEMORY_METRICS = {"parameter_bytes": "train_parameter_bytes", "gradient_bytes": "train_gradient_bytes",
                        "optimizer_state_bytes": "train_optimizer_state_bytes",
                        "training_state_bytes": "train_state_bytes",
                        "step_peak_tensor_bytes": "train_step_peak_tensor_bytes"}
# Recorded by some methods only (QLoRA: the base's weight bytes, quantized and as they would be unquantized).
METHOD_EXTRA_METRICS = {"base_weight_bytes": "bytes", "base_weight_bytes_unquantized": "bytes"}
# Per phase (train_*, generate_*), from efficiency.PhaseMonitor.
PHASE_UNITS = {
    "peak_memory_bytes": "bytes", "peak_memory_reserved_bytes": "bytes", "energy_kwh": "kWh",
    "gpu_utilization_mean_percent": "%", "gpu_utilization_max_percent": "%", "gpu_temperature_mean_c": "C",
    "gpu_temperature_max_c": "C",
}
# Rows measured on the run's hardware: they carry its device label.
DEVICE_BOUND = set(TRAINING_RECORD_METRICS) - {"trainable_parameters", "total_parameters", "stored_bytes",
                                                "best_validation_loss", "steps"} | set(GENERATION_RECORD_METRICS)


def metric_settings(configured: Mapping | None) -> dict:
    configured = configured or {}
    return {section: {**defaults, **configured.get(section, {})} for section, defaults in METRIC_DEFAULTS.items()}


def pin_scoring_threads() -> None:
    """torch and every BLAS/OpenMP pool of this process to SCORING_THREADS, whatever the job was given."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(SCORING_THREADS)
    threadpool_limits(SCORING_THREADS)


def score_run_files(run: Mapping, generations_path, training_record_path, generation_record_path, out_path, *,
                    settings: Mapping | None = None, costs: Mapping | None = None, wordnet_dir=None,
                    train_path=None, task: str = "generation", code: str | None = None) -> None:
    """Score one run from its files and write metrics.json (the unit the workflow runs, in the zygote).

    Single-threaded whatever the job was given (torch and every BLAS/OpenMP pool): the model-based scores and the
    embedding statistics then depend on the run's own outputs only, not on how jobs were grouped or placed."""
    import time

    pin_scoring_threads()
    started = time.perf_counter()
    training_record, generation_record = io.read_json(training_record_path), io.read_json(generation_record_path)
    if "diverged" in training_record:
        scored = diverged_scores(generations_path, training_record, generation_record)
    else:
        train_references = [row["reference"] for row in io.read_jsonl(train_path)] if train_path else None
        scored = score_run(generations_path, training_record, generation_record, settings=settings, costs=costs,
                           wordnet_dir=wordnet_dir, train_references=train_references, task=task)
    scored["run"] = dict(run)
    scored["scoring_time_s"] = time.perf_counter() - started
    hashed = {"settings": metric_settings(settings), "costs": costs, "task": task}
    scored["provenance"]["score"] = provenance.record("score", hashed, code=code, hashed_settings=hashed)
    io.write_json(out_path, checksums.sealed(scored))  # its own checksum: `peftstudy verify` re-checks it


def diverged_scores(generations_path, training_record: Mapping, generation_record: Mapping) -> dict:
    """A diverged run's metrics.json (on_divergence: record): its ``diverged`` block and no metric values, so that
    aggregation leaves it out of metrics.csv (and every statistic) and lists it among the diverged runs. A
    generation record that does not say so too was not written from this train.json: an error, not a guess."""
    if "diverged" not in generation_record:
        raise ValueError("train.json records a divergence but generation.json does not (it predates the diverged "
                         "train.json): regenerate the run")
    return {
        "diverged": training_record["diverged"],
        "metrics": {},
        "examples": 0,
        "generations_sha256": io.sha256_file(generations_path),
        "settings": training_record["settings"],
        "provenance": {"train": training_record["provenance"], "generate": generation_record.get("provenance")},
    }


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def score_run(generations_path: str | Path, training_record: Mapping, generation_record: Mapping, *,
              settings: Mapping | None = None, costs: Mapping | None = None, wordnet_dir=None,
              train_references: Sequence[str] | None = None, task: str = "generation") -> dict:
    """The run's metrics: the task's quality metrics, then size, efficiency and cost (every task)."""
    settings = metric_settings(settings)
    rows = read_outputs(generations_path)
    scores = Scores()
    put = scores.put
    cluster_labels = score_quality(scores, rows, task, settings, wordnet_dir=wordnet_dir,
                                   train_references=train_references, source=generations_path,
                                   decoding=generation_record.get("decoding", "generate"))
    put("perplexity", generation_record.get("perplexity"), QUALITY_UNITS["perplexity"],
        note="not measured: a classifier or span head has no token likelihood" if generation_record.get("test_loss")
        is not None else "not measured: the generation record has no perplexity")
    # The training objective on the test split: nats per target token (text), per example or span window (heads).
    put("test_loss", generation_record.get("test_loss"), "nats", note="not measured: no test loss recorded")

    # Size and efficiency, as the training and generation stages measured them.
    train_device = training_record.get("efficiency", {}).get("device") or training_record["provenance"]["hardware"].get("device")
    generate_device = generation_record.get("efficiency", {}).get("device") or train_device
    for name, unit in TRAINING_RECORD_METRICS.items():
        put(name, training_record.get(name), unit, train_device if name in DEVICE_BOUND else None)
    put("trainable_percent", 100 * training_record["trainable_parameters"] / training_record["total_parameters"], "%")
    extras = training_record.get("method_extras") or {}
    for name, unit in METHOD_EXTRA_METRICS.items():
        if name in extras:
            put(name, extras[name], unit)
    state_memory = training_record.get("state_memory")
    why = ("not measured: the training session that wrote this record made no optimizer step"
           if "state_memory" in training_record else "not recorded: a training record from before state_memory")
    for key, name in STATE_MEMORY_METRICS.items():
        if state_memory and key not in state_memory:  # a record from before the step peak was measured
            put(name, None, "bytes", note=f"not recorded: a training record from before {key}")
        else:  # the state's bytes are exact anywhere; a step's peak depends on the device's kernels
            put(name, state_memory[key] if state_memory else None, "bytes",
                train_device if key == "step_peak_tensor_bytes" else None, note=why)
    for name, unit in GENERATION_RECORD_METRICS.items():
        put(name, generation_record.get(name), unit, generate_device)
    for phase, record in (("train", training_record), ("generate", generation_record)):
        efficiency = record.get("efficiency")
        if not efficiency:
            continue
        for name, unit in PHASE_UNITS.items():
            if name in efficiency["measured"]:
                put(f"{phase}_{name}", efficiency["measured"][name], unit, efficiency["device"])
            elif name in efficiency["not_measured"]:
                put(f"{phase}_{name}", None, unit, efficiency["device"], note="not measured: " + efficiency["not_measured"][name])

    # Costs, from the measured quantities above and the study's price sheet.
    if costs:
        # A data-parallel run occupies one device per process for its whole training time.
        training_devices = (training_record.get("distributed") or {}).get("world_size") or 1
        for name, (value, unit, note) in cost.run_costs(scores.values, scores.devices, costs, training_devices).items():
            put(name, value, unit, note=note)
    return {
        "metrics": scores.values,
        "units": scores.units,
        "devices": scores.devices,
        "notes": scores.notes,
        "signatures": scores.signatures,
        "cluster_labels": cluster_labels,
        "examples": len(rows),
        "example_scores": scores.example_record(rows),
        "generations_sha256": io.sha256_file(generations_path),
        "device": train_device,
        # What the run was trained with (the report prints every cell's hyper-parameters from these).
        "settings": training_record["settings"],
        # Each stage's own provenance (settings hash, code fingerprint, packages, hardware and its capability facts).
        "provenance": {"train": training_record["provenance"], "generate": generation_record.get("provenance")},
    }


class Scores:
    """A run's metrics as they are put: value (None when undefined, with a note saying why), unit, device; and,
    for a metric that is a mean over test examples, each example's score (`examples`, in the outputs' order: what
    the comparison with the trivial baselines resamples, stats.against_baselines)."""

    def __init__(self):
        self.values, self.units, self.signatures, self.notes, self.devices = {}, {}, {}, {}, {}
        self.examples: dict[str, list[float]] = {}

    def put_examples(self, name, values, unit):
        """A metric that is the mean of per-example scores: the mean (math.fsum) and the scores themselves."""
        values = [float(value) for value in values]
        self.examples[name] = values
        self.put(name, math.fsum(values) / len(values) if values else None, unit)

    def example_record(self, rows) -> dict:
        """The per-example scores as a record keeps them: the example ids, then each metric's scores in that order."""
        return {"ids": [row.get("id") for row in rows], "scores": self.examples}

    def put(self, name, value, unit, device=None, note=None):
        self.units[name] = unit
        if device:
            self.devices[name] = device
        if _finite(value):
            self.values[name] = float(value)
        else:
            self.values[name] = None
            self.notes[name] = note or "undefined for these outputs (e.g. empty or too few)"


def read_outputs(generations_path) -> list[dict]:
    rows = io.read_jsonl(generations_path)
    if not rows:
        raise ValueError(f"{generations_path}: no generations to score")
    return rows


def score_quality(scores: Scores, rows, task: str, settings: Mapping, *, wordnet_dir=None,
                  train_references: Sequence[str] | None = None, source="outputs", decoding: str = "generate"):
    """The task's quality metrics of the outputs (`settings` as metric_settings gives them): a run's or a
    baseline's alike. Returns the outputs' semantic cluster labels (generation), else None."""
    if task == "classification":
        if not train_references:
            raise ValueError(f"{source}: classification needs the training split's labels (the label set)")
        _score_classification(scores, rows, train_references, decoding)
    elif task == "extractive_qa":
        _score_extractive_qa(scores, rows, source)
    elif task == "generation":
        return _score_generation(scores, rows, settings, wordnet_dir, train_references)
    else:
        raise ValueError(f"unknown task {task!r}")
    return None


def _score_generation(scores: Scores, rows, settings, wordnet_dir, train_references) -> list[int]:
    """Quality against the references and diversity of the outputs; returns the outputs' cluster labels."""
    put, signatures = scores.put, scores.signatures
    predictions = [row["prediction"] for row in rows]
    references = [row["reference"] for row in rows]
    score, extra = quality.bleu4(predictions, references)
    put("bleu4", score, QUALITY_UNITS["bleu4"])
    signatures["bleu4"] = extra["signature"]
    rouge, rouge_signatures = quality.rouge_per_example(predictions, references)
    for name, values in rouge.items():
        scores.put_examples(name, values, QUALITY_UNITS[name])
    signatures.update(rouge_signatures)
    if wordnet_dir is not None:
        values, extra = quality.meteor_per_example(predictions, references, quality.wordnet_reader(wordnet_dir))
        scores.put_examples("meteor", values, QUALITY_UNITS["meteor"])
        signatures["meteor"] = extra["signature"]
    else:
        put("meteor", None, QUALITY_UNITS["meteor"], note="not measured: no WordNet database given")
    bert, bert_signatures = quality.bertscore_per_example(predictions, references, settings["bertscore"])
    for name, values in bert.items():
        scores.put_examples(name, values, QUALITY_UNITS[name])
    signatures.update(bert_signatures)

    div = settings["diversity"]
    tokens = [diversity.words(text) for text in predictions]
    stream = [token for output in tokens for token in output]
    put("ttr", diversity.type_token_ratio(stream), "ratio")
    put("mattr", diversity.moving_average_ttr(stream, div["mattr_window"]), "ratio")
    put("yules_k", diversity.yules_k(stream), "K")
    for n in div["distinct_n"]:
        put(f"distinct_{n}", diversity.distinct_n(tokens, n), "ratio")
    if train_references is not None:
        novel = diversity.novel_ngram_rate(tokens, [diversity.words(t) for t in train_references], div["novel_ngram_n"])
        put("novel_ngram_rate", novel, "ratio")
    else:
        put("novel_ngram_rate", None, "ratio", note="not measured: no training references given")
    put("repetition_rate", diversity.repetition_rate(tokens, div["repetition_n"]), "ratio")
    vectors = diversity.embed(predictions, settings["embeddings"]["model"], settings["embeddings"]["batch_size"],
                              settings["embeddings"].get("revision"))
    put("mean_pairwise_cosine", diversity.mean_pairwise_cosine(vectors), "cosine")
    clusters = diversity.semantic_clusters(vectors, div["cluster_distance"])
    put("semantic_clusters", clusters["clusters"], "count")
    put("clusters_per_output", clusters["clusters_per_output"], "ratio")
    put("silhouette", clusters["silhouette"], "-1..1", note="undefined: fewer than 2 clusters, or one per output")
    return clusters["labels"]


def _score_classification(scores: Scores, rows, train_labels, decoding: str) -> None:
    """Accuracy, macro-F1 and per-class P/R/F1 (%) of the generated labels over the training label set."""
    classes = sorted({quality.normalize_label(label) for label in train_labels})
    predicted = [quality.normalize_label(row["prediction"]) for row in rows]
    gold = [quality.normalize_label(row["reference"]) for row in rows]
    values = quality.classification(predicted, gold, classes)
    for name, value in values.items():
        scores.put(name, 100 * value, "%")
    # Accuracy is the mean of each example's correctness (0 or 100), which its comparison with a baseline resamples.
    scores.examples["accuracy"] = [100.0 * (p == g) for p, g in zip(predicted, gold)]
    scores.signatures["accuracy"] = (f"sklearn|label by {decoding}|whitespace-collapsed, casefolded|{len(classes)} classes|"
                              "outside the label set = wrong")


def _score_extractive_qa(scores: Scores, rows, generations_path) -> None:
    """SQuAD v1.1 exact match and F1 (official normalisation), best over each example's gold answers."""
    missing = [row["id"] for row in rows if not row.get("answers")]
    if missing:
        raise ValueError(f"{generations_path}: extractive-QA rows without 'answers' (e.g. id {missing[0]!r})")
    values = quality.squad_per_example([row["prediction"] for row in rows], [row["answers"] for row in rows])
    scores.put_examples("exact_match", values["exact_match"], "%")
    scores.put_examples("squad_f1", values["squad_f1"], "%")
    scores.signatures["exact_match"] = "squad-v1.1|normalize_answer|max over gold answers"


METRICS_COLUMNS = ["study", "dataset", "model", "method", "rank", "seed", "metric", "value", "unit", "device", "note"]


def tidy_rows(run, scored: Mapping) -> list[dict]:
    """One row per (run, metric): the long format every later stage reads."""
    units, devices, notes = scored.get("units", {}), scored.get("devices", {}), scored.get("notes", {})
    return [
        {
            "study": run.study, "dataset": run.dataset, "model": run.model, "method": run.method,
            "rank": "" if run.rank is None else run.rank, "seed": run.seed, "metric": name, "value": value,
            "unit": units.get(name, ""), "device": devices.get(name, ""), "note": notes.get(name, ""),
        }
        for name, value in sorted(scored["metrics"].items())
    ]


def write_metrics_table(path: str | Path, rows: Sequence[Mapping]) -> None:
    io.write_csv(path, ({**row, "value": repr(float(row["value"])) if row["value"] is not None else ""} for row in rows),
                 METRICS_COLUMNS)
