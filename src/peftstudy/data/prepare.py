"""Turn a dataset or corpus spec into the files every later stage reads.

Everything here is deterministic: the same spec (and the same source files) gives
byte-identical outputs, because records are put in id order before any seeded step and
the random streams are seeded from strings (stable across Python runs and platforms).
The manifest is written last, so its presence marks a complete preparation.
"""

from __future__ import annotations

import collections
import gzip
import json
import random
import subprocess
from pathlib import Path
from typing import Iterable, Mapping

from .. import io
from . import synthetic
from .sources import DERIVED, Corpus, get_corpus

SPLITS = ("train", "validation", "test")
# generation: input -> free text; classification: input -> one label (the reference) from a closed set;
# extractive_qa: "question: .. context: .." -> an answer span (SQuAD v1.1 fields kept beside it).
TASKS = ("generation", "classification", "extractive_qa")
DEFAULT_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}
SOURCES = ("snapshot", "system", "synthetic", "hub")
SYNTHETIC_DEFAULT_SIZE = 1000


def normalise(text) -> str:
    """Whitespace collapsed; None (a missing hub field) becomes "" so the record is dropped as empty."""
    return "" if text is None else " ".join(str(text).split())


def words(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------------------- provenance


def debian_version(package: str) -> str | None:
    """Installed version of a Debian package, or None off Debian / when it is not installed."""
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                                capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def describe_file(path: Path) -> dict:
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": io.sha256_file(path)}


def system_provenance(corpus: Corpus, located: Mapping[str, list[Path]]) -> dict:
    return {
        "source_files": [describe_file(path) for role in sorted(located) for path in located[role]],
        "debian_packages": {package: debian_version(package) for package in corpus.packages},
    }


def snapshot_provenance(path: Path, corpus: str) -> dict:
    """The snapshot's own hash plus what its MANIFEST says it was built from."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: snapshot missing (build it with: python -m peftstudy.data.snapshot --out {path.parent})")
    built_from = None
    manifest = path.parent / "MANIFEST.json"
    if manifest.is_file():
        built_from = io.read_json(manifest).get("corpora", {}).get(corpus)
    return {"snapshot": {**describe_file(path), "built_from": built_from}}


# ---------------------------------------------------------------------------- reading


def _check_source(spec: Mapping) -> str:
    source = spec.get("source")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    return source


def _hub_field(row: Mapping, field: str):
    """'sentences[0]' -> row['sentences'][0]: the paper's datasets keep some fields in lists."""
    name, _, rest = field.partition("[")
    value = row[name]
    if rest:
        value = value[int(rest.rstrip("]"))]
    return value


def _hub_records(spec: Mapping) -> tuple[list[dict], dict]:
    """Records from a pinned Hugging Face dataset, all of its splits pooled (we re-split ourselves)."""
    from datasets import load_dataset

    data = load_dataset(spec["hub_id"], spec.get("config_name"), revision=spec["revision"])
    fields = spec["fields"]
    records = [{"id": f"{split}-{index:08d}", "input": _hub_field(row, fields["input"]),
                "reference": _hub_field(row, fields["reference"])}
               for split in sorted(data) for index, row in enumerate(data[split])]
    return records, {"hub": {"hub_id": spec["hub_id"], "revision": spec["revision"],
                             "config_name": spec.get("config_name"), "splits": sorted(data)}}


def dataset_task(spec: Mapping) -> str:
    """The task a dataset spec is for: declared, else its derived corpus's, else generation."""
    derived = DERIVED.get(spec.get("corpus", ""))
    task = spec.get("task") or (derived.task if derived else "generation")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if derived and task != derived.task:
        raise ValueError(f"corpus {derived.name!r} is a {derived.task} corpus; the spec says task {task!r}")
    return task


def snapshot_corpus(name: str) -> str:
    """The corpus whose snapshot file a dataset reads (a derived corpus reads its base's)."""
    return DERIVED[name].base if name in DERIVED else name


def read_records(spec: Mapping, snapshot_dir: Path) -> tuple[list[dict], dict]:
    """(records, provenance) for a dataset spec."""
    source = _check_source(spec)
    derived = DERIVED.get(spec.get("corpus", ""))
    if derived:
        records, provenance = read_records({**spec, "corpus": derived.base}, snapshot_dir)
        return list(derived.derive(records)), {**provenance, "derived": {"corpus": derived.name, "from": derived.base}}
    if source == "hub":
        return _hub_records(spec)
    corpus = get_corpus(spec.get("corpus", ""))
    if corpus.kind != "pairs":
        raise ValueError(f"corpus {corpus.name!r} is a pretraining corpus (plain text), not a fine-tuning dataset")
    if source == "synthetic" or corpus.name == "synthetic":
        size = max(2 * spec.get("max_examples", 0), SYNTHETIC_DEFAULT_SIZE)
        return list(synthetic.pairs(size, spec.get("seed", 0))), {"synthetic": {"size": size}}
    if source == "snapshot":
        path = Path(snapshot_dir) / f"{corpus.name}.jsonl.gz"
        provenance = snapshot_provenance(path, corpus.name)
        return io.read_jsonl(path), provenance
    located = corpus.locate(spec.get("paths"))
    return list(corpus.parse(located)), system_provenance(corpus, located)


def read_text_lines(spec: Mapping, snapshot_dir: Path) -> tuple[list[str], dict]:
    """(lines, provenance) for a pretraining-corpus spec."""
    source = _check_source(spec)
    corpus = get_corpus(spec.get("corpus", ""))
    if source == "synthetic" or corpus.name == "synthetic":
        size = max(spec.get("max_lines", 0), 5 * SYNTHETIC_DEFAULT_SIZE)
        return list(synthetic.lines(size, spec.get("seed", 0))), {"synthetic": {"size": size}}
    if corpus.kind != "text" or source == "hub":
        raise ValueError(f"corpus {corpus.name!r} from source {source!r} is not a pretraining text corpus")
    if source == "snapshot":
        path = Path(snapshot_dir) / f"{corpus.name}.txt.gz"
        provenance = snapshot_provenance(path, corpus.name)
        return read_gzip_lines(path), provenance
    located = corpus.locate(spec.get("paths"))
    return list(corpus.parse(located)), system_provenance(corpus, located)


def read_gzip_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


# ---------------------------------------------------------------------------- cleaning


def clean_and_filter(records: Iterable[Mapping], rules: Mapping | None,
                     labels: Iterable[str] | None = None) -> tuple[list[dict], dict[str, int]]:
    """Normalise whitespace, then drop records that are empty, outside the word limits or (classification)
    labelled outside the declared label set. Task fields (SQuAD's context, answers, ...) are kept as they are:
    answer offsets index the context as written."""
    rules = rules or {}
    labels = set(labels) if labels else None
    kept, dropped = [], {}
    for record in records:
        row = {**record, "id": str(record["id"]), "input": normalise(record["input"]),
               "reference": normalise(record["reference"])}
        reason = None
        if not row["input"] or not row["reference"]:
            reason = "empty"
        elif labels is not None and row["reference"] not in labels:
            reason = "label_not_selected"
        elif words(row["reference"]) < rules.get("min_reference_words", 0):
            reason = "reference_too_short"
        elif words(row["reference"]) > rules.get("max_reference_words", float("inf")):
            reason = "reference_too_long"
        elif words(row["input"]) > rules.get("max_input_words", float("inf")):
            reason = "input_too_long"
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
        else:
            kept.append(row)
    return kept, dropped


def deduplicate(records: list[dict], *, by_reference: bool = True) -> tuple[list[dict], dict[str, int]]:
    """Exact duplicates of the (lowercased) input or of the reference, first in id order kept.

    Duplicates would otherwise land on both sides of the train/test split and inflate scores. Class labels
    and short answers repeat by design: for those tasks only inputs are compared.
    """
    ordered = sorted(records, key=lambda row: row["id"])
    for first, second in zip(ordered, ordered[1:]):
        if first["id"] == second["id"]:
            raise ValueError(f"two records share the id {first['id']!r}")
    inputs, references, kept = set(), set(), []
    dropped = {"duplicate_input": 0, "duplicate_reference": 0}
    for row in ordered:
        key_input, key_reference = row["input"].lower(), row["reference"]
        if key_input in inputs:
            dropped["duplicate_input"] += 1
        elif by_reference and key_reference in references:
            dropped["duplicate_reference"] += 1
        else:
            inputs.add(key_input)
            references.add(key_reference)
            kept.append(row)
    return kept, {reason: count for reason, count in dropped.items() if count}


def subsample(rows: list, limit: int | None, seed) -> list:
    """A seeded sample that keeps the original order (so ids stay sorted)."""
    if not limit or len(rows) <= limit:
        return list(rows)
    chosen = sorted(random.Random(f"{seed}:subsample").sample(range(len(rows)), limit))
    return [rows[index] for index in chosen]


def split_fractions(spec: Mapping) -> dict[str, float]:
    fractions = dict(spec.get("split") or DEFAULT_SPLIT)
    if set(fractions) != set(SPLITS):
        raise ValueError(f"split must give exactly {', '.join(SPLITS)}; got {sorted(fractions)}")
    if any(value < 0 for value in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions must be non-negative and sum to 1; got {fractions}")
    return fractions


def split_records(rows: list[dict], fractions: Mapping[str, float], seed) -> dict[str, list[dict]]:
    """Seeded shuffle, then cut by fraction; each split is written back in id order."""
    order = list(range(len(rows)))
    random.Random(f"{seed}:split").shuffle(order)
    sizes = {name: round(len(rows) * fractions[name]) for name in ("validation", "test")}
    sizes["train"] = len(rows) - sizes["validation"] - sizes["test"]
    for name in ("train", "test"):
        if sizes[name] < 1:
            raise ValueError(f"only {len(rows)} examples left after filtering: the {name} split would be empty")
    splits, start = {}, 0
    for name in ("test", "validation", "train"):
        chosen = sorted(order[start: start + sizes[name]])
        splits[name] = [rows[index] for index in chosen]
        start += sizes[name]
    return {name: splits[name] for name in SPLITS}


def stratified_split(rows: list[dict], fractions: Mapping[str, float], seed) -> dict[str, list[dict]]:
    """Each label's records split by the fractions on their own (seeded), so every split keeps the label
    balance of the whole; each split is written back in id order."""
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["reference"], []).append(row)
    splits = {name: [] for name in SPLITS}
    for label in sorted(by_label):
        if len(by_label[label]) < 3:
            raise ValueError(f"label {label!r} has {len(by_label[label])} examples: too few to appear in every split")
        for name, part in split_records(by_label[label], fractions, f"{seed}:{label}").items():
            splits[name].extend(part)
    return {name: sorted(part, key=lambda row: row["id"]) for name, part in splits.items()}


# ---------------------------------------------------------------------------- entry points


def _plain(spec: Mapping) -> dict:
    """The spec as plain JSON data, for the manifest."""
    return json.loads(json.dumps(dict(spec), sort_keys=True, default=str))


def prepare_dataset(spec: Mapping, out_dir: Path, *, snapshot_dir: Path) -> dict:
    """Read, clean, filter, deduplicate, subsample and split a dataset; write the splits and manifest.json."""
    out_dir = Path(out_dir)
    seed = spec.get("seed", 0)
    fractions = split_fractions(spec)
    task = dataset_task(spec)
    records, provenance = read_records(spec, Path(snapshot_dir))
    kept, dropped = clean_and_filter(records, spec.get("filter"), spec.get("labels"))
    kept, duplicates = deduplicate(kept, by_reference=task == "generation")
    dropped.update(duplicates)
    sampled = subsample(kept, spec.get("max_examples"), seed)
    if len(sampled) < len(kept):
        dropped["over_max_examples"] = len(kept) - len(sampled)
    splits = (stratified_split if task == "classification" else split_records)(sampled, fractions, seed)

    files = {}
    for name, rows in splits.items():
        path = out_dir / f"{name}.jsonl"
        io.write_jsonl(path, rows)
        files[name] = {"path": path.name, "rows": len(rows), "sha256": io.sha256_file(path)}
    manifest = {
        "kind": "dataset",
        "task": task,
        "corpus": spec.get("corpus"),
        "source": spec["source"],
        "spec": _plain(spec),
        "counts": {"read": len(records), "kept": len(sampled), **{name: len(rows) for name, rows in splits.items()}},
        "dropped": dict(sorted(dropped.items())),
        "files": files,
        **provenance,
    }
    if task == "classification":
        manifest["labels"] = {name: dict(sorted(collections.Counter(r["reference"] for r in rows).items()))
                              for name, rows in splits.items()}
    io.write_json(out_dir / "manifest.json", manifest)
    return manifest


def prepare_corpus(spec: Mapping, out_path: Path, *, snapshot_dir: Path) -> dict:
    """Clean, deduplicate, subsample and shuffle a pretraining corpus into one text file (a line each)."""
    out_path = Path(out_path)
    seed = spec.get("seed", 0)
    lines, provenance = read_text_lines(spec, Path(snapshot_dir))
    kept, seen, dropped = [], set(), {"empty": 0, "duplicate": 0}
    for line in map(normalise, lines):
        if not line:
            dropped["empty"] += 1
        elif line in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(line)
            kept.append(line)
    sampled = subsample(kept, spec.get("max_lines"), seed)
    dropped["over_max_lines"] = len(kept) - len(sampled)
    # Shuffled so that a pretraining run that stops early still sees every part of the corpus.
    random.Random(f"{seed}:shuffle").shuffle(sampled)
    io.write_text(out_path, "".join(line + "\n" for line in sampled))
    manifest = {
        "kind": "corpus",
        "corpus": spec.get("corpus"),
        "source": spec["source"],
        "spec": _plain(spec),
        "counts": {"read": len(lines), "lines": len(sampled)},
        "dropped": {reason: count for reason, count in sorted(dropped.items()) if count},
        "file": {"path": out_path.name, "lines": len(sampled), "sha256": io.sha256_file(out_path)},
        **provenance,
    }
    io.write_json(out_path.with_suffix(".manifest.json"), manifest)
    return manifest


def load_split(data_dir: Path, split: str) -> list[dict]:
    """The records of one split written by prepare_dataset."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return io.read_jsonl(Path(data_dir) / f"{split}.jsonl")
