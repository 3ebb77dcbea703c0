"""Classification and extractive-QA datasets: derived records, label sets, stratified splits, task checks."""

import collections
from pathlib import Path

import pytest

from peftstudy.data import load_split, prepare_dataset
from peftstudy.data.prepare import SPLITS, dataset_task, stratified_split
from peftstudy.data.sources import debian_package_qa, debian_sections

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SNAPSHOTS = Path(__file__).resolve().parents[3] / "data" / "snapshots"
DEBIAN_PATHS = {"translations": str(FIXTURES / "debian/Translation-en"), "packages": str(FIXTURES / "debian/Packages")}


def record(name, section, summary, reference):
    return {"id": name, "input": f"name: {name} | section: {section} | summary: {summary}", "reference": reference}


def test_sections_keep_only_the_description_as_input():
    rows = list(debian_sections([record("netscan", "net", "scan networks", "Netscan finds hosts on a network."),
                                 {"id": "x", "input": "name: x | summary: no section", "reference": "text"}]))
    assert rows == [{"id": "netscan", "input": "Netscan finds hosts on a network.", "reference": "net"}]


def test_package_qa_answers_are_spans_of_the_context_in_squad_shape():
    rows = list(debian_package_qa([
        record("netscan", "net", "scan networks", "A tool: NetScan finds hosts; netscan-gui is its front end."),
        record("foo", "utils", "a foo tool", "This mentions foobar only."),  # no whole-word mention: dropped
        record("g++", "devel", "the C++ compiler", "g++ compiles C++."),
        record("libfoo-perl", "perl", "Perl module for foo", "Foo::Bar reads foo files from Perl programs."),
        record("gox", "golang", "go tool", "gox lets you go fast."),  # "go" is not the language "Go"
    ]))
    assert [row["id"] for row in rows] == ["netscan", "g++", "libfoo-perl", "gox"]
    for row in rows:
        start = row["answer_start"][0]
        assert row["context"][start: start + len(row["answers"][0])] == row["answers"][0] == row["reference"]
        assert row["input"] == f"question: {row['question']} context: {row['context']}"
    assert rows[0]["answers"] == ["NetScan"] and rows[0]["answer_start"] == [8]  # the span as written
    assert rows[0]["question"] == "Which package is described as: scan networks?"
    assert rows[2]["answers"] == ["Perl"] and rows[2]["question"] == "Which programming language is the package libfoo-perl for?"
    assert rows[3]["answers"] == ["gox"]  # no language mention: falls back to the package question


def test_prepare_classification_keeps_the_label_set_and_each_labels_share(tmp_path):
    labels = ["perl", "python", "rust"]
    manifest = prepare_dataset({"source": "snapshot", "corpus": "debian_sections", "labels": labels, "seed": 5,
                                "split": {"train": 0.7, "validation": 0.15, "test": 0.15}},
                               tmp_path, snapshot_dir=SNAPSHOTS)
    assert manifest["task"] == "classification" and manifest["derived"] == {"corpus": "debian_sections",
                                                                           "from": "debian_descriptions"}
    assert manifest["dropped"]["label_not_selected"] > 0
    counts = {name: collections.Counter(row["reference"] for row in load_split(tmp_path, name)) for name in SPLITS}
    assert set(counts["test"]) == set(labels) and manifest["labels"]["test"] == dict(sorted(counts["test"].items()))
    total = {label: sum(counts[name][label] for name in SPLITS) for label in labels}
    for label in labels:  # stratified: each split holds its fraction of every label (to rounding)
        assert abs(counts["test"][label] - 0.15 * total[label]) <= 1
        assert abs(counts["validation"][label] - 0.15 * total[label]) <= 1
    ids = [row["id"] for name in SPLITS for row in load_split(tmp_path, name)]
    assert len(ids) == len(set(ids)) == manifest["counts"]["kept"]
    again = prepare_dataset({"source": "snapshot", "corpus": "debian_sections", "labels": labels, "seed": 5,
                             "split": {"train": 0.7, "validation": 0.15, "test": 0.15}}, tmp_path / "b",
                            snapshot_dir=SNAPSHOTS)
    assert again["files"] == manifest["files"]  # same spec, same bytes


def test_classification_keeps_inputs_unique_but_labels_shared():
    rows = [{"id": f"{i}", "input": f"text {i % 5}", "reference": ["a", "b"][i % 2]} for i in range(30)]
    split = stratified_split(rows[:10], {"train": 0.6, "validation": 0.2, "test": 0.2}, 0)
    assert {len(split[name]) for name in SPLITS} == {6, 2}
    with pytest.raises(ValueError, match="label 'c' has 1 examples"):
        stratified_split(rows[:10] + [{"id": "z", "input": "q", "reference": "c"}],
                         {"train": 0.6, "validation": 0.2, "test": 0.2}, 0)


def test_prepare_extractive_qa_from_system_files(tmp_path):
    manifest = prepare_dataset({"source": "system", "corpus": "debian_package_qa", "paths": DEBIAN_PATHS,
                                "split": {"train": 0.5, "validation": 0.0, "test": 0.5}}, tmp_path, snapshot_dir=tmp_path)
    assert manifest["task"] == "extractive_qa"
    rows = [row for name in SPLITS for row in load_split(tmp_path, name)]
    assert rows and all(row["context"][row["answer_start"][0]:].lower().startswith(row["reference"].lower())
                        for row in rows)


def test_task_must_agree_with_the_corpus():
    assert dataset_task({"corpus": "foldoc"}) == "generation"
    assert dataset_task({"corpus": "debian_package_qa"}) == "extractive_qa"
    with pytest.raises(ValueError, match="is a classification corpus"):
        dataset_task({"corpus": "debian_sections", "task": "generation"})
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        dataset_task({"corpus": "foldoc", "task": "ranking"})
