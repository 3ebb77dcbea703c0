"""Adaptive seeds in the workflow: the design read from a study file (and refused, naming the key, where it cannot
work), the runs of round one, and a look on runs' metrics.json files: which comparisons settled and which cells run
the next seed."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from peftstudy import adaptive
from peftstudy import study as studyconfig
from peftstudy.study.matrix import Run


@pytest.fixture
def demo(repository):
    return yaml.safe_load((repository / "config" / "demo.yaml").read_text())


def test_the_demo_declares_an_adaptive_design_over_its_core_blocks(repository):
    study = studyconfig.load_study(repository / "config" / "demo.yaml")
    plan = adaptive.design(study)
    assert study["seeds"] == [1, 2, 3]
    assert {key: plan[key] for key in ("min", "max", "alpha", "full_grid")} == {
        "min": 2, "max": 3, "alpha": 0.05, "full_grid": True}
    # The compared metrics with a practical threshold (statistics.practical_thresholds, the default `practical`).
    assert plan["metrics"] == ["bleu4", "rouge_l", "bertscore_f1", "train_time_s"]
    # The two core blocks (no seeds of their own) adapt: GPT-2 full + LoRA r4/8/16, T5 full + LoRA r8.
    assert len(adaptive.adaptive_cells(study)) == 6
    assert len(adaptive.first_look_runs(study)) == 12 and {r.seed for r in adaptive.first_look_runs(study)} == {1, 2}
    # The domain and task blocks name their seeds: fixed, 8 + 8 runs.
    assert len(adaptive.fixed_runs(study)) == 16
    assert len(adaptive.full_grid_runs(study)) == 18
    # Every run a look could ask for is a run of the matrix (the workflow's run index).
    assert set(adaptive.full_grid_runs(study)) | set(adaptive.fixed_runs(study)) == set(studyconfig.expand_runs(study))


def test_a_fixed_seed_list_has_no_design(repository):
    assert adaptive.design(studyconfig.load_study(repository / "config.yaml")) is None


@pytest.mark.parametrize(
    "seeds, expected",
    [
        ({"adaptive": {"min": 4, "max": 3}}, "seeds.adaptive.min: 4 is above max (3)"),
        ({"adaptive": {"min": 1, "max": 3}}, "seeds.adaptive.min: 1 is less than the minimum of 2"),
        ({"adaptive": {"min": 2, "max": 3}, "values": [7, 8]}, "seeds.values: 2 seeds for max 3"),
        ({"adaptive": {"min": 2, "max": 3, "practical": {"meteor": 1.0}}},
         "seeds.adaptive.practical: no metric of statistics.compare_metrics has a practical threshold"),
        ({"adaptive": {"min": 2, "max": 3, "alpah": 0.1}}, "seeds.adaptive.alpah: unknown key 'alpah'"),
        ({"values": [1, 2]}, "seeds.adaptive: required key is missing"),
    ],
)
def test_a_design_that_cannot_work_is_refused_naming_the_key(demo, seeds, expected):
    from support.configs import assert_refused

    demo["statistics"]["compare_metrics"] = ["bleu4", "rouge_l"]
    assert_refused(demo, lambda s: s.__setitem__("seeds", seeds), expected)


def test_an_adaptive_block_without_the_baseline_method_is_refused(demo):
    from support.configs import assert_refused

    def mutate(study):
        study["seeds"] = {"adaptive": {"min": 2, "max": 3}}
        study["matrix"][1]["methods"] = ["lora"]

    assert_refused(demo, mutate, "matrix[1]: cell (debian-products, t5-en) adapts its seeds but the baseline method 'full'")


STUDY = {
    "study": "s", "seeds": [1, 2, 3], "exclusions": [],
    "adaptive_seeds": {"min": 2, "max": 3, "alpha": 0.05, "practical": {"bleu4": 0.5}, "metrics": ["bleu4"],
                       "full_grid": False},
    "methods": {"full": {"kind": "full"}, "lora": {"kind": "lora", "ranks": [4]}},
    "matrix": [{"datasets": ["clear", "noisy"], "models": ["m"], "methods": ["full", "lora"]},
               {"datasets": ["clear"], "models": ["m"], "methods": ["lora"], "seeds": [9]}],
    "statistics": {"baseline_method": "full", "compare_metrics": ["bleu4", "meteor"]},
}


def write_runs(tmp_path, runs, value):
    paths = []
    for run in runs:
        path = tmp_path / run.directory / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run": {"study": run.study, "dataset": run.dataset, "model": run.model,
                                            "variant": run.variant, "seed": run.seed},
                                    "metrics": {"bleu4": value(run), "meteor": 1.0}}))
        paths.append(str(path))
    return paths


def bleu(run):
    """On `clear` LoRA is 4 BLEU below full fine-tuning with almost no seed noise; on `noisy` the seeds scatter by
    several BLEU around a one-BLEU gap."""
    rng = np.random.default_rng(run.seed * 7 + (run.variant == "full") + 10 * (run.dataset == "noisy"))
    if run.dataset == "clear":
        return (30.0 if run.variant == "full" else 26.0) + 1e-4 * rng.standard_normal()
    return (30.0 if run.variant == "full" else 29.0) + 3.0 * rng.standard_normal()


def test_a_look_settles_the_clear_comparison_and_gives_only_the_open_ones_cells_the_next_seed(tmp_path):
    first = adaptive.first_look_runs(STUDY)
    assert len(first) == 8 and {run.seed for run in first} == {1, 2}  # 2 datasets x 2 cells x 2 seeds
    record = adaptive.look(STUDY, 2, write_runs(tmp_path, first, bleu), first)
    decisions = {(row["dataset"], row["method"]): row["decision"] for row in record["decisions"]}
    assert decisions == {("clear", "lora"): "different", ("noisy", "lora"): "open"}  # meteor: no threshold, no look
    assert record["next"] == [["s", "noisy", "m", "full", 3], ["s", "noisy", "m", "lora-r4", 3]]
    assert not record["finished"] and record["runs"] == [list(adaptive.run_fields(run)) for run in sorted(first)]
    # The next look: the first look's runs and the open cells' third seed; at the design's last seed it finishes.
    second = adaptive.next_look_runs(record)
    assert len(second) == 10 and Run("s", "clear", "m", "full", 3) not in second
    final = adaptive.look(STUDY, 3, write_runs(tmp_path, second, bleu), second)
    assert final["finished"] and final["next"] == []
    assert {row["decision"] for row in final["decisions"] if row["dataset"] == "noisy"} <= {"undecided", "different",
                                                                                            "equivalent"}
    json.dumps(final, allow_nan=False)  # a record is plain JSON


def test_a_look_is_the_same_given_the_same_metrics(tmp_path):
    first = adaptive.first_look_runs(STUDY)
    paths = write_runs(tmp_path, first, bleu)
    assert adaptive.look(STUDY, 2, paths, first) == adaptive.look(STUDY, 2, list(reversed(paths)), first)


def test_verify_takes_a_look_again_and_names_what_no_longer_follows(tmp_path, monkeypatch):
    """`peftstudy verify` re-hashes the metrics a look read and takes the look again from its record's settings."""
    monkeypatch.chdir(tmp_path)
    first = adaptive.first_look_runs(STUDY)
    paths = [str(Path(p).relative_to(tmp_path)) for p in write_runs(tmp_path, first, bleu)]
    record = adaptive.look(STUDY, 2, paths, first, code="abc")
    assert record["provenance"]["stage"] == "adaptive_look" and record["metrics_sha256"].keys() == set(paths)
    assert adaptive.drifts(record, tmp_path) == []
    # A look whose recorded decision was edited: taken again, it differs (the record's seal would show it too).
    edited = json.loads(json.dumps(record))
    edited["next"] = []
    assert [what for what, _, _ in adaptive.drifts(edited, tmp_path)] == ["next (the look taken again from its runs)"]
    # A metrics.json rewritten after the look: named, with the sha256 the look read.
    changed = tmp_path / first[0].directory / "metrics.json"
    changed.write_text(changed.read_text().replace('"meteor": 1.0', '"meteor": 2.0'))
    (what, recorded, now), = adaptive.drifts(record, tmp_path)
    assert what == f"{first[0].directory}/metrics.json sha256 (as the look read it)" and recorded != now
