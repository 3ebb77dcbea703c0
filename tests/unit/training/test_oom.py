"""CUDA out-of-memory retries: half the micro-batch, twice the accumulation, same effective batch."""

import json
import shutil

import pytest
import torch

from peftstudy.modeling import heads
from peftstudy.training import oom
from peftstudy.training.loop import train_run

TRAINING = dict(epochs=1, batch_size=8, gradient_accumulation_steps=1, learning_rate=3e-3, weight_decay=0.01,
                warmup_ratio=0.1, lr_scheduler="cosine", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32")


def settings(**training_changes):
    return {"dataset": "d", "model": "gpt2", "family": "gpt2", "method": "full", "rank": None,
            "method_spec": {"kind": "full"}, "training": {**TRAINING, **training_changes}, "seed": 3}


@pytest.fixture
def memory_limit(monkeypatch):
    """Micro-batches larger than the limit raise CUDA's out-of-memory error, as a too-small GPU would."""
    real = heads.TextObjective.loss
    limit = {"examples": 2}

    def limited(objective, model, batch):
        if batch["input_ids"].shape[0] > limit["examples"]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(objective, model, batch)

    monkeypatch.setattr(heads.TextObjective, "loss", limited)
    return limit


@pytest.fixture(scope="module")
def base_without_dropout(tiny_workspace):
    """Dropout draws masks per micro-batch shape: without it, micro-batching changes only summation order."""
    base = tiny_workspace / "base-gpt2-no-dropout"
    if not base.exists():
        shutil.copytree(tiny_workspace / "base-gpt2", base)
        config = json.loads((base / "config.json").read_text())
        config.update({key: 0.0 for key in config if key.endswith("pdrop")})
        (base / "config.json").write_text(json.dumps(config))
    return base


def run(workspace, name, run_settings, base=None, **kwargs):
    out = workspace / name
    record = oom.train_with_oom_retry(train_run, run_settings, base or workspace / "base-gpt2", workspace / "data",
                                      out / "weights", record_path=out / "train.json", **kwargs)
    return out, record


def test_halving_keeps_the_effective_batch_and_gives_the_numbers_of_that_micro_batch(tiny_workspace, memory_limit,
                                                                                    base_without_dropout):
    base = base_without_dropout
    out, record = run(tiny_workspace, "oom-halved", settings(batch_size=8, gradient_accumulation_steps=1), base)
    assert record["micro_batching"] == {
        "requested": {"batch_size": 8, "gradient_accumulation_steps": 1},
        "used": {"batch_size": 2, "gradient_accumulation_steps": 4},
        "out_of_memory_at": [{"batch_size": 8, "gradient_accumulation_steps": 1},
                             {"batch_size": 4, "gradient_accumulation_steps": 2}],
    }
    assert record["settings"]["training"]["batch_size"] == 8  # the run is still the configured cell
    assert json.loads((out / "train.json").read_text())["micro_batching"] == record["micro_batching"]
    memory_limit["examples"] = 100
    _, direct = run(tiny_workspace, "oom-direct", settings(batch_size=2, gradient_accumulation_steps=4), base)
    _, large = run(tiny_workspace, "oom-large", settings(batch_size=8, gradient_accumulation_steps=1), base)
    assert "micro_batching" not in direct
    assert record["step_losses"] == direct["step_losses"]  # exactly what micro-batch 2 x 4 gives
    # and the same optimisation as the requested 8 x 1, up to float summation order
    assert record["step_losses"] == pytest.approx(large["step_losses"], rel=1e-5)
    assert record["validation_losses"] == pytest.approx(large["validation_losses"], rel=1e-5)


def test_out_of_memory_after_the_limit_or_at_an_odd_micro_batch_is_a_clear_error(tiny_workspace, memory_limit):
    memory_limit["examples"] = 0
    with pytest.raises(oom.OutOfMemoryAfterRetries, match=r"micro-batch 1 x accumulation 8 .*cannot be halved"):
        run(tiny_workspace, "oom-never", settings(batch_size=8), max_halvings=5)
    with pytest.raises(oom.OutOfMemoryAfterRetries, match=r"after 1 halving\(s\) \(the limit is 1\)"):
        run(tiny_workspace, "oom-limit", settings(batch_size=8), max_halvings=1)
    with pytest.raises(oom.OutOfMemoryAfterRetries, match="micro-batch 3 cannot be halved exactly"):
        run(tiny_workspace, "oom-odd", settings(batch_size=3))
    assert not (tiny_workspace / "oom-never" / "train.json").exists()


def test_halved():
    assert oom.halved({"batch_size": 16, "gradient_accumulation_steps": 4}) == {
        "batch_size": 8, "gradient_accumulation_steps": 8}
    assert oom.halved({"batch_size": 1, "gradient_accumulation_steps": 4}) is None
    assert oom.halved({"batch_size": 5, "gradient_accumulation_steps": 4}) is None
