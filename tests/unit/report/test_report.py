import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from peftstudy import stats
from peftstudy.claims import verdicts
from peftstudy.claims.table import claims_latex
from peftstudy.data import card as card_columns
from peftstudy.provenance import canonical_hash
from peftstudy.report import (
    baseline_tables,
    data_card,
    human_tables,
    metric_tables,
    paper,
    stats_tables,
    tables,
)
from peftstudy.report.adaptive_table import adaptive_latex, adaptive_outcome
from peftstudy.report.integrity_table import integrity_latex
from peftstudy.stats import pairwise_comparisons, summarise
from peftstudy.stats.integrity import check_table
from peftstudy.study.config import STATISTICS_DEFAULTS


def compare(frame):
    return pairwise_comparisons(frame, "full", "holm", 0.05, 0.95, {"bleu4": 0.5})

STUDY = {
    "study": "t", "title": "T & test_study", "seeds": [1, 2, 3],
    "methods": {"full": {"kind": "full"}, "lora": {"kind": "lora", "ranks": [4, 8]}},
    "models": {"m_1": {"family": "gpt2", "source": "scratch", "pretraining": {"steps": 1, "corpus": "c"}}},
    "datasets": {"d": {"source": "synthetic", "corpus": "synthetic"},
                 "c_1": {"source": "snapshot", "corpus": "debian_sections"},
                 "q": {"source": "snapshot", "corpus": "debian_package_qa"}},
    "training": {"learning_rate": 1e-3, "epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1},
    "generation": {"batch_size": 1}, "exclusions": [],
    "matrix": [{"datasets": ["d"], "models": ["m_1"], "methods": ["full", "lora"]},
               {"datasets": ["c_1", "q"], "models": ["m_1"], "methods": ["full", "lora"], "ranks": [8]}],
    "statistics": {"confidence": 0.95, "baseline_method": "full", "alpha": 0.05, "correction": "holm",
                   "practical_thresholds": {"bleu4": 0.5}},
    "report": {"table1_dataset": "d"},
}


def metrics():
    rows = []
    values = {("full", ""): [30, 31, 32], ("lora", "4"): [20, 21, 18.5], ("lora", "8"): [30, 31.5, 31]}
    for (method, rank), bleu in values.items():
        for seed, value in enumerate(bleu):
            for metric, v in (("bleu4", value), ("rouge_l", value + 10), ("trainable_percent", 100 if method == "full" else 1.0),
                              ("train_time_s", 2.0), ("stored_bytes", 1e6), ("trainable_parameters", 10)):
                rows.append({"study": "t", "dataset": "d", "model": "m_1", "method": method, "rank": rank,
                             "seed": seed, "metric": metric, "value": v})
    task_values = {"c_1": {"accuracy": [80, 90], "macro_f1": [70, 75], "invalid_label_rate": [0, 5],
                           "precision[b_x]": [60, 70], "recall[b_x]": [50, 50], "f1[b_x]": [55, 58],
                           "precision[a]": [90, 100], "recall[a]": [95, 85], "f1[a]": [92, 91]},
                   "q": {"exact_match": [40, 44], "squad_f1": [50, 52]}}
    for dataset, by_metric in task_values.items():
        for method, rank, shift in (("full", "", 0), ("lora", "8", -10)):
            for metric, pair in by_metric.items():
                for seed, value in enumerate(pair):
                    rows.append({"study": "t", "dataset": dataset, "model": "m_1", "method": method, "rank": rank,
                                 "seed": seed, "metric": metric, "value": value + shift})
    return pd.DataFrame(rows)


def test_latex_escape_covers_specials():
    assert paper.latex_escape("a_b & 50% #1 {x} ~ ^ \\") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}")


def test_table1_orders_rows_and_marks_significance():
    frame = metrics()
    table = tables.table1(summarise(frame), compare(frame), STUDY)
    assert list(zip(table["method"], table["rank"])) == [("full", ""), ("lora", "4"), ("lora", "8")]
    assert table.loc[1, "bleu4_significant"] and not table.loc[2, "bleu4_significant"]
    assert table.loc[0, "bleu4_mean"] == pytest.approx(31) and table.loc[0, "n"] == 3
    tex = tables.table1_latex(table, STUDY)
    assert "19.83 $\\pm$ 1.26$^\\dagger$" in tex and r"\texttt{m\_1}" in tex
    assert table.loc[1, "bleu4_test"] == "paired_t" and table.loc[1, "bleu4_p_corrected"] < 0.05


def test_table1_shows_the_trivial_baselines_and_flags_cells_not_above_the_best(tmp_path):
    from peftstudy import io
    from peftstudy.metrics import baseline_scoring

    frame = metrics()
    for dataset, name, kind, bleu in (("d", "copy_input", "copy_input", 25.0), ("d", "stuck", "constant", 31.2),
                                      ("q", "overlap_window", "overlap_window", 99.0)):
        io.write_json(tmp_path / dataset / name / "metrics.json", {
            "baseline": {"name": name, "kind": kind}, "metrics": {"bleu4": bleu, "rouge_l": None},
            "units": {"bleu4": "0-100", "rouge_l": "F1 x100"}, "notes": {"rouge_l": "undefined"}})
    baseline_scoring.aggregate_baselines(sorted(tmp_path.glob("*/*/metrics.json")), tmp_path / "baselines.csv", study="t")
    trivial = stats.read_table(tmp_path / "baselines.csv")
    assert len(trivial) == 6 and set(trivial["dataset"]) == {"d", "q"}
    table = tables.table1(summarise(frame), compare(frame), STUDY, trivial)
    cells = table[~table["method"].str.startswith("baseline:")]
    # BLEU means: full 31, lora r4 19.83, lora r8 30.83: none above the constant's 31.2; ROUGE-L has no baseline
    assert cells["bleu4_not_above_trivial"].tolist() == [True, True, True]
    assert not cells["rouge_l_not_above_trivial"].any()
    assert table["method"].tolist()[3:] == ["baseline:copy_input", "baseline:stuck"]  # only the Table-1 dataset's
    tex = tables.table1_latex(table, STUDY)
    assert "31.00 $\\pm$ 1.00$^\\ddagger$ & 41.00 $\\pm$ 1.00 &" in tex and "$^\\ddagger$: not above every gating trivial baseline" in tex
    assert "\\textit{Trivial} & Copy of an input field & -- & 25.00 & -- & " in tex  # ROUGE-L undefined
    assert " & Constant sentence (stuck) & -- & 31.20 & " in tex
    assert "ddagger" not in tables.table1_latex(tables.table1(summarise(frame), compare(frame), STUDY), STUDY)


def cells_against_baselines():
    """Two cells of dataset d against a copy and a nearest-neighbour baseline (ROUGE-L), as the stats write them."""
    import numpy as np

    from peftstudy.stats import against_baselines as ab

    ids, rng = [str(i) for i in range(40)], np.random.default_rng(0)
    runs = {f"{variant}{seed}": {"run": {"study": "t", "dataset": "d", "model": "m_1", "variant": variant, "seed": seed},
                                 "example_scores": {"ids": ids, "scores": {"rouge_l": list(mean + rng.normal(0, 1, 40))}}}
            for variant, mean in (("full", 30), ("lora-r4", 20)) for seed in (1, 2)}
    baselines = {f"b/d/{name}/metrics.json": {"baseline": {"name": name, "kind": name}, "task": "generation",
                                              "example_scores": {"ids": ids, "scores": {"rouge_l": [mean] * 40}}}
                 for name, mean in (("copy_input", 20.5), ("nearest_neighbour", 35.0))}
    table = ab.compare_with_baselines(ab.cell_example_scores(runs), baselines, resamples=300)
    return table, ab.learned(table, {"d": "generation"})


def test_learned_table_marks_cells_above_every_gating_baseline_and_lists_the_baselines():
    against, learned = cells_against_baselines()
    table = baseline_tables.learned_table(against, learned, STUDY)
    assert table["method"].tolist()[:2] == ["full", "lora"] and table["baseline"].tolist()[2:] == ["copy_input", "nearest_neighbour"]
    assert table["rouge_l_beats_gates"].tolist()[:2] == [True, False] and table["learned"].tolist()[:2] == [True, False]
    tex = baseline_tables.learned_latex(table, STUDY, 0.95)
    full = table.iloc[0]
    assert f"{full['rouge_l_mean']:.2f} [{full['rouge_l_ci_low']:.2f}, {full['rouge_l_ci_high']:.2f}]$^\\star$ & -- & yes" in tex
    assert "Nearest training example's reference (no gate) & 35.00 [35.00, 35.00]" in tex
    # Table 1 flags by the intervals where a metric has them: lora r4's ROUGE-L mean is below copy's anyway; full's
    # interval is above it. Without the comparisons it falls back to the means (none given here: no flag).
    rows = tables.table1(summarise(metrics()), compare(metrics()), STUDY, None, against)
    flags = dict(zip(zip(rows["method"], rows["rank"]), rows["rouge_l_not_above_trivial"]))
    assert flags[("full", "")] is False and flags[("lora", "4")] is True


def test_a_quality_claim_on_cells_that_did_not_learn_is_not_testable():
    _, learned = cells_against_baselines()
    study = {**STUDY, "study": "t", "claims": [
        {"id": "q", "text": "LoRA near full", "source": "s", "reported": "r", "checks": [
            {"kind": "ratio", "metric": "rouge_l", "dataset": "d", "model": "m_1", "a": {"method": "lora", "rank": 4},
             "b": {"method": "full"}, "expected": [0.9, 1.1]},
            {"kind": "ratio", "metric": "train_time_s", "dataset": "d", "model": "m_1", "a": {"method": "lora", "rank": 4},
             "b": {"method": "full"}, "expected": [0.1, 10]}]}]}
    frame = metrics()
    rows = verdicts.evaluate_claims(study, frame, summarise(frame), None, learned=learned)
    assert rows["verdict"].tolist()[0] == verdicts.NOT_TESTABLE
    assert rows["reason"].tolist()[0].startswith("lora r4 on d, m_1 did not learn its task (ROUGE-L not above copy")
    without = verdicts.evaluate_claims(study, frame, summarise(frame), None)
    assert "did not learn" not in without["reason"].iloc[0]  # without the gate, the check reads the values
    assert "did not learn" not in rows["reason"].tolist()[1]


def test_paper_compiles_to_pdf(tmp_path):
    frame = metrics()
    summary, tests = summarise(frame), compare(frame)
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "table1_methods.tex").write_text(tables.table1_latex(tables.table1(summary, tests, STUDY), STUDY))
    (tmp_path / "tables" / "significance.tex").write_text(tables.significance_latex(tests, STUDY))
    against, learned = cells_against_baselines()
    (tmp_path / "tables" / "learned.tex").write_text(
        baseline_tables.learned_latex(baseline_tables.learned_table(against, learned, STUDY), STUDY, 0.95))
    frame = frame.assign(unit="", device="cpu", note="")
    for name in metric_tables.TABLE_NAMES:
        table = metric_tables.group_table(name, summary, frame, STUDY)
        notes = metric_tables.group_notes(name, frame, STUDY)
        (tmp_path / "tables" / f"{name}.tex").write_text(metric_tables.group_latex(name, table, notes, STUDY))
    empty = pd.DataFrame()
    (tmp_path / "tables" / "table2_human.tex").write_text(human_tables.table2_latex(empty, empty, STUDY, "human_eval/t/ratings"))
    (tmp_path / "tables" / "human_errors.tex").write_text(human_tables.errors_latex(empty, STUDY))
    (tmp_path / "figures").mkdir()
    figure_panels(tmp_path, tmp_path / "figures" / "output_clusters.pdf")
    for name in paper.FIGURES:  # the figures' own tests draw them; here any PDF stands in
        if name != "output_clusters":
            shutil.copy(tmp_path / "figures" / "output_clusters.pdf", tmp_path / "figures" / f"{name}.pdf")
    study = {**STUDY, "statistics": {**STATISTICS_DEFAULTS, **STUDY["statistics"]}}
    compared = stats.select_metrics(frame, study["statistics"]["compare_metrics"])
    inputs = {"summary": summary, "power": stats.seed_power(tests), "anova_oneway": stats.one_way_anova(compared),
              "anova_twoway": stats.two_way_anova(compared), "correlations": stats.metric_correlations(compared),
              "rank_study": stats.rank_study(frame, "lora", bootstrap_resamples=200)}
    for name in stats_tables.STATS_TABLES:
        (tmp_path / "tables" / f"{name}.tex").write_text(stats_tables.build(name, inputs, study)[1])
    card_row = dict.fromkeys(card_columns.COLUMNS, "")
    card = [{**card_row, "dataset": "d", "split": "train", "rows": 8, "labels": "a 50%; b 50%"},
            {**card_row, "dataset": "d", "split": "train", "model": "m_1", "rows": 8, "input_tokens_mean": 12.5}]
    (tmp_path / "tables" / "data_card.tex").write_text(data_card.data_card_latex(card))
    checks = verdicts.evaluate_claims(study, frame, summary, inputs["rank_study"])  # no claims: an empty table
    (tmp_path / "tables" / "claims_check.tex").write_text(claims_latex(checks, study))
    (tmp_path / "tables" / "integrity.tex").write_text(
        integrity_latex(check_table(frame), source="metrics.csv & its runs", formulas=(9, 9)))
    settings = {**STATISTICS_DEFAULTS, "compare_metrics": ["bleu4"]}
    joined, summary, _ = adaptive_outcome(frame, settings)
    (tmp_path / "tables" / "adaptive_seeds.tex").write_text(adaptive_latex(joined, summary, settings))
    context = {
        "config_hash": "0" * 64, "data_counts": {"d": {"train": 8, "validation": 1, "test": 1}},
        "data_checksums": {"d": "f" * 64}, "model_parameters": {"m_1": 1000}, "model_notes": {"m_1": "tiny"},
        "methods_used": ["full", "lora"], "code_versions": ["abc"], "packages": {"torch": "2.13.0"},
        "hardware": {"device": "cpu", "cpu": "x86 & co", "python": "3.11"}, "run_count": 9, "runs_per_dataset": {"d": 9},
        "limitations": r"\item tiny", "metric_signatures": {"bleu4": "nrefs:1|tok:13a"},
        "hyperparameter_rows": [["lora", "lora", "all", "0.001", 1, "2x1", "ranks=[4, 8], alpha=16"]],
        "quantization_rows": [["m_1", "qlora r=8", "4-bit NF4, double", "0.014", "0.098", "85.9"]],
        **paper.provenance_tables([(_run(seed), _stages(seed)) for seed in (1, 2)]),
    }
    (tmp_path / "paper.tex").write_text(paper.paper_latex(STUDY, context))
    assert r"\subsection{Per-run provenance}" in (tmp_path / "paper.tex").read_text()
    text = re.sub(r"\\input\{(tables/[^}]+)\}", lambda m: (tmp_path / m.group(1)).read_text(),
                  (tmp_path / "paper.tex").read_text())
    refs, labels = set(re.findall(r"\\(?:auto)?ref\{([^}]+)\}", text)), set(re.findall(r"\\label\{([^}]+)\}", text))
    assert {"fig:correlation_heatmap", "fig:rank_saturation", "tab:methods"} <= refs
    assert refs <= labels, f"referenced, never labelled: {sorted(refs - labels)}"
    paper.build_pdf(tmp_path / "paper.tex", tmp_path / "paper.pdf")  # refuses a log with an undefined reference
    assert (tmp_path / "paper.pdf").read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftotext"):  # no page left with a heading alone (and its number) by floats piling up
        import subprocess

        pages = subprocess.run(["pdftotext", "-layout", str(tmp_path / "paper.pdf"), "-"], capture_output=True,
                               text=True, check=True).stdout.split("\f")[:-1]
        lines = [sum(1 for line in page.splitlines() if line.strip()) for page in pages]
        assert all(n >= 3 for n in lines), f"near-empty pages (text lines per page): {lines}"


def test_undefined_reference_fails_the_build_and_names_the_label(tmp_path):
    (tmp_path / "paper.tex").write_text("\\documentclass{article}\\begin{document}\n"
                                        "See Figure~\\ref{fig:absent}.\\label{sec:here} \\ref{sec:here}\n\\end{document}\n")
    with pytest.raises(RuntimeError, match="undefined reference.*fig:absent"):
        paper.build_pdf(tmp_path / "paper.tex", tmp_path / "paper.pdf")
    assert not (tmp_path / "paper.pdf").exists()
    log = "LaTeX Warning: Reference `fig:a' on page 3 undefined on input line 9.\nLaTeX Warning: There were undefined references.\n"
    assert paper.undefined_references(log) == ["fig:a"]
    assert paper.undefined_references("LaTeX Warning: Label(s) may have changed.\n") == []


def test_figures_float_under_their_heading_not_alone_on_float_pages():
    """[p] floats left the "Figures" heading alone on an otherwise empty page; [htbp] at most 0.7 of the page lets
    the first figure sit under it."""
    study, context = paper_inputs()
    text = paper.paper_latex(study, context)
    assert text.count(r"\begin{figure}[htbp]") == len(paper.FIGURES) and r"\begin{figure}[p]" not in text
    assert "height=0.7\\textheight" in text


GOLDEN = Path(__file__).with_name("golden")


def paper_inputs(full: bool = True):
    """A study and a paper context that reach every part of paper.tex (full), or its optional parts left out."""
    study = {**STUDY, "description": "A 50% description_", "report": {**STUDY["report"], "authors": "A & B"},
             "exclusions": [{"dataset": "d", "method": "lora", "rank": 4, "reason": "too_slow & big"}]}
    context = {
        "config_hash": "0123456789abcdef" * 4, "data_counts": {"d": {"train": 8, "validation": 1, "test": 1}},
        "data_checksums": {"d": "f" * 64, "c_1": "a" * 64}, "model_parameters": {"m_1": 1000}, "model_notes": {"m_1": "tiny"},
        "methods_used": ["full", "lora"], "code_versions": ["abc", "d_e"], "packages": {"torch": "2.13.0", "x": "", "a&b": "1"},
        "hardware": {"device": "cpu", "cpu": "x86 & co", "python": "3.11", "torch_threads": 2}, "run_count": 9,
        "runs_per_dataset": {"d": 9}, "limitations": "\\item tiny\n\\item few", "metric_signatures": {"bleu4": "nrefs:1|tok:13a", "x": ""},
        "hyperparameter_rows": [["lora", "lora", "all", "0.001", 1, "2x1", "ranks=[4, 8], alpha=16"]],
        "quantization_rows": [["m_1", "qlora r=8", "4-bit NF4, double", "0.014", "0.098", "85.9"]],
        "scoring_models": ["bertscore: org/roberta_x@" + "a" * 40, "embeddings: all-MiniLM-L6-v2 from the Python package p 1.0"],
        **paper.provenance_tables([(_run(seed), _stages(seed, threads=seed)) for seed in (1, 2)]),
    }
    if not full:
        study = {**STUDY, "exclusions": []}
        context.update(quantization_rows=[], metric_signatures={}, provenance_rows=[], hardware={}, scoring_models=[])
    return study, context


@pytest.mark.parametrize("full", [True, False], ids=["full", "bare"])
def test_paper_template_renders_what_the_f_string_wrote(full):
    """paper.tex byte for byte as paper_latex wrote it before its LaTeX moved to report/templates/paper.tex: the golden
    files were written by that code. A deliberate change to the paper's text: rewrite them and review the diff."""
    study, context = paper_inputs(full)
    expected = (GOLDEN / f"paper_{'full' if full else 'bare'}.tex").read_bytes().decode()
    assert paper.paper_latex(study, context) == expected


def test_paper_template_refuses_a_missing_value():
    import jinja2

    study, context = paper_inputs()
    values = paper.paper_values(study, context)
    del values["title"]
    with pytest.raises(jinja2.UndefinedError, match="title"):
        paper.render("paper.tex", values)


def test_paper_template_is_package_data():
    import tomllib

    import peftstudy

    root = Path(__file__).resolve().parents[3]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["peftstudy"]
    assert "report/templates/*.tex" in declared
    assert (Path(peftstudy.__file__).parent / "report" / "templates" / "paper.tex").is_file()


def _run(seed):
    return {"dataset": "d", "model": "m_1", "variant": "lora-r8", "seed": seed}


def _stages(seed, flags=("avx2",), threads=1):
    hardware = {"device": "cpu", "cpu": "x86 & co", "capability": {
        "cpu": "x86 & co", "cpu_flags": list(flags), "torch_cpu_capability": "AVX2", "torch_blas": "mkl",
        "torch_threads": threads}}
    return {stage: {"settings_hash": f"{stage}{seed}".ljust(64, "0"), "code_fingerprint": f"{stage}-code".ljust(64, "0"),
                    "code_version": "abc", "packages": {"torch": "2.13.0"}, "hardware": hardware}
            for stage in ("train", "generate", "score")}


def test_provenance_is_listed_per_run_with_each_machine_and_package_set():
    """Two runs on different machines (one with AVX512-BF16) and package sets: each row names its own."""
    old_run = _stages(2, flags=("avx2", "avx512_bf16"), threads=4)
    old_run["score"]["packages"] = {"torch": "2.12.0"}
    tables = paper.provenance_tables([(_run(2), old_run), (_run(1), _stages(1))])
    assert [row[3] for row in tables["provenance_rows"]] == ["1", "2"]  # sorted by run
    first, second = tables["provenance_rows"]
    assert first[4:7] == ["train10000", "train-code", "M1/P1"]
    assert second[4:7] == ["train20000", "train-code", "M2/P1"] and second[10:13] == ["score20000", "score-code", "M2/P2"]
    machines = dict(tables["provenance_machines"])
    assert machines["M1"] == "x86 & co, torch AVX2, no AVX512-BF16/VNNI/AMX, BLAS mkl, 1 thread(s)"
    assert machines["M2"] == "x86 & co, torch AVX2, avx512_bf16, BLAS mkl, 4 thread(s)"
    assert dict(tables["provenance_packages"]) == {"P1": "torch 2.13.0", "P2": "torch 2.12.0"}
    # A metrics.json written before per-stage provenance (one training record) still reads.
    assert paper.run_provenance({"provenance": old_run["train"]}) == {"train": old_run["train"]}


def test_failed_latex_build_leaves_no_pdf(tmp_path):
    (tmp_path / "paper.tex").write_text(r"\documentclass{article}\begin{document}\undefinedmacro\end{document}")
    with pytest.raises(RuntimeError, match="latexmk failed"):
        paper.build_pdf(tmp_path / "paper.tex", tmp_path / "paper.pdf")
    assert not (tmp_path / "paper.pdf").exists()


def _scored(model, method, rank, learning_rate, **metrics):
    spec = {"kind": method, **({"bits": 4} if method == "qlora" else {})}
    return {"settings": {"dataset": "d", "model": model, "method": method, "rank": rank, "method_spec": spec,
                         "training": {"learning_rate": learning_rate, "epochs": 1, "batch_size": 2,
                                      "gradient_accumulation_steps": 1}},
            "metrics": metrics}


def test_hyperparameter_rows_name_the_cells_each_setting_covers():
    study = {**STUDY, "methods": {**STUDY["methods"], "qlora": {"kind": "qlora", "ranks": [8]}}}
    cells = {}
    for scored in (_scored("m_1", "lora", 4, 1e-3), _scored("m_2", "lora", 4, 5e-4), _scored("m_1", "full", None, 1e-4),
                   _scored("m_2", "full", None, 1e-4)):
        settings = scored["settings"]
        key = (settings["method"], canonical_hash({"training": settings["training"],
                                                          "method_spec": settings["method_spec"]}))
        cells.setdefault(key, (settings, set()))[1].add((settings["dataset"], settings["model"]))
    rows = paper.hyperparameter_rows(study, cells)
    assert [row[:4] for row in rows] == [["full", "full", "all", "0.0001"], ["lora", "lora", "m_1", "0.001"],
                                         ["lora", "lora", "m_2", "0.0005"]]
    assert rows[1][-1] == "ranks=[4, 8]"


def test_quantization_rows_average_the_measured_bytes():
    spec = {"kind": "qlora", "bits": 4, "quant_type": "nf4", "double_quant": True}
    rows = paper.quantization_rows(STUDY, {("m_1", "qlora", 8): [(100.0, 1000.0, spec), (120.0, 1000.0, spec)],
                                            ("m_1", "qlora8", 8): [(500.0, 1000.0, {"kind": "qlora", "bits": 8})]})
    assert rows[0] == ["m_1", "qlora r=8", "4-bit NF4, double", "0.000", "0.001", "89.0"]
    assert rows[1][2] == "8-bit LLM.int8()" and rows[1][-1] == "50.0"


def test_seeds_text_names_blocks_with_their_own_seeds():
    study = {**STUDY, "matrix": STUDY["matrix"] + [{"datasets": ["d"], "models": ["m_1"], "methods": ["lora"], "seeds": [1]}]}
    assert paper.seeds_text(study) == "seeds 1, 2, 3; lora: seed 1 only"


def test_seeds_text_of_an_adaptive_study_states_the_design_and_cites_it():
    design = {"min": 2, "max": 3, "alpha": 0.05, "metrics": ["bleu4"], "full_grid": True}
    text = paper.seeds_text({**STUDY, "adaptive_seeds": design})
    assert text.startswith("adaptive seeds (in the order 1, 2, 3): every cell ran its first 2, then only the cells of "
                           "a comparison still open got the next, up to 3")
    assert "Jennison and Turnbull 1989; Pocock-type Lan-DeMets alpha spending, family-wise alpha 0.05" in text
    assert "on bleu4; the full grid ran too" in text


def test_metric_tables_show_not_measured_with_the_reason_and_the_price_sheet():
    study = {**STUDY, "costs": {"price_sheet": {"date": "2026-11-23", "source": "test", "currency": "USD",
                                                "device_hour": {"cpu": 0.1}},
                                "scenarios": [{"name": "pilot", "requests_per_month": 10, "months": 2}]}}
    frame = metrics().assign(unit="", device="", note="")
    extra = []
    for seed in range(3):
        extra.append({"study": "t", "dataset": "d", "model": "m_1", "method": "full", "rank": "", "seed": seed,
                      "metric": "train_energy_kwh", "value": math.nan, "unit": "kWh", "device": "cpu",
                      "note": "not measured: CPU: no readable RAPL energy counter"})
        extra.append({"study": "t", "dataset": "d", "model": "m_1", "method": "full", "rank": "", "seed": seed,
                      "metric": "train_time_s", "value": 2.0, "unit": "s", "device": "cpu", "note": ""})
    frame = pd.concat([frame[frame["metric"] != "train_time_s"], pd.DataFrame(extra)], ignore_index=True)
    summary = summarise(frame)
    table = metric_tables.group_table("efficiency", summary, frame, study)
    notes = metric_tables.group_notes("efficiency", frame, study)
    assert notes[0] == "Measured on: cpu."
    assert "train_energy_kwh: not measured: CPU: no readable RAPL energy counter" in notes
    tex = metric_tables.group_latex("efficiency", table, notes, study)
    assert "n/m" in tex and "2.0" in tex
    cost_notes = metric_tables.group_notes("cost", frame, study)
    assert cost_notes[0].startswith("Price sheet (USD, 2026-11-23; test): device-hour cpu: 0.1/h")
    assert [c[0] for c in metric_tables.group_columns("cost", study)][-1] == "tco[pilot]"


def test_human_tables_from_the_synthetic_fixture_and_without_ratings():
    import csv
    from pathlib import Path

    from peftstudy import human_eval

    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "human_eval"
    with open(fixtures / "blinding_key.csv", newline="") as handle:
        key = list(csv.DictReader(handle))
    ratings = [r for p in sorted((fixtures / "ratings").glob("*.csv")) for r in human_eval.read_ratings(p, {k["item"] for k in key})]
    result = human_eval.summarise_ratings(ratings, key)
    study = {**STUDY, "methods": {"full": {"kind": "full"}, "lora": {"kind": "lora", "ranks": [8]}}}
    tex = human_tables.table2_latex(result["table2"], result["agreement"], study, "human_eval/t/ratings")
    assert "3 raters" in tex and "Krippendorff" in tex
    assert sum(line.endswith(" " + chr(92) * 2) for line in tex.splitlines()) == 3  # header + 2 cells
    summary = pd.DataFrame([{"dataset": "debian-products", "model": "gpt2-tiny", "method": "lora", "rank": "8",
                             "metric": "repetition_rate", "mean": 0.25}])
    errors = human_tables.errors_table(result["errors"], summary)
    assert errors.set_index("method").loc["lora", "repetition_automatic"] == 0.25
    assert "Repetition (auto)" in human_tables.errors_latex(errors, study)
    assert "no ratings were ingested" in human_tables.table2_latex(pd.DataFrame(), pd.DataFrame(), study, "x")


def figure_panels(tmp_path, out):
    from peftstudy import io
    from peftstudy.report import figures

    series = []
    for index, words in enumerate((["red apple", "green apple", "ripe apple"], ["fast car", "slow car", "old car"])):
        path = tmp_path / f"gen{index}.jsonl"
        io.write_jsonl(path, [{"id": str(i), "input": "x", "reference": "y", "prediction": w} for i, w in enumerate(words)])
        series.append({"label": f"m{index}", "generations": path, "clusters": 1})
    figures.output_clusters([{"title": "t", "series": series}], "all-MiniLM-L6-v2", out)


def test_cluster_figure_is_a_reproducible_pdf(tmp_path):
    figure_panels(tmp_path, tmp_path / "a.pdf")
    figure_panels(tmp_path, tmp_path / "b.pdf")
    assert (tmp_path / "a.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


def test_task_tables_cover_every_dataset_of_their_task_with_classes_per_cell():
    frame = metrics().assign(unit="%", device="", note="")
    summary = summarise(frame)
    table = metric_tables.group_table("classification", summary, frame, STUDY)
    assert list(zip(table["dataset"], table["method"], table["rank"])) == [("c_1", "full", ""), ("c_1", "lora", "8")]
    assert table.loc[0, "accuracy_mean"] == pytest.approx(85) and table.loc[1, "macro_f1_mean"] == pytest.approx(62.5)
    tex = metric_tables.group_latex("classification", table, metric_tables.group_notes("classification", frame, STUDY), STUDY)
    assert r"\texttt{c\_1}" in tex and "85.0 $\\pm$ 7.1" in tex and "($n$ = 2)" in tex
    qa = metric_tables.group_table("extractive_qa", summary, frame, STUDY)
    assert qa["squad_f1_mean"].tolist() == pytest.approx([51, 41])
    per_class = metric_tables.group_table("per_class", summary, frame, STUDY)
    assert list(zip(per_class["method"], per_class["class"])) == [("full", "a"), ("full", "b_x"), ("lora", "a"), ("lora", "b_x")]
    assert per_class.loc[1, "f1_mean"] == pytest.approx(56.5) and per_class.loc[1, "recall_n"] == 2
    tex = metric_tables.group_latex("per_class", per_class, metric_tables.group_notes("per_class", frame, STUDY), STUDY)
    assert r"\texttt{b\_x}" in tex and "65.0 $\\pm$ 7.1" in tex
    without = {**STUDY, "matrix": STUDY["matrix"][:1]}
    assert "no classification dataset" in metric_tables.group_latex(
        "classification", metric_tables.group_table("classification", summary, frame, without), [], without)


def test_task_and_quality_tables_show_each_datasets_trivial_baselines_below_its_cells():
    frame = metrics().assign(unit="%", device="", note="")
    summary = summarise(frame)
    trivial = pd.DataFrame([
        {"study": "t", "dataset": "c_1", "baseline": "majority_class", "kind": "majority_class", "metric": "accuracy",
         "value": 40.0, "unit": "%", "note": ""},
        {"study": "t", "dataset": "q", "baseline": "overlap_window", "kind": "overlap_window", "metric": "squad_f1",
         "value": 12.5, "unit": "%", "note": ""}])
    table = metric_tables.group_table("classification", summary, frame, STUDY, trivial)
    assert table["method"].tolist() == ["full", "lora", "baseline:majority_class"]
    assert table.loc[2, "accuracy_mean"] == 40.0 and math.isnan(table.loc[2, "macro_f1_mean"])
    tex = metric_tables.group_latex("classification", table, [], STUDY)
    assert r"\textit{c\_1 / trivial} & Majority class & 40.0 & -- & --" in tex  # not measured: none to measure
    assert "($n$ = 2)" in tex and "Trivial: baselines predicting from the training split alone" in tex
    qa = metric_tables.group_table("extractive_qa", summary, frame, STUDY, trivial)
    assert qa["method"].tolist()[-1] == "baseline:overlap_window" and qa["squad_f1_mean"].tolist()[-1] == 12.5
    efficiency = metric_tables.group_table("efficiency", summary, frame, STUDY, trivial)
    assert not efficiency["method"].str.startswith("baseline:").any()  # only the quality tables show them
