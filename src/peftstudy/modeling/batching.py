"""Turning (input, reference) pairs into token batches, the same way for training and generation.

Decoder-only models see ``input + "\\n" + reference + eos`` with the loss on the
reference only; encoder-decoder models get the input in the encoder and the
reference as labels. Generation builds its prompts with the same function, so a
prompt can never differ between training and evaluation.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from peftstudy.modeling.families import is_decoder_only

PROMPT_SEPARATOR = "\n"
IGNORE_INDEX = -100


def encode_prompt(tokenizer, family: str, text: str, max_source_tokens: int) -> list[int]:
    if is_decoder_only(family):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_source_tokens]
        return ids + tokenizer(PROMPT_SEPARATOR, add_special_tokens=False)["input_ids"]
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if len(ids) > max_source_tokens:
        ids = ids[: max_source_tokens - 1] + [tokenizer.eos_token_id]
    return ids


def encode_target(tokenizer, family: str, text: str, max_target_tokens: int) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_target_tokens - 1]
    return ids + [tokenizer.eos_token_id]


def encode_pairs(records: Sequence[Mapping], tokenizer, family: str, max_source: int, max_target: int) -> list[dict]:
    encoded = []
    for record in records:
        prompt = encode_prompt(tokenizer, family, record["input"], max_source)
        target = encode_target(tokenizer, family, record["reference"], max_target)
        if is_decoder_only(family):
            encoded.append({"input_ids": prompt + target, "labels": [IGNORE_INDEX] * len(prompt) + target})
        else:
            encoded.append({"input_ids": prompt, "labels": target})
    return encoded


def collate(examples: Sequence[Mapping], pad_token_id: int, padding_side: str = "right"):
    """Pad a list of encoded examples into tensors (labels padded with IGNORE_INDEX)."""
    import torch

    def pad(rows, value):
        width = max(len(row) for row in rows)
        if padding_side == "left":
            return torch.tensor([[value] * (width - len(row)) + list(row) for row in rows])
        return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows])

    input_ids = [example["input_ids"] for example in examples]
    batch = {
        "input_ids": pad(input_ids, pad_token_id),
        "attention_mask": pad([[1] * len(ids) for ids in input_ids], 0),
    }
    if "token_type_ids" in examples[0]:  # BERT's segment ids (question / context): padded as segment 0
        batch["token_type_ids"] = pad([example["token_type_ids"] for example in examples], 0)
    if "labels" in examples[0]:
        batch["labels"] = pad([example["labels"] for example in examples], IGNORE_INDEX)
    return batch


def next_token_targets(labels):
    """Each position's target in a decoder-only model: the next token's label (IGNORE_INDEX after the last)."""
    import torch

    return torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)], dim=1)


def _logits_and_targets(model, batch, family: str):
    """The logits as (positions, vocabulary) and each position's target token (IGNORE_INDEX where none).

    A decoder-only model predicts the next token: its labels move one position left rather than its logits one
    right, so the logits stay one contiguous block (cross-entropy over a strided or class-second layout is
    several times slower on a CPU)."""

    labels = batch["labels"]
    if is_decoder_only(family):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = next_token_targets(labels)
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
    return logits.reshape(-1, logits.shape[-1]).float(), labels


def example_token_losses(model, batch, family: str):
    """Per example: (sum of its target tokens' cross-entropies, number of target tokens), from the logits.

    Computing the loss here rather than trusting ``model(labels=...)`` keeps it token-weighted across
    batches and identical for every method.
    """
    import torch.nn.functional as F

    logits, labels = _logits_and_targets(model, batch, family)
    losses = F.cross_entropy(logits, labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return losses.view(labels.shape).sum(dim=1), (labels != IGNORE_INDEX).sum(dim=1)


def batch_token_loss(model, batch, family: str, logits_from: int = 0):
    """The sum of the batch's target tokens' cross-entropies, as a tensor (what training needs, at the least cost).

    A decoder-only batch whose targets all start after position ``logits_from`` (its shortest prompt) needs no
    logits before it: the model computes the rest only (transformers' ``logits_to_keep``), which spares the
    output layer and the softmax over the vocabulary for every prompt token. The loss is the same."""
    import torch.nn.functional as F

    if not (logits_from > 0 and is_decoder_only(family) and keeps_logits(model)):
        logits, labels = _logits_and_targets(model, batch, family)
        return F.cross_entropy(logits, labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    labels = batch["labels"]
    keep = labels.shape[1] - logits_from
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    targets = next_token_targets(labels)[:, logits_from:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


_KEEPS_LOGITS: dict[type, bool] = {}


def keeps_logits(model) -> bool:
    """Whether the transformers model under any method's wrapper takes ``logits_to_keep``."""
    import inspect

    underlying = model.get_base_model() if hasattr(model, "get_base_model") else model
    underlying = getattr(underlying, "module", underlying)  # a DDP wrapper
    kind = type(underlying)
    if kind not in _KEEPS_LOGITS:
        _KEEPS_LOGITS[kind] = "logits_to_keep" in inspect.signature(underlying.forward).parameters
    return _KEEPS_LOGITS[kind]


def first_target(example) -> int:
    """The position of an encoded decoder-only example's first target token (its prompt's length)."""
    labels = example["labels"]
    return next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))


def summed_token_loss(model, batch, family: str):
    """(sum of token cross-entropies, number of target tokens) over the batch."""
    losses, counts = example_token_losses(model, batch, family)
    return losses.sum(), int(counts.sum())
