"""The model registry: study entries filled from it, gated models refused without a token, resources."""

import pytest

from peftstudy.execution import cluster
from peftstudy.methods.base import ATTENTION_TARGETS
from peftstudy.modeling import registry
from peftstudy.study.config import StudyConfigError, read_yaml, validate_study


def test_every_entry_names_a_hub_model_of_a_family_with_method_targets():
    for name, entry in registry.REGISTRY.items():
        assert set(entry) <= set(registry.ENTRY_KEYS), name
        owner, _, repo = entry["hub_id"].partition("/")
        assert owner and repo, name
        assert entry["family"] in ATTENTION_TARGETS, name  # LoRA and adapters know where to go
        assert entry["dtype"] in ("float32", "bfloat16", "float16"), name
    assert registry.REGISTRY["llama-2-7b"]["gated"] is True


def test_a_study_entry_is_filled_from_the_registry_and_its_own_keys_win():
    resolved = registry.resolve({"registry": "gpt2-large", "revision": "a" * 40, "resources": {"runtime": 99}})
    assert resolved["hub_id"] == "openai-community/gpt2-large" and resolved["source"] == "hub"
    assert resolved["family"] == "gpt2" and resolved["revision"] == "a" * 40
    assert resolved["resources"] == {"mem_mb": 64000, "runtime": 99}
    assert registry.resolve({"family": "gpt2", "source": "scratch"}) == {"family": "gpt2", "source": "scratch"}
    with pytest.raises(registry.ModelRegistryError, match=r"models.x.registry: unknown model 'gpt5'"):
        registry.resolve({"registry": "gpt5"}, key="models.x")


def test_pinned_means_a_commit_sha():
    assert registry.is_pinned("607a30d783dfa663caf39e06633721c8d4cfcd7e")
    assert not registry.is_pinned("main") and not registry.is_pinned(None)


def test_a_gated_model_without_a_token_fails_before_any_download(tmp_path):
    spec = registry.resolve({"registry": "llama-2-7b"})
    no_token = {"HOME": str(tmp_path)}
    with pytest.raises(registry.ModelRegistryError, match=r"'llama' \(meta-llama/Llama-2-7b-hf\) is gated.*HF_TOKEN"):
        registry.check_access(spec, "llama", no_token)
    registry.check_access(spec, "llama", {**no_token, "HF_TOKEN": "hf_x"})
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / ".cache" / "huggingface" / "token").write_text("hf_from_login\n")
    assert registry.hub_token(no_token) == "hf_from_login"
    registry.check_access(spec, "llama", no_token)
    registry.check_access(registry.resolve({"registry": "gpt2"}), "gpt2", {"HOME": "/nonexistent"})


def test_registry_models_in_a_study_config_and_their_cluster_needs(repository):
    study = read_yaml(repository / "config" / "demo.yaml")
    study["models"]["big"] = {"registry": "llama-7b"}
    validated = validate_study(study, "config/demo.yaml")
    assert validated["models"]["big"]["family"] == "llama"
    needs = cluster.job_needs(validated, "train", "big", "lora")
    assert needs["gpu_model"] == "a100" and needs["mem_mb"] == 96000
    assert cluster.job_needs(validated, "score", "big", "lora") == cluster.JOB_DEFAULTS["score"]
    study["models"]["big"] = {"registry": "llama-7"}
    with pytest.raises(StudyConfigError, match=r"demo.yaml: models.big.registry: unknown model 'llama-7'"):
        validate_study(study, "config/demo.yaml")
    study["models"]["big"] = {"hub_id": "x/y"}
    with pytest.raises(StudyConfigError, match=r"models.big"):
        validate_study(study, "config/demo.yaml")
