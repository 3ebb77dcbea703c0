"""Shipped (snapshot) bases: built from a recipe with a held-out perplexity, verified before use, refused when stale."""

import math

import pytest

from peftstudy import io
from peftstudy.modeling.loading import load_base
from peftstudy.training import bases

ARCHITECTURE = {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64}
CORPUS_SPEC = {"source": "snapshot", "corpus": ["wordnet_glosses"], "decontaminate": {"datasets": ["toy"]}}


def spec_for(snapshot, steps=80):
    return {"name": "gpt2-toy", "family": "gpt2", "source": "snapshot", "snapshot": str(snapshot),
            "architecture": ARCHITECTURE, "tokenizer": {"vocab_size": 120},
            "pretraining": {"corpus": "english", "steps": steps, "batch_size": 4, "sequence_tokens": 16, "seed": 0},
            "corpus_spec": CORPUS_SPEC}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("snapshot")
    corpus = root / "english.txt"
    corpus.write_text("".join(f"line {i} of some english text with words {i % 7} and more\n" for i in range(300)))
    io.write_json(root / "english.manifest.json", {"corpus": ["wordnet_glosses"], "counts": {"lines": 300},
                                                   "decontamination": {"lines_removed": 3, "datasets": {}}})
    snapshot = root / "bases" / "gpt2-toy"
    manifest = bases.build_snapshot_base(spec_for(snapshot), corpus, snapshot)
    again = bases.build_snapshot_base(spec_for(snapshot), corpus, root / "again")
    return root, snapshot, manifest, again


def test_a_built_snapshot_lists_every_file_and_records_its_recipe_and_held_out_perplexity(built):
    root, snapshot, manifest, again = built
    listed = io.read_json(snapshot / bases.SNAPSHOT_MANIFEST)["files"]
    assert set(listed) == {path.name for path in snapshot.iterdir()} - {bases.SNAPSHOT_MANIFEST}
    assert all(io.sha256_file(snapshot / name) == digest for name, digest in listed.items())
    held = manifest["heldout"]
    assert held["lines"] == 30 and held["objective"] == "causal_lm"  # a tenth of 300 lines, unseen in training
    assert held["perplexity"] == pytest.approx(math.exp(held["loss"])) and 1 < held["perplexity"] < 60  # uniform: 257 (the byte alphabet and EOS)
    assert held["tokens_per_word"] > 1
    assert manifest["recipe"]["corpus"] == CORPUS_SPEC and manifest["recipe"]["pretraining"]["steps"] == 80
    assert manifest["corpus_manifest"]["decontamination"]["lines_removed"] == 3
    # same recipe, same machine: the same weights (the rebuild reproduces the shipped snapshot)
    assert again["sha256"] == manifest["sha256"]


def test_a_verified_snapshot_becomes_a_base_like_any_other(built, tmp_path):
    _, snapshot, manifest, _ = built
    record = bases.prepare_base(spec_for(snapshot), None, tmp_path / "base")
    assert record["source"] == "snapshot" and record["sha256"] == manifest["sha256"]
    assert record["heldout"] == manifest["heldout"] and record["built_on"] == manifest["provenance"]
    model, tokenizer, loaded = load_base(tmp_path / "base")
    assert loaded["snapshot"] == str(snapshot) and model.config.n_embd == 32 and len(tokenizer) == model.config.vocab_size


def test_an_edited_or_stale_snapshot_is_refused_naming_the_file_or_key(built, tmp_path):
    import shutil

    _, snapshot, _, _ = built
    copy = tmp_path / "gpt2-toy"
    shutil.copytree(snapshot, copy)
    with pytest.raises(ValueError, match=r"models\.gpt2-toy\.pretraining: differs from the recipe"):
        bases.prepare_base(spec_for(copy, steps=81), None, tmp_path / "stale")
    with pytest.raises(ValueError, match=r"models\.gpt2-toy\.corpus: differs"):
        bases.prepare_base({**spec_for(copy), "corpus_spec": {**CORPUS_SPEC, "seed": 1}}, None, tmp_path / "stale")
    (copy / "tokenizer.json").write_bytes((copy / "tokenizer.json").read_bytes() + b" ")
    with pytest.raises(ValueError, match=r"tokenizer\.json: sha256 .* does not match .*MANIFEST\.json"):
        bases.prepare_base(spec_for(copy), None, tmp_path / "edited")
    (copy / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json: listed in .*MANIFEST\.json but missing"):
        bases.prepare_base(spec_for(copy), None, tmp_path / "missing")
    assert not (tmp_path / "edited").exists() and not (tmp_path / "missing").exists()
