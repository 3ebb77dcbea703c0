"""What the workflow gives each job of a study: generation settings, a base's definition, the study a shared artifact
takes its resources from, and the part of a study a report rule reads."""

import pickle

import pytest

from peftstudy import study as studyconfig
from peftstudy.study import settings
from peftstudy.study.matrix import Run


@pytest.fixture(scope="module")
def demo(repository):
    return studyconfig.load_study(repository / "config" / "demo.yaml")


def test_generation_settings_of_a_text_run_are_the_studys_with_its_token_limits(demo):
    run = Run("demo", "debian-products", "gpt2-en", "lora-r8", 1)
    got = settings.generation_settings(demo, run)
    assert list(got) == ["generation", "max_source_tokens", "max_target_tokens", "method_spec", "family"]
    assert got["generation"] == demo["generation"] and "labels" not in got["generation"]
    assert (got["max_source_tokens"], got["max_target_tokens"]) == (demo["training"]["max_source_tokens"],
                                                                    demo["training"]["max_target_tokens"])
    assert got["method_spec"] == studyconfig.run_settings(demo, run)["method_spec"]
    assert got["method_spec"]["kind"] == "lora" and got["family"] == "gpt2"


def test_generation_settings_take_the_datasets_overrides_and_a_classification_label_set(demo):
    qa = settings.generation_settings(demo, Run("demo", "debian-package-qa", "gpt2-en", "full", 1))
    assert qa["generation"] == {**demo["generation"], "max_new_tokens": 16}  # the dataset's own generation
    assert (qa["max_source_tokens"], qa["max_target_tokens"]) == (112, 16)  # the dataset's training override
    sections = settings.generation_settings(demo, Run("demo", "debian-sections", "gpt2-en", "full", 1))
    assert sections["generation"]["labels"] == ["perl", "python", "libdevel", "javascript", "rust", "golang"]
    assert (sections["max_source_tokens"], sections["max_target_tokens"]) == (64, 8)


def test_base_settings_name_the_base_and_leave_out_the_task_heads():
    spec = {"family": "bert", "source": "hub", "heads": {"classification": "classifier"}, "revision": "abc"}
    assert settings.base_settings("bert-mini", spec) == {"name": "bert-mini", "family": "bert", "source": "hub",
                                                        "revision": "abc"}
    assert "heads" in spec  # the study's entry is left as it was


def test_a_shared_artifact_takes_the_first_declaring_study():
    studies = {"main": {"study": "main", "datasets": {"a": {}}, "models": {"m": {}}},
               "other": {"study": "other", "datasets": {"a": {}, "b": {}}, "corpora": {"c": {}}, "models": {}}}
    assert settings.declaring_study(studies, "datasets", "a")["study"] == "main"
    assert settings.declaring_study(studies, "datasets", "b")["study"] == "other"
    assert settings.declaring_study(studies, "corpora", "c")["study"] == "other"  # "main" has no corpora at all
    assert settings.declaring_study(studies, "models", "m")["study"] == "main"
    with pytest.raises(KeyError, match="models.x"):
        settings.declaring_study(studies, "models", "x")


STUDY = {"study": "s", "title": "t", "methods": {"full": {"kind": "full"}, "lora": {"kind": "lora"}},
         "claims": [{"id": "c"}], "statistics": {"alpha": 0.05, "confidence": 0.95, "power": 0.8},
         "report": {"table1_dataset": "d", "authors": "x"}}


def test_a_study_part_holds_the_selected_keys_as_the_study_has_them():
    part = settings.study_part(STUDY, ["statistics.confidence", "methods", "statistics.alpha", "costs"])
    assert part == {"study": "s", "methods": STUDY["methods"], "statistics": {"alpha": 0.05, "confidence": 0.95}}
    assert repr(part) == repr(dict(part))  # what Snakemake records as the param
    assert part["methods"] is STUDY["methods"]
    # A selected key the study lacks stays absent: its readers default it as with the whole study.
    assert part.get("costs", {}).get("price_sheet", {}).get("currency", "") == ""
    assert "costs" not in part


def test_a_study_part_does_not_depend_on_where_the_study_file_puts_its_keys():
    """Snakemake reruns a job whose params' repr changes: moving a key in the study file must not."""
    moved = {key: STUDY[key] for key in reversed(list(STUDY))}
    moved["statistics"] = {key: STUDY["statistics"][key] for key in reversed(list(STUDY["statistics"]))}
    paths = ["statistics.confidence", "methods", "statistics.alpha", "claims", "report.table1_dataset"]
    assert repr(settings.study_part(moved, paths)) == repr(settings.study_part(STUDY, paths))
    part = settings.study_part(STUDY, paths)
    assert list(part) == ["claims", "methods", "report", "statistics", "study"]  # sorted
    assert list(part["statistics"]) == ["alpha", "confidence"]
    assert list(part["methods"]) == ["full", "lora"]  # a value keeps the study's order (the methods' order matters)


def test_reading_a_key_outside_the_part_fails_naming_it():
    part = settings.study_part(STUDY, ["methods", "statistics.alpha"])
    for read in (lambda: part["claims"], lambda: part.get("claims", []), lambda: "claims" in part,
                 lambda: part["statistics"].get("confidence", 0.95), lambda: part["statistics"]["power"]):
        with pytest.raises(settings.StudyPartError, match="not among this rule's params"):
            read()
    with pytest.raises(settings.StudyPartError, match="'report'"):
        part["report"]


def test_a_study_part_survives_pickling_as_a_job_receives_it():
    part = pickle.loads(pickle.dumps(settings.study_part(STUDY, ["claims", "report.table1_dataset"])))
    assert part == {"study": "s", "claims": [{"id": "c"}], "report": {"table1_dataset": "d"}}
    with pytest.raises(settings.StudyPartError):
        part.get("methods")
    with pytest.raises(settings.StudyPartError):
        part["report"]["authors"]


def test_a_study_part_refuses_a_section_both_whole_and_by_key_and_a_key_the_section_lacks():
    with pytest.raises(ValueError, match="statistics"):
        settings.study_part(STUDY, ["statistics", "statistics.alpha"])
    with pytest.raises(KeyError, match="statistics.bootstrap"):
        settings.study_part(STUDY, ["statistics.bootstrap"])
