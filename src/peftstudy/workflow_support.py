"""Glue for the thin scripts in workflow/scripts/: logging to the rule's log file."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path


def job_header(environ=None) -> str:
    """Where and when a job ran: a log then names its SLURM job (with its requeue count and GPUs)."""
    import datetime
    import socket

    environ = os.environ if environ is None else environ
    parts = [datetime.datetime.now().astimezone().isoformat(timespec="seconds"), f"host {socket.gethostname()}"]
    if environ.get("SLURM_JOB_ID"):
        parts.append(f"SLURM job {environ['SLURM_JOB_ID']}")
        if environ.get("SLURM_RESTART_COUNT"):
            parts.append(f"requeued {environ['SLURM_RESTART_COUNT']}x")
    if environ.get("CUDA_VISIBLE_DEVICES"):
        parts.append(f"CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']}")
    return "# job: " + ", ".join(parts) + "\n"


@contextlib.contextmanager
def logged(snakemake):
    """Send this job's stdout/stderr (C libraries included) to its log; echo a failure to the console too."""
    if not snakemake.log:
        yield
        return
    log_path = Path(str(snakemake.log[0]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(job_header())
        log.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException as error:
            traceback.print_exc()
            sys.stderr.flush()
            os.write(console, f"{type(error).__name__}: {error}\n(full log: {log_path})\n".encode())
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()


def code_fingerprint(*parts: str) -> str:
    """sha256 of the package's source files a stage's numbers depend on (files or folders under peftstudy/).

    Given to a rule as a param, it makes Snakemake redo that stage when its code changes (Snakemake tracks a
    rule's script, not the package the script calls), and only that stage and what depends on it.
    """
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for part in parts:
        path = root / part
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such package source (code_fingerprint)")
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()
