"""The model registry: study entries filled from it, gated models refused without a token, resources."""

import pytest

from peftstudy import cluster, model_registry
from peftstudy.config import StudyConfigError, read_yaml, validate_study
from peftstudy.methods.base import ATTENTION_TARGETS


def test_every_entry_names_a_hub_model_of_a_family_with_method_targets():
    for name, entry in model_registry.REGISTRY.items():
        assert set(entry) <= set(model_registry.ENTRY_KEYS), name
        owner, _, repo = entry["hub_id"].partition("/")
        assert owner and repo, name
        assert entry["family"] in ATTENTION_TARGETS, name  # LoRA and adapters know where to go
        assert entry["dtype"] in ("float32", "bfloat16", "float16"), name
    assert model_registry.REGISTRY["llama-2-7b"]["gated"] is True


def test_a_study_entry_is_filled_from_the_registry_and_its_own_keys_win():
    resolved = model_registry.resolve({"registry": "gpt2-large", "revision": "a" * 40, "resources": {"runtime": 99}})
    assert resolved["hub_id"] == "openai-community/gpt2-large" and resolved["source"] == "hub"
    assert resolved["family"] == "gpt2" and resolved["revision"] == "a" * 40
    assert resolved["resources"] == {"mem_mb": 64000, "runtime": 99}
    assert model_registry.resolve({"family": "gpt2", "source": "scratch"}) == {"family": "gpt2", "source": "scratch"}
    with pytest.raises(model_registry.ModelRegistryError, match=r"models.x.registry: unknown model 'gpt5'"):
        model_registry.resolve({"registry": "gpt5"}, key="models.x")


def test_pinned_means_a_commit_sha():
    assert model_registry.is_pinned("607a30d783dfa663caf39e06633721c8d4cfcd7e")
    assert not model_registry.is_pinned("main") and not model_registry.is_pinned(None)


def test_a_gated_model_without_a_token_fails_before_any_download(tmp_path):
    spec = model_registry.resolve({"registry": "llama-2-7b"})
    no_token = {"HOME": str(tmp_path)}
    with pytest.raises(model_registry.ModelRegistryError, match=r"'llama' \(meta-llama/Llama-2-7b-hf\) is gated.*HF_TOKEN"):
        model_registry.check_access(spec, "llama", no_token)
    model_registry.check_access(spec, "llama", {**no_token, "HF_TOKEN": "hf_x"})
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / ".cache" / "huggingface" / "token").write_text("hf_from_login\n")
    assert model_registry.hub_token(no_token) == "hf_from_login"
    model_registry.check_access(spec, "llama", no_token)
    model_registry.check_access(model_registry.resolve({"registry": "gpt2"}), "gpt2", {"HOME": "/nonexistent"})


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
