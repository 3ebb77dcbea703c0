"""Batched generation on the test split, saved as JSONL (id, input, reference, prediction[, answers])."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping

from peftstudy import io, provenance
from peftstudy.methods import get_method
from peftstudy.metrics.efficiency import PhaseMonitor
from peftstudy.modeling import heads
from peftstudy.modeling.batching import (
    collate,
    encode_pairs,
    encode_prompt,
    example_token_losses,
    summed_token_loss,
)
from peftstudy.modeling.families import is_decoder_only
from peftstudy.modeling.loading import pick_device


def generate_predictions(model, tokenizer, family: str, records, settings: Mapping, max_source_tokens: int, device: str):
    """Greedy or beam decoding in batches; decoder-only prompts are left-padded so outputs line up."""
    import torch

    model.eval()
    predictions = []
    padding_side = "left" if is_decoder_only(family) else "right"
    batch_size = settings["batch_size"]
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        examples = [{"input_ids": encode_prompt(tokenizer, family, r["input"], max_source_tokens)} for r in chunk]
        batch = {k: v.to(device) for k, v in collate(examples, tokenizer.pad_token_id, padding_side).items()}
        with torch.no_grad():
            output = model.generate(
                **batch,
                max_new_tokens=settings["max_new_tokens"],
                num_beams=settings["num_beams"],
                no_repeat_ngram_size=settings.get("no_repeat_ngram_size", 0),
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        if is_decoder_only(family):
            output = output[:, batch["input_ids"].shape[1] :]
        predictions.extend(text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True))
    return predictions


def most_likely_labels(model, tokenizer, family: str, records, labels, max_source_tokens: int, max_target_tokens: int,
                       batch_size: int, device: str) -> list[str]:
    """Classification by the model's likelihood: each record's label is the one whose text (with EOS) has
    the highest total log-probability given the input (rank classification), so every prediction is a
    valid label, as with a classification head, yet the model is the same text-to-text model."""
    import torch

    candidates = [{"input": record["input"], "reference": label} for record in records for label in labels]
    examples = encode_pairs(candidates, tokenizer, family, max_source_tokens, max_target_tokens)
    model.eval()
    losses = []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], tokenizer.pad_token_id).items()}
            losses.extend(example_token_losses(model, batch, family)[0].tolist())
    width = len(labels)
    # min() keeps the first of tied labels: ties resolve in the declared label order, deterministically.
    return [labels[min(range(width), key=lambda j: losses[i * width + j])] for i in range(len(records))]


def reference_perplexity(model, tokenizer, family: str, records, max_source_tokens: int, max_target_tokens: int,
                         batch_size: int, device: str) -> tuple[float, int]:
    """exp(total NLL / total tokens) of the test references given their inputs, token-weighted over the
    split, with the same encoding (and truncation) as training; returns it and the token count."""
    import torch

    examples = encode_pairs(records, tokenizer, family, max_source_tokens, max_target_tokens)
    model.eval()
    total_loss, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], tokenizer.pad_token_id).items()}
            loss_sum, tokens = summed_token_loss(model, batch, family)
            total_loss += float(loss_sum)
            total_tokens += int(tokens)
    return (math.exp(total_loss / total_tokens) if total_tokens else float("nan")), total_tokens


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
) -> dict:
    """Generate for the test split (timed, with peak memory and energy), then the references' perplexity."""
    import torch

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
    record = {
        "examples": len(rows),
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
        "provenance": provenance.record("generate", {"method_spec": method_spec, "family": family, "generation": settings,
                                                     "max_source_tokens": max_source_tokens,
                                                     "max_target_tokens": max_target_tokens}, code=code, device=device),
    }
    io.write_json(record_path, record)
    return record
