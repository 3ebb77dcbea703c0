"""The metric catalogue: every metric the demo records has an entry, the directions are the ones the statistics always
used, labels are unique, and the statistics, the claims and the report read it rather than tables of their own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from peftstudy.metrics import catalogue

# Every metric of the demo's metrics.csv (before the catalogue) with the unit recorded there (costs: USD, the demo's
# price-sheet currency).
DEMO_METRICS = {
    "accuracy": "%", "base_weight_bytes": "bytes", "base_weight_bytes_unquantized": "bytes", "bertscore_f1": "0-1",
    "bertscore_precision": "0-1", "bertscore_recall": "0-1", "best_validation_loss": "nats/token", "bleu4": "0-100",
    "clusters_per_output": "ratio", "distinct_1": "ratio", "distinct_2": "ratio", "exact_match": "%",
    "examples_per_s": "examples/s", "f1[golang]": "%", "f1[javascript]": "%", "f1[libdevel]": "%", "f1[perl]": "%",
    "f1[python]": "%", "f1[rust]": "%", "generate_energy_kwh": "kWh", "generate_gpu_temperature_max_c": "C",
    "generate_gpu_temperature_mean_c": "C", "generate_gpu_utilization_max_percent": "%",
    "generate_gpu_utilization_mean_percent": "%", "generate_peak_memory_bytes": "bytes",
    "inference_cost_per_1000": "USD", "inference_ms_per_example": "ms", "invalid_label_rate": "%", "macro_f1": "%",
    "mattr": "ratio", "mean_pairwise_cosine": "cosine", "meteor": "0-100", "novel_ngram_rate": "ratio",
    "perplexity": "per token", "precision[golang]": "%", "precision[javascript]": "%", "precision[libdevel]": "%",
    "precision[perl]": "%", "precision[python]": "%", "precision[rust]": "%", "recall[golang]": "%",
    "recall[javascript]": "%", "recall[libdevel]": "%", "recall[perl]": "%", "recall[python]": "%", "recall[rust]": "%",
    "repetition_rate": "ratio", "roi[pilot]": "ratio", "roi[production]": "ratio", "rouge1": "F1 x100",
    "rouge2": "F1 x100", "rouge_l": "F1 x100", "rouge_lsum": "F1 x100", "semantic_clusters": "count",
    "silhouette": "-1..1", "squad_f1": "%", "steps": "count", "storage_cost_per_month": "USD", "stored_bytes": "bytes",
    "tco[pilot]": "USD", "tco[production]": "USD", "test_loss": "nats", "time_per_step_s": "s",
    "tokens_per_s": "tokens/s", "total_parameters": "count", "train_energy_kwh": "kWh",
    "train_gpu_temperature_max_c": "C", "train_gpu_temperature_mean_c": "C", "train_gpu_utilization_max_percent": "%",
    "train_gpu_utilization_mean_percent": "%", "train_peak_memory_bytes": "bytes", "train_time_s": "s",
    "train_parameter_bytes": "bytes", "train_gradient_bytes": "bytes", "train_optimizer_state_bytes": "bytes",
    "train_state_bytes": "bytes", "train_step_peak_tensor_bytes": "bytes",
    "trainable_parameters": "count", "trainable_percent": "%", "training_cost": "USD", "training_energy_cost": "USD",
    "ttr": "ratio", "yules_k": "K",
}

# The directions the rank study used before the catalogue (stats.direction's own table), in its order.
OLD_HIGHER_IS_BETTER = {
    "bleu4": True, "rouge1": True, "rouge2": True, "rouge_l": True, "rouge_lsum": True, "meteor": True,
    "bertscore_*": True, "accuracy": True, "macro_f1": True, "exact_match": True, "squad_f1": True,
    "perplexity": False, "train_time_s": False, "*_peak_memory_bytes": False, "*_energy_kwh": False,
    "training_cost": False, "training_energy_cost": False, "storage_cost_per_month": False,
    "inference_cost_per_1000": False, "tco[[]*": False,
    "train_state_bytes": False,  # added with the metric (issue 19)
    "train_step_peak_tensor_bytes": False,  # added with the metric (issue 19)
}

# How the claims table named metrics before the catalogue (claims.verdicts' own table); any other: its name.
OLD_CLAIM_NAMES = {
    "bleu4": "BLEU-4", "rouge_l": "ROUGE-L", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "meteor": "METEOR",
    "bertscore_f1": "BERTScore F1", "accuracy": "accuracy", "macro_f1": "macro F1", "exact_match": "exact match",
    "squad_f1": "SQuAD F1", "trainable_percent": "trainable %", "train_time_s": "training time",
    "train_peak_memory_bytes": "peak training memory", "train_energy_kwh": "training energy",
    "inference_ms_per_example": "inference time per example", "perplexity": "perplexity",
    "train_state_bytes": "training state memory",  # added with the metric (issue 19)
    "train_step_peak_tensor_bytes": "peak tensor memory of a training step",  # added with the metric (issue 19)
}


def _old_direction(metric: str):
    import fnmatch

    if metric in OLD_HIGHER_IS_BETTER:
        return OLD_HIGHER_IS_BETTER[metric]
    return next((higher for pattern, higher in OLD_HIGHER_IS_BETTER.items() if fnmatch.fnmatchcase(metric, pattern)),
                None)


@pytest.mark.parametrize("metric", sorted(DEMO_METRICS))
def test_every_metric_of_the_demo_has_an_entry_with_its_recorded_unit(metric):
    entry = catalogue.entry(metric)
    assert entry is not None, f"{metric} is not in the metric catalogue"
    assert (entry.unit if entry.unit != catalogue.CURRENCY else "USD") == DEMO_METRICS[metric]
    assert entry.stage in catalogue.STAGES


def test_units_agree_with_what_scoring_records():
    from peftstudy.metrics import scoring

    recorded = {**scoring.QUALITY_UNITS, **scoring.DIVERSITY_UNITS, **scoring.TRAINING_RECORD_METRICS,
                **scoring.GENERATION_RECORD_METRICS, **scoring.METHOD_EXTRA_METRICS,
                **{name: "bytes" for name in scoring.STATE_MEMORY_METRICS.values()},
                **{f"{phase}_{name}": unit for phase in ("train", "generate") for name, unit in scoring.PHASE_UNITS.items()}}
    assert {name: catalogue.entry(name).unit for name in recorded} == recorded


def test_entries_are_unique_with_unique_labels():
    names = [metric.name for metric in catalogue.CATALOGUE]
    labels = [metric.label for metric in catalogue.CATALOGUE]
    assert len(set(names)) == len(names)
    assert len(set(labels)) == len(labels), sorted(label for label in labels if labels.count(label) > 1)
    assert all(metric.stage in catalogue.STAGES for metric in catalogue.CATALOGUE)


def test_directions_are_the_ones_the_statistics_always_used():
    from peftstudy import stats

    assert stats.HIGHER_IS_BETTER == OLD_HIGHER_IS_BETTER == catalogue.directions()
    patterns = [name for name in stats.HIGHER_IS_BETTER if any(c in name for c in "*?[")]
    assert patterns == [name for name in OLD_HIGHER_IS_BETTER if any(c in name for c in "*?[")]  # matched in order
    for metric in [*DEMO_METRICS, "bertscore_other", "pretrain_peak_memory_bytes", "tco[other]", "unknown"]:
        assert stats.higher_is_better(metric) == _old_direction(metric), metric
    # an override still takes precedence over a family, as it did
    assert stats.higher_is_better("train_peak_memory_bytes", {"*_peak_memory_bytes": True}) is True


def test_labels_headings_and_families():
    assert catalogue.label("rouge_l") == "ROUGE-L" and catalogue.label("not_a_metric") == "not_a_metric"
    assert catalogue.label("tco[pilot]") == "TCO pilot" and catalogue.label("f1[python]") == "F1 python"
    assert catalogue.heading("train_peak_memory_bytes") == "Train peak memory (MB)"
    assert catalogue.heading("accuracy") == "Accuracy (%)" and catalogue.heading("bleu4") == "BLEU-4"
    assert catalogue.heading("training_cost", "EUR") == "Training cost (EUR)"
    assert catalogue.heading("training_cost") == "Training cost"
    assert catalogue.scale("stored_bytes") == 1e-6 and catalogue.digits("train_energy_kwh") == 4
    assert catalogue.entry("training_cost").spec == ".3g" and catalogue.entry("bleu4").spec == ".2f"
    assert catalogue.entry("train_peak_memory_bytes").name == "train_peak_memory_bytes"  # exact before the family
    assert catalogue.entry("other_peak_memory_bytes").name == "*_peak_memory_bytes"


def test_claims_name_metrics_as_they_always_did():
    from peftstudy.claims import wording

    for metric in [*DEMO_METRICS, *OLD_CLAIM_NAMES, "unknown"]:
        assert wording.metric_name(metric) == OLD_CLAIM_NAMES.get(metric, metric), metric


def test_the_catalogue_is_a_leaf():
    tree = ast.parse(Path(catalogue.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "fnmatch", "re", "dataclasses"}, imported


def test_readers_take_their_metric_facts_from_the_catalogue():
    from peftstudy import stats
    from peftstudy.claims import verdicts, wording
    from peftstudy.report import figures, metric_tables, stats_tables, tables

    # no table of their own left
    assert not any(hasattr(module, "METRIC_NAMES") for module in (verdicts, wording, stats_tables))
    assert not any(hasattr(tables, name) for name in ("QUALITY_COLUMNS", "QUALITY_COLUMNS_BY_TASK"))
    assert stats.HIGHER_IS_BETTER == catalogue.directions()
    assert stats_tables._metric("exact_match") == "Exact match"
    assert stats_tables._metric("inference_ms_per_example") == catalogue.label("inference_ms_per_example")
    study = {"datasets": {"d": {"source": "snapshot", "corpus": "debian_package_qa"}}, "report": {"table1_dataset": "d"},
             "costs": {"scenarios": [{"name": "pilot", "value_per_1000_requests": 1}]}}
    assert tables.quality_columns(study) == (("exact_match", r"Exact match (\%)"), ("squad_f1", r"SQuAD F1 (\%)"))
    for name in metric_tables.GROUPS:
        for metric, header, scale, digits in metric_tables.group_columns(name, study):
            if metric != "novel_ngram_rate":
                assert (header, scale, digits) == (catalogue.heading(metric), catalogue.scale(metric),
                                                   catalogue.digits(metric))
    assert [c[1] for c in metric_tables.group_columns("cost", study)][-2:] == ["TCO pilot", "ROI pilot"]
    assert figures.EFFICIENCY_METRICS == tuple((m, catalogue.heading(m), catalogue.scale(m)) for m, *_ in
                                               figures.EFFICIENCY_METRICS)
    assert [title for _, title, _ in figures.EFFICIENCY_METRICS] == ["Train peak memory (MB)", "Train time (s)",
                                                                     "Train energy (kWh)"]
