"""The prepare_base stage: pretrain a scratch model or pin a hub model, behind one entry point."""

from __future__ import annotations

import shutil
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
    if spec["source"] == "snapshot":
        return copy_snapshot_base(spec, out_dir)
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


# ---------------------------------------------------------------------------- shipped (snapshot) bases
# A base pretrained here once, by `snakemake --cores 2 <study>_bases` (build_snapshot_base), and shipped in the
# repository (data/bases/<model>/) so that a fresh machine does not pay for its pretraining. Its study entry keeps
# the recipe (architecture, tokenizer, pretraining, corpus); the snapshot is used only while it matches.

SNAPSHOT_MANIFEST = "MANIFEST.json"
RECIPE_KEYS = ("family", "architecture", "tokenizer", "pretraining")


def snapshot_recipe(spec: Mapping) -> dict:
    """What a snapshot base is made from (its spec's corpus_spec: the pretraining corpus's definition, which the
    workflow adds): a change to any of it makes the shipped snapshot stale."""
    corpus_spec = spec.get("corpus_spec")
    return {**{key: spec[key] for key in RECIPE_KEYS}, "corpus": dict(corpus_spec) if corpus_spec else None}


def build_snapshot_base(spec: Mapping, corpus_path: str | Path, out_dir: str | Path, *, threads: int = 1) -> dict:
    """Pretrain the base from its recipe into out_dir, in the layout data/bases/<model>/ ships."""
    def finish(directory: Path, manifest: dict) -> None:
        manifest["recipe"] = snapshot_recipe(spec)
        io.write_json(directory / "base.json", manifest)
        files = {path.name: io.sha256_file(path) for path in sorted(directory.iterdir())}
        io.write_json(directory / SNAPSHOT_MANIFEST, {"model": spec.get("name"), "files": files,
                                                      "ship": f"cp {out_dir}/* {spec['snapshot']}/"})

    return pretrain_base({**spec, "source": "scratch"}, corpus_path, out_dir, threads=threads, finish=finish)


def verified_snapshot(spec: Mapping) -> tuple[Path, dict]:
    """(the snapshot directory, its base.json), after checking every file against its MANIFEST and the recipe
    against the study's: a corrupted, edited or stale snapshot fails, naming the file or the key."""
    snapshot = Path(spec["snapshot"])
    manifest_path = snapshot / SNAPSHOT_MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no shipped base here (build it: snakemake --cores 2 <study>_bases)")
    listed = io.read_json(manifest_path)["files"]
    for name, digest in listed.items():
        path = snapshot / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {manifest_path} but missing")
        found = io.sha256_file(path)
        if found != digest:
            raise ValueError(f"{path}: sha256 {found[:12]} does not match {manifest_path} ({digest[:12]}): the "
                             f"shipped base is corrupted or was edited; restore it (git checkout) or rebuild it")
    base = io.read_json(snapshot / "base.json")
    expected = snapshot_recipe(spec)
    for key in expected:
        if base.get("recipe", {}).get(key) != expected[key]:
            raise ValueError(f"models.{spec.get('name')}.{key}: differs from the recipe {snapshot} was built from; "
                             f"rebuild it (snakemake --cores 2 <study>_bases) and ship the result")
    return snapshot, base


def copy_snapshot_base(spec: Mapping, out_dir: str | Path) -> dict:
    """The shipped base, verified, as a base directory like any other (model, tokenizer, base.json)."""
    snapshot, base = verified_snapshot(spec)
    manifest = {**base, "model": spec.get("name"), "source": "snapshot", "snapshot": str(snapshot),
                "snapshot_manifest_sha256": io.sha256_file(snapshot / SNAPSHOT_MANIFEST),
                "built_on": base.get("provenance"), "provenance": provenance.record()}
    with io.atomic_directory(out_dir) as tmp_dir:
        for path in sorted(snapshot.iterdir()):
            if path.name not in ("base.json", SNAPSHOT_MANIFEST):
                shutil.copyfile(path, tmp_dir / path.name)
        io.write_json(tmp_dir / "base.json", manifest)
    return manifest
