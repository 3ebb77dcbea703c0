"""The statistics tables: each built from the stats package's outputs, rendered to LaTeX that compiles."""

import math

import pandas as pd
import pytest

from peftstudy import stats
from peftstudy.report import paper, stats_tables
from peftstudy.study.config import STATISTICS_DEFAULTS

STUDY = {
    "study": "t", "seeds": [1, 2, 3],
    "methods": {"full": {"kind": "full"}, "lora": {"kind": "lora", "ranks": [4, 8, 16]},
                "qlora": {"kind": "qlora", "ranks": [8]}},
    "models": {"m1": {"family": "gpt2"}, "m2": {"family": "t5"}},
    "datasets": {"d": {"source": "synthetic", "corpus": "synthetic"}, "e": {"source": "synthetic", "corpus": "synthetic"}},
    "matrix": [{"datasets": ["d", "e"], "models": ["m1", "m2"], "methods": ["full", "lora", "qlora"]}],
    "statistics": {**STATISTICS_DEFAULTS, "rank_study": {**STATISTICS_DEFAULTS["rank_study"], "resamples": 200}},
    "report": {"table1_dataset": "d"},
}


def metrics() -> pd.DataFrame:
    """Quality rising with rank then flat; QLoRA saves memory; seeds pair the runs; two models, two datasets."""
    rows = []
    base = {("full", ""): 30.0, ("lora", "4"): 25.0, ("lora", "8"): 28.0, ("lora", "16"): 28.6, ("qlora", "8"): 27.5}
    memory = {"full": 4e8, "lora": 2e8, "qlora": 1.2e8}
    for dataset, shift in (("d", 0.0), ("e", -3.0)):
        for model, factor in (("m1", 1.0), ("m2", 0.9)):
            for index, ((method, rank), value) in enumerate(base.items()):
                for seed, noise in zip((1, 2, 3), (0.3, -0.2 * (1 + index / 4), 0.05 * index)):
                    for metric, v in (("rouge_l", factor * value + shift + noise), ("bleu4", value / 3 + noise),
                                      ("train_peak_memory_bytes", memory[method] * (1 + noise / 10)),
                                      ("train_time_s", 10 + noise), ("trainable_percent", 100 if method == "full" else 1)):
                        rows.append({"study": "t", "dataset": dataset, "model": model, "method": method, "rank": rank,
                                     "seed": seed, "metric": metric, "value": v})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def inputs():
    frame = metrics()
    settings = STUDY["statistics"]
    compared = stats.select_metrics(frame, settings["compare_metrics"])
    comparisons = stats.pairwise_comparisons(compared, "full", "holm", 0.05, 0.95, settings["practical_thresholds"])
    options = settings["rank_study"]
    return {
        "summary": stats.summarise(frame),
        "power": stats.seed_power(comparisons, 0.05, 0.8),
        "anova_oneway": stats.one_way_anova(compared),
        "anova_twoway": pd.concat([stats.two_way_anova(compared, f) for f in ("model", "dataset")], ignore_index=True),
        "correlations": stats.metric_correlations(compared, "dataset"),
        "rank_study": stats.rank_study(stats.select_metrics(frame, options["metrics"]), "lora",
                                       settings["practical_thresholds"], 0.95, options["resamples"], 0),
    }


def test_every_stats_table_builds_and_compiles(inputs, tmp_path):
    (tmp_path / "tables").mkdir()
    names = []
    for name in stats_tables.STATS_TABLES:
        table, tex = stats_tables.build(name, inputs, STUDY)
        assert rf"\label{{tab:{name}}}" in tex and len(table)
        (tmp_path / "tables" / f"{name}.tex").write_text(tex)
        names.append(name)
    document = "\n".join([r"\documentclass{article}", r"\usepackage{booktabs,graphicx,array}", r"\begin{document}",
                          *(rf"\input{{tables/{n}.tex}}" for n in names),
                          # the figures the captions point to (the paper's; build_pdf refuses an undefined reference)
                          *(rf"\begin{{figure}}\caption{{stand-in}}\label{{fig:{n}}}\end{{figure}}" for n in paper.FIGURES),
                          r"\end{document}"])
    (tmp_path / "paper.tex").write_text(document)
    paper.build_pdf(tmp_path / "paper.tex", tmp_path / "paper.pdf")
    assert (tmp_path / "paper.pdf").read_bytes()[:5] == b"%PDF-"


def test_anova_table_reports_the_recommended_test_with_its_p(inputs):
    table, tex = stats_tables.build("anova", inputs, STUDY)
    one = table[(table["analysis"] == "one-way") & (table["dataset"] == "d") & (table["model"] == "m1")
                & (table["metric"] == "rouge_l")].iloc[0]
    assert one["n_variants"] == 5 and one["n_observations"] == 15
    label = stats_tables.TEST_NAMES[one["recommended"]]
    assert label in tex and r"Two-way (method x model): rouge\_l on d, method\_variant" in tex


def test_qlora_table_gives_changes_relative_to_full(inputs):
    table, tex = stats_tables.build("qlora", inputs, STUDY)
    qlora = table[(table["model"] == "m1") & (table["method"] == "qlora")].iloc[0]
    assert qlora["train_peak_memory_bytes_vs_full"] == pytest.approx(1.2e8 / 4e8 - 1, rel=1e-3)
    assert set(table[table["model"] == "m1"]["method"]) == {"full", "lora", "qlora"}  # LoRA of QLoRA's rank only
    assert list(table[(table["model"] == "m1") & (table["method"] == "lora")]["rank"]) == ["8"]
    assert "(-70\\,\\%)" in tex


def test_rank_study_and_power_tables(inputs):
    table, tex = stats_tables.build("rank_study", inputs, STUDY)
    row = table[(table["dataset"] == "d") & (table["model"] == "m1") & (table["metric"] == "rouge_l")].iloc[0]
    assert row["best_rank"] == 16  # 28.6 - 28.0 = 0.6 exceeds ROUGE-L's 0.3: r8 is not within the threshold
    power, tex = stats_tables.build("power", inputs, STUDY)
    assert not power.empty and (power["method_b"] == "full").all() and "Seeds needed" in tex


def test_architecture_and_domain_tables_pivot_the_summary(inputs):
    architecture, tex = stats_tables.build("architecture", inputs, STUDY)
    assert set(architecture["model"]) == {"m1", "m2"} and set(architecture["dataset"]) == {"d"}
    assert r"\texttt{m1} & \texttt{m2}" in tex
    domain, tex = stats_tables.build("domain", inputs, STUDY)
    assert set(domain["dataset"]) == {"d", "e"}
    full = domain[(domain["model"] == "m1") & (domain["method"] == "full") & (domain["dataset"] == "e")].iloc[0]
    assert full["mean"] == pytest.approx(27.0 + 0.1 / 3) and not math.isnan(full["std"])


def test_undefined_checks_render_as_dashes_with_their_reason(tmp_path):
    """The demo's 2 seeds per variant: Levene and Shapiro-Wilk are undefined; the table shows -- and says why, read
    back from the CSV as the workflow does, and never prints scipy's 1e31."""
    from peftstudy import io

    frame = pd.DataFrame([{"study": "t", "dataset": "d", "model": "m1", "method": method, "rank": rank, "seed": seed,
                           "metric": "rouge_l", "value": value}
                          for method, rank, values in (("full", "", [0.1, 0.3]), ("lora", "8", [0.2, 0.6]))
                          for seed, value in enumerate(values)])
    io.write_csv_frame(tmp_path / "one.csv", stats.one_way_anova(frame))
    io.write_csv_frame(tmp_path / "two.csv", stats.two_way_anova(frame))
    inputs = {"anova_oneway": stats.read_table(tmp_path / "one.csv"),
              "anova_twoway": stats.read_table(tmp_path / "two.csv")}
    table, tex = stats_tables.build("anova", inputs, STUDY)
    assert math.isnan(table["levene_p"].iloc[0]) and "e+31" not in tex and "nan" not in tex.lower()
    row = next(line for line in tex.splitlines() if line.startswith(r"\texttt{d / m1}"))
    assert row.split(" & ")[8:10] == ["--", "--"]  # Shapiro p, Levene p
    assert "deviations from its median are equal" in tex and "residual degrees of freedom" in tex
    correlations = stats.metric_correlations(pd.concat([frame.assign(seed=frame["seed"] + 10 * i) for i in range(2)])
                                             .pipe(lambda f: pd.concat([f, f.assign(metric="bleu4", value=1.0)])))
    _, tex = stats_tables.build("correlations", {"correlations": correlations}, STUDY)
    assert r"& -- & -- & -- & -- \\" in tex and "a metric is constant over the shared runs" in tex
