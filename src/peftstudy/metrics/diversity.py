"""Lexical and semantic diversity of a run's outputs (seed 000, section 5.7.3).

Tokens are lower-cased words (``\\w+`` runs, apostrophes kept inside words), the same for every metric,
counted over the run's outputs taken together unless said otherwise.
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

from peftstudy.metrics.quality import loaded_model, resolve_model

WORD = re.compile(r"\w+(?:'\w+)*")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def type_token_ratio(tokens: Sequence[str]) -> float:
    return len(set(tokens)) / len(tokens) if tokens else float("nan")


def moving_average_ttr(tokens: Sequence[str], window: int) -> float:
    """MATTR (Covington and McFall 2010): mean TTR of every window of `window` consecutive tokens.

    With fewer tokens than the window, the TTR of all of them."""
    if window < 1:
        raise ValueError(f"MATTR window must be positive, got {window}")
    if len(tokens) <= window:
        return type_token_ratio(tokens)
    counts = collections.Counter(tokens[:window])
    total = len(counts)
    for start in range(1, len(tokens) - window + 1):
        leaving, entering = tokens[start - 1], tokens[start + window - 1]
        counts[leaving] -= 1
        if counts[leaving] == 0:
            del counts[leaving]
        counts[entering] += 1
        total += len(counts)
    return total / ((len(tokens) - window + 1) * window)


def yules_k(tokens: Sequence[str]) -> float:
    """Yule's K = 10^4 (sum_i i^2 V_i - N) / N^2, V_i types occurring i times; lower means more diverse."""
    n = len(tokens)
    if n == 0:
        return float("nan")
    spectrum = collections.Counter(collections.Counter(tokens).values())
    return 1e4 * (sum(i * i * v for i, v in spectrum.items()) - n) / (n * n)


def distinct_n(outputs: Iterable[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of the outputs (Li et al. 2016)."""
    grams = [gram for tokens in outputs for gram in ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def novel_ngram_rate(outputs: Iterable[Sequence[str]], training_references: Iterable[Sequence[str]], n: int) -> float:
    """Share of the outputs' n-grams (with repetition) that never occur in the training references."""
    seen = {gram for tokens in training_references for gram in ngrams(tokens, n)}
    grams = [gram for tokens in outputs for gram in ngrams(tokens, n)]
    return sum(gram not in seen for gram in grams) / len(grams) if grams else float("nan")


def repetition_rate(outputs: Iterable[Sequence[str]], n: int) -> float:
    """Share of outputs that repeat some word n-gram: the automatic counterpart of the human
    'repetition/redundancy' error category."""
    outputs = list(outputs)
    if not outputs:
        return float("nan")
    return sum(len(set(ngrams(t, n))) < len(ngrams(t, n)) for t in outputs) / len(outputs)


def embed(texts: Sequence[str], model_name: str, batch_size: int = 64, revision: str | None = None):
    """L2-normalised sentence embeddings (sentence-transformers, batches of ``batch_size`` sorted by length, an
    order that depends on the texts alone), as a float64 numpy array; the model is loaded once per process."""
    import numpy as np
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = loaded_model("sentence-transformers", resolve_model(model_name, revision), device)
    vectors = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(vectors, dtype=np.float64)


def mean_pairwise_cosine(vectors) -> float:
    """Mean cosine similarity over all pairs i < j of (normalised) vectors; higher = less diverse."""
    import numpy as np

    n = len(vectors)
    if n < 2:
        return float("nan")
    similarity = vectors @ vectors.T
    return float(similarity[np.triu_indices(n, k=1)].mean())


def semantic_clusters(vectors, distance_threshold: float) -> dict:
    """Average-linkage clustering on cosine distance, cut at the threshold (scipy), and its silhouette
    (scikit-learn, cosine); returns the labels too, for the report's figure."""
    import numpy as np
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    if n < 2:
        return {"clusters": n, "clusters_per_output": float("nan"), "silhouette": float("nan"), "labels": [0] * n}
    distances = np.clip(pdist(vectors, metric="cosine"), 0.0, None)
    labels = fcluster(linkage(distances, method="average"), t=distance_threshold, criterion="distance")
    k = len(set(labels))
    silhouette = float(silhouette_score(vectors, labels, metric="cosine")) if 2 <= k <= n - 1 else float("nan")
    return {"clusters": k, "clusters_per_output": k / n, "silhouette": silhouette, "labels": [int(x) for x in labels]}
