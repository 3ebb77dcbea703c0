"""Resumable training: the whole loop state, saved atomically between optimizer steps.

A preempted or killed job (SLURM's SIGTERM before its time limit, a requeue, SIGUSR1) saves where it is and
stops; the rerun resumes there and ends with the numbers of an uninterrupted run (bit-identical on CPU),
because everything that decides them is restored: trainable weights and buffers, optimizer and scheduler
state, the global and data-order RNGs, the epoch's data order and position, and the records so far.
Checkpoints live outside the job's declared outputs (Snakemake deletes those before a rerun) and are removed
once the run's weights are written. A checkpoint made with other settings or data is ignored.

A checkpoint holds whole tensors, whatever the run's strategy: a model sharded by FSDP is gathered on rank 0 for
it (every rank calls save), and each rank cuts its shards out of it on restore (see fsdp.py). Its format is a
single process's, whatever the number of ranks.
"""

from __future__ import annotations

import shutil
import signal
import threading
from pathlib import Path
from typing import Mapping

from peftstudy import io

CHECKPOINT_FILE = "checkpoint.pt"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingInterrupted(RuntimeError):
    """Raised after the state was saved on a stop signal: the job should exit and be rerun (it resumes)."""


class StopRequest:
    """Turns SIGTERM/SIGUSR1 into a flag the training loop checks between optimizer steps."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signal handlers need the main thread
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, _frame) -> None:
        self.signal = number

    def __exit__(self, *_exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def fingerprint(settings: Mapping, data_sha256: str) -> str:
    """What a checkpoint must match to be resumed: the run's settings and its data."""
    import hashlib
    import json

    text = json.dumps({"settings": settings, "data": data_sha256}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _saved_state(model) -> dict:
    """Trainable parameters and buffers: what training changes (frozen base weights are reloaded)."""
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    buffers = {name for name, _ in model.named_buffers()}
    return {name: tensor for name, tensor in model.state_dict().items() if name in trainable | buffers}


def save(directory: str | Path, fingerprint: str, model, optimizer, scheduler, order_generator,
         loop: Mapping) -> Path | None:
    """Write the checkpoint (rank 0 of a data-parallel run; the other ranks return None).

    Of a model sharded by FSDP, the model's, the optimizer's and the loop's best_state tensors are gathered:
    every rank calls this then. Other ranks may call it or not."""
    import torch

    from peftstudy.training import fsdp

    model_state = fsdp.gather(_saved_state(model))
    optimizer_state = fsdp.gather_optimizer_state(optimizer)
    best_state = fsdp.gather(loop.get("best_state"))
    if model_state is None:  # not rank 0
        return None
    payload = {
        "fingerprint": fingerprint,
        # Gathered shards are compact copies already; a plain state dict's tensors may be views into more.
        "model": model_state if fsdp.is_sharded(model) else {name: t.clone() for name, t in model_state.items()},
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "order_rng": order_generator.get_state(),
        "loop": {**loop, "best_state": best_state},
    }
    path = Path(directory) / CHECKPOINT_FILE
    with io.atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load(directory: str | Path | None, fingerprint: str) -> dict | None:
    """The saved state, or None when there is none or it belongs to other settings (then it is removed)."""
    import torch

    if directory is None or not (Path(directory) / CHECKPOINT_FILE).is_file():
        return None
    payload = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True)
    if payload.get("fingerprint") != fingerprint:
        remove(directory)
        return None
    return payload


def restore(payload: Mapping, model, optimizer, scheduler, order_generator) -> dict:
    """Put the saved state back (each rank its shards, of a sharded model); returns the loop state."""
    import torch

    from peftstudy.training import fsdp

    missing, unexpected = model.load_state_dict(fsdp.shard_like(payload["model"], model.state_dict()), strict=False)
    if unexpected:
        raise ValueError(f"checkpoint does not fit the model: unexpected keys {unexpected[:3]}")
    optimizer.load_state_dict(fsdp.shard_optimizer_state(optimizer, payload["optimizer"]))
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    order_generator.set_state(payload["order_rng"])
    loop = dict(payload["loop"])
    loop["best_state"] = fsdp.shard_like(loop.get("best_state"), dict(model.named_parameters()))
    return loop


def remove(directory: str | Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
