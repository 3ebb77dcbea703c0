"""The epoch's data order: length-grouped micro-batches that still see every example once, fixed by the seed."""

import random

import pytest
import torch

from peftstudy.training.batches import draw_order, padded_tokens


def lengths_of(count=500, seed=0):
    rng = random.Random(seed)
    return [rng.randint(5, 120) for _ in range(count)]


def batches_of(order, size):
    return [order[i : i + size] for i in range(0, len(order), size)]


@pytest.mark.parametrize("strategy", ["length_grouped", "random"])
def test_every_example_once_and_the_seed_fixes_the_order(strategy):
    lengths = lengths_of()
    first = draw_order(lengths, 16, strategy, torch.Generator().manual_seed(1))
    assert sorted(first) == list(range(len(lengths)))
    assert draw_order(lengths, 16, strategy, torch.Generator().manual_seed(1)) == first
    assert draw_order(lengths, 16, strategy, torch.Generator().manual_seed(2)) != first


def test_length_grouping_cuts_the_padding_and_shuffles_the_batches():
    lengths, size = lengths_of(), 16
    grouped = batches_of(draw_order(lengths, size, "length_grouped", torch.Generator().manual_seed(1)), size)
    shuffled = batches_of(draw_order(lengths, size, "random", torch.Generator().manual_seed(1)), size)
    real = sum(lengths)
    # Uniform lengths 5..120: a random batch of 16 pads to ~113, sorting within mega-batches of 7 batches
    # (500 examples: transformers' rule, len // (4 x batch)) leaves batches spanning ~16 tokens of length.
    assert 1 - real / padded_tokens(shuffled, lengths) > 0.35
    assert 1 - real / padded_tokens(grouped, lengths) < 0.15
    # Within a batch, lengths are close; across batches, no curriculum (longest batches not all first).
    longest = [max(lengths[i] for i in batch) for batch in grouped[:-1]]
    assert longest != sorted(longest, reverse=True) and longest != sorted(longest)
    # Only the last batch may be short.
    assert all(len(batch) == size for batch in grouped[:-1]) and len(grouped[-1]) == len(lengths) % size


def test_padded_tokens_counts_each_batch_at_its_longest():
    assert padded_tokens([[0, 1], [2]], [3, 5, 4]) == 2 * 5 + 4


def test_an_unknown_strategy_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="training.batching: unknown strategy 'sorted'"):
        draw_order([1, 2], 1, "sorted", torch.Generator())
