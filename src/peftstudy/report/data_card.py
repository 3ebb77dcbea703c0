"""The data card's two LaTeX tables, rendered from the rows data.card measures."""

from __future__ import annotations

from peftstudy.report.latex import latex_escape


def data_card_latex(rows: list[dict]) -> str:
    """Two tables: the splits (words, labels, leakage), then each model's token view of the training split."""
    def cell(value):
        return latex_escape("" if value is None or value == "" else str(value))

    splits = [r for r in rows if not r["model"]]
    tokens = [r for r in rows if r["model"]]
    lines = [r"\begin{table}[ht]", r"\centering\small", r"\caption{Data card: each prepared split (lengths in words,"
             r" mean and 95th percentile; label shares for classification; evaluation items dropped as near or exact"
             r" duplicates of training items; evaluation items left in the pretraining corpus of the bases pretrained here,"
             r" after its decontamination). Below: token lengths of the training split under each model's"
             r" tokenizer, its tokens per word (inputs and references together), and the share beyond the study's"
             r" token limits (truncated in training).}",
             r"\label{tab:data_card}", r"\begin{tabular}{llrrrrrlrr}", r"\toprule",
             r"Dataset & Split & Rows & In.\ mean & In.\ p95 & Ref.\ mean & Ref.\ p95 & Labels & Leaked & In pretr.\ \\",
             r"\midrule"]
    lines += [" & ".join(cell(r[k]) for k in ("dataset", "split", "rows", "input_words_mean", "input_words_p95",
                                                "reference_words_mean", "reference_words_p95", "labels",
                                                "leaked_dropped", "in_pretraining")) + r" \\" for r in splits]
    lines += [r"\bottomrule", r"\end{tabular}", r"\vspace{1em}", "", r"\begin{tabular}{llrrrrrrr}", r"\toprule",
              r"Dataset & Model & In.\ tok.\ mean & In.\ p95 & Ref.\ tok.\ mean & Ref.\ p95 & Tok./word & In.\ trunc.\ \%"
              r" & Ref.\ trunc.\ \% \\",
              r"\midrule"]
    lines += [" & ".join(cell(r[k]) for k in ("dataset", "model", "input_tokens_mean", "input_tokens_p95",
                                                "reference_tokens_mean", "reference_tokens_p95", "tokens_per_word",
                                                "inputs_truncated_pct", "references_truncated_pct")) + r" \\"
              for r in tokens]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
