"""The study specification: loading, validation and expansion into runs.

A study config is checked twice at start-up: structurally by the JSON schema in
``workflow/schemas/study.schema.yaml`` (unknown keys rejected) and semantically
here (every name a matrix block uses must be declared). Errors name the file and
the key path, so a typo stops the workflow before anything is written.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from . import heads
from .data.prepare import dataset_task

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "study.schema.yaml"
VARIANT_PATTERN = re.compile(r"^(?P<method>[a-z][a-z0-9_]*)(?:-r(?P<rank>[1-9][0-9]*))?$")

# Seed 000 §5.8's practical-significance thresholds; the metrics compared pairwise and by ANOVA (comparing
# all ~60 recorded metrics would only dilute the corrections and cost minutes).
STATISTICS_DEFAULTS = {
    "confidence": 0.95, "baseline_method": "full", "alpha": 0.05, "correction": "holm", "bootstrap": None,
    "practical_thresholds": {"bleu4": 0.5, "rouge_l": 0.3, "bertscore_f1": 0.02, "train_time_s": "10%"},
    "compare_metrics": ["bleu4", "rouge_l", "meteor", "bertscore_f1", "accuracy", "macro_f1", "exact_match",
                        "squad_f1", "train_time_s", "train_peak_memory_bytes", "train_energy_kwh",
                        "inference_ms_per_example"],
    "rank_study": {"method": "lora", "metrics": ["bleu4", "rouge_l", "bertscore_f1"], "resamples": 2000, "seed": 0},
    "power": 0.8,
}

# Which method-entry keys each kind reads (besides kind, description, training); anything else is an error.
LORA_OPTIONS = {"ranks", "alpha", "dropout", "target_modules", "decoder_rank"}
METHOD_OPTIONS = {
    "full": set(),
    "lora": LORA_OPTIONS,
    "dora": LORA_OPTIONS,
    "adalora": {"ranks", "alpha", "dropout", "target_modules", "init_rank", "orth_reg_weight"},
    "vera": {"ranks", "dropout", "target_modules"},
    "ia3": {"target_modules"},
    "qlora": LORA_OPTIONS | {"bits", "quant_type", "double_quant", "compute_dtype", "gradient_checkpointing"},
    "prefix": {"num_virtual_tokens", "prefix_projection"},
    "prompt": {"num_virtual_tokens", "prompt_init", "prompt_init_text"},
    "bitfit": set(),
    "ft_top_k": {"top_k"},
    "adapter": {"ranks", "style", "non_linearity"},
    "mam": {"ranks", "prefix_length"},
    "unipelt": {"ranks", "prefix_length"},
    "lora_prefix": {"ranks", "alpha", "dropout", "prefix_length"},
}
# Cells that cannot run at all: they must be declared as exclusions, never attempted or silently dropped.
NOT_APPLICABLE = {
    ("bitfit", "t5"): "T5 has no bias parameters: BitFit would train nothing",
    ("bitfit", "llama"): "LLaMA has no bias parameters: BitFit would train nothing",
}


class StudyConfigError(ValueError):
    """A study config that cannot run; the message names the file and the key."""


@dataclass(frozen=True, order=True)
class Run:
    """One training run: the unit every artifact under results/{study}/runs/ belongs to."""

    study: str
    dataset: str
    model: str
    variant: str
    seed: int

    @property
    def method(self) -> str:
        return parse_variant(self.variant)[0]

    @property
    def rank(self) -> int | None:
        return parse_variant(self.variant)[1]

    @property
    def directory(self) -> str:
        return f"results/{self.study}/runs/{self.dataset}/{self.model}/{self.variant}/seed{self.seed}"


def variant_name(method: str, rank: int | None) -> str:
    return method if rank is None else f"{method}-r{rank}"


def parse_variant(variant: str) -> tuple[str, int | None]:
    match = VARIANT_PATTERN.match(variant)
    if not match:
        raise ValueError(f"not a method variant: {variant!r} (expected 'method' or 'method-r<rank>')")
    rank = match.group("rank")
    return match.group("method"), int(rank) if rank else None


# libyaml's loader is several times faster than the pure-Python one; the dry run parses every study.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema(schema_path: Path = SCHEMA_PATH) -> dict:
    with open(schema_path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=YAML_LOADER)


def read_yaml(path: str | Path) -> Any:
    """Parse YAML, reporting syntax errors with the file and line."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=YAML_LOADER)
    except FileNotFoundError:
        raise StudyConfigError(f"{path}: study config not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise StudyConfigError(f"{path}{where}: not valid YAML ({getattr(error, 'problem', error)})") from None


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _schema_message(error) -> str:
    """Turn a jsonschema error into 'key.path: what is wrong' with the offending key named."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"{_key_path(path + unknown[:1])}: unknown key {unknown[0]!r} (allowed here: {allowed})"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{_key_path(path + [missing])}: required key is missing"
    if error.validator == "propertyNames":
        return f"{_key_path(path)}: invalid name {error.instance!r} ({error.message})"
    return f"{_key_path(path)}: {error.message}"


def validate_study(raw: Any, source: str | Path) -> dict:
    """Validate a parsed study config and return it with defaults filled in."""
    import jsonschema

    if not isinstance(raw, dict):
        raise StudyConfigError(f"{source}: a study config must be a mapping of keys, got {type(raw).__name__}")
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # The deepest error is the most specific one (the innermost offending key).
        best = max(errors, key=lambda e: len(e.absolute_path))
        raise StudyConfigError(f"{source}: {_schema_message(best)}")
    study = copy.deepcopy(raw)
    from .data.registry import resolve_datasets
    from .model_registry import ModelRegistryError, resolve

    try:
        study["datasets"] = resolve_datasets(study["datasets"])
    except ValueError as error:
        raise StudyConfigError(f"{source}: {error}") from None

    for name, model in study["models"].items():
        try:
            study["models"][name] = resolve(model, key=f"models.{name}")
        except ModelRegistryError as error:
            raise StudyConfigError(f"{source}: {error}") from None
    study["statistics"] = {**STATISTICS_DEFAULTS, **study.get("statistics", {})}
    study["statistics"]["rank_study"] = {**STATISTICS_DEFAULTS["rank_study"], **study["statistics"]["rank_study"]}
    study.setdefault("exclusions", [])
    study.setdefault("overrides", [])
    study.setdefault("corpora", {})
    study.setdefault("report", {})
    _check_references(study, source)
    study["report"].setdefault("table1_dataset", study["matrix"][0]["datasets"][0])
    return study


def _check_references(study: dict, source: str | Path) -> None:
    def fail(key: str, message: str) -> None:
        raise StudyConfigError(f"{source}: {key}: {message}")

    for axis, section in (("datasets", "datasets"), ("models", "models"), ("methods", "methods")):
        for index, block in enumerate(study["matrix"]):
            for position, name in enumerate(block[axis]):
                if name not in study[section]:
                    known = ", ".join(sorted(study[section]))
                    fail(f"matrix[{index}].{axis}[{position}]", f"unknown {axis[:-1]} {name!r} (declared: {known})")
    for name, model in study["models"].items():
        corpus = model.get("pretraining", {}).get("corpus")
        if corpus is not None and corpus not in study["corpora"]:
            fail(f"models.{name}.pretraining.corpus", f"unknown corpus {corpus!r} (declare it under 'corpora')")
    for index, exclusion in enumerate(study["exclusions"]):
        for axis in ("model", "method", "dataset"):
            value = exclusion.get(axis)
            if value is not None and value not in study[axis + "s"]:
                fail(f"exclusions[{index}].{axis}", f"unknown {axis} {value!r}")
    for index, override in enumerate(study["overrides"]):
        if not any(axis in override for axis in ("model", "method", "dataset")):
            fail(f"overrides[{index}]", "select cells with at least one of model, method, dataset")
        for axis in ("model", "method", "dataset"):
            value = override.get(axis)
            if value is not None and value not in study[axis + "s"]:
                fail(f"overrides[{index}].{axis}", f"unknown {axis} {value!r}")
        for method in [override["method"]] if "method" in override else list(study["methods"]):
            kind = study["methods"][method]["kind"]
            extra = sorted(set(override.get("options", {})) - METHOD_OPTIONS[kind] - {"kind"} | (
                {"ranks"} & set(override.get("options", {}))))
            if extra:
                fail(f"overrides[{index}].options.{extra[0]}", f"not a per-cell option of method {method!r} (kind "
                     f"{kind!r}; its options: {', '.join(sorted(METHOD_OPTIONS[kind] - {'ranks'})) or 'none'})")
    for name, spec in study["datasets"].items():
        try:
            task = dataset_task(spec)
        except ValueError as error:
            fail(f"datasets.{name}.task", str(error))
        if task == "classification" and "labels" not in spec:
            fail(f"datasets.{name}.labels", "a classification dataset declares its label set (the classes scored)")
        if "labels" in spec and task != "classification":
            fail(f"datasets.{name}.labels", f"a label set only applies to classification (this dataset's task: {task})")
    for name, spec in study["methods"].items():
        extra = sorted(set(spec) - {"kind", "description", "training"} - METHOD_OPTIONS[spec["kind"]])
        if extra:
            allowed = ", ".join(sorted(METHOD_OPTIONS[spec["kind"]])) or "none"
            fail(f"methods.{name}.{extra[0]}", f"not an option of method kind {spec['kind']!r} (its options: {allowed})")
    for index, block in enumerate(study["matrix"]):
        for dataset in block["datasets"]:
            task = dataset_task(study["datasets"][dataset])
            for model in block["models"]:
                for method in block["methods"]:
                    if is_excluded(study, dataset, model, method) is not None:
                        continue
                    try:
                        heads.head_spec(study["models"][model], study["datasets"][dataset], task,
                                        training_settings(study, method, model, dataset),
                                        method_options(study, method, model, dataset)["kind"])
                    except heads.HeadError as error:
                        fail(f"matrix[{index}]", f"cell ({dataset}, {model}, {method}): {error}")
        if "ranks" in block:
            declared = {r for m in block["methods"] for r in study["methods"][m].get("ranks", [])}
            missing = sorted(set(block["ranks"]) - declared)
            if missing:
                fail(f"matrix[{index}].ranks", f"rank(s) {missing} not declared by any ranked method of the block")
        for model in block["models"]:
            family = study["models"][model]["family"]
            for method in block["methods"]:
                reason = NOT_APPLICABLE.get((study["methods"][method]["kind"], family))
                if reason and not any(is_excluded(study, d, model, method) is not None for d in block["datasets"]):
                    fail(f"matrix[{index}]", f"method {method!r} cannot run on model {model!r} ({reason});"
                                             f" declare it under 'exclusions' with that reason")
    from .cluster import validate_resources

    for problem in validate_resources(study):
        fail(*problem.split(": ", 1))
    from .claims import validate_claims  # claims reads the run matrix from this module

    try:
        validate_claims(study)
    except ValueError as error:
        fail("claims", str(error))
    ranked = study["statistics"]["rank_study"]["method"]
    if ranked not in study["methods"] or not study["methods"][ranked].get("ranks"):
        fail("statistics.rank_study.method", f"{ranked!r} is not a declared method with ranks")
    baseline = study["statistics"]["baseline_method"]
    if baseline not in study["methods"]:
        fail("statistics.baseline_method", f"unknown method {baseline!r}")
    table1 = study["report"].get("table1_dataset")
    if table1 is not None and table1 not in study["datasets"]:
        fail("report.table1_dataset", f"unknown dataset {table1!r}")


def load_study(path: str | Path) -> dict:
    return validate_study(read_yaml(path), path)


def is_excluded(study: Mapping, dataset: str, model: str, method: str) -> dict | None:
    """Return the exclusion that removes this cell, if any."""
    cell = {"dataset": dataset, "model": model, "method": method}
    for exclusion in study["exclusions"]:
        if all(exclusion.get(axis) in (None, cell[axis]) for axis in cell):
            return exclusion
    return None


def method_variants(study: Mapping, method: str, only_ranks: Iterable[int] | None = None) -> list[str]:
    """The method's variants (one per rank), restricted to ``only_ranks`` when a matrix block gives them."""
    spec = study["methods"][method]
    ranks = spec.get("ranks")
    if not ranks:
        return [method]
    return [variant_name(method, rank) for rank in ranks if only_ranks is None or rank in set(only_ranks)]


def expand_runs(study: Mapping) -> list[Run]:
    """Every run of the study: the union of the matrix blocks, minus declared exclusions."""
    runs = set()
    for block in study["matrix"]:
        for dataset in block["datasets"]:
            for model in block["models"]:
                for method in block["methods"]:
                    if is_excluded(study, dataset, model, method):
                        continue
                    for variant in method_variants(study, method, block.get("ranks")):
                        for seed in block.get("seeds", study["seeds"]):
                            runs.add(Run(study["study"], dataset, model, variant, seed))
    return sorted(runs)


def training_settings(study: Mapping, method: str, model: str | None = None, dataset: str | None = None) -> dict:
    """Training hyper-parameters of one cell: study-wide, then the method's, then matching cell overrides.

    Overrides apply in the order they are listed; each names at least one of model, method and dataset
    (seed 004 tunes the learning rate per model x method cell).
    """
    settings = {**study["training"], **study["methods"][method].get("training", {})}
    cell = {"model": model, "method": method, "dataset": dataset}
    for override in study.get("overrides", []):
        if all(override.get(axis) in (None, cell[axis]) for axis in cell):
            settings.update(override.get("training", {}))
    return settings


def method_options(study: Mapping, method: str, model: str | None = None, dataset: str | None = None) -> dict:
    """The method's options in one cell: its entry's, then the options of matching cell overrides."""
    spec = {k: v for k, v in study["methods"][method].items() if k not in ("training", "ranks", "description")}
    cell = {"model": model, "method": method, "dataset": dataset}
    for override in study.get("overrides", []):
        if all(override.get(axis) in (None, cell[axis]) for axis in cell):
            spec.update(override.get("options", {}))
    return spec


def run_settings(study: Mapping, run: Run) -> dict:
    """Everything that determines a training run's result, used as the rule's params.

    Snakemake reruns a job when its params change, so this must hold every setting
    the run depends on and nothing else (no other run's settings).
    """
    method_spec = method_options(study, run.method, run.model, run.dataset)
    training = training_settings(study, run.method, run.model, run.dataset)
    dataset = study["datasets"][run.dataset]
    head = heads.head_spec(study["models"][run.model], dataset, dataset_task(dataset), training, method_spec["kind"])
    if head["kind"] != "lm":  # the model's classifier or span head, which the method trains with it
        method_spec["head"] = head
    return {
        "dataset": run.dataset,
        "model": run.model,
        "family": study["models"][run.model]["family"],
        "method": run.method,
        "rank": run.rank,
        "method_spec": method_spec,
        "training": training,
        "seed": run.seed,
    }


def shared_definitions_conflicts(studies: Mapping[str, Mapping]) -> list[str]:
    """Datasets, corpora and models are cached by name across studies; one name must mean one thing."""
    problems = []
    for section in ("datasets", "corpora", "models"):
        seen: dict[str, tuple[str, Any]] = {}
        for study_name, study in studies.items():
            for name, definition in study.get(section, {}).items():
                # A model's task heads shape the runs of the study that declares them, not the cached base.
                comparable = {k: v for k, v in definition.items()
                              if k != "description" and not (section == "models" and k == "heads")}
                if name in seen and seen[name][1] != comparable:
                    problems.append(
                        f"{section}.{name} is defined differently in studies {seen[name][0]!r} and {study_name!r};"
                        f" cached artifacts are shared by name, so rename one of them"
                    )
                seen.setdefault(name, (study_name, comparable))
    return problems
