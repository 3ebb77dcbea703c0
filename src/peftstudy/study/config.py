"""The study specification: loading, validation and expansion into runs.

A study config is checked twice at start-up: structurally by the JSON schema in
``study.schema.yaml`` (package data, beside this module) (unknown keys rejected) and semantically
here (every name a matrix block uses must be declared). Errors name the file and
the key path, so a typo stops the workflow before anything is written.

What a method kind accepts and where it can run is the method's to say (``peftstudy.methods``:
``Method.options``, ``required_options``, ``trains_heads``, ``not_applicable``): the schema's method
entries are completed from the registry when it is loaded, and the checks here read the registry.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping

import yaml

from peftstudy.baselines import BASELINES
from peftstudy.data import user_files
from peftstudy.data.prepare import dataset_task
from peftstudy.data.registry import get_entry as get_dataset_entry
from peftstudy.data.registry import is_pinned, resolve_datasets
from peftstudy.execution.cluster import validate_resources
from peftstudy.methods import METHODS, get_method
from peftstudy.modeling import heads
from peftstudy.modeling.families import GENERIC_FAMILIES, SCRATCH_FAMILIES
from peftstudy.modeling.registry import (
    PACKAGED_SCORING_NAMES,
    ModelRegistryError,
    resolve,
)
from peftstudy.study.claims import validate_claims
from peftstudy.study.matrix import is_excluded
from peftstudy.study.settings import cell_head, method_options, training_settings

SCHEMA_PATH = Path(__file__).with_name("study.schema.yaml")  # package data: a clone or an installed wheel alike
# Method kinds that read a family's layer layout beyond its target modules: refused on the generic families.
NEEDS_FAMILY_LAYOUT = {"ia3": "the feed-forward output layers of the family", "ft_top_k": "the family's block layout"}

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
    # Cells against the trivial baselines: bootstrap over test examples (stats.against_baselines).
    "against_baselines": {"resamples": 2000, "seed": 0},
}



class StudyConfigError(ValueError):
    """A study config that cannot run; the message names the file and the key."""


# libyaml's loader is several times faster than the pure-Python one; the dry run parses every study.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema(schema_path: Path = SCHEMA_PATH) -> dict:
    """The study schema: the file, its method entries completed from the method registry (add_method_options)
    and its baseline kinds from the baseline registry."""
    with open(schema_path, encoding="utf-8") as handle:
        schema = add_method_options(yaml.load(handle, Loader=YAML_LOADER))
    schema["properties"]["baselines"]["additionalProperties"]["properties"]["kind"]["enum"] = list(BASELINES)
    return schema


def add_method_options(schema: dict) -> dict:
    """Put each registered method in the schema's method entries: its kind, its options' JSON-schema fragments
    (a key every kind that accepts it declares alike; which kind accepts which key is _check_references'),
    and the options it requires."""
    entry = schema["properties"]["methods"]["additionalProperties"]
    entry["properties"]["kind"] = {"enum": list(METHODS)}
    for method in METHODS.values():
        for name, fragment in method.options.items():
            entry["properties"].setdefault(name, copy.deepcopy(dict(fragment)))
    requiring: dict[tuple[str, ...], list[str]] = {}
    for kind, method in METHODS.items():
        if method.required_options:
            requiring.setdefault(tuple(method.required_options), []).append(kind)
    entry.setdefault("allOf", []).extend(
        {"if": {"properties": {"kind": {"enum": kinds}}}, "then": {"required": list(required)}}
        for required, kinds in requiring.items())
    return schema


# A study file is a few tens of kB (the largest shipped one: 23 kB); a file far larger is a mistake (a data file
# given as the config), and anchors/aliases must not expand a small file into a huge tree (a "billion laughs"
# file would make the schema validation walk 10^9 values).
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_VALUES = 200_000


class _StudyLoader(YAML_LOADER):
    """The YAML loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given on line {first[key] + 1})", key_node.start_mark)
                first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _expanded_size(value: Any, limit: int) -> int:
    """How many values the document holds with every alias expanded, counted up to just past ``limit``; each shared
    container is sized once (memo), so a billion-laughs file is measured in a few thousand steps."""
    sizes: dict[int, int] = {}

    def size(item: Any) -> int:
        if not isinstance(item, (dict, list)):
            return 1
        if id(item) not in sizes:
            children = item.items() if isinstance(item, dict) else enumerate(item)
            total = 1
            for key, child in children:
                total += size(key) + size(child) if isinstance(item, dict) else size(child)
                if total > limit:
                    break
            sizes[id(item)] = min(total, limit + 1)
        return sizes[id(item)]

    return size(value)


def read_yaml(path: str | Path) -> Any:
    """Parse YAML, reporting syntax errors with the file and line; a key given twice, a file over MAX_CONFIG_BYTES,
    bytes that are not UTF-8 and aliases expanding past MAX_CONFIG_VALUES values are refused."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise StudyConfigError(f"{path}: {size:,} bytes, over the {MAX_CONFIG_BYTES:,} bytes a study config may"
                                   f" have: is it a study file?")
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
        loaded = yaml.load(text, Loader=_StudyLoader)
    except FileNotFoundError:
        raise StudyConfigError(f"{path}: study config not found") from None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise StudyConfigError(f"{path}:{line}: not UTF-8 (byte offset {error.start}: {error.reason})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise StudyConfigError(f"{path}{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if _expanded_size(loaded, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise StudyConfigError(f"{path}: its anchors and aliases expand to more than {MAX_CONFIG_VALUES:,} values"
                               f" (an alias bomb?); write the values out or use fewer aliases")
    return loaded


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


def validate_study(raw: Any, source: str | Path, *, inherited: Collection[str] = ()) -> dict:
    """Validate a parsed study config and return it with defaults filled in (``inherited``: the top-level keys it
    took from the study it extends)."""
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{source}: a study config must be a mapping of keys, got {type(raw).__name__}")
    validator = _study_validator(tuple((kind, id(method)) for kind, method in METHODS.items()))
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # The deepest error is the most specific one (the innermost offending key).
        best = max(errors, key=lambda e: len(e.absolute_path))
        while best.validator in ("oneOf", "anyOf") and best.context:
            # A value that fits none of the alternatives: the error of the alternative of its own type, deepest first.
            fitting = [e for e in best.context if e.validator != "type"] or list(best.context)
            best = max(fitting, key=lambda e: len(e.absolute_path))
        raise StudyConfigError(f"{source}: {_schema_message(best)}")
    study = copy.deepcopy(raw)

    try:
        study["datasets"] = resolve_datasets(study["datasets"])
    except ValueError as error:
        raise StudyConfigError(f"{source}: {error}") from None

    for name, model in study["models"].items():
        try:
            study["models"][name] = resolve(model, key=f"models.{name}")
        except ModelRegistryError as error:
            raise StudyConfigError(f"{source}: {error}") from None
    _check_pinned(study, source)
    study["statistics"] = {**STATISTICS_DEFAULTS, **study.get("statistics", {})}
    for section in ("rank_study", "against_baselines"):
        study["statistics"][section] = {**STATISTICS_DEFAULTS[section], **study["statistics"][section]}
    study.setdefault("exclusions", [])
    study.setdefault("overrides", [])
    study.setdefault("corpora", {})
    study.setdefault("report", {})
    _check_references(study, source, inherited)
    # A model's own target modules (models.<m>.target_modules.<kind>) apply to its cells, before the study's
    # overrides: the first overrides, so an override the study states still wins.
    study["overrides"] = [{"model": model, "method": method, "options": {"target_modules": list(targets[spec["kind"]])}}
                          for model, targets in ((m, s.get("target_modules") or {}) for m, s in study["models"].items())
                          for method, spec in study["methods"].items() if spec["kind"] in targets
                          and not any(o.get("model") == model and o.get("method") == method
                                      and o.get("options", {}).get("target_modules") == list(targets[spec["kind"]])
                                      for o in study["overrides"])] + study["overrides"]
    study["report"].setdefault("table1_dataset", study["matrix"][0]["datasets"][0])
    _resolve_seeds(study, source)  # last: a cell that cannot run at all is named first
    return study


def unpinned_sources(study: Mapping) -> list[tuple[str, str | None, bool]]:
    """(key, revision, allowed by its registry entry) of every hub model, dataset and metric model of a resolved
    study whose revision is not a 40-hex commit; local models and datasets (scratch, snapshot, package,
    synthetic) have nothing to pin."""
    found = []
    for name, spec in study["datasets"].items():
        if spec.get("source") == "hub" and not is_pinned(spec.get("revision")):
            entry = get_dataset_entry(spec["registry"]) if "registry" in spec else None
            allowed = bool(entry and entry.allow_unpinned and spec.get("revision") == entry.revision)
            found.append((f"datasets.{name}.revision", spec.get("revision"), allowed))
    for name, spec in study["models"].items():
        hub = spec.get("source") == "hub" or (spec.get("source") == "warm_start" and not spec.get("package"))
        if hub and not is_pinned(spec.get("revision")):
            found.append((f"models.{name}.revision", spec.get("revision"), False))
    for section in ("bertscore", "embeddings"):
        settings = (study.get("metrics") or {}).get(section) or {}
        model = settings.get("model")
        if model and model not in PACKAGED_SCORING_NAMES \
                and not is_pinned(settings.get("revision")):
            found.append((f"metrics.{section}.revision", settings.get("revision"), False))
    return found


def _check_pinned(study: Mapping, source: str | Path) -> None:
    """A moving ref (main, a branch, a tag) changes what a study measures without a trace: refused unless the
    study says allow_unpinned: true (the report then marks those models and datasets)."""
    if study.get("allow_unpinned"):
        return
    for key, revision, allowed in unpinned_sources(study):
        if not allowed:
            raise StudyConfigError(
                f"{source}: {key}: {revision!r} is not a pinned revision (a 40-hex commit): set it to the commit to "
                "use (a fetched model's results/bases/<model>/base.json and a dataset's manifest name the commit "
                "they resolved to), or set allow_unpinned: true at the top of the study to run at a moving ref "
                "(the report marks it)")


@functools.lru_cache(maxsize=4)
def _study_validator(registry: tuple):
    """The schema's validator, built once per process for a given method registry (its kinds and their objects):
    a dry run validates every study of the checkout, and building it took as long as validating one."""
    import jsonschema

    return jsonschema.Draft202012Validator(load_schema())


def _option_problem(fragment: Mapping | None, value: Any) -> str | None:
    """Why a method option's value breaks its JSON-schema fragment (the first reason), or None."""
    if fragment is None:
        return None
    import jsonschema

    error = next(iter(jsonschema.Draft202012Validator(fragment).iter_errors(value)), None)
    return None if error is None else error.message


def _check_selections_match(study: dict, fail, inherited: Collection[str]) -> None:
    """An override or exclusion that selects no cell of the matrix is a typo that would silently change nothing;
    the matrix must keep a run. Entries a study takes from the one it extends may select cells of that one only,
    and an exclusion may also declare a cell its method cannot run on (Method.not_applicable), for the report."""
    cells = {(dataset, model, method) for block in study["matrix"] for dataset in block["datasets"]
             for model in block["models"] for method in block["methods"]}

    def selects(entry: Mapping, cell: tuple) -> bool:
        return all(entry.get(axis) in (None, value) for axis, value in zip(("dataset", "model", "method"), cell))

    if "exclusions" not in inherited:
        for index, exclusion in enumerate(study["exclusions"]):
            method, model = exclusion.get("method"), exclusion.get("model")
            documents = (method is not None and model is not None and get_method(
                study["methods"][method]["kind"]).not_applicable.get(study["models"][model]["family"]))
            if not documents and not any(selects(exclusion, cell) for cell in cells):
                fail(f"exclusions[{index}]", "excludes no cell of the matrix (check its dataset, model and method)")
    running = {cell for cell in cells if is_excluded(study, *cell) is None}
    if not running:
        fail("matrix", "every cell is excluded: the study has no run")
    if "overrides" not in inherited:
        for index, override in enumerate(study["overrides"]):
            if not any(selects(override, cell) for cell in running):
                fail(f"overrides[{index}]", "selects no cell of the matrix that runs (check its dataset, model and"
                                            " method)")


def _resolve_seeds(study: dict, source: str | Path) -> None:
    """``seeds`` as the list of every seed a cell may run, and the adaptive design (None for a fixed list) as
    ``adaptive_seeds``: min, max, alpha, the practical thresholds it decides by and the metrics that have one."""
    seeds = study["seeds"]
    if isinstance(seeds, list):
        study["adaptive_seeds"] = None
        return

    def fail(key: str, message: str) -> None:
        raise StudyConfigError(f"{source}: {key}: {message}")

    plan, statistics = seeds["adaptive"], study["statistics"]
    if plan["min"] > plan["max"]:
        fail("seeds.adaptive.min", f"{plan['min']} is above max ({plan['max']})")
    values = seeds.get("values") or list(range(1, plan["max"] + 1))
    if len(values) != plan["max"]:
        fail("seeds.values", f"{len(values)} seeds for max {plan['max']}: give as many seeds as max, in the order "
                             "cells get them")
    practical = plan.get("practical", "statistics")
    thresholds = dict(statistics["practical_thresholds"] if practical == "statistics" else practical)
    metrics = [metric for metric in statistics["compare_metrics"] if metric in thresholds]
    if not metrics:
        fail("seeds.adaptive.practical", "no metric of statistics.compare_metrics has a practical threshold, so no "
                                         "comparison could ever settle as equivalent; give thresholds for some")
    baseline, with_baseline = statistics["baseline_method"], set()
    for block in study["matrix"]:
        if "seeds" not in block and baseline in block["methods"]:
            with_baseline.update((d, m) for d in block["datasets"] for m in block["models"]
                                 if not is_excluded(study, d, m, baseline))
    for index, block in enumerate(study["matrix"]):
        for cell in ((d, m) for d in block["datasets"] for m in block["models"] if "seeds" not in block):
            if cell not in with_baseline:
                fail(f"matrix[{index}]", f"cell ({', '.join(cell)}) adapts its seeds but the baseline method "
                                         f"{baseline!r} (statistics.baseline_method) runs in no adaptive block of it: "
                                         "its comparisons are against that method (or give the block its own seeds)")
    study["seeds"] = list(values)
    study["adaptive_seeds"] = {"min": plan["min"], "max": plan["max"], "alpha": plan.get("alpha", 0.05),
                               "practical": thresholds, "metrics": metrics,
                               "full_grid": bool(seeds.get("full_grid", False))}


def _check_references(study: dict, source: str | Path, inherited: Collection[str] = ()) -> None:
    def fail(key: str, message: str) -> None:
        raise StudyConfigError(f"{source}: {key}: {message}")

    for axis, section in (("datasets", "datasets"), ("models", "models"), ("methods", "methods")):
        for index, block in enumerate(study["matrix"]):
            for position, name in enumerate(block[axis]):
                if name not in study[section]:
                    known = ", ".join(sorted(study[section]))
                    fail(f"matrix[{index}].{axis}[{position}]", f"unknown {axis[:-1]} {name!r} (declared: {known})")
    for name, model in study["models"].items():
        for kind in model.get("target_modules") or {}:
            if kind not in METHODS or "target_modules" not in METHODS[kind].options:
                fail(f"models.{name}.target_modules.{kind}", "not a method kind that takes target_modules (those: "
                     f"{', '.join(sorted(k for k, m in METHODS.items() if 'target_modules' in m.options))})")
        if model["family"] in GENERIC_FAMILIES and model.get("source") not in ("hub", None):
            fail(f"models.{name}.source", f"family {model['family']} is a hub model's (source hub): the package "
                                          "builds and pretrains only its own families")
        if model.get("source") in ("scratch", "snapshot") and model["family"] not in SCRATCH_FAMILIES:
            fail(f"models.{name}.family", f"source {model['source']} builds and pretrains only the families "
                                          f"{', '.join(SCRATCH_FAMILIES)}, not {model['family']!r}")
        corpus = model.get("pretraining", {}).get("corpus")
        if corpus is not None and corpus not in study["corpora"]:
            fail(f"models.{name}.pretraining.corpus", f"unknown corpus {corpus!r} (declare it under 'corpora')")
    for name, corpus in study["corpora"].items():
        for position, dataset in enumerate((corpus.get("decontaminate") or {}).get("datasets", [])):
            if dataset not in study["datasets"]:
                fail(f"corpora.{name}.decontaminate.datasets[{position}]", f"unknown dataset {dataset!r}")
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
            accepted = set(get_method(kind).options)
            extra = sorted(set(override.get("options", {})) - accepted - {"kind"} | (
                {"ranks"} & set(override.get("options", {}))))
            if extra:
                fail(f"overrides[{index}].options.{extra[0]}", f"not a per-cell option of method {method!r} (kind "
                     f"{kind!r}; its options: {', '.join(sorted(accepted - {'ranks'})) or 'none'})")
            for option, value in override.get("options", {}).items():  # the values the method's entry could take
                problem = _option_problem(get_method(kind).options.get(option), value)
                if problem:
                    fail(f"overrides[{index}].options.{option}", f"{problem} (for method {method!r})")
    for name, spec in study["datasets"].items():
        try:
            task = dataset_task(spec)
        except ValueError as error:
            fail(f"datasets.{name}.task", str(error))
        if task == "classification" and "labels" not in spec:
            fail(f"datasets.{name}.labels", "a classification dataset declares its label set (the classes scored)")
        if "labels" in spec and task != "classification":
            fail(f"datasets.{name}.labels", f"a label set only applies to classification (this dataset's task: {task})")
        if spec.get("source") == "files":
            for key, message in user_files.spec_problems(spec, task):
                fail(f"datasets.{name}.{key}", message)
    for name, spec in study["methods"].items():
        accepted = set(get_method(spec["kind"]).options)
        extra = sorted(set(spec) - {"kind", "description", "training"} - accepted)
        if extra:
            allowed = ", ".join(sorted(accepted)) or "none"
            fail(f"methods.{name}.{extra[0]}", f"not an option of method kind {spec['kind']!r} (its options: {allowed})")
        for key, problem in getattr(get_method(spec["kind"]), "spec_problems", lambda _: [])(spec):
            fail(f"methods.{name}.{key}", problem)  # kind peft: the tuner's own config fields
    for index, block in enumerate(study["matrix"]):
        for dataset in block["datasets"]:
            task = dataset_task(study["datasets"][dataset])
            for model in block["models"]:
                for method in block["methods"]:
                    if is_excluded(study, dataset, model, method) is not None:
                        continue
                    try:
                        cell_head(study["models"][model], study["datasets"][dataset], task,
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
                spec = study["methods"][method]
                if family in GENERIC_FAMILIES and spec["kind"] in NEEDS_FAMILY_LAYOUT:
                    fail(f"matrix[{index}]", f"method {method!r} cannot run on model {model!r}: kind {spec['kind']!r}"
                                             f" needs {NEEDS_FAMILY_LAYOUT[spec['kind']]}, unknown for family {family}")
                if family in GENERIC_FAMILIES and "target_modules" in get_method(spec["kind"]).options \
                        and not isinstance(spec.get("target_modules"), list) \
                        and spec["kind"] not in (study["models"][model].get("target_modules") or {}):
                    fail(f"models.{model}.target_modules.{spec['kind']}", f"family {family}: name the modules method "
                         f"kind {spec['kind']!r} adapts on this model (e.g. [q_proj, v_proj]); the package knows "
                         "only its own families' layers")
                kind = get_method(spec["kind"])
                reason = kind.not_applicable.get(family) or getattr(kind, "family_problem", lambda *_: None)(
                    spec, family)
                if reason and not any(is_excluded(study, d, model, method) is not None for d in block["datasets"]):
                    fail(f"matrix[{index}]", f"method {method!r} cannot run on model {model!r} ({reason});"
                                             f" declare it under 'exclusions' with that reason")
    _check_selections_match(study, fail, inherited)
    for problem in validate_resources(study):
        fail(*problem.split(": ", 1))
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
    for name, spec in (study.get("baselines") or {}).items():
        if "text" in spec and spec["kind"] != "constant":
            fail(f"baselines.{name}.text", f"only a constant baseline takes a text (this one is {spec['kind']!r})")
    table1 = study["report"].get("table1_dataset")
    if table1 is not None and table1 not in study["datasets"]:
        fail("report.table1_dataset", f"unknown dataset {table1!r}")


def load_study(path: str | Path) -> dict:
    raw = read_with_extends(Path(path))
    inherited = set(raw) - set(read_yaml(path)) if isinstance(raw, dict) and "extends" in raw else set()
    return validate_study(raw, path, inherited=inherited)


def read_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """A study file, its top-level keys laid over those of the file its `extends` names (same directory): a variant
    of a study (demo_methods of demo) states only what differs, and shares the datasets and models by definition."""
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    parent = path.parent / str(raw["extends"])
    if parent.resolve() in {p.resolve() for p in (*seen, path)}:
        raise StudyConfigError(f"{path}: extends: {raw['extends']!r} makes a cycle")
    if not parent.is_file():
        raise StudyConfigError(f"{path}: extends: {raw['extends']!r} is not a study file next to it")
    base = read_with_extends(parent, (*seen, path))
    if not isinstance(base, dict):
        raise StudyConfigError(f"{parent}: a study must be a mapping of keys")
    return {**{key: value for key, value in base.items() if key != "extends"}, **raw}


def load_studies(main_file: str | Path, others_dir: str | Path) -> tuple[dict[str, dict], dict[str, Path]]:
    """Every study of a checkout: `main_file` first (config.yaml, or the one --configfile), then each
    `others_dir`/*.yaml in name order. Returns study name -> study and study name -> its file; names are unique and
    the artifacts studies share by name (datasets, corpora, models) must be defined alike."""
    main_file = Path(main_file)
    files = [main_file] + sorted(p for p in Path(others_dir).glob("*.yaml") if p.resolve() != main_file.resolve())
    studies, sources = {}, {}
    for path in files:
        study = load_study(path)
        name = study["study"]
        if name in studies:
            raise StudyConfigError(f"{path}: study name {name!r} is already used by {sources[name]}")
        studies[name], sources[name] = study, path
    problems = shared_definitions_conflicts(studies)
    if problems:
        raise StudyConfigError("\n".join(problems))
    return studies, sources


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
