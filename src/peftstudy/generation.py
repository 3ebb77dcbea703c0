"""Batched generation on the test split, saved as JSONL (id, input, reference, prediction[, answers])."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping, TextIO

from peftstudy import checksums, io, provenance
from peftstudy.methods import get_method
from peftstudy.metrics.efficiency import PhaseMonitor
from peftstudy.modeling import heads
from peftstudy.modeling.batching import (
    collate,
    encode_pairs,
    encode_prompt,
    example_token_losses,
)
from peftstudy.modeling.families import is_decoder_only
from peftstudy.modeling.loading import pick_device
from peftstudy.progress import Progress


def length_order(lengths) -> list[int]:
    """Indices of the examples, longest first (ties in file order): batches of similar lengths waste little on
    padding, and the first batch is the largest, so running out of memory shows at once rather than at the end."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class NoRepeatNGrams:
    """transformers' ``NoRepeatNGramLogitsProcessor`` (``no_repeat_ngram_size``) as tensor operations.

    The same bans: a token is banned for a row when the row's last n-1 tokens, followed by it, already occur in the
    row's ``input_ids`` (for decoder-only models these include the prompt and its padding, as in transformers).
    transformers finds them with Python dicts over every row's whole sequence at every step: with a batch of 96
    GPT-2 rows that took half of generation's time (tests/unit/test_generation.py checks the two agree)."""

    def __init__(self, size: int):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"no_repeat_ngram_size must be a positive integer, got {size!r}")
        self.size = size

    def __call__(self, input_ids, scores):
        import torch

        n, length = self.size, input_ids.shape[1]
        if length < n:  # no complete n-gram yet
            return scores
        windows = input_ids.unfold(1, n, 1)  # (rows, length - n + 1, n): every n-gram so far
        last = input_ids[:, length - (n - 1):]  # the n-1 tokens an n-gram now would start with
        seen = (windows[:, :, :-1] == last[:, None, :]).all(dim=-1)  # (no early exit on none: a GPU sync)
        vocabulary = scores.shape[1]
        banned = torch.zeros(scores.shape[0], vocabulary + 1, dtype=torch.bool, device=scores.device)
        banned.scatter_(1, torch.where(seen, windows[:, :, -1], vocabulary), True)  # unseen n-grams: a spare column
        return scores.masked_fill(banned[:, :vocabulary], -float("inf"))


def generate_predictions(model, tokenizer, family: str, records, settings: Mapping, max_source_tokens: int, device: str,
                         *, progress: TextIO | None = None) -> list[str]:
    """Greedy or beam decoding in batches of similar prompt lengths (longest first), with the KV cache and
    vectorised n-gram bans (NoRepeatNGrams); the predictions come back in the records' order.

    Decoder-only prompts are left-padded: generate() derives GPT-2's position ids from the attention mask
    (cumsum - 1), so a padded prompt sees the positions it would see alone; encoder-decoder inputs are
    right-padded and masked in the encoder and the cross-attention. Greedy outputs then equal one-at-a-time
    ``model.generate`` up to float rounding in the padded matrix products (tests/unit/test_generation.py).
    Progress (batches done / total) goes to ``progress`` (default: stderr, a job's log)."""
    import torch
    from transformers import LogitsProcessorList

    model.eval()
    padding_side = "left" if is_decoder_only(family) else "right"
    prompts = [encode_prompt(tokenizer, family, r["input"], max_source_tokens) for r in records]
    predictions: list[str | None] = [None] * len(records)
    batches = _batches(length_order([len(p) for p in prompts]), settings["batch_size"])
    ngram = settings.get("no_repeat_ngram_size", 0)
    processors = LogitsProcessorList([NoRepeatNGrams(ngram)] if ngram else [])
    with Progress(len(batches), "generate", unit="batch", stream=progress) as shown, torch.no_grad():
        for indices in batches:
            examples = [{"input_ids": prompts[i]} for i in indices]
            batch = {k: v.to(device) for k, v in collate(examples, tokenizer.pad_token_id, padding_side).items()}
            output = model.generate(
                **batch,
                max_new_tokens=settings["max_new_tokens"],
                num_beams=settings["num_beams"],
                no_repeat_ngram_size=0,  # the same bans, by the processor above
                logits_processor=processors,
                do_sample=False,
                use_cache=True,  # the default of every supported family, stated: each step feeds one new token
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            if is_decoder_only(family):
                output = output[:, batch["input_ids"].shape[1] :]
            for i, text in zip(indices, tokenizer.batch_decode(output, skip_special_tokens=True)):
                predictions[i] = text.strip()
            shown.update(1)
    return predictions


def _per_example_losses(model, tokenizer, family: str, examples, batch_size: int, device: str, what: str,
                        progress: TextIO | None) -> tuple[list[float], list[int]]:
    """(summed token loss, token count) of every example, in the examples' order, batched longest first."""
    import torch

    model.eval()
    losses: list[float] = [0.0] * len(examples)
    counts: list[int] = [0] * len(examples)
    batches = _batches(length_order([len(e["input_ids"]) for e in examples]), batch_size)
    with Progress(len(batches), what, unit="batch", stream=progress) as shown, torch.no_grad():
        for indices in batches:
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in indices], tokenizer.pad_token_id).items()}
            batch_losses, batch_counts = example_token_losses(model, batch, family)
            for i, loss, count in zip(indices, batch_losses.tolist(), batch_counts.tolist()):
                losses[i], counts[i] = loss, count
            shown.update(1)
    return losses, counts


def most_likely_labels(model, tokenizer, family: str, records, labels, max_source_tokens: int, max_target_tokens: int,
                       batch_size: int, device: str, *, progress: TextIO | None = None) -> list[str]:
    """Classification by the model's likelihood: each record's label is the one whose text (with EOS) has
    the highest total log-probability given the input (rank classification), so every prediction is a
    valid label, as with a classification head, yet the model is the same text-to-text model."""
    candidates = [{"input": record["input"], "reference": label} for record in records for label in labels]
    examples = encode_pairs(candidates, tokenizer, family, max_source_tokens, max_target_tokens)
    losses, _ = _per_example_losses(model, tokenizer, family, examples, batch_size, device, "label likelihood", progress)
    width = len(labels)
    # min() keeps the first of tied labels: ties resolve in the declared label order, deterministically.
    return [labels[min(range(width), key=lambda j: losses[i * width + j])] for i in range(len(records))]


def reference_perplexity(model, tokenizer, family: str, records, max_source_tokens: int, max_target_tokens: int,
                         batch_size: int, device: str, *, progress: TextIO | None = None) -> tuple[float, int]:
    """exp(total NLL / total tokens) of the test references given their inputs, token-weighted over the
    split, with the same encoding (and truncation) as training; returns it and the token count.

    The total is math.fsum of the per-example sums (each a float32 sum over its tokens): exactly rounded, so it
    depends neither on the batch order nor on the batch size's grouping of the additions. Each example's own sum can
    still differ in its last bits with the padding of its batch (float32 matrix products of another shape)."""
    examples = encode_pairs(records, tokenizer, family, max_source_tokens, max_target_tokens)
    losses, counts = _per_example_losses(model, tokenizer, family, examples, batch_size, device, "perplexity", progress)
    total_loss, total_tokens = math.fsum(losses), sum(counts)
    return (math.exp(total_loss / total_tokens) if total_tokens else float("nan")), total_tokens


def portable_generation_config(settings: Mapping, tokenizer, family: str):
    """The study's decoding settings as a transformers GenerationConfig, so that plain ``model.generate`` decodes
    as the study did (generate_predictions applies the same settings; its n-gram ban is NoRepeatNGrams, which
    matches transformers' no_repeat_ngram_size)."""
    from transformers import GenerationConfig

    ngram = settings.get("no_repeat_ngram_size") or None
    extra = {} if is_decoder_only(family) else {"decoder_start_token_id": tokenizer.pad_token_id}  # T5's
    return GenerationConfig(max_new_tokens=settings["max_new_tokens"], num_beams=settings["num_beams"],
                            do_sample=False, no_repeat_ngram_size=ngram, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id, **extra)


def write_generation_config(settings: Mapping, tokenizer, family: str, path: str | Path) -> str:
    """Write the portable GenerationConfig atomically, as its save_pretrained would; returns its sha256
    (generation.json seals it)."""
    io.write_text(path, portable_generation_config(settings, tokenizer, family).to_json_string(use_diff=True))
    return io.sha256_file(path)


def generate_run(
    method_spec: Mapping,
    family: str,
    base_dir: str | Path,
    weights_dir: str | Path,
    test_path: str | Path,
    generations_path: str | Path,
    record_path: str | Path,
    settings: Mapping,
    max_source_tokens: int,
    *,
    max_target_tokens: int | None = None,
    threads: int = 1,
    code: str | None = None,
    training_record_path: str | Path | None = None,
    generation_config_path: str | Path | None = None,
) -> dict:
    """Generate for the test split (timed, with peak memory and energy), then the references' perplexity; the
    decoding settings also go to ``generation_config_path`` (a GenerationConfig for plain transformers).

    A run whose train.json (training_record_path) records a divergence (on_divergence: record) has no weights:
    it gets an empty generations file and a record marked diverged (diverged_generation)."""
    import torch

    hashed = {"method_spec": method_spec, "family": family, "generation": settings,
              "max_source_tokens": max_source_tokens, "max_target_tokens": max_target_tokens}
    if training_record_path is not None:
        diverged = io.read_json(training_record_path).get("diverged")
        if diverged is not None:
            portable = None
            if generation_config_path is not None:
                from peftstudy.modeling.loading import base_location, load_tokenizer

                _, location, revision = base_location(base_dir)
                portable = write_generation_config(settings, load_tokenizer(location, revision), family,
                                                   generation_config_path)
            return diverged_generation(diverged, generations_path, record_path, settings, hashed, code=code,
                                       generation_config_sha256=portable)
    torch.set_num_threads(threads)
    device = pick_device()
    method = get_method(method_spec["kind"])
    model, tokenizer, _ = method.load_for_inference(Path(base_dir), Path(weights_dir), device, method_spec)
    records = io.read_jsonl(test_path)
    if settings.get("max_test_examples"):
        records = records[: settings["max_test_examples"]]
    head = method_spec.get("head") or {"kind": "lm"}
    by_likelihood = (head["kind"] == "lm" and bool(settings.get("labels"))
                     and settings.get("classification_decoding", "likelihood") == "likelihood")
    if by_likelihood and max_target_tokens is None:
        raise ValueError("classification by label likelihood needs max_target_tokens (the labels' encoding)")
    training_limits = {"max_source_tokens": max_source_tokens, "max_target_tokens": max_target_tokens}
    goal = heads.objective(head, tokenizer, family, training_limits)
    with PhaseMonitor(device) as monitor:
        started = time.perf_counter()
        if head["kind"] == "classifier":
            predictions = heads.classify(model, goal, records, head["labels"], tokenizer.pad_token_id,
                                         settings["batch_size"], device)
        elif head["kind"] == "span":
            predictions = heads.extract_answers(model, goal, records, tokenizer.pad_token_id, settings["batch_size"],
                                                device)
        elif by_likelihood:
            predictions = most_likely_labels(model, tokenizer, family, records, list(settings["labels"]),
                                             max_source_tokens, max_target_tokens, settings["batch_size"], device)
        else:
            predictions = generate_predictions(model, tokenizer, family, records, settings, max_source_tokens, device)
        elapsed = time.perf_counter() - started
    if head["kind"] == "lm":
        perplexity, perplexity_tokens = (None, 0) if max_target_tokens is None else reference_perplexity(
            model, tokenizer, family, records, max_source_tokens, max_target_tokens, settings["batch_size"], device)
        test_loss = None if perplexity is None else math.log(perplexity)
    else:  # a head's loss is over labels or span ends, not tokens: no perplexity
        perplexity, perplexity_tokens = None, 0
        test_loss = heads.mean_loss(model, goal, goal.encode(records), tokenizer.pad_token_id, settings["batch_size"],
                                    device)
    # Extractive QA keeps every gold answer: SQuAD's scores take the best match over them.
    rows = [
        {"id": r["id"], "input": r["input"], "reference": r["reference"], "prediction": p,
         **({"answers": r["answers"]} if "answers" in r else {})}
        for r, p in zip(records, predictions)
    ]
    io.write_jsonl(generations_path, rows)
    portable = None if generation_config_path is None else write_generation_config(
        settings, tokenizer, family, generation_config_path)
    record = {
        "examples": len(rows),
        "generations_sha256": io.sha256_file(generations_path),
        "generation_config_sha256": portable,
        "generation_time_s": elapsed,
        "inference_ms_per_example": 1000 * elapsed / max(len(rows), 1),
        "examples_per_s": len(rows) / elapsed if elapsed > 0 else None,
        "perplexity": perplexity,
        "perplexity_tokens": perplexity_tokens,
        "test_loss": test_loss,  # the training objective's mean on the test split (seed 004 reports it)
        "efficiency": monitor.record(),
        "settings": dict(settings),
        "decoding": {"classifier": "classifier_argmax", "span": "best_span"}.get(
            head["kind"], "label_likelihood" if by_likelihood else "generate"),
        # hashed_settings: what settings_hash is the hash of (`peftstudy verify` recomputes it).
        "provenance": provenance.record("generate", hashed, code=code, device=device, hashed_settings=hashed),
    }
    record = checksums.sealed(record)
    io.write_json(record_path, record)
    return record


def diverged_generation(diverged: Mapping, generations_path: str | Path, record_path: str | Path, settings: Mapping,
                        hashed: Mapping, *, code: str | None = None,
                        generation_config_sha256: str | None = None) -> dict:
    """A diverged run's generation.json: its train.json's ``diverged`` block, no examples, and an empty
    generations file (the rule's output; its checksum recorded, as `peftstudy verify` checks it)."""
    io.write_jsonl(generations_path, [])
    record = checksums.sealed({
        "diverged": dict(diverged),
        "examples": 0,
        "generations_sha256": io.sha256_file(generations_path),
        "generation_config_sha256": generation_config_sha256,
        "settings": dict(settings),
        "provenance": provenance.record("generate", hashed, code=code, hashed_settings=hashed),
    })
    io.write_json(record_path, record)
    return record
