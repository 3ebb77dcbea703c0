"""The metric catalogue: what every metric of metrics.csv is, written once.

One entry per metric: its name in metrics.csv (or a shell pattern naming a family, e.g. the per-class
``precision[<class>]``), the label tables and figures print, the unit metrics.csv records, how a table shows it
(scale, unit after scaling, decimals), which way is better, and the stage that measures it. The statistics (the
rank study's direction), the claims (how a sentence names a metric) and the report (every header and axis
label) read it from here.

A leaf: it imports nothing of the package (nor torch), so any stage may read it.

Patterns use fnmatch syntax, where ``[[]`` is a literal ``[`` (``tco[[]*`` matches ``tco[pilot]``). A metric
is looked up by its exact name first, then by the patterns in catalogue order. A direction is declared once, on
the entry or on its family: ``bertscore_f1`` declares none and takes ``bertscore_*``'s (stats.direction looks
directions up the same way: exact names, then patterns).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

# The stage that measures a metric (see metrics/scoring.py): the training record, the generation record, the
# scoring of the outputs, or the costs derived from the measured quantities and the study's price sheet.
# "phase": a family measured in every phase (train_*, generate_*) by metrics.efficiency.PhaseMonitor.
STAGES = ("train", "generate", "score", "cost", "phase")
CURRENCY = "currency"  # the unit of a cost: the price sheet's currency


@dataclass(frozen=True)
class Metric:
    """One metric (or family of metrics, when `name` is a pattern)."""

    name: str                        # as in metrics.csv, or an fnmatch pattern
    label: str                       # what a header or axis calls it (unique in the catalogue)
    unit: str                        # the unit metrics.csv records (CURRENCY: the price sheet's)
    stage: str                       # one of STAGES
    scale: float = 1.0               # a shown value is the stored value x scale ...
    display_unit: str = ""           # ... in this unit ("" when a header names none; CURRENCY: the sheet's)
    digits: int | None = None        # decimals shown; None: three significant digits (costs span decades)
    higher_is_better: bool | None = None  # None: none declared here (a family below may declare it)
    phrase: str | None = None        # how a sentence names it (the claims table); None: its metrics.csv name

    @property
    def is_pattern(self) -> bool:
        return any(char in self.name for char in "*?[")

    @property
    def spec(self) -> str:
        """The format spec of a shown value."""
        return ".3g" if self.digits is None else f".{self.digits}f"


_MB = {"scale": 1e-6, "display_unit": "MB"}

CATALOGUE: tuple[Metric, ...] = (
    # -- quality of generated text, against the references (score) --------------------------------------------
    Metric("bleu4", "BLEU-4", "0-100", "score", digits=2, higher_is_better=True, phrase="BLEU-4"),
    Metric("rouge1", "ROUGE-1", "F1 x100", "score", digits=2, higher_is_better=True, phrase="ROUGE-1"),
    Metric("rouge2", "ROUGE-2", "F1 x100", "score", digits=2, higher_is_better=True, phrase="ROUGE-2"),
    Metric("rouge_l", "ROUGE-L", "F1 x100", "score", digits=2, higher_is_better=True, phrase="ROUGE-L"),
    Metric("rouge_lsum", "ROUGE-Lsum", "F1 x100", "score", digits=2, higher_is_better=True),
    Metric("meteor", "METEOR", "0-100", "score", digits=2, higher_is_better=True, phrase="METEOR"),
    Metric("bertscore_precision", "BERTScore P", "0-1", "score", digits=3),
    Metric("bertscore_recall", "BERTScore R", "0-1", "score", digits=3),
    Metric("bertscore_f1", "BERTScore F1", "0-1", "score", digits=3, phrase="BERTScore F1"),
    # the model's likelihood of the test references (generate)
    Metric("perplexity", "Perplexity", "per token", "generate", digits=1, higher_is_better=False, phrase="perplexity"),
    Metric("test_loss", "Test loss", "nats", "generate", digits=3),
    # -- classification and extractive QA (score) ----------------------------------------------------------
    Metric("accuracy", "Accuracy", "%", "score", display_unit="%", digits=1, higher_is_better=True, phrase="accuracy"),
    Metric("macro_f1", "Macro-F1", "%", "score", display_unit="%", digits=1, higher_is_better=True, phrase="macro F1"),
    Metric("invalid_label_rate", "Outside label set", "%", "score", display_unit="%", digits=1),
    Metric("precision[[]*", "Precision", "%", "score", display_unit="%", digits=1),  # per class: precision[<class>]
    Metric("recall[[]*", "Recall", "%", "score", display_unit="%", digits=1),
    Metric("f1[[]*", "F1", "%", "score", display_unit="%", digits=1),
    Metric("exact_match", "Exact match", "%", "score", display_unit="%", digits=1, higher_is_better=True,
           phrase="exact match"),
    Metric("squad_f1", "SQuAD F1", "%", "score", display_unit="%", digits=1, higher_is_better=True, phrase="SQuAD F1"),
    # -- diversity of the outputs (score) -------------------------------------------------------------------
    Metric("ttr", "TTR", "ratio", "score", digits=3),
    Metric("mattr", "MATTR", "ratio", "score", digits=3),
    Metric("yules_k", "Yule's K", "K", "score", digits=0),
    Metric("distinct_1", "Dist-1", "ratio", "score", digits=3),
    Metric("distinct_2", "Dist-2", "ratio", "score", digits=3),
    Metric("novel_ngram_rate", "Novel n-grams", "ratio", "score", digits=3),  # n: metrics.diversity.novel_ngram_n
    Metric("repetition_rate", "Repeats", "ratio", "score", digits=3),
    Metric("mean_pairwise_cosine", "Mean cos", "cosine", "score", digits=3),
    Metric("semantic_clusters", "Clusters", "count", "score", digits=1),
    Metric("clusters_per_output", "Clusters per output", "ratio", "score", digits=3),
    Metric("silhouette", "Silhouette", "-1..1", "score", digits=3),
    # -- size and training (train) --------------------------------------------------------------------------
    Metric("trainable_parameters", "Trainable parameters", "count", "train", digits=0),
    Metric("total_parameters", "Total parameters", "count", "train", digits=0),
    Metric("trainable_percent", "Trainable", "%", "train", display_unit="%", phrase="trainable %"),
    Metric("stored_bytes", "Stored", "bytes", "train", **_MB),
    Metric("base_weight_bytes", "Base weights", "bytes", "train", **_MB, digits=3),  # QLoRA: the quantized base
    Metric("base_weight_bytes_unquantized", "Base weights unquantized", "bytes", "train", **_MB, digits=3),
    # What the method makes a training step hold in weights, gradients and optimizer state (modeling.memory).
    Metric("train_parameter_bytes", "Weights in training", "bytes", "train", **_MB),
    Metric("train_gradient_bytes", "Gradients", "bytes", "train", **_MB),
    Metric("train_optimizer_state_bytes", "Optimizer state", "bytes", "train", **_MB),
    Metric("train_state_bytes", "Training state memory", "bytes", "train", **_MB, higher_is_better=False,
           phrase="training state memory"),
    Metric("train_step_peak_tensor_bytes", "Step peak tensor memory", "bytes", "train", **_MB, higher_is_better=False,
           phrase="peak tensor memory of a training step"),
    Metric("steps", "Steps", "count", "train", digits=0),
    Metric("best_validation_loss", "Best validation loss", "nats/token", "train", digits=3),
    Metric("train_time_s", "Train time", "s", "train", display_unit="s", digits=1, higher_is_better=False,
           phrase="training time"),
    Metric("time_per_step_s", "s/step", "s", "train", digits=3),
    Metric("tokens_per_s", "Tokens/s", "tokens/s", "train", digits=0),
    # -- inference (generate) -------------------------------------------------------------------------------
    Metric("inference_ms_per_example", "Inference time", "ms", "generate", display_unit="ms/example", digits=2,
           phrase="inference time per example"),
    Metric("examples_per_s", "Examples/s", "examples/s", "generate", digits=1),
    # -- efficiency per phase (train_*, generate_*) ---------------------------------------------------------
    Metric("train_peak_memory_bytes", "Train peak memory", "bytes", "train", **_MB, digits=0,
           phrase="peak training memory"),
    Metric("train_peak_memory_reserved_bytes", "Train peak reserved memory", "bytes", "train", **_MB, digits=0),
    Metric("train_energy_kwh", "Train energy", "kWh", "train", display_unit="kWh", digits=4,
           phrase="training energy"),
    Metric("train_gpu_utilization_mean_percent", "Train mean GPU utilisation", "%", "train", display_unit="%",
           digits=0),
    Metric("train_gpu_utilization_max_percent", "Train max GPU utilisation", "%", "train", display_unit="%", digits=0),
    Metric("train_gpu_temperature_mean_c", "Train mean GPU temperature", "C", "train", display_unit="C", digits=0),
    Metric("train_gpu_temperature_max_c", "Train max GPU temperature", "C", "train", display_unit="C", digits=0),
    Metric("generate_peak_memory_bytes", "Generate peak memory", "bytes", "generate", **_MB, digits=0),
    Metric("generate_peak_memory_reserved_bytes", "Generate peak reserved memory", "bytes", "generate", **_MB,
           digits=0),
    Metric("generate_energy_kwh", "Generate energy", "kWh", "generate", display_unit="kWh", digits=4),
    Metric("generate_gpu_utilization_mean_percent", "Generate mean GPU utilisation", "%", "generate", display_unit="%",
           digits=0),
    Metric("generate_gpu_utilization_max_percent", "Generate max GPU utilisation", "%", "generate", display_unit="%",
           digits=0),
    Metric("generate_gpu_temperature_mean_c", "Generate mean GPU temperature", "C", "generate", display_unit="C",
           digits=0),
    Metric("generate_gpu_temperature_max_c", "Generate max GPU temperature", "C", "generate", display_unit="C",
           digits=0),
    # -- families: what any metric of the kind is (matched after every exact name) -------------------------------
    Metric("bertscore_*", "BERTScore", "0-1", "score", digits=3, higher_is_better=True),
    Metric("*_peak_memory_bytes", "Peak memory", "bytes", "phase", **_MB, digits=0, higher_is_better=False),
    Metric("*_energy_kwh", "Energy", "kWh", "phase", display_unit="kWh", digits=4, higher_is_better=False),
    # -- costs, from the measured quantities and the price sheet (cost) -------------------------------------
    Metric("training_cost", "Training cost", CURRENCY, "cost", display_unit=CURRENCY, higher_is_better=False),
    Metric("training_energy_cost", "Training energy cost", CURRENCY, "cost", display_unit=CURRENCY,
           higher_is_better=False),
    Metric("storage_cost_per_month", "Storage cost / month", CURRENCY, "cost", display_unit=CURRENCY,
           higher_is_better=False),
    Metric("inference_cost_per_1000", "Inference cost / 1000", CURRENCY, "cost", display_unit=CURRENCY,
           higher_is_better=False),
    Metric("tco[[]*", "TCO", CURRENCY, "cost", display_unit=CURRENCY, higher_is_better=False),  # tco[<scenario>]
    Metric("roi[[]*", "ROI", "ratio", "cost", digits=2),  # roi[<scenario>]
)

_BY_NAME = {metric.name: metric for metric in CATALOGUE if not metric.is_pattern}
_PATTERNS = tuple(metric for metric in CATALOGUE if metric.is_pattern)
_PARAMETER = re.compile(r"^[^\[]+\[(.*)\]$")  # the <class> or <scenario> of a family member


def entry(metric: str) -> Metric | None:
    """The catalogue entry of a metric: its exact name first, then the first pattern matching it; None if none."""
    if metric in _BY_NAME:
        return _BY_NAME[metric]
    for candidate in _PATTERNS:
        if fnmatch.fnmatchcase(metric, candidate.name):
            return candidate
    return None


def label(metric: str) -> str:
    """The label of a metric ('ROUGE-L'; a family member adds its parameter: 'TCO pilot'); an unknown metric's
    own name."""
    found = entry(metric)
    if found is None:
        return metric
    parameter = _PARAMETER.match(metric) if found.is_pattern else None
    return f"{found.label} {parameter.group(1)}" if parameter else found.label


def heading(metric: str, currency: str | None = None) -> str:
    """Label and shown unit, as a column header or axis label: 'Train peak memory (MB)', 'Accuracy (%)'. A
    cost's unit is `currency` (none when not given)."""
    found = entry(metric)
    unit = found.display_unit if found else ""
    if unit == CURRENCY:
        unit = currency or ""
    return f"{label(metric)} ({unit})" if unit else label(metric)


def phrase(metric: str) -> str:
    """How a sentence names the metric ('exact match'); its metrics.csv name when the catalogue gives none."""
    found = entry(metric)
    return found.phrase if found is not None and found.phrase else metric


def scale(metric: str) -> float:
    found = entry(metric)
    return found.scale if found else 1.0


def digits(metric: str) -> int | None:
    found = entry(metric)
    return found.digits if found else None


def directions() -> dict[str, bool]:
    """name or pattern -> higher is better, for every metric with a declared direction, in catalogue order."""
    return {metric.name: metric.higher_is_better for metric in CATALOGUE if metric.higher_is_better is not None}
