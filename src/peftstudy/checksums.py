"""An artifact's own checksums, recorded when it is written so that `peftstudy verify` can re-check it later.

A JSON record carries the SHA-256 of its own content (``record_sha256``); a directory of weights is listed file by
file (``weights_sha256`` in the training record). A separate module, not provenance.py: only the stages that write
such records import it, so the other stages' code fingerprints stay as they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from peftstudy import io, provenance

SEAL = "record_sha256"


def record_hash(record: Mapping) -> str:
    """canonical_hash of the record as JSON reads it back (integer keys become strings), without its own SEAL:
    the same before writing and after reading."""
    content = json.loads(json.dumps({key: value for key, value in record.items() if key != SEAL}))
    return provenance.canonical_hash(content)


def sealed(record: Mapping) -> dict:
    """The record with the checksum of its content (any earlier one replaced)."""
    return {**{key: value for key, value in record.items() if key != SEAL}, SEAL: record_hash(record)}


def file_checksums(directory: str | os.PathLike) -> dict[str, str]:
    """sha256 of every file below `directory`, by its relative POSIX path. Hidden files are left out: Snakemake
    adds .snakemake_timestamp to a directory output after the job, and it is no part of the artifact."""
    root = Path(directory)
    return {path.relative_to(root).as_posix(): io.sha256_file(path) for path in sorted(root.rglob("*"))
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)}
