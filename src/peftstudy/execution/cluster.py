"""What each cluster job asks SLURM for: resources as data, from the study config and the site's settings.

The study config says what a job needs (GPUs, GPU model, CPUs, memory, runtime) per job kind, refined per
(model, method) cell; the site (partition, account) comes from environment variables or a local file that is
never committed, so nobody edits tracked files to use their cluster. The result uses the resource names of
the Snakemake SLURM executor plugin; the local executor ignores them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

JOB_KINDS = ("prepare", "pretrain", "train", "generate", "score")
RESOURCE_KEYS = ("gpus", "gpu_model", "constraint", "cpus", "mem_mb", "runtime", "allow_cpu_fallback")

# A study that says nothing gets small single-GPU jobs for the model work and CPU jobs for the rest.
JOB_DEFAULTS = {
    "prepare": {"gpus": 0, "cpus": 2, "mem_mb": 8000, "runtime": 60},
    "pretrain": {"gpus": 1, "cpus": 4, "mem_mb": 16000, "runtime": 240},
    "train": {"gpus": 1, "cpus": 4, "mem_mb": 16000, "runtime": 240},
    "generate": {"gpus": 1, "cpus": 4, "mem_mb": 16000, "runtime": 120},
    "score": {"gpus": 0, "cpus": 2, "mem_mb": 8000, "runtime": 60},
}
# allow_cpu_fallback is the job's own, not the plugin's: 1 where the study lets a GPU job that sees no GPU run on
# the CPU (execution.jobs hands it to the job; peftstudy.devices checks it).
SLURM_RESOURCE_NAMES = ("gpu", "gpu_model", "constraint", "cpus_per_task", "mem_mb", "runtime", "slurm_partition",
                        "slurm_account", "slurm_extra", "allow_cpu_fallback")
RESOURCE_DEFAULTS = {"attempt_scaling": 1.5, "stop_signal_lead_s": 300, "max_oom_halvings": 3}

# Site settings: environment variable, then slurm/local.yaml (git-ignored), then nothing.
SITE_ENVIRONMENT = {
    "partition": "PEFTSTUDY_SLURM_PARTITION",
    "gpu_partition": "PEFTSTUDY_SLURM_GPU_PARTITION",
    "account": "PEFTSTUDY_SLURM_ACCOUNT",
}
SITE_FILE = Path("slurm") / "local.yaml"


class ClusterSettingsError(ValueError):
    pass


def site_settings(environ: Mapping[str, str] | None = None, path: str | Path = SITE_FILE) -> dict:
    """The site's partition(s) and account: each from its environment variable, else from the local file."""
    import yaml

    environ = os.environ if environ is None else environ
    path = Path(path)
    local = {}
    if path.is_file():
        local = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(local, dict):
            raise ClusterSettingsError(f"{path}: expected a mapping of settings, got {type(local).__name__}")
    known = set(SITE_ENVIRONMENT) | {"status_command"}  # the profile reads status_command itself
    unknown = sorted(set(local) - known)
    if unknown:
        raise ClusterSettingsError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    settings = {}
    for key, variable in SITE_ENVIRONMENT.items():
        value = environ.get(variable) or local.get(key)
        if value is not None and str(value).strip():
            settings[key] = str(value).strip()
    return settings


def _matches(rule: Mapping, job: str, model: str | None, method: str | None) -> bool:
    jobs = rule.get("jobs")
    return ((jobs is None or job in jobs)
            and rule.get("model") in (None, model)
            and rule.get("method") in (None, method))


def job_needs(study: Mapping, job: str, model: str | None = None, method: str | None = None) -> dict:
    """The job's needs before retries: the job kind's defaults, the study's, the model's, then matching cells."""
    if job not in JOB_KINDS:
        raise ClusterSettingsError(f"unknown job kind {job!r} (known: {', '.join(JOB_KINDS)})")
    declared = study.get("resources", {})
    needs = {**JOB_DEFAULTS[job], **declared.get("jobs", {}).get(job, {})}
    if model is not None and job in ("train", "generate"):  # the model's own needs (e.g. from the registry)
        needs.update(study.get("models", {}).get(model, {}).get("resources", {}))
    for rule in declared.get("cells", []):
        if _matches(rule, job, model, method):
            needs.update(rule["set"])
    return needs


def slurm_resources(study: Mapping, job: str, *, model: str | None = None, method: str | None = None,
                    attempt: int = 1, site: Mapping | None = None) -> dict:
    """The job's resources under the SLURM plugin's names; memory and runtime grow with each retry."""
    needs = job_needs(study, job, model, method)
    growth = resource_setting(study, "attempt_scaling") ** (max(attempt, 1) - 1)
    site = site or {}
    gpus = int(needs["gpus"])
    resources = {
        "gpu": gpus or None,
        "gpu_model": needs.get("gpu_model") if gpus else None,
        "constraint": needs.get("constraint"),
        "cpus_per_task": int(needs["cpus"]),
        "mem_mb": int(math.ceil(needs["mem_mb"] * growth)),
        "runtime": int(math.ceil(needs["runtime"] * growth)),
        "slurm_partition": (site.get("gpu_partition") if gpus else None) or site.get("partition"),
        "slurm_account": site.get("account"),
        "slurm_extra": None,
        "allow_cpu_fallback": 1 if gpus and needs.get("allow_cpu_fallback") else None,
    }
    if job == "train":
        # SIGTERM this long before the time limit, to the job step's processes: the run checkpoints and stops
        # (Snakemake inside the job takes SIGTERM as "finish gracefully"), and the retry resumes.
        lead = int(resource_setting(study, "stop_signal_lead_s"))
        if lead:
            resources["slurm_extra"] = f"--signal=TERM@{lead}"
    return resources


def validate_resources(study: Mapping) -> list[str]:
    """Problems with a study's resources section that the schema cannot see (unknown cell names)."""
    problems = []
    for index, rule in enumerate(study.get("resources", {}).get("cells", [])):
        for axis in ("model", "method"):
            value = rule.get(axis)
            if value is not None and value not in study[axis + "s"]:
                problems.append(f"resources.cells[{index}].{axis}: unknown {axis} {value!r}")
    return problems


def resource_setting(study: Mapping, key: str):
    """A study-wide resources setting (attempt_scaling, stop_signal_lead_s, max_oom_halvings) or its default."""
    return study.get("resources", {}).get(key, RESOURCE_DEFAULTS[key])
