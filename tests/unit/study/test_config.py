import copy

import pytest
import yaml

from peftstudy import study as studyconfig


@pytest.fixture
def demo(repository):
    return yaml.safe_load((repository / "config" / "demo.yaml").read_text())


def test_shipped_study_configs_validate(repository):
    for path in [repository / "config.yaml", *sorted((repository / "config").glob("*.yaml"))]:
        study = studyconfig.load_study(path)
        assert studyconfig.expand_runs(study), path


def test_paper_matrix_counts_and_exclusions(repository):
    study = studyconfig.load_study(repository / "config.yaml")
    runs = studyconfig.expand_runs(study)
    assert len(runs) == 1050  # see test_dry_runs for the breakdown
    assert not [r for r in runs if r.model == "llama-7b" and r.method == "full"]
    assert not [r for r in runs if r.model in ("t5-base", "llama-7b") and r.method == "bitfit"]
    assert {r.rank for r in runs if r.method == "lora"} == {4, 8, 16, 32, 64}
    assert {r.rank for r in runs if r.method == "adapter"} == {64, 128, 256, 512}
    assert {r.dataset for r in runs if r.method == "vera"} == {"products"}
    assert {(r.model, r.rank) for r in runs if r.method == "lora_t5_split"} == {("t5-base", 8)}
    assert study["methods"]["lora_t5_split"]["decoder_rank"] == 16
    assert {r.seed for r in runs} == {42, 43, 44, 45, 46}


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda s: s["methods"].__setitem__("bogus", {"kind": "nonsense"}), "methods.bogus.kind"),
        (lambda s: s.__setitem__("baselines", {"stuck": {"kind": "constant"}}), "baselines.stuck.text: required key"),
        (lambda s: s.__setitem__("baselines", {"c": {"kind": "copy_input", "text": "x"}}),
         "baselines.c.text: only a constant baseline takes a text"),
        (lambda s: s.__setitem__("baselines", {"c": {"kind": "oracle"}}), "baselines.c.kind: 'oracle' is not one of"),
        (lambda s: s.__setitem__("baselines", {"../x": {"kind": "copy_input"}}), "baselines: '../x' does not match"),
        (lambda s: s["methods"]["lora"].__setitem__("ranks", [0, 8]), "methods.lora.ranks[0]"),
        (lambda s: s.pop("training"), "training: required key is missing"),
        (lambda s: s["training"].__setitem__("learnig_rate", 0.1), "unknown key 'learnig_rate'"),
        (lambda s: s["matrix"][0]["methods"].append("adapters"), "matrix[0].methods[2]: unknown method 'adapters'"),
        (lambda s: s["exclusions"].__setitem__(0, {"model": "nope", "reason": "x"}) if s.get("exclusions") else s.__setitem__("exclusions", [{"model": "nope", "reason": "x"}]), "exclusions[0].model"),
        (lambda s: s.__setitem__("overrides", [{"method": "lora", "training": {"learning_rate": 0}}]), "overrides[0].training.learning_rate"),
        (lambda s: s.__setitem__("overrides", [{"model": "gpt3", "training": {"epochs": 1}}]), "overrides[0].model: unknown model 'gpt3'"),
        (lambda s: s.__setitem__("overrides", [{"reason": "x", "training": {"epochs": 1}}]), "overrides[0]: select cells"),
        (lambda s: s["datasets"]["debian-products"].__setitem__("labels", ["a", "b"]), "datasets.debian-products.labels: a label set only applies to classification"),
        (lambda s: s["datasets"]["debian-sections"].__setitem__("task", "generation"), "datasets.debian-sections.task: corpus 'debian_sections' is a classification corpus"),
        (lambda s: s["datasets"]["debian-sections"].pop("labels"), "datasets.debian-sections.labels: a classification dataset declares its label set"),
        (lambda s: s["models"].__setitem__("bert", {"registry": "all-minilm-l6-v2"}) or s["matrix"][0]["models"].append("bert"),
         "matrix[0]: cell (debian-products, bert, full): model family bert has no generation head"),
        (lambda s: s.__setitem__("overrides", [{"method": "lora", "options": {"alpah": 8}}]),
         "overrides[0].options.alpah: not a per-cell option of method 'lora'"),
        (lambda s: s.__setitem__("overrides", [{"method": "lora", "options": {"ranks": [2]}}]), "overrides[0].options.ranks"),
        (lambda s: s["matrix"][2].__setitem__("ranks", [8, 32]), "matrix[2].ranks: rank(s) [32] not declared"),
    ],
)
def test_bad_config_names_file_and_key(demo, mutate, expected):
    from support.configs import assert_refused

    assert_refused(demo, mutate, expected)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("study: x\nseeds: [1, 2\n")
    with pytest.raises(studyconfig.StudyConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        studyconfig.load_study(path)


def test_variants_round_trip():
    assert studyconfig.variant_name("lora", 16) == "lora-r16"
    assert studyconfig.parse_variant("lora-r16") == ("lora", 16)
    assert studyconfig.parse_variant("full") == ("full", None)
    with pytest.raises(ValueError):
        studyconfig.parse_variant("lora-r0")


def test_run_settings_hold_method_overrides_only_for_that_method(demo):
    study = studyconfig.validate_study(demo, "demo.yaml")
    runs = studyconfig.expand_runs(study)
    lora = next(r for r in runs if r.method == "lora")
    full = next(r for r in runs if r.method == "full")
    assert studyconfig.run_settings(study, lora)["training"]["learning_rate"] == demo["methods"]["lora"]["training"]["learning_rate"]
    assert studyconfig.run_settings(study, full)["training"]["learning_rate"] == demo["methods"]["full"]["training"]["learning_rate"]
    assert studyconfig.run_settings(study, full)["training"]["epochs"] == demo["training"]["epochs"]  # the rest: the study's


def test_conflicting_shared_definitions_are_reported(demo):
    other = copy.deepcopy(demo)
    other["study"] = "other"
    other["datasets"]["debian-products"]["max_examples"] = 7
    problems = studyconfig.shared_definitions_conflicts({"demo": demo, "other": other})
    assert problems and "datasets.debian-products" in problems[0]


def test_option_of_another_method_kind_is_rejected(demo):
    broken = copy.deepcopy(demo)
    broken["methods"]["full"]["alpha"] = 16
    with pytest.raises(studyconfig.StudyConfigError, match=r"methods.full.alpha: not an option of method kind 'full'"):
        studyconfig.validate_study(broken, "demo.yaml")


def test_inapplicable_cell_must_be_declared_as_exclusion(demo):
    study = copy.deepcopy(demo)
    study["methods"]["bitfit"] = {"kind": "bitfit"}
    study["matrix"] = [{"datasets": ["debian-products"], "models": ["gpt2-en", "t5-en"], "methods": ["bitfit"],
                        "seeds": [1]}]
    study["exclusions"], study["overrides"] = [], []  # demo's overrides select datasets this matrix leaves out
    with pytest.raises(studyconfig.StudyConfigError, match=r"matrix\[0\]: method 'bitfit' cannot run on model 't5-en'"):
        studyconfig.validate_study(study, "demo.yaml")
    study["exclusions"] = [{"model": "t5-en", "method": "bitfit", "reason": "T5 has no biases"}]
    runs = studyconfig.expand_runs(studyconfig.validate_study(study, "demo.yaml"))
    assert {r.model for r in runs if r.method == "bitfit"} == {"gpt2-en"}


def test_cell_overrides_apply_in_order_to_matching_cells_only(demo):
    study = copy.deepcopy(demo)
    study["overrides"] = [
        {"model": "t5-en", "training": {"learning_rate": 0.5, "epochs": 7}},
        {"model": "t5-en", "method": "lora", "training": {"learning_rate": 0.25}},
    ]
    study = studyconfig.validate_study(study, "demo")
    lora_lr = study["methods"]["lora"]["training"]["learning_rate"]
    assert studyconfig.training_settings(study, "lora", "gpt2-en", "debian-products")["learning_rate"] == lora_lr
    t5_lora = studyconfig.training_settings(study, "lora", "t5-en", "debian-products")
    assert (t5_lora["learning_rate"], t5_lora["epochs"]) == (0.25, 7)
    assert studyconfig.training_settings(study, "full", "t5-en", "debian-products")["learning_rate"] == 0.5
    run = next(r for r in studyconfig.expand_runs(study) if r.model == "t5-en" and r.method == "lora")
    assert studyconfig.run_settings(study, run)["training"]["learning_rate"] == 0.25


def test_matrix_block_ranks_pick_variants_of_ranked_methods_only(demo):
    study = studyconfig.validate_study(demo, "config/demo.yaml")
    tasks = {(r.dataset, r.method, r.rank) for r in studyconfig.expand_runs(study)
             if r.dataset in ("debian-sections", "debian-package-qa")}
    assert tasks == {(d, m, r) for d in ("debian-sections", "debian-package-qa") for m, r in (("full", None), ("lora", 8))}


def test_a_head_the_cells_method_cannot_train_is_refused(demo):
    """Which methods train classifier/span heads is the method's to say (Method.trains_heads); the study checks it."""
    from peftstudy.modeling import heads
    from peftstudy.study.settings import cell_head

    bert, training = {"family": "bert"}, {"max_source_tokens": 64}
    with pytest.raises(heads.HeadError, match=r"^method kind 'prefix' cannot train a classifier head yet \(supported: "
                                              r"adalora, dora, full, ia3, lora, qlora, vera\); give the model a "
                                              r"text-to-text head \(heads: lm\)$"):
        cell_head(bert, {"labels": ["a", "b"]}, "classification", training, "prefix")
    assert cell_head(bert, {"labels": ["a", "b"]}, "classification", training, "lora") == \
        {"kind": "classifier", "labels": ["a", "b"], "module": "classifier"}
    assert cell_head({"family": "gpt2"}, {"labels": ["a", "b"]}, "classification", training, "prefix") == {"kind": "lm"}
    study = copy.deepcopy(demo)
    study["models"]["gpt2-en"]["heads"] = {"classification": "classifier"}
    study["matrix"][3]["methods"].append("prefix")
    with pytest.raises(studyconfig.StudyConfigError, match=r"matrix\[3\]: cell \(debian-sections, gpt2-en, prefix\): "
                                                           r"method kind 'prefix' cannot train a classifier head"):
        studyconfig.validate_study(study, "demo.yaml")


def test_load_studies_main_first_then_the_others_by_name(repository):
    studies, files = studyconfig.load_studies(repository / "config.yaml", repository / "config")
    names = list(studies)
    assert files[names[0]] == repository / "config.yaml"
    assert [files[name].name for name in names[1:]] == sorted(p.name for p in (repository / "config").glob("*.yaml"))


def test_load_studies_refuses_a_name_used_twice_and_a_shared_name_defined_differently(repository, tmp_path):
    demo = (repository / "config" / "demo.yaml").read_text()
    (tmp_path / "others").mkdir()
    (tmp_path / "others" / "copy.yaml").write_text(demo)
    with pytest.raises(studyconfig.StudyConfigError, match=r"copy.yaml: study name 'demo' is already used by .*main.yaml"):
        (tmp_path / "main.yaml").write_text(demo)
        studyconfig.load_studies(tmp_path / "main.yaml", tmp_path / "others")
    raw = studyconfig.read_yaml(repository / "config" / "demo.yaml")
    raw["study"] = "demo_copy"
    dataset = next(iter(raw["datasets"]))
    raw["datasets"][dataset]["seed"] = raw["datasets"][dataset].get("seed", 0) + 1
    (tmp_path / "others" / "copy.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(studyconfig.StudyConfigError, match=rf"datasets\.{dataset} is defined differently"):
        studyconfig.load_studies(tmp_path / "main.yaml", tmp_path / "others")


def test_a_corpus_decontaminated_against_an_unknown_dataset_is_refused(demo):
    demo["corpora"]["english"]["decontaminate"]["datasets"].append("nope")
    with pytest.raises(studyconfig.StudyConfigError, match=r"corpora\.english\.decontaminate\.datasets\[5\]: unknown dataset 'nope'"):
        studyconfig.validate_study(demo, "demo.yaml")


def test_a_study_that_extends_another_takes_its_keys_and_sets_its_own(repository, tmp_path):
    methods = studyconfig.load_study(repository / "config" / "demo_methods.yaml")
    demo = studyconfig.load_study(repository / "config" / "demo.yaml")
    assert methods["models"] == demo["models"] and methods["datasets"] == demo["datasets"]
    assert methods["seeds"] == [1] and methods["matrix"] != demo["matrix"] and methods["extends"] == "demo.yaml"
    (tmp_path / "a.yaml").write_text("study: a\nextends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("study: b\nextends: a.yaml\n")
    with pytest.raises(studyconfig.StudyConfigError, match=r"b\.yaml: extends: 'a\.yaml' makes a cycle"):
        studyconfig.load_study(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("study: c\nextends: nope.yaml\n")
    with pytest.raises(studyconfig.StudyConfigError, match=r"c\.yaml: extends: 'nope\.yaml' is not a study file"):
        studyconfig.load_study(tmp_path / "c.yaml")
