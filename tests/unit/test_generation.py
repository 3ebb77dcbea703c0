"""Batched generation (peftstudy.generation): inputs sorted by length, left padding for decoder-only models, KV
cache; the same greedy outputs as one-at-a-time ``model.generate``, in the records' order; progress in the log.

The models are built from config with random weights of a large spread (GPT-2: initializer_range 0.5; T5:
initializer_factor 3): their next-token distributions are peaked and depend on every input token and position,
so the greedy margins lie far above float32 rounding, and a wrong position id or an attended pad token changes the
outputs (with generate()'s position ids from the attention mask removed, 5 of 12 GPT-2 outputs differ).
"""

from __future__ import annotations

import io as textio
import math
import random

import pytest
import torch
import transformers

from peftstudy import io
from peftstudy.generation import (
    NoRepeatNGrams,
    generate_predictions,
    generate_run,
    length_order,
    most_likely_labels,
    reference_perplexity,
)
from peftstudy.modeling.batching import encode_prompt
from peftstudy.modeling.families import is_decoder_only
from peftstudy.modeling.loading import train_tokenizer

WORDS = "red blue green small large old new fast slow warm cold bright dark soft hard quiet loud".split()
# Prompt lengths from 1 to 23 words (2 to ~46 tokens), some repeated: ties in the sort.
LENGTHS = [1, 20, 3, 12, 16, 2, 23, 7, 18, 5, 14, 9, 1, 22]
MAX_SOURCE = 48
SETTINGS = {"batch_size": 4, "max_new_tokens": 12, "num_beams": 1, "no_repeat_ngram_size": 3}


@pytest.fixture(scope="module")
def tokenizers():
    rng = random.Random(1)
    lines = [" ".join(rng.choices(WORDS + ["a", "and", "|"], k=10)) for _ in range(300)]
    return {family: train_tokenizer(family, lines, 300) for family in ("gpt2", "t5")}


def peaked_model(family, tokenizer):
    torch.manual_seed(0)
    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                         initializer_range=0.5, bos_token_id=tokenizer.eos_token_id, **ids)
        return transformers.GPT2LMHeadModel(config).eval()
    config = transformers.T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2,
                                   initializer_factor=3.0, decoder_start_token_id=tokenizer.pad_token_id, **ids)
    return transformers.T5ForConditionalGeneration(config).eval()


def records_of(lengths, seed=0):
    rng = random.Random(seed)
    return [{"id": f"{i:02d}", "input": " ".join(rng.choices(WORDS, k=n)), "reference": " ".join(rng.choices(WORDS, k=4))}
            for i, n in enumerate(lengths)]


def one_at_a_time(model, tokenizer, family, records, settings=SETTINGS):
    """The reference: one plain ``model.generate`` per input, no padding."""
    texts = []
    for record in records:
        ids = torch.tensor([encode_prompt(tokenizer, family, record["input"], MAX_SOURCE)])
        with torch.no_grad():
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    max_new_tokens=settings["max_new_tokens"], num_beams=settings["num_beams"],
                                    no_repeat_ngram_size=settings["no_repeat_ngram_size"], do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)[0]
        if is_decoder_only(family):
            output = output[ids.shape[1]:]
        texts.append(tokenizer.decode(output, skip_special_tokens=True).strip())
    return texts


def quiet():
    return textio.StringIO()


def test_length_order_is_longest_first_with_ties_in_file_order():
    assert length_order([3, 5, 3, 1, 5]) == [1, 4, 0, 2, 3]
    assert length_order([]) == []


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_vectorised_ngram_bans_equal_transformers(size):
    """NoRepeatNGrams bans what transformers' NoRepeatNGramLogitsProcessor bans, to the bit, at every length."""
    from transformers import NoRepeatNGramLogitsProcessor

    generator = torch.Generator().manual_seed(size)
    theirs, ours = NoRepeatNGramLogitsProcessor(size), NoRepeatNGrams(size)
    banned = 0
    for length in range(0, 24):
        ids = torch.randint(0, 3, (8, length), generator=generator)  # 3 token ids of 20: n-grams repeat often
        scores = torch.randn(8, 20, generator=generator)
        expected = theirs(ids, scores.clone())
        assert torch.equal(ours(ids, scores.clone()), expected), (size, length)
        banned += int(torch.isinf(expected).sum())
    assert banned > 20  # the bans were exercised


@pytest.mark.parametrize("family", ["gpt2", "t5"])
@pytest.mark.parametrize("beams", [1, 3])
def test_batched_sorted_decoding_equals_one_at_a_time_generate(tokenizers, family, beams):
    """Greedy (and beam) outputs of generate_predictions equal one plain model.generate per input."""
    tokenizer = tokenizers[family]
    model = peaked_model(family, tokenizer)
    records = records_of(LENGTHS)
    settings = {**SETTINGS, "num_beams": beams}
    lengths = [len(encode_prompt(tokenizer, family, r["input"], MAX_SOURCE)) for r in records]
    assert max(lengths) >= 8 * min(lengths) and len(set(lengths)) >= 10  # batches are really padded
    batched = generate_predictions(model, tokenizer, family, records, settings, MAX_SOURCE, "cpu", progress=quiet())
    single = one_at_a_time(model, tokenizer, family, records, settings)
    assert batched == single
    assert len(set(single)) >= len(records) - 3  # the outputs depend on the input: the comparison has teeth
    # One batch of everything (the widest padding: 1 word beside 23) gives the same too.
    whole = generate_predictions(model, tokenizer, family, records, {**settings, "batch_size": len(records)},
                                 MAX_SOURCE, "cpu", progress=quiet())
    assert whole == single


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_batches_run_longest_first_and_predictions_keep_the_records_order(tokenizers, family, monkeypatch):
    tokenizer = tokenizers[family]
    model = peaked_model(family, tokenizer)
    records = records_of(LENGTHS)
    lengths = [len(encode_prompt(tokenizer, family, r["input"], MAX_SOURCE)) for r in records]
    seen = []
    generate = model.generate

    def spy(**batch):
        seen.append((batch["attention_mask"].sum(dim=1).tolist(), batch.get("use_cache")))
        return generate(**batch)

    monkeypatch.setattr(model, "generate", spy)
    forward = generate_predictions(model, tokenizer, family, records, SETTINGS, MAX_SOURCE, "cpu", progress=quiet())
    assert [rows for rows, _ in seen] == [sorted(lengths, reverse=True)[i : i + 4] for i in range(0, len(lengths), 4)]
    assert all(use_cache is True for _, use_cache in seen)  # the KV cache is asked for explicitly
    backward = generate_predictions(model, tokenizer, family, records[::-1], SETTINGS, MAX_SOURCE, "cpu",
                                    progress=quiet())
    assert backward == forward[::-1]


def test_generation_logs_batches_done_of_total(tokenizers):
    tokenizer = tokenizers["gpt2"]
    model = peaked_model("gpt2", tokenizer)
    log = textio.StringIO()  # not a terminal: plain lines, as in a job's log file
    generate_predictions(model, tokenizer, "gpt2", records_of(LENGTHS), SETTINGS, MAX_SOURCE, "cpu", progress=log)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("generate: ") and "4 batch" in lines[0]  # the total, before the first batch
    assert lines[-1].startswith("generate: batch 4/4 (100%)")
    assert all(line.startswith("generate: ") and "\r" not in line for line in lines)


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_likelihood_and_perplexity_agree_with_unbatched_and_keep_the_order(tokenizers, family):
    tokenizer = tokenizers[family]
    model = peaked_model(family, tokenizer)
    records = records_of(LENGTHS, seed=2)
    labels = ["red", "dark", "quiet", "green"]
    batched = most_likely_labels(model, tokenizer, family, records, labels, MAX_SOURCE, 8, 5, "cpu", progress=quiet())
    assert batched == most_likely_labels(model, tokenizer, family, records, labels, MAX_SOURCE, 8, 1, "cpu",
                                         progress=quiet())
    assert most_likely_labels(model, tokenizer, family, records[::-1], labels, MAX_SOURCE, 8, 5, "cpu",
                              progress=quiet()) == batched[::-1]
    assert len(set(batched)) > 1
    log = textio.StringIO()
    perplexity, tokens = reference_perplexity(model, tokenizer, family, records, MAX_SOURCE, 8, 4, "cpu", progress=log)
    one_by_one, same_tokens = reference_perplexity(model, tokenizer, family, records, MAX_SOURCE, 8, 1, "cpu",
                                                   progress=quiet())
    assert tokens == same_tokens
    # The mean token loss agrees to float32 rounding (padding changes the shapes of the matrix products); these
    # models' losses are large (~24 nats), so exp() turns that into ~1e-5 of the perplexity. Measured: up to 1.8e-6
    # of the mean loss (T5, punctuation-split tokens); a misaligned or dropped token would move it by far more.
    assert math.log(perplexity) == pytest.approx(math.log(one_by_one), rel=1e-5)
    # The same batches give the same sum to the bit: fsum of per-example sums, whatever the order of addition.
    assert reference_perplexity(model, tokenizer, family, records, MAX_SOURCE, 8, 4, "cpu",
                                progress=quiet()) == (perplexity, tokens)
    assert log.getvalue().splitlines()[-1].startswith("perplexity: batch 4/4 (100%)")


def test_generate_run_logs_generation_progress_to_its_log(tiny_workspace, tmp_path, capsys):
    """A job's stderr is its log file (execution.zygote): generate_run writes its progress lines there."""
    base = tiny_workspace / "base-gpt2"
    record = generate_run({"kind": "full"}, "gpt2", base, base, tiny_workspace / "data/test.jsonl",
                          tmp_path / "generations.jsonl", tmp_path / "generation.json",
                          {**SETTINGS, "batch_size": 6}, 24, max_target_tokens=24)
    assert record["examples"] == 16
    log = capsys.readouterr().err.splitlines()
    assert any(line.startswith("generate: ") and "3 batch" in line for line in log)
    assert any(line.startswith("generate: batch 3/3 (100%)") for line in log)
    assert any(line.startswith("perplexity: batch 3/3 (100%)") for line in log)
    rows = io.read_jsonl(tmp_path / "generations.jsonl")
    assert [row["id"] for row in rows] == [r["id"] for r in io.read_jsonl(tiny_workspace / "data/test.jsonl")]
