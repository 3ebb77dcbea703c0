"""An epoch's data order: which training examples share a micro-batch, and in what order the batches come.

``random`` (the default) is a random permutation cut into batches, as transformers' Trainer does. A batch is
padded to its longest example, so random batches of variable-length text carry padding. ``length_grouped`` does
what the Trainer's ``group_by_length`` does: the permutation cut into mega-batches of up to 50 batches, each
sorted by length, so a batch holds examples of similar length; the full batches are then shuffled so that no
length curriculum runs through the epoch. Every example is still seen once per epoch, a step's loss is still
the token-weighted mean over its examples, and what each sequence attends to does not change.

It is not the default because it changes what a step averages over: on the demo's Debian data, length and
content go together, and length-grouped runs ended 0.03-0.08 nats above random batching's validation loss (and
the Trainer's) after the same epochs, more than the seed-to-seed spread, for 1.1-1.3x the speed
(benchmarks/train_throughput.py, benchmarks/README.md).

The order is drawn from the run's data-order generator alone, so it is fixed by the seed and is the one thing
a resumed run needs (with its position) to go on with the same batches.
"""

from __future__ import annotations

from typing import Sequence

STRATEGIES = ("length_grouped", "random")
MEGA_BATCH_LIMIT = 50  # batches per sorted mega-batch, as in transformers' LengthGroupedSampler


def draw_order(lengths: Sequence[int], batch_size: int, strategy: str, generator) -> list[int]:
    """The epoch's example indices; its consecutive runs of batch_size are the batches (the last may be short,
    and stays last). The loop groups by optimizer step (micro-batch x accumulation) and cuts each step's examples
    into micro-batches, so a step holds the same examples however it is cut."""
    import torch

    if strategy not in STRATEGIES:
        raise ValueError(f"training.batching: unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
    permutation = torch.randperm(len(lengths), generator=generator).tolist()
    if strategy == "random":
        return permutation
    mega = batch_size * max(1, min(len(lengths) // (batch_size * 4), MEGA_BATCH_LIMIT))
    grouped = []
    for start in range(0, len(permutation), mega):  # sorted() is stable: ties keep the permutation's order
        grouped += sorted(permutation[start : start + mega], key=lambda index: -lengths[index])
    batches = [grouped[i : i + batch_size] for i in range(0, len(grouped), batch_size)]
    full = [batch for batch in batches if len(batch) == batch_size]
    short = [batch for batch in batches if len(batch) < batch_size]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return [index for batch in shuffled + short for index in batch]


def padded_tokens(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> int:
    """Token positions these micro-batches take once each is padded to its longest example."""
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
