"""Peak memory, energy and GPU utilisation/temperature over one phase of a job (training, generation).

What is measured where (never estimated; what cannot be measured is reported with the reason):

* Peak memory. CUDA: ``torch.cuda.max_memory_allocated`` and ``max_memory_reserved`` after a reset at
  the start of the phase. CPU: torch has no counter, so the process's peak resident set size (``VmHWM``)
  after resetting it by writing ``5`` to ``/proc/self/clear_refs``; it includes shared library pages
  and, for a job forked from the zygote, the pages it shares with it.
* Energy (kWh). CUDA: NVML's total-energy counter (Volta and newer), else NVML power samples integrated
  over time. CPU: Intel RAPL package counters under ``/sys/class/powercap`` where readable. Both count
  the whole device or CPU package, not only this job.
* GPU utilisation (%) and temperature (C): NVML samples every ``interval_s`` seconds, mean and max.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

RAPL_ROOT = Path("/sys/class/powercap")
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def device_label(device: str) -> str:
    """'cpu', or 'cuda:<GPU name>' so that CPU and GPU figures are never mixed in one column."""
    if device.startswith("cuda"):
        import torch

        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    return "cpu"


def _vm_hwm_bytes() -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_cpu_peak() -> str | None:
    """Reset the process's peak RSS; returns why not, if it cannot be."""
    try:
        CLEAR_REFS.write_text("5")
        return None
    except OSError as error:
        return f"cannot reset the peak RSS ({CLEAR_REFS}: {error.strerror})"


def rapl_domains(root: Path | None = None) -> list[Path]:
    """Readable top-level RAPL package domains (intel-rapl:N)."""
    root = RAPL_ROOT if root is None else root
    domains = []
    for path in sorted(root.glob("intel-rapl:*")):
        if path.name.count(":") == 1 and (path / "energy_uj").exists():
            try:
                int((path / "energy_uj").read_text())
                domains.append(path)
            except (OSError, ValueError):
                continue
    return domains


def _nvml_handle(device: str):
    """(pynvml module, handle) for the torch device, or (None, reason)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as error:  # no library, no driver
        return None, f"NVML unavailable ({type(error).__name__}: {error})"
    import torch

    index = torch.device(device).index or 0
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    try:
        if uuid is not None:
            return (pynvml, pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")), None
    except Exception:
        pass
    return (pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)), None


class PhaseMonitor:
    """``with PhaseMonitor(device) as phase: ...`` then ``phase.measured`` and ``phase.not_measured``."""

    def __init__(self, device: str, interval_s: float = 1.0):
        self.device = device
        self.interval_s = interval_s
        self.measured: dict[str, float] = {}
        self.not_measured: dict[str, str] = {}
        self._samples: list[tuple[float, float, float, float]] = []  # (time, util %, temp C, power W)
        self._stop = threading.Event()
        self._thread = None
        self._nvml = None

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def __enter__(self):
        self._started = time.perf_counter()
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._nvml, reason = _nvml_handle(self.device)
            if self._nvml is None:
                for name in ("energy_kwh", "gpu_utilization_mean_percent", "gpu_utilization_max_percent",
                             "gpu_temperature_mean_c", "gpu_temperature_max_c"):
                    self.not_measured[name] = reason
            else:
                pynvml, handle = self._nvml
                try:
                    self._energy_start_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                except Exception:
                    self._energy_start_mj = None  # pre-Volta: integrate the power samples instead
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        else:
            self._cpu_reset_problem = _reset_cpu_peak()
            self._rapl = rapl_domains()
            self._rapl_start = {d: int((d / "energy_uj").read_text()) for d in self._rapl}
        return self

    def _sample(self) -> None:
        pynvml, handle = self._nvml
        while not self._stop.is_set():
            try:
                utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                temperature = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
                power = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000
                self._samples.append((time.perf_counter(), float(utilization), float(temperature), power))
            except Exception:
                pass
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        elapsed = time.perf_counter() - self._started
        self.measured["phase_time_s"] = elapsed
        if self.cuda:
            self._finish_cuda(elapsed)
        else:
            self._finish_cpu()

    def _finish_cuda(self, elapsed: float) -> None:
        import torch

        torch.cuda.synchronize(self.device)
        self.measured["peak_memory_bytes"] = float(torch.cuda.max_memory_allocated(self.device))
        self.measured["peak_memory_reserved_bytes"] = float(torch.cuda.max_memory_reserved(self.device))
        if self._nvml is None:
            return
        self._stop.set()
        self._thread.join()
        pynvml, handle = self._nvml
        if self._energy_start_mj is not None:
            joules = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - self._energy_start_mj) / 1000
            self.measured["energy_kwh"] = joules / 3.6e6
        elif len(self._samples) >= 2:
            times, powers = [s[0] for s in self._samples], [s[3] for s in self._samples]
            joules = sum((t1 - t0) * (p0 + p1) / 2 for t0, t1, p0, p1 in zip(times, times[1:], powers, powers[1:]))
            self.measured["energy_kwh"] = joules / 3.6e6
        else:
            self.not_measured["energy_kwh"] = "no NVML energy counter and fewer than 2 power samples"
        if self._samples:
            utilization = [s[1] for s in self._samples]
            temperature = [s[2] for s in self._samples]
            self.measured.update({
                "gpu_utilization_mean_percent": sum(utilization) / len(utilization),
                "gpu_utilization_max_percent": max(utilization),
                "gpu_temperature_mean_c": sum(temperature) / len(temperature),
                "gpu_temperature_max_c": max(temperature),
            })
        else:
            for name in ("gpu_utilization_mean_percent", "gpu_utilization_max_percent", "gpu_temperature_mean_c",
                         "gpu_temperature_max_c"):
                self.not_measured[name] = f"no NVML sample in a phase of {elapsed:.2f} s"

    def _finish_cpu(self) -> None:
        peak = _vm_hwm_bytes()
        if self._cpu_reset_problem:
            self.not_measured["peak_memory_bytes"] = self._cpu_reset_problem
        elif peak is None:
            self.not_measured["peak_memory_bytes"] = f"{STATUS} has no VmHWM"
        else:
            self.measured["peak_memory_bytes"] = float(peak)
        if self._rapl:
            microjoules = 0
            for domain in self._rapl:
                delta = int((domain / "energy_uj").read_text()) - self._rapl_start[domain]
                if delta < 0:  # the counter wrapped
                    delta += int((domain / "max_energy_range_uj").read_text())
                microjoules += delta
            self.measured["energy_kwh"] = microjoules / 1e6 / 3.6e6
        else:
            self.not_measured["energy_kwh"] = f"CPU: no readable RAPL energy counter under {RAPL_ROOT}"
        reason = "CPU run: GPU utilisation and temperature do not apply"
        for name in ("gpu_utilization_mean_percent", "gpu_utilization_max_percent", "gpu_temperature_mean_c",
                     "gpu_temperature_max_c"):
            self.not_measured[name] = reason

    def record(self) -> dict:
        """JSON-ready: the device label, what was measured, and why the rest was not."""
        return {"device": device_label(self.device), "measured": dict(self.measured),
                "not_measured": dict(self.not_measured)}
