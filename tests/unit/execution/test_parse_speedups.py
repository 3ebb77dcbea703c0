"""What the Snakefile does to start faster changes nothing a job gets: fingerprints computed together, function
signatures given to Snakemake once, resources that are the same for every job given as plain values."""

import inspect
import re
from pathlib import Path

from snakemake.common import get_function_params, get_input_function_aux_params

from peftstudy.execution import cluster, snakefile
from peftstudy.study.config import load_study

REPOSITORY = Path(__file__).resolve().parents[3]
SCRIPTS = REPOSITORY / "workflow" / "scripts"
PACKAGE = REPOSITORY / "src" / "peftstudy"


def test_fingerprints_computed_together_are_each_scripts_own():
    scripts = sorted(SCRIPTS.glob("*.py"))
    one_by_one = [snakefile.script_fingerprint(script, PACKAGE) for script in scripts]
    assert snakefile.script_fingerprints(scripts, PACKAGE) == one_by_one


def test_fingerprints_computed_together_see_a_data_file_beside_one_module(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "schema.yaml").write_text("a: 1\n")
    (tmp_path / "uses_sub.py").write_text("import pkg.sub\n")
    (tmp_path / "uses_pkg.py").write_text("import pkg\n")
    scripts = [tmp_path / "uses_sub.py", tmp_path / "uses_pkg.py"]
    before = snakefile.script_fingerprints(scripts, tmp_path / "pkg")
    (tmp_path / "pkg" / "sub" / "schema.yaml").write_text("a: 2\n")
    after = snakefile.script_fingerprints(scripts, tmp_path / "pkg")
    assert after[0] != before[0] and after[1] == before[1]
    assert after == [snakefile.script_fingerprint(script, tmp_path / "pkg") for script in scripts]


def test_a_remembered_signature_gives_snakemake_the_same_arguments():
    def plain(wildcards, input, attempt=1):
        return wildcards

    def remembered(wildcards, input, attempt=1):
        return wildcards

    def takes_any(wildcards, **kwargs):
        return wildcards

    assert snakefile.remember_signature(remembered) is remembered
    snakefile.remember_signature(takes_any)
    offered = {"input": ["a"], "output": ["b"], "attempt": 2, "threads": 4}
    assert list(get_function_params(remembered)) == list(inspect.signature(plain).parameters)
    assert get_input_function_aux_params(remembered, offered) == get_input_function_aux_params(plain, offered)
    assert get_input_function_aux_params(takes_any, offered) == offered
    assert snakefile.remember_signature("not a function") == "not a function"


def test_remember_signatures_covers_the_input_and_params_functions_of_rules():
    class Rule:
        def __init__(self, *items):
            self.input, self.params = list(items), []

    def function(wildcards):
        return []

    snakefile.remember_signatures([Rule("a/path", function)])
    assert list(get_function_params(function)) == ["wildcards"]


def test_only_memory_and_runtime_grow_with_the_attempt(repository):
    """The Snakefile (rule_resources) gives a resource as a plain value where every job has the same, except memory and
    runtime, which it keeps as functions of the attempt: nothing else may depend on the attempt."""
    study = load_study(repository / "config.yaml")
    study["resources"] = {**study.get("resources", {}), "attempt_scaling": 2}
    site = {"partition": "cpu", "gpu_partition": "gpu", "account": "acct"}
    for job in cluster.JOB_KINDS:
        model = "llama-7b" if job in ("pretrain", "train", "generate") else None
        first, third = (cluster.slurm_resources(study, job, model=model, method="lora", attempt=attempt, site=site)
                        for attempt in (1, 3))
        assert {name for name in first if first[name] != third[name]} <= {"mem_mb", "runtime"}, job


def test_a_dry_run_prints_the_resources_each_job_asks_slurm_for(snakemake_runner, repository):
    """With resources the same for every job given as plain values, each model job still asks for its own cell's."""
    from peftstudy.study.matrix import parse_variant

    study = load_study(repository / "config" / "demo.yaml")
    result = snakemake_runner(["-n", "--forceall", "--cores", "2", "demo"])
    checked = 0
    for rule, block in re.findall(r"^rule (\w+):\n((?:    .*\n)*)", result.stdout + result.stderr, re.M):
        if rule not in ("train", "generate", "score"):
            continue
        wildcards = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"^    wildcards: (.*)$", block, re.M).group(1)))
        printed = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"^    resources: (.*)$", block, re.M).group(1)))
        expected = cluster.slurm_resources(study, rule, model=wildcards["model"],
                                           method=parse_variant(wildcards["variant"])[0],
                                           site=cluster.site_settings())
        assert {name: printed.get(name) for name in expected} == {
            name: None if value is None else str(value) for name, value in expected.items()}, (rule, wildcards)
        checked += 1
    assert checked == 3 * 34  # train, generate and score of the demo's 34 runs


def test_studies_share_one_schema_validator_per_method_registry():
    from peftstudy.study import config

    config._study_validator.cache_clear()
    for path in ("config.yaml", "config/demo.yaml", "config/seed001.yaml"):
        load_study(REPOSITORY / path)
    assert config._study_validator.cache_info().misses == 1  # built once, not once per study
