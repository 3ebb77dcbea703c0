"""Data-parallel training under torchrun (DDP, or FSDP: see fsdp.py), with the numbers of a single-process run.

A run's ``gradient_accumulation_steps`` counts the micro-batches of one optimizer step in all: with W
processes (ranks), rank r takes micro-batches r, r + W, ... of each step, so an optimizer step sees the same
``batch_size x gradient_accumulation_steps`` examples whatever the number of devices, and a run's settings (and
its checkpoints) do not depend on it. Every rank reads all the data and draws the same data order, so each
knows the whole step: the loss is normalised by the step's tokens over all ranks, and since DDP averages the
ranks' gradients, each rank scales its objective by W to make that average the single-process sum. The update
then equals a single process's up to float rounding. Rank 0 alone writes weights, records and checkpoints.

``training.data_parallel`` picks the strategy: ``ddp`` (the default) keeps a whole copy of the model on every
device; ``fsdp`` shards parameters, gradients and optimizer state over the devices, for models that do not fit
one (full fine-tuning of a 7B model on 40 GB GPUs), with the same arithmetic (see fsdp.py).

``launch`` starts such a run: ``python -m torch.distributed.run --standalone`` with one process per device,
each running ``python -m peftstudy.training.distributed <request.json>``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from peftstudy import devices, io
from peftstudy.training import checkpoint, fsdp

TAIL_LINES = 60
# Signals torchrun passes on to its processes: SIGUSR1 (checkpoint and stop, see checkpoint.py) is not among
# its defaults, and would kill torchrun alone. It then gives them SHUTDOWN_S to save (not its default 30 s).
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
SHUTDOWN_S = 120
# Process groups this process has joined; every rank joins as many, so the count names them alike on all.
_GROUP_NUMBERS = itertools.count()
STRATEGIES = ("ddp", "fsdp")


class Ranks:
    """This process's place among the processes of a data-parallel run (one rank of one without torchrun).

    Every collective here is a no-op for a single process, so the training loop has one code path."""

    def __init__(self, world_size: int = 1, rank: int = 0, local_rank: int = 0, data_parallel: str = "ddp") -> None:
        if data_parallel not in STRATEGIES:
            raise ValueError(f"data_parallel must be one of {', '.join(STRATEGIES)}, got {data_parallel!r}")
        self.world_size, self.rank, self.local_rank = world_size, rank, local_rank
        self.data_parallel = data_parallel
        self.backend: str | None = None
        self.device: str | None = None

    @classmethod
    def from_environment(cls, data_parallel: str = "ddp") -> "Ranks":
        """From torchrun's WORLD_SIZE, RANK and LOCAL_RANK."""
        environ = os.environ
        return cls(int(environ.get("WORLD_SIZE", "1")), int(environ.get("RANK", "0")),
                   int(environ.get("LOCAL_RANK", "0")), data_parallel)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def strategy(self) -> str | None:
        """The data-parallel wrapper the run uses: "ddp" or "fsdp"; None for a single process (nothing wraps)."""
        return self.data_parallel if self.distributed else None

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp"

    @property
    def load_device(self) -> str:
        """Where to load the model: a sharded one on the CPU (sharding moves each rank's part to its device; the
        whole model need not fit one), any other on this rank's device."""
        return "cpu" if self.sharded else self.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def check_accumulation(self, accumulation: int) -> None:
        """Each rank must take an equal share of a step's micro-batches, or the devices would wait on each other."""
        if accumulation % self.world_size:
            raise ValueError(
                f"gradient_accumulation_steps ({accumulation}) counts the micro-batches of one optimizer step, which "
                f"the {self.world_size} processes share equally: it must be a multiple of {self.world_size} (to keep "
                "the effective batch, batch_size x gradient_accumulation_steps, divide batch_size accordingly)")

    @contextlib.contextmanager
    def process_group(self, device: str) -> Iterator[str]:
        """Join torchrun's process group (NCCL on CUDA, gloo otherwise) for the block; yields this rank's device.

        The group is destroyed on the way out, error or not, so one process can train several runs."""
        if not self.distributed:
            self.device = device
            yield device
            return
        import torch
        import torch.distributed as dist

        if device.startswith("cuda"):
            device = f"cuda:{self.local_rank}"
            torch.cuda.set_device(device)
        self.backend, self.device = ("nccl" if device.startswith("cuda") else "gloo"), device
        store, _, _ = next(dist.rendezvous("env://", self.rank, self.world_size))
        # Keys of its own in torchrun's store: after a destroyed group, torch would reuse that group's keys,
        # and ranks would find one another at the old group's (closed) addresses.
        store = dist.PrefixStore(f"peftstudy-group-{next(_GROUP_NUMBERS)}", store)
        dist.init_process_group(self.backend, store=store, rank=self.rank, world_size=self.world_size)
        try:
            yield device
        finally:
            dist.destroy_process_group()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """For a block that may change shared files (checkpoint.load removes a stale checkpoint): rank 0 runs it
        before the others start theirs."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def record(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend, "strategy": self.strategy}

    def share(self, group: Sequence) -> list:
        """This rank's micro-batches of one optimizer step: every W-th, starting at its rank."""
        return list(group[self.rank :: self.world_size])

    def wrap(self, model, probe_loss, precision: str = "fp32"):
        """DDP around the model, or the model sharded in place by FSDP (the model itself for one process). Build
        the optimizer afterwards: FSDP replaces the parameters.

        find_unused_parameters costs a graph traversal per step, so DDP sets it only when a probe pass
        (``probe_loss(model)``, random state restored after it) leaves a trainable parameter without a gradient.
        FSDP computes in bf16/fp16 (all-gathering parameters in that dtype, reducing gradients in fp32) when the
        run's precision asks for it on CUDA; on the CPU, autocast alone applies, as in a single process."""
        if not self.distributed:
            return model
        import torch

        cuda = self.device.startswith("cuda")
        if self.sharded:
            dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
            return fsdp.shard(model, self.device, dtypes.get(precision) if cuda else None)
        from torch.nn.parallel import DistributedDataParallel

        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            probe_loss(model).backward()
        unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
        model.zero_grad(set_to_none=True)
        return DistributedDataParallel(model, device_ids=[self.device] if cuda else None,
                                       find_unused_parameters=bool(unused))

    def accumulating(self, model, last: bool):
        """DDP exchanges gradients on a step's last backward only; the others accumulate locally. FSDP
        reduce-scatters every micro-batch's gradients, so that each rank keeps only its shard of them."""
        if self.distributed and not last and not self.sharded:
            return model.no_sync()
        return contextlib.nullcontext()

    @property
    def lockstep(self) -> bool:
        """Whether every forward pass is a collective (FSDP all-gathers parameters), so that all ranks must run
        as many; under DDP only a step's last backward is."""
        return self.sharded

    def passes(self, micro_batches: int) -> int:
        """How many forward and backward passes this rank runs for an optimizer step of that many micro-batches:
        its share, or at least one (for DDP's gradient exchange), or under FSDP the largest share of any rank.
        Passes beyond its share are zero-weighted."""
        share = len(range(self.rank, micro_batches, self.world_size))
        if self.lockstep:
            return -(-micro_batches // self.world_size)
        return max(share, 1) if self.distributed else share

    def sum(self, values: Sequence[float]) -> list[float]:
        """The values added up over all ranks (float64), the same on every rank."""
        return self._all_reduce(values, "SUM")

    def sum_tensors(self, tensors: Sequence) -> list:
        """0-d float64 tensors added up over all ranks, left on the device (no wait for it, unlike ``sum``)."""
        if not self.distributed:
            return list(tensors)
        import torch
        import torch.distributed as dist

        stacked = torch.stack(list(tensors))
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return list(stacked.unbind())

    def max(self, values: Sequence[float]) -> list[float]:
        return self._all_reduce(values, "MAX")

    def _all_reduce(self, values: Sequence[float], operation: str) -> list[float]:
        if not self.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, operation))
        return tensor.tolist()

    def gather(self, value: Any) -> list | None:
        """Every rank's value, in rank order (None for one process)."""
        if not self.distributed:
            return None
        import torch.distributed as dist

        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def random_states(self) -> list | None:
        """Every rank's torch random state (CPU, and its CUDA device's): a checkpoint restores each rank's own."""
        if not self.distributed:
            return None
        import torch

        cuda = torch.cuda.get_rng_state(self.device) if self.device.startswith("cuda") else None
        return self.gather([torch.get_rng_state(), cuda])

    def restore_random_state(self, states: list | None) -> None:
        """This rank's saved random state, when the checkpoint comes from a run of as many ranks."""
        if not self.distributed or not states or len(states) != self.world_size:
            return
        import torch

        cpu, cuda = states[self.rank]
        torch.set_rng_state(cpu)
        if cuda is not None and self.device.startswith("cuda"):
            torch.cuda.set_rng_state(cuda, self.device)

    def efficiency(self, record: dict) -> dict:
        """The run's measurements: rank 0's, with the largest peak memory of any rank and, on GPUs (whose energy
        counters are per device), the energy of all; a CPU's RAPL counter already covers every rank."""
        records = self.gather(record)
        if records is None:
            return record
        measured = dict(record["measured"])
        for name in ("peak_memory_bytes", "peak_memory_reserved_bytes"):
            if all(name in r["measured"] for r in records):
                measured[name] = max(r["measured"][name] for r in records)
        if self.device.startswith("cuda") and all("energy_kwh" in r["measured"] for r in records):
            measured["energy_kwh"] = sum(r["measured"]["energy_kwh"] for r in records)
        return {**record, "measured": measured, "per_rank": records}


def launch(function: str, nproc: int, *args, **kwargs) -> Any:
    """Run module:function(*args, **kwargs) in nproc processes under torchrun; returns rank 0's result.

    The arguments travel as JSON (paths as strings). The processes' output goes to this process's stdout (the
    job's log), and a failure raises with its last lines. SIGTERM/SIGUSR1 are passed on: the ranks save a
    checkpoint together and this raises TrainingInterrupted, as train_run does in a single process."""
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    with tempfile.TemporaryDirectory(prefix="peftstudy-torchrun-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({"function": function, "args": list(args), "kwargs": kwargs,
                                       "result": str(result)}, default=str))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   f"--signals-to-handle={TORCHRUN_SIGNALS}", f"--shutdown-timeout={SHUTDOWN_S}",
                   "-m", "peftstudy.training.distributed", str(request)]
        # Its own session: a terminal's Ctrl-C or a job's kill reaches it once, through the forwarding below.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", start_new_session=True)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        previous = {}
        if threading.current_thread() is threading.main_thread():  # signal handlers need the main thread
            for number in checkpoint.STOP_SIGNALS:
                previous[number] = signal.signal(number, lambda received, _frame: process.send_signal(received))
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                tail.append(line)
            returncode = process.wait()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            if process.poll() is None:  # this process was interrupted: leave no ranks running
                process.terminate()
                process.wait()
        outcome = json.loads(result.read_text()) if result.exists() else {}
    if "interrupted" in outcome:
        raise checkpoint.TrainingInterrupted(outcome["interrupted"])
    if returncode != 0 or "value" not in outcome:
        raise RuntimeError(f"{function} failed in torchrun with {nproc} processes (exit status {returncode}); "
                           f"its output ended with:\n{''.join(tail)}")
    return outcome["value"]


def main(request_path: str) -> None:
    """One rank of ``launch``: call the requested function; rank 0 writes its result (or its interruption)."""
    import importlib

    from torch.distributed.elastic.multiprocessing.errors import record


    request = json.loads(Path(request_path).read_text())
    module_name, function_name = request["function"].split(":")
    function = record(getattr(importlib.import_module(module_name), function_name))  # torchrun reports its error
    main_rank = Ranks.from_environment().main
    try:
        value = function(*request["args"], **request["kwargs"])
    except checkpoint.TrainingInterrupted as interrupted:
        if main_rank:
            io.write_json(request["result"], {"interrupted": str(interrupted)})
        raise
    if main_rank:
        io.write_json(request["result"], {"value": value})


if __name__ == "__main__":
    main(sys.argv[1])


def processes_for_gpus(gpus: int, allow_cpu_fallback: bool | None = None) -> int:
    """How many training processes a job granted this many GPUs runs: one per GPU.

    A job that sees fewer GPUs than it asked for fails, naming both (peftstudy.devices): with none, it trains in
    one process on the CPU only where the study allows it (``allow_cpu_fallback``; None: as the job's environment
    says), the effective batch, and so the result, being the same in any number of processes."""
    if gpus <= 1:
        return 1
    if allow_cpu_fallback is None:
        allow_cpu_fallback = devices.job_request()[1]
    return gpus if devices.check_gpus(gpus, devices.visible_gpus(), allow_cpu_fallback) else 1
