"""The data card's measurements: what each dataset of a study holds, and what each model's tokenizer makes of it.

Sizes, word lengths, label balance and the leakage check come from the prepared data's manifest; the examples of
each evaluation split left in the pretraining corpus of a base pretrained here, from the base's record; token
lengths are counted with each model's own tokenizer on the training split, with its tokens per word and the share
of inputs and references longer than the study's token limits (those are truncated in training: a reader should
know).
report.data_card renders them."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from peftstudy import io
from peftstudy.data.decontaminate import EVALUATION_SPLITS, leakage_summary
from peftstudy.data.prepare import length_stats, words
from peftstudy.modeling.loading import base_location

COLUMNS = ["dataset", "split", "model", "rows", "input_words_mean", "input_words_p95", "reference_words_mean",
           "reference_words_p95", "input_tokens_mean", "input_tokens_p95", "reference_tokens_mean",
           "reference_tokens_p95", "tokens_per_word", "inputs_truncated_pct", "references_truncated_pct", "labels",
           "leaked_dropped", "in_pretraining"]


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def _labels(card: Mapping) -> str:
    labels = card.get("labels")
    return "; ".join(f"{label} {100 * value['share']:.0f}%" for label, value in labels.items()) if labels else ""


def _leaked(manifest: Mapping, split: str) -> str:
    """Evaluation items of this split found in the training split (exact + near duplicates) and dropped."""
    part = ((manifest.get("leakage") or {}).get("splits") or {}).get(split)
    if not part:
        return ""
    found = part.get("exact", 0) + part.get("near", 0)
    return str(part["dropped"]) if "dropped" in part else f"{found} (kept)" if found else "0"


def _in_pretraining(decontaminated: Mapping[str, Mapping | None], dataset: str, split: str, data_dir: Path) -> str:
    """Examples of an evaluation split still in the pretraining corpus of the study's bases built here ("0 of 60"),
    one value when every base agrees; empty for the training split and for bases from elsewhere (hub, package)."""
    if split not in EVALUATION_SPLITS:
        return ""
    cells = {model: leakage_summary(record, dataset, split, data_dir) for model, record in decontaminated.items()
             if record}
    if len(set(cells.values())) == 1:
        return next(iter(cells.values()))
    return "; ".join(f"{model}: {cell}" for model, cell in cells.items())


def data_card_rows(data_dirs: Mapping[str, str | Path], bases: Mapping[str, str | Path],
                   token_limits: Mapping[tuple[str, str], Mapping]) -> list[dict]:
    """One row per dataset split (words, labels, leakage) and one per (dataset, model) of the runs (tokens).

    token_limits: per (dataset, model) trained, its max_source_tokens and max_target_tokens."""
    from transformers import AutoTokenizer


    tokenizers = {}
    rows = []
    decontaminated = {model: (io.read_json(Path(base) / "base.json").get("corpus_manifest") or {}).get("decontamination")
                      for model, base in sorted(bases.items())}
    for dataset, data_dir in data_dirs.items():
        manifest = io.read_json(Path(data_dir) / "manifest.json")
        for split, card in (manifest.get("card") or {}).items():
            rows.append({"dataset": dataset, "split": split, "model": "", "rows": card["rows"],
                         "input_words_mean": card["input_words"]["mean"], "input_words_p95": card["input_words"]["p95"],
                         "reference_words_mean": card["reference_words"]["mean"],
                         "reference_words_p95": card["reference_words"]["p95"], "labels": _labels(card),
                         "leaked_dropped": _leaked(manifest, split),
                         "in_pretraining": _in_pretraining(decontaminated, dataset, split, Path(data_dir))})
        train = io.read_jsonl(Path(data_dir) / "train.jsonl")
        for model in sorted(m for d, m in token_limits if d == dataset):
            if model not in tokenizers:
                _, location, revision = base_location(bases[model])
                tokenizers[model] = AutoTokenizer.from_pretrained(location, revision=revision, trust_remote_code=False)
            inputs = token_lengths(tokenizers[model], [row["input"] for row in train])
            references = token_lengths(tokenizers[model], [row["reference"] for row in train])
            input_stats, reference_stats = length_stats(inputs), length_stats(references)
            limits = token_limits[(dataset, model)]
            # How finely the tokenizer cuts this text: a vocabulary learnt from too little English cuts a word in 4.
            text_words = sum(words(row["input"]) + words(row["reference"]) for row in train)
            rows.append({"dataset": dataset, "split": "train", "model": model, "rows": len(train),
                         "input_tokens_mean": input_stats["mean"], "input_tokens_p95": input_stats["p95"],
                         "reference_tokens_mean": reference_stats["mean"], "reference_tokens_p95": reference_stats["p95"],
                         "tokens_per_word": round((sum(inputs) + sum(references)) / text_words, 2) if text_words else "",
                         "inputs_truncated_pct": round(100 * sum(n > limits["max_source_tokens"] for n in inputs)
                                                       / max(len(inputs), 1), 1),
                         "references_truncated_pct": round(100 * sum(n >= limits["max_target_tokens"] for n in references)
                                                           / max(len(references), 1), 1)})
    return [{column: row.get(column, "") for column in COLUMNS} for row in rows]
