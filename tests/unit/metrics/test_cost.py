"""Costs are arithmetic on measured quantities and the declared price sheet, checked by hand."""

import pytest

from peftstudy.metrics import cost

COSTS = {
    "price_sheet": {"date": "2026-11-23", "source": "test", "currency": "USD",
                    "device_hour": {"cpu": 0.10, "cuda:*A100*": 2.0}, "kwh": 0.20, "storage_gb_month": 0.05},
    "scenarios": [{"name": "pilot", "requests_per_month": 20000, "months": 3, "value_per_1000_requests": 0.5}],
}


def test_costs_by_hand():
    metrics = {"train_time_s": 7200.0, "train_energy_kwh": 1.5, "stored_bytes": 2e9, "inference_ms_per_example": 36.0}
    devices = {"train_time_s": "cuda:NVIDIA A100-SXM4-40GB", "inference_ms_per_example": "cpu"}
    out = cost.run_costs(metrics, devices, COSTS)
    assert out["training_cost"] == (pytest.approx(4.0), "USD", None)  # 2 h x $2 (wildcard price)
    assert out["training_energy_cost"][0] == pytest.approx(0.30)  # 1.5 kWh x $0.20
    assert out["storage_cost_per_month"][0] == pytest.approx(0.10)  # 2 GB x $0.05
    # 1,000 requests x 36 ms = 36 s = 0.01 h on a CPU at $0.10/h.
    assert out["inference_cost_per_1000"][0] == pytest.approx(0.001)
    assert out["tco[pilot]"][0] == pytest.approx(4.0 + 3 * (0.10 + 20 * 0.001))
    # ROI: 3 months x 20 x 1,000 requests worth $0.5 per 1,000 = $30 against a TCO of $4.36.
    assert out["roi[pilot]"] == (pytest.approx((30 - 4.36) / 4.36), "ratio", None)
    # Data parallel on 4 GPUs: 4 device-hours per hour of training.
    assert cost.run_costs(metrics, devices, COSTS, training_devices=4)["training_cost"][0] == pytest.approx(16.0)


def test_unpriced_device_and_unmeasured_energy_are_not_measured():
    metrics = {"train_time_s": 60.0, "train_energy_kwh": None, "stored_bytes": 1e6, "inference_ms_per_example": 5.0}
    devices = {"train_time_s": "cuda:Tesla T4", "inference_ms_per_example": "cpu"}
    out = cost.run_costs(metrics, devices, COSTS)
    assert out["training_cost"][0] is None and "no device_hour price for 'cuda:Tesla T4'" in out["training_cost"][2]
    assert out["training_energy_cost"] == (None, "USD", "not measured: training energy was not measured")
    assert out["tco[pilot]"][0] is None and out["tco[pilot]"][2].startswith("not measured")
    assert out["roi[pilot]"] == (None, "ratio", "not measured: its TCO is not measured")
