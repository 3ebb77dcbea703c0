"""Per-phase efficiency measurement on CPU: the peak RSS is reset per phase and catches an allocation;
what the CPU cannot measure is reported with a reason, never as a number."""

import numpy as np
import pytest

from peftstudy.metrics import efficiency
from peftstudy.metrics.efficiency import PhaseMonitor

MB = 1024 * 1024


def test_cpu_peak_memory_is_per_phase():
    with PhaseMonitor("cpu") as big:
        block = np.ones(300 * MB // 8)  # 300 MB, touched
        block.sum()
        del block
    with PhaseMonitor("cpu") as small:
        np.ones(MB // 8).sum()
    rss_after = efficiency._vm_hwm_bytes()
    assert big.measured["peak_memory_bytes"] >= small.measured["peak_memory_bytes"] + 250 * MB
    assert small.measured["peak_memory_bytes"] <= rss_after + 16 * MB
    assert big.measured["phase_time_s"] > 0


def test_cpu_reports_what_it_cannot_measure(monkeypatch, tmp_path):
    monkeypatch.setattr(efficiency, "RAPL_ROOT", tmp_path)  # no RAPL domains here
    with PhaseMonitor("cpu") as phase:
        pass
    record = phase.record()
    assert record["device"] == "cpu"
    assert "energy_kwh" not in record["measured"]
    assert "no readable RAPL energy counter" in record["not_measured"]["energy_kwh"]
    assert record["not_measured"]["gpu_utilization_mean_percent"].startswith("CPU run")


def test_rapl_energy_is_read_and_unwrapped(monkeypatch, tmp_path):
    domain = tmp_path / "intel-rapl:0"
    domain.mkdir()
    (domain / "energy_uj").write_text("999000000\n")
    (domain / "max_energy_range_uj").write_text("1000000000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a subdomain: not counted twice
    monkeypatch.setattr(efficiency, "RAPL_ROOT", tmp_path)
    with PhaseMonitor("cpu") as phase:
        (domain / "energy_uj").write_text("2600000\n")  # wrapped: 1,000,000 + 2,600,000 uJ = 3.6 J
    assert phase.measured["energy_kwh"] == pytest.approx(3.6 / 3.6e6)


def test_unresettable_peak_is_not_measured(monkeypatch, tmp_path):
    monkeypatch.setattr(efficiency, "CLEAR_REFS", tmp_path / "missing" / "clear_refs")
    with PhaseMonitor("cpu") as phase:
        pass
    assert "peak_memory_bytes" not in phase.measured
    assert "cannot reset the peak RSS" in phase.not_measured["peak_memory_bytes"]
