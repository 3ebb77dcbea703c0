"""Hub revisions are pinned commits: shipped studies and registries pin them, a moving ref is refused unless the
study says allow_unpinned (and the report then marks it)."""

import copy
import json

import pytest
import yaml

from peftstudy import study as studyconfig
from peftstudy.data import registry as data_registry
from peftstudy.modeling import registry as model_registry
from peftstudy.report import appendix
from peftstudy.study.config import StudyConfigError, unpinned_sources, validate_study

SHIPPED = ("config.yaml", "config/seed001.yaml", "config/seed004.yaml")
# No commit is known for these two (their revision_note says why): allowed, and marked in the report.
DOCUMENTED_UNPINNED = {"e2e_nlg", "arxiv_abstracts"}


@pytest.fixture
def paper(repository):
    return yaml.safe_load((repository / "config.yaml").read_text())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_pins_every_hub_revision(repository, name):
    study = studyconfig.load_study(repository / name)
    assert not study.get("allow_unpinned")
    hub = [spec for spec in [*study["datasets"].values(), *study["models"].values()]
           if spec.get("source") in ("hub", "warm_start") and not spec.get("package")]
    assert hub, name
    for key, revision, allowed in unpinned_sources(study):
        assert allowed and key.startswith("datasets."), (name, key, revision)
        assert study["datasets"][key.split(".")[1]]["registry"] in DOCUMENTED_UNPINNED
    bertscore = study.get("metrics", {}).get("bertscore", {})
    if bertscore.get("model", "all-MiniLM-L6-v2") != "all-MiniLM-L6-v2":
        assert data_registry.is_pinned(bertscore.get("revision")), name


def test_registries_pin_every_hub_entry_but_the_documented_two():
    unpinned = {name for name, entry in data_registry.REGISTRY.items() if not entry.pinned}
    assert unpinned == DOCUMENTED_UNPINNED
    assert {name for name, entry in data_registry.REGISTRY.items() if entry.allow_unpinned} == DOCUMENTED_UNPINNED
    for name, entry in model_registry.REGISTRY.items():
        if "package" not in entry:
            assert model_registry.is_pinned(entry.get("revision")), name
            assert model_registry.resolve({"registry": name})["revision"] == entry["revision"]


@pytest.mark.parametrize("where, key", [
    (lambda s: s["models"]["gpt2-small"], "models.gpt2-small.revision"),
    (lambda s: s["datasets"]["captions"], "datasets.captions.revision"),
    (lambda s: s["metrics"]["bertscore"], "metrics.bertscore.revision"),
])
@pytest.mark.parametrize("ref", ["main", "v1.0", "607a30d"])
def test_moving_ref_is_refused_naming_file_key_and_fix(paper, where, key, ref):
    raw = copy.deepcopy(paper)
    where(raw)["revision"] = ref
    with pytest.raises(StudyConfigError) as error:
        validate_study(raw, "config.yaml")
    message = str(error.value)
    assert message.startswith("config.yaml: ") and key in message and repr(ref) in message
    assert "allow_unpinned: true" in message and "40-hex commit" in message


def test_documented_entry_is_allowed_only_at_its_own_ref(paper):
    raw = copy.deepcopy(paper)
    raw["datasets"]["products"]["revision"] = "main"  # e2e_nlg's allowance covers refs/convert/parquet only
    with pytest.raises(StudyConfigError, match="datasets.products.revision"):
        validate_study(raw, "config.yaml")


def test_local_study_has_nothing_to_pin(repository):
    study = studyconfig.load_study(repository / "config" / "demo.yaml")
    assert unpinned_sources(study) == []


def test_allow_unpinned_is_accepted_and_the_report_marks_the_cells(paper, tmp_path):
    raw = copy.deepcopy(paper)
    raw["allow_unpinned"] = True
    raw["models"]["gpt2-small"]["revision"] = "main"
    raw["datasets"]["captions"]["revision"] = "main"
    raw["metrics"]["bertscore"]["revision"] = "main"
    study = validate_study(raw, "config.yaml")
    keys = {key for key, _, _ in unpinned_sources(study)}
    assert keys == {"models.gpt2-small.revision", "datasets.captions.revision", "datasets.products.revision",
                    "datasets.abstracts.revision", "metrics.bertscore.revision"}

    run = tmp_path / "run"
    run.mkdir()
    commit, data_commit = "1" * 40, "2" * 40
    (run / "train.json").write_text(json.dumps({"base": {"model": "gpt2-small", "resolved_revision": commit}}))
    commits = appendix.base_commits([str(run / "metrics.json")])
    assert commits == {"gpt2-small": commit}
    notes = appendix.unpinned_notes(study, {"captions": {"hub": {"resolved_commit": data_commit}}}, commits,
                                    {"bertscore": "3" * 40})  # scorers.json's, by metrics section
    by_name = {line.split(":")[0]: line for line in notes}
    assert f"FacebookAI/roberta-large@main {appendix.UNPINNED_MARK} resolved to {'3' * 40}" in by_name[
        "metrics.bertscore model"]
    assert f"openai-community/gpt2@main {appendix.UNPINNED_MARK} resolved to {commit}" in by_name["model gpt2-small"]
    assert f"yerevann/coco-karpathy@main {appendix.UNPINNED_MARK} resolved to {data_commit}" in by_name["dataset captions"]
    assert "a commit not recorded" in by_name["dataset abstracts"]
    assert "model gpt2-large" not in by_name  # pinned models are not marked
    assert appendix.hub_note("openai-community/gpt2-large", "a" * 40, None) == f"openai-community/gpt2-large@{'a' * 40}"


def test_first_fetch_verifies_a_pinned_model_commit(monkeypatch, tmp_path):
    """The registry's commits were not checked against the hub: a fetch that cannot resolve one, or serves another
    commit, fails saying where to look the commit up and where to set it."""
    import huggingface_hub
    from huggingface_hub.utils import RevisionNotFoundError

    from peftstudy.modeling.loading import fetch_hub_snapshot

    spec = model_registry.resolve({"registry": "gpt2"})

    def unknown(*args, **kwargs):
        raise RevisionNotFoundError("404 Revision Not Found")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unknown)
    with pytest.raises(RuntimeError) as error:
        fetch_hub_snapshot(spec)
    for needed in (spec["revision"], "https://huggingface.co/openai-community/gpt2/commits/main", "'gpt2'",
                   "models.<name>.revision"):
        assert needed in str(error.value)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(tmp_path / ("f" * 40)))
    with pytest.raises(RuntimeError, match=f"asked for commit {spec['revision']}, the hub cache served f{{40}}"):
        fetch_hub_snapshot(spec)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(tmp_path / spec["revision"]))
    assert fetch_hub_snapshot(spec).name == spec["revision"]


def test_first_load_verifies_a_pinned_dataset_commit(monkeypatch):
    import datasets

    monkeypatch.delenv(data_registry.MIRROR_ENV, raising=False)
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    spec = data_registry.resolve({"registry": "squad"})

    def unknown(*args, **kwargs):
        raise FileNotFoundError("Revision not found")

    monkeypatch.setattr(datasets, "load_dataset", unknown)
    with pytest.raises(data_registry.HubDatasetUnavailable) as error:
        data_registry.load(spec, "squad")
    for needed in (spec["revision"], "https://huggingface.co/datasets/rajpurkar/squad/commits/main", "'squad'"):
        assert needed in str(error.value)

    class Table:
        def __init__(self, commit):
            self.cache_files = [{"filename": f"/cache/rajpurkar___squad/plain_text/0.0.0/{commit}/squad-train.arrow"}]

        def __len__(self):
            return 1

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: {"train": Table("e" * 40)})
    with pytest.raises(data_registry.HubDatasetUnavailable, match=f"asked for commit {spec['revision']}, the hub served e{{40}}"):
        data_registry.load(spec, "squad")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: {"train": Table(spec["revision"])})
    assert data_registry.load(spec, "squad")[1]["resolved_commit"] == spec["revision"]
