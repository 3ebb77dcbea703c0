"""Pretraining the demo's small base models on general English before any fine-tuning.

The study compares methods that *adapt a pretrained model*; from a random
initialisation PEFT methods barely learn, so the demo's bases are pretrained
briefly (causal LM for GPT-2 and LLaMA; span corruption mixed with prefix LM for T5) on a
corpus that is not the fine-tuning data.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping

from peftstudy import io, provenance
from peftstudy.modeling.batching import collate
from peftstudy.modeling.families import SCRATCH_FAMILIES
from peftstudy.modeling.loading import (
    T5_SENTINELS,
    build_model,
    count_parameters,
    pick_device,
    train_tokenizer,
)
from peftstudy.progress import Progress
from peftstudy.training.optimizer import make_optimizer, seed_everything

PRETRAINING_DEFAULTS = {"batch_size": 32, "sequence_tokens": 64, "learning_rate": 1e-3, "seed": 0, "heldout_lines": 2000}


def token_stream(tokenizer, lines) -> list[int]:
    ids: list[int] = []
    for line in lines:
        ids.extend(tokenizer(line, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    return ids


def span_corrupt(tokens: list[int], sentinel_ids: list[int], eos_id: int, generator, noise: float = 0.15, mean_span: int = 3):
    """T5's denoising objective: drop ~15 % of tokens in spans, each replaced by one sentinel."""
    import torch

    length = len(tokens)
    spans = max(1, round(length * noise / mean_span))
    starts = sorted(torch.randperm(max(length - mean_span, 1), generator=generator)[:spans].tolist())
    source, target, position = [], [], 0
    for index, start in enumerate(starts[: len(sentinel_ids)]):
        if start < position:
            continue
        source += tokens[position:start] + [sentinel_ids[index]]
        target += [sentinel_ids[index]] + tokens[start : start + mean_span]
        position = start + mean_span
    source += tokens[position:] + [eos_id]
    target += [eos_id]
    return source, target


def chunked(stream: list[int], width: int) -> list[list[int]]:
    return [stream[i : i + width] for i in range(0, len(stream) - width + 1, width)]


def tokens_per_word(tokenizer, lines: list[str]) -> float | None:
    """How finely the tokenizer cuts held-out English (about 1.3 for GPT-2's own 50k vocabulary)."""
    words = sum(len(line.split()) for line in lines)
    if not words:
        return None
    return round(sum(len(ids) for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]) / words, 3)


def heldout_loss(model, tokenizer, family: str, chunks: list[list[int]], device: str, batch_size: int = 32) -> float | None:
    """Mean token loss on held-out sequences (the model in eval mode, no gradient)."""
    import torch

    if not chunks:
        return None
    model.eval()
    total, count = 0.0, 0
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        for start in range(0, len(chunks), batch_size):
            part = chunks[start : start + batch_size]
            if family == "t5":
                half = len(part[0]) // 2
                examples = [{"input_ids": c[:half] + [eos], "labels": c[half:] + [eos]} for c in part]
                batch = {k: v.to(device) for k, v in collate(examples, tokenizer.pad_token_id).items()}
                tokens = sum(len(c) - half + 1 for c in part)
            else:
                ids = torch.tensor(part, device=device)
                batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
                tokens = sum(len(c) - 1 for c in part)
            total += model(**batch).loss.item() * tokens
            count += tokens
    model.train()
    return total / count


def corpus_manifest(corpus_path: str | Path) -> dict | None:
    path = Path(corpus_path).with_suffix(".manifest.json")
    if not path.is_file():
        return None
    manifest = io.read_json(path)
    return {key: manifest[key] for key in ("corpus", "spec", "counts", "dropped", "decontamination") if key in manifest}


def pretrain_base(spec: Mapping, corpus_path: str | Path, out_dir: str | Path, *, threads: int = 1,
                  finish=None) -> dict:
    """Train a tokenizer and a small model on the corpus; write both and base.json into out_dir.

    finish(directory, manifest): called inside the atomic write, after base.json (a snapshot adds its MANIFEST)."""
    import torch
    from transformers import get_scheduler


    torch.set_num_threads(threads)
    device = pick_device()
    family = spec["family"]
    if family not in SCRATCH_FAMILIES:  # before the corpus is read and a tokenizer trained on it
        raise ValueError(f"models.{spec.get('name')}.family: no scratch builder for family {family!r} (source scratch "
                         f"or snapshot builds only {', '.join(SCRATCH_FAMILIES)})")
    settings = {**PRETRAINING_DEFAULTS, **spec["pretraining"]}
    seed_everything(settings["seed"])
    lines = [line.strip() for line in Path(corpus_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{corpus_path}: the pretraining corpus is empty")
    # The corpus is shuffled (prepare_corpus): its last lines are held out, unseen by tokenizer and model.
    held_count = min(settings["heldout_lines"], len(lines) // 10)
    lines, held_out = (lines[:-held_count], lines[-held_count:]) if held_count else (lines, [])

    tokenizer = train_tokenizer(family, lines, spec["tokenizer"]["vocab_size"])
    model = build_model(family, spec["architecture"], tokenizer).to(device)
    width = settings["sequence_tokens"]
    chunks = chunked(token_stream(tokenizer, lines), width)
    if not chunks:
        raise ValueError(f"{corpus_path}: corpus shorter than one sequence of {width} tokens")
    sentinels = tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(T5_SENTINELS)]) if family == "t5" else []

    optimizer = make_optimizer(model, settings["learning_rate"], 0.01)
    steps = settings["steps"]
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=math.ceil(0.05 * steps), num_training_steps=steps)
    generator = torch.Generator().manual_seed(settings["seed"])
    losses = []
    model.train()
    started = time.perf_counter()
    progress = Progress(steps, "pretrain")
    for step in range(steps):
        picks = torch.randint(len(chunks), (settings["batch_size"],), generator=generator).tolist()
        if family == "t5":
            examples = []
            for pick in picks:
                tokens = chunks[pick]
                if torch.rand(1, generator=generator).item() < 0.5:
                    source, target = span_corrupt(tokens, sentinels, tokenizer.eos_token_id, generator)
                else:  # prefix LM: continue the text, so the decoder learns to write
                    cut = int(torch.randint(width // 4, 3 * width // 4, (1,), generator=generator))
                    source, target = tokens[:cut] + [tokenizer.eos_token_id], tokens[cut:] + [tokenizer.eos_token_id]
                examples.append({"input_ids": source, "labels": target})
            batch = {k: v.to(device) for k, v in collate(examples, tokenizer.pad_token_id).items()}
        else:
            ids = torch.tensor([chunks[pick] for pick in picks], device=device)
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        progress.update(1, loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    progress.close()
    elapsed = time.perf_counter() - started
    held_out_loss = heldout_loss(model, tokenizer, family, chunked(token_stream(tokenizer, held_out), width), device)

    _, total_parameters = count_parameters(model)
    manifest = {
        "model": spec.get("name"),
        "family": family,
        "source": "scratch",
        "architecture": dict(spec["architecture"]),
        "vocab_size": len(tokenizer),
        "total_parameters": total_parameters,
        "pretraining": settings,
        "pretraining_loss_first": sum(losses[:20]) / len(losses[:20]),
        "pretraining_loss_last": sum(losses[-20:]) / len(losses[-20:]),
        "pretraining_time_s": elapsed,
        "pretraining_tokens": steps * settings["batch_size"] * width,
        # Perplexity on the held-out lines: causal LM (GPT-2, LLaMA), or continuing the second half of each held-out
        # sequence from its first (T5's prefix LM); None when the corpus has too few lines to hold any out.
        "heldout": {"lines": len(held_out), "objective": "prefix_lm" if family == "t5" else "causal_lm",
                    "loss": held_out_loss, "perplexity": math.exp(held_out_loss) if held_out_loss is not None else None,
                    "tokens_per_word": tokens_per_word(tokenizer, held_out)},
        "corpus_sha256": io.sha256_file(corpus_path),
        "corpus_lines": len(lines),
        # What the corpus was built from and what was taken out of it (decontamination), from its manifest.
        "corpus_manifest": corpus_manifest(corpus_path),
        "provenance": provenance.record(device=device),
    }
    with io.atomic_directory(out_dir) as tmp_dir:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
        manifest["sha256"] = io.sha256_file(tmp_dir / "model.safetensors")
        io.write_json(tmp_dir / "base.json", manifest)
        if finish is not None:
            finish(tmp_dir, manifest)
    return manifest
