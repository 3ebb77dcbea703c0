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


def example_token_losses(model, batch, family: str):
    """Per example: (sum of its target tokens' cross-entropies, number of target tokens), from the logits.

    Computing the loss here rather than trusting ``model(labels=...)`` keeps it token-weighted across
    batches and identical for every method.
    """
    import torch.nn.functional as F

    labels = batch["labels"]
    if is_decoder_only(family):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = logits[:, :-1, :], labels[:, 1:]
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
    losses = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=IGNORE_INDEX, reduction="none")
    return losses.sum(dim=1), (labels != IGNORE_INDEX).sum(dim=1)


def summed_token_loss(model, batch, family: str):
    """(sum of token cross-entropies, number of target tokens) over the batch."""
    losses, counts = example_token_losses(model, batch, family)
    return losses.sum(), int(counts.sum())
