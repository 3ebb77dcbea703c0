"""Where a number came from: config hash, code version, package versions, hardware.

Recorded beside every artifact so that a table cell can be traced back to the
runs, code and data that produced it. Machine paths are never recorded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from peftstudy import __version__, devices

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
        return f"peftstudy-{__version__}"


# CPU flags that decide which kernels a library runs (bitsandbytes' 4-bit repacking, torch's and oneDNN's
# vectorised paths, int8 and bf16 matmuls). Only those present are recorded.
CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2")
# Environment variables that force or limit a library's kernel or thread choice.
KERNEL_ENVIRONMENT = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                      "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                      "OPENBLAS_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")


def _cpuinfo() -> tuple[str | None, list[str]]:
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or None, [flag for flag in CPU_FLAGS if flag in flags]


def capability() -> dict[str, Any]:
    """The facts that decide which kernels ran: a number that differs between two machines can be traced to them.

    Recorded, not changed: the project pins the one path where a library would change the science
    (bitsandbytes' CPU repacking, see methods.quantized.pin_cpu_kernels); the rest are the ordinary
    floating-point differences between CPUs and BLAS builds."""
    import os
    import sys

    model, flags = _cpuinfo()
    facts: dict[str, Any] = {"cpu": model, "cpu_flags": flags, "logical_cpus": os.cpu_count()}
    try:
        facts["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        import torch

        config = torch.__config__.show()
        blas = [part.split("=", 1)[1] for line in config.splitlines() for part in line.replace(",", " ").split()
                if part.startswith("BLAS_INFO=")]
        facts.update({
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "torch_blas": blas[0] if blas else None,
            "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
            "mkl": bool(torch.backends.mkl.is_available()),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        })
        if torch.cuda.is_available():
            facts.update({
                "cuda_capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
                "cudnn": torch.backends.cudnn.version(),
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                "sdpa_backends": {name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")()
                                  for name in ("flash", "mem_efficient", "math", "cudnn")
                                  if hasattr(torch.backends.cuda, f"{name}_sdp_enabled")},
            })
    except ImportError:
        pass
    if "bitsandbytes" in sys.modules:  # only where the run loaded it: importing it costs seconds
        try:
            from bitsandbytes.functional import has_avx512bf16

            facts["bitsandbytes_avx512bf16"] = bool(has_avx512bf16())
        except Exception:  # an unusable native library: bitsandbytes then reports nothing
            facts["bitsandbytes_avx512bf16"] = None
    try:
        from threadpoolctl import threadpool_info

        facts["thread_pools"] = sorted(
            ({k: pool.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")}
             for pool in threadpool_info()), key=lambda pool: json.dumps(pool, sort_keys=True))
    except ImportError:
        pass
    facts["environment"] = {name: os.environ[name] for name in KERNEL_ENVIRONMENT if name in os.environ}
    return facts


def hardware(device: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "python": platform.python_version(), "device": device}
    facts = capability()
    info["cpu"] = facts.get("cpu")
    info["torch_threads"] = facts.get("torch_threads")
    try:
        import torch

        if device and device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    info["capability"] = facts
    choice = devices.last_choice()
    # What the job asked for, what it saw and whether it fell back to the CPU: the choice that gave this device.
    if device and choice is not None and device.split(":")[0] == choice["device_type"]:
        info["device_choice"] = choice
    return info


def canonical_hash(obj: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no spaces): a study's, or a run's resolved settings' hash."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def record(stage: str | None = None, settings: Any = None, *, code: str | None = None, device: str | None = None,
           **extra) -> dict[str, Any]:
    """Where one stage's output came from: the run's settings hash, the stage's code fingerprint (the import
    closure of its workflow script), the git commit, package versions and the hardware with its capability facts."""
    return {
        "stage": stage,
        "settings_hash": None if settings is None else canonical_hash(settings),
        "code_fingerprint": code,
        "code_version": code_version(),
        "packages": package_versions(),
        "hardware": hardware(device),
        **extra,
    }
