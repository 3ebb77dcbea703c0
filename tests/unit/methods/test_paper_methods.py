"""Every method variant of the paper study (config.yaml) builds and runs a forward pass on every model
family it is paired with, so that a paper run cannot fail late on a method/architecture mismatch.

The paper's models are too big for CPU tests, so each family is represented by a small randomly
initialised model of the same architecture (hidden size 512, enough for the largest bottleneck of 512,
2 blocks for FT-top-k's k=2). QLoRA needs a quantized checkpoint on disk and is exercised on the tiny
bases in test_methods_qlora.py; the LLaMA QLoRA path is checked there too.
"""

import copy
from pathlib import Path

import pytest
import torch
import transformers

from peftstudy import study as studyconfig
from peftstudy.methods import get_method
from peftstudy.modeling.loading import count_parameters

HIDDEN = 512
WORDS = "the quick brown fox jumps over a lazy dog while describing products abstracts and captions".split()


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """A local tokenizer per family (prompt tuning's text init reads it from the model's directory)."""
    from peftstudy.modeling.loading import train_tokenizer

    lines = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    made = {}
    for family in ("gpt2", "t5", "llama"):
        tokenizer = train_tokenizer("t5" if family == "t5" else "gpt2", lines, 300)
        directory = tmp_path_factory.mktemp(f"tokenizer-{family}")
        tokenizer.save_pretrained(directory)
        made[family] = (tokenizer, directory)
    return made


def small_model(family, vocab):
    torch.manual_seed(0)
    VOCAB = vocab
    if family == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=HIDDEN, n_layer=2, n_head=8, n_positions=64, vocab_size=VOCAB))
    if family == "t5":
        return transformers.T5ForConditionalGeneration(transformers.T5Config(
            d_model=HIDDEN, d_kv=64, d_ff=1024, num_heads=8, num_layers=2, num_decoder_layers=2, vocab_size=VOCAB,
            decoder_start_token_id=0))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=HIDDEN, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=4, vocab_size=VOCAB, max_position_embeddings=64))


def paper_cells():
    study = studyconfig.load_study(Path(__file__).resolve().parents[3] / "config.yaml")
    cells = set()
    for run in studyconfig.expand_runs(study):
        family = study["models"][run.model]["family"]
        spec = {k: v for k, v in study["methods"][run.method].items() if k not in ("training", "ranks", "description")}
        if spec["kind"] != "qlora":
            cells.add((family, run.method, run.rank, tuple(sorted((k, str(v)) for k, v in spec.items()))))
    return study, sorted(cells, key=lambda c: (c[0], c[1], c[2] or 0))


STUDY, CELLS = paper_cells()
MODELS = {}


@pytest.mark.parametrize("family, method, rank", [cell[:3] for cell in CELLS],
                         ids=[f"{c[0]}-{c[1]}-r{c[2]}" for c in CELLS])
def test_paper_method_prepares_and_runs_forward(tokenizers, family, method, rank):
    tokenizer, directory = tokenizers[family]
    if family not in MODELS:
        MODELS[family] = small_model(family, len(tokenizer))
        MODELS[family].name_or_path = str(directory)
    spec = {k: v for k, v in STUDY["methods"][method].items() if k not in ("training", "ranks", "description")}
    model = get_method(spec["kind"]).prepare(copy.deepcopy(MODELS[family]), family, spec, rank, total_steps=100)
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    if spec["kind"] != "full":
        assert trainable < total
    ids = torch.randint(3, len(tokenizer), (2, 8), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_the_paper_cells_cover_every_family_and_method():
    families = {cell[0] for cell in CELLS}
    methods = {cell[1] for cell in CELLS}
    assert families == {"gpt2", "t5", "llama"}
    assert methods == set(STUDY["methods"]) - {"qlora", "qlora8"}
