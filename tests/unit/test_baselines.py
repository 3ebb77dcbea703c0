"""Trivial baselines: each prediction follows from the training split by its rule, and a baseline is scored with
the runs' own metrics."""

import pytest

from peftstudy import baselines, io
from peftstudy.metrics import baseline_scoring, quality

TRAIN = [
    {"id": "1", "input": "name: alpha | summary: fast json parser", "reference": "A fast parser for json files."},
    {"id": "2", "input": "name: beta | summary: tiny http server", "reference": "A tiny server for http."},
    {"id": "3", "input": "name: gamma | summary: json schema checker", "reference": "A checker for json schema files."},
]
TEST = [
    {"id": "t1", "input": "name: delta | summary: json parser in rust", "reference": "A json parser."},
    {"id": "t2", "input": "plain text without fields", "reference": "Something."},
]


def test_word_f1_and_fields():
    assert baselines.word_f1("the cat sat", "The cat ran") == pytest.approx(2 / 3)
    assert baselines.word_f1("", "x") == 0.0
    assert baselines.input_fields("name: a | summary: b c") == {"name": "a", "summary": "b c"}
    assert baselines.input_fields("no fields | here") == {"input": "no fields | here"}


def test_copy_input_copies_the_field_that_matches_the_training_references_best():
    predictions, chosen = baselines.predict({"kind": "copy_input"}, TRAIN, TEST)
    assert chosen["field"] == "summary" and chosen["inputs_without_field"] == 1
    assert predictions == ["json parser in rust", "plain text without fields"]  # no field: the whole input


def test_most_frequent_reference_then_the_most_typical_one():
    repeated = TRAIN + [{"id": "4", "input": "x", "reference": "A tiny server for http."}]
    assert baselines.predict({"kind": "most_frequent_reference"}, repeated, TEST)[0] == ["A tiny server for http."] * 2
    unique = [{"id": str(i), "input": "x", "reference": r} for i, r in enumerate(["a b c", "a b d", "x y z"])]
    predictions, chosen = baselines.predict({"kind": "most_frequent_reference"}, unique, TEST)
    # mean word-set F1: "a b c" (1 + 2/3 + 0) / 3 = "a b d"'s > "x y z"'s 1/3; of the tie, the first
    assert predictions == ["a b c"] * 2 and chosen["tied"] == 3


def test_nearest_neighbour_takes_the_reference_of_the_closest_training_input():
    predictions, _ = baselines.predict({"kind": "nearest_neighbour"}, TRAIN, [
        {"id": "q", "input": "name: gamma | summary: json schema checker", "reference": "?"},
        {"id": "r", "input": "tiny http", "reference": "?"}])
    assert predictions == ["A checker for json schema files.", "A tiny server for http."]


def test_majority_class_breaks_ties_by_label_order():
    train = [{"id": str(i), "input": "x", "reference": label} for i, label in enumerate(["b", "a", "b", "a", "c"])]
    predictions, chosen = baselines.predict({"kind": "majority_class"}, train, TEST)
    assert predictions == ["a", "a"] and chosen == {"label": "a", "train_share": 0.4}


def test_overlap_window_picks_the_window_sharing_most_question_words():
    train = [{"id": "1", "question": "q", "context": "c", "input": "", "reference": "one two",
              "answers": ["one two"]}]
    test = [{"id": "t", "question": "Which parser reads json quickly?", "input": "", "reference": "",
             "context": "Alpha is a library. It reads json files quickly and well.", "answers": ["x"]}]
    predictions, chosen = baselines.predict({"kind": "overlap_window"}, train, test)
    assert chosen == {"window_words": 2} and predictions == ["reads json"]  # first of the 2-word windows with 2


def test_which_baselines_a_study_runs():
    assert set(baselines.study_baselines({}, "generation")) == {"copy_input", "most_frequent_reference",
                                                                "nearest_neighbour"}
    assert set(baselines.study_baselines({}, "classification")) == {"majority_class"}
    declared = {"baselines": {"stuck": {"kind": "constant", "text": "This package contains the"}}}
    assert baselines.study_baselines(declared, "generation") == {"stuck": {"kind": "constant",
                                                                           "text": "This package contains the"}}
    assert baselines.predict({"kind": "constant", "text": "z"}, TRAIN, TEST)[0] == ["z", "z"]
    with pytest.raises(ValueError, match="non-empty training split"):
        baselines.predict({"kind": "copy_input"}, [], TEST)


def test_a_baseline_is_scored_with_the_runs_metrics(tmp_path):
    io.write_jsonl(tmp_path / "train.jsonl", TRAIN)
    io.write_jsonl(tmp_path / "test.jsonl", TEST)
    record = baseline_scoring.baseline_run({"kind": "copy_input"}, tmp_path / "train.jsonl", tmp_path / "test.jsonl",
                                    tmp_path / "out/generations.jsonl", tmp_path / "out/metrics.json",
                                    task="generation", max_test_examples=1, name="copy")
    rows = io.read_jsonl(tmp_path / "out/generations.jsonl")
    assert [row["prediction"] for row in rows] == ["json parser in rust"]  # the first max_test_examples rows
    rouge, _ = quality.rouge(["json parser in rust"], ["A json parser."])
    assert record["metrics"]["rouge_l"] == pytest.approx(rouge["rouge_l"])
    assert record["baseline"] == {"name": "copy", "kind": "copy_input"} and record["examples"] == 1
    assert io.read_json(tmp_path / "out/metrics.json")["chosen"]["field"] == "summary"
    assert record["metrics"]["meteor"] is None and "no WordNet" in record["notes"]["meteor"]
