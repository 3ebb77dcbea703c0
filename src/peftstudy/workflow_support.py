"""Glue for the thin scripts in workflow/scripts/: logging to the rule's log file."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path


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
