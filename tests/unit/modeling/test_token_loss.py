"""The training loss computed from the targets' positions only equals the loss over every position, per method."""

import pytest
import torch

from peftstudy import io
from peftstudy.methods import get_method
from peftstudy.modeling import heads
from peftstudy.modeling.batching import (
    batch_token_loss,
    collate,
    example_token_losses,
    keeps_logits,
)

# Every kind of decoder-only wrapper: none, peft's adapters, virtual tokens (prefix: the cache; prompt: inputs
# the peft patch strips), and AdapterHub's.
METHODS = [("full", None), ("lora", 4), ("ia3", None), ("prefix", None), ("prompt", None),
           ("adapter", 16), ("mam", 16)]


@pytest.mark.parametrize("kind, rank", METHODS)
def test_logits_from_the_shortest_prompt_on_give_the_same_loss(tiny_workspace, kind, rank):
    torch.manual_seed(0)
    method = get_method(kind)
    spec = {"kind": kind, "alpha": 8, "dropout": 0.0}
    model, tokenizer, _ = method.load_base_for_training(tiny_workspace / "base-gpt2", spec, "cpu")
    model = method.prepare(model, "gpt2", spec, rank, total_steps=10).eval()
    goal = heads.objective(None, tokenizer, "gpt2", {"max_source_tokens": 24, "max_target_tokens": 24})
    examples = goal.encode(io.read_jsonl(tiny_workspace / "data" / "validation.jsonl")[:8])
    # Prompts of different lengths: the shortest decides where logits start.
    examples[0] = {"input_ids": examples[0]["input_ids"][3:], "labels": examples[0]["labels"][3:]}
    starts = [goal.logits_from(example) for example in examples]
    assert min(starts) > 0 and len(set(starts)) > 1
    batch = collate(examples, tokenizer.pad_token_id)
    with torch.no_grad():
        everywhere = batch_token_loss(model, batch, "gpt2")
        from_prompt = batch_token_loss(model, batch, "gpt2", min(starts))
        per_example = example_token_losses(model, batch, "gpt2")[0].sum()
    assert keeps_logits(model)
    torch.testing.assert_close(from_prompt, everywhere, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(from_prompt, per_example.to(from_prompt.dtype), rtol=1e-6, atol=1e-5)
