"""Decontamination of a pretraining corpus: which lines go, the counts the manifest and the data card show."""

import gzip
from pathlib import Path

import pytest

from peftstudy import io
from peftstudy.data import prepare_corpus
from peftstudy.data.decontaminate import decontaminate, leakage_summary

LONG = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat"  # 17 words
SHORT = "a tool to convert images between many common formats"  # 9 words: checked whole
LABEL = "python"  # one word: not an example of anything


def prepared(directory: Path, validation: list[dict], test: list[dict]) -> Path:
    directory.mkdir(parents=True)
    io.write_jsonl(directory / "validation.jsonl", validation)
    io.write_jsonl(directory / "test.jsonl", test)
    return directory


@pytest.fixture
def dataset(tmp_path):
    return prepared(tmp_path / "toy", [{"id": "v1", "input": "name: x", "reference": LONG}],
                    [{"id": "t1", "input": SHORT, "reference": LABEL}])


def test_lines_sharing_a_13_gram_or_holding_a_short_text_whole_are_removed(dataset):
    thirteen = " ".join(LONG.split()[2:15])  # words 3-15 of the reference: one shared 13-gram
    twelve = " ".join(LONG.split()[2:14])
    lines = [f"Before. {thirteen.upper()}, after.", twelve, f"see: {SHORT}!", SHORT.rsplit(" ", 1)[0],
             f"written in {LABEL}", "unrelated text about something else entirely"]
    kept, report = decontaminate(lines, {"toy": dataset})
    # case and punctuation are ignored; 12 shared words, a short text cut by one word and a label are not examples
    assert kept == [twelve, SHORT.rsplit(" ", 1)[0], f"written in {LABEL}", "unrelated text about something else entirely"]
    assert report["lines_removed"] == 2
    splits = report["datasets"]["toy"]["splits"]
    assert splits["validation"] == {"examples_checked": 1, "found_in_corpus": 1, "left_in_corpus": 0}
    assert splits["test"] == {"examples_checked": 1, "found_in_corpus": 1, "left_in_corpus": 0}
    assert report["datasets"]["toy"]["fingerprint"]["test"] == io.sha256_file(dataset / "test.jsonl")


def test_the_data_card_cell_counts_what_is_left_and_notices_a_changed_split(dataset):
    _, report = decontaminate([LONG], {"toy": dataset})
    assert leakage_summary(report, "toy", "validation", dataset) == "0 of 1"
    assert leakage_summary(report, "other", "validation", dataset) == "not checked"
    assert leakage_summary(None, "toy", "validation", dataset) == ""
    io.write_jsonl(dataset / "validation.jsonl", [{"id": "v2", "input": "name: y", "reference": LONG + " again"}])
    assert leakage_summary(report, "toy", "validation", dataset) == "split changed since"


def write_snapshot(directory: Path, name: str, lines: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.txt.gz").write_bytes(gzip.compress("".join(f"{line}\n" for line in lines).encode()))


def test_a_corpus_of_several_snapshots_is_decontaminated_before_sampling(tmp_path, dataset):
    snapshots = tmp_path / "snapshots"
    write_snapshot(snapshots, "wordnet_glosses", ["a gloss of a word", "another gloss here"])
    write_snapshot(snapshots, "foldoc_text", [LONG, "a definition of a computing term", "a gloss of a word"])
    spec = {"source": "snapshot", "corpus": ["wordnet_glosses", "foldoc_text"], "seed": 1,
            "decontaminate": {"datasets": ["toy"]}}
    manifest = prepare_corpus(spec, tmp_path / "out/english.txt", snapshot_dir=snapshots, evaluation_dirs={"toy": dataset})
    lines = (tmp_path / "out/english.txt").read_text().splitlines()
    assert sorted(lines) == ["a definition of a computing term", "a gloss of a word", "another gloss here"]
    assert manifest["dropped"] == {"duplicate": 1, "holds_an_evaluation_example": 1}
    assert {name: part["lines"] for name, part in manifest["parts"].items()} == {"wordnet_glosses": 2, "foldoc_text": 3}
    assert manifest["decontamination"]["datasets"]["toy"]["splits"]["validation"]["left_in_corpus"] == 0
    with pytest.raises(ValueError, match=r"decontaminate\.datasets \['toy'\] were not prepared"):
        prepare_corpus(spec, tmp_path / "x.txt", snapshot_dir=snapshots, evaluation_dirs={})


def test_templated_boilerplate_is_capped_by_its_opening():
    from peftstudy.data.prepare import cap_openings

    rust = [f"This package contains the source for the Rust {name} crate." for name in ("a", "b", "c", "d")]
    lines = rust + ["This package contains the source, for the RUST x crate!", "Short line.", "Another line entirely here."]
    kept, removed = cap_openings(lines, 8, 2)
    # the same first 8 words (case and punctuation ignored): only the first 2 stay; shorter lines are not templated
    assert kept == rust[:2] + ["Short line.", "Another line entirely here."] and removed == 3
