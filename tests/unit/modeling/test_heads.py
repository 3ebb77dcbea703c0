"""Classifier and span heads on a real pretrained BERT (all-MiniLM-L6-v2, shipped on PyPI, offline)."""

import random

import pytest

from peftstudy import io
from peftstudy.generation import generate_run
from peftstudy.methods import get_method
from peftstudy.metrics import quality
from peftstudy.modeling import heads
from peftstudy.modeling.loading import load_base
from peftstudy.modeling.registry import resolve
from peftstudy.training import bases
from peftstudy.training.loop import train_run

LABELS = ["negative", "positive"]
TRAINING = {"epochs": 3, "batch_size": 16, "gradient_accumulation_steps": 1, "learning_rate": 5e-3,
            "weight_decay": 0.01, "warmup_ratio": 0.1, "lr_scheduler": "linear", "max_grad_norm": 1.0,
            "max_source_tokens": 32, "max_target_tokens": 8, "precision": "fp32"}
SPAN_HEAD = {"kind": "span", "module": "qa_outputs", "max_length": 40, "stride": 12, "max_answer_tokens": 8}
CLASSIFIER_HEAD = {"kind": "classifier", "labels": LABELS, "module": "classifier"}
NAMES = ["Arvo", "Belka", "Corin", "Dalsa", "Eskel", "Fenna", "Gorim", "Halvy", "Istra", "Jorun", "Kelda", "Lumo"]
FILLER = ("the tool reads plain files and writes a short report for each of them while the user waits for "
          "results that arrive in order").split()


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    out = tmp_path_factory.mktemp("bases") / "minilm"
    bases.prepare_base({**resolve({"registry": "all-minilm-l6-v2"}), "name": "minilm"}, None, out)
    return out


def write_splits(directory, make, sizes):
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        io.write_jsonl(directory / f"{split}.jsonl", [make(f"{split}{i}") for i in range(count)])
    io.write_json(directory / "manifest.json", {"splits": sizes})
    return directory


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    rng = random.Random(0)
    words = {"positive": ["great", "wonderful", "excellent", "lovely"], "negative": ["awful", "terrible", "boring", "dreadful"]}

    def make(identifier):
        label = rng.choice(LABELS)
        noun = rng.choice(["film", "plot", "cast", "story"])
        return {"id": identifier, "input": f"the {noun} was {rng.choice(words[label])}", "reference": label}

    return write_splits(tmp_path_factory.mktemp("sentiment"), make, {"train": 96, "validation": 32, "test": 40})


def qa_record(identifier, rng, answer_position=None):
    """A context of filler words with 'NAME is the package' at a random place; the question asks for NAME."""
    name = rng.choice(NAMES)
    words = [rng.choice(FILLER) for _ in range(rng.randint(20, 45))]
    at = rng.randint(0, len(words)) if answer_position is None else answer_position
    context = " ".join(words[:at] + [f"{name} is the package."] + words[at:])
    return {"id": identifier, "question": "Which is the package?", "context": context, "answers": [name],
            "answer_start": [context.index(f"{name} is the package.")], "input": "", "reference": name}


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    rng = random.Random(1)
    return write_splits(tmp_path_factory.mktemp("qa"), lambda i: qa_record(i, rng), {"train": 64, "validation": 16, "test": 24})


def settings(method, head, rank=None, **training):
    spec = {"kind": method, "head": head}
    if method == "lora":
        spec.update(alpha=16, dropout=0.0, target_modules="attention")
    return {"dataset": "d", "model": "minilm", "family": "bert", "method": method, "rank": rank, "method_spec": spec,
            "training": {**TRAINING, **training}, "seed": 3}


def test_span_windows_overlap_by_the_stride_and_label_the_answer_tokens(minilm):
    _, tokenizer, _ = load_base(minilm, head=SPAN_HEAD)
    rng = random.Random(2)
    records = [qa_record(str(i), rng, answer_position=position) for i, position in enumerate([0, 10, 20, 30, 40])]
    goal = heads.SpanObjective(tokenizer, "bert", SPAN_HEAD)
    windows, examples = goal.windows(records), goal.encode(records)
    assert len(windows) == len(examples) > len(records)  # long contexts overflow into several windows
    found = {i: 0 for i in range(len(records))}
    for window, example in zip(windows, examples):
        record = records[window["record"]]
        assert len(example["input_ids"]) <= SPAN_HEAD["max_length"]
        start, end = example["labels"]
        if (start, end) == (0, 0):  # [CLS]: the answer is not wholly inside this window
            continue
        found[window["record"]] += 1
        assert record["context"][window["offsets"][start][0] : window["offsets"][end][1]] == record["answers"][0]
        assert example["token_type_ids"][start] == 1  # the answer lies in the context segment
    assert all(found.values()), found
    # Consecutive windows of one record share `stride` context tokens.
    for first, second in zip(windows, windows[1:]):
        if first["record"] == second["record"]:
            tail = [t for t, o in zip(first["input_ids"], first["offsets"]) if o is not None][-SPAN_HEAD["stride"]:]
            head = [t for t, o in zip(second["input_ids"], second["offsets"]) if o is not None][: SPAN_HEAD["stride"]]
            assert tail == head


def test_best_span_keeps_to_the_context_and_the_answer_length():
    offsets = [None, None, (0, 4), (5, 9), (10, 14), (15, 19), None]
    starts = [9.0, 0.0, 1.0, 5.0, 0.5, 0.0, 9.0]
    ends = [9.0, 0.0, 0.0, 0.2, 1.0, 6.0, 9.0]
    # [CLS] and the trailing [SEP] score highest but are not context; 3..5 (5 + 6) is the best span; at
    # most 2 tokens long, 4..5 (0.5 + 6) beats 3..4 (5 + 1) and 5..5 (0 + 6).
    assert heads.best_span(starts, ends, offsets, max_answer_tokens=3) == (11.0, 5, 19)
    assert heads.best_span(starts, ends, offsets, max_answer_tokens=2) == (6.5, 10, 19)
    assert heads.best_span([0, 0, 0, 5.0, 0, 0, 0], [0, 0, 5.0, 0, 0, 0, 0], offsets, 3)[1:] != (5, 4)  # no end < start
    assert heads.best_span(starts, ends, [None] * 7, 3) is None


@pytest.mark.parametrize("method, rank, learning_rate", [("full", None, 5e-5), ("lora", 8, 5e-3)])
def test_classifier_head_learns_sentiment_and_its_weights_reload(minilm, sentiment, tmp_path, method, rank,
                                                                    learning_rate):
    run = settings(method, CLASSIFIER_HEAD, rank, learning_rate=learning_rate)
    record = train_run(run, minilm, sentiment, tmp_path / "weights", tmp_path / "train.json")
    if method == "lora":
        # MiniLM: 6 layers x 4 attention matrices of 384 x 384, r (d_in + d_out) each, plus the new classifier.
        assert record["trainable_parameters"] == 6 * 4 * 8 * (384 + 384) + (384 * 2 + 2)
    else:
        assert record["trainable_parameters"] == record["total_parameters"]
    assert all(p.suffix in (".json", ".safetensors", ".txt") or p.name == "README.md"
               for p in (tmp_path / "weights").iterdir())
    generation = generate_run(run["method_spec"], "bert", minilm, tmp_path / "weights", sentiment / "test.jsonl",
                              tmp_path / "generations.jsonl", tmp_path / "generation.json",
                              {"batch_size": 32, "max_new_tokens": 4, "num_beams": 1, "labels": LABELS}, 32,
                              max_target_tokens=8)
    rows = io.read_jsonl(tmp_path / "generations.jsonl")
    accuracy = quality.classification([r["prediction"] for r in rows], [r["reference"] for r in rows], LABELS)["accuracy"]
    assert accuracy >= 0.9, accuracy
    assert generation["decoding"] == "classifier_argmax" and generation["perplexity"] is None
    # The reloaded model has the validation loss the trainer saw for the kept epoch.
    model, tokenizer, _ = get_method(method).load_for_inference(minilm, tmp_path / "weights", "cpu", run["method_spec"])
    goal = heads.objective(CLASSIFIER_HEAD, tokenizer, "bert", TRAINING)
    reloaded = heads.mean_loss(model, goal, goal.encode(io.read_jsonl(sentiment / "validation.jsonl")),
                               tokenizer.pad_token_id, 16, "cpu")
    assert reloaded == pytest.approx(record["best_validation_loss"], rel=1e-5)


def test_span_head_learns_to_extract_answers(minilm, questions, tmp_path):
    run = settings("lora", SPAN_HEAD, 8, learning_rate=5e-3, epochs=4)
    base_model, tokenizer, _ = load_base(minilm, head=SPAN_HEAD)  # the untrained head, for comparison
    goal = heads.SpanObjective(tokenizer, "bert", SPAN_HEAD)
    test = io.read_jsonl(questions / "test.jsonl")
    before = quality.squad(heads.extract_answers(base_model, goal, test, tokenizer.pad_token_id, 16, "cpu"),
                           [r["answers"] for r in test])
    record = train_run(run, minilm, questions, tmp_path / "weights", tmp_path / "train.json")
    assert record["train_examples"] > 64  # windows, not records
    assert record["validation_losses"][-1] < record["validation_losses"][0]
    generation = generate_run(run["method_spec"], "bert", minilm, tmp_path / "weights", questions / "test.jsonl",
                              tmp_path / "generations.jsonl", tmp_path / "generation.json",
                              {"batch_size": 32, "max_new_tokens": 4, "num_beams": 1}, 32, max_target_tokens=8)
    rows = io.read_jsonl(tmp_path / "generations.jsonl")
    after = quality.squad([r["prediction"] for r in rows], [r["answers"] for r in rows])
    assert all(r["prediction"] in next(t["context"] for t in test if t["id"] == r["id"]) for r in rows)
    assert after["exact_match"] >= 80 and after["exact_match"] > before["exact_match"] + 40, (before, after)
    assert generation["decoding"] == "best_span" and generation["test_loss"] > 0


def test_qlora_keeps_the_new_head_unquantized_and_trains_it(minilm):
    pytest.importorskip("bitsandbytes")
    from peftstudy.methods.quantized import quantized_modules

    spec = {"kind": "qlora", "bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "fp32",
            "gradient_checkpointing": False, "alpha": 16, "dropout": 0.0, "target_modules": ["query", "value"],
            "head": CLASSIFIER_HEAD}
    method = get_method("qlora")
    model, _, _ = method.load_base_for_training(minilm, spec, "cpu")
    quantized = quantized_modules(model)
    # 6 linear layers per block and the pooler (frozen, as under LoRA); never the new classifier.
    assert len(quantized) == 6 * 6 + 1 and not any("classifier" in name for name in quantized)
    model = method.prepare(model, "bert", spec, 8)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any("classifier" in name for name in trainable)
    assert sum(p.numel() for name, p in model.named_parameters() if p.requires_grad) == \
        6 * 2 * 8 * (384 + 384) + (384 * 2 + 2)


def test_head_choice_and_its_errors():
    bert, gpt2 = {"family": "bert"}, {"family": "gpt2"}
    assert heads.head_kind(bert, "classification") == "classifier" and heads.head_kind(bert, "extractive_qa") == "span"
    assert heads.head_kind(gpt2, "classification") == "lm"
    assert heads.head_kind({"family": "gpt2", "heads": {"classification": "classifier"}}, "classification") == "classifier"
    with pytest.raises(heads.HeadError, match="bert has no generation head"):
        heads.head_kind(bert, "generation")
    # Whether the cell's method can train the head is the study's check (tests/unit/study/test_config.py).
    assert heads.head_spec(bert, {"labels": LABELS}, "classification", TRAINING) == \
        {"kind": "classifier", "labels": LABELS, "module": "classifier"}
    span = heads.head_spec(bert, {"windowing": {"max_length": 384, "stride": 128}}, "extractive_qa", TRAINING)
    assert span == {"kind": "span", "module": "qa_outputs", "max_length": 384, "stride": 128, "max_answer_tokens": 30}
    assert heads.head_spec(bert, {}, "extractive_qa", TRAINING)["max_length"] == TRAINING["max_source_tokens"]
    assert heads.head_spec(gpt2, {"labels": LABELS}, "classification", TRAINING) == {"kind": "lm"}


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_span_windows_of_tokenizers_without_a_pair_template_still_mark_the_context(tiny_workspace, family):
    """GPT-2-style tokenizers add no special tokens to a pair, and leave the context of an overflowing
    window unmarked; the windows must still find it (and the answer in it)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_workspace / f"base-{family}")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    rng = random.Random(4)
    records = [qa_record(str(i), rng, answer_position=position) for i, position in enumerate([2, 25, 44])]
    head = {**SPAN_HEAD, "max_length": 64, "stride": 16}
    goal = heads.SpanObjective(tokenizer, family, head)
    windows, examples = goal.windows(records), goal.encode(records)
    assert len(windows) > len(records)
    assert all(any(offset is not None for offset in window["offsets"]) for window in windows)
    answered = set()
    for window, example in zip(windows, examples):
        start, end = example["labels"]
        if (start, end) != (0, 0):
            record = records[window["record"]]
            assert record["context"][window["offsets"][start][0] : window["offsets"][end][1]].strip() == record["answers"][0]
            answered.add(window["record"])
    assert answered == {0, 1, 2}
    with pytest.raises(heads.HeadError, match="its question takes .* raise windowing.max_length"):
        heads.SpanObjective(tokenizer, family, {**head, "max_length": 20, "stride": 8}).windows(records)


@pytest.mark.parametrize("family, head", [("gpt2", "classifier"), ("gpt2", "span"), ("t5", "classifier")])
def test_generative_families_train_and_reload_a_classifier_or_span_head(tiny_workspace, tmp_path, family, head):
    """Seed 004 puts a classifier head on GPT-2 and T5 and a span head on GPT-2 (under LoRA, QLoRA and SFT)."""
    rng = random.Random(5)
    if head == "classifier":
        spec = {"kind": "classifier", "labels": LABELS, "module": heads.HEAD_MODULES[("classifier", family)]}
        data = write_splits(tmp_path / "data", lambda i: {"id": i, "input": f"the film was {rng.choice(NAMES)}",
                                                          "reference": rng.choice(LABELS)}, {"train": 16, "validation": 8, "test": 8})
    else:
        spec = {**SPAN_HEAD, "max_length": 80, "stride": 16}
        data = write_splits(tmp_path / "data", lambda i: qa_record(i, rng), {"train": 16, "validation": 8, "test": 8})
    run = {**settings("lora", spec, 4, max_steps=2, batch_size=8), "family": family}
    run["method_spec"]["dropout"] = 0.0
    base_dir = tiny_workspace / f"base-{family}"
    record = train_run(run, base_dir, data, tmp_path / "weights", tmp_path / "train.json")
    from safetensors import safe_open

    with safe_open(tmp_path / "weights" / "adapter_model.safetensors", "pt") as stored:  # the trained head is saved
        assert any(f".{heads.HEAD_MODULES[(head, family)]}." in name for name in stored.keys()), list(stored.keys())
    assert record["steps"] == 2
    generate_run(run["method_spec"], family, base_dir, tmp_path / "weights", data / "test.jsonl",
                 tmp_path / "generations.jsonl", tmp_path / "generation.json",
                 {"batch_size": 8, "max_new_tokens": 4, "num_beams": 1, "labels": LABELS}, 32, max_target_tokens=8)
    model, tokenizer, _ = get_method("lora").load_for_inference(base_dir, tmp_path / "weights", "cpu", run["method_spec"])
    goal = heads.objective(spec, tokenizer, family, TRAINING)
    reloaded = heads.mean_loss(model, goal, goal.encode(io.read_jsonl(data / "validation.jsonl")), tokenizer.pad_token_id, 8, "cpu")
    assert reloaded == pytest.approx(record["best_validation_loss"], rel=1e-5)
    rows = io.read_jsonl(tmp_path / "generations.jsonl")
    if head == "classifier":
        assert {row["prediction"] for row in rows} <= set(LABELS)
    else:
        assert all(row["prediction"] in next(t["context"] for t in io.read_jsonl(data / "test.jsonl") if t["id"] == row["id"])
                   for row in rows)


def test_a_label_outside_the_heads_label_set_names_the_file(minilm, sentiment, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_text((sentiment / f"{split}.jsonl").read_text())
    io.write_json(data / "manifest.json", {})
    rows = io.read_jsonl(data / "train.jsonl")
    rows[3]["reference"] = "neutral"
    io.write_jsonl(data / "train.jsonl", rows)
    with pytest.raises(heads.HeadError, match=r"train.jsonl: labels outside the head's label set .*'neutral'"):
        train_run(settings("full", CLASSIFIER_HEAD), minilm, data, tmp_path / "weights", tmp_path / "train.json")
    assert not (tmp_path / "weights").exists()


def test_a_sentence_pair_is_two_segments_for_bert_and_one_text_for_gpt2(minilm, tiny_workspace):
    from transformers import AutoTokenizer

    record = {"id": "p", "input": "sentence 1: the cat sat sentence 2: a cat was sitting",
              "pair": ["the cat sat", "a cat was sitting"], "reference": "positive"}
    _, bert, _ = load_base(minilm, head=CLASSIFIER_HEAD)
    (example,) = heads.ClassifierObjective(bert, CLASSIFIER_HEAD, 32).encode([record])
    assert bert.decode(example["input_ids"]) == "[CLS] the cat sat [SEP] a cat was sitting [SEP]"
    assert example["token_type_ids"] == [0] * 5 + [1] * 5  # segment B: the second sentence and its [SEP]
    gpt2 = AutoTokenizer.from_pretrained(tiny_workspace / "base-gpt2")
    (example,) = heads.ClassifierObjective(gpt2, CLASSIFIER_HEAD, 64).encode([record])
    assert gpt2.decode(example["input_ids"]) == record["input"]  # no pair template: the record's one text
