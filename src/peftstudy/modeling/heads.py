"""Task heads: what a model is trained to output for a task, and how its output becomes a prediction.

``lm``: the text-to-text head every generative model has (batching.py): a label or an answer span is
generated text. ``classifier``: a linear layer over the pooled sequence (BERT's [CLS] pooler, GPT-2's
last token), one logit per label: seed 001/004's BERT and GPT-2 sentiment cells. ``span``: start and
end logits per token over a question + context window (SQuAD's extractive head): seed 004's BERT and
GPT-2 QA cells. BERT has no generation head, so its classification and QA cells use these by default.

Every head gives the training loop the same interface (an :class:`Objective`): encode records into
examples, and the summed loss of a batch with the count it is a sum over, so a step's loss is the mean
over its examples (or target tokens) however it is split into micro-batches.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from peftstudy.modeling.batching import (
    IGNORE_INDEX,
    batch_token_loss,
    collate,
    encode_pairs,
    first_target,
    summed_token_loss,
)
from peftstudy.modeling.families import generation_class, is_decoder_only

HEAD_KINDS = ("lm", "classifier", "span")
# The head a task uses when the model entry does not choose one: text-to-text, except where the family
# cannot generate.
FAMILY_DEFAULT_HEADS = {"bert": {"classification": "classifier", "extractive_qa": "span"}}
HEAD_TASKS = {"classifier": "classification", "span": "extractive_qa"}
# transformers' module holding each head's weights: trained by every method (peft's modules_to_save).
HEAD_MODULES = {
    ("classifier", "bert"): "classifier", ("classifier", "gpt2"): "score", ("classifier", "llama"): "score",
    ("classifier", "t5"): "classification_head",
    ("span", "bert"): "qa_outputs", ("span", "gpt2"): "qa_outputs", ("span", "llama"): "qa_outputs",
    ("span", "t5"): "qa_outputs",
}
# SQuAD's usual post-processing (the BERT paper's run_squad): best of the n top starts x n top ends.
SPAN_CANDIDATES = 20
DEFAULT_MAX_ANSWER_TOKENS = 30


class HeadError(ValueError):
    """A (model, dataset, method) cell whose head cannot be built; the message names the cell."""


def head_kind(model_spec: Mapping, task: str) -> str:
    family = model_spec["family"]
    chosen = (model_spec.get("heads") or {}).get(task) or FAMILY_DEFAULT_HEADS.get(family, {}).get(task) or "lm"
    if chosen == "lm" and family == "bert":
        raise HeadError(f"model family bert has no generation head: it cannot do {task} as text-to-text")
    if chosen != "lm" and HEAD_TASKS[chosen] != task:
        raise HeadError(f"a {chosen} head is for {HEAD_TASKS[chosen]} datasets, not {task}")
    return chosen


def head_spec(model_spec: Mapping, dataset_spec: Mapping, task: str, training: Mapping) -> dict:
    """The head of one cell, with everything that shapes it (its label set, its windows): a run setting.

    Whether the cell's method can train it is the method's to say (Method.trains_heads): the study checks
    that (study.settings.cell_head), as this module knows no method.
    """
    kind = head_kind(model_spec, task)
    if kind == "lm":
        return {"kind": "lm"}
    module = HEAD_MODULES[(kind, model_spec["family"])]
    if kind == "classifier":
        return {"kind": kind, "labels": list(dataset_spec["labels"]), "module": module}
    windowing = dataset_spec.get("windowing") or {}
    max_length = windowing.get("max_length", training["max_source_tokens"])
    stride = windowing.get("stride", max_length // 4)
    if not 0 < stride < max_length:
        raise HeadError(f"span windows: stride {stride} must be between 0 and the window length {max_length}")
    return {"kind": kind, "module": module, "max_length": max_length, "stride": stride,
            "max_answer_tokens": windowing.get("max_answer_tokens", DEFAULT_MAX_ANSWER_TOKENS)}


def model_class(family: str, head: Mapping | None):
    import transformers

    kind = (head or {}).get("kind", "lm")
    if kind == "classifier":
        return transformers.AutoModelForSequenceClassification
    if kind == "span":
        return transformers.AutoModelForQuestionAnswering
    return generation_class(family)


def from_pretrained_options(head: Mapping | None, tokenizer) -> dict:
    """Keyword arguments that size a head (its labels) and let it find the last real token (pad id)."""
    if not head or head["kind"] == "lm":
        return {}
    options = {"pad_token_id": tokenizer.pad_token_id}
    if head["kind"] == "classifier":
        labels = head["labels"]
        options.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                       label2id={label: index for index, label in enumerate(labels)})
    return options


def model_inputs(batch: Mapping) -> dict:
    return {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}


class Objective:
    """Encoding and loss of one head; the training loop only sees this."""

    def encode(self, records: Sequence[Mapping]) -> list[dict]:
        raise NotImplementedError

    def loss(self, model, batch) -> tuple:
        """(summed loss as a tensor, number of targets it sums over)."""
        raise NotImplementedError

    def summed_loss(self, model, batch, logits_from: int = 0):
        """The summed loss alone: training knows its target counts already, and reading one back from the
        device would wait for the GPU on every micro-batch. ``logits_from``: no example's targets start before
        that position (see batching.batch_token_loss)."""
        return self.loss(model, batch)[0]

    @staticmethod
    def logits_from(example: Mapping) -> int:
        """The first position whose output this example's loss needs (0: all of them)."""
        return 0

    @staticmethod
    def targets(example: Mapping) -> int:
        """How many targets an example adds to a step's count (its tokens for lm, 1 otherwise)."""
        return 1


class TextObjective(Objective):
    def __init__(self, tokenizer, family: str, max_source: int, max_target: int):
        self.tokenizer, self.family, self.limits = tokenizer, family, (max_source, max_target)

    def encode(self, records):
        return encode_pairs(records, self.tokenizer, self.family, *self.limits)

    def loss(self, model, batch):
        return summed_token_loss(model, batch, self.family)

    def summed_loss(self, model, batch, logits_from: int = 0):
        return batch_token_loss(model, batch, self.family, logits_from)

    def logits_from(self, example):
        # The output at the position before a decoder-only example's first target predicts it.
        return max(first_target(example) - 1, 0) if is_decoder_only(self.family) else 0

    @staticmethod
    def targets(example):
        return sum(label != IGNORE_INDEX for label in example["labels"])


class ClassifierObjective(Objective):
    def __init__(self, tokenizer, head: Mapping, max_source: int):
        self.tokenizer, self.max_source = tokenizer, max_source
        self.label_index = {label: index for index, label in enumerate(head["labels"])}

    def encode_inputs(self, records):
        # A sentence pair (GLUE's MRPC, RTE) goes in as two segments where the tokenizer marks them (BERT's
        # [CLS] a [SEP] b [SEP] with segment ids); elsewhere as the record's one-text input.
        pair_aware = self.tokenizer.num_special_tokens_to_add(pair=True) > self.tokenizer.num_special_tokens_to_add()
        if pair_aware and records and all("pair" in r for r in records):
            encoded = self.tokenizer([r["pair"][0] for r in records], [r["pair"][1] for r in records],
                                     truncation="longest_first", max_length=self.max_source)
        else:
            encoded = self.tokenizer([r["input"] for r in records], truncation=True, max_length=self.max_source)
        keys = [k for k in ("input_ids", "token_type_ids") if k in encoded]
        return [{k: encoded[k][i] for k in keys} for i in range(len(records))]

    def encode(self, records):
        unknown = sorted({r["reference"] for r in records} - set(self.label_index))
        if unknown:
            raise HeadError(f"labels outside the head's label set {sorted(self.label_index)}: {unknown[:5]}")
        return [{**inputs, "labels": [self.label_index[r["reference"]]]}
                for inputs, r in zip(self.encode_inputs(records), records)]

    def loss(self, model, batch):
        import torch.nn.functional as F

        logits = model(**model_inputs(batch)).logits.float()
        labels = batch["labels"][:, 0]
        return F.cross_entropy(logits, labels, reduction="sum"), int(labels.numel())


class SpanObjective(Objective):
    """Question + context windows of ``max_length`` tokens overlapping by ``stride`` (SQuAD's doc stride).

    Each window is one example: its labels are the answer's first and last token, or the first token
    (BERT's [CLS]) when the answer is not wholly inside it, as in the BERT paper's SQuAD recipe.
    """

    def __init__(self, tokenizer, family: str, head: Mapping):
        if not getattr(tokenizer, "is_fast", False):
            raise HeadError("span windows need a fast tokenizer (character offsets of every token)")
        self.tokenizer, self.head = tokenizer, head
        # GPT-2 tokenizers add no separator: the question ends with EOS, as seed 004's GPT-2 QA cells do.
        self.question_suffix = tokenizer.eos_token if is_decoder_only(family) else ""

    def windows(self, records) -> list[dict]:
        """Every window of every record, with its offsets into the context (None outside the context)."""
        questions = [r["question"] + self.question_suffix for r in records]
        room = self.head["max_length"] - self.tokenizer.num_special_tokens_to_add(pair=True)
        for record, length in zip(records, map(len, self.tokenizer(questions, add_special_tokens=False)["input_ids"])):
            if room - length <= self.head["stride"]:  # the tokenizer would panic; say which record and what to change
                raise HeadError(f"record {record['id']!r}: its question takes {length} of the {self.head['max_length']}"
                                f"-token window, leaving no more than the stride ({self.head['stride']}) for the "
                                "context: raise windowing.max_length or lower windowing.stride")
        encoded = self.tokenizer(
            questions, [r["context"] for r in records],
            truncation="only_second", max_length=self.head["max_length"], stride=self.head["stride"],
            return_overflowing_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True)
        windows = []
        for index in range(len(encoded["input_ids"])):
            sequence_ids = encoded.sequence_ids(index)
            special = encoded["special_tokens_mask"][index]
            # Context: sequence 1. A tokenizer without a pair template (GPT-2's) leaves the context of an
            # overflowing window unmarked (None); it is every non-special token after the question.
            question_end = max((p for p, s in enumerate(sequence_ids) if s == 0), default=-1) + 1
            offsets = [offset if sequence_ids[p] == 1 or (sequence_ids[p] is None and not special[p] and p >= question_end)
                       else None for p, offset in enumerate(encoded["offset_mapping"][index])]
            window = {"input_ids": encoded["input_ids"][index], "record": encoded["overflow_to_sample_mapping"][index],
                      "offsets": offsets}
            if "token_type_ids" in encoded:
                window["token_type_ids"] = encoded["token_type_ids"][index]
            windows.append(window)
        return windows

    def encode(self, records):
        examples = []
        for window in self.windows(records):
            record = records[window["record"]]
            start_char = record["answer_start"][0]
            end_char = start_char + len(record["answers"][0])
            start = end = 0
            inside = [p for p, offset in enumerate(window["offsets"]) if offset is not None]
            if window["offsets"][inside[0]][0] <= start_char and window["offsets"][inside[-1]][1] >= end_char:
                start = next(p for p in inside if window["offsets"][p][1] > start_char)
                end = next(p for p in reversed(inside) if window["offsets"][p][0] < end_char)
            examples.append({k: window[k] for k in ("input_ids", "token_type_ids") if k in window}
                            | {"labels": [start, end]})
        return examples

    def loss(self, model, batch):
        import torch.nn.functional as F

        output = model(**model_inputs(batch))
        starts, ends = batch["labels"][:, 0], batch["labels"][:, 1]
        start_loss = F.cross_entropy(output.start_logits.float(), starts, reduction="sum")
        end_loss = F.cross_entropy(output.end_logits.float(), ends, reduction="sum")
        return (start_loss + end_loss) / 2, int(starts.numel())


def objective(head: Mapping | None, tokenizer, family: str, training: Mapping) -> Objective:
    kind = (head or {}).get("kind", "lm")
    if kind == "classifier":
        return ClassifierObjective(tokenizer, head, training["max_source_tokens"])
    if kind == "span":
        return SpanObjective(tokenizer, family, head)
    return TextObjective(tokenizer, family, training["max_source_tokens"], training["max_target_tokens"])


def _batches(examples, batch_size, pad_token_id, device):
    for start in range(0, len(examples), batch_size):
        chunk = [{k: v for k, v in e.items() if k in ("input_ids", "token_type_ids", "labels")}
                 for e in examples[start : start + batch_size]]
        yield {k: v.to(device) for k, v in collate(chunk, pad_token_id).items()}


def mean_loss(model, goal: Objective, examples, pad_token_id: int, batch_size: int, device: str) -> float:
    """The objective's mean over examples (test loss, as seed 004 reports it)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in _batches(examples, batch_size, pad_token_id, device):
            loss, n = goal.loss(model, batch)
            total, count = total + float(loss), count + n
    return total / max(count, 1)


def classify(model, goal: ClassifierObjective, records, labels, pad_token_id, batch_size, device) -> list[str]:
    """Each record's label: the arg-max logit (ties go to the first declared label)."""
    import torch

    model.eval()
    predictions = []
    with torch.no_grad():
        for batch in _batches(goal.encode_inputs(records), batch_size, pad_token_id, device):
            predictions.extend(labels[i] for i in model(**model_inputs(batch)).logits.argmax(dim=-1).tolist())
    return predictions


def best_span(start_logits, end_logits, offsets, max_answer_tokens: int, candidates: int = SPAN_CANDIDATES):
    """(score, start char, end char) of the best span inside the context of one window, or None.

    A span is valid when both ends are context tokens, end >= start and it has at most
    max_answer_tokens tokens; its score is start logit + end logit.
    """
    order_start = sorted(range(len(start_logits)), key=lambda i: -start_logits[i])[:candidates]
    order_end = sorted(range(len(end_logits)), key=lambda i: -end_logits[i])[:candidates]
    best = None
    for s in order_start:
        for e in order_end:
            if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_tokens:
                continue
            score = start_logits[s] + end_logits[e]
            if best is None or score > best[0]:
                best = (score, offsets[s][0], offsets[e][1])
    return best


def extract_answers(model, goal: SpanObjective, records, pad_token_id, batch_size, device) -> list[str]:
    """Each record's answer: the best-scoring valid span over all its windows (empty if none is valid)."""
    import torch

    model.eval()
    windows = goal.windows(records)
    best: dict[int, tuple] = {}
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            inputs = [{k: w[k] for k in ("input_ids", "token_type_ids") if k in w} for w in chunk]
            batch = {k: v.to(device) for k, v in collate(inputs, pad_token_id).items()}
            output = model(**model_inputs(batch))
            for row, window in enumerate(chunk):
                width = len(window["input_ids"])
                span = best_span(output.start_logits[row, :width].float().tolist(),
                                 output.end_logits[row, :width].float().tolist(), window["offsets"],
                                 goal.head["max_answer_tokens"])
                if span is not None and (window["record"] not in best or span[0] > best[window["record"]][0]):
                    best[window["record"]] = span
    return [records[i]["context"][best[i][1] : best[i][2]].strip() if i in best else "" for i in range(len(records))]
