"""The public Hugging Face datasets the study can use, one registry entry each, and their loading.

An entry says everything needed to turn the hub's rows into study records: hub id, config, revision,
licence, task, which columns map to (input, reference) / (text, label) / SQuAD's fields, the label names
of a ClassLabel column (by its integer), a prompt template, which hub splits exist and whether the study
keeps them or re-splits, and the paper's size. A study config names an entry and may override a few keys::

    datasets:
      sentiment:
        registry: sst2          # everything else comes from the entry below
        max_examples: 20000     # optional: max_examples, seed, split, filter, leakage, labels (a subset),
        seed: 42                #           description, domain, generation, revision (pin a commit)

``resolve`` turns such a spec into the full ``source: hub`` spec that ``prepare.prepare_dataset`` reads
(it is idempotent: a resolved spec resolves to itself). Adding a dataset = one entry here + a fixture
under tests/fixtures/hub/<hub id>/ (written by tests/fixtures/hub/make_fixtures.py) + a test.

Loading goes through ``datasets.load_dataset(hub_id, config_name, revision=revision)``. With
``PEFTSTUDY_HUB_MIRROR=<dir>`` set, ``<dir>/<hub id>`` (a copy of the hub repository's files, e.g. from
``hf download --repo-type dataset <hub id> --revision <rev> --local-dir <dir>/<hub id>``) is loaded
instead, with no network: the tests point it at tests/fixtures/hub, and a site can point it at a shared
mirror. A mirror cannot prove which revision it holds, so its files' sha256 are recorded instead.

Revisions: a 40-hex commit pins the data; anything else (``main``, a branch such as
``refs/convert/parquet``) is unpinned, and the manifest says ``pinned: false`` next to the commit the hub
resolved it to at download time. Every entry is pinned except the two whose ``allow_unpinned`` says no
commit is known (e2e_nlg, arxiv_abstracts); a study refuses any other moving ref unless it sets
``allow_unpinned: true``. The pinned commits were seen in public code, not checked against the hub from
here: the first load verifies them (a pinned revision the hub cannot resolve fails, saying what to do).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

MIRROR_ENV = "PEFTSTUDY_HUB_MIRROR"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
LEAKAGE_MODES = ("drop", "fail", "report")


def is_pinned(revision: str | None) -> bool:
    return bool(revision and COMMIT.match(revision))


@dataclass(frozen=True)
class HubDataset:
    name: str
    hub_id: str
    config_name: str | None
    revision: str  # a 40-hex commit (pinned) or a branch (unpinned: see revision_note)
    licence: str
    task: str  # generation | classification | extractive_qa (prepare.TASKS)
    description: str
    # study field -> hub column; "col[0]" indexes a list, "col.key" reads a struct (SQuAD's answers.text).
    # generation/classification: input (or the template's names) and reference; extractive_qa: question,
    # context, answers, answer_start (and title, the group no two splits share).
    fields: Mapping[str, str]
    hub_splits: Mapping[str, int]  # the splits the hub serves -> their documented row counts
    # study split -> hub split(s) kept as they are; None: every hub split pooled and re-split by `split`.
    keep_hub_splits: Mapping[str, tuple[str, ...]] | None = None
    validation_from_train: float | None = None  # with keep_hub_splits lacking validation: carved from train
    split: Mapping[str, float] | None = None  # re-split fractions (None: prepare's 80/10/10)
    label_names: tuple[str, ...] | None = None  # a ClassLabel column's names, by integer
    template: str | None = None  # str.format over the mapped fields, e.g. "{input} <sum>"
    group_by: str | None = None  # a record field whose values never straddle two splits
    windowing: Mapping[str, int] | None = None  # for models that need windows (applied at training time)
    pair: tuple[str, str] | None = None  # two mapped fields forming a sentence pair (kept for pair-aware tokenizers)
    max_examples: int | None = None  # the paper's size, when it gives one
    revision_note: str = ""
    # True only where no commit is known (revision_note says why): studies may use the entry's own moving ref.
    allow_unpinned: bool = False
    notes: str = ""

    @property
    def pinned(self) -> bool:
        return is_pinned(self.revision)

    def spec(self) -> dict:
        """The entry as a prepare spec (plain JSON data)."""
        spec: dict[str, Any] = {
            "registry": self.name, "source": "hub", "hub_id": self.hub_id, "revision": self.revision,
            "description": self.description, "licence": self.licence, "task": self.task,
            "fields": dict(self.fields), "leakage": "drop",
        }
        if self.config_name is not None:
            spec["config_name"] = self.config_name
        if self.keep_hub_splits is not None:
            spec["keep_hub_splits"] = {name: list(hubs) for name, hubs in self.keep_hub_splits.items()}
        if self.validation_from_train is not None:
            spec["validation_from_train"] = self.validation_from_train
        if self.split is not None:
            spec["split"] = dict(self.split)
        if self.label_names is not None:
            spec["label_names"] = list(self.label_names)
            spec["labels"] = list(self.label_names)
        for key in ("template", "group_by", "max_examples"):
            if getattr(self, key) is not None:
                spec[key] = getattr(self, key)
        if self.windowing is not None:
            spec["windowing"] = dict(self.windowing)
        if self.pair is not None:
            spec["pair"] = list(self.pair)
        return spec


UNPINNED = ("unpinned: no commit could be looked up when this entry was written; the manifest records the commit "
            "the hub resolved it to, which is the one to pin")
SEEN_IN_PUBLIC_CODE = ("seen in public code as this repository's revision, not checked against the hub from here; "
                       "verified on first fetch (the prepare step fails, saying what to do, when the hub cannot "
                       "resolve it)")

def glue_pair_task(config: str, description: str, licence: str, labels: tuple[str, str],
                   hub_splits: Mapping[str, int]) -> HubDataset:
    """A GLUE sentence-pair task of nyu-mll/glue (one parquet folder per config)."""
    return HubDataset(
        name=f"glue_{config}", hub_id="nyu-mll/glue", config_name=config,
        revision="bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c", licence=licence,
        task="classification", description=description,
        fields={"sentence1": "sentence1", "sentence2": "sentence2", "reference": "label"},
        template="sentence 1: {sentence1} sentence 2: {sentence2}", pair=("sentence1", "sentence2"),
        label_names=labels, hub_splits=hub_splits,
        keep_hub_splits={"train": ("train",), "test": ("validation",)}, validation_from_train=0.1,
        revision_note=SEEN_IN_PUBLIC_CODE,
        notes=f"parquet per config ({config}/<split>-00000-of-00001.parquet); the hub's test labels are hidden (-1): "
              "those rows are dropped as unlabelled, the hub's validation split is the study's test split (as GLUE "
              "papers report), and a stratified 10% of the hub's train split becomes the validation split; "
              "text-to-text models read the pair as one text (the template), a classifier head whose tokenizer "
              "has a pair template (BERT) as two segments",
    )


REGISTRY: dict[str, HubDataset] = {entry.name: entry for entry in [
    HubDataset(
        name="e2e_nlg", hub_id="tuetschek/e2e_nlg", config_name=None, revision="refs/convert/parquet",
        licence="CC BY-SA 4.0", task="generation",
        description="E2E NLG Challenge: restaurant attributes (meaning representation) -> description",
        fields={"input": "meaning_representation", "reference": "human_reference"},
        hub_splits={"train": 42061, "validation": 4672, "test": 4693}, max_examples=100_000,
        revision_note="unpinned: the repository's main branch still held a loading script (e2e_nlg.py), which "
                      "datasets >= 4 refuses to run; the hub's parquet export (branch refs/convert/parquet, "
                      "default/<split>/0000.parquet) serves the same rows; no commit of that branch is known, so the "
                      "entry stays unpinned (allowed: the manifest records the commit it resolved to)",
        allow_unpinned=True,
        notes="stands in for the paper's product descriptions (100k); each meaning representation has several "
              "references and deduplication keeps one per input, so far fewer than 100k remain",
    ),
    HubDataset(
        name="arxiv_abstracts", hub_id="gfissore/arxiv-abstracts-2021", config_name=None, revision="main",
        licence="CC0 1.0 (arXiv metadata)", task="generation",
        description="arXiv metadata: title -> abstract",
        fields={"input": "title", "reference": "abstract"},
        hub_splits={"train": 1_999_486}, max_examples=75_000, revision_note=UNPINNED, allow_unpinned=True,
        notes="one gzipped JSON-lines file (arxiv-abstracts.jsonl.gz), one split (about 2M rows; the count here "
              "is from memory, not checked): re-split 80/10/10",
    ),
    HubDataset(
        name="coco_karpathy", hub_id="yerevann/coco-karpathy", config_name=None,
        revision="448fdb1bc7b2d09e46881c4541a14d796a3d41e8",
        licence="CC BY 4.0 (COCO annotations)", task="generation",
        description="COCO captions (Karpathy split): one caption -> another caption of the same image",
        fields={"input": "sentences[0]", "reference": "sentences[1]"},
        hub_splits={"train": 82783, "validation": 5000, "test": 5000, "restval": 30504}, max_examples=50_000,
        revision_note=SEEN_IN_PUBLIC_CODE,
        notes="all four hub splits pooled and re-split 80/10/10 (one record per image)",
    ),
    HubDataset(
        name="sst2", hub_id="stanfordnlp/sst2", config_name=None,
        revision="8d51e7e4887a4caaa95b3fbebbf53c0490b58bbb",
        licence="unknown (SST: research use; the hub card declares none)", task="classification",
        description="SST-2 (GLUE): movie-review sentence -> sentiment",
        fields={"input": "sentence", "reference": "label"}, label_names=("negative", "positive"),
        hub_splits={"train": 67349, "validation": 872, "test": 1821},
        keep_hub_splits={"train": ("train",), "test": ("validation",)}, validation_from_train=0.05,
        revision_note="the 'Convert dataset to Parquet (#7)' commit (data/<split>-00000-of-00001.parquet); "
                      "seen in public code; verified on first fetch",
        notes="the hub's test labels are hidden (-1): those rows are dropped as unlabelled, the hub's "
              "validation split is the study's test split (as GLUE papers report), and a stratified 5% of "
              "the hub's train split becomes the validation split",
    ),
    HubDataset(
        name="squad", hub_id="rajpurkar/squad", config_name="plain_text",
        revision="7b6d24c440a36b6815f21b70d25016731768db1f",
        licence="CC BY-SA 4.0", task="extractive_qa",
        description="SQuAD v1.1: question + Wikipedia paragraph -> answer span",
        fields={"id": "id", "title": "title", "context": "context", "question": "question",
                "answers": "answers.text", "answer_start": "answers.answer_start"},
        hub_splits={"train": 87599, "validation": 10570},
        keep_hub_splits={"train": ("train",), "test": ("validation",)}, validation_from_train=0.1,
        group_by="title", windowing={"max_length": 384, "stride": 128},
        revision_note=SEEN_IN_PUBLIC_CODE,
        notes="the hub has no test split (SQuAD's is hidden): its validation split (articles disjoint from "
              "train) is the test split and 10% of the train articles, whole, the validation split; every "
              "gold answer is kept for scoring, the first is the training target",
    ),
    HubDataset(
        name="cnn_dailymail", hub_id="abisee/cnn_dailymail", config_name="3.0.0",
        revision="96df5e686bee6baa90b8bee7c28b81fa3fa6223d",
        licence="Apache 2.0", task="generation",
        description="CNN/DailyMail 3.0.0 (non-anonymised): news article -> highlights",
        fields={"input": "article", "reference": "highlights"}, template="{input} <sum>",
        hub_splits={"train": 287113, "validation": 13368, "test": 11490},
        keep_hub_splits={"train": ("train",), "validation": ("validation",), "test": ("test",)},
        revision_note=SEEN_IN_PUBLIC_CODE,
        notes="seed 004's summarisation prompt: the article followed by the token <sum>; the hub's splits kept",
    ),
    HubDataset(
        name="amazon_polarity", hub_id="fancyzhx/amazon_polarity", config_name="amazon_polarity",
        revision="9d9c45c18f8c3cf1b23a3c27917b60cbf28f3289",
        licence="Apache 2.0 (as the hub card declares)", task="classification",
        description="Amazon review polarity: review title and text -> sentiment",
        fields={"title": "title", "content": "content", "reference": "label"},
        template="title: {title} review: {content}", label_names=("negative", "positive"),
        hub_splits={"train": 3_600_000, "test": 400_000},
        split={"train": 0.7, "validation": 0.15, "test": 0.15},
        revision_note="the 'Convert dataset to Parquet (#3)' commit (amazon_polarity/<split>-*.parquet); "
                      "seen in public code; verified on first fetch",
        notes="seed 004: pooled and re-split 70/15/15, stratified by label; set max_examples (4M rows are "
              "read into memory otherwise)",
    ),
    glue_pair_task("mrpc", "MRPC (GLUE): a pair of news sentences -> whether they are paraphrases",
                   "unknown (MRPC: Microsoft Research Paraphrase Corpus; the hub card declares none)",
                   ("not_equivalent", "equivalent"), {"train": 3668, "validation": 408, "test": 1725}),
    glue_pair_task("rte", "RTE (GLUE): premise and hypothesis sentences -> entailment or not",
                   "unknown (RTE: the PASCAL/TAC RTE challenges' data; the hub card declares none)",
                   ("entailment", "not_entailment"), {"train": 2490, "validation": 277, "test": 3000}),
]}

# A study may set these on a registry dataset; every other key comes from the entry (repeating one with the
# entry's own value is allowed, so a resolved spec resolves to itself).
OVERRIDABLE = {"registry", "description", "domain", "max_examples", "seed", "split", "filter", "leakage",
               "generation", "revision", "labels"}


def get_entry(name: str) -> HubDataset:
    if name not in REGISTRY:
        raise ValueError(f"unknown registry dataset {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def resolve(spec: Mapping) -> dict:
    """A dataset spec with ``registry: <name>`` completed from its entry; other specs are returned as they are."""
    if "registry" not in spec:
        return dict(spec)
    entry = get_entry(spec["registry"])
    base = entry.spec()
    for key, value in spec.items():
        if key in OVERRIDABLE or base.get(key, _MISSING) == value:
            continue
        if key in base:
            raise ValueError(f"registry dataset {entry.name!r}: {key!r} comes from the registry ({base[key]!r});"
                             f" a study may only set {', '.join(sorted(OVERRIDABLE - {'registry'}))}")
        raise ValueError(f"registry dataset {entry.name!r}: unknown key {key!r}"
                         f" (a study may set {', '.join(sorted(OVERRIDABLE - {'registry'}))})")
    resolved = {**base, **spec}
    if "split" in spec and spec["split"] != base.get("split"):
        # A study that gives its own fractions re-splits the pooled hub splits instead of keeping them.
        resolved.pop("keep_hub_splits", None)
        resolved.pop("validation_from_train", None)
    if "labels" in spec and entry.label_names is not None:
        unknown = sorted(set(spec["labels"]) - set(entry.label_names))
        if unknown:
            raise ValueError(f"registry dataset {entry.name!r}: labels {unknown} are not among its label names"
                             f" {list(entry.label_names)}")
    if resolved.get("leakage", "drop") not in LEAKAGE_MODES:
        raise ValueError(f"leakage must be one of {', '.join(LEAKAGE_MODES)}; got {resolved['leakage']!r}")
    return resolved


def resolve_datasets(datasets: Mapping[str, Mapping]) -> dict[str, dict]:
    """A study's ``datasets`` section with every registry dataset resolved (for the config loader)."""
    resolved = {}
    for name, spec in datasets.items():
        try:
            resolved[name] = resolve(spec)
        except ValueError as error:
            raise ValueError(f"datasets.{name}: {error}") from None
    return resolved


_MISSING = object()


# ---------------------------------------------------------------------------- loading


class HubDatasetUnavailable(RuntimeError):
    """The hub dataset is neither cached nor reachable (offline mode, no network, unknown revision)."""


def mirror_path(hub_id: str) -> Path | None:
    """<mirror>/<hub id> when PEFTSTUDY_HUB_MIRROR is set, else None."""
    root = os.environ.get(MIRROR_ENV)
    return Path(root) / hub_id if root else None


def _mirror_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*")
                  if path.is_file() and ".cache" not in path.relative_to(directory).parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_provenance(directory: Path) -> dict:
    """The mirror's files and their sha256 (the revision it holds cannot be checked), plus the commit that
    ``hf download --local-dir`` recorded, when it left its metadata there."""
    files = [{"path": path.relative_to(directory).as_posix(), "bytes": path.stat().st_size, "sha256": _sha256(path)}
             for path in _mirror_files(directory)]
    combined = hashlib.sha256("".join(f"{f['path']}\0{f['sha256']}\n" for f in files).encode()).hexdigest()
    commits = set()
    for metadata in sorted((directory / ".cache" / "huggingface" / "download").rglob("*.metadata")):
        first = metadata.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].strip()
        if COMMIT.match(first):
            commits.add(first)
    return {"path": str(directory), "files": files, "sha256": combined,
            "downloaded_commit": commits.pop() if len(commits) == 1 else None}


def resolved_commit(data) -> str | None:
    """The commit a hub load resolved its revision to: datasets caches a hub dataset under a directory
    named by that commit (<cache>/<owner>___<name>/<config>/<version>/<commit>/), online or offline."""
    try:
        tables = list(data.values()) if hasattr(data, "values") else [data]
        for table in tables:
            for cache_file in getattr(table, "cache_files", None) or []:
                for part in reversed(Path(cache_file["filename"]).parts):
                    if COMMIT.match(part):
                        return part
    except (AttributeError, KeyError, TypeError):
        pass
    return None


def fetch_instructions(spec: Mapping) -> str:
    hub_id, revision = spec["hub_id"], spec["revision"]
    return (f"fetch it once with network access: run this prepare step where the hub can be reached (the "
            f"datasets cache then serves it offline), or download the repository and point {MIRROR_ENV} at it: "
            f"`hf download --repo-type dataset {hub_id} --revision {revision} --local-dir <mirror>/{hub_id}` "
            f"(older huggingface_hub: `huggingface-cli download ...`), then {MIRROR_ENV}=<mirror>")


def pin_advice(spec: Mapping) -> str:
    """What to do when a pinned commit does not resolve: the registry's commits were not checked against the hub."""
    hub_id, revision = spec["hub_id"], spec["revision"]
    where = (f"peftstudy.data.registry entry {spec['registry']!r} (or the study's datasets.<name>.revision)"
             if spec.get("registry") else "the study's datasets.<name>.revision")
    return (f" If the hub cannot resolve the pinned commit {revision} (it was seen in public code, not verified from "
            f"here), look up the commit to use on https://huggingface.co/datasets/{hub_id}/commits/main and set it in "
            f"{where}.")


def load(spec: Mapping, name: str | None = None) -> tuple[Any, dict]:
    """(the DatasetDict, provenance) for a hub spec: from the mirror when PEFTSTUDY_HUB_MIRROR is set, else
    through the hub (or the datasets cache). A dataset that cannot be had raises HubDatasetUnavailable
    naming the study dataset, the hub id and revision, and how to fetch it."""
    hub_id, revision, config = spec["hub_id"], spec["revision"], spec.get("config_name")
    label = f"dataset {name!r} " if name else "dataset "
    provenance: dict[str, Any] = {"hub_id": hub_id, "config_name": config, "revision": revision,
                                  "pinned": is_pinned(revision)}
    local = mirror_path(hub_id)
    from datasets import load_dataset

    if local is not None:
        if not local.is_dir():
            raise HubDatasetUnavailable(
                f"{label}({hub_id}@{revision}): {MIRROR_ENV}={os.environ[MIRROR_ENV]} holds no {local}; "
                + fetch_instructions(spec))
        mirror = mirror_provenance(local)
        # datasets does not notice changed files under unchanged names when a README declares the configs:
        # a cache directory per content hash keeps an updated mirror from being served from a stale cache.
        from datasets import config as datasets_config

        cache_dir = Path(datasets_config.HF_DATASETS_CACHE) / "peftstudy-mirror" / mirror["sha256"][:16]
        data = load_dataset(str(local), config, cache_dir=str(cache_dir))
        provenance.update({"loaded_from": "mirror", "resolved_commit": None, "mirror": mirror})
    else:
        try:
            data = load_dataset(hub_id, config, revision=revision)
        except Exception as error:  # offline, unreachable, unknown revision, gated: all say the same
            offline = {var: os.environ[var] for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if var in os.environ}
            raise HubDatasetUnavailable(
                f"{label}could not be loaded from the Hugging Face Hub: {hub_id} (config {config}, revision "
                f"{revision}) is not in the local datasets cache and the hub could not serve it"
                + (f" (offline mode: {', '.join(f'{k}={v}' for k, v in offline.items())})" if offline else "")
                + f" [{type(error).__name__}: {error}]. To {fetch_instructions(spec)}."
                + (pin_advice(spec) if is_pinned(revision) and not offline else "")) from error
        provenance.update({"loaded_from": "hub", "resolved_commit": resolved_commit(data)})
        found = provenance["resolved_commit"]
        if is_pinned(revision) and found is not None and found != revision:
            raise HubDatasetUnavailable(f"{label}({hub_id}): asked for commit {revision}, the hub served {found}. "
                                        + pin_advice(spec))
    splits = sorted(data)
    provenance["splits"] = {split: len(data[split]) for split in splits}
    return data, provenance


# ---------------------------------------------------------------------------- rows -> records


def hub_field(row: Mapping, path: str):
    """'sentences[0]' -> row['sentences'][0]; 'answers.text' -> row['answers']['text'] (or, for a list of
    structs, [item['text'] for item in row['answers']])."""
    name, dot, key = path.partition(".")
    name, _, index = name.partition("[")
    value = row[name]
    if index:
        value = value[int(index.rstrip("]"))]
    if dot:
        value = [item[key] for item in value] if isinstance(value, list) else value[key]
    return value


def class_label_names(table, column: str) -> list[str] | None:
    feature = getattr(table, "features", {}).get(column) if hasattr(table, "features") else None
    names = getattr(feature, "names", None)
    return list(names) if names else None


def records_from_hub(data, spec: Mapping, task: str) -> tuple[list[dict], dict[str, int]]:
    """Study records from every split of a loaded hub dataset, ids '<hub split>-<row:08d>', plus the count
    of unlabelled rows per split (a ClassLabel of -1, as SST-2's hidden test labels), which are skipped."""
    fields = spec["fields"]
    template, label_names = spec.get("template"), spec.get("label_names")
    records, unlabelled = [], {}
    for split in sorted(data):
        table = data[split]
        if task == "classification" and label_names:
            declared = class_label_names(table, fields["reference"])
            if declared is not None and declared != list(label_names):
                raise ValueError(f"{spec['hub_id']} split {split!r}: the hub's ClassLabel names {declared} differ"
                                 f" from the registry's {list(label_names)}")
        for index, row in enumerate(table):
            record_id = f"{split}-{index:08d}"
            if task == "extractive_qa":
                records.append(_qa_record(record_id, row, fields))
                continue
            values = {key: hub_field(row, column) for key, column in fields.items()}
            reference = values.pop("reference")
            if label_names and isinstance(reference, int) and not isinstance(reference, bool):
                if not 0 <= reference < len(label_names):
                    unlabelled[split] = unlabelled.get(split, 0) + 1
                    continue
                reference = label_names[reference]
            if template:
                text = None if any(value in (None, "") for value in values.values()) else template.format(**values)
            else:
                text = values["input"]
            record = {"id": record_id, "input": text, "reference": reference}
            if spec.get("pair"):  # BERT's classifier reads the two sentences as its two segments
                record["pair"] = [" ".join(str(values[name] or "").split()) for name in spec["pair"]]
            records.append(record)
    return records, unlabelled


def _qa_record(record_id: str, row: Mapping, fields: Mapping[str, str]) -> dict:
    """SQuAD v1.1's shape, as the Debian-derived QA corpus writes it: every gold answer kept for scoring,
    the first one the training target; offsets index the context as written."""
    question, context = hub_field(row, fields["question"]), hub_field(row, fields["context"])
    answers = list(hub_field(row, fields["answers"]) or [])
    starts = [int(start) for start in hub_field(row, fields["answer_start"]) or []]
    record = {"id": record_id, "input": f"question: {question} context: {context}",
              "reference": answers[0] if answers else None, "question": question, "context": context,
              "answers": answers, "answer_start": starts}
    if "title" in fields:
        record["title"] = hub_field(row, fields["title"])
    if "id" in fields:
        record["hub_row_id"] = hub_field(row, fields["id"])
    return record


def describe(entries: Iterable[HubDataset] | None = None) -> list[dict]:
    """The registry as plain data (for documentation and the report)."""
    return [{"name": e.name, "hub_id": e.hub_id, "config_name": e.config_name, "revision": e.revision,
             "pinned": e.pinned, "licence": e.licence, "task": e.task, "hub_splits": dict(e.hub_splits),
             "max_examples": e.max_examples, "revision_note": e.revision_note, "allow_unpinned": e.allow_unpinned,
             "notes": e.notes}
            for e in (entries if entries is not None else REGISTRY.values())]
