"""benchmarks/gpu_check.py: its pure helpers, its budget handling, and its skip on a machine without CUDA."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
SKIP_LINE = "gpu_check: skipped: no CUDA device (torch.cuda.is_available() is False)"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mfu_matches_a_hand_computation(gpu_check):
    # GPT-2 Small (124,439,808 parameters) at 100,000 tokens/s on an H100 SXM (989 TFLOP/s):
    # 6 * 124,439,808 * 100,000 = 7.46638848e13 FLOP/s; / 9.89e14 = 0.0754943...
    assert gpu_check.mfu(124_439_808, 100_000, 989e12) == pytest.approx(0.07549432234580385, rel=1e-12)
    assert gpu_check.mfu(1_000_000, 50_000, 1e12) == pytest.approx(0.3)  # 6 * 1e6 * 5e4 / 1e12
    assert gpu_check.mfu(124_439_808, 100_000, None) is None
    with pytest.raises(ValueError):
        gpu_check.mfu(0, 100_000, 989e12)
    with pytest.raises(ValueError):
        gpu_check.mfu(10, 100, 0.0)


@pytest.mark.parametrize("name, flops", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA L40S", 362e12),
    ("nvidia l40", 181e12),
])
def test_peak_lookup_by_name_substring(gpu_check, name, flops):
    found, key = gpu_check.peak_bf16_flops(name)
    assert found == flops
    assert key.lower() in name.lower()


@pytest.mark.parametrize("name", ["Tesla T4", "", None])
def test_peak_lookup_unknown_gives_none_and_a_reason(gpu_check, name):
    found, reason = gpu_check.peak_bf16_flops(name)
    assert found is None
    assert reason


def test_loss_verdict(gpu_check):
    assert gpu_check.loss_verdict([10.8, 10.7, 10.5, 10.4]) == (True, None)
    assert not gpu_check.loss_verdict([10.8, 10.9, 11.0])[0]
    assert not gpu_check.loss_verdict([10.8, float("nan"), 10.0])[0]
    assert not gpu_check.loss_verdict([])[0]


def test_summarise_counts_and_flags_failures(gpu_check):
    result = gpu_check.check_result
    checks = {"x": result("passed"), "y": result("skipped", "no bnb"), "z": result("failed", "boom")}
    assert gpu_check.summarise(checks) == {"passed": 1, "failed": 1, "skipped": 1, "ok": False, "failed_checks": ["z"]}
    assert gpu_check.summarise({"y": result("skipped", "why")})["ok"] is True
    with pytest.raises(ValueError):
        result("fine")


def test_run_plans_reports_each_outcome(gpu_check):
    def past_its_limit(deadline):
        while True:  # a step loop that would run forever, checking its deadline before each step
            gpu_check.within(deadline)
            time.sleep(0.02)

    def broken(deadline):
        raise RuntimeError("CUDA error: boom")

    plans = {"ok": lambda d: (True, None, {"headline": "fine"}), "bad": lambda d: (False, "loss rose", {}),
             "slow": past_its_limit, "broken": broken, "absent": "bitsandbytes cannot be imported"}
    limits = {**dict.fromkeys(plans, 10.0), "slow": 0.2}
    checks = gpu_check.run_plans(plans, budget_s=30.0, limits=limits, min_start_s=0.0)
    assert {name: check["status"] for name, check in checks.items()} == {
        "ok": "passed", "bad": "failed", "slow": "failed", "broken": "failed", "absent": "skipped"}
    assert checks["bad"]["reason"] == "loss rose"
    assert "past its limit" in checks["slow"]["reason"]
    assert checks["broken"]["reason"] == "RuntimeError: CUDA error: boom"
    assert checks["absent"]["reason"] == "bitsandbytes cannot be imported"


def test_run_plans_stops_at_the_whole_budget(gpu_check):
    cleaned = []
    plans = {"first": lambda d: (time.sleep(5), (True, None, {}))[1], "second": lambda d: (True, None, {})}
    started = time.perf_counter()
    checks = gpu_check.run_plans(plans, budget_s=0.5, limits={"first": 60.0, "second": 60.0}, min_start_s=0.0,
                                 cleanup=lambda: cleaned.append(1))
    assert time.perf_counter() - started < 4
    assert checks["first"]["status"] == "failed" and "budget" in checks["first"]["reason"]
    assert checks["second"]["status"] == "skipped" and "budget" in checks["second"]["reason"]
    assert cleaned == [1]


def test_script_without_cuda_prints_the_skip_and_json(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no CUDA device, on a GPU machine too
    out = tmp_path / "result" / "gpu_check.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == SKIP_LINE
    assert len(lines) == 2
    result = json.loads(lines[1])
    assert json.loads(out.read_text()) == result
    assert result["status"] == "skipped"
    assert set(result["checks"]) == {"a_qlora_nf4", "b_bf16_full_ft", "c_nvml_sampling", "d_throughput_full_ft",
                                     "d_throughput_lora"}
    for check in result["checks"].values():
        assert check["status"] == "skipped"
        assert check["reason"] == "no CUDA device (torch.cuda.is_available() is False)"
    assert result["summary"] == {"passed": 0, "failed": 0, "skipped": 5, "ok": True, "failed_checks": []}
