"""The hub dataset registry: every entry's real loader (datasets.load_dataset) run through prepare_dataset on
a local fixture laid out like its hub repository (tests/fixtures/hub, PEFTSTUDY_HUB_MIRROR), the mapping
to study records checked against the fixture's raw rows read independently (pyarrow, gzip+json), plus
splits, leakage, the data card, provenance, the offline error and the study-config syntax."""

import collections
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest

from peftstudy.data import load_split, registry
from peftstudy.data.prepare import (
    SPLITS,
    data_card,
    dataset_task,
    find_leaks,
    length_stats,
    prepare_dataset,
)
from peftstudy.data.registry import REGISTRY, HubDatasetUnavailable, resolve
from peftstudy.study.config import load_schema

HUB = Path(__file__).resolve().parents[2] / "fixtures" / "hub"
REPO = Path(__file__).resolve().parents[3]
LABELS = ["negative", "positive"]
MRPC_LABELS = ["not_equivalent", "equivalent"]
RTE_LABELS = ["entailment", "not_entailment"]


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hf_datasets_cache")


@pytest.fixture
def mirror(monkeypatch, datasets_cache):
    """The fixtures as the hub mirror, and a private datasets cache (nothing written to ~/.cache)."""
    import datasets

    monkeypatch.setenv(registry.MIRROR_ENV, str(HUB))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(datasets_cache))
    return HUB


def prepare(name, tmp_path, **overrides):
    out = tmp_path / name
    manifest = prepare_dataset({"registry": name, "seed": 3, **overrides}, out, snapshot_dir=tmp_path)
    return manifest, {split: load_split(out, split) for split in SPLITS}


def raw_rows(hub_id, config=None):
    """{hub split: rows} read straight from the fixture files, in the order datasets reads them (only the
    config's folder when the repository keeps one per config, as nyu-mll/glue does)."""
    rows = collections.defaultdict(list)
    base = HUB / hub_id / config if config and (HUB / hub_id / config).is_dir() else HUB / hub_id
    for path in sorted(base.rglob("*")):
        if path.suffix == ".parquet":
            split = path.parent.name if path.parent.name in ("train", "validation", "test") else path.name.split("-")[0]
            rows[split] += pq.read_table(path).to_pylist()
        elif path.name.endswith(".jsonl.gz"):
            rows["train"] += [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    return rows


def collapse(text):
    return " ".join(text.split())


# What each entry's records must be, from a raw hub row (written out here, not taken from the registry).
EXPECTED = {
    "e2e_nlg": lambda r: (r["meaning_representation"], r["human_reference"]),
    "arxiv_abstracts": lambda r: (r["title"], r["abstract"]),
    "coco_karpathy": lambda r: (r["sentences"][0], r["sentences"][1]),
    "sst2": lambda r: (r["sentence"], LABELS[r["label"]]),
    "cnn_dailymail": lambda r: (r["article"] + " <sum>", r["highlights"]),
    "amazon_polarity": lambda r: (f"title: {r['title']} review: {r['content']}", LABELS[r["label"]]),
    "squad": lambda r: (f"question: {r['question']} context: {r['context']}", r["answers"]["text"][0]),
    "glue_mrpc": lambda r: (f"sentence 1: {r['sentence1']} sentence 2: {r['sentence2']}", MRPC_LABELS[r["label"]]),
    "glue_rte": lambda r: (f"sentence 1: {r['sentence1']} sentence 2: {r['sentence2']}", RTE_LABELS[r["label"]]),
}


def test_every_entry_has_a_fixture_and_an_expectation():
    assert set(EXPECTED) == set(REGISTRY)
    for entry in REGISTRY.values():
        assert (HUB / entry.hub_id).is_dir(), f"no fixture for {entry.name}: run tests/fixtures/hub/make_fixtures.py"
        # The fixture serves the hub's split names (sizes are the hub's documented ones, not the fixture's).
        assert set(raw_rows(entry.hub_id, entry.config_name)) == set(entry.hub_splits), entry.name
    total = sum(path.stat().st_size for path in HUB.rglob("*") if path.is_file() and path.suffix != ".py")
    assert total < 50_000


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_loads_and_prepares(name, mirror, tmp_path):
    entry = REGISTRY[name]
    manifest, splits = prepare(name, tmp_path)
    assert manifest["registry"] == name and manifest["task"] == entry.task == dataset_task({"registry": name})
    # Provenance: the revision asked for, whether it is a commit, and (a mirror) the files' sha256.
    hub = manifest["hub"]
    assert hub["hub_id"] == entry.hub_id and hub["revision"] == entry.revision and hub["loaded_from"] == "mirror"
    assert hub["pinned"] is entry.pinned and hub["resolved_commit"] is None
    for described in hub["mirror"]["files"]:
        assert described["sha256"] == hashlib.sha256((HUB / entry.hub_id / described["path"]).read_bytes()).hexdigest()
    raw = raw_rows(entry.hub_id, entry.config_name)
    assert hub["splits"] == {split: len(rows) for split, rows in raw.items()}
    # Fields mapped as the hub's columns say; ids say which hub split and row each record came from.
    for split in SPLITS:
        assert splits[split], f"{name}: empty {split} split"
        for record in splits[split]:
            hub_split, row = record["id"].rsplit("-", 1)
            text, reference = EXPECTED[name](raw[hub_split][int(row)])
            assert record["input"] == collapse(text) and record["reference"] == collapse(reference)
    ids = [record["id"] for split in SPLITS for record in splits[split]]
    assert len(ids) == len(set(ids)) == manifest["counts"]["kept"]
    # The data card: sizes and word-length statistics per split (label balance for classification).
    for split in SPLITS:
        card = manifest["card"][split]
        assert card["rows"] == len(splits[split]) == manifest["counts"][split]
        lengths = sorted(len(record["input"].split()) for record in splits[split])
        assert card["input_words"]["median"] == length_stats(lengths)["median"]
        assert card["input_words"]["p95"] <= lengths[-1]
        if entry.task == "classification":
            assert {label: value["count"] for label, value in card["labels"].items()} == manifest["labels"][split]


def test_sst2_keeps_the_hub_validation_as_test_and_carves_validation_from_train(mirror, tmp_path):
    manifest, splits = prepare("sst2", tmp_path)
    assert {record["id"].split("-")[0] for record in splits["test"]} == {"validation"}
    assert {record["id"].split("-")[0] for split in ("train", "validation") for record in splits[split]} == {"train"}
    assert manifest["dropped"]["unlabelled"] == 4  # the hub's test labels are hidden (-1)
    assert manifest["hub"]["unlabelled"] == {"test": 4}
    # A stratified 5% of each label (at least one) of the hub's train split.
    assert manifest["labels"]["validation"] == {"negative": 1, "positive": 1}
    assert all(record["reference"] in LABELS for split in SPLITS for record in splits[split])
    # The planted duplicate (other casing and punctuation spacing) is caught and dropped from test.
    leak = manifest["leakage"]["splits"]["test"]
    assert (leak["exact"], leak["near"], leak["dropped"]) == (1, 0, 1)
    assert leak["examples"][0]["id"] not in {record["id"] for record in splits["test"]}
    again, _ = prepare("sst2", tmp_path / "again")
    assert again["files"] == manifest["files"]  # same seed, same bytes


@pytest.mark.parametrize("name, label_names", [("glue_mrpc", MRPC_LABELS), ("glue_rte", RTE_LABELS)])
def test_glue_pairs_are_one_text_and_hidden_test_labels_are_dropped(name, label_names, mirror, tmp_path):
    manifest, splits = prepare(name, tmp_path)
    raw = raw_rows("nyu-mll/glue", REGISTRY[name].config_name)
    for split in SPLITS:
        for record in splits[split]:
            hub_split, row = record["id"].rsplit("-", 1)
            first, second = raw[hub_split][int(row)]["sentence1"], raw[hub_split][int(row)]["sentence2"]
            assert record["input"] == collapse(f"sentence 1: {first} sentence 2: {second}")
            assert record["pair"] == [collapse(first), collapse(second)]  # BERT's two segments
            assert record["input"].startswith("sentence 1: ") and " sentence 2: " in record["input"]
            assert record["reference"] in label_names
    # The hub's test labels are hidden (-1): every test row dropped as unlabelled, none of them kept.
    assert {row["label"] for row in raw["test"]} == {-1}
    assert manifest["hub"]["unlabelled"] == {"test": len(raw["test"])} == {"test": 4}
    assert manifest["dropped"]["unlabelled"] == 4
    kept = {record["id"].split("-")[0] for split in SPLITS for record in splits[split]}
    assert "test" not in kept
    # The hub's validation split is the study's test split; validation is a stratified 10% of the hub's train.
    assert {record["id"].split("-")[0] for record in splits["test"]} == {"validation"}
    assert {record["id"].split("-")[0] for split in ("train", "validation") for record in splits[split]} == {"train"}
    assert manifest["labels"]["validation"] == {label: 1 for label in label_names}
    # Both configs live in one repository: the other config's rows never come in.
    assert manifest["hub"]["splits"] == {"train": 12, "validation": 5, "test": 4}
    assert manifest["spec"]["config_name"] == REGISTRY[name].config_name


def test_squad_answers_align_and_articles_never_straddle_splits(mirror, tmp_path):
    manifest, splits = prepare("squad", tmp_path)
    assert manifest["windowing"] == {"max_length": 384, "stride": 128}
    assert {record["id"].split("-")[0] for record in splits["test"]} == {"validation"}
    titles = {split: {record["title"] for record in splits[split]} for split in SPLITS}
    assert not (titles["train"] & titles["validation"] or titles["train"] & titles["test"]
                or titles["validation"] & titles["test"])
    assert titles["validation"]  # a whole article carved from the hub's train split
    for split in SPLITS:
        for record in splits[split]:
            assert record["reference"] == record["answers"][0]
            assert record["input"] == collapse(f"question: {record['question']} context: {record['context']}")
            for text, start in zip(record["answers"], record["answer_start"], strict=True):
                assert record["context"][start: start + len(text)] == text
    assert {len(record["answers"]) for record in splits["test"]} == {3}  # every gold answer kept for scoring


def test_cnn_dailymail_prompt_and_planted_leaks(mirror, tmp_path):
    manifest, splits = prepare("cnn_dailymail", tmp_path)
    assert all(record["input"].endswith(" <sum>") for split in SPLITS for record in splits[split])
    assert {split: {r["id"].split("-")[0] for r in splits[split]} for split in SPLITS} == \
        {"train": {"train"}, "validation": {"validation"}, "test": {"test"}}
    leak = manifest["leakage"]["splits"]["test"]
    assert (leak["exact"], leak["near"], leak["dropped"]) == (1, 1, 2)
    kinds = {example["kind"]: example for example in leak["examples"]}
    assert kinds["near"]["jaccard"] >= 0.8 and kinds["exact"]["jaccard"] == 1.0
    assert manifest["counts"]["test"] == 2 and manifest["dropped"]["leaked_into_evaluation"] == 2
    reported, report_splits = prepare("cnn_dailymail", tmp_path / "report", leakage="report")
    assert len(report_splits["test"]) == 4 and reported["leakage"]["splits"]["test"]["near"] == 1
    with pytest.raises(ValueError, match=r"train/test leakage: test: 1 exact and 1 near"):
        prepare("cnn_dailymail", tmp_path / "fail", leakage="fail")


def test_amazon_polarity_is_pooled_and_split_stratified_70_15_15(mirror, tmp_path):
    manifest, splits = prepare("amazon_polarity", tmp_path)
    assert manifest["spec"]["split"] == {"train": 0.7, "validation": 0.15, "test": 0.15}
    assert manifest["labels"] == {"train": {"negative": 12, "positive": 12},
                                  "validation": {"negative": 2, "positive": 2}, "test": {"negative": 2, "positive": 2}}
    assert {record["id"].split("-")[0] for split in SPLITS for record in splits[split]} == {"train", "test"}
    other, other_splits = prepare("amazon_polarity", tmp_path / "other", seed=4)
    assert [r["id"] for r in other_splits["test"]] != [r["id"] for r in splits["test"]]  # the seed decides
    again, _ = prepare("amazon_polarity", tmp_path / "again")
    assert again["files"] == manifest["files"]


def test_subsampling_and_a_split_override(mirror, tmp_path):
    manifest, splits = prepare("e2e_nlg", tmp_path, max_examples=10)
    assert manifest["counts"]["kept"] == 10 and manifest["dropped"]["over_max_examples"] == 8
    assert manifest["dropped"]["duplicate_input"] == 1  # E2E: several references per input, one kept
    resplit, _ = prepare("sst2", tmp_path / "resplit", split={"train": 0.6, "validation": 0.2, "test": 0.2})
    assert "keep_hub_splits" not in resplit["spec"] and resplit["counts"]["test"] >= 5


def test_resolve_completes_a_registry_spec_and_guards_it():
    spec = resolve({"registry": "sst2", "max_examples": 100, "seed": 7})
    assert spec["hub_id"] == "stanfordnlp/sst2" and spec["labels"] == LABELS and spec["max_examples"] == 100
    assert spec["keep_hub_splits"] == {"train": ["train"], "test": ["validation"]} and spec["leakage"] == "drop"
    assert resolve(spec) == spec  # idempotent
    assert resolve({"registry": "sst2", "hub_id": "stanfordnlp/sst2"})["hub_id"] == "stanfordnlp/sst2"
    assert resolve({"registry": "cnn_dailymail"})["template"] == "{input} <sum>"
    assert REGISTRY["e2e_nlg"].spec()["max_examples"] == 100_000 and REGISTRY["squad"].spec()["group_by"] == "title"
    with pytest.raises(ValueError, match="'hub_id' comes from the registry"):
        resolve({"registry": "sst2", "hub_id": "someone/else"})
    with pytest.raises(ValueError, match="unknown key 'corpus'"):
        resolve({"registry": "sst2", "corpus": "foldoc"})
    with pytest.raises(ValueError, match="unknown registry dataset 'imdb'; known: amazon_polarity"):
        resolve({"registry": "imdb"})
    with pytest.raises(ValueError, match="labels \\['neutral'\\] are not among"):
        resolve({"registry": "sst2", "labels": ["neutral", "positive"]})
    with pytest.raises(ValueError, match="datasets.x: unknown registry"):
        registry.resolve_datasets({"x": {"registry": "nope"}})
    assert resolve({"source": "snapshot", "corpus": "foldoc"}) == {"source": "snapshot", "corpus": "foldoc"}


def test_revisions_say_whether_they_are_pinned():
    for entry in REGISTRY.values():
        assert entry.pinned == bool(registry.COMMIT.match(entry.revision))
        if not entry.pinned:
            assert entry.revision_note.startswith("unpinned")
    assert REGISTRY["sst2"].pinned and REGISTRY["squad"].pinned and not REGISTRY["e2e_nlg"].pinned


def test_the_study_schema_accepts_registry_datasets():
    item = load_schema()["properties"]["datasets"]["additionalProperties"]
    validator = jsonschema.Draft202012Validator(item)
    assert set(item["properties"]["registry"]["enum"]) == set(REGISTRY)
    assert not list(validator.iter_errors({"registry": "sst2", "max_examples": 20000, "seed": 42, "leakage": "fail"}))
    assert list(validator.iter_errors({"registry": "imdb"}))
    assert list(validator.iter_errors({"registry": "sst2", "source": "snapshot"}))
    assert list(validator.iter_errors({"max_examples": 5}))  # neither registry nor source
    assert not list(validator.iter_errors({"source": "snapshot", "corpus": "foldoc"}))


def test_offline_without_the_data_names_dataset_hub_id_revision_and_the_fix(tmp_path):
    """Real offline mode (set before datasets is imported, hence a subprocess) and an empty cache."""
    env = {key: value for key, value in os.environ.items() if key != registry.MIRROR_ENV}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])))
    code = ("import sys; from peftstudy.data.prepare import prepare_dataset\n"
            "try:\n    prepare_dataset({'registry': 'sst2'}, sys.argv[1], snapshot_dir=sys.argv[1])\n"
            "except Exception as error:\n    print(type(error).__name__, error)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sentiment")], env=env,
                            capture_output=True, text=True, timeout=120)
    message = result.stdout
    assert message.startswith("HubDatasetUnavailable dataset 'sentiment'"), result.stdout + result.stderr
    for needed in ("stanfordnlp/sst2", REGISTRY["sst2"].revision, "HF_HUB_OFFLINE=1",
                   f"--repo-type dataset stanfordnlp/sst2 --revision {REGISTRY['sst2'].revision}", registry.MIRROR_ENV):
        assert needed in message


def test_a_mirror_without_the_dataset_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv(registry.MIRROR_ENV, str(tmp_path))
    with pytest.raises(HubDatasetUnavailable, match=r"dataset 'captions' \(yerevann/coco-karpathy@[0-9a-f]{40}\).*holds no"):
        prepare_dataset({"registry": "coco_karpathy"}, tmp_path / "captions", snapshot_dir=tmp_path)


def test_a_class_label_that_disagrees_with_the_registry_is_an_error():
    class Table(list):
        features = {"label": type("ClassLabel", (), {"names": ["pos", "neg"]})()}

    with pytest.raises(ValueError, match="ClassLabel names \\['pos', 'neg'\\] differ"):
        registry.records_from_hub({"train": Table([{"sentence": "x", "label": 0}])}, REGISTRY["sst2"].spec(),
                                  "classification")


def test_resolved_commit_is_read_from_the_cache_path():
    commit = "0123456789abcdef0123456789abcdef01234567"

    class Table:
        cache_files = [{"filename": f"/cache/stanfordnlp___sst2/default/0.0.0/{commit}/sst2-train.arrow"}]

    assert registry.resolved_commit({"train": Table()}) == commit
    assert registry.resolved_commit({"train": [{"a": 1}]}) is None


def test_find_leaks_exact_near_and_not():
    base = ("the committee met on tuesday to discuss the new bridge over the river and agreed that the design "
            "should be revised before the council votes on the budget next spring after the public hearing")
    train = [base, "a completely different sentence about apples and pears in the orchard", "short one"]
    evaluation = [
        base.upper().replace(" the ", ", the "),  # exact once normalised
        base.replace("hearing", "meeting"),  # near: one word changed at the end
        base.replace("bridge", "tunnel").replace("council", "mayor").replace("budget", "plan"),  # too different
        "Short one!",  # a short text is one shingle: exact only
        "short two",
    ]
    leaks = {leak["eval"]: leak for leak in find_leaks(train, evaluation)}
    assert set(leaks) == {0, 1, 3}
    assert leaks[0]["kind"] == "exact" and leaks[3]["kind"] == "exact"
    assert leaks[1]["kind"] == "near" and leaks[1]["train"] == 0 and 0.8 <= leaks[1]["jaccard"] < 1
    # Long texts are compared by sketches: a copy with one word changed is still found.
    long_text = " ".join(f"w{i}" for i in range(400))
    assert find_leaks([long_text, base], [long_text.replace("w200", "x200")])[0]["kind"] == "near"


def test_length_statistics_and_card():
    assert length_stats(list(range(1, 21))) == {"mean": 10.5, "median": 10.5, "p95": 19}
    assert length_stats([]) == {"mean": None, "median": None, "p95": None}
    card = data_card({"train": [{"input": "a b c", "reference": "positive"}, {"input": "a", "reference": "negative"}],
                      "test": [{"input": "a b", "reference": "positive"}]}, "classification")
    assert card["train"]["labels"] == {"negative": {"count": 1, "share": 0.5}, "positive": {"count": 1, "share": 0.5}}
    assert card["test"]["input_words"] == {"mean": 2.0, "median": 2, "p95": 2}
