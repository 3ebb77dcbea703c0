"""Methods that train a subset of the base's own parameters: BitFit and FT-top-k.

Both store only the trained tensors (safetensors, never pickle) plus ``partial.json``
naming the method and the tensors; inference loads the base and copies them in.
"""

from __future__ import annotations

import json
from pathlib import Path

from peftstudy.methods.base import Method, checked_safetensors

WEIGHTS_FILE = "partial_weights.safetensors"
MANIFEST_FILE = "partial.json"


def unwrap(model):
    """The transformers model under any wrapper (parameter names are stored relative to it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class PartialFineTuning(Method):
    """Train selected parameters of the base in place; subclasses choose them."""

    def trainable_names(self, model, family: str, spec) -> list[str]:
        raise NotImplementedError

    def prepare(self, model, family, spec, rank, total_steps=None):
        names = set(self.trainable_names(model, family, spec))
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in names)
        return model

    def save(self, model, tokenizer, out_dir):
        from safetensors.torch import save_file

        model = unwrap(model)
        tensors = {
            name: parameter.detach().to("cpu").contiguous().clone()
            for name, parameter in model.named_parameters()
            if parameter.requires_grad
        }
        if not tensors:
            raise ValueError(f"{self.kind}: no trainable parameters to save")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(tensors, out_dir / WEIGHTS_FILE, metadata={"method": self.kind})
        manifest = {
            "method": self.kind,
            "parameters": sorted(tensors),
            "parameter_count": sum(t.numel() for t in tensors.values()),
            "weights": WEIGHTS_FILE,
        }
        (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    def load_for_inference(self, base_dir, weights_dir, device, spec=None):
        import torch
        from safetensors.torch import load_file

        from peftstudy.modeling.loading import load_base

        weights_dir = Path(weights_dir)
        manifest_path = weights_dir / MANIFEST_FILE
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path}: missing; not a {self.kind} run directory")
        stored = json.loads(manifest_path.read_text(encoding="utf-8"))
        if stored.get("method") != self.kind:
            raise ValueError(f"{weights_dir}: stored by method {stored.get('method')!r}, not {self.kind!r}")
        if stored.get("weights") != WEIGHTS_FILE:  # never a file elsewhere, nor one in another format
            raise ValueError(f"{manifest_path}: weights must be {WEIGHTS_FILE!r}, not {stored.get('weights')!r}")
        tensors = load_file(checked_safetensors(weights_dir / WEIGHTS_FILE))
        if sorted(tensors) != stored["parameters"]:
            raise ValueError(f"{weights_dir}: {stored['weights']} does not hold the tensors {MANIFEST_FILE} lists")
        model, tokenizer, base_manifest = load_base(base_dir)
        parameters = dict(model.named_parameters())
        unknown = sorted(set(tensors) - set(parameters))
        if unknown:
            raise ValueError(f"{weights_dir}: tensors not in the base model: {', '.join(unknown[:5])}")
        with torch.no_grad():
            for name, tensor in tensors.items():
                if parameters[name].shape != tensor.shape:
                    raise ValueError(
                        f"{weights_dir}: {name} has shape {tuple(tensor.shape)}, the base has "
                        f"{tuple(parameters[name].shape)}"
                    )
                parameters[name].copy_(tensor)
        model.requires_grad_(False)
        return model.to(device), tokenizer, base_manifest


class BitFit(PartialFineTuning):
    """BitFit (Ben Zaken et al., 2022): only the bias terms train.

    Every parameter named ``bias`` trains: linear/Conv1D biases and LayerNorm shifts,
    as in the paper. No options. Families without biases (T5, LLaMA) raise ValueError.
    """

    kind = "bitfit"
    options = {}
    label = "BitFit"
    trains_heads = False
    shardable = True
    not_applicable = {
        "t5": "T5 has no bias parameters: BitFit would train nothing",
        "llama": "LLaMA has no bias parameters: BitFit would train nothing",
    }

    def trainable_names(self, model, family, spec):
        names = [name for name, _ in model.named_parameters() if name == "bias" or name.endswith(".bias")]
        if not names:
            raise ValueError(
                f"BitFit: model family {family!r} has no bias parameters, so BitFit would train nothing "
                "(declare this cell an exclusion)"
            )
        return names

    def expected_trainable(self, model, spec, rank, *, family):
        """The elements of every bias: each module's own ``bias`` parameter (linear, Conv1D and LayerNorm alike)."""
        from peftstudy.methods.formulas import lm_head_only, unique_numel

        if not lm_head_only(spec):
            return None
        biases = [module._parameters["bias"] for module in model.modules()
                  if module._parameters.get("bias") is not None]
        if not biases:
            raise ValueError(f"BitFit: model family {family!r} has no bias parameters, so BitFit would train nothing "
                             "(declare this cell an exclusion)")
        return unique_numel(biases), f"sum of the sizes of the {len(biases)} bias vectors"


def top_blocks(model, family: str, top_k: int) -> list[tuple[str, object]]:
    """(name prefix, module) of the last top_k blocks of every stack and of the stacks' final norms."""
    if family == "gpt2":
        stacks = [("transformer.h", model.transformer.h, "transformer.ln_f", model.transformer.ln_f)]
    elif family == "t5":
        stacks = [
            ("encoder.block", model.encoder.block, "encoder.final_layer_norm", model.encoder.final_layer_norm),
            ("decoder.block", model.decoder.block, "decoder.final_layer_norm", model.decoder.final_layer_norm),
        ]
    elif family == "llama":
        stacks = [("model.layers", model.model.layers, "model.norm", model.model.norm)]
    else:
        raise ValueError(f"FT-top-k: no block layout known for model family {family!r} (supported: gpt2, t5, llama)")
    selected = []
    for blocks_name, blocks, norm_name, norm in stacks:
        if top_k > len(blocks):
            raise ValueError(f"FT-top-k: top_k={top_k} but {blocks_name} has only {len(blocks)} blocks")
        first = len(blocks) - top_k
        selected += [(f"{blocks_name}.{index}", blocks[index]) for index in range(first, len(blocks))]
        selected.append((norm_name, norm))
    return selected


class FineTuneTopK(PartialFineTuning):
    """FT-top-k (as the LoRA paper's FT^Top2 baseline): fine-tune only the last k blocks.

    Default top_k 2. Trains the last k transformer blocks and the final norm (GPT-2:
    transformer.h[-k:] + ln_f; T5: the last k blocks of the encoder AND of the decoder
    + both final layer norms; LLaMA: model.layers[-k:] + model.norm). Embeddings and
    the LM head (tied to the input embeddings in GPT-2 and T5) stay frozen: training
    them would touch the bottom of the network and add vocab x d parameters.
    """

    kind = "ft_top_k"
    options = {"top_k": {"type": "integer", "minimum": 1, "description": "FT-top-k: number of final blocks fine-tuned"}}
    defaults = {"top_k": 2}
    label = "FT top-$k$"
    trains_heads = False
    shardable = True

    def trainable_names(self, model, family, spec):
        top_k = self.option(spec, "top_k")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"FT-top-k: top_k must be a positive integer, got {top_k!r}")
        names = []
        for prefix, module in top_blocks(model, family, top_k):
            names += [f"{prefix}.{name}" for name, _ in module.named_parameters()]
        return names

    def expected_trainable(self, model, spec, rank, *, family):
        """Every parameter of the last top_k blocks of each stack and of the stacks' final norms."""
        from peftstudy.methods.formulas import lm_head_only, unique_numel

        if not lm_head_only(spec):
            return None
        top_k = self.option(spec, "top_k")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"FT-top-k: top_k must be a positive integer, got {top_k!r}")
        selected = top_blocks(model, family, top_k)
        count = unique_numel(p for _, module in selected for p in module.parameters())
        return count, f"every parameter of {', '.join(name for name, _ in selected)}"


METHODS = [BitFit(), FineTuneTopK()]
