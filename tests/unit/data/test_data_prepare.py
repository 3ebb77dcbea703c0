"""prepare_dataset / prepare_corpus / load_split and the snapshot builder: counts, determinism, provenance."""

import gzip
import json
from pathlib import Path

import pytest

from peftstudy import io
from peftstudy.data import load_split, prepare_corpus, prepare_dataset
from peftstudy.data.prepare import SPLITS, clean_and_filter, deduplicate
from peftstudy.data.snapshot import build_snapshots

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
REPOSITORY = Path(__file__).resolve().parents[3]
SNAPSHOTS = REPOSITORY / "data" / "snapshots"
DEBIAN_PATHS = {"translations": str(FIXTURES / "debian/Translation-en"), "packages": str(FIXTURES / "debian/Packages")}
SYNTHETIC = {"source": "synthetic", "corpus": "synthetic", "max_examples": 200, "seed": 3}


def read_all(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_synthetic_dataset_splits_are_disjoint_and_sized(tmp_path):
    manifest = prepare_dataset(SYNTHETIC, tmp_path, snapshot_dir=tmp_path / "none")
    splits = {name: load_split(tmp_path, name) for name in SPLITS}
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 160, "validation": 20, "test": 20}
    ids = [row["id"] for rows in splits.values() for row in rows]
    assert len(ids) == len(set(ids)) == 200
    assert all(set(row) == {"id", "input", "reference"} for row in splits["train"])
    assert manifest["counts"] == {"read": 1000, "kept": 200, "train": 160, "validation": 20, "test": 20}
    assert manifest["dropped"]["over_max_examples"] == 1000 - 200 - sum(
        count for reason, count in manifest["dropped"].items() if reason != "over_max_examples")
    for name in SPLITS:
        assert manifest["files"][name]["sha256"] == io.sha256_file(tmp_path / f"{name}.jsonl")
    assert io.read_json(tmp_path / "manifest.json") == manifest


def test_same_spec_gives_byte_identical_files_and_seed_changes_split(tmp_path):
    prepare_dataset(SYNTHETIC, tmp_path / "a", snapshot_dir=tmp_path)
    prepare_dataset(SYNTHETIC, tmp_path / "b", snapshot_dir=tmp_path)
    assert read_all(tmp_path / "a") == read_all(tmp_path / "b")
    prepare_dataset({**SYNTHETIC, "seed": 4}, tmp_path / "c", snapshot_dir=tmp_path)
    test_ids = lambda d: [row["id"] for row in load_split(tmp_path / d, "test")]  # noqa: E731
    assert test_ids("a") != test_ids("c")


def test_custom_split_fractions_and_invalid_ones(tmp_path):
    spec = {**SYNTHETIC, "split": {"train": 0.5, "validation": 0.0, "test": 0.5}}
    manifest = prepare_dataset(spec, tmp_path, snapshot_dir=tmp_path)
    assert (manifest["counts"]["train"], manifest["counts"]["validation"], manifest["counts"]["test"]) == (100, 0, 100)
    with pytest.raises(ValueError, match="sum to 1"):
        prepare_dataset({**SYNTHETIC, "split": {"train": 0.5, "validation": 0.1, "test": 0.1}}, tmp_path, snapshot_dir=tmp_path)


def test_clean_and_filter_counts_each_reason():
    records = [
        {"id": "1", "input": "  a   b ", "reference": "one two three four five"},
        {"id": "2", "input": "a", "reference": "   "},
        {"id": "3", "input": "a", "reference": "too short"},
        {"id": "4", "input": "a", "reference": " ".join(["w"] * 11)},
        {"id": "5", "input": "x y z w", "reference": "one two three four five"},
    ]
    kept, dropped = clean_and_filter(records, {"min_reference_words": 3, "max_reference_words": 10, "max_input_words": 3})
    assert kept == [{"id": "1", "input": "a b", "reference": "one two three four five"}]
    assert dropped == {"empty": 1, "reference_too_short": 1, "reference_too_long": 1, "input_too_long": 1}


def test_deduplicate_keeps_first_by_id_on_lowercased_input_and_on_reference():
    rows = [
        {"id": "b", "input": "Foo", "reference": "r1"},
        {"id": "a", "input": "foo", "reference": "r2"},
        {"id": "c", "input": "bar", "reference": "r2"},
        {"id": "d", "input": "baz", "reference": "r3"},
    ]
    kept, dropped = deduplicate(rows)
    assert [row["id"] for row in kept] == ["a", "d"]
    assert dropped == {"duplicate_input": 1, "duplicate_reference": 1}
    with pytest.raises(ValueError, match="share the id"):
        deduplicate(rows + [dict(rows[0])])


def test_system_source_on_fixtures_records_provenance(tmp_path):
    spec = {"source": "system", "corpus": "debian_descriptions", "seed": 1, "paths": DEBIAN_PATHS,
            "split": {"train": 0.34, "validation": 0.0, "test": 0.66}}
    manifest = prepare_dataset(spec, tmp_path, snapshot_dir=tmp_path)
    assert manifest["counts"] == {"read": 5, "kept": 3, "train": 1, "validation": 0, "test": 2}
    assert manifest["dropped"] == {"duplicate_reference": 1, "empty": 1}
    kept = sorted(row["id"] for name in SPLITS for row in load_split(tmp_path, name))
    assert kept == ["foo-data", "libfoo-dev", "netscan"]  # foo-edit repeats foo-data's description
    files = {Path(entry["path"]).name: entry for entry in manifest["source_files"]}
    assert files["Packages"]["sha256"] == io.sha256_file(FIXTURES / "debian/Packages")
    assert manifest["spec"] == spec and manifest["debian_packages"] == {}
    foldoc = prepare_dataset({"source": "system", "corpus": "foldoc", "paths": {
        "index": str(FIXTURES / "dictd/foldoc.index"), "dict": str(FIXTURES / "dictd/foldoc.dict.dz")},
        "split": {"train": 0.34, "validation": 0.0, "test": 0.66}}, tmp_path / "f", snapshot_dir=tmp_path)
    assert list(foldoc["debian_packages"]) == ["dict-foldoc"]  # version string, or None off Debian


def test_missing_system_file_names_file_and_package(tmp_path):
    spec = {"source": "system", "corpus": "jargon", "paths": {"index": str(tmp_path / "jargon.index")}}
    with pytest.raises(FileNotFoundError, match=r"jargon\.index.*dict-jargon"):
        prepare_dataset(spec, tmp_path / "out", snapshot_dir=tmp_path)
    assert not (tmp_path / "out").exists()


def test_unknown_source_or_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown source 'web'"):
        prepare_dataset({"source": "web", "corpus": "foldoc"}, tmp_path, snapshot_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown corpus 'wiki'"):
        prepare_dataset({"source": "system", "corpus": "wiki"}, tmp_path, snapshot_dir=tmp_path)
    with pytest.raises(ValueError, match="pretraining corpus"):
        prepare_dataset({"source": "system", "corpus": "wordnet_glosses"}, tmp_path, snapshot_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_split(tmp_path, "dev")


def test_snapshot_source_reads_the_snapshot_and_hashes_it(tmp_path):
    rows = [{"id": f"t{i:03d}", "input": f"term: t{i}", "reference": f"definition number {i} of the term"} for i in range(50)]
    io.write_jsonl(tmp_path / "snap/jargon.jsonl.gz", rows)
    manifest = prepare_dataset({"source": "snapshot", "corpus": "jargon", "max_examples": 20, "seed": 9},
                               tmp_path / "out", snapshot_dir=tmp_path / "snap")
    assert manifest["counts"]["kept"] == 20 and manifest["dropped"] == {"over_max_examples": 30}
    assert manifest["snapshot"]["sha256"] == io.sha256_file(tmp_path / "snap/jargon.jsonl.gz")
    with pytest.raises(FileNotFoundError, match=r"foldoc\.jsonl\.gz.*peftstudy\.data\.snapshot"):
        prepare_dataset({"source": "snapshot", "corpus": "foldoc"}, tmp_path / "x", snapshot_dir=tmp_path / "snap")


def test_corpus_is_deduplicated_sampled_and_deterministic(tmp_path):
    spec = {"source": "system", "corpus": "wordnet_glosses", "seed": 2, "max_lines": 5,
            "paths": {"data": str(FIXTURES / "wordnet/data.noun")}}
    manifest = prepare_corpus(spec, tmp_path / "a/wn.txt", snapshot_dir=tmp_path)
    prepare_corpus(spec, tmp_path / "b/wn.txt", snapshot_dir=tmp_path)
    assert read_all(tmp_path / "a") == read_all(tmp_path / "b")
    lines = (tmp_path / "a/wn.txt").read_text().splitlines()
    assert len(lines) == 5 and len(set(lines)) == 5
    assert manifest["counts"] == {"read": 7, "lines": 5} and manifest["dropped"] == {"over_max_lines": 2}
    assert io.read_json(tmp_path / "a/wn.manifest.json") == manifest
    synthetic = prepare_corpus({"source": "synthetic", "corpus": "synthetic", "max_lines": 300, "seed": 1},
                               tmp_path / "s.txt", snapshot_dir=tmp_path)
    assert synthetic["counts"]["lines"] == 300


def test_snapshot_builder_on_fixtures_is_reproducible(tmp_path):
    plan = {"debian_descriptions": {"max_examples": 2, "filter": {"min_reference_words": 5}},
            "jargon": {"max_examples": None},
            "wordnet_glosses": {"max_lines": 4}}
    paths = {"debian_descriptions": DEBIAN_PATHS,
             "jargon": {"index": str(FIXTURES / "dictd/jargon.index"), "dict": str(FIXTURES / "dictd/jargon.dict.dz")},
             "wordnet_glosses": {"data": str(FIXTURES / "wordnet/data.noun")}}
    manifest = build_snapshots(tmp_path / "a", plan=plan, paths=paths)
    build_snapshots(tmp_path / "b", plan=plan, paths=paths)
    assert read_all(tmp_path / "a") == read_all(tmp_path / "b")
    corpora = manifest["corpora"]
    assert (corpora["debian_descriptions"]["records"], corpora["jargon"]["records"], corpora["wordnet_glosses"]["lines"]) == (2, 2, 4)
    assert "WordNet 3.0 Copyright 2006" in (tmp_path / "a/LICENSES.md").read_text()
    with gzip.open(tmp_path / "a/jargon.jsonl.gz", "rt") as handle:
        assert [json.loads(line)["id"] for line in handle] == ["frob", "kluge"]
    # --only rebuilds the corpora named and keeps the others' files and MANIFEST entries
    rebuilt = build_snapshots(tmp_path / "a", plan={**plan, "jargon_text": {"max_lines": None}}, only=["jargon_text"],
                              paths={**paths, "jargon_text": paths["jargon"]})
    assert rebuilt["corpora"]["debian_descriptions"] == corpora["debian_descriptions"]
    assert rebuilt["corpora"]["jargon_text"]["lines"] == 2
    assert list(rebuilt["corpora"]) == ["debian_descriptions", "jargon", "wordnet_glosses", "jargon_text"]
    with pytest.raises(ValueError, match=r"--only: unknown corpora \['nope'\]"):
        build_snapshots(tmp_path / "a", plan=plan, only=["nope"])


def test_committed_snapshots_match_their_manifest_and_stay_small():
    if not (SNAPSHOTS / "MANIFEST.json").is_file():
        pytest.skip("data/snapshots has not been built")
    # the samples (1.8 MB) and the pretraining text of the demo's bases (4.9 MB: its records, headword first)
    assert sum(path.stat().st_size for path in SNAPSHOTS.iterdir()) < 7_500_000
    for name, entry in io.read_json(SNAPSHOTS / "MANIFEST.json")["corpora"].items():
        assert io.sha256_file(SNAPSHOTS / entry["file"]) == entry["sha256"], name


def test_committed_debian_snapshot_prepares(tmp_path):
    if not (SNAPSHOTS / "debian_descriptions.jsonl.gz").is_file():
        pytest.skip("data/snapshots has not been built")
    spec = {"source": "snapshot", "corpus": "debian_descriptions", "max_examples": 300, "seed": 1234,
            "filter": {"min_reference_words": 10, "max_reference_words": 50}}
    manifest = prepare_dataset(spec, tmp_path, snapshot_dir=SNAPSHOTS)
    assert manifest["counts"]["kept"] == 300
    assert manifest["snapshot"]["built_from"]["file"] == "debian_descriptions.jsonl.gz"


def test_hub_source_pools_splits_and_maps_fields(tmp_path, monkeypatch):
    """The paper's datasets come from the hub; a stand-in load_dataset keeps this test offline."""
    import sys
    import types

    rows = {"train": [{"mr": f"name[x{i}]", "refs": [f"ref a {i}", f"ref b {i}"]} for i in range(8)],
            "test": [{"mr": f"name[y{i}]", "refs": [f"ref c {i}"]} for i in range(2)]}
    calls = []
    fake = types.SimpleNamespace(load_dataset=lambda *args, **kwargs: calls.append((args, kwargs)) or rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    spec = {"source": "hub", "hub_id": "org/e2e", "revision": "abc", "fields": {"input": "mr", "reference": "refs[0]"},
            "split": {"train": 0.6, "validation": 0.2, "test": 0.2}}
    manifest = prepare_dataset(spec, tmp_path, snapshot_dir=tmp_path)
    assert calls == [(("org/e2e", None), {"revision": "abc"})]
    assert manifest["counts"]["kept"] == 10 and manifest["hub"]["revision"] == "abc"
    rows_out = [row for name in SPLITS for row in load_split(tmp_path, name)]
    assert {"id": "test-00000001", "input": "name[y1]", "reference": "ref c 1"} in rows_out
