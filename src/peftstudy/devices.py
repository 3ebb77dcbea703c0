"""Which device a job computes on, checked against the GPUs its study asked for, and recorded.

A job that asked for GPUs and sees none would otherwise train on the CPU without a word: a 20-minute job takes a
day, and its efficiency numbers are a CPU's. It fails instead, naming what was asked and what it sees, unless the
study allows the fallback (``allow_cpu_fallback: true`` in its ``resources``). A job that sees fewer GPUs than it
asked for fails whatever the study allows: its numbers would be another setup's.

The workflow hands the request to the job's processes (the zygote's child, torchrun's ranks) in the environment:
``execution.jobs.logged`` exports the rule's resources as PEFTSTUDY_JOB_GPUS and PEFTSTUDY_ALLOW_CPU_FALLBACK.
Outside a workflow job (tests, a notebook) nothing was asked, and CUDA is used where present, as is a job that
asked for no GPU. PEFTSTUDY_DEVICE overrides every choice (e.g. 'cpu' on a GPU node). The last choice of the
process is kept for the provenance of what it writes (``provenance.hardware``).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, MutableMapping

GPUS_VARIABLE = "PEFTSTUDY_JOB_GPUS"
FALLBACK_VARIABLE = "PEFTSTUDY_ALLOW_CPU_FALLBACK"
OVERRIDE_VARIABLE = "PEFTSTUDY_DEVICE"
SETTING = "allow_cpu_fallback"

_LAST_CHOICE: dict[str, Any] | None = None


class DeviceUnavailable(RuntimeError):
    """The job asked for GPUs that it does not see (and the study does not allow the CPU instead)."""


def export_job_request(gpus: int, allow_cpu_fallback: bool, environ: MutableMapping[str, str] | None = None) -> None:
    """Put a workflow job's GPU request in the environment, for every process the job starts."""
    environ = os.environ if environ is None else environ
    environ[GPUS_VARIABLE] = str(int(gpus))
    environ[FALLBACK_VARIABLE] = "1" if allow_cpu_fallback else "0"


def job_request(environ: Mapping[str, str] | None = None) -> tuple[int | None, bool]:
    """(GPUs the job asked for, whether it may fall back to the CPU); (None, False) outside a workflow job."""
    environ = os.environ if environ is None else environ
    gpus, allow = environ.get(GPUS_VARIABLE), environ.get(FALLBACK_VARIABLE, "0")
    if allow not in ("0", "1"):
        raise ValueError(f"{FALLBACK_VARIABLE} must be 0 or 1, got {allow!r}")
    if gpus is None or gpus == "":
        return None, allow == "1"
    if not gpus.isdigit():
        raise ValueError(f"{GPUS_VARIABLE} must be a number of GPUs, got {gpus!r}")
    return int(gpus), allow == "1"


def visible_gpus() -> int:
    """The CUDA devices this process can use (0 where CUDA is not available)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _seen(visible: int, environ: Mapping[str, str]) -> str:
    return (f"sees {visible} CUDA device{'' if visible == 1 else 's'} (torch.cuda.device_count(); "
            f"CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')!r})")


def check_gpus(asked: int, visible: int, allow_cpu_fallback: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a job that asked for `asked` GPUs and sees `visible` computes on them (True) or, where the study
    allows it and it sees none, on the CPU (False, said in the job's log); raises DeviceUnavailable otherwise."""
    environ = os.environ if environ is None else environ
    asked_text = f"the job asked for {asked} GPU{'' if asked == 1 else 's'} (the study's resources: gpus: {asked})"
    if asked <= 0 or visible >= asked:
        return True
    if visible > 0:
        raise DeviceUnavailable(
            f"{asked_text} but {_seen(visible, environ)}: its numbers would be those of {visible}; check the job's "
            f"GPU request (SLURM --gpus) and the node")
    if allow_cpu_fallback:
        print(f"peftstudy: {asked_text} but {_seen(visible, environ)}: computing on the CPU, as the study allows "
              f"({SETTING}: true); its efficiency numbers are a CPU's", file=sys.stderr, flush=True)
        return False
    # The first line is the console's one-line cause (execution.jobs): what was asked, what is seen, the remedy.
    raise DeviceUnavailable(
        f"{asked_text} but {_seen(visible, environ)}; to run on the CPU on purpose, set gpus: 0 or {SETTING}: true "
        f"in the study's resources\nOn the CPU it would run many times slower, with a CPU's efficiency numbers: "
        f"otherwise check the job's GPU request and the node's CUDA")


def choose(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The device for this process ('cuda' or 'cpu', or PEFTSTUDY_DEVICE) and why: what the job asked, what it
    sees, whether a CPU fallback was allowed and taken. Kept as the process's last choice."""
    global _LAST_CHOICE
    import torch

    environ = os.environ if environ is None else environ
    override = environ.get(OVERRIDE_VARIABLE) or None
    asked, allow = job_request(environ)
    available = torch.cuda.is_available()
    visible = torch.cuda.device_count() if available else 0
    fallback = False
    if override:
        device = override
    elif asked:
        fallback = not check_gpus(asked, visible, allow, environ)
        device = "cpu" if fallback else "cuda"
    else:  # no GPU asked (or not a workflow job): CUDA where present
        device = "cuda" if available else "cpu"
    kind = device.split(":")[0]
    choice = {
        "device": device, "device_type": kind,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if kind == "cuda" and available else None,
        "requested_gpus": asked, "visible_gpus": visible,
        "cuda_visible_devices": environ.get("CUDA_VISIBLE_DEVICES"),
        "override": override, "allow_cpu_fallback": allow, "cpu_fallback": fallback,
    }
    _LAST_CHOICE = choice
    return dict(choice)


def last_choice() -> dict[str, Any] | None:
    """The last device choice of this process (None if it made none)."""
    return None if _LAST_CHOICE is None else dict(_LAST_CHOICE)
