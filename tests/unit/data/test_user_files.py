"""A study's own data (source: files): JSONL, CSV and Parquet read through the declared columns into the records
the other sources give, then cleaned, split, checked for leakage and described the same way."""

import copy
import csv
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from peftstudy.data import load_split, prepare_dataset
from peftstudy.data.prepare import SPLITS

REPOSITORY = Path(__file__).resolve().parents[3]
SNAPSHOTS = REPOSITORY / "data" / "snapshots"
WORDS = "red blue green small large old new fast slow warm cold bright dark soft hard quiet loud tall short".split()


def pairs(count, start=0):
    """Distinct generation rows: no two inputs or references alike, none near another."""
    return [{"src": f"item {i} : {WORDS[i % 19]} {WORDS[(i * 7) % 19]} thing number {i}",
             "tgt": f"A {WORDS[(i * 3) % 19]} thing , number {i} of the list ."} for i in range(start, start + count)]


def write(path: Path, rows: list[dict], fmt: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif fmt == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path.relative_to(Path.cwd()))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # user paths are relative to the working directory, as in the workflow
    return tmp_path


@pytest.fixture(scope="module")
def snapshot_record_fields(tmp_path_factory):
    """The fields of a prepared snapshot dataset's records (what every later stage reads)."""
    out = tmp_path_factory.mktemp("snapshot")
    prepare_dataset({"source": "snapshot", "corpus": "debian_descriptions", "max_examples": 40, "seed": 1},
                    out, snapshot_dir=SNAPSHOTS)
    return set(load_split(out, "train")[0])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_generation_files_keep_their_splits_in_each_format(workdir, fmt, snapshot_record_fields):
    rows = pairs(40)
    rows[3]["src"] = "  item   3 :\twith  spaces  "  # whitespace is normalised as for any source
    files = {"train": write(workdir / f"data/user/train.{fmt}", rows[:30], fmt),
             "validation": write(workdir / f"data/user/validation.{fmt}", rows[30:35], fmt),
             "test": write(workdir / f"data/user/test.{fmt}", rows[35:], fmt)}
    spec = {"source": "files", "task": "generation", "files": files, "columns": {"input": "src", "reference": "tgt"}}
    manifest = prepare_dataset(spec, workdir / "out" / "mine", snapshot_dir=SNAPSHOTS)
    splits = {name: load_split(workdir / "out" / "mine", name) for name in SPLITS}
    assert {name: len(part) for name, part in splits.items()} == {"train": 30, "validation": 5, "test": 5}
    for name, part in splits.items():
        assert all(row["id"].startswith(f"{name}-") for row in part)
        assert all(set(row) == snapshot_record_fields == {"id", "input", "reference"} for row in part)
    assert splits["train"][0] == {"id": "train-00000000", "input": rows[0]["src"], "reference": rows[0]["tgt"]}
    assert splits["train"][3]["input"] == "item 3 : with spaces"
    assert [entry["path"] for entry in manifest["source_files"]] == list(files.values())
    assert manifest["source"] == "files" and manifest["task"] == "generation"
    assert manifest["card"]["test"]["rows"] == 5 and manifest["leakage"]["mode"] == "report"


def test_one_file_is_split_by_the_seeded_split_and_checked_for_leakage(workdir):
    rows = pairs(50) + [dict(pairs(1)[0], tgt="another reference , for the same input .")]
    spec = {"source": "files", "file": write(workdir / "data/user/all.jsonl", rows, "jsonl"), "seed": 3,
            "columns": {"input": "src", "reference": "tgt"}, "split": {"train": 0.8, "validation": 0.1, "test": 0.1}}
    first = prepare_dataset(spec, workdir / "a", snapshot_dir=SNAPSHOTS)
    again = prepare_dataset(spec, workdir / "b", snapshot_dir=SNAPSHOTS)
    assert first["counts"] == again["counts"] == {"read": 51, "kept": 50, "train": 40, "validation": 5, "test": 5}
    assert first["dropped"] == {"duplicate_input": 1}
    assert first["files"] == again["files"]  # byte-identical splits
    assert {row["id"].split("-")[0] for name in SPLITS for row in load_split(workdir / "a", name)} == {"file"}


def test_classification_csv_with_a_missing_validation_file_is_carved_by_label(workdir):
    labels = ["pos", "neg"]
    rows = [{"text": f"review {i} : {WORDS[i % 19]} and {WORDS[(i * 5) % 19]} item {i}", "label": labels[i % 2],
             "extra": "ignored"} for i in range(60)]
    rows[7]["label"] = "meh"  # outside the declared label set: dropped
    spec = {"source": "files", "task": "classification", "labels": labels,
            "files": {"train": write(workdir / "data/user/train.csv", rows[:50], "csv"),
                      "test": write(workdir / "data/user/test.csv", rows[50:], "csv")},
            "columns": {"text": "text", "label": "label"}}
    manifest = prepare_dataset(spec, workdir / "out", snapshot_dir=SNAPSHOTS)
    assert manifest["dropped"] == {"label_not_selected": 1}
    # train: 25 pos, 24 neg; 10 % of each label carved as validation (2 and 2), the test file kept whole
    assert manifest["counts"] == {"read": 60, "kept": 59, "train": 45, "validation": 4, "test": 10}
    assert manifest["labels"]["validation"] == {"neg": 2, "pos": 2}
    assert set(manifest["card"]["train"]["labels"]) == {"neg", "pos"}
    assert set(load_split(workdir / "out", "test")[0]) == {"id", "input", "reference"}


def test_qa_answers_as_lists_or_one_string_take_the_squad_shape(workdir):
    def row(i):
        name = f"tool{i}"
        return {"q": f"which package does job {i} ?", "c": f"The {name} package does job {i} well.", "a": [name]}

    rows = [row(i) for i in range(30)]
    rows[4]["a"] = ["missing"]  # not in its context: dropped
    listed = write(workdir / "data/user/qa.parquet", rows, "parquet")
    spec = {"source": "files", "task": "extractive_qa", "file": listed,
            "columns": {"question": "q", "context": "c", "answers": "a"}}
    manifest = prepare_dataset(spec, workdir / "out", snapshot_dir=SNAPSHOTS)
    assert manifest["dropped"] == {"answer_not_in_context": 1} and manifest["counts"]["kept"] == 29
    record = next(r for r in load_split(workdir / "out", "train") if r["id"] == "file-00000000")
    assert record == {"id": "file-00000000", "input": f"question: {rows[0]['q']} context: {rows[0]['c']}",
                      "reference": "tool0", "question": rows[0]["q"], "context": rows[0]["c"], "answers": ["tool0"],
                      "answer_start": [4]}
    single = write(workdir / "data/user/qa.csv", [dict(r, a=r["a"][0]) for r in rows], "csv")
    again = prepare_dataset({**spec, "file": single}, workdir / "csv", snapshot_dir=SNAPSHOTS)
    assert again["files"] == manifest["files"]  # the same records from a one-answer string column


def spec_for(path, **extra):
    return {"source": "files", "file": path, "columns": {"input": "src", "reference": "tgt"}, **extra}


def test_errors_name_the_file_and_the_column(workdir):
    path = write(workdir / "data/user/a.jsonl", pairs(10), "jsonl")
    with pytest.raises(ValueError, match=r"data/user/a.jsonl: no column 'target' \(columns.reference\); its columns:"
                                         r" src, tgt"):
        prepare_dataset({**spec_for(path), "columns": {"input": "src", "reference": "target"}}, workdir / "o",
                        snapshot_dir=SNAPSHOTS)
    for fmt in ("jsonl", "csv"):
        (workdir / f"data/user/empty.{fmt}").write_text("")
        with pytest.raises(ValueError, match=rf"'mine': data/user/empty.{fmt}: the file has no rows \(file\)"):
            prepare_dataset(spec_for(f"data/user/empty.{fmt}"), workdir / "o", snapshot_dir=SNAPSHOTS, name="mine")
    (workdir / "data/user/a.txt").write_text("x\n")
    with pytest.raises(ValueError, match=r"file: data/user/a.txt: unknown format '.txt'"):
        prepare_dataset(spec_for("data/user/a.txt"), workdir / "o", snapshot_dir=SNAPSHOTS)
    (workdir / "data/user/bad.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match=r"data/user/bad.parquet: not a readable parquet file"):
        prepare_dataset(spec_for("data/user/bad.parquet"), workdir / "o", snapshot_dir=SNAPSHOTS)
    with pytest.raises(FileNotFoundError, match=r"data/user/gone.csv: no such file \(file\)"):
        prepare_dataset(spec_for("data/user/gone.csv"), workdir / "o", snapshot_dir=SNAPSHOTS)


@pytest.fixture(scope="module")
def demo():
    return yaml.safe_load((REPOSITORY / "config" / "demo.yaml").read_text())


def own_data(study, **spec):
    """The demo with its generation dataset replaced by the user's own files."""
    study["datasets"]["debian-products"] = {"source": "files", "columns": {"input": "src", "reference": "tgt"}, **spec}


@pytest.mark.parametrize("spec, expected", [
    ({"file": "/data/user/a.jsonl"}, "datasets.debian-products.file: '/data/user/a.jsonl' is an absolute path"),
    ({"files": {"train": "data/../../a.csv", "test": "t.csv"}},
     "datasets.debian-products.files.train: 'data/../../a.csv' leaves the working directory"),
    ({"files": {"train": "a.csv"}}, "datasets.debian-products.files.test: required key is missing"),
    ({"file": "a.xlsx"}, "datasets.debian-products.file: a.xlsx: unknown format '.xlsx'"),
    ({"file": "a.csv", "columns": {"text": "t", "label": "l"}},
     "datasets.debian-products.columns: a generation dataset maps input, reference to its files' columns; missing"
     " input, reference; unknown label, text"),
    ({"file": "a.csv", "files": {"train": "a.csv", "test": "b.csv"}},
     "datasets.debian-products.files: give either file (one file, split by the seeded split) or files"),
    ({}, "datasets.debian-products.files: give either file"),
    ({"files": {"train": "a.csv", "test": "b.csv"}, "split": {"train": 0.8, "validation": 0.1, "test": 0.1}},
     "datasets.debian-products.split: split re-splits a single file"),
])
def test_the_study_config_refuses_paths_outside_the_working_directory(demo, spec, expected):
    from support.configs import assert_refused

    assert_refused(demo, lambda study: own_data(study, **spec), expected)


def test_a_dry_run_prepares_the_dataset_from_the_users_file(demo, tmp_path):
    """The user's file is an input of prepare_dataset: a missing one stops the plan, an edited one redoes it."""
    from support.workflow_runner import parse_job_stats, run_snakemake

    study = copy.deepcopy(demo)
    own_data(study, file="data/user/pairs.jsonl")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    args = ["--snakefile", REPOSITORY / "Snakefile", "--directory", tmp_path, "--configfile", tmp_path / "study.yaml",
            "--cores", "1", "-n", "data/prepared/debian-products/manifest.json"]
    missing = run_snakemake(args, check=False, timeout=300)
    assert missing.returncode != 0 and "data/user/pairs.jsonl" in missing.stdout + missing.stderr
    (tmp_path / "data/user").mkdir(parents=True)
    (tmp_path / "data/user/pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in pairs(20)))
    planned = run_snakemake(args, timeout=300)
    output = planned.stdout + planned.stderr
    assert "rule prepare_dataset:" in output and "input: data/user/pairs.jsonl" in output
    run_snakemake([arg for arg in args if arg != "-n"], timeout=300)  # prepared: nothing left to do
    settled = run_snakemake(args, timeout=300)
    assert "Nothing to be done" in settled.stdout + settled.stderr
    edited = tmp_path / "data/user/pairs.jsonl"
    edited.write_text("".join(json.dumps(row) + "\n" for row in pairs(21)))
    stamp = (tmp_path / "data/prepared/debian-products/manifest.json").stat().st_mtime + 5
    os.utime(edited, (stamp, stamp))  # newer than the outputs on any file system's clock
    replanned = run_snakemake(args, timeout=300)
    assert parse_job_stats(replanned.stdout + replanned.stderr) == {"prepare_dataset": 1}
