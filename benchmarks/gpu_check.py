"""A short GPU check, run when a GPU machine is lent: does the project's GPU path work, and how fast is it?

    PYTHONPATH=src python3 benchmarks/gpu_check.py [--json PATH] [--quick]

Runs from the repository root in one call of under 5 minutes on one H100/H200 (no network needed: the model is
a GPT-2-Small-shaped model built from config, the data random tokens). Each check is timed, has its own time
limit, and is reported as passed, failed or skipped with a reason:

  a_qlora_nf4           QLoRA as the project runs it (methods/quantized.py): the base saved to a scratch
                        directory and loaded 4-bit NF4, double quantization, bf16 compute, through
                        ``load_quantized_base``; ``QLoRA.prepare`` (kbit preparation, gradient checkpointing,
                        LoRA r=16); the training loop's optimizer (``training.optimizer.make_optimizer``:
                        torch.optim.AdamW, not paged - what the project uses and records). A few steps on one
                        fixed batch: every loss finite and the last ones below the first. Skipped when
                        bitsandbytes cannot be imported.
  b_bf16_full_ft        bf16-autocast full fine-tuning (fp32 master weights, the project's AdamW and gradient
                        clipping) for a few steps on one fixed batch: finite, decreasing loss.
  c_nvml_sampling       ``metrics.efficiency.PhaseMonitor`` around a few seconds of training: non-zero energy,
                        peak memory and at least two NVML utilisation samples.
  d_throughput_full_ft  tokens/s and MFU = 6 N tokens/s / peak bf16 dense FLOPs of full fine-tuning at sequence
                        length 512, bf16 autocast (N: all parameters). Goal: MFU >= 35%.
  d_throughput_lora     the same for LoRA r=16 on attn.c_attn/attn.c_proj (fan_in_fan_out=True, the project's
                        LoRA config). MFU uses N = all parameters, trainable and frozen, as for full fine-tuning;
                        LoRA does fewer FLOPs per token than 6 N (no weight gradients of the frozen base), so
                        this figure is a tokens/s yardstick, not a true utilisation.

The whole script stops at about 4.5 minutes (a check still running then is reported failed, those not started
skipped). It prints one line per check, then the result as one line of JSON (also written to --json PATH).
Exit status: 0 when no check failed (also when there is no CUDA device: every check is then skipped), else 1.

The pure helpers (``peak_bf16_flops``, ``mfu``, ``summarise``, ``skipped_result``) need neither CUDA nor torch.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

SCHEMA = "peftstudy-gpu-check/1"
CHECKS = ("b_bf16_full_ft", "a_qlora_nf4", "c_nvml_sampling", "d_throughput_full_ft", "d_throughput_lora")
TOTAL_BUDGET_S = 270.0  # the whole script: 4.5 minutes
MIN_START_S = 15.0  # a check is not started with less of the budget left than this
LIMITS_S = {  # per check
    "b_bf16_full_ft": 45.0,
    "a_qlora_nf4": 75.0,
    "c_nvml_sampling": 30.0,
    "d_throughput_full_ft": 60.0,
    "d_throughput_lora": 50.0,
}
MFU_GOAL = 0.35  # full fine-tuning
SEQUENCE_LENGTH = 512
LORA_RANK = 16
GPT2_SMALL = {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024}
VOCAB_SIZE = 50257
# The loss checks draw their (fixed) batch from the first 256 token ids: random data, but a few steps can
# lower its loss (by favouring those tokens) - uniform tokens over all 50257 give the loss almost nothing to learn.
LEARNABLE_VOCABULARY = 256
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"

# Peak dense (no sparsity) bf16 tensor-core FLOP/s per GPU, from the vendors' data sheets. Matched as a
# case-insensitive substring of torch.cuda.get_device_name(); the first match wins, so more specific names
# come first (H100 PCIe/NVL before H100, H200 NVL before H200, L40S before L40).
PEAK_BF16_DENSE_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200 NVL", 835e12),
    ("H200", 989e12),  # SXM, and GH200
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("A10G", 70e12),
)


# ---------------------------------------------------------------- pure helpers (no CUDA, no torch)

def peak_bf16_flops(device_name: str | None) -> tuple[float | None, str]:
    """(peak dense bf16 FLOP/s, which table entry matched) or (None, why there is no figure)."""
    if not device_name:
        return None, "no device name"
    for key, flops in PEAK_BF16_DENSE_FLOPS:
        if key.lower() in device_name.lower():
            return flops, key
    return None, f"no peak bf16 FLOP/s known for {device_name!r} (table: {', '.join(k for k, _ in PEAK_BF16_DENSE_FLOPS)})"


def mfu(parameters: int, tokens_per_s: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation 6 N tokens/s / peak (6 N: forward + backward FLOPs per token, attention's
    own FLOPs left out); None without a peak figure."""
    if parameters <= 0 or tokens_per_s < 0:
        raise ValueError(f"mfu needs parameters > 0 and tokens_per_s >= 0, got {parameters}, {tokens_per_s}")
    if peak_flops is None:
        return None
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return 6 * parameters * tokens_per_s / peak_flops


def check_result(status: str, reason: str | None = None, seconds: float = 0.0, limit_s: float | None = None,
                 details: dict | None = None) -> dict:
    if status not in ("passed", "failed", "skipped"):
        raise ValueError(f"unknown check status {status!r}")
    return {"status": status, "reason": reason, "seconds": round(seconds, 2), "limit_s": limit_s,
            "details": details or {}}


def summarise(checks: dict[str, dict]) -> dict:
    """Counts by status, and ok: nothing failed (skips are not failures)."""
    counts = {status: 0 for status in ("passed", "failed", "skipped")}
    for result in checks.values():
        counts[result["status"]] += 1
    return {**counts, "ok": counts["failed"] == 0,
            "failed_checks": [name for name, result in checks.items() if result["status"] == "failed"]}


def skipped_result(reason: str) -> dict:
    """The whole result when nothing could run (no CUDA): every check skipped with the reason."""
    checks = {name: check_result("skipped", reason, limit_s=LIMITS_S[name]) for name in CHECKS}
    return {"schema": SCHEMA, "status": "skipped", "reason": reason, "environment": {"python": platform.python_version()},
            "checks": checks, "summary": summarise(checks), "total_seconds": 0.0, "budget_s": TOTAL_BUDGET_S,
            "mfu_goal_full_ft": MFU_GOAL}


def human_lines(result: dict) -> list[str]:
    """The human summary: one line per check."""
    environment = result.get("environment", {})
    lines = [f"gpu_check: {environment.get('device_name', '?')} | torch {environment.get('torch', '?')} "
             f"cuda {environment.get('cuda', '?')} | {result.get('total_seconds', 0):.1f} s of {TOTAL_BUDGET_S:.0f} s"]
    for name, check in result["checks"].items():
        text = check["details"].get("headline") or check["reason"] or ""
        if check["status"] != "passed" and check["reason"] and check["details"].get("headline"):
            text = f"{check['details']['headline']} - {check['reason']}"
        lines.append(f"  {check['status']:<8} {name:<21} {check['seconds']:6.1f} s  {text}")
    summary = result["summary"]
    lines.append(f"gpu_check: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
    return lines


# ---------------------------------------------------------------- budget

class CheckTimeout(Exception):
    """A check ran past its own time limit."""


class BudgetExceeded(BaseException):
    """The whole script's time is up (raised by SIGALRM; a BaseException so that no check swallows it)."""


def _alarm(signum, frame):
    raise BudgetExceeded()


def within(deadline: float) -> None:
    if time.perf_counter() > deadline:
        raise CheckTimeout()


# ---------------------------------------------------------------- GPU checks

class _VocabOnly:
    """What ``loading.build_model`` reads from a tokenizer (its size and special ids), for GPT-2's 50257 tokens."""

    eos_token_id = pad_token_id = VOCAB_SIZE - 1

    def __len__(self):
        return VOCAB_SIZE


def gpt2_small(device: str):
    from peftstudy.modeling.loading import build_model

    model = build_model("gpt2", GPT2_SMALL, _VocabOnly())
    return model.to(device)


def random_tokens(batch: int, length: int, device: str, seed: int = 0, vocabulary: int = VOCAB_SIZE):
    """Uniformly random token ids below ``vocabulary``."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocabulary, (batch, length), generator=generator).to(device)


def train_steps(model, optimizer, batches, steps: int, deadline: float, device: str) -> list:
    """``steps`` optimizer steps (bf16 autocast, clipping at 1.0, as the training loop); the losses as tensors."""
    import torch

    from peftstudy.training.loop import autocast_context

    trainable = [p for p in model.parameters() if p.requires_grad]
    losses = []
    for step in range(steps):
        within(deadline)
        input_ids = batches(step)
        with autocast_context("bf16", device):
            loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return losses


def loss_verdict(losses: list[float]) -> tuple[bool, str | None]:
    """Finite, and the mean of the last two below the first ("decreasing-ish")."""
    if not losses:
        return False, "no step ran"
    if not all(math.isfinite(x) for x in losses):
        return False, f"non-finite loss: {losses}"
    tail = losses[-2:]
    if sum(tail) / len(tail) >= losses[0]:
        return False, f"loss did not decrease: {losses[0]:.4f} -> {tail}"
    return True, None


def check_full_ft(device: str, deadline: float, quick: bool) -> tuple[bool, str | None, dict]:
    import torch

    from peftstudy.training.optimizer import make_optimizer, seed_everything

    seed_everything(0)
    model = gpt2_small(device).train()
    optimizer = make_optimizer(model, 1e-4, 0.0)
    batch = random_tokens(8, 128, device, vocabulary=LEARNABLE_VOCABULARY)
    steps = 4 if quick else 8
    losses = [float(x) for x in train_steps(model, optimizer, lambda _: batch, steps, deadline, device)]
    passed, reason = loss_verdict(losses)
    return passed, reason, {"losses": [round(x, 4) for x in losses], "steps": steps, "batch": [8, 128],
                            "learning_rate": 1e-4, "master_weights": str(next(model.parameters()).dtype),
                            "attn_implementation": getattr(model.config, "_attn_implementation", None),
                            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                            "headline": f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {steps} steps"}


def save_scratch_base(directory: Path) -> None:
    """A GPT-2-Small-shaped scratch base as prepare_base writes one: safetensors, tokenizer, base.json."""
    from peftstudy import io
    from peftstudy.modeling.loading import train_tokenizer

    model = gpt2_small("cpu")
    model.save_pretrained(directory, safe_serialization=True)
    words = "the a red blue small large cat dog runs sleeps quickly slowly".split()
    tokenizer = train_tokenizer("gpt2", [" ".join(words[i:] + words[:i]) for i in range(len(words))], 300)
    tokenizer.save_pretrained(directory)
    io.write_json(directory / "base.json", {"model": "gpu-check-gpt2-small", "family": "gpt2", "source": "scratch"})


def check_qlora(device: str, deadline: float, quick: bool) -> tuple[bool, str | None, dict]:
    import bitsandbytes
    import torch

    from peftstudy.methods.quantized import (
        QLoRA,
        quantization_settings,
        quantized_modules,
    )
    from peftstudy.modeling.loading import count_parameters
    from peftstudy.training.optimizer import make_optimizer, seed_everything

    seed_everything(0)
    method, spec = QLoRA(), {}
    with tempfile.TemporaryDirectory(prefix="peftstudy-gpu-check-") as scratch:
        save_scratch_base(Path(scratch))
        within(deadline)
        loaded = time.perf_counter()
        model, _, _ = method.load_base_for_training(Path(scratch), spec, device)
        load_s = time.perf_counter() - loaded
    model = method.prepare(model, "gpt2", spec, LORA_RANK).train()
    trainable, total = count_parameters(model)
    optimizer = make_optimizer(model, 2e-3, 0.0)
    batch = random_tokens(8, 128, device, vocabulary=LEARNABLE_VOCABULARY)
    steps = 6 if quick else 10
    losses = [float(x) for x in train_steps(model, optimizer, lambda _: batch, steps, deadline, device)]
    passed, reason = loss_verdict(losses)
    extras = method.record_extras(model)
    return passed, reason, {
        "losses": [round(x, 4) for x in losses], "steps": steps, "batch": [8, 128], "learning_rate": 2e-3,
        "settings": quantization_settings(spec), "quantized_modules": len(quantized_modules(model)),
        "base_weight_bytes": extras["base_weight_bytes"],
        "base_weight_bytes_unquantized": extras["base_weight_bytes_unquantized"],
        "optimizer": type(optimizer).__module__ + "." + type(optimizer).__name__,
        "paged_optimizer": extras["paged_optimizer"], "gradient_checkpointing": extras["gradient_checkpointing"],
        "trainable_parameters": trainable, "total_parameters": total, "load_s": round(load_s, 2),
        "bitsandbytes": bitsandbytes.__version__,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "headline": (f"NF4 {len(quantized_modules(model))} quantized modules, loss {losses[0]:.3f} -> "
                     f"{losses[-1]:.3f} over {steps} steps ({extras['optimizer']}, not paged)"),
    }


def check_nvml(device: str, deadline: float, quick: bool) -> tuple[bool, str | None, dict]:
    from peftstudy.metrics.efficiency import PhaseMonitor
    from peftstudy.training.optimizer import make_optimizer, seed_everything

    seed_everything(0)
    model = gpt2_small(device).train()
    optimizer = make_optimizer(model, 1e-4, 0.0)
    batch = random_tokens(8, SEQUENCE_LENGTH, device)
    duration = 2.0 if quick else 4.0
    steps = 0
    with PhaseMonitor(device, interval_s=0.1) as phase:
        started = time.perf_counter()
        while time.perf_counter() - started < duration:
            train_steps(model, optimizer, lambda _: batch, 1, deadline, device)
            steps += 1
    measured, missing = dict(phase.measured), dict(phase.not_measured)
    samples = len(phase._samples)
    problems = [f"{name} not measured ({why})" for name, why in missing.items()]
    for name in ("energy_kwh", "peak_memory_bytes", "gpu_utilization_max_percent"):
        if name in measured and not measured[name] > 0:
            problems.append(f"{name} is {measured[name]}")
    if samples < 2:
        problems.append(f"only {samples} NVML samples")
    joules = measured.get("energy_kwh", 0.0) * 3.6e6
    seconds = measured["phase_time_s"]
    details = {"measured": {k: round(v, 9 if k == "energy_kwh" else 3) for k, v in measured.items()},
               "not_measured": missing, "samples": samples, "steps": steps, "energy_j": round(joules, 1),
               "mean_power_w": round(joules / seconds, 1) if seconds else None,
               "headline": (f"{joules:.0f} J in {seconds:.1f} s ({joules / seconds:.0f} W), peak "
                            f"{measured.get('peak_memory_bytes', 0) / 2**30:.2f} GiB, util max "
                            f"{measured.get('gpu_utilization_max_percent', float('nan')):.0f}%, {samples} samples")}
    return not problems, "; ".join(problems) or None, details


def measure_throughput(model, device: str, deadline: float, batch: int, warmup: int, timed: int,
                       peak: float | None, peak_reason: str) -> dict:
    import torch

    from peftstudy.modeling.loading import count_parameters
    from peftstudy.training.optimizer import make_optimizer

    model.train()
    trainable, total = count_parameters(model)
    optimizer = make_optimizer(model, 1e-5, 0.0)
    data = [random_tokens(batch, SEQUENCE_LENGTH, device, seed=i) for i in range(4)]
    torch.cuda.reset_peak_memory_stats()
    train_steps(model, optimizer, lambda i: data[i % 4], warmup, deadline, device)
    torch.cuda.synchronize()
    started = time.perf_counter()
    losses = train_steps(model, optimizer, lambda i: data[i % 4], timed, deadline, device)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    tokens_per_s = batch * SEQUENCE_LENGTH * timed / elapsed
    utilisation = mfu(total, tokens_per_s, peak)
    last = float(losses[-1])
    return {"tokens_per_s": round(tokens_per_s, 1), "mfu": None if utilisation is None else round(utilisation, 4),
            "mfu_reason": None if peak is not None else peak_reason, "peak_bf16_flops": peak,
            "parameters_for_mfu": total, "trainable_parameters": trainable, "batch": batch,
            "sequence_length": SEQUENCE_LENGTH, "warmup_steps": warmup, "timed_steps": timed,
            "timed_s": round(elapsed, 3), "step_ms": round(1000 * elapsed / timed, 2),
            "last_loss_finite": math.isfinite(last),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def _batch_size(quick: bool) -> int:
    return 8 if quick else 16


def check_throughput_full(device: str, deadline: float, quick: bool, peak, peak_reason) -> tuple:
    from peftstudy.training.optimizer import seed_everything

    seed_everything(0)
    result = measure_throughput(gpt2_small(device), device, deadline, _batch_size(quick), 3 if quick else 5,
                                5 if quick else 20, peak, peak_reason)
    figure = "MFU n/a" if result["mfu"] is None else f"MFU {100 * result['mfu']:.1f}%"
    verdict = "" if result["mfu"] is None else (" met" if result["mfu"] >= MFU_GOAL else " NOT met")
    result["mfu_goal"] = MFU_GOAL
    result["mfu_goal_met"] = None if result["mfu"] is None else result["mfu"] >= MFU_GOAL
    result["headline"] = (f"{result['tokens_per_s']:,.0f} tok/s, {figure} (goal >= {100 * MFU_GOAL:.0f}%:{verdict or ' n/a'}),"
                          f" batch {result['batch']}x{SEQUENCE_LENGTH}, {result['step_ms']} ms/step")
    # The check is about the GPU path running; the MFU goal is reported beside the figure, not a failure.
    if not result["last_loss_finite"]:
        return False, "non-finite loss during the timed steps", result
    return True, None, result


def check_throughput_lora(device: str, deadline: float, quick: bool, peak, peak_reason) -> tuple:
    from peftstudy.methods.base import LoRA
    from peftstudy.training.optimizer import seed_everything

    seed_everything(0)
    method = LoRA()
    model = method.prepare(gpt2_small(device), "gpt2", {}, LORA_RANK)
    config = model.peft_config["default"]
    result = measure_throughput(model, device, deadline, _batch_size(quick), 3 if quick else 5, 5 if quick else 20,
                                peak, peak_reason)
    result["lora"] = {"r": config.r, "alpha": config.lora_alpha, "fan_in_fan_out": config.fan_in_fan_out,
                      "target_modules": str(config.target_modules)}
    result["mfu_note"] = ("N = all parameters (trainable + frozen), as for full fine-tuning; LoRA computes fewer "
                          "FLOPs per token than 6 N, so this overstates its true utilisation")
    figure = "MFU n/a" if result["mfu"] is None else f"MFU(6N, N=all) {100 * result['mfu']:.1f}%"
    result["headline"] = (f"{result['tokens_per_s']:,.0f} tok/s, {figure}, r={config.r}, "
                          f"{result['trainable_parameters']:,} trainable, {result['step_ms']} ms/step")
    if not result["last_loss_finite"]:
        return False, "non-finite loss during the timed steps", result
    return True, None, result


def environment(device: str) -> dict:
    import torch
    import transformers

    properties = torch.cuda.get_device_properties(0)
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "device": device,
            "device_name": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "memory_gib": round(properties.total_memory / 2**30, 1), "bf16_supported": torch.cuda.is_bf16_supported()}
    try:
        import peft

        info["peft"] = peft.__version__
    except Exception as error:
        info["peft"] = f"unavailable ({error})"
    return info


def bitsandbytes_problem() -> str | None:
    """None when bitsandbytes imports, else why not."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:
        return f"bitsandbytes cannot be imported ({type(error).__name__}: {error})"
    return None


def run_plans(plans: dict, budget_s: float, limits: dict | None = None, min_start_s: float = MIN_START_S,
              cleanup=None) -> dict[str, dict]:
    """Run each plan in order under its own limit and the whole budget; name -> check_result.

    A plan is ``callable(deadline) -> (passed, reason, details)`` (its steps call ``within(deadline)``), or a
    string: the reason it is skipped. A SIGALRM at ``budget_s`` stops the plan then running (failed); the rest
    are skipped. ``cleanup`` runs after every plan that ran."""
    limits = LIMITS_S if limits is None else limits
    started = time.perf_counter()
    checks: dict[str, dict] = {}
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.1, budget_s))
    stopped = None
    try:
        for name, plan in plans.items():
            limit = limits[name]
            left = budget_s - (time.perf_counter() - started)
            if stopped:
                checks[name] = check_result("skipped", stopped, limit_s=limit)
                continue
            if isinstance(plan, str):
                checks[name] = check_result("skipped", plan, limit_s=limit)
                continue
            if left < min_start_s:
                checks[name] = check_result("skipped", f"whole-script budget spent ({left:.0f} s left)", limit_s=limit)
                continue
            limit_now = min(limit, left)
            check_started = time.perf_counter()
            try:
                passed, reason, details = plan(check_started + limit_now)
                checks[name] = check_result("passed" if passed else "failed", reason,
                                            time.perf_counter() - check_started, limit, details)
            except CheckTimeout:
                checks[name] = check_result("failed", f"ran past its limit of {limit_now:.0f} s",
                                            time.perf_counter() - check_started, limit)
            except BudgetExceeded:
                stopped = f"the whole-script budget of {budget_s:.0f} s ran out"
                checks[name] = check_result("failed", f"stopped: {stopped}", time.perf_counter() - check_started, limit)
            except Exception as error:
                checks[name] = check_result("failed", f"{type(error).__name__}: {error}"[:500],
                                            time.perf_counter() - check_started, limit,
                                            {"traceback": traceback.format_exc()[-3000:]})
            finally:
                if cleanup is not None:
                    cleanup()
    except BudgetExceeded:  # between two checks
        stopped = f"the whole-script budget of {budget_s:.0f} s ran out"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    for name in plans:
        if name not in checks:
            checks[name] = check_result("skipped", stopped, limit_s=limits[name])
    return checks


def _free_cuda_memory() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def run_checks(quick: bool, device: str = "cuda:0") -> dict:
    source = Path(__file__).resolve().parents[1] / "src"
    if str(source) not in sys.path:  # the same as PYTHONPATH=src, for a run without it
        sys.path.insert(0, str(source))
    started = time.perf_counter()
    env = environment(device)
    peak, peak_reason = peak_bf16_flops(env["device_name"])
    env["peak_bf16_flops"] = peak
    env["peak_source"] = peak_reason
    bnb = bitsandbytes_problem()
    plans = {
        "b_bf16_full_ft": lambda d: check_full_ft(device, d, quick),
        "a_qlora_nf4": (lambda d: check_qlora(device, d, quick)) if bnb is None else bnb,
        "c_nvml_sampling": lambda d: check_nvml(device, d, quick),
        "d_throughput_full_ft": lambda d: check_throughput_full(device, d, quick, peak, peak_reason),
        "d_throughput_lora": lambda d: check_throughput_lora(device, d, quick, peak, peak_reason),
    }
    checks = run_plans(plans, TOTAL_BUDGET_S - (time.perf_counter() - started), cleanup=_free_cuda_memory)
    summary = summarise(checks)
    return {"schema": SCHEMA, "status": "ran", "reason": None, "environment": env, "checks": checks,
            "summary": summary, "total_seconds": round(time.perf_counter() - started, 1), "budget_s": TOTAL_BUDGET_S,
            "mfu_goal_full_ft": MFU_GOAL, "quick": quick}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test of the script itself)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        result = skipped_result(NO_CUDA)
        print(f"gpu_check: skipped: {NO_CUDA}")
    else:
        result = run_checks(args.quick)
        for line in human_lines(result):
            print(line)
    text = json.dumps(result, separators=(",", ":"), default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0 if result["summary"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
