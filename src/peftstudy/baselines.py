"""Trivial baselines: what a fine-tuned model has to beat before its scores say it learnt the task.

Each predicts the test split from the training split alone (no model, no look at test references), so it is
scored like any run and read beside the study's cells. Built in, by task:

- generation: ``copy_input`` (the input field whose text best matches the references on the training split,
  copied), ``most_frequent_reference`` (one training reference for every input: the most frequent, ties broken
  by its mean word-set overlap with all of them), ``nearest_neighbour`` (the reference of the training example whose
  input is closest by TF-IDF cosine);
- classification: ``majority_class``;
- extractive QA: ``overlap_window`` (the context window, as long as the commonest training answer, sharing
  most content words with the question: the sliding-window baseline of the SQuAD paper, simplified);
- any task: ``constant`` (a sentence the study gives, e.g. the one a degenerate model keeps writing).

A study lists its own under ``baselines:`` (name -> kind, ``text`` for a constant, and ``gate: false`` for one a
cell need not beat to count as having learnt the task); without that section every built-in baseline of a
dataset's task is run.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

WORD = re.compile(r"\w+", re.UNICODE)
FIELD = re.compile(r"^\s*([\w .-]+?):\s*(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Baseline:
    kind: str
    label: str  # how a table names it
    tasks: tuple[str, ...]
    predict: Callable[[Sequence[Mapping], Sequence[Mapping], Mapping], tuple[list[str], dict]]
    # Whether a fine-tuned cell must beat it to count as having learnt the task (stats.against_baselines). The
    # nearest neighbour's reference is a retrieval system, not a trivial one: reported as it comes out, no gate.
    gate: bool = True


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def word_f1(prediction: str, reference: str) -> float:
    """Unigram F1 over lower-cased words (SQuAD's token F1 without its article and punctuation rules)."""
    return _counts_f1(collections.Counter(_words(prediction)), collections.Counter(_words(reference)))


def _counts_f1(predicted: collections.Counter, expected: collections.Counter) -> float:
    common = sum((predicted & expected).values())
    if not common:
        return 0.0
    precision, recall = common / sum(predicted.values()), common / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def input_fields(text: str) -> dict[str, str]:
    """A "key: value | key: value" input as {key: value}; any other input is one field, "input"."""
    parts = [FIELD.match(part) for part in text.split(" | ")]
    if all(parts):
        return {match.group(1).strip(): match.group(2).strip() for match in parts}
    return {"input": text}


def copy_input(train, test, spec) -> tuple[list[str], dict]:
    """The field that, copied, scores the highest mean word F1 against the training references (ties: the first
    field seen); an input without that field is copied whole."""
    scores: dict[str, list[float]] = {}
    for row in train:
        for key, value in input_fields(row["input"]).items():
            scores.setdefault(key, []).append(word_f1(value, row["reference"]))
    # A field absent from an input counts 0 there: mean over every training row.
    best = max(scores, key=lambda key: sum(scores[key]) / len(train))
    fields = [input_fields(row["input"]) for row in test]
    return ([f.get(best, row["input"]) for f, row in zip(fields, test)],
            {"field": best, "train_word_f1": sum(scores[best]) / len(train),
             "inputs_without_field": sum(best not in f for f in fields)})


def most_frequent_reference(train, test, spec) -> tuple[list[str], dict]:
    counts = collections.Counter(row["reference"] for row in train)
    top = max(counts.values())
    candidates = [reference for reference in dict.fromkeys(row["reference"] for row in train) if counts[reference] == top]
    chosen = candidates[0] if len(candidates) == 1 else _medoid(candidates, [row["reference"] for row in train])
    return [chosen] * len(test), {"reference": chosen, "count": top, "tied": len(candidates)}


def _medoid(candidates: list[str], references: list[str]) -> str:
    """The candidate with the highest mean word-set F1 (2|A∩B| / (|A| + |B|)) against the references: with every
    reference unique, as in most generation data, the most typical one. Ties: the first candidate."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(binary=True, lowercase=True, token_pattern=r"\w+").fit(candidates + references)
    a, b = vectorizer.transform(candidates), vectorizer.transform(references)
    shared = (a @ b.T).toarray()
    sizes = np.asarray(a.sum(axis=1)) + np.asarray(b.sum(axis=1)).T
    f1 = np.divide(2 * shared, sizes, out=np.zeros(shared.shape), where=sizes > 0)
    return candidates[int(f1.mean(axis=1).argmax())]


def nearest_neighbour(train, test, spec) -> tuple[list[str], dict]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=r"\w+")
    train_vectors = vectorizer.fit_transform([row["input"] for row in train])
    similarity = (vectorizer.transform([row["input"] for row in test]) @ train_vectors.T).toarray()
    nearest = similarity.argmax(axis=1)  # the first of equally near examples: file order
    return [train[int(i)]["reference"] for i in nearest], {"representation": "TF-IDF of words (scikit-learn), cosine"}


def majority_class(train, test, spec) -> tuple[list[str], dict]:
    counts = collections.Counter(row["reference"] for row in train)
    label = min(counts, key=lambda label: (-counts[label], label))
    return [label] * len(test), {"label": label, "train_share": counts[label] / len(train)}


def overlap_window(train, test, spec) -> tuple[list[str], dict]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    lengths = collections.Counter(len(answer.split()) for row in train for answer in row["answers"][:1])
    width = max(1, min(lengths, key=lambda n: (-lengths[n], n)))
    predictions = []
    for row in test:
        question = set(_words(row["question"])) - ENGLISH_STOP_WORDS
        tokens = row["context"].split()
        best, best_score = 0, -1
        for start in range(max(1, len(tokens) - width + 1)):
            window = set(_words(" ".join(tokens[start : start + width])))
            score = len(window & question)
            if score > best_score:
                best, best_score = start, score
        predictions.append(" ".join(tokens[best : best + width]))
    return predictions, {"window_words": width}


def constant(train, test, spec) -> tuple[list[str], dict]:
    return [spec["text"]] * len(test), {"text": spec["text"]}


BASELINES: dict[str, Baseline] = {
    b.kind: b for b in (
        Baseline("copy_input", "Copy of an input field", ("generation",), copy_input),
        Baseline("most_frequent_reference", "Most frequent training reference", ("generation",),
                 most_frequent_reference),
        Baseline("nearest_neighbour", "Nearest training example's reference", ("generation",), nearest_neighbour,
                 gate=False),
        Baseline("majority_class", "Majority class", ("classification",), majority_class),
        Baseline("overlap_window", "Question-overlap window", ("extractive_qa",), overlap_window),
        Baseline("constant", "Constant sentence", ("generation", "classification", "extractive_qa"), constant),
    )
}
DEFAULT_KINDS = tuple(kind for kind in BASELINES if kind != "constant")  # a constant needs its text


def study_baselines(study: Mapping, task: str) -> dict[str, dict]:
    """The baselines a study runs on a dataset of `task`: name -> spec ({kind, text?})."""
    declared = study.get("baselines")
    if declared is None:
        declared = {kind: {"kind": kind} for kind in DEFAULT_KINDS}
    return {name: dict(spec) for name, spec in declared.items() if task in BASELINES[spec["kind"]].tasks}


def gates(spec: Mapping) -> bool:
    """Whether a cell must beat this baseline to count as having learnt the task: the spec's `gate`, else its kind's."""
    return bool(spec.get("gate", BASELINES[spec["kind"]].gate))


def predict(spec: Mapping, train: Sequence[Mapping], test: Sequence[Mapping]) -> tuple[list[str], dict]:
    """The baseline's prediction for each test row, and what it chose (for its record)."""
    if not train:
        raise ValueError("a baseline needs a non-empty training split")
    predictions, chosen = BASELINES[spec["kind"]].predict(train, test, spec)
    assert len(predictions) == len(test)
    return predictions, chosen

