"""Turn a dataset or corpus spec into the files every later stage reads.

Everything here is deterministic: the same spec (and the same source files) gives
byte-identical outputs, because records are put in id order before any seeded step and
the random streams are seeded from strings (stable across Python runs and platforms).
The manifest is written last, so its presence marks a complete preparation.
"""

from __future__ import annotations

import collections
import gzip
import itertools
import json
import math
import random
import statistics
import subprocess
import zlib
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from peftstudy import io
from peftstudy.data import registry, synthetic, user_files
from peftstudy.data.decontaminate import decontaminate, leakage_key
from peftstudy.data.sources import DERIVED, Corpus, get_corpus

SPLITS = ("train", "validation", "test")
# generation: input -> free text; classification: input -> one label (the reference) from a closed set;
# extractive_qa: "question: .. context: .." -> an answer span (SQuAD v1.1 fields kept beside it).
TASKS = ("generation", "classification", "extractive_qa")
DEFAULT_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}
SOURCES = ("snapshot", "system", "synthetic", "hub", "files")
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


_hub_field = registry.hub_field  # 'sentences[0]' -> row['sentences'][0]: some datasets keep fields in lists


def _hub_records(spec: Mapping, name: str | None = None) -> tuple[list[dict], dict]:
    """Records from a Hugging Face dataset (or its mirror), all of its splits read; ids '<hub split>-<row>'
    say which split each came from, for the specs that keep the hub's splits."""
    data, provenance = registry.load(spec, name)
    records, unlabelled = registry.records_from_hub(data, spec, dataset_task(spec))
    if unlabelled:
        provenance["unlabelled"] = unlabelled
    return records, {"hub": provenance}


def dataset_task(spec: Mapping) -> str:
    """The task a dataset spec is for: declared (or its registry entry's), else its derived corpus's, else
    generation."""
    spec = registry.resolve(spec)
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


RECORD_FIELDS = ("id", "input", "reference")  # what every record of a fine-tuning dataset has


def read_from(provenance: Mapping) -> str:
    """Where a dataset's records were read from (its file(s), or hub id and revision), for error messages."""
    if "snapshot" in provenance:
        return provenance["snapshot"]["path"]
    if "source_files" in provenance:
        return ", ".join(entry["path"] for entry in provenance["source_files"])
    if "hub" in provenance:
        return f"{provenance['hub']['hub_id']}@{provenance['hub']['revision']}"
    return "synthetic records" if "synthetic" in provenance else "its source"


def read_records(spec: Mapping, snapshot_dir: Path, name: str | None = None) -> tuple[list[dict], dict]:
    """(records, provenance) for a dataset spec (``name``: the study's name for it, for error messages)."""
    spec = registry.resolve(spec)
    source = _check_source(spec)
    derived = DERIVED.get(spec.get("corpus", ""))
    if derived:
        records, provenance = read_records({**spec, "corpus": derived.base}, snapshot_dir)
        return list(derived.derive(records)), {**provenance, "derived": {"corpus": derived.name, "from": derived.base}}
    if source == "hub":
        return _hub_records(spec, name)
    if source == "files":
        return user_files.read_records(spec, dataset_task(spec), name)
    corpus = get_corpus(spec.get("corpus", ""))
    if corpus.kind != "pairs":
        raise ValueError(f"corpus {corpus.name!r} is a pretraining corpus (plain text), not a fine-tuning dataset")
    if source == "synthetic" or corpus.name == "synthetic":
        size = max(2 * spec.get("max_examples", 0), SYNTHETIC_DEFAULT_SIZE)
        return list(synthetic.pairs(size, spec.get("seed", 0))), {"synthetic": {"size": size}}
    if source == "snapshot":
        path = Path(snapshot_dir) / f"{corpus.name}.jsonl.gz"
        provenance = snapshot_provenance(path, corpus.name)
        return io.read_jsonl(path, required=RECORD_FIELDS), provenance
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


def grouped_split(rows: list[dict], fractions: Mapping[str, float], seed, key: str) -> dict[str, list[dict]]:
    """Split whole groups (records sharing ``row[key]``, e.g. SQuAD's article title) by the fractions, so that
    no group is in two splits; sizes are counted in groups. Each split is written back in id order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row[key]), []).append(row)
    units = [{"id": name, "rows": groups[name]} for name in sorted(groups)]
    try:
        parts = split_records(units, fractions, seed)
    except ValueError:
        raise ValueError(f"only {len(units)} distinct {key!r} groups: too few to split by {key}") from None
    return {name: sorted((row for unit in part for row in unit["rows"]), key=lambda row: row["id"])
            for name, part in parts.items()}


def carve(rows: list[dict], fraction: float, seed, *, stratify: bool,
          group_by: str | None) -> tuple[list[dict], list[dict]]:
    """(kept, carved): a seeded ``fraction`` of the records moved out (a validation split carved from a hub's
    train split); whole groups when ``group_by``, each label's own share when ``stratify``. A positive
    fraction carves at least one unit."""
    if stratify and not group_by:
        strata: dict[str, list[dict]] = {}
        for row in rows:
            strata.setdefault(row["reference"], []).append(row)
        kept, carved = [], []
        for label in sorted(strata):
            part_kept, part_carved = carve(strata[label], fraction, f"{seed}:{label}", stratify=False, group_by=None)
            kept += part_kept
            carved += part_carved
        return sorted(kept, key=lambda row: row["id"]), sorted(carved, key=lambda row: row["id"])
    units: dict[str, list[dict]] = {}
    for row in rows:
        units.setdefault(str(row[group_by]) if group_by else row["id"], []).append(row)
    names = sorted(units)
    count = min(len(names) - 1, max(1, round(len(names) * fraction))) if fraction > 0 and len(names) > 1 else 0
    random.Random(f"{seed}:carve").shuffle(names)
    chosen = set(names[:count])
    kept = [row for row in rows if (str(row[group_by]) if group_by else row["id"]) not in chosen]
    carved = [row for row in rows if (str(row[group_by]) if group_by else row["id"]) in chosen]
    return kept, carved


def hub_split_of(row: Mapping) -> str:
    """The hub split a hub record came from (its id is '<hub split>-<row:08d>')."""
    return row["id"].rsplit("-", 1)[0]


def keep_hub_splits(rows: list[dict], spec: Mapping, task: str, seed) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """The study's splits taken from the hub's (``keep_hub_splits``: study split -> hub splits); a validation
    split the hub lacks is carved from train (``validation_from_train``, default 0.1). Returns the splits and
    the rows of hub splits no study split uses."""
    mapping = spec["keep_hub_splits"]
    unknown = sorted(set(mapping) - set(SPLITS))
    if unknown or "train" not in mapping or "test" not in mapping:
        raise ValueError(f"keep_hub_splits maps study splits (train and test, optionally validation) to hub splits;"
                         f" got {sorted(mapping)}")
    owner = {hub: study for study, hubs in mapping.items() for hub in ([hubs] if isinstance(hubs, str) else hubs)}
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    unused: dict[str, int] = {}
    for row in rows:
        study = owner.get(hub_split_of(row))
        if study is None:
            unused[hub_split_of(row)] = unused.get(hub_split_of(row), 0) + 1
        else:
            splits[study].append(row)
    if "validation" not in mapping:
        splits["train"], splits["validation"] = carve(
            splits["train"], spec.get("validation_from_train", 0.1), seed,
            stratify=task == "classification", group_by=spec.get("group_by"))
    for name in ("train", "test"):
        if not splits[name]:
            raise ValueError(f"the {name} split is empty: no records from hub split(s) {mapping[name]}")
    return splits, unused


# ---------------------------------------------------------------------------- train/test leakage

LEAKAGE_NGRAM = 5  # word n-gram shingles
LEAKAGE_THRESHOLD = 0.8  # Jaccard similarity of the shingle sets at which an evaluation input is a near duplicate
LEAKAGE_SKETCH = 128  # a text with more shingles is compared by a bottom-k MinHash sketch of this many
LEAKAGE_EXAMPLES = 10  # leaked pairs listed in the manifest per split


_MIX = (np.uint64(30), np.uint64(0xBF58476D1CE4E5B9), np.uint64(27), np.uint64(0x94D049BB133111EB), np.uint64(31))
_ROLL = np.uint64(0x100000001B3)


def _sketch(key: str, n: int, cache: dict) -> tuple[frozenset, int]:
    """(the 64-bit hashes of a text's word n-gram shingles, capped to its bottom-k MinHash sketch, and the
    true number of distinct shingles). The hashes are the same on every platform and run (crc32 of the
    words, a polynomial roll, splitmix64's finaliser); a text shorter than n words is one shingle."""
    tokens = key.split()
    if not tokens:
        return frozenset(), 0
    ids = list(map(cache.get, tokens))
    if None in ids:
        ids = [cache.setdefault(token, zlib.crc32(token.encode("utf-8"))) if value is None else value
               for token, value in zip(tokens, ids)]
    values = np.array(ids + [0] * max(0, n - len(ids)), dtype=np.uint64)
    count = len(values) - n + 1
    hashes = values[:count].copy()
    for offset in range(1, n):
        hashes = hashes * _ROLL + values[offset: offset + count]
    shift1, mult1, shift2, mult2, shift3 = _MIX
    hashes = (hashes ^ (hashes >> shift1)) * mult1
    hashes = (hashes ^ (hashes >> shift2)) * mult2
    hashes = np.unique(hashes ^ (hashes >> shift3))  # sorted: the bottom k are the first k
    return frozenset(hashes[:LEAKAGE_SKETCH].tolist()), len(hashes)


def _jaccard(a: frozenset, a_size: int, b: frozenset, b_size: int) -> float:
    """Exact Jaccard when neither set was sketched, else the bottom-k estimate (the share of the union's k
    smallest hashes that both hold)."""
    if a_size <= LEAKAGE_SKETCH and b_size <= LEAKAGE_SKETCH:
        shared = len(a & b)
        return shared / (len(a) + len(b) - shared) if a or b else 1.0
    union = sorted(a | b)[:LEAKAGE_SKETCH]
    return sum(1 for h in union if h in a and h in b) / len(union)


def find_leaks(train: list[str], evaluation: list[str], *, threshold: float = LEAKAGE_THRESHOLD,
               n: int = LEAKAGE_NGRAM) -> list[dict]:
    """Evaluation texts that duplicate a training text: exactly once normalised (``leakage_key``), or nearly
    (word n-gram Jaccard >= threshold). One entry per leaked evaluation text: {eval, train, kind, jaccard}
    (indices into the lists; the most similar training text).

    Candidates come from a prefix-filtered inverted index (the AllPairs/PPJoin bound: two sets with Jaccard
    >= t share one of the first |x| - ceil(t|x|) + 1 elements of each, in a global rarest-first order), so
    that common shingles, as in templated inputs, never make the search quadratic; every candidate is then
    verified. Exact for texts of up to LEAKAGE_SKETCH shingles; longer ones are compared by bottom-k sketches
    (standard error about 0.035 at Jaccard 0.8)."""
    train_keys, eval_keys = [leakage_key(text) for text in train], [leakage_key(text) for text in evaluation]
    leaks: dict[int, dict] = {}
    exact: dict[str, int] = {}
    for index, key in enumerate(train_keys):
        exact.setdefault(key, index)
    for index, key in enumerate(eval_keys):
        if key and key in exact:
            leaks[index] = {"eval": index, "train": exact[key], "kind": "exact", "jaccard": 1.0}
    cache: dict[str, int] = {}
    train_sets = [_sketch(key, n, cache) for key in train_keys]
    eval_sets = [_sketch(key, n, cache) if index not in leaks else (frozenset(), 0)
                 for index, key in enumerate(eval_keys)]
    frequency: collections.Counter = collections.Counter()
    for grams, _ in train_sets + eval_sets:
        frequency.update(grams)

    def prefix(grams: frozenset) -> list[int]:
        """The first elements of the set in the global order rarest first, ties by hash (two C-level sorts:
        by hash, then stably by frequency)."""
        ordered = sorted(sorted(grams), key=frequency.__getitem__)
        return ordered[: len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1]

    postings: dict[int, list[int]] = {}
    for position, (grams, _) in enumerate(train_sets):
        for key in prefix(grams):
            postings.setdefault(key, []).append(position)
    for position, (grams, size) in enumerate(eval_sets):
        if not grams:
            continue
        candidates = {candidate for key in prefix(grams) for candidate in postings.get(key, ())}
        best = None
        for candidate in sorted(candidates):
            other, other_size = train_sets[candidate]
            if not threshold * size <= other_size <= size / threshold:
                continue  # Jaccard >= t needs t <= |a|/|b| <= 1/t
            similarity = _jaccard(grams, size, other, other_size)
            if similarity >= threshold and (best is None or similarity > best[1]):
                best = (candidate, similarity)
        if best is not None:
            leaks[position] = {"eval": position, "train": best[0], "kind": "near", "jaccard": round(best[1], 4)}
    return [leaks[index] for index in sorted(leaks)]


def check_leakage(splits: dict[str, list[dict]], mode: str) -> tuple[dict[str, list[dict]], dict]:
    """Compare the inputs of the validation and test splits with the training inputs; leaked records are
    dropped (mode 'drop'), make preparation fail ('fail') or are only counted ('report'). Returns the splits
    and the manifest's account of what was found."""
    if mode not in registry.LEAKAGE_MODES:
        raise ValueError(f"leakage must be one of {', '.join(registry.LEAKAGE_MODES)}; got {mode!r}")
    train_inputs = [row["input"] for row in splits["train"]]
    report = {"mode": mode, "compared": "validation and test inputs against training inputs",
              "exact": "equal after lowercasing and dropping punctuation",
              "near": f"word {LEAKAGE_NGRAM}-gram Jaccard >= {LEAKAGE_THRESHOLD} (bottom-{LEAKAGE_SKETCH} MinHash"
                      f" sketch for longer texts)", "splits": {}}
    result = dict(splits)
    for name in ("validation", "test"):
        leaks = find_leaks(train_inputs, [row["input"] for row in splits[name]])
        counts = collections.Counter(leak["kind"] for leak in leaks)
        report["splits"][name] = {
            "exact": counts.get("exact", 0), "near": counts.get("near", 0),
            "examples": [{"id": splits[name][leak["eval"]]["id"], "train_id": splits["train"][leak["train"]]["id"],
                          "kind": leak["kind"], "jaccard": leak["jaccard"]} for leak in leaks[:LEAKAGE_EXAMPLES]],
        }
        if leaks and mode == "drop":
            leaked = {leak["eval"] for leak in leaks}
            result[name] = [row for position, row in enumerate(splits[name]) if position not in leaked]
            report["splits"][name]["dropped"] = len(leaked)
    if mode == "fail":
        found = {name: (part["exact"], part["near"]) for name, part in report["splits"].items()
                 if part["exact"] or part["near"]}
        if found:
            first = next(part["examples"][0] for part in report["splits"].values() if part["examples"])
            raise ValueError("train/test leakage: " + "; ".join(f"{name}: {e} exact and {n} near duplicate(s) of"
                                                                 f" training inputs" for name, (e, n) in found.items())
                             + f" (e.g. {first['id']} ~ {first['train_id']}, Jaccard {first['jaccard']});"
                               " set leakage: drop to remove them")
    if not result["test"]:
        raise ValueError("every test record duplicates a training record: the test split would be empty")
    return result, report


# ---------------------------------------------------------------------------- data card


def length_stats(values: list[int]) -> dict:
    """Mean, median and 95th percentile (nearest rank) of lengths in words."""
    if not values:
        return {"mean": None, "median": None, "p95": None}
    ordered = sorted(values)
    return {"mean": round(statistics.fmean(ordered), 2), "median": statistics.median(ordered),
            "p95": ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]}


def data_card(splits: Mapping[str, list[dict]], task: str) -> dict:
    """Per split: size, input and reference lengths in words (whitespace-separated), label balance for
    classification. Token lengths depend on the model's tokenizer and are computed where it is loaded."""
    card = {}
    for name, rows in splits.items():
        card[name] = {"rows": len(rows), "input_words": length_stats([words(row["input"]) for row in rows]),
                      "reference_words": length_stats([words(row["reference"]) for row in rows])}
        if task == "classification":
            counts = collections.Counter(row["reference"] for row in rows)
            card[name]["labels"] = {label: {"count": count, "share": round(count / len(rows), 4)}
                                    for label, count in sorted(counts.items())}
    return card


# ---------------------------------------------------------------------------- entry points


def _plain(spec: Mapping) -> dict:
    """The spec as plain JSON data, for the manifest."""
    return json.loads(json.dumps(dict(spec), sort_keys=True, default=str))


def _clean_and_split(records: list[dict], provenance: Mapping, spec: Mapping, task: str, fractions: Mapping,
                     seed) -> tuple[dict[str, list[dict]], dict, dict]:
    """prepare_dataset's records -> (splits, dropped counts, leakage): cleaned, filtered, deduplicated, subsampled,
    split and checked for leakage; a ValueError says what is wrong with the records."""
    kept, dropped = clean_and_filter(records, spec.get("filter"), spec.get("labels"))
    if records and not kept and set(dropped) == {"empty"}:
        raise ValueError(f"every one of the {len(records)} records has an empty input or reference")
    unlabelled = sum(provenance.get("hub", {}).get("unlabelled", {}).values())
    if unlabelled:
        dropped["unlabelled"] = unlabelled
    if task == "extractive_qa":
        aligned = [row for row in kept if row["answers"] and row["context"][
            row["answer_start"][0]: row["answer_start"][0] + len(row["answers"][0])] == row["answers"][0]]
        if len(aligned) < len(kept):
            dropped["answer_not_in_context"] = len(kept) - len(aligned)
        kept = aligned
    kept, duplicates = deduplicate(kept, by_reference=task == "generation")
    dropped.update(duplicates)
    sampled = subsample(kept, spec.get("max_examples"), seed)
    if len(sampled) < len(kept):
        dropped["over_max_examples"] = len(kept) - len(sampled)
    if spec.get("keep_hub_splits"):
        splits, unused = keep_hub_splits(sampled, spec, task, seed)
        if unused:
            dropped["hub_split_unused"] = sum(unused.values())
    elif spec.get("group_by"):
        splits = grouped_split(sampled, fractions, seed, spec["group_by"])
    else:
        splits = (stratified_split if task == "classification" else split_records)(sampled, fractions, seed)
    # Registry datasets drop leaked evaluation records by default; other specs only count them, so that
    # their splits stay as they were.
    splits, leakage = check_leakage(splits, spec.get("leakage", "drop" if spec.get("registry") else "report"))
    if leakage["mode"] == "drop":
        removed = sum(part.get("dropped", 0) for part in leakage["splits"].values())
        if removed:
            dropped["leaked_into_evaluation"] = removed
    return splits, dropped, leakage


def prepare_dataset(spec: Mapping, out_dir: Path, *, snapshot_dir: Path, name: str | None = None) -> dict:
    """Read, clean, filter, deduplicate, subsample and split a dataset, check the evaluation splits for
    leakage from the training split; write the splits and manifest.json (with the data card).

    ``spec`` may name a registry entry (``registry: sst2``); ``name`` is the study's name for the dataset
    (default: the output directory's, as the workflow writes data/prepared/<name>/), used in error messages.
    """
    out_dir = Path(out_dir)
    spec = registry.resolve(spec)
    name = name or out_dir.name
    seed = spec.get("seed", 0)
    fractions = split_fractions(spec)
    task = dataset_task(spec)
    records, provenance = read_records(spec, Path(snapshot_dir), name)
    # A study's own train/validation/test files keep their splits, as a hub's do (a missing validation file:
    # carved from train); one file is split like any other source.
    splitting = spec
    if spec["source"] == "files" and "files" in spec:
        splitting = {**spec, "keep_hub_splits": {split: split for split in spec["files"]}}
    try:
        splits, dropped, leakage = _clean_and_split(records, provenance, splitting, task, fractions, seed)
    except ValueError as error:  # what is wrong with the records: say which file they came from
        raise ValueError(f"dataset {name!r} ({read_from(provenance)}): {error}") from None

    files = {}
    for split_name, rows in splits.items():
        path = out_dir / f"{split_name}.jsonl"
        io.write_jsonl(path, rows)
        files[split_name] = {"path": path.name, "rows": len(rows), "sha256": io.sha256_file(path)}
    manifest = {
        "kind": "dataset",
        "task": task,
        "corpus": spec.get("corpus"),
        "source": spec["source"],
        "spec": _plain(spec),
        "counts": {"read": len(records), "kept": sum(len(rows) for rows in splits.values()),
                   **{split_name: len(rows) for split_name, rows in splits.items()}},
        "dropped": dict(sorted(dropped.items())),
        "files": files,
        "leakage": leakage,
        "card": data_card(splits, task),
        **provenance,
    }
    if spec.get("registry"):
        manifest["registry"] = spec["registry"]
    if spec.get("windowing"):
        manifest["windowing"] = dict(spec["windowing"])
    if task == "classification":
        manifest["labels"] = {split_name: dict(sorted(collections.Counter(r["reference"] for r in rows).items()))
                              for split_name, rows in splits.items()}
    io.write_json(out_dir / "manifest.json", manifest)
    return manifest


def cap_openings(lines: list[str], words: int, most: int,
                 bodies: Iterable[Callable[[str], str] | None] = ()) -> tuple[list[str], int]:
    """At most `most` lines (the first, in order) of those that open with the same `words` words (lowercased,
    punctuation ignored): templated boilerplate such as Debian's 1,294 "This package contains the source for the
    Rust ... crate" descriptions would otherwise be what a small model learns to say whatever it is asked.
    bodies: per line, where its prose starts (a record line's headword comes first); None: the whole line."""
    seen: collections.Counter = collections.Counter()
    kept = []
    for line, body in itertools.zip_longest(lines, bodies):
        opening = leakage_key(body(line) if body else line).split()[:words]
        if len(opening) == words:
            seen[tuple(opening)] += 1
            if seen[tuple(opening)] > most:
                continue
        kept.append(line)
    return kept, len(lines) - len(kept)


def prepare_corpus(spec: Mapping, out_path: Path, *, snapshot_dir: Path,
                   evaluation_dirs: Mapping[str, Path] | None = None) -> dict:
    """Clean, deduplicate, subsample and shuffle a pretraining corpus into one text file (a line each).

    A spec's ``corpus`` may list several text corpora (concatenated in order). ``boilerplate`` caps the lines
    sharing an opening (cap_openings). With ``decontaminate``, every
    line holding an example of the named datasets' evaluation splits (``evaluation_dirs``: their prepared
    directories) is removed first, and the manifest counts what was found and what is left (none)."""
    out_path = Path(out_path)
    seed = spec.get("seed", 0)
    names = spec.get("corpus")
    several = isinstance(names, (list, tuple))
    lines, bodies, parts = [], [], {}
    for name in names if several else [names]:
        part_lines, part_provenance = read_text_lines({**spec, "corpus": name}, Path(snapshot_dir))
        parts[name] = {"lines": len(part_lines), **part_provenance}
        lines += part_lines
        bodies += [get_corpus(name).body] * len(part_lines)  # where each line's prose starts, for the cap
    provenance = {"parts": parts} if several else part_provenance
    kept, kept_bodies, seen, dropped = [], [], set(), {"empty": 0, "duplicate": 0}
    for line, body in zip(map(normalise, lines), bodies):
        if not line:
            dropped["empty"] += 1
        elif line in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(line)
            kept.append(line)
            kept_bodies.append(body)
    boilerplate = spec.get("boilerplate")
    if boilerplate:
        kept, dropped["boilerplate"] = cap_openings(kept, boilerplate["opening_words"], boilerplate["max_lines"],
                                                    kept_bodies)
    decontamination = None
    wanted = sorted((spec.get("decontaminate") or {}).get("datasets", []))
    if wanted:
        missing = sorted(set(wanted) - set(evaluation_dirs or {}))
        if missing:
            raise ValueError(f"corpus {spec.get('corpus')!r}: decontaminate.datasets {missing} were not prepared for it")
        kept, decontamination = decontaminate(kept, {name: Path(evaluation_dirs[name]) for name in wanted})
        dropped["holds_an_evaluation_example"] = decontamination["lines_removed"]
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
        **({"decontamination": decontamination} if decontamination else {}),
        **provenance,
    }
    io.write_json(out_path.with_suffix(".manifest.json"), manifest)
    return manifest


def load_split(data_dir: Path, split: str) -> list[dict]:
    """The records of one split written by prepare_dataset."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return io.read_jsonl(Path(data_dir) / f"{split}.jsonl")
