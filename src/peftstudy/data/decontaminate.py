"""Taking the evaluation examples out of a pretraining corpus (decontamination), and proving they are out.

A base pretrained on text that contains a test reference has seen the answer: its fine-tuned scores would
measure memory, not adaptation. Seed 000's bases come from the hub and cannot be checked; the demo's are
pretrained here, so every example of the fine-tuning datasets' validation and test splits is taken out first,
the way GPT-3 (Brown et al. 2020, appendix C) decontaminated its training data: a corpus line goes if it shares
a word 13-gram with an evaluation text. A text shorter than 13 words (but not shorter than MIN_WORDS) counts
when the line contains it whole. Shorter ones (a class label, a package name) are not examples of anything and
are not checked: they are words any English corpus holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping

from peftstudy import io

NGRAM = 13
MIN_WORDS = 6  # the demo's shortest references have 6 words: every one of them is checked
EVALUATION_SPLITS = ("validation", "test")
FIELDS = ("input", "reference", "context")  # a QA input is question + context: its context alone is checked too


def leakage_key(text: str) -> str:
    """Lowercased words only (punctuation and spacing ignored): equal keys are exact duplicates."""
    return " ".join(re.findall(r"\w+", text.lower()))


def evaluation_texts(data_dir: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(split, record id, words) of every input and reference of the evaluation splits long enough to check."""
    texts = []
    for split in EVALUATION_SPLITS:
        for row in io.read_jsonl(Path(data_dir) / f"{split}.jsonl"):
            for field in FIELDS:
                tokens = tuple(leakage_key(str(row.get(field, ""))).split())
                if len(tokens) >= MIN_WORDS:
                    texts.append((split, str(row["id"]), tokens))
    return texts


def splits_fingerprint(data_dir: Path) -> dict[str, str]:
    """The sha256 of each evaluation split's file: a base records what it was decontaminated against."""
    return {split: io.sha256_file(Path(data_dir) / f"{split}.jsonl") for split in EVALUATION_SPLITS}


class Index:
    """Every evaluation text's 13-grams (and each shorter text whole, keyed by its first MIN_WORDS words)."""

    def __init__(self, texts: Iterable[tuple[str, tuple[str, ...]]]):
        self.grams: dict[tuple[str, ...], set[str]] = {}
        self.short: dict[tuple[str, ...], list[tuple[tuple[str, ...], str]]] = {}
        for key, tokens in texts:
            if len(tokens) >= NGRAM:
                for start in range(len(tokens) - NGRAM + 1):
                    self.grams.setdefault(tokens[start: start + NGRAM], set()).add(key)
            else:
                self.short.setdefault(tokens[:MIN_WORDS], []).append((tokens, key))

    def matches(self, line: str) -> set[str]:
        """The keys of the evaluation texts this line contains (a shared 13-gram, or a short text whole)."""
        tokens = tuple(leakage_key(line).split())
        found: set[str] = set()
        for start in range(len(tokens) - MIN_WORDS + 1):
            for text, key in self.short.get(tokens[start: start + MIN_WORDS], ()):
                if tokens[start: start + len(text)] == text:
                    found.add(key)
            if start + NGRAM <= len(tokens):
                found.update(self.grams.get(tokens[start: start + NGRAM], ()))
        return found


def decontaminate(lines: list[str], evaluation_dirs: Mapping[str, Path]) -> tuple[list[str], dict]:
    """(the lines that contain no evaluation text, the manifest's account): per dataset and split, the examples
    checked, how many the corpus held, and how many it still holds after the removal (recounted: 0)."""
    texts = {dataset: evaluation_texts(Path(path)) for dataset, path in sorted(evaluation_dirs.items())}
    index = Index((f"{dataset}\t{split}\t{record}", tokens)
                  for dataset, rows in texts.items() for split, record, tokens in rows)
    kept, removed, found = [], 0, set()
    for line in lines:
        hits = index.matches(line)
        if hits:
            removed += 1
            found |= hits
        else:
            kept.append(line)
    remaining = {key for line in kept for key in index.matches(line)}
    datasets = {}
    for dataset, rows in texts.items():
        per_split = {}
        for split in EVALUATION_SPLITS:
            checked = {f"{dataset}\t{split}\t{record}" for s, record, _ in rows if s == split}
            per_split[split] = {"examples_checked": len(checked), "found_in_corpus": len(checked & found),
                                "left_in_corpus": len(checked & remaining)}
        datasets[dataset] = {"splits": per_split, "fingerprint": splits_fingerprint(Path(evaluation_dirs[dataset]))}
    report = {"rule": f"a line sharing a word {NGRAM}-gram with an evaluation input or reference (or containing "
                      f"one of {MIN_WORDS}-{NGRAM - 1} words whole; lowercased, punctuation ignored) is removed",
              "lines_removed": removed, "datasets": datasets}
    return kept, report


def leakage_summary(decontamination: Mapping | None, dataset: str, split: str, data_dir: Path) -> str:
    """The data card's cell: examples of this split left in a base's pretraining corpus, when it can be told."""
    if not decontamination:
        return ""
    entry = decontamination.get("datasets", {}).get(dataset)
    if entry is None:
        return "not checked"
    if entry["fingerprint"].get(split) != splits_fingerprint(Path(data_dir)).get(split):
        return "split changed since"
    counts = entry["splits"][split]
    return f"{counts['left_in_corpus']} of {counts['examples_checked']}"
