"""The prepare_base stage: pretrain a scratch model or pin a hub model, behind one entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from . import io, provenance


def prepare_base(spec: Mapping, corpus_path: str | Path | None, out_dir: str | Path, *, threads: int = 1) -> dict:
    if spec["source"] == "scratch":
        from .pretrain import pretrain_base

        if corpus_path is None:
            raise ValueError(f"model {spec.get('name')!r}: a scratch model needs its pretraining corpus")
        return pretrain_base(spec, corpus_path, out_dir, threads=threads)
    from .model_registry import check_access, is_pinned
    from .models import fetch_hub_base

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
