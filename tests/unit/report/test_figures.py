"""The statistics figures: reproducible vector PDFs that say 'no data' rather than fail on gaps."""

import math

import numpy as np
import pandas as pd
import pytest

from peftstudy.report import figures
from peftstudy.stats import read_table

NAN = math.nan
STUDY = {
    "methods": {"full": {"kind": "full"}, "lora": {"kind": "lora", "ranks": [4, 8, 16]}, "ia3": {"kind": "ia3"}},
    "models": {"m_1": {}, "m_2": {}},
    "datasets": {"d": {}, "e": {}},
    "matrix": [{"datasets": ["d"], "models": ["m_1", "m_2"], "methods": ["full", "lora", "ia3"]}],
    "statistics": {"alpha": 0.05, "compare_metrics": ["bleu4", "rouge_l", "train_time_s"],
                   "rank_study": {"method": "lora", "metrics": ["bleu4", "rouge_l"]}},
    "report": {"table1_dataset": "d"},
}
SUMMARY_HEADER = ["study", "dataset", "model", "method", "rank", "metric", "n", "mean", "std", "ci_low", "ci_high",
                  "confidence", "ci_method"]


def _csv(tmp_path, name, rows, header):
    """Write the rows as a stats CSV and read them back as the workflow does (ranks as text, '' when none)."""
    path = tmp_path / name
    pd.DataFrame(rows, columns=header).to_csv(path, index=False)
    return read_table(path)


def _summary(tmp_path):
    """m_1 fully measured except energy (NaN) and one diversity value; m_2 planned but without any row."""
    values = {  # variant -> metric -> (n, mean, std)
        ("full", ""): {"rouge_l": (3, 20.0, 1.0), "trainable_percent": (3, 100.0, 0.0),
                       "train_peak_memory_bytes": (3, 6e8, 1e7), "train_time_s": (3, 30.0, 2.0),
                       "distinct_1": (3, 0.2, 0.01), "distinct_2": (3, 0.4, 0.02), "mattr": (3, 0.5, 0.05),
                       "mean_pairwise_cosine": (3, 0.8, 0.1)},
        ("lora", "4"): {"rouge_l": (3, 18.0, 1.5), "trainable_percent": (3, 1.0, 0.0),
                        "train_peak_memory_bytes": (3, 5e8, 1e7), "train_time_s": (3, 20.0, 1.0),
                        "distinct_1": (3, 0.25, 0.02), "distinct_2": (3, 0.5, 0.02), "mattr": (3, 0.55, 0.02),
                        "mean_pairwise_cosine": (3, 0.7, 0.05)},
        ("lora", "16"): {"rouge_l": (3, 18.0, NAN), "trainable_percent": (3, 4.0, 0.0),
                         "train_peak_memory_bytes": (3, 5.2e8, NAN), "train_time_s": (3, 21.0, 1.0),
                         "distinct_1": (3, 0.26, 0.02), "distinct_2": (3, 0.5, 0.02), "mattr": (3, 0.56, 0.02)},
        ("ia3", ""): {"rouge_l": (1, 10.0, NAN), "trainable_percent": (1, 0.1, NAN),
                      "train_peak_memory_bytes": (1, 4.8e8, NAN), "train_time_s": (1, 15.0, NAN),
                      "distinct_1": (1, 0.1, NAN), "distinct_2": (1, 0.2, NAN), "mattr": (1, 0.3, NAN),
                      "mean_pairwise_cosine": (1, 0.95, NAN)},
    }
    rows = [["s", "d", "m_1", method, rank, metric, n, mean, std, NAN, NAN, 0.95, "t"]
            for (method, rank), metrics in values.items() for metric, (n, mean, std) in metrics.items()]
    rows += [["s", "d", "m_1", method, rank, "train_energy_kwh", 0, NAN, NAN, NAN, NAN, 0.95, "t"]
             for method, rank in values]
    return _csv(tmp_path, "summary.csv", rows, SUMMARY_HEADER)


def _rank_study(tmp_path):
    header = ["study", "dataset", "model", "metric", "method", "rank", "n", "mean", "std", "ci_low", "ci_high",
              "confidence", "higher_is_better", "knee_rank", "knee_reason", "threshold", "threshold_spec",
              "best_rank", "best_rule", "best_reason", "bootstrap_choice_fraction", "bootstrap_resamples",
              "bootstrap_seed"]
    rows = []
    for rank, mean, fraction in (("4", 1.0, 0.2), ("8", 1.5, 0.7), ("16", 1.55, 0.1)):
        rows.append(["s", "d", "m_1", "bleu4", "lora", rank, 3, mean, 0.1, mean - 0.2, mean + 0.2, 0.95, True,
                     8.0, "", 0.5, "0.5", 8.0, "rule", "", fraction, 2000, 0])
    for rank, mean in (("4", 10.0), ("8", 11.0)):  # one seed: no CI; no knee
        rows.append(["s", "d", "m_1", "rouge_l", "lora", rank, 1, mean, NAN, NAN, NAN, 0.95, True,
                     NAN, "too few ranks", NAN, "", 8.0, "rule", "", 1.0 if rank == "8" else 0.0, 2000, 0])
    return _csv(tmp_path, "rank_study.csv", rows, header)


def _correlations(tmp_path):
    header = ["study", "dataset", "metric_a", "metric_b", "n", "pearson_r", "pearson_p", "spearman_rho",
              "spearman_p", "reason"]
    rows = [["s", "d", "bleu4", "rouge_l", 12, 0.9, 0.001, 0.8, 0.01, ""],
            ["s", "d", "bleu4", "train_time_s", 12, -0.2, 0.5, -0.1, 0.7, ""],
            ["s", "d", "rouge_l", "train_time_s", 12, NAN, NAN, NAN, NAN, "constant"],
            ["s", "e", "bleu4", "meteor", 5, 0.1, 0.9, 0.1, 0.9, ""]]
    return _csv(tmp_path, "correlations.csv", rows, header)


@pytest.fixture
def drawn(monkeypatch):
    """Every text of each figure saved (titles, labels, panel notes), in order of saving."""
    texts = []
    save = figures._save

    def recording(figure, out_path):
        import matplotlib.text

        texts.append([artist.get_text() for artist in figure.findobj(matplotlib.text.Text) if artist.get_text()])
        save(figure, out_path)

    monkeypatch.setattr(figures, "_save", recording)
    return texts


def _reproducible(tmp_path, draw):
    draw(tmp_path / "a.pdf")
    draw(tmp_path / "b.pdf")
    first = (tmp_path / "a.pdf").read_bytes()
    assert first[:5] == b"%PDF-"
    assert first == (tmp_path / "b.pdf").read_bytes()


def test_variant_label():
    assert figures._variant_label("lora", "8") == "lora r=8"
    assert figures._variant_label("full", "") == "full"
    assert figures._variant_label("ia3", NAN) == "ia3"


def test_pareto_front_by_hand_with_ties():
    points = [(1, 5, "a"), (2, 5, "b"),  # b: more parameters, same quality -> dominated by a
              (2, 7, "c"), (2, 7, "d"),  # a tie: neither dominates the other, both on the front
              (3, 6, "e"),  # dominated by c
              (0.5, 1, "f"), (4, NAN, "g"), (5, 9, "h"), (5, 8, "i")]  # g ignored; i dominated by h
    assert figures.pareto_front(points) == ["f", "a", "c", "d", "h"]
    assert figures.pareto_front(points, higher_is_better=False) == ["f"]
    assert figures.pareto_front([(1, 1, "only")]) == ["only"]
    assert figures.pareto_front([]) == []


def test_correlation_matrix_is_symmetric_with_unit_diagonal(tmp_path):
    names, r, p = figures.correlation_matrix(_correlations(tmp_path), "d", order=["train_time_s"])
    assert names == ["train_time_s", "bleu4", "rouge_l"]  # the declared order first, then as they come
    assert np.array_equal(r, r.T, equal_nan=True) and np.array_equal(p, p.T, equal_nan=True)
    assert np.diag(r).tolist() == [1.0, 1.0, 1.0]
    assert r[1, 2] == pytest.approx(0.9) and r[0, 1] == pytest.approx(-0.2) and p[1, 2] == pytest.approx(0.001)
    assert math.isnan(r[0, 2]) and math.isnan(p[0, 0])  # an undefined pair stays NaN
    assert figures.correlation_matrix(_correlations(tmp_path), "nowhere")[0] == []


def test_rank_saturation(tmp_path, drawn):
    table = _rank_study(tmp_path)
    _reproducible(tmp_path, lambda out: figures.rank_saturation(table, STUDY, out))
    texts = " | ".join(drawn[0])
    assert "best r=8 (70% of bootstrap), knee r=8" in texts
    assert "best r=8 (100% of bootstrap), no knee" in texts  # n = 1: no band, no knee, still drawn
    figures.rank_saturation(table, STUDY, tmp_path / "c.pdf", metrics=["bleu4", "meteor"])
    assert "no data" in drawn[-1]
    figures.rank_saturation(table.iloc[0:0], STUDY, tmp_path / "d.pdf")
    assert "no rank-study data" in drawn[-1]


def test_quality_vs_parameters(tmp_path, drawn):
    summary = _summary(tmp_path)
    _reproducible(tmp_path, lambda out: figures.quality_vs_parameters(summary, STUDY, out))
    assert {"full", "lora r=4", "lora r=16", "ia3", "no data"} <= set(drawn[0])  # m_2 has no rows
    figures.quality_vs_parameters(summary, STUDY, tmp_path / "c.pdf", metric="meteor")
    assert "no meteor or trainable % data" in drawn[-1]
    single = summary[(summary["method"] == "ia3") & (summary["model"] == "m_1")]
    figures.quality_vs_parameters(single, STUDY, tmp_path / "d.pdf")
    assert "ia3" in drawn[-1]
    figures.quality_vs_parameters(summary.iloc[0:0], STUDY, tmp_path / "e.pdf", dataset="e")
    assert "no data" in drawn[-1]


def test_efficiency_bars_say_not_measured_instead_of_zeros(tmp_path, drawn):
    summary = _summary(tmp_path)
    _reproducible(tmp_path, lambda out: figures.efficiency_bars(summary, STUDY, out))
    assert drawn[0].count("not measured") == 1  # m_1's energy: all NaN
    assert drawn[0].count("no data") == 3  # m_2: no row at all
    without_memory = summary[summary["metric"] != "train_peak_memory_bytes"]
    figures.efficiency_bars(without_memory, STUDY, tmp_path / "c.pdf")
    assert drawn[-1].count("not measured") == 2
    figures.efficiency_bars(pd.DataFrame(), STUDY, tmp_path / "d.pdf")
    assert drawn[-1].count("no data") == 6


def test_correlation_heatmap(tmp_path, drawn):
    table = _correlations(tmp_path)
    _reproducible(tmp_path, lambda out: figures.correlation_heatmap(table, STUDY, out))
    assert {"0.90*", "-0.20", "n/a", "1"} <= set(drawn[0])
    assert any("n = 12 runs" in text for text in drawn[0])
    figures.correlation_heatmap(table, STUDY, tmp_path / "c.pdf", dataset="nowhere")
    assert "no data" in drawn[-1]


def test_diversity_comparison(tmp_path, drawn):
    summary = _summary(tmp_path)
    _reproducible(tmp_path, lambda out: figures.diversity_comparison(summary, STUDY, out))
    assert {"lora r=16", "mean_pairwise_cosine", "no data"} <= set(drawn[0])  # lora r=16 lacks one metric
    figures.diversity_comparison(summary[summary["metric"] == "rouge_l"], STUDY, tmp_path / "c.pdf")
    assert drawn[-1].count("no data") == 2


def test_output_clusters_of_a_study_without_free_text_is_a_labelled_empty_figure(tmp_path):
    from peftstudy.report.figures import output_clusters

    output_clusters([], "all-MiniLM-L6-v2", tmp_path / "clusters.pdf")  # no panel: nothing is embedded
    assert (tmp_path / "clusters.pdf").read_bytes()[:5] == b"%PDF-"
