"""The prepare_base stage: pretrain a scratch model or pin a hub model, behind one entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from peftstudy import io, provenance
from peftstudy.modeling.loading import (
    build_warm_start,
    fetch_hub_base,
    fetch_hub_snapshot,
    package_model_path,
)
from peftstudy.modeling.registry import check_access, is_pinned
from peftstudy.training.pretrain import pretrain_base


def prepare_base(spec: Mapping, corpus_path: str | Path | None, out_dir: str | Path, *, threads: int = 1) -> dict:
    if spec["source"] == "scratch":
        if corpus_path is None:
            raise ValueError(f"model {spec.get('name')!r}: a scratch model needs its pretraining corpus")
        return pretrain_base(spec, corpus_path, out_dir, threads=threads)
    if spec["source"] == "package":
        return record_package_base(spec, out_dir)
    if spec["source"] == "warm_start":
        return warm_start_base(spec, out_dir)

    check_access(spec, spec.get("name"))
    resolved = fetch_hub_base(spec, Path(out_dir))
    manifest = {
        "model": spec.get("name"),
        "family": spec["family"],
        "source": "hub",
        "hub_id": spec["hub_id"],
        "revision": spec["revision"],
        "pinned": is_pinned(spec["revision"]),  # else resolved_revision is the SHA to pin in the config
        "dtype": spec.get("dtype", "float32"),
        "licence": spec.get("licence"),
        **resolved,
        "provenance": provenance.record(),
    }
    with io.atomic_directory(out_dir) as tmp_dir:
        io.write_json(tmp_dir / "base.json", manifest)
    return manifest


def record_package_base(spec: Mapping, out_dir: str | Path) -> dict:
    """A model a Python package ships (offline): recorded by its weights' checksum, which loading checks."""
    path = package_model_path(spec["package"])
    manifest = {
        "model": spec.get("name"),
        "family": spec["family"],
        "source": "package",
        "package": spec["package"],
        "hub_id": spec.get("hub_id"),  # where the packaged weights come from
        "dtype": spec.get("dtype", "float32"),
        "licence": spec.get("licence"),
        "sha256": io.sha256_file(path / "model.safetensors"),
        "provenance": provenance.record(),
    }
    with io.atomic_directory(out_dir) as tmp_dir:
        io.write_json(tmp_dir / "base.json", manifest)
    return manifest


def warm_start_base(spec: Mapping, out_dir: str | Path) -> dict:
    """An encoder-decoder built from a BERT checkpoint (a packaged one, or the hub's at a revision)."""
    if spec.get("package"):
        location, origin = package_model_path(spec["package"]), {"package": spec["package"]}
    else:
        check_access(spec, spec.get("name"))
        location = fetch_hub_snapshot(spec)
        origin = {"hub_id": spec["hub_id"], "revision": spec["revision"], "pinned": is_pinned(spec["revision"]),
                  "resolved_revision": location.name}
    init_seed = spec.get("init_seed", 0)
    with io.atomic_directory(out_dir) as tmp_dir:
        build_warm_start(location, init_seed, tmp_dir)
        manifest = {
            "model": spec.get("name"), "family": spec["family"], "source": "warm_start", "warm_started_from": origin,
            "init_seed": init_seed, "dtype": "float32", "licence": spec.get("licence"),
            "sha256": io.sha256_file(tmp_dir / "model.safetensors"), "provenance": provenance.record(),
        }
        io.write_json(tmp_dir / "base.json", manifest)
    return manifest
