"""Provenance: the settings hash, and the capability facts that decide which kernels a run used."""

import torch

from peftstudy import provenance


def test_canonical_hash_is_canonical_and_changes_with_any_setting():
    a = {"seed": 1, "training": {"learning_rate": 1e-3, "epochs": 2}}
    b = {"training": {"epochs": 2, "learning_rate": 1e-3}, "seed": 1}
    assert provenance.canonical_hash(a) == provenance.canonical_hash(b)
    assert provenance.canonical_hash(a) != provenance.canonical_hash({**a, "seed": 2})
    assert len(provenance.canonical_hash(a)) == 64


def test_capability_records_what_picks_kernels_here(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    facts = provenance.capability()
    assert facts["environment"] == {"ATEN_CPU_CAPABILITY": "avx2"}  # forcing variables only
    assert facts["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["torch_threads"] == torch.get_num_threads()
    assert set(facts["cpu_flags"]) <= set(provenance.CPU_FLAGS)
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith(("flags", "Features"))), [])
    assert facts["cpu_flags"] == [flag for flag in provenance.CPU_FLAGS if flag in flags]
    assert facts["torch_blas"] and isinstance(facts["mkldnn"], bool)
    assert any(pool["internal_api"] for pool in facts["thread_pools"])


def test_a_record_names_its_stage_settings_and_code():
    record = provenance.record("generate", {"a": 1}, code="f" * 64, device="cpu")
    assert record["stage"] == "generate" and record["code_fingerprint"] == "f" * 64
    assert record["settings_hash"] == provenance.canonical_hash({"a": 1})
    assert record["hardware"]["device"] == "cpu" and record["hardware"]["capability"]["cpu_flags"] is not None
    assert set(provenance.PACKAGES) == set(record["packages"])
