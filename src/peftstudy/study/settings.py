"""Per-run settings: what one training or generation job reads, with every default filled in."""

from __future__ import annotations

from typing import Mapping

from peftstudy.data.prepare import dataset_task
from peftstudy.methods import METHODS, get_method
from peftstudy.modeling import heads
from peftstudy.study.matrix import Run


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


def cell_head(model_spec: Mapping, dataset_spec: Mapping, task: str, training: Mapping, method_kind: str) -> dict:
    """The head of one cell (heads.head_spec), refused (HeadError) where the cell's method cannot train it."""
    kind = heads.head_kind(model_spec, task)
    if kind != "lm" and not get_method(method_kind).trains_heads:
        supported = sorted(name for name, method in METHODS.items() if method.trains_heads)
        raise heads.HeadError(f"method kind {method_kind!r} cannot train a {kind} head yet (supported: "
                              f"{', '.join(supported)}); give the model a text-to-text head (heads: lm)")
    return heads.head_spec(model_spec, dataset_spec, task, training)


def run_settings(study: Mapping, run: Run) -> dict:
    """Everything that determines a training run's result, used as the rule's params.

    Snakemake reruns a job when its params change, so this must hold every setting
    the run depends on and nothing else (no other run's settings).
    """
    method_spec = method_options(study, run.method, run.model, run.dataset)
    training = training_settings(study, run.method, run.model, run.dataset)
    dataset = study["datasets"][run.dataset]
    head = cell_head(study["models"][run.model], dataset, dataset_task(dataset), training, method_spec["kind"])
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


def dataset_generation(study: Mapping, dataset: str) -> dict:
    """The decoding settings of a dataset's test split: the study's, then the dataset's own (a class label needs a
    few tokens, not a paragraph)."""
    return {**study["generation"], **study["datasets"][dataset].get("generation", {})}


def generation_settings(study: Mapping, run: Run) -> dict:
    """Everything that determines a run's generations besides its weights, used as the generate rule's params: the
    decoding settings (the study's, then its dataset's, plus the label set of a classification dataset), the token
    limits of its training settings, its method and model family."""
    dataset = study["datasets"][run.dataset]
    training = training_settings(study, run.method, run.model, run.dataset)
    return {
        "generation": {**dataset_generation(study, run.dataset),
                       **({"labels": dataset["labels"]} if dataset_task(dataset) == "classification" else {})},
        "max_source_tokens": training["max_source_tokens"],
        "max_target_tokens": training["max_target_tokens"],
        "method_spec": run_settings(study, run)["method_spec"],
        "family": study["models"][run.model]["family"],
    }


def base_settings(name: str, spec: Mapping) -> dict:
    """What a base model is made from (the prepare_base rule's params): its name and definition, without the task
    heads, which a study declares for its own runs and which differ between studies sharing the base."""
    return {"name": name, **{key: value for key, value in spec.items() if key != "heads"}}


def declaring_study(studies: Mapping[str, Mapping], section: str, name: str) -> Mapping:
    """The study whose entry for a shared artifact (a dataset, corpus or model under `section`, cached by name
    across studies) gives that artifact's job its resources: the first study, in load order, that declares it."""
    for study in studies.values():
        if name in study.get(section, {}):
            return study
    raise KeyError(f"no study declares {section}.{name}")


class StudyPartError(LookupError):
    """A job read a key of its study that its rule's params leave out."""


class StudyPart(dict):
    """The part of a study that one rule's jobs read, given to them as a param (see study_part).

    A plain dict to Snakemake (same repr, so the same recorded params) and to its readers, except that reading a key
    outside the selection (with [], get or in) raises StudyPartError: a reader that starts reading another key fails
    loudly, naming the key to add to its rule, instead of silently seeing a default.
    """

    def __init__(self, items=(), selected=()):
        super().__init__(items)
        self.selected = frozenset(selected)

    def _check(self, key) -> None:
        if key not in self.selected:
            raise StudyPartError(f"study key {key!r} is not among this rule's params (it has:"
                                 f" {', '.join(sorted(map(str, self.selected)))}); add it to the rule's study_part(...)")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        self._check(key)
        return super().__contains__(key)


def study_part(study: Mapping, paths) -> StudyPart:
    """The keys of `study` that one rule reads, so that editing any other key reruns none of its jobs.

    paths: top-level keys ("methods", "claims"), or "<section>.<key>" for one key of a section ("statistics.alpha",
    "report.table1_dataset"), which the section must then have. A top-level key the study lacks stays absent (its
    readers default it as they would) and the study's name is always included. The selected keys come sorted, so
    that moving a key in the study file changes no part (Snakemake compares params by their repr); the values are
    the study's own, in their order.
    """
    whole, keys_of = {"study"}, {}
    for path in paths:
        section, _, key = path.partition(".")
        if key:
            keys_of.setdefault(section, set()).add(key)
        else:
            whole.add(section)
    if whole & set(keys_of):
        raise ValueError(f"study_part: {', '.join(sorted(whole & set(keys_of)))} selected both whole and by key")
    part = StudyPart(selected=whole | set(keys_of))
    for section in sorted(whole | set(keys_of)):
        if section not in study:
            continue
        value = study[section]
        if section in keys_of:
            missing = sorted(keys_of[section] - set(value))
            if missing:
                raise KeyError(f"study {study.get('study')!r} has no {section}.{missing[0]}")
            value = StudyPart(((key, value[key]) for key in sorted(keys_of[section])), selected=keys_of[section])
        part[section] = value
    return part
