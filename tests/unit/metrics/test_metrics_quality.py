"""Quality metrics against independent references: hand computations, published values, and a second
implementation of BERTScore written here from its definition."""

import pytest

from peftstudy.metrics import quality


def test_rouge_1_2_l_by_hand():
    # prediction "the cat sat", reference "the cat sat down": unigrams 3/3 and 3/4; bigrams 2/2 and 2/3.
    values, signatures = quality.rouge(["the cat sat"], ["the cat sat down"])
    f1 = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    assert values["rouge1"] == pytest.approx(100 * f1(1, 3 / 4))
    assert values["rouge2"] == pytest.approx(100 * f1(1, 2 / 3))
    assert values["rouge_l"] == pytest.approx(100 * f1(1, 3 / 4))
    assert values["rouge_lsum"] == pytest.approx(values["rouge_l"])  # one line: Lsum = L
    assert signatures["rouge2"] == "rouge-score|rouge2|fmeasure|stemmer:porter|mean"


def test_rouge_lsum_splits_sentences_on_newlines():
    # Lsum takes the union LCS per reference sentence: here each line matches one reference line exactly.
    values, _ = quality.rouge(["b c\na d"], ["a d\nb c"])
    assert values["rouge_lsum"] == pytest.approx(100.0)
    assert values["rouge_l"] < 100.0


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory, repository):
    from peftstudy.data.wordnet import prepare_wordnet

    root = tmp_path_factory.mktemp("nltk") / "data"
    prepare_wordnet(repository / "data/snapshots/wordnet_lexnames.tsv", root)
    return quality.wordnet_reader(root)


def test_meteor_reproduces_nltk_documented_example(wordnet):
    # nltk.translate.meteor_score's docstring: hypothesis1 vs reference1 scores 0.6944.
    hypothesis = "It is a guide to action which ensures that the military always obeys the commands of the party"
    reference = "It is a guide to action that ensures that the military will forever heed Party commands"
    value, extra = quality.meteor([hypothesis], [reference], wordnet)
    assert round(value / 100, 4) == 0.6944
    assert "wordnet:3.0" in extra["signature"]


def test_meteor_matches_synonyms_through_wordnet(wordnet):
    # taxi ~ cab share a WordNet synset; nltk matches synonyms after Porter stemming, so the pair is one
    # that stemming leaves intact ("automobile" -> "automobil" would find no synset).
    synonym, _ = quality.meteor(["the cab is here"], ["the taxi is here"], wordnet)
    exact, _ = quality.meteor(["the taxi is here"], ["the taxi is here"], wordnet)
    unrelated, _ = quality.meteor(["the banana is here"], ["the taxi is here"], wordnet)
    assert synonym == exact > unrelated


def test_prepared_wordnet_lexnames_have_the_syntactic_category(tmp_path, repository):
    from peftstudy.data.wordnet import prepare_wordnet

    manifest = prepare_wordnet(repository / "data/snapshots/wordnet_lexnames.tsv", tmp_path / "nltk")
    lines = (tmp_path / "nltk/corpora/wordnet/lexnames").read_text().splitlines()
    assert len(lines) == 45 and lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1"
    assert set(manifest["files"]) >= {"lexnames", "data.noun", "index.sense"}


def test_prepare_wordnet_names_the_missing_packages(tmp_path, repository):
    from peftstudy.data.wordnet import prepare_wordnet

    with pytest.raises(FileNotFoundError, match="wordnet-base and wordnet-sense-index"):
        prepare_wordnet(repository / "data/snapshots/wordnet_lexnames.tsv", tmp_path / "out", source=tmp_path)
    assert not (tmp_path / "out").exists()


def bertscore_by_definition(candidate, reference, layer=6):
    """Zhang et al. 2020: greedy cosine matching of contextual token embeddings; as in the authors' code,
    [CLS]/[SEP] get zero weight in the averages but stay candidates for the matching."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = quality.resolve_model(quality.OFFLINE_MINILM)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)

    def embeddings(text):
        encoded = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**encoded, output_hidden_states=True).hidden_states[layer][0]
        return torch.nn.functional.normalize(hidden, dim=-1)

    c, r = embeddings(candidate), embeddings(reference)
    similarity = c @ r.T
    precision = similarity.max(dim=1).values[1:-1].mean().item()
    recall = similarity.max(dim=0).values[1:-1].mean().item()
    return precision, recall, 2 * precision * recall / (precision + recall)


def test_bertscore_equals_its_definition_on_the_offline_minilm():
    settings = {"model": "all-MiniLM-L6-v2", "num_layers": 6, "rescale_with_baseline": False}
    candidate, reference = "a small dog runs across the park", "the little dog is running in a park"
    values, signatures = quality.bertscore([candidate], [reference], settings)
    expected = bertscore_by_definition(candidate, reference)
    assert (values["bertscore_precision"], values["bertscore_recall"], values["bertscore_f1"]) == pytest.approx(expected, abs=1e-5)
    assert signatures["bertscore_f1"] == "bert-score-0.3.13|all-MiniLM-L6-v2|L6|no-idf|raw"
    same, _ = quality.bertscore([reference], [reference], settings)
    assert same["bertscore_f1"] == pytest.approx(1.0, abs=1e-5)


def test_classification_metrics_by_hand():
    labels = ["pos", "pos", "neg", "neg", "neg"]
    predictions = ["pos", "neg", "neg", "neg", "pos"]
    values = quality.classification(predictions, labels)
    assert values["accuracy"] == pytest.approx(3 / 5)
    # pos: P = 1/2, R = 1/2; neg: P = 2/3, R = 2/3.
    assert values["precision[pos]"] == pytest.approx(0.5) and values["recall[neg]"] == pytest.approx(2 / 3)
    assert values["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_squad_exact_match_and_f1_follow_the_official_normalisation():
    exact, f1 = quality.squad_exact_f1("The Denver Broncos!", ["Denver Broncos", "Broncos"])
    assert (exact, f1) == (1.0, 1.0)  # articles and punctuation are ignored
    exact, f1 = quality.squad_exact_f1("Denver Broncos team", ["Denver Broncos"])
    assert exact == 0.0 and f1 == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert quality.squad(["a", "Paris"], [["b"], ["paris"]]) == {"exact_match": 50.0, "squad_f1": 50.0}


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_perplexity_is_the_exponentiated_token_loss_of_transformers(tiny_workspace, family):
    """One example: exp of transformers' own mean label loss; several: token-weighted, not example-weighted."""
    import math

    import torch

    from peftstudy import io
    from peftstudy.generation import reference_perplexity
    from peftstudy.modeling.batching import collate, encode_pairs
    from peftstudy.modeling.loading import load_base

    model, tokenizer, _ = load_base(tiny_workspace / f"base-{family}")
    model.eval()
    records = io.read_jsonl(tiny_workspace / "data/test.jsonl")[:5]
    losses, counts = [], []
    for record in records:
        batch = collate(encode_pairs([record], tokenizer, family, 24, 24), tokenizer.pad_token_id)
        with torch.no_grad():
            losses.append(model(**batch).loss.item())
        counts.append(int((batch["labels"] != -100).sum()))  # GPT-2's first label is a masked prompt token
        single, tokens = reference_perplexity(model, tokenizer, family, [record], 24, 24, 8, "cpu")
        assert single == pytest.approx(math.exp(losses[-1]), rel=1e-5)
    overall, tokens = reference_perplexity(model, tokenizer, family, records, 24, 24, 2, "cpu")
    assert tokens == sum(counts)
    expected = math.exp(sum(loss * count for loss, count in zip(losses, counts)) / sum(counts))
    assert overall == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_label_likelihood_picks_the_label_transformers_finds_most_probable(tiny_workspace, family):
    """Rank classification: the argmax over labels of the total log-probability of label + EOS, where
    transformers' own mean label loss times the label's token count gives each total."""
    import torch

    from peftstudy import io
    from peftstudy.generation import most_likely_labels
    from peftstudy.modeling.batching import collate, encode_pairs
    from peftstudy.modeling.loading import load_base

    model, tokenizer, _ = load_base(tiny_workspace / f"base-{family}")
    model.eval()
    records = io.read_jsonl(tiny_workspace / "data/test.jsonl")[:4]
    labels = ["good", "bad news", "neutral"]
    expected = []
    for record in records:
        totals = []
        for label in labels:
            batch = collate(encode_pairs([{"input": record["input"], "reference": label}], tokenizer, family, 24, 8),
                            tokenizer.pad_token_id)
            with torch.no_grad():
                loss = model(**batch).loss.item()
            totals.append(loss * int((batch["labels"] != -100).sum()))
        expected.append(labels[totals.index(min(totals))])
    assert most_likely_labels(model, tokenizer, family, records, labels, 24, 8, 5, "cpu") == expected


def test_bertscore_hub_model_is_pinned_and_rescaled_with_its_published_baseline(monkeypatch):
    """The hub download is replaced by the local MiniLM; rescaling must use roberta-large's baseline row."""
    import huggingface_hub
    import pandas as pd

    calls = []

    def fake_download(repo_id, revision, **kwargs):
        calls.append((repo_id, revision))
        return quality.resolve_model(quality.OFFLINE_MINILM)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    pairs = (["a small dog runs in the park"], ["the little dog is running in a park"])
    raw, _ = quality.bertscore(*pairs, {"model": "all-MiniLM-L6-v2", "num_layers": 6})
    settings = {"model": "FacebookAI/roberta-large", "revision": "abc123", "num_layers": 6, "rescale_with_baseline": True}
    rescaled, signatures = quality.bertscore(*pairs, settings)
    assert calls == [("FacebookAI/roberta-large", "abc123")]
    baseline = pd.read_csv(quality.baseline_file("roberta-large")).iloc[6]
    for name, column in (("bertscore_precision", "P"), ("bertscore_recall", "R"), ("bertscore_f1", "F")):
        b = baseline[column]
        assert rescaled[name] == pytest.approx((raw[name] - b) / (1 - b), abs=1e-5)
    assert signatures["bertscore_f1"].endswith("|FacebookAI/roberta-large@abc123|L6|no-idf|rescaled")


def test_unpinned_hub_model_and_missing_baseline_are_errors():
    with pytest.raises(ValueError, match="pin it with a revision"):
        quality.resolve_model("FacebookAI/roberta-large")
    with pytest.raises(ValueError, match="ships no rescaling baseline for 'all-MiniLM-L6-v2'"):
        quality.bertscore(["a"], ["a"], {"model": "all-MiniLM-L6-v2", "num_layers": 6, "rescale_with_baseline": True})


BERTSCORE_IN_A_PROCESS = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))  # what the job was given
from peftstudy.metrics import quality, scoring
scoring.pin_scoring_threads()
pairs = json.loads(sys.argv[2])
values, _ = quality.bertscore([p for p, _ in pairs], [r for _, r in pairs], scoring.METRIC_DEFAULTS["bertscore"])
print(json.dumps(values))
"""


@pytest.mark.slow
def test_bertscore_of_a_run_is_bit_identical_whatever_the_process_hash_seed_and_job_threads(repository):
    """bert-score orders sentences through a set, i.e. by Python's per-process hash seed; with batches of 64 a
    sentence's batch, hence its last bits, followed that (the SLURM test saw 0.5092530250549316 against
    0.5092530846595764 for one run). Batches formed in an order of the sentences alone (the default batch size,
    16), one thread and an exactly rounded mean make the value a function of the run's outputs alone."""
    import json
    import os
    import random
    import subprocess
    import sys

    rng = random.Random(0)
    words = "the package provides tools data library files for python with support and many formats".split()
    # 70 pairs, many of equal word counts (bert-score's sort key): more than one batch of 64 sentences.
    pairs = [(" ".join(rng.choices(words, k=rng.randint(3, 9))), " ".join(rng.choices(words, k=rng.randint(3, 9))))
             for _ in range(70)]
    results = set()
    for hash_seed, threads in (("1", 1), ("2", 2), ("3", 2)):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(repository / "src"), os.environ.get("PYTHONPATH")]))}
        out = subprocess.run([sys.executable, "-c", BERTSCORE_IN_A_PROCESS, str(threads), json.dumps(pairs)],
                             env=env, capture_output=True, text=True, check=True, timeout=300).stdout
        results.add(out.strip().splitlines()[-1])
    assert len(results) == 1, results


def test_per_example_scores_are_recorded_and_their_means_are_the_metrics():
    """What the comparison with the trivial baselines resamples (stats.against_baselines) must be what the metrics
    average: each example's score, in the outputs' order, for every metric that is a mean over examples."""
    import math

    from peftstudy.metrics import scoring

    rows = [{"id": "a", "prediction": "the cat sat", "reference": "the cat sat down"},
            {"id": "b", "prediction": "a dog", "reference": "the bird flew"}]
    scores = scoring.Scores()
    scoring.score_quality(scores, rows, "generation", scoring.metric_settings(None))
    record = scores.example_record(rows)
    assert record["ids"] == ["a", "b"]
    assert set(record["scores"]) >= {"rouge1", "rouge2", "rouge_l", "rouge_lsum", "bertscore_f1", "bertscore_precision"}
    for metric, values in record["scores"].items():
        assert scores.values[metric] == math.fsum(values) / 2
    assert record["scores"]["rouge_l"][1] == 0.0 and record["scores"]["rouge_l"][0] == pytest.approx(100 * 2 * 0.75 / 1.75)

    labels = scoring.Scores()
    scoring.score_quality(labels, [{"id": i, "prediction": p, "reference": r} for i, p, r in
                                   (("1", "pos", "pos"), ("2", "Neg ", "neg"), ("3", "pos", "neg"))],
                          "classification", {}, train_references=["pos", "neg"])
    assert labels.examples["accuracy"] == [100.0, 100.0, 0.0] and labels.values["accuracy"] == pytest.approx(200 / 3)

    spans = scoring.Scores()
    scoring.score_quality(spans, [{"id": "q", "prediction": "Paris", "answers": ["paris"], "reference": "paris"},
                                  {"id": "r", "prediction": "in Rome", "answers": ["Rome"], "reference": "Rome"}],
                          "extractive_qa", {})
    assert spans.examples["exact_match"] == [100.0, 0.0] and spans.examples["squad_f1"] == [100.0, pytest.approx(200 / 3)]


def test_forked_jobs_read_the_warm_wordnet_through_files_of_their_own(wordnet):
    """The zygote loads WordNet once and forks its jobs: an open data file would be one file offset for all of
    them. Two forked children that look up synsets at once (satellite adjectives read data.adj, and their head
    lookup seeks elsewhere in it), each first doing what a zygote child does, get what one process alone gets."""
    import collections
    import multiprocessing

    from peftstudy.execution import zygote

    words = ["big", "small", "red", "fast", "quiet", "bright", "cold", "old", "new", "large", "happy", "dark"] * 10
    expected = [[s.name() for s in wordnet.synsets(word)] for word in words]
    assert wordnet._data_file_map  # the parent holds its data files open, as the zygote's reader does

    def lookups(queue):
        # As in a zygote child: no synset cached yet (the zygote only loads the reader), so every lookup reads the
        # data files. Without own_open_files the two children fail here (AttributeError on a satellite's head).
        wordnet._synset_offset_cache = collections.defaultdict(dict)
        zygote.own_open_files()
        assert wordnet._data_file_map == {}
        queue.put([[s.name() for s in wordnet.synsets(word)] for word in words])

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=lookups, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    found = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert found == [expected, expected]
    assert [[s.name() for s in wordnet.synsets(word)] for word in words] == expected  # the parent's files unharmed
