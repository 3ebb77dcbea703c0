"""Decontamination of a pretraining corpus: which lines go, the counts the manifest and the data card show."""

import gzip
from pathlib import Path

import pytest

from peftstudy import io
from peftstudy.data import prepare_corpus
from peftstudy.data.decontaminate import decontaminate, leakage_summary
from peftstudy.data.sources import (
    debian_record_line,
    dictionary_record_line,
    get_corpus,
)

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


def test_record_lines_are_capped_by_the_opening_of_their_prose(tmp_path):
    rust = [{"id": f"librust-{name}-dev", "reference": f"This package contains the source for the Rust {name} crate.",
             "input": f"name: librust-{name}-dev | section: rust | summary: Rust crate {name}"} for name in "abc"]
    records = get_corpus("debian_descriptions_records_text")
    snapshots = tmp_path / "snapshots"
    assert dictionary_record_line({"input": "term: FUBAR", "reference": "Failed UniBus Address Register."}) == \
        "FUBAR: Failed UniBus Address Register."
    assert get_corpus("jargon_records_text").body("FUBAR: Failed UniBus Address Register.") == "Failed UniBus Address Register."
    write_snapshot(snapshots, "debian_descriptions_records_text", [debian_record_line(r) for r in rust])
    assert debian_record_line(rust[0]) == ("librust-a-dev (rust): Rust crate a. This package contains the source for the "
                                           "Rust a crate.")
    assert records.body(debian_record_line(rust[0])).startswith("This package contains")
    spec = {"source": "snapshot", "corpus": ["debian_descriptions_records_text"], "seed": 1,
            "boilerplate": {"opening_words": 8, "max_lines": 2}}
    manifest = prepare_corpus(spec, tmp_path / "english.txt", snapshot_dir=snapshots)
    # different headwords, the same templated prose: capped as the bare descriptions were
    assert manifest["dropped"] == {"boilerplate": 1} and manifest["counts"]["lines"] == 2


def test_short_references_and_qa_contexts_are_checked(tmp_path):
    six = "Oxygen widget theme for GTK applications"  # 6 words, the demo's shortest references
    context = "Arcanist is the command-line tool for Phabricator."  # 7 words, inside a longer QA input
    directory = prepared(tmp_path / "qa", [{"id": "v", "input": "term: x", "reference": six}],
                         [{"id": "arcanist", "input": f"question: Which package is described as: a tool? context: {context}",
                           "context": context, "answers": ["Arcanist"]}])
    lines = [f"gtk2-engines-oxygen (gnome): Oxygen theme. {six}.", f"arcanist (devel): Phabricator CLI. {context}",
             "Oxygen widget theme for GTK"]
    kept, report = decontaminate(lines, {"qa": directory})
    assert kept == ["Oxygen widget theme for GTK"] and report["lines_removed"] == 2


def test_the_demo_corpus_holds_no_record_of_a_debian_evaluation_package(tmp_path):
    """On the committed snapshots and the demo's own specs: an evaluation package's record would give a base its
    synopsis -> description (products), description -> section (sections) or synopsis -> name (QA) answer."""
    import yaml

    from peftstudy.data import prepare_dataset

    snapshots = Path(__file__).resolve().parents[3] / "data" / "snapshots"
    if not (snapshots / "debian_descriptions_records_text.txt.gz").is_file():
        pytest.skip("data/snapshots has not been built")
    study = yaml.safe_load((snapshots.parents[1] / "config" / "demo.yaml").read_text())
    debian = ["debian-products", "debian-sections", "debian-package-qa"]
    directories = {name: tmp_path / name for name in debian}
    for name in debian:
        prepare_dataset(study["datasets"][name], directories[name], snapshot_dir=snapshots, name=name)
    spec = {**study["corpora"]["english"], "corpus": ["debian_descriptions_records_text"],
            "decontaminate": {"datasets": debian}}
    prepare_corpus(spec, tmp_path / "english.txt", snapshot_dir=snapshots, evaluation_dirs=directories)
    headwords = {line.split(" (", 1)[0].split(": ", 1)[0] for line in (tmp_path / "english.txt").read_text().splitlines()}
    evaluation = {row["id"] for name in debian for split in ("validation", "test")
                  for row in io.read_jsonl(directories[name] / f"{split}.jsonl")}
    assert len(evaluation) > 400 and len(headwords) > 40_000
    assert not evaluation & headwords
