"""A study's own data: records read from the user's JSONL, CSV or Parquet files (``source: files``).

The files are named relative to the working directory (and inside it), so that the workflow can list them as
inputs of prepare_dataset: editing one prepares the dataset again. Declared columns map onto the record shape the
other sources give (id, input, reference; QA adds question, context, answers, answer_start), so the records go
through the same cleaning, splits, leakage check and data card. Ids are '<split>-<row:08d>' (row counted from 0
in its file; split 'file' for a single file), so that per-split files keep their splits as a hub's do.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from peftstudy import io

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# columns: what each task's records are built from (the keys of ``columns``), then the optional ones
COLUMNS = {"generation": ("input", "reference"), "classification": ("text", "label"),
           "extractive_qa": ("question", "context", "answers")}
OPTIONAL_COLUMNS = {"extractive_qa": ("answer_start",)}
FILE_SPLITS = ("train", "validation", "test")
SINGLE_FILE_SPLIT = "file"


def declared_files(spec: Mapping) -> dict[str, str]:
    """Config key (``file`` or ``files.<split>``) -> path as written."""
    if "file" in spec:
        return {"file": spec["file"]}
    return {f"files.{split}": path for split, path in (spec.get("files") or {}).items()}


def input_files(spec: Mapping) -> list[str]:
    """The files a ``source: files`` dataset reads (the workflow's inputs for prepare_dataset)."""
    return list(declared_files(spec).values())


def path_problem(path: Any) -> str | None:
    """Why a declared path may not be read, or None: it must be relative and stay inside the working directory."""
    if not isinstance(path, str) or not path.strip():
        return "give a file path relative to the working directory"
    if path.startswith(("/", "~", "\\")) or Path(path).is_absolute() or (len(path) > 1 and path[1] == ":"):
        return f"{path!r} is an absolute path: name the file relative to the working directory (e.g. data/user/...)"
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        return f"{path!r} leaves the working directory ('..'): keep the file inside it (e.g. data/user/...)"
    return None


def file_format(spec: Mapping, path: str) -> str:
    """The declared ``format``, else the one the file's extension names."""
    if spec.get("format"):
        if spec["format"] not in set(FORMATS.values()):
            raise ValueError(f"{path}: unknown format {spec['format']!r} (format: jsonl, csv or parquet)")
        return spec["format"]
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown format {suffix or '(no extension)'!r}; name a .jsonl, .csv or .parquet file"
                         f" or set format: jsonl, csv or parquet")
    return FORMATS[suffix]


def spec_problems(spec: Mapping, task: str) -> list[tuple[str, str]]:
    """(key, message) for each thing wrong with a ``source: files`` spec, for the config loader."""
    problems = []
    if ("file" in spec) == ("files" in spec):
        problems.append(("files", "give either file (one file, split by the seeded split) or files (train, test and"
                                  " optionally validation)"))
    if "files" in spec:
        missing = [split for split in ("train", "test") if split not in spec["files"]]
        if missing:
            problems.append(("files", f"files needs {' and '.join(missing)} (validation is optional: carved from"
                                      " train when absent)"))
        if "split" in spec:
            problems.append(("split", "split re-splits a single file; with files the splits are the files'"))
    for key, path in declared_files(spec).items():
        problem = path_problem(path)
        if problem is None:
            try:
                file_format(spec, path)
            except ValueError as error:
                problem = str(error)
        if problem:
            problems.append((key, problem))
    columns = spec.get("columns") or {}
    required, optional = COLUMNS[task], OPTIONAL_COLUMNS.get(task, ())
    missing = [key for key in required if key not in columns]
    extra = sorted(set(columns) - set(required) - set(optional))
    if missing or extra:
        problems.append(("columns", f"a {task} dataset maps {', '.join(required)}"
                                    + (f" (optionally {', '.join(optional)})" if optional else "")
                                    + f" to its files' columns; {'missing ' + ', '.join(missing) if missing else ''}"
                                    + ("; " if missing and extra else "")
                                    + (f"unknown {', '.join(extra)}" if extra else "")))
    return problems


# ---------------------------------------------------------------------------- reading


def read_rows(path: Path, fmt: str) -> tuple[list[dict], list[str]]:
    """(rows, column names) of one file; a row is a mapping of column to value (None where missing)."""
    if fmt == "jsonl":
        rows = io.read_jsonl(path)
        names = list(dict.fromkeys(key for row in rows for key in row))
        return rows, names
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(handle)
            rows = list(reader)
            return rows, list(reader.fieldnames or [])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.to_pylist(), list(table.column_names)
    raise ValueError(f"{path}: unknown format {fmt!r} (format: jsonl, csv or parquet)")


def _answers(value: Any) -> list[str]:
    """A list of answers (JSON list, Parquet list) or one answer (a string column)."""
    if value is None:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):  # a JSON list written into a CSV cell
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                return [value]
        else:
            return [value]
    if not isinstance(value, (list, tuple)):
        value = [value]
    return [str(answer) for answer in value if answer is not None]


def _starts(value: Any, answers: list[str], context: str) -> list[int]:
    """Declared answer offsets, else each answer's first occurrence in the context (-1 where it is not there:
    a first answer not in its context is dropped as answer_not_in_context)."""
    if value is None or value == "":
        return [context.find(answer) for answer in answers]
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("[") else [value]
    if not isinstance(value, (list, tuple)):
        value = [value]
    return [int(start) for start in value]


def _record(record_id: str, row: Mapping, columns: Mapping[str, str], task: str) -> dict:
    if task == "generation":
        return {"id": record_id, "input": row[columns["input"]], "reference": row[columns["reference"]]}
    if task == "classification":
        return {"id": record_id, "input": row[columns["text"]], "reference": row[columns["label"]]}
    question, context = row[columns["question"]], row[columns["context"]]
    question = "" if question is None else str(question)
    context = "" if context is None else str(context)
    answers = _answers(row[columns["answers"]])
    starts = _starts(row.get(columns["answer_start"]) if "answer_start" in columns else None, answers, context)
    return {"id": record_id, "input": f"question: {question} context: {context}" if question and context else None,
            "reference": answers[0] if answers else None, "question": question, "context": context,
            "answers": answers, "answer_start": starts}


def read_records(spec: Mapping, task: str, name: str | None = None) -> tuple[list[dict], dict]:
    """(records, provenance) of a ``source: files`` dataset; errors name the dataset, file, row and column."""
    where = f"dataset {name!r}: " if name else ""
    problems = spec_problems(spec, task)
    if problems:
        key, message = problems[0]
        raise ValueError(f"{where}{key}: {message}")
    columns = dict(spec["columns"])
    records, described, formats = [], [], {}
    for key, declared in declared_files(spec).items():
        split = key.split(".", 1)[1] if "." in key else SINGLE_FILE_SPLIT
        path = Path(declared)
        if not path.is_file():
            raise FileNotFoundError(f"{where}{declared}: no such file ({key})")
        formats[declared] = fmt = file_format(spec, declared)
        try:
            rows, names = read_rows(path, fmt)
        except Exception as error:  # a malformed file: say which (read_jsonl's messages name it already)
            if str(error).startswith(str(path)):
                raise ValueError(f"{where}{error}") from None
            raise ValueError(f"{where}{declared}: not a readable {fmt} file ({error})") from None
        if not rows:
            raise ValueError(f"{where}{declared}: the file has no rows ({key})")
        for role, column in columns.items():
            if column not in names:
                raise ValueError(f"{where}{declared}: no column {column!r} (columns.{role}); its columns:"
                                 f" {', '.join(map(str, names)) or 'none'}")
        for index, row in enumerate(rows):
            missing = [role for role, column in columns.items()
                       if column not in row and role not in OPTIONAL_COLUMNS.get(task, ())]
            if missing:  # JSONL: a record without the field
                raise ValueError(f"{where}{declared}: row {index} has no {columns[missing[0]]!r} field"
                                 f" (columns.{missing[0]})")
            try:
                records.append(_record(f"{split}-{index:08d}", row, columns, task))
            except (TypeError, ValueError) as error:
                raise ValueError(f"{where}{declared}: row {index}: {error}") from None
        described.append({"path": declared, "split": split, "rows": len(rows), "bytes": path.stat().st_size,
                          "sha256": io.sha256_file(path)})
    return records, {"source_files": described, "user_files": {"formats": formats, "columns": columns}}
