"""Model families: which architecture a family is and which transformers class generates with it. A leaf: imports nothing of the package."""

from __future__ import annotations

# causal_lm / seq2seq_lm: any hub model AutoModelForCausalLM / AutoModelForSeq2SeqLM loads (Qwen2.5, Mistral,
# OLMo, Flan-T5, ...); the package knows nothing of its layers, so the study names the target modules of each
# method kind (models.<name>.target_modules) and the tokenizer's own special tokens frame the prompt.
GENERIC_FAMILIES = {"causal_lm", "seq2seq_lm"}

DECODER_ONLY_FAMILIES = {"gpt2", "llama", "causal_lm"}

# Families the package can build and pretrain itself (source scratch or snapshot): a tokenizer trainer and a config
# class each (peftstudy.modeling.loading.train_tokenizer, build_model).
SCRATCH_FAMILIES = ("gpt2", "llama", "t5")


# bert2bert: a BERT encoder and a BERT decoder with new cross-attention (Rothe et al. 2020), warm-started
# from one BERT checkpoint (seed 004's BERT summariser).
ENCODER_DECODER_FAMILIES = {"t5", "bert2bert", "seq2seq_lm"}


def is_decoder_only(family: str) -> bool:
    return family in DECODER_ONLY_FAMILIES


def generation_class(family: str):
    """The transformers auto class that generates text with this family (a task head is heads.model_class)."""
    import transformers

    if is_decoder_only(family):
        return transformers.AutoModelForCausalLM
    if family in ENCODER_DECODER_FAMILIES:
        return transformers.AutoModelForSeq2SeqLM
    raise ValueError(f"model family {family!r} has no generation head (supported: gpt2, llama, t5, causal_lm, "
                     "seq2seq_lm); "
                     "its classification and QA cells use a classifier or span head (peftstudy.modeling.heads)")
