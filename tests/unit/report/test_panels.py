"""The output-clusters figure's panels, chosen from a study and its runs."""

from peftstudy.report.panels import output_cluster_panels
from peftstudy.study.matrix import Run

DATASETS = {"products": {"source": "synthetic", "corpus": "synthetic"},
            "sections": {"source": "snapshot", "corpus": "debian_sections"}}
METHODS = {"full": {"kind": "full"}, "lora": {"kind": "lora", "ranks": [16, 4]}, "bitfit": {"kind": "bitfit"}}


def study(table1="products"):
    return {"study": "s", "datasets": DATASETS, "methods": METHODS, "report": {"table1_dataset": table1}}


RUNS = [Run("s", dataset, model, variant, seed) for dataset in ("products", "sections") for model in ("t5", "gpt2")
        for variant in ("lora-r16", "bitfit", "full", "lora-r4") for seed in (3, 1, 2)]


def test_one_panel_per_model_of_the_table1_dataset_each_variants_first_seed_in_declared_order():
    panels = output_cluster_panels(study(), RUNS)
    assert [panel["title"] for panel in panels] == ["gpt2 on products: outputs per method (first seed)",
                                                    "t5 on products: outputs per method (first seed)"]
    series = panels[0]["series"]
    assert [s["label"] for s in series] == ["full", "lora-r4", "lora-r16", "bitfit"]  # methods as declared, then rank
    assert series[1] == {"seed": 1, "label": "lora-r4",
                         "generations": "results/s/runs/products/gpt2/lora-r4/seed1/generations.jsonl",
                         "metrics": "results/s/runs/products/gpt2/lora-r4/seed1/metrics.json"}
    assert {s["seed"] for panel in panels for s in panel["series"]} == {1}


def test_a_classification_table1_dataset_gives_way_to_the_first_free_text_dataset():
    panels = output_cluster_panels(study("sections"), RUNS)
    assert [panel["title"].split(":")[0] for panel in panels] == ["gpt2 on products", "t5 on products"]


def test_no_panels_when_the_study_generates_no_free_text():
    labels_only = {**study("sections"), "datasets": {"sections": DATASETS["sections"]}}
    assert output_cluster_panels(labels_only, [r for r in RUNS if r.dataset == "sections"]) == []
