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
    """Send this job's stdout/stderr (C libraries included) to its log; on a failure, tell the console in a few lines.

    A failure writes its full traceback to the log only, prints a short block to the console (the cell, the
    one-line cause, the log path), leaves those facts in <log>.failure.json for the end-of-run summary (see
    report_failed_jobs) and ends the script with status 1, without a second traceback.
    """
    export_gpu_request(snakemake)
    stop_when_orphaned()
    if not snakemake.log:
        yield
        return
    log_path = Path(str(snakemake.log[0]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    failure_path(log_path).unlink(missing_ok=True)  # what an earlier attempt recorded is not this one's
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
        except SystemExit as stop:
            if stop.code in (None, 0):
                raise
            _fail(snakemake, log_path, console, f"SystemExit: {stop.code}", traceback_in_log=True)
        except KeyboardInterrupt:  # Snakemake was interrupted, and says so itself
            traceback.print_exc()
            sys.stderr.flush()
            raise SystemExit(130) from None
        except BaseException as error:
            # A job run in the zygote raises zygote.JobFailed, whose child wrote the traceback to this log already.
            _fail(snakemake, log_path, console, getattr(error, "cause", None) or one_line_cause(error),
                  traceback_in_log=getattr(error, "traceback_in_log", False))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()


ORPHAN_CHECK_S = 0.25  # a getppid() call: cheap


def stop_when_orphaned(interval_s: float = ORPHAN_CHECK_S) -> None:
    """End this job with SIGTERM once its Snakemake dies (SIGKILL, a lost terminal): reparented, it would run on
    unseen and write outputs that the rerun distrusts anyway (Snakemake marks them incomplete). SIGTERM is what a
    cancelled job gets: training saves its checkpoint (in this process; a zygote child ends when this process does).
    A poll of the parent's pid, not PR_SET_PDEATHSIG: that fires when the parent's *thread* ends, and Snakemake
    starts jobs from worker threads."""
    import signal
    import threading
    import time

    parent = os.getppid()
    if parent == 1:  # started without a parent to watch (reparented already, or run by init)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-when-orphaned", daemon=True).start()


def export_gpu_request(snakemake) -> None:
    """The GPUs the job's rule asked for, and whether its study allows the CPU instead, in the environment of every
    process the job starts: the device choice (peftstudy.devices) checks them against the GPUs it sees."""
    resources = getattr(snakemake, "resources", None)
    if resources is None:
        return
    from peftstudy import devices

    devices.export_job_request(int(getattr(resources, "gpu", None) or 0),
                               bool(getattr(resources, devices.SETTING, None)))


def _fail(snakemake, log_path: Path, console: int, cause: str, traceback_in_log: bool):
    """Inside logged's `except`: the traceback to the log, the facts next to it, a short block to the console."""
    if not traceback_in_log:
        traceback.print_exc()
    print(f"peftstudy: job failed: {cause}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    rule = str(getattr(snakemake, "rule", "") or "job")
    wildcards = _wildcard_items(getattr(snakemake, "wildcards", None))
    try:
        facts = {"rule": rule, "wildcards": dict(wildcards), "cause": cause, "log": str(log_path),
                 "job": job_header()[len("# job: "):].strip()}
        write_failure_facts(failure_path(log_path), facts)
    except OSError as error:  # the console block below still says it all
        print(f"peftstudy: could not record the failure in {failure_path(log_path)}: {error}", file=sys.stderr)
    os.write(console, job_failure_block(rule, wildcards, cause, str(log_path)).encode())
    raise SystemExit(1) from None


def _wildcard_items(wildcards) -> list[tuple[str, str]]:
    items = wildcards.items() if wildcards is not None and hasattr(wildcards, "items") else []
    return [(str(key), str(value)) for key, value in items]


FAILURE_SUFFIX = ".failure.json"
MAX_CAUSE_CHARS = 300

def failure_path(log_path) -> Path:
    """Where a job that failed leaves its facts (cell, cause, log) for the end-of-run summary: next to its log."""
    return Path(str(log_path) + FAILURE_SUFFIX)


def write_failure_facts(path: Path, facts: dict) -> None:
    """Written atomically: the summary never reads half a file."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


def one_line_cause(error: BaseException, limit: int = MAX_CAUSE_CHARS) -> str:
    """`Type: message` on one line: the message's first non-blank line, cut to `limit` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = type(error).__name__ + (f": {lines[0]}" if lines else "") + (" [...]" if len(lines) > 1 else "")
    return text if len(text) <= limit else text[: limit - 6] + " [...]"


def cell_label(rule: str, wildcards) -> str:
    """`train study=demo dataset=debian-products model=gpt2-en variant=qlora-r8 seed=1`."""
    items = wildcards.items() if hasattr(wildcards, "items") else wildcards
    return " ".join([str(rule), *(f"{key}={value}" for key, value in items)])


def job_failure_block(rule: str, wildcards, cause: str, log: str) -> str:
    """What a failed job prints on the console (the end-of-run summary adds the command that reruns it)."""
    return (f"peftstudy: {cell_label(rule, wildcards)} failed\n"
            f"  cause: {cause}\n"
            f"  log:   {log} (full traceback)\n")
