"""Diversity metrics against hand computations and the published all-MiniLM-L6-v2 similarities."""

import math

import numpy as np
import pytest

from peftstudy.metrics import diversity


def test_tokenisation_is_lower_case_words():
    assert diversity.words("The cat's HAT, the end.") == ["the", "cat's", "hat", "the", "end"]


def test_ttr_mattr_and_yules_k_by_hand():
    assert diversity.type_token_ratio(["a", "b", "a", "c"]) == 0.75
    assert diversity.moving_average_ttr(["a", "b", "a", "c"], 2) == 1.0
    assert diversity.moving_average_ttr(["a", "a", "b", "b"], 2) == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert diversity.moving_average_ttr(["a", "a", "b"], 10) == pytest.approx(2 / 3)  # shorter than the window
    # "a a b c": N = 4, V_1 = 2, V_2 = 1 -> K = 10^4 (1*2 + 4*1 - 4) / 16 = 1250.
    assert diversity.yules_k(["a", "a", "b", "c"]) == pytest.approx(1250.0)
    assert math.isnan(diversity.yules_k([]))


def test_distinct_novel_and_repetition_by_hand():
    outputs = [["a", "b", "a", "b"], ["c", "d"]]
    assert diversity.distinct_n(outputs, 1) == pytest.approx(4 / 6)
    assert diversity.distinct_n(outputs, 2) == pytest.approx(3 / 4)  # ab, ba, ab, cd
    training = [["a", "b", "x"], ["d", "e"]]
    assert diversity.novel_ngram_rate(outputs, training, 2) == pytest.approx(2 / 4)  # ba and cd are new
    assert diversity.repetition_rate(outputs, 2) == pytest.approx(0.5)  # "a b" repeats in the first


def test_embeddings_reproduce_the_published_minilm_similarities():
    # sentence-transformers' documentation (quickstart) for all-MiniLM-L6-v2: 0.6660, 0.1046, 0.1411.
    vectors = diversity.embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."],
                              "all-MiniLM-L6-v2")
    similarity = vectors @ vectors.T
    assert similarity[0, 1] == pytest.approx(0.6660, abs=5e-5)
    assert similarity[0, 2] == pytest.approx(0.1046, abs=5e-5)
    assert similarity[1, 2] == pytest.approx(0.1411, abs=5e-5)
    assert diversity.mean_pairwise_cosine(vectors) == pytest.approx((0.6660 + 0.1046 + 0.1411) / 3, abs=1e-4)


def silhouette_by_hand(vectors, labels):
    """Rousseeuw 1987 with cosine distance."""
    distance = 1 - vectors @ vectors.T
    scores = []
    for i, label in enumerate(labels):
        same = [distance[i, j] for j in range(len(labels)) if labels[j] == label and j != i]
        other = {}
        for j, other_label in enumerate(labels):
            if other_label != label:
                other.setdefault(other_label, []).append(distance[i, j])
        a, b = np.mean(same), min(np.mean(d) for d in other.values())
        scores.append((b - a) / max(a, b))
    return float(np.mean(scores))


def test_semantic_clusters_and_silhouette():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:2]
    vectors = np.vstack([centres[i // 3] + 0.05 * rng.standard_normal(4) for i in range(6)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    result = diversity.semantic_clusters(vectors, distance_threshold=0.5)
    assert result["clusters"] == 2 and result["labels"][:3] == [result["labels"][0]] * 3
    assert result["silhouette"] == pytest.approx(silhouette_by_hand(vectors, result["labels"]), abs=1e-9)
    one = diversity.semantic_clusters(vectors, distance_threshold=2.0)
    assert one["clusters"] == 1 and math.isnan(one["silhouette"])
