"""Where a number came from: config hash, code version, package versions, hardware.

Recorded beside every artifact so that a table cell can be traced back to the
runs, code and data that produced it. Machine paths are never recorded.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "peftstudy", "torch", "transformers", "peft", "tokenizers", "safetensors", "bitsandbytes", "adapters",
    "datasets", "sacrebleu", "rouge-score", "scipy", "statsmodels", "numpy", "pandas", "snakemake",
)
REPOSITORY = Path(__file__).resolve().parents[2]


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the checkout (with '+dirty' for uncommitted changes), else the package version."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        return commit + ("+dirty" if status else "")
    except (OSError, subprocess.SubprocessError):
        from . import __version__

        return f"peftstudy-{__version__}"


def hardware(device: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "python": platform.python_version(), "device": device}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device and device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def record(config_hash: str | None = None, device: str | None = None, **extra) -> dict[str, Any]:
    return {
        "config_hash": config_hash,
        "code_version": code_version(),
        "packages": package_versions(),
        "hardware": hardware(device),
        **extra,
    }
