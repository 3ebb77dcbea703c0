"""Fine-tuning one run: a plain, readable loop (AdamW, warm-up + decay, clipping, early stopping).

Same settings + seed on the same hardware give bit-identical weights and losses:
the data order comes from a dedicated seeded generator and nothing else draws
from it. Under torchrun the run is data-parallel, with the numbers of a single
process up to float rounding (see distributed.py); with ``training.data_parallel:
fsdp`` the model is sharded over the processes (see fsdp.py).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Mapping

from peftstudy import io, provenance
from peftstudy.methods import get_method
from peftstudy.metrics.efficiency import PhaseMonitor
from peftstudy.modeling import heads
from peftstudy.modeling.batching import collate
from peftstudy.modeling.loading import count_parameters, pick_device
from peftstudy.training import checkpoint, fsdp
from peftstudy.training.distributed import Ranks


def seed_everything(seed: int) -> None:
    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model, learning_rate: float, weight_decay: float):
    """AdamW with weight decay on matrices only (not on biases and norms), as is standard."""
    import torch

    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate)


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
                total += float(loss)
                tokens += count
    model.train()
    total, tokens = ranks.sum([total, tokens])
    return total / max(tokens, 1)


def encode_split(goal: heads.Objective, path: Path) -> list[dict]:
    """A split's examples; a record the head cannot encode is an error naming the file."""
    try:
        return goal.encode(io.read_jsonl(path))
    except heads.HeadError as error:
        raise heads.HeadError(f"{path}: {error}") from None


def directory_size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


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
    import torch
    from transformers import get_scheduler

    torch.set_num_threads(threads)
    seed = settings["seed"]
    training = settings["training"]
    family = settings["family"]
    seed_everything(seed)

    method = get_method(settings["method_spec"]["kind"])
    # A model to be sharded is built on the CPU: sharding moves each rank's part to its device.
    model, tokenizer, base_manifest = method.load_base_for_training(base_dir, settings["method_spec"],
                                                                    ranks.load_device)

    # The model's task head decides what an example is (a text pair, a labelled input, a context window).
    goal = heads.objective(settings["method_spec"].get("head"), tokenizer, family, training)
    train_examples = encode_split(goal, data_dir / "train.jsonl")
    validation_examples = encode_split(goal, data_dir / "validation.jsonl")
    if not train_examples:
        raise ValueError(f"{data_dir}: the train split is empty")
    # Per example: its targets (tokens, or 1) and all its tokens, so every rank knows the totals of a step.
    target_tokens = [goal.targets(example) for example in train_examples]
    input_tokens = [len(example["input_ids"]) for example in train_examples]

    batch_size = training["batch_size"]
    accumulation = training["gradient_accumulation_steps"]
    steps_per_epoch = math.ceil(len(train_examples) / (batch_size * accumulation))
    total_steps = steps_per_epoch * training["epochs"]
    if training.get("max_steps"):
        total_steps = min(total_steps, training["max_steps"])

    model = method.prepare(model, family, settings["method_spec"], settings["rank"], total_steps=total_steps)
    model = model.to(ranks.load_device)
    trainable_parameters, total_parameters = count_parameters(model)
    # Method-specific facts worth keeping (e.g. QLoRA's quantized weight bytes).
    method_extras = getattr(method, "training_record_extras", lambda _model: {})(model)

    def load(indices):
        batch = collate([train_examples[i] for i in indices], tokenizer.pad_token_id)
        return {k: v.to(device) for k, v in batch.items()}

    def token_loss(network, batch):
        with autocast_context(training["precision"], device):
            return goal.loss(network, batch)[0]

    model.train()
    # Forward and backward go through the DDP wrapper; everything else (methods, checkpoints) sees the model.
    # FSDP shards the model itself (network is model), replacing its parameters: the optimizer comes after.
    network = ranks.wrap(model, lambda probed: token_loss(probed, load(range(min(batch_size, len(train_examples))))),
                         training["precision"])
    optimizer = make_optimizer(model, training["learning_rate"], training["weight_decay"])
    scheduler = get_scheduler(
        training["lr_scheduler"],
        optimizer,
        num_warmup_steps=math.ceil(training["warmup_ratio"] * total_steps),
        num_training_steps=total_steps,
    )
    order_generator = torch.Generator().manual_seed(seed)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    patience = training.get("early_stopping_patience")
    if ranks.distributed:  # the same weights everywhere, but each rank its own dropout masks
        torch.manual_seed(seed + ranks.rank)

    loop = {"epoch": 1, "order": None, "next_group": 0, "step": 0, "tokens_seen": 0, "step_losses": [],
            "step_penalties": [], "validation_losses": [], "best_loss": math.inf, "best_epoch": 0, "best_state": None,
            "epochs_without_gain": 0, "elapsed_s": 0.0, "resumed_from_step": []}
    fingerprint = checkpoint.fingerprint(settings, io.sha256_file(data_dir / "manifest.json"))
    with ranks.main_first():
        saved = checkpoint.load(checkpoint_dir, fingerprint) if getattr(method, "resumable", True) else None
    if saved is not None:
        loop = checkpoint.restore(saved, model, optimizer, scheduler, order_generator)
        ranks.restore_random_state(loop.get("random_states"))
        loop["resumed_from_step"] = [*loop["resumed_from_step"], loop["step"]]
    every = training.get("checkpoint_every_steps")
    step, tokens_seen = loop["step"], loop["tokens_seen"]
    step_losses, step_penalties, validation_losses = loop["step_losses"], loop["step_penalties"], loop["validation_losses"]
    best_loss, best_epoch, best_state = loop["best_loss"], loop["best_epoch"], loop["best_state"]
    epochs_without_gain = loop["epochs_without_gain"]

    # Peak memory, energy and GPU samples of the training loop.
    with PhaseMonitor(device) as monitor, checkpoint.StopRequest() as stop:
        started = time.perf_counter()
        for epoch in range(loop["epoch"], training["epochs"] + 1):
            if loop["order"] is None:
                order = torch.randperm(len(train_examples), generator=order_generator).tolist()
            else:  # resuming inside this epoch: its data order as it was drawn
                order, loop["order"] = loop["order"], None
            batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            start_group, loop["next_group"] = loop["next_group"], 0
            for first in range(start_group, len(batches), accumulation):
                if step >= total_steps:  # resumed from the run's last step: only the epoch's validation is left
                    break
                group = batches[first : first + accumulation]
                # Normalise by the tokens of the whole accumulated step on all ranks: equal to one big batch.
                group_tokens = sum(target_tokens[i] for indices in group for i in indices)
                share = ranks.share(group)
                passes = ranks.passes(len(group))
                group_loss = group_penalty = 0.0
                for position in range(passes):
                    with ranks.accumulating(network, last=position == passes - 1):
                        if position >= len(share):
                            # This rank's share is spent (an epoch's short last step) but DDP's gradient exchange,
                            # or FSDP's every pass, needs it: a pass that adds nothing.
                            (token_loss(network, load(group[0])) * 0.0).backward()
                            continue
                        indices = share[position]
                        loss_sum = token_loss(network, load(indices))
                        objective = loss_sum / group_tokens
                        penalty = method.regularization_loss(model)
                        if penalty is not None:  # once per optimizer step, spread over its micro-batches
                            objective = objective + penalty / len(group)
                            group_penalty += penalty.item() / len(group)
                        if ranks.distributed:  # DDP averages the ranks' gradients; the step needs their sum
                            objective = objective * ranks.world_size
                        objective.backward()
                    group_loss += loss_sum.item()
                # Of sharded gradients (DTensors) the norm is the whole gradient's.
                torch.nn.utils.clip_grad_norm_([p for _, p in trainable], training["max_grad_norm"])
                optimizer.step()
                method.after_optimizer_step(model, step)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                tokens_seen += sum(input_tokens[i] for indices in group for i in indices)
                group_loss, group_penalty = ranks.sum([group_loss, group_penalty])
                step_losses.append(group_loss / group_tokens)
                step_penalties.append(group_penalty)
                # A signal may reach one rank only: all stop at the same step, or the others would wait forever.
                (stop_signal,) = ranks.max([stop.signal or 0])
                if checkpoint_dir is not None and (stop_signal or (every and step % every == 0)):
                    random_states = ranks.random_states()
                    # Every rank: a sharded model's tensors are gathered on rank 0, which writes.
                    checkpoint.save(checkpoint_dir, fingerprint, model, optimizer, scheduler, order_generator, {
                        "epoch": epoch, "order": order, "next_group": first + accumulation, "step": step,
                        "tokens_seen": tokens_seen, "step_losses": step_losses, "step_penalties": step_penalties,
                        "validation_losses": validation_losses, "best_loss": best_loss, "best_epoch": best_epoch,
                        "best_state": best_state, "epochs_without_gain": epochs_without_gain,
                        "elapsed_s": loop["elapsed_s"] + time.perf_counter() - started,
                        "resumed_from_step": loop["resumed_from_step"], "random_states": random_states})
                    ranks.barrier()  # torchrun ends every rank once one exits: not before the checkpoint is whole
                    if stop_signal:
                        raise checkpoint.TrainingInterrupted(
                            f"stopped by signal {int(stop_signal)} at step {step}; state saved in {checkpoint_dir}: "
                            "rerun to resume")
                if step >= total_steps:
                    break
            validation_loss = evaluate_loss(model, validation_examples, goal, tokenizer.pad_token_id, batch_size,
                                            device, ranks=ranks)
            validation_losses.append(validation_loss)
            if validation_loss < best_loss:
                best_loss, best_epoch, epochs_without_gain = validation_loss, epoch, 0
                best_state = {name: p.detach().clone() for name, p in trainable}
            else:
                epochs_without_gain += 1
            if step >= total_steps or (patience and epochs_without_gain >= patience):
                break
        train_time_s = loop["elapsed_s"] + time.perf_counter() - started
    efficiency = ranks.efficiency(monitor.record())
    if best_state is not None and best_epoch != len(validation_losses):
        with torch.no_grad():
            for name, parameter in trainable:
                parameter.copy_(best_state[name])

    def build_unsharded():  # the method's model, on the CPU, to load the gathered weights into
        base = method.load_base_for_training(base_dir, settings["method_spec"], "cpu")[0]
        return method.prepare(base, family, settings["method_spec"], settings["rank"], total_steps=total_steps)

    # The method saves a model with whole tensors: of a sharded one, a copy gathered on rank 0.
    whole = fsdp.unsharded(model, build_unsharded)
    if ranks.main:
        with io.atomic_directory(weights_dir) as tmp_dir:
            method.save(whole, tokenizer, tmp_dir)
        checkpoint.remove(checkpoint_dir)  # the weights are complete: nothing left to resume
    ranks.barrier()
    record = {
        "settings": dict(settings),
        "base": {k: base_manifest.get(k) for k in ("model", "family", "source", "hub_id", "resolved_revision", "sha256")},
        "trainable_parameters": trainable_parameters,
        "total_parameters": total_parameters,
        "stored_bytes": directory_size_bytes(Path(weights_dir)),
        "steps": step,
        "epochs_run": len(validation_losses),
        "best_epoch": best_epoch,
        "step_losses": step_losses,  # token cross-entropy only, comparable across methods
        "step_regularization": step_penalties if any(step_penalties) else None,
        "validation_losses": validation_losses,
        "best_validation_loss": best_loss,
        "train_time_s": train_time_s,
        # Steps at which an interrupted run was resumed (its numbers equal an uninterrupted run's on CPU).
        "resumed_from_step": loop["resumed_from_step"] or None,
        "time_per_step_s": train_time_s / max(step, 1),
        "tokens_seen": tokens_seen,
        "tokens_per_s": tokens_seen / train_time_s if train_time_s > 0 else None,
        "train_examples": len(train_examples),
        "optimizer": "torch.optim.AdamW",
        "method_extras": method_extras,
        "efficiency": efficiency,
        "distributed": ranks.record(),
        "data_manifest_sha256": io.sha256_file(data_dir / "manifest.json"),
        "provenance": provenance.record("train", settings, code=code, device=device),
    }
    if ranks.main:
        io.write_json(record_path, record)
    return record
