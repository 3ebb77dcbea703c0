"""The data card: split rows from the manifest, token rows counted with each model's tokenizer."""

import shutil

from transformers import AutoTokenizer

from peftstudy import io
from peftstudy.data import card
from peftstudy.data.prepare import data_card
from peftstudy.report.data_card import data_card_latex

LIMITS = {("tiny", "gpt2"): {"max_source_tokens": 6, "max_target_tokens": 9}}


def test_rows_and_latex(tiny_workspace, tmp_path):
    data = tmp_path / "tiny"
    shutil.copytree(tiny_workspace / "data", data)
    splits = {name: io.read_jsonl(data / f"{name}.jsonl") for name in ("train", "validation", "test")}
    leakage = {"mode": "drop", "splits": {"validation": {"exact": 1, "near": 0, "dropped": 1},
                                          "test": {"exact": 0, "near": 0, "dropped": 0}}}
    io.write_json(data / "manifest.json", {"card": data_card(splits, "generation"), "leakage": leakage})
    rows = card.data_card_rows({"tiny": data}, {"gpt2": tiny_workspace / "base-gpt2"}, LIMITS)

    split_rows = {row["split"]: row for row in rows if not row["model"]}
    assert split_rows["train"]["rows"] == 192 and split_rows["validation"]["leaked_dropped"] == "1"
    assert split_rows["train"]["input_words_mean"] == 5  # "a | b | c"

    (token_row,) = [row for row in rows if row["model"]]
    tokenizer = AutoTokenizer.from_pretrained(tiny_workspace / "base-gpt2")
    inputs = [len(tokenizer(r["input"], add_special_tokens=False)["input_ids"]) for r in splits["train"]]
    references = [len(tokenizer(r["reference"], add_special_tokens=False)["input_ids"]) for r in splits["train"]]
    assert token_row["input_tokens_mean"] == round(sum(inputs) / len(inputs), 2)
    assert token_row["input_tokens_p95"] == sorted(inputs)[182]  # nearest rank: the ceil(0.95 * 192) = 183rd
    assert token_row["inputs_truncated_pct"] == round(100 * sum(n > 6 for n in inputs) / 192, 1)
    text_words = sum(len(r["input"].split()) + len(r["reference"].split()) for r in splits["train"])
    assert token_row["tokens_per_word"] == round((sum(inputs) + sum(references)) / text_words, 2)
    assert token_row["references_truncated_pct"] == round(100 * sum(n >= 9 for n in references) / 192, 1)

    latex = data_card_latex(rows)
    assert r"\label{tab:data_card}" in latex and latex.count(r"\\") >= 3 + 1 + 2
    header, row = (line for line in latex.splitlines() if line.startswith(("Dataset & Model", "tiny & gpt2")))
    assert "Tok./word" in header and header.count(" & ") == row.count(" & ") == 8
    assert f" & {token_row['tokens_per_word']} & " in row
