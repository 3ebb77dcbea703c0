"""Atomic file writing and small readers.

Every artifact goes through these helpers so that a killed job never leaves a
half-written file that looks complete: data is written to a temporary sibling
and moved into place with ``os.replace`` (atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


@contextlib.contextmanager
def naming_the_target(target: Path) -> Iterator[None]:
    """An OS error while writing ``target`` (a full disk, a read-only directory) says which artifact it was; so
    does a library's error that carries one only as text (safetensors: "I/O error: ... (os error 28)")."""
    import re

    try:
        yield
    except OSError as error:
        raise OSError(error.errno, f"cannot write {target}: {error.strerror or error}") from error
    except Exception as error:
        found = re.search(r"\(os error (\d+)\)", str(error))
        if found is None:
            raise
        raise OSError(int(found.group(1)), f"cannot write {target}: {os.strerror(int(found.group(1)))} "
                                           f"({type(error).__name__}: {error})") from error


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success."""
    target = Path(path)
    with naming_the_target(target), _atomic_path(target) as tmp_path:
        yield tmp_path


@contextlib.contextmanager
def _atomic_path(target: Path) -> Iterator[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; artifacts get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; it replaces ``path`` only when the block succeeds."""
    target = Path(path)
    with naming_the_target(target), _atomic_directory(target) as tmp_dir:
        yield tmp_dir


@contextlib.contextmanager
def _atomic_directory(target: Path) -> Iterator[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp_dir
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp_dir, target)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_csv_frame(path: str | os.PathLike, frame) -> None:
    """A pandas DataFrame as CSV (full precision, no index), written atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_csv(path: str | os.PathLike, rows: Iterable[dict], columns: list[str]) -> None:
    """A CSV with exactly these columns (missing values empty), written atomically."""
    import csv
    import io as stdio

    buffer = stdio.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: row.get(column, "") for column in columns})
    write_text(path, buffer.getvalue())


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write one JSON object per line (gzip when the name ends in .gz); return the row count."""
    lines = [json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows]
    payload = "".join(lines).encode("utf-8")
    if str(path).endswith(".gz"):
        # mtime=0 and no file name keep the archive byte-identical across runs.
        payload = gzip.compress(payload, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return len(lines)


def read_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> list[dict]:
    """Read a JSONL file (gzip when the name ends in .gz), naming the file and line on bad input: a line that is not
    UTF-8 (and its byte offset), not JSON, not a JSON object, or without one of the ``required`` fields."""
    opener = gzip.open if str(path).endswith(".gz") else open
    rows, offset = [], 0
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid UTF-8 at byte offset {offset + error.start}"
                                 f" ({error.reason})") from None
            offset += len(raw)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
            missing = [field for field in required if field not in row]
            if missing:
                raise ValueError(f"{path}:{number}: record has no {missing[0]!r} field")
            rows.append(row)
    return rows


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
