"""A CUDA out-of-memory failure retries the run with half the micro-batch and twice the accumulation.

The effective batch (micro-batch x accumulation) and so the optimisation are unchanged; only the memory peak
drops. What ran is recorded in the run's loop.json next to what the config asked for. A micro-batch that
cannot be halved exactly (odd, or 1), or more halvings than allowed, fails with a clear message instead.
"""

from __future__ import annotations

import copy
import gc
from typing import Callable, Mapping

from peftstudy import checksums, io
from peftstudy.training import loop

DEFAULT_MAX_HALVINGS = 3


class OutOfMemoryAfterRetries(RuntimeError):
    pass


def halved(training: Mapping) -> dict | None:
    """The training settings with half the micro-batch and twice the accumulation, or None if not exact."""
    batch = training["batch_size"]
    if batch < 2 or batch % 2:
        return None
    return {**training, "batch_size": batch // 2,
            "gradient_accumulation_steps": training["gradient_accumulation_steps"] * 2}


def _free_cuda_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_with_oom_retry(train: Callable, settings: Mapping, *args, max_halvings: int = DEFAULT_MAX_HALVINGS,
                         record_path, **kwargs) -> dict:
    """Call ``train(settings, *args, record_path=..., **kwargs)``, halving the micro-batch on CUDA OOM."""
    import torch

    requested = settings["training"]
    attempts = []
    current = copy.deepcopy(dict(settings))
    while True:
        try:
            record = train(current, *args, record_path=record_path, **kwargs)
            break
        except torch.cuda.OutOfMemoryError as error:
            training = current["training"]
            attempts.append({"batch_size": training["batch_size"],
                             "gradient_accumulation_steps": training["gradient_accumulation_steps"]})
            smaller = halved(training)
            effective = training["batch_size"] * training["gradient_accumulation_steps"]
            if smaller is None or len(attempts) > max_halvings:
                reason = (f"after {len(attempts) - 1} halving(s) (the limit is {max_halvings})" if smaller is not None
                          else f"and the micro-batch {training['batch_size']} cannot be halved exactly")
                raise OutOfMemoryAfterRetries(
                    f"CUDA out of memory with micro-batch {training['batch_size']} x accumulation "
                    f"{training['gradient_accumulation_steps']} (effective batch {effective}) {reason}; "
                    f"lower training.batch_size (raising gradient_accumulation_steps to keep the effective batch) "
                    f"or request a larger GPU (resources: gpu_model). Last error: {error}") from error
            del error
            _free_cuda_memory()
            current = {**current, "training": smaller}
    if attempts:
        used = current["training"]
        record["settings"] = dict(settings)  # the run's identity stays what the config asked for
        record["micro_batching"] = {
            "requested": {"batch_size": requested["batch_size"],
                          "gradient_accumulation_steps": requested["gradient_accumulation_steps"]},
            "used": {"batch_size": used["batch_size"], "gradient_accumulation_steps": used["gradient_accumulation_steps"]},
            "out_of_memory_at": attempts,
        }
        record = checksums.sealed(record)  # its content changed: so does its checksum
        io.write_json(record_path, record)
    return record


def train_run(settings: Mapping, *args, max_halvings: int = DEFAULT_MAX_HALVINGS, record_path, **kwargs) -> dict:
    """peftstudy.training.loop.train_run with the out-of-memory retries (what the workflow's train job calls)."""
    return train_with_oom_retry(loop.train_run, settings, *args, max_halvings=max_halvings, record_path=record_path,
                                **kwargs)
