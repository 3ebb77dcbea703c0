"""Fine-tuning one run: a plain, readable loop (AdamW, warm-up + decay, clipping, early stopping).

Same settings + seed on the same hardware give bit-identical weights and losses:
the data order comes from a dedicated seeded generator and nothing else draws
from it. Under torchrun the run is data-parallel, with the numbers of a single
process up to float rounding (see distributed.py); with ``training.data_parallel:
fsdp`` the model is sharded over the processes (see fsdp.py).

A run reads top to bottom in ``_train``: ``setup_run`` builds what stays fixed (model, data, optimizer,
schedule: a ``Setup``), ``start_state`` begins or resumes the ``LoopState`` that changes, ``fit`` trains it
epoch by epoch, and ``record`` describes the finished run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from peftstudy import checksums, io, model_card, provenance
from peftstudy.methods import get_method
from peftstudy.methods.base import Method
from peftstudy.metrics.efficiency import PhaseMonitor
from peftstudy.modeling import heads
from peftstudy.modeling.batching import collate
from peftstudy.modeling.loading import count_parameters, pick_device
from peftstudy.modeling.memory import StepPeak, training_state_bytes
from peftstudy.progress import Progress
from peftstudy.training import checkpoint, fsdp
from peftstudy.training.batches import draw_order, padded_tokens
from peftstudy.training.checkpoint import LoopState
from peftstudy.training.distributed import Ranks
from peftstudy.training.optimizer import make_optimizer, optimizer_name, seed_everything


def autocast_context(precision: str, device: str):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and not device.startswith("cuda"):
        raise RuntimeError("precision fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def evaluate_loss(model, examples, goal: heads.Objective, pad_token_id: int, batch_size: int, device: str, *,
                  ranks: Ranks | None = None) -> float:
    """The objective's mean over a split: token-weighted cross-entropy for text, per example (window) for a
    classifier or span head (each rank of a data-parallel run takes every W-th batch).

    Under FSDP every forward pass is a collective: a rank without a batch in a round runs one and discards it."""
    import torch

    ranks = ranks or Ranks()
    model.eval()
    total, tokens = 0.0, 0
    starts = range(0, len(examples), batch_size)
    rounds = -(-len(starts) // ranks.world_size)
    with torch.no_grad():
        for index in range(ranks.rank, rounds * ranks.world_size, ranks.world_size):
            if index >= len(starts) and not ranks.lockstep:
                break
            start = starts[min(index, len(starts) - 1)]
            batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad_token_id).items()}
            loss, count = goal.loss(model, batch)
            if index < len(starts):
                total = total + loss.detach().double()  # read back once, after the split
                tokens += count
    model.train()
    total, tokens = ranks.sum([float(total), tokens])
    return total / max(tokens, 1)


def encode_split(goal: heads.Objective, path: Path) -> list[dict]:
    """A split's examples; a record the head cannot encode is an error naming the file."""
    try:
        return goal.encode(io.read_jsonl(path, required=("id", "input", "reference")))
    except heads.HeadError as error:
        raise heads.HeadError(f"{path}: {error}") from None


def directory_size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


@dataclass
class TrainingData:
    """A run's encoded splits, and how a micro-batch of training examples becomes a summed loss."""

    goal: heads.Objective  # the model's task head decides what an example is and how its loss is taken
    train: list[dict]
    validation: list[dict]
    # Per training example: its targets (tokens, or 1) and all its tokens, so every rank knows a step's totals.
    target_tokens: list[int]
    input_tokens: list[int]
    logits_from: list[int]  # per example: the first position whose output its loss needs
    pad_token_id: int
    precision: str
    device: str

    @classmethod
    def read(cls, goal: heads.Objective, data_dir: Path, pad_token_id: int, precision: str,
             device: str) -> "TrainingData":
        train = encode_split(goal, data_dir / "train.jsonl")
        validation = encode_split(goal, data_dir / "validation.jsonl")
        if not train:
            raise ValueError(f"{data_dir / 'train.jsonl'}: the train split is empty (no records)")
        return cls(goal, train, validation, [goal.targets(example) for example in train],
                   [len(example["input_ids"]) for example in train], [goal.logits_from(example) for example in train],
                   pad_token_id, precision, device)

    def loss(self, network, indices):
        """The objective summed over these training examples (divided by the step's targets by the caller)."""
        batch = collate([self.train[i] for i in indices], self.pad_token_id)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with autocast_context(self.precision, self.device):
            return self.goal.summed_loss(network, batch, min(self.logits_from[i] for i in indices))


@dataclass
class Setup:
    """What a run trains with and never replaces: built once by setup_run, read by every later stage."""

    settings: Mapping
    base_dir: Path
    data_dir: Path
    checkpoint_dir: str | Path | None
    fingerprint: str  # what a checkpoint must match to be resumed
    ranks: Ranks
    device: str
    method: Method
    model: Any  # what methods and checkpoints see
    network: Any  # what forward and backward go through: the DDP wrapper, or the model itself
    tokenizer: Any
    base_manifest: dict
    data: TrainingData
    total_steps: int
    optimizer: Any
    scheduler: Any
    trainable: list  # (name, parameter) of the trainable parameters, as the optimizer holds them
    trainable_parameters: int
    total_parameters: int
    method_extras: dict  # method-specific facts worth keeping (e.g. QLoRA's quantized weight bytes)
    # Bytes of weights, gradients and optimizer state (modeling.memory), read at this session's first step.
    state_memory: dict = dataclasses.field(default_factory=dict)

    @property
    def training(self) -> Mapping:
        return self.settings["training"]


def train_run(
    settings: Mapping,
    base_dir: str | Path,
    data_dir: str | Path,
    weights_dir: str | Path,
    record_path: str | Path,
    *,
    code: str | None = None,
    threads: int = 1,
    checkpoint_dir: str | Path | None = None,
) -> dict:
    """Train one (dataset, model, method, rank, seed) run; write its weights and a JSON record.

    With a checkpoint_dir the run is resumable: it saves its state there every
    ``training.checkpoint_every_steps`` steps and on SIGTERM/SIGUSR1 (then raises TrainingInterrupted), and
    a later call resumes from it (see checkpoint.py). Under torchrun each process is one rank of a
    data-parallel run (see distributed.py), DDP or, with ``training.data_parallel: fsdp``, FSDP (fsdp.py: a
    method that cannot train sharded is an error, whatever the number of processes); the job's threads are
    shared among them."""
    ranks = Ranks.from_environment(settings["training"].get("data_parallel", "ddp"))
    if ranks.data_parallel == "fsdp":
        fsdp.check_method(settings["method_spec"]["kind"])
    ranks.check_accumulation(settings["training"]["gradient_accumulation_steps"])
    with ranks.process_group(pick_device()) as device:
        return _train(settings, Path(base_dir), Path(data_dir), weights_dir, record_path, code=code,
                      threads=max(1, threads // ranks.world_size), checkpoint_dir=checkpoint_dir, ranks=ranks,
                      device=device)


def _train(settings, base_dir, data_dir, weights_dir, record_path, *, code, threads, checkpoint_dir, ranks,
           device) -> dict:
    """One process's run, stage by stage; every rank goes through the same stages (their collectives pair up)."""
    setup = setup_run(settings, base_dir, data_dir, threads=threads, checkpoint_dir=checkpoint_dir, ranks=ranks,
                      device=device)
    state = start_state(setup)
    try:
        with PhaseMonitor(device) as monitor:  # peak memory, energy and GPU samples of the training loop
            state = fit(setup, state)
    except TrainingDiverged as diverged:
        if setup.training.get("on_divergence", "fail") != "record":
            raise
        return record_divergence(setup, state, diverged, weights_dir, record_path, code=code)
    efficiency = ranks.efficiency(monitor.record())
    keep_best_weights(setup, state)
    save_weights(setup, weights_dir)
    run_record = record(setup, state, efficiency, weights_dir, code=code)
    if ranks.main:
        io.write_json(record_path, run_record)
    return run_record


def planned_steps(training: Mapping, examples: int) -> int:
    """Optimizer steps of the whole run: every epoch's, up to training.max_steps."""
    steps_per_epoch = math.ceil(examples / (training["batch_size"] * training["gradient_accumulation_steps"]))
    total_steps = steps_per_epoch * training["epochs"]
    return min(total_steps, training["max_steps"]) if training.get("max_steps") else total_steps


def setup_run(settings: Mapping, base_dir: Path, data_dir: Path, *, threads: int, checkpoint_dir, ranks: Ranks,
              device: str) -> Setup:
    """Model, data, optimizer and schedule, built in a fixed order after seeding: what the method's weights
    draw from the global generator is then the same in every run of these settings."""
    import torch
    from transformers import get_scheduler

    torch.set_num_threads(threads)
    seed, training, spec, family = settings["seed"], settings["training"], settings["method_spec"], settings["family"]
    seed_everything(seed)
    method = get_method(spec["kind"])
    # A model to be sharded is built on the CPU: sharding moves each rank's part to its device.
    model, tokenizer, base_manifest = method.load_base_for_training(base_dir, spec, ranks.load_device)
    goal = heads.objective(spec.get("head"), tokenizer, family, training)
    data = TrainingData.read(goal, data_dir, tokenizer.pad_token_id, training["precision"], device)
    total_steps = planned_steps(training, len(data.train))
    model = method.prepare(model, family, spec, settings["rank"], total_steps=total_steps).to(ranks.load_device)
    trainable_parameters, total_parameters = count_parameters(model)
    method_extras = method.record_extras(model)
    model.train()
    # Everything but forward and backward (methods, checkpoints) sees the model, not a DDP wrapper. FSDP shards
    # the model itself (network is model), replacing its parameters: the optimizer comes after.
    probe = range(min(training["batch_size"], len(data.train)))
    network = ranks.wrap(model, lambda probed: data.loss(probed, probe), training["precision"])
    optimizer = make_optimizer(model, training["learning_rate"], training["weight_decay"])
    scheduler = get_scheduler(training["lr_scheduler"], optimizer, num_training_steps=total_steps,
                              num_warmup_steps=math.ceil(training["warmup_ratio"] * total_steps))
    if ranks.distributed:  # the same weights everywhere, but each rank its own dropout masks
        torch.manual_seed(seed + ranks.rank)
    return Setup(settings, base_dir, data_dir, checkpoint_dir,
                 checkpoint.fingerprint(settings, io.sha256_file(data_dir / "manifest.json")), ranks, device,
                 method, model, network, tokenizer, base_manifest, data, total_steps, optimizer, scheduler,
                 [(name, p) for name, p in model.named_parameters() if p.requires_grad], trainable_parameters,
                 total_parameters, method_extras)


def start_state(setup: Setup) -> LoopState:
    """A fresh state, or the checkpoint's (model, optimizer, scheduler and random states restored with it)."""
    with setup.ranks.main_first():  # loading may remove a stale checkpoint: one rank at a time
        saved = checkpoint.load(setup.checkpoint_dir, setup.fingerprint) if setup.method.resumable else None
    if saved is None:
        return LoopState.start(setup.settings["seed"])
    state = checkpoint.restore(saved, setup.model, setup.optimizer, setup.scheduler)
    setup.ranks.restore_random_state(state.random_states)
    state.resumed_from_step = [*state.resumed_from_step, state.step]
    return state


def fit(setup: Setup, state: LoopState) -> LoopState:
    """Train epoch by epoch, each followed by its validation, until the planned steps are done or early stopping
    ends the run; the state's elapsed_s then holds the training time of all the run's sessions."""
    with checkpoint.StopRequest() as stop, Progress(setup.total_steps, "train", initial=state.step) as progress:
        started = time.perf_counter()
        session = StepLosses(state, progress, started, setup.training)
        while state.epoch <= setup.training["epochs"]:
            train_epoch(setup, state, stop, session)
            finished = validate(setup, state)
            progress.note(f"epoch {state.epoch}: validation loss {state.validation_losses[-1]:.4f}")
            if finished:
                break
            state.epoch, state.order, state.next_group = state.epoch + 1, None, 0
        state.elapsed_s += time.perf_counter() - started
    return state


def batching(training: Mapping) -> str:
    return training.get("batching", "random")


class TrainingDiverged(RuntimeError):
    """The loss (or its regularization) became NaN or infinite: the run stops before it writes weights or a record
    (on_divergence: fail), or records where it diverged instead (on_divergence: record, see record_divergence)."""

    def __init__(self, message: str, *, what: str, value: float, step: int, epoch: int, learning_rate: float):
        super().__init__(message)
        self.what, self.value, self.step, self.epoch, self.learning_rate = what, value, step, epoch, learning_rate


def check_finite(what: str, value: float, step: int, training: Mapping, epoch: int) -> None:
    """Raise TrainingDiverged naming the step, the value and the setting to change, when ``value`` is not finite."""
    if math.isfinite(value):
        return
    policy = training.get("on_divergence", "fail")
    outcome = ("No weights or train.json were written" if policy == "fail"
               else "train.json records the divergence; the run has no weights, generations or metrics")
    raise TrainingDiverged(
        f"training diverged: the {what} is {value} at optimizer step {step} (epoch {epoch}) with "
        f"training.learning_rate {training['learning_rate']}; lower training.learning_rate (for this method: "
        f"methods.<name>.training.learning_rate), or lower max_grad_norm / raise warmup_ratio. {outcome} "
        f"(training.on_divergence: {policy})",
        what=what, value=value, step=step, epoch=epoch, learning_rate=training["learning_rate"])


class StepLosses:
    """Step losses as the device computes them, read back into the state in one go (for a progress line, a
    checkpoint, an epoch's end): reading each step's at once would make the host wait for the GPU every step.
    A non-finite one stops the run there (TrainingDiverged), before a checkpoint or the weights keep it."""

    def __init__(self, state: LoopState, progress: Progress, started: float, training: Mapping):
        self.state, self.progress, self.started, self.training = state, progress, started, training
        self.pending: list = []  # (loss, penalty) 0-d tensors of steps not yet in the state
        self.tokens_at_start = state.tokens_seen

    def add(self, loss, penalty) -> None:
        self.pending.append((loss, penalty))
        self.progress.advance()
        if self.progress.due():
            self.settle()
            elapsed = time.perf_counter() - self.started
            tokens_per_s = (self.state.tokens_seen - self.tokens_at_start) / elapsed if elapsed > 0 else 0.0
            self.progress.report(epoch=self.state.epoch, loss=self.state.step_losses[-1],
                                 **{"tokens/s": tokens_per_s})

    def settle(self) -> None:
        import torch

        if self.pending:
            values = torch.stack([torch.stack([loss, penalty]) for loss, penalty in self.pending]).tolist()
            first = len(self.state.step_losses) + 1  # the 1-based step of values[0]
            self.pending.clear()
            for offset, (loss, penalty) in enumerate(values):
                check_finite("training loss", loss, first + offset, self.training, self.state.epoch)
                check_finite("regularization loss", penalty, first + offset, self.training, self.state.epoch)
                # Step by step: a diverged run's record (on_divergence: record) keeps every finite step before.
                self.state.step_losses.append(loss)
                self.state.step_penalties.append(penalty)


def train_epoch(setup: Setup, state: LoopState, stop: checkpoint.StopRequest, session: StepLosses) -> None:
    """The epoch's optimizer steps from where the state is: its start, or inside it when resumed (with the data
    order as it was drawn), or past its last step when resumed there (only its validation is left)."""
    batch_size, accumulation = setup.training["batch_size"], setup.training["gradient_accumulation_steps"]
    lengths = setup.data.input_tokens
    if state.order is None:
        # Grouped by optimizer step, not micro-batch: halving the micro-batch (out of memory) keeps every step's
        # examples.
        state.order = draw_order(lengths, batch_size * accumulation, batching(setup.training), state.order_rng)
    batches = [state.order[i : i + batch_size] for i in range(0, len(state.order), batch_size)]
    for first in range(state.next_group, len(batches), accumulation):
        if state.step >= setup.total_steps:
            break
        group = batches[first : first + accumulation]
        step_loss, step_penalty = optimizer_step(setup, group, state.step)
        state.step += 1
        state.next_group = first + accumulation
        state.tokens_seen += sum(lengths[i] for indices in group for i in indices)
        state.padded_tokens += padded_tokens(group, lengths)
        session.add(step_loss, step_penalty)
        checkpoint_if_due(setup, state, stop, session)
    session.settle()


def optimizer_step(setup: Setup, group: list[list[int]], step: int):
    """One optimizer step over a group of micro-batches; returns its token loss and regularization (all ranks'),
    as 0-d float64 tensors on the device.

    The loss is normalised by the targets of the whole group on all ranks: equal to one big batch. A session's
    first step is profiled for its peak of tensor memory (modeling.memory.StepPeak)."""
    if setup.state_memory:
        return _optimizer_step(setup, group, step)
    live = training_state_bytes(setup.model, setup.optimizer)["training_state_bytes"]
    with StepPeak(setup.device, live) as peak:
        result = _optimizer_step(setup, group, step)
    setup.state_memory["step_peak_tensor_bytes"] = peak.peak_bytes
    return result


def _optimizer_step(setup: Setup, group: list[list[int]], step: int):
    import torch

    ranks, network, method = setup.ranks, setup.network, setup.method
    group_tokens = sum(setup.data.target_tokens[i] for indices in group for i in indices)
    share = ranks.share(group)
    passes = ranks.passes(len(group))
    group_loss = torch.zeros((), dtype=torch.float64, device=setup.device)
    group_penalty = torch.zeros((), dtype=torch.float64, device=setup.device)
    for position in range(passes):
        with ranks.accumulating(network, last=position == passes - 1):
            if position >= len(share):
                # This rank's share is spent (an epoch's short last step) but DDP's gradient exchange, or FSDP's
                # every pass, needs it: a pass that adds nothing.
                (setup.data.loss(network, group[0]) * 0.0).backward()
                continue
            loss_sum = setup.data.loss(network, share[position])
            objective = loss_sum / group_tokens
            penalty = method.regularization_loss(setup.model)
            if penalty is not None:  # once per optimizer step, spread over its micro-batches
                objective = objective + penalty / len(group)
                group_penalty += penalty.detach().double() / len(group)
            if ranks.distributed:  # DDP averages the ranks' gradients; the step needs their sum
                objective = objective * ranks.world_size
            objective.backward()
        group_loss += loss_sum.detach().double()
    # Of sharded gradients (DTensors) the norm is the whole gradient's.
    torch.nn.utils.clip_grad_norm_([p for _, p in setup.trainable], setup.training["max_grad_norm"])
    setup.optimizer.step()
    if not setup.state_memory:  # the one moment weights, gradients and the optimizer's state all exist
        setup.state_memory.update(training_state_bytes(setup.model, setup.optimizer))
    method.after_optimizer_step(setup.model, step)
    setup.scheduler.step()
    setup.optimizer.zero_grad(set_to_none=True)
    group_loss, group_penalty = ranks.sum_tensors([group_loss, group_penalty])
    return group_loss / group_tokens, group_penalty


def checkpoint_if_due(setup: Setup, state: LoopState, stop: checkpoint.StopRequest, session: StepLosses) -> None:
    """Save the state every checkpoint_every_steps steps, and on a stop signal (then raise TrainingInterrupted)."""
    ranks, every = setup.ranks, setup.training.get("checkpoint_every_steps")
    # A signal may reach one rank only: all stop at the same step, or the others would wait forever.
    (stop_signal,) = ranks.max([stop.signal or 0])
    if setup.checkpoint_dir is None or not (stop_signal or (every and state.step % every == 0)):
        return
    session.settle()
    saved = dataclasses.replace(state, elapsed_s=state.elapsed_s + time.perf_counter() - session.started,
                                random_states=ranks.random_states())
    # Every rank: a sharded model's tensors are gathered on rank 0, which writes.
    checkpoint.save(setup.checkpoint_dir, setup.fingerprint, setup.model, setup.optimizer, setup.scheduler, saved)
    ranks.barrier()  # torchrun ends every rank once one exits: not before the checkpoint is whole
    if stop_signal:
        raise checkpoint.TrainingInterrupted(f"stopped by signal {int(stop_signal)} at step {state.step}; state saved "
                                             f"in {setup.checkpoint_dir}: rerun to resume")


def validate(setup: Setup, state: LoopState) -> bool:
    """The epoch's validation loss, kept with its weights when it is the best so far; whether training ends."""
    loss = evaluate_loss(setup.model, setup.data.validation, setup.data.goal, setup.tokenizer.pad_token_id,
                         setup.training["batch_size"], setup.device, ranks=setup.ranks)
    check_finite("validation loss", loss, state.step, setup.training, state.epoch)
    state.validation_losses.append(loss)
    if loss < state.best_loss:
        state.best_loss, state.best_epoch, state.epochs_without_gain = loss, state.epoch, 0
        state.best_state = {name: p.detach().clone() for name, p in setup.trainable}
    else:
        state.epochs_without_gain += 1
    patience = setup.training.get("early_stopping_patience")
    return state.step >= setup.total_steps or bool(patience and state.epochs_without_gain >= patience)


def keep_best_weights(setup: Setup, state: LoopState) -> None:
    """Early stopping ends with the trainable weights of the best validation epoch, when it was not the last."""
    import torch

    if state.best_state is not None and state.best_epoch != len(state.validation_losses):
        with torch.no_grad():
            for name, parameter in setup.trainable:
                parameter.copy_(state.best_state[name])


def save_weights(setup: Setup, weights_dir: str | Path) -> None:
    """The method saves a model with whole tensors: of a sharded one, a copy gathered on rank 0. The checkpoint
    goes then: nothing is left to resume."""
    settings = setup.settings

    def build_unsharded():  # the method's model, on the CPU, to load the gathered weights into
        base = setup.method.load_base_for_training(setup.base_dir, settings["method_spec"], "cpu")[0]
        return setup.method.prepare(base, settings["family"], settings["method_spec"], settings["rank"],
                                    total_steps=setup.total_steps)

    whole = fsdp.unsharded(setup.model, build_unsharded)
    if setup.ranks.main:
        with io.atomic_directory(weights_dir) as tmp_dir:
            setup.method.save(whole, setup.tokenizer, tmp_dir)
            # Before train.json lists the directory's files: what loads the run outside peftstudy.
            model_card.finish_weights_dir(tmp_dir, settings, setup.base_dir, setup.tokenizer)
        checkpoint.remove(setup.checkpoint_dir)
    setup.ranks.barrier()


def record(setup: Setup, state: LoopState, efficiency: dict, weights_dir: str | Path, *, code: str | None) -> dict:
    """The run's train.json: what was trained, its losses, time and throughput, and where it came from; sealed with
    its own checksum, and its weights' (what `peftstudy verify` re-checks)."""
    train_time_s = state.elapsed_s
    return checksums.sealed({
        **_identity(setup, state, weights_dir, code),
        "stored_bytes": directory_size_bytes(Path(weights_dir)),
        "steps": state.step,
        "epochs_run": len(state.validation_losses),
        "best_epoch": state.best_epoch,
        "step_regularization": state.step_penalties if any(state.step_penalties) else None,
        "best_validation_loss": state.best_loss,
        "train_time_s": train_time_s,
        "time_per_step_s": train_time_s / max(state.step, 1),
        "tokens_seen": state.tokens_seen,  # real (non-padding) input tokens of every step
        "tokens_per_s": state.tokens_seen / train_time_s if train_time_s > 0 else None,
        # How micro-batches were formed, and the share of their input positions that was padding.
        "batching": {"strategy": batching(setup.training), "micro_batch_size": setup.training["batch_size"],
                     "padding_fraction": (1 - state.tokens_seen / state.padded_tokens) if state.padded_tokens else None},
        "optimizer": optimizer_name(setup.optimizer),
        "method_extras": setup.method_extras,
        # None when this session made no optimizer step (resumed after the last one).
        "state_memory": dict(setup.state_memory) or None,
        "efficiency": efficiency,
    })


def _identity(setup: Setup, state: LoopState, weights_dir: str | Path, code: str | None) -> dict:
    """What every train.json holds, trained through or diverged: the run's settings, base, data, parameter counts,
    losses so far, weights' checksums and provenance."""
    manifest = setup.base_manifest
    return {
        "settings": dict(setup.settings),
        "base": {k: manifest.get(k) for k in ("model", "family", "source", "hub_id", "resolved_revision", "sha256")},
        "trainable_parameters": setup.trainable_parameters,
        "total_parameters": setup.total_parameters,
        "weights_sha256": checksums.file_checksums(weights_dir),
        "step_losses": state.step_losses,  # token cross-entropy only, comparable across methods
        "validation_losses": state.validation_losses,
        # Steps at which an interrupted run was resumed (its numbers equal an uninterrupted run's on CPU).
        "resumed_from_step": state.resumed_from_step or None,
        "train_examples": len(setup.data.train),
        "distributed": setup.ranks.record(),
        "data_manifest_sha256": io.sha256_file(setup.data_dir / "manifest.json"),
        "provenance": provenance.record("train", setup.settings, code=code, device=setup.device),
    }


DIVERGED_MARKER = "DIVERGED.json"  # the only file in a diverged run's weights directory


def record_divergence(setup: Setup, state: LoopState, diverged: TrainingDiverged, weights_dir: str | Path,
                      record_path: str | Path, *, code: str | None) -> dict:
    """on_divergence: record. The weights directory holds only a marker (no weights: a diverged model is not a
    result), train.json says where it diverged; generation, scoring and aggregation see its ``diverged`` block and
    keep the run out of the metrics and statistics, and the report lists it. The checkpoint goes (as after weights
    are saved): a rerun would diverge again at the same step."""
    # Not JSON numbers: NaN and infinities are not valid JSON, and a reader must not take them for a loss.
    loss = "nan" if math.isnan(diverged.value) else ("inf" if diverged.value > 0 else "-inf")
    divergence = {"step": diverged.step, "epoch": diverged.epoch, "what": diverged.what, "loss": loss,
                  "learning_rate": diverged.learning_rate,
                  # What the schedule (warm-up and decay; a LambdaLR for every lr_scheduler the schema allows) gave
                  # that step: losses are read back in batches, so the scheduler itself may be a few steps on.
                  "scheduled_learning_rate": float(setup.scheduler.base_lrs[0]
                                                   * setup.scheduler.lr_lambdas[0](diverged.step - 1)),
                  "message": str(diverged)}
    if setup.ranks.main:
        with io.atomic_directory(weights_dir) as tmp_dir:
            io.write_json(Path(tmp_dir) / DIVERGED_MARKER,
                          {"diverged": divergence, "note": "no weights: training diverged (see train.json)"})
        checkpoint.remove(setup.checkpoint_dir)
    setup.ranks.barrier()
    # step_losses: the finite ones, before the step that diverged; weights_sha256: the marker's (verify checks it).
    run_record = checksums.sealed({"diverged": divergence, **_identity(setup, state, weights_dir, code),
                                   "steps": diverged.step})
    if setup.ranks.main:
        io.write_json(record_path, run_record)
    return run_record
