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

import math
import pickle
import shutil
import signal
import threading
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from peftstudy import io
from peftstudy.training import fsdp

CHECKPOINT_FILE = "checkpoint.pt"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@dataclass
class LoopState:
    """Where a fine-tuning run is and what it has recorded: with the model, optimizer and scheduler, all an
    interrupted run needs to go on as if it had never stopped. The loop changes it in place, step by step.

    A checkpoint stores it whole (``to_checkpoint``: the data-order generator's state and a ``loop`` dict of the
    other fields, the format of checkpoints written before this class existed)."""

    epoch: int = 1  # the epoch being trained (1-based)
    order: list[int] | None = None  # that epoch's data order, once drawn
    next_group: int = 0  # the epoch's next micro-batch: where its next optimizer step starts
    step: int = 0  # optimizer steps done
    tokens_seen: int = 0
    padded_tokens: int = 0  # input positions of the micro-batches once padded (tokens_seen of them are real)
    step_losses: list[float] = field(default_factory=list)
    step_penalties: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    best_loss: float = math.inf  # early stopping: the best validation loss, its epoch and its trainable weights
    best_epoch: int = 0
    best_state: dict | None = None
    epochs_without_gain: int = 0
    elapsed_s: float = 0.0  # training time of the run's earlier sessions (all of it, once the loop has ended)
    resumed_from_step: list[int] = field(default_factory=list)
    random_states: list | None = None  # each rank's torch random state, of a data-parallel run when saved
    order_rng: Any = None  # the generator of the data order (torch.Generator): nothing else draws from it

    @classmethod
    def start(cls, seed: int) -> "LoopState":
        """A run's first state: nothing done, the data order drawn from a generator of its own seeded with the
        run's seed (so the order never depends on how many random numbers the model drew)."""
        import torch

        return cls(order_rng=torch.Generator().manual_seed(seed))

    def to_checkpoint(self) -> dict:
        """The checkpoint's ``order_rng`` and ``loop`` entries."""
        loop = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "order_rng"}
        return {"order_rng": self.order_rng.get_state(), "loop": loop}

    @classmethod
    def from_checkpoint(cls, payload: Mapping) -> "LoopState":
        """The state ``to_checkpoint`` wrote, its generator continuing where the saved one stopped."""
        import torch

        order_rng = torch.Generator()
        order_rng.set_state(payload["order_rng"])
        return cls(**payload["loop"], order_rng=order_rng)


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


def save(directory: str | Path, fingerprint: str, model, optimizer, scheduler, state: LoopState) -> Path | None:
    """Write the checkpoint (rank 0 of a data-parallel run; the other ranks return None).

    Of a model sharded by FSDP, the model's, the optimizer's and the state's best_state tensors are gathered:
    every rank calls this then. Other ranks may call it or not."""
    import torch


    model_state = fsdp.gather(_saved_state(model))
    optimizer_state = fsdp.gather_optimizer_state(optimizer)
    best_state = fsdp.gather(state.best_state)
    if model_state is None:  # not rank 0
        return None
    saved_state = state.to_checkpoint()
    payload = {
        "fingerprint": fingerprint,
        # Gathered shards are compact copies already; a plain state dict's tensors may be views into more.
        "model": model_state if fsdp.is_sharded(model) else {name: t.clone() for name, t in model_state.items()},
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "order_rng": saved_state["order_rng"],
        "loop": {**saved_state["loop"], "best_state": best_state},
    }
    path = Path(directory) / CHECKPOINT_FILE
    with io.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer = _Writer(handle)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None  # atomic_path names the checkpoint
    return path


class _Writer:
    """The file torch.save writes through, keeping the OS error that torch would report as
    'enforce fail ... unexpected pos' (a full disk)."""

    def __init__(self, handle) -> None:
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def load(directory: str | Path | None, fingerprint: str) -> dict | None:
    """The saved state, or None when there is none or it belongs to other settings (then it is removed)."""
    import torch

    if directory is None or not (Path(directory) / CHECKPOINT_FILE).is_file():
        return None
    path = Path(directory) / CHECKPOINT_FILE
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a bare pickle is never opened
        raise ValueError(f"{path}: not a training checkpoint this code wrote (not a torch zip archive); delete it to"
                         f" train the run from the start")
    try:  # weights_only: torch's restricted unpickler, which refuses every object but tensors and plain data
        payload = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: not a training checkpoint this code wrote ({str(error).splitlines()[0][:200]});"
                         f" delete it to train the run from the start") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a training checkpoint this code wrote (a {type(payload).__name__})")
    if payload.get("fingerprint") != fingerprint:
        remove(directory)
        return None
    return payload


def restore(payload: Mapping, model, optimizer, scheduler) -> LoopState:
    """Put the saved model, optimizer, scheduler and global random state back (each rank its shards, of a sharded
    model); returns the loop's state. A data-parallel run's ranks then restore their own random states."""
    import torch


    missing, unexpected = model.load_state_dict(fsdp.shard_like(payload["model"], model.state_dict()), strict=False)
    if unexpected:
        raise ValueError(f"checkpoint does not fit the model: unexpected keys {unexpected[:3]}")
    optimizer.load_state_dict(fsdp.shard_optimizer_state(optimizer, payload["optimizer"]))
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    state = LoopState.from_checkpoint(payload)
    state.best_state = fsdp.shard_like(state.best_state, dict(model.named_parameters()))
    return state


def remove(directory: str | Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
