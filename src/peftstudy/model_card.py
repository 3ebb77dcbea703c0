"""What makes a run's weights directory load outside peftstudy: the base it belongs to (peft's
``base_model_name_or_path`` and ``revision`` in adapter_config.json), the tokenizer beside the weights, and a model
card (README.md, the Hugging Face convention) with the exact loading code and prompt format.

Written into the weights directory before train.json lists its files (``weights_sha256``). The decoding settings
are the generate job's (generation_config.json in the run directory, beside weights/: decoding can change without
retraining); `peftstudy export` puts them and the base, when the study built it, in one directory that loads
anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from peftstudy.modeling.batching import PROMPT_SEPARATOR
from peftstudy.modeling.families import is_decoder_only

ADAPTER_CONFIG = "adapter_config.json"  # peft's
CARD = "README.md"
GENERATION_CONFIG = "generation_config.json"  # transformers' GenerationConfig.save_pretrained
TOKENIZER_CONFIG = "tokenizer_config.json"
PEFT_KINDS = {"lora", "dora", "adalora", "vera", "ia3", "prefix", "prompt", "peft"}  # saved by peft's save_pretrained
PLAIN_FAMILIES = {"gpt2", "llama", "t5", "causal_lm", "seq2seq_lm"}  # transformers' own classes load them


def base_reference(base_dir: str | Path) -> tuple[str, str | None, bool]:
    """(base_model_name_or_path, revision, whether it is a local directory) of a run's base: a hub base by its id
    and the revision it was resolved to; a base built here (scratch, snapshot) by its directory, an installed
    package's by the package's model directory."""
    from peftstudy.modeling.loading import base_location

    manifest, location, revision = base_location(base_dir)
    return location, revision, manifest.get("source") != "hub"


def needs_peftstudy(kind: str, family: str, method_spec: Mapping) -> str | None:
    """Why plain peft/transformers would not reproduce this run's model (None: they do)."""
    head = (method_spec.get("head") or {}).get("kind", "lm")
    if head != "lm":
        return f"its {head} head is peftstudy's own module (peftstudy.modeling.heads)"
    if kind == "prefix" and not is_decoder_only(family):
        return "peft's T5 generate() numbers decoder positions without the prefix (PrefixTuning.patch_peft_model)"
    if kind == "prompt" and is_decoder_only(family):
        return ("peft drops position ids of prompt-tuned decoder-only models in generate() and returns logits for "
                "the virtual tokens (PromptTuning.patch_peft_model)")
    if kind == "qlora":
        return "the adapter fits the base quantized exactly as for training (quantization.json; methods/quantized.py)"
    if kind not in PEFT_KINDS and kind != "full":
        return f"method {kind!r} stores weights in peftstudy's own format (methods/partial.py, methods/adapterhub.py)"
    if family not in PLAIN_FAMILIES:
        return f"family {family!r} is built by peftstudy (modeling.heads)"
    return None


def mark_base(weights_dir: Path, kind: str, name_or_path: str, revision: str | None) -> None:
    """Record the base in peft's adapter_config.json (peft writes where the model was loaded from, not the
    revision); nothing to do for a method that saves no peft adapter (AdapterHub's file of that name is its own)."""
    path = Path(weights_dir) / ADAPTER_CONFIG
    if kind not in PEFT_KINDS | {"qlora"} or not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(base_model_name_or_path=name_or_path, revision=revision)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def finish_weights_dir(weights_dir: Path, settings: Mapping, base_dir: str | Path, tokenizer) -> None:
    """After the method saved its weights into ``weights_dir`` (still the temporary directory): the base's
    reference, the tokenizer (where the method did not save it) and the model card."""
    weights_dir = Path(weights_dir)
    name_or_path, revision, local = base_reference(base_dir)
    mark_base(weights_dir, settings["method_spec"]["kind"], name_or_path, revision)
    if not (weights_dir / TOKENIZER_CONFIG).is_file():
        tokenizer.save_pretrained(weights_dir)
    (weights_dir / CARD).write_text(card(settings, name_or_path, revision, local), encoding="utf-8")


def auto_class(family: str) -> str:
    return "AutoModelForCausalLM" if is_decoder_only(family) else "AutoModelForSeq2SeqLM"


def loading_code(settings: Mapping, name_or_path: str, revision: str | None, local: bool, here: str,
                 decoding: str) -> str:
    kind, family, spec = settings["method_spec"]["kind"], settings["family"], settings["method_spec"]
    if needs_peftstudy(kind, family, spec):
        base_dir = name_or_path if local else f"results/bases/{settings['model']}"  # the base's base.json is there
        return "\n".join([
            "from pathlib import Path",
            "",
            "from peftstudy.methods import get_method",
            "",
            f"method_spec = {json.dumps(spec, sort_keys=True)}",
            f"model, tokenizer, manifest = get_method({kind!r}).load_for_inference(",
            f"    Path({base_dir!r}), Path({here!r}), \"cpu\", method_spec)",
        ])
    model_class = auto_class(family)
    if kind == "full":
        return "\n".join([
            f"from transformers import {model_class}, AutoTokenizer, GenerationConfig",
            "",
            f"model = {model_class}.from_pretrained({here!r})",
            f"tokenizer = AutoTokenizer.from_pretrained({here!r})",
            f"generation_config = GenerationConfig.from_pretrained({decoding!r})  # the study's decoding",
        ])
    return "\n".join([
        "from peft import PeftModel",
        f"from transformers import {model_class}, AutoTokenizer, GenerationConfig",
        "",
        f"base = {model_class}.from_pretrained({name_or_path!r}, revision={revision!r})",
        f"model = PeftModel.from_pretrained(base, {here!r})",
        f"tokenizer = AutoTokenizer.from_pretrained({here!r})",
        f"generation_config = GenerationConfig.from_pretrained({decoding!r})  # the study's decoding",
    ])


def card(settings: Mapping, name_or_path: str, revision: str | None, local: bool, *, here: str = ".",
         exported: bool = False) -> str:
    """The model card: YAML front matter (base_model, library_name, tags), how to load and prompt the model."""
    spec, family = settings["method_spec"], settings["family"]
    kind = spec["kind"]
    reason = needs_peftstudy(kind, family, spec)
    library = "peft" if kind in PEFT_KINDS | {"qlora"} else "transformers" if kind == "full" else "peftstudy"
    tags = ["peftstudy", kind, *([spec["peft_type"].lower()] if spec.get("peft_type") else []), family,
            settings["dataset"]]
    front = ["---", f"base_model: {json.dumps(name_or_path)}", f"library_name: {library}", "tags:",
             *(f"- {json.dumps(tag)}" for tag in tags), "---", ""]
    run = f"{settings['dataset']} / {settings['model']} / {kind}" + (
        f" rank {settings['rank']}" if settings.get("rank") is not None else "") + f" / seed {settings['seed']}"
    lines = [f"# {run}", "", "Fine-tuned by peftstudy. Settings: the run's train.json (`settings`).", "", "## Base", ""]
    if kind == "full":
        lines.append(f"All weights were fine-tuned: this directory is the whole model (it started from "
                     f"`{name_or_path}`" + (f" at revision `{revision}`" if revision else "") + ").")
    elif local:
        lines.append(f"Built by the study (not on the hub): the directory `{name_or_path}`"
                     + (", copied beside this one by `peftstudy export`" if exported else
                        "; copy it along with this directory (`peftstudy export RUN_DIR OUT_DIR` does)") + ".")
    else:
        lines.append(f"`{name_or_path}` at revision `{revision}`.")
    lines += ["", "## Loading", ""]
    if reason:
        lines += [f"Needs peftstudy: {reason}.", ""]
    else:
        lines += ["Plain `peft` and `transformers`; no peftstudy code is needed.", ""]
    decoding = here if exported else ".."  # the generate job writes it into the run directory, beside weights/
    lines += ["```python", loading_code(settings, name_or_path, revision, local, here, decoding), "```", "",
              "## Prompt format", ""]
    if is_decoder_only(family):
        lines.append(f"The input's tokens (no special tokens, at most max_source_tokens = "
                     f"{settings['training'].get('max_source_tokens')}) followed by {PROMPT_SEPARATOR!r}; the "
                     "prediction is the generated continuation, decoded without special tokens and stripped. "
                     "Batches are left-padded.")
    else:
        lines.append(f"The input's tokens with the tokenizer's special tokens (cut to max_source_tokens = "
                     f"{settings['training'].get('max_source_tokens')}, keeping the final EOS); the prediction is "
                     "the decoded output without special tokens, stripped.")
    lines += ["", "Decoding (greedy or beam, max_new_tokens, no_repeat_ngram_size): generation_config.json "
              + ("in this directory." if exported else
                 "in the run directory (`..`), written by the generate job; generation.json `settings` has them too."),
              ""]
    return "\n".join(front + lines)
