import gzip

import pytest

from peftstudy import io


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "weights"
    with io.atomic_directory(target) as tmp:
        (tmp / "a.bin").write_text("1")
    with pytest.raises(RuntimeError):
        with io.atomic_directory(target) as tmp:
            (tmp / "b.bin").write_text("2")
            raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["a.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["weights"]


def test_jsonl_round_trip_and_gzip_is_deterministic(tmp_path):
    rows = [{"id": "1", "text": "héllo"}, {"id": "2", "text": "x"}]
    io.write_jsonl(tmp_path / "a.jsonl.gz", rows)
    first = (tmp_path / "a.jsonl.gz").read_bytes()
    io.write_jsonl(tmp_path / "a.jsonl.gz", rows)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == first
    assert io.read_jsonl(tmp_path / "a.jsonl.gz") == rows
    assert gzip.decompress(first).decode().count("\n") == 2


def test_bad_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ok": 1}\n{broken\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        io.read_jsonl(path)
