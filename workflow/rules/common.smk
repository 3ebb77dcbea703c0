# Study loading, the run matrix and every input function. Rules stay declarative.

import functools
import json
import os
import sys
from pathlib import Path

# This checkout's package, for this process and for every job it starts (scripts, the zygote): a venv
# shared between checkouts, or an installed peftstudy, must never supply the code of a job.
PACKAGE_SOURCE = str(Path(workflow.basedir) / "src")
sys.path.insert(0, PACKAGE_SOURCE)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_SOURCE, os.environ.get("PYTHONPATH")]))
# Where prepare_wordnet puts METEOR's WordNet: the zygote keeps it loaded for the scoring jobs.
os.environ["PEFTSTUDY_NLTK_DATA"] = str(Path("data/nltk").resolve())
# Both are set above, so the assertion always holds; the directive passes them on to jobs on remote executors.


envvars:
    "PYTHONPATH",
    "PEFTSTUDY_NLTK_DATA",


from peftstudy import adaptive
from peftstudy import baselines
from peftstudy import human_eval
from peftstudy import study as studyconfig
from peftstudy.data import user_files
from peftstudy.data.prepare import SPLITS, dataset_task, snapshot_corpus
from peftstudy.execution import cluster
from peftstudy.execution.snakefile import (
    log_scheme_problems,
    remember_signature,
    remember_signatures,
    script_fingerprint,
    script_fingerprints,
)
from peftstudy.report import outputs as paper_report
from peftstudy.report.panels import output_cluster_panels
from peftstudy.study import matrix
from peftstudy.study import settings as study_settings

SCRIPTS_DIR = Path(workflow.basedir) / "workflow" / "scripts"
PACKAGE_ROOT = Path(PACKAGE_SOURCE) / "peftstudy"


def code_of(script):
    """The `code` param of the rules running workflow/scripts/<script>, the fingerprint of the package modules the
    script imports (its import closure). Snakemake tracks the script, not the package it calls; with this param a
    change to any module a rule's script imports redoes that rule and what follows, nothing else."""
    known = _script_fingerprints()
    return known[script] if script in known else script_fingerprint(SCRIPTS_DIR / script, PACKAGE_ROOT)


@functools.cache
def _script_fingerprints():
    """Every script's fingerprint, computed together: the package's files are listed once for all."""
    scripts = sorted(SCRIPTS_DIR.glob("*.py"))
    return dict(zip((script.name for script in scripts), script_fingerprints(scripts, PACKAGE_ROOT)))


# Each name in a path matches what its definition allows (the study schema; a Run's variant and seed; the splits).
wildcard_constraints:
    **matrix.path_patterns(studyconfig.load_schema()),
    split="|".join(SPLITS),
    look="[1-9][0-9]*",


def _main_study_file():
    """config.yaml, or the one --configfile; --config overrides are refused (a study is one self-contained file)."""
    if workflow.config_settings.config:
        raise WorkflowError(
            "--config overrides are not supported: put the change in a study file (config/<study>.yaml)"
        )
    given = [Path(p) for p in workflow.overwrite_configfiles or []]
    if len(given) > 1:
        raise WorkflowError("give at most one --configfile: each study is one self-contained file")
    return given[0] if given else Path("config.yaml")


try:
    STUDIES, STUDY_FILES = studyconfig.load_studies(_main_study_file(), "config")
except studyconfig.StudyConfigError as error:
    raise WorkflowError(f"invalid study config: {error}") from None
MAIN_STUDY = next(iter(STUDIES))  # the main file is loaded first
RUNS = {study: studyconfig.expand_runs(spec) for study, spec in STUDIES.items()}
RUN_INDEX = {(r.study, r.dataset, r.model, r.variant, int(r.seed)): r for runs in RUNS.values() for r in runs}
DATASETS = {name: spec for s in STUDIES.values() for name, spec in s["datasets"].items()}
CORPORA = {name: spec for s in STUDIES.values() for name, spec in s["corpora"].items()}
MODELS = {name: spec for s in STUDIES.values() for name, spec in s["models"].items()}
RUN_DIR = "results/{study}/runs/{dataset}/{model}/{variant}/seed{seed}"


def study_of(wildcards):
    try:
        return STUDIES[wildcards.study]
    except KeyError:
        raise WorkflowError(f"no study named {wildcards.study!r} (known: {', '.join(sorted(STUDIES))})") from None


def run_of(wildcards):
    key = (wildcards.study, wildcards.dataset, wildcards.model, wildcards.variant, int(wildcards.seed))
    if key not in RUN_INDEX:
        raise WorkflowError(f"{RUN_DIR.format(**wildcards)} is not a run of study {wildcards.study!r}")
    return RUN_INDEX[key]


def check_rules(rules):
    """The Snakefile's check of its rules, before it adds a target rule per study. Every rule that runs a script
    keeps one log, logs/{study}/<rule>/<its other wildcards>.log (or .../job.log), logs/shared/<rule>/... where it
    has no study (docs/cluster.md, "Logs"); and no study is named like a rule (its target rule would clash)."""
    rules = list(rules)
    problems = log_scheme_problems(
        (rule.name, list(rule.log), rule.wildcard_names, rule.script is not None) for rule in rules
    )
    if problems:
        raise WorkflowError("log paths outside the one scheme:\n" + "\n".join(problems))
    for name in sorted(set(STUDIES) & {each.name for each in rules}):
        raise WorkflowError(f"{STUDY_FILES[name]}: study name {name!r} is reserved (it names a rule)")


def settings_of_run(wildcards):
    return studyconfig.run_settings(study_of(wildcards), run_of(wildcards))


try:
    CLUSTER_SITE = cluster.site_settings()  # partition/account: environment or slurm/local.yaml
except cluster.ClusterSettingsError as error:
    raise WorkflowError(str(error)) from None


def cluster_resources(job):
    """A rule's SLURM resources, from the study config per (model, method); memory and runtime grow per attempt:
    one function of (wildcards, attempt) per resource (rules take rule_resources).

    The local executor ignores them (it schedules by --cores), so they never change a local run.
    """
    return {
        name: remember_signature(
            lambda wildcards, attempt, name=name: _job_resources(job, *_resource_cell(job, wildcards), attempt)[name]
        )
        for name in cluster.SLURM_RESOURCE_NAMES
    }


def _resource_cell(job, wildcards):
    """(study, model, method) whose settings give a job its resources."""
    if job == "baseline":  # scored like a run, with no model of its own
        return wildcards.study, None, None
    if job in ("train", "generate", "score"):
        run = run_of(wildcards)
        return run.study, run.model, run.method
    # A shared artifact (a dataset, corpus or base model) takes its resources from the first study declaring it.
    if job == "pretrain":
        return _declaring_study("models", wildcards.model), wildcards.model, None
    if "dataset" in wildcards.keys():
        return _declaring_study("datasets", wildcards.dataset), None, None
    return _declaring_study("corpora", wildcards.corpus), None, None


def _declaring_study(section, name):
    return study_settings.declaring_study(STUDIES, section, name)["study"]


@functools.lru_cache(maxsize=None)
def _job_resources(job, study, model, method, attempt):
    """cluster.slurm_resources, once per cell and attempt: Snakemake asks for each resource of each job apart."""
    return cluster.slurm_resources(
        STUDIES[study], RESOURCES_OF.get(job, job), model=model, method=method, attempt=attempt, site=CLUSTER_SITE
    )


# Jobs that ask for another job kind's resources: a baseline is scored like a run.
RESOURCES_OF = {"baseline": "score"}


# What cluster.slurm_resources grows with each attempt: these stay functions of the attempt.
ATTEMPT_GROWN_RESOURCES = ("mem_mb", "runtime")


def rule_resources(job):
    """cluster_resources as a rule's `resources:`, where each resource with one value for every job the rule can
    have (in every loaded study) is given as that value (None included: unset, as before).

    Snakemake evaluates a resource given as a function once per job, at about 0.1 ms of its own bookkeeping a call:
    nine per model job were a third of `snakemake -n all` (benchmarks/dry_run_overhead.py).
    """
    if job in ("train", "generate", "score"):
        cells = {(run.study, run.model, run.method) for runs in RUNS.values() for run in runs}
    elif job == "baseline":
        cells = {(study, None, None) for study in STUDIES}
    elif job == "pretrain":
        cells = {(_declaring_study("models", model), model, None) for model in MODELS}
    else:
        cells = {
            (_declaring_study(section, name), None, None)
            for section, names in (("datasets", DATASETS), ("corpora", CORPORA))
            for name in names
        }
    resources = cluster_resources(job)
    for name in cluster.SLURM_RESOURCE_NAMES:
        values = {_job_resources(job, *cell, 1)[name] for cell in cells}
        if len(values) == 1 and name not in ATTEMPT_GROWN_RESOURCES:
            resources[name] = values.pop()
    return resources


def job_threads(job):
    """The job's threads, which its script hands to torch: the CPUs the study asks SLURM for (cpus_per_task), so
    none of them sits idle. A local run caps them at --cores; --set-threads overrides them."""
    cpus = cluster_resources(job)["cpus_per_task"]
    return lambda wildcards: cpus(wildcards, 1)


def study_part(*paths):
    """An input function giving a rule only the keys of its study that its script reads ("methods",
    "statistics.alpha", ...; see study.settings.study_part): editing any other key of the study reruns none of its
    jobs, and a script reading a key left out fails naming it."""
    return lambda wildcards: study_settings.study_part(study_of(wildcards), paths)


def statistics_settings(*keys):
    """A stats rule's statistics settings: the part of the study's `statistics` section its script reads."""
    part = study_part(*(f"statistics.{key}" for key in keys))
    return lambda wildcards: part(wildcards)["statistics"]


def generation_settings(wildcards):
    return study_settings.generation_settings(study_of(wildcards), run_of(wildcards))


def dataset_inputs(wildcards):
    spec = DATASETS[wildcards.dataset]
    if spec["source"] == "snapshot":
        return [f"data/snapshots/{snapshot_corpus(spec['corpus'])}.jsonl.gz"]
    if spec["source"] == "files":  # the study's own data: editing a file prepares the dataset again
        return user_files.input_files(spec)
    return []


def corpus_inputs(wildcards):
    spec = CORPORA[wildcards.corpus]
    names = spec["corpus"] if isinstance(spec["corpus"], list) else [spec["corpus"]]
    return [f"data/snapshots/{name}.txt.gz" for name in names] if spec["source"] == "snapshot" else []


def corpus_evaluation_splits(wildcards):
    """The evaluation splits a corpus is decontaminated against (its spec's decontaminate.datasets)."""
    names = (CORPORA[wildcards.corpus].get("decontaminate") or {}).get("datasets", [])
    return [f"data/prepared/{name}/{split}.jsonl" for name in names for split in ("validation", "test")]


def base_inputs(wildcards):
    spec = MODELS[wildcards.model]
    if spec["source"] == "scratch":
        return [f"data/corpora/{spec['pretraining']['corpus']}.txt"]
    if spec["source"] == "snapshot":  # a changed shipped file redoes what was built on it
        return sorted(str(path) for path in Path(spec["snapshot"]).glob("*"))
    return []


def base_spec(wildcards):
    spec = MODELS[wildcards.model]
    settings = study_settings.base_settings(wildcards.model, spec)
    if spec["source"] == "snapshot":  # the corpus is part of a shipped base's recipe
        settings["corpus_spec"] = CORPORA[spec["pretraining"]["corpus"]]
    return settings


SNAPSHOT_MODELS = sorted(name for name, spec in MODELS.items() if spec["source"] == "snapshot")


def study_snapshot_bases(study_name):
    """What `snakemake <study>_bases` builds: each shipped base of the study, pretrained again from its recipe."""
    return [f"results/base_builds/{name}" for name in sorted(STUDIES[study_name]["models"]) if name in SNAPSHOT_MODELS]


def snapshot_corpus_inputs(wildcards):
    corpus = MODELS[wildcards.model]["pretraining"]["corpus"]
    return {"text": f"data/corpora/{corpus}.txt", "manifest": f"data/corpora/{corpus}.manifest.json"}


def run_paths(study_name, filename):
    return [f"{r.directory}/{filename}" for r in study_runs(study_name)]


def study_runs(study_name):
    """The runs whose results the study reads: every run of a fixed-seed study; for an adaptive one the runs of its
    fixed blocks and those its last look used (and the whole grid, where it validates against it). Only in an input
    function: an adaptive study's runs are known once its looks have run."""
    return sorted(set(planned_runs(study_name)) | set(looked_runs(study_name)))


def planned_runs(study_name):
    """The runs known before any look: all of a fixed-seed study's; an adaptive one's fixed blocks (and its whole
    grid, where it validates against it)."""
    study = STUDIES[study_name]
    plan = adaptive.design(study)
    if plan is None:
        return RUNS[study_name]
    return sorted(set(adaptive.fixed_runs(study)) | set(adaptive.full_grid_runs(study) if plan["full_grid"] else ()))


def looked_runs(study_name):
    """The runs an adaptive study's last look used (none for a fixed-seed study)."""
    if adaptive.design(STUDIES[study_name]) is None:
        return []
    return adaptive.runs_of_record(adaptive_last_record(study_name))


def adaptive_record(study_name, look):
    """The record of a look (its checkpoint's output): asking for it before it exists makes Snakemake run that look
    first and ask again after it."""
    return json.loads(Path(checkpoints.adaptive_look.get(study=study_name, look=str(look)).output[0]).read_text())


def adaptive_last_record(study_name):
    """The record of the study's last look: the looks are followed one by one until one finishes the design."""
    look = adaptive.design(STUDIES[study_name])["min"]
    while not (record := adaptive_record(study_name, look))["finished"]:
        look += 1
    return record


def adaptive_last_look(wildcards):
    record = adaptive_last_record(wildcards.study)
    return f"results/{wildcards.study}/adaptive/look{record['look']}.json"


def adaptive_look_runs(study_name, look):
    """The runs a look decides on: round one's (every adaptive cell's first `min` seeds), then the previous look's
    runs and the next seed of each cell it left open."""
    study = STUDIES[study_name]
    plan = adaptive.design(study)
    if plan is None:
        raise WorkflowError(f"study {study_name!r} has a fixed seed list: it has no adaptive looks")
    if not plan["min"] <= look <= plan["max"]:
        raise WorkflowError(f"study {study_name!r} looks after {plan['min']} to {plan['max']} seeds, not {look}")
    if look == plan["min"]:
        return adaptive.first_look_runs(study)
    return adaptive.next_look_runs(adaptive_record(study_name, look - 1))


def adaptive_look_inputs(wildcards):
    return [f"{run.directory}/metrics.json" for run in adaptive_look_runs(wildcards.study, int(wildcards.look))]


def study_metrics_inputs(wildcards):
    study_of(wildcards)
    return run_paths(wildcards.study, "metrics.json")


def study_baseline_specs(study_name):
    """(dataset, baseline name) -> its spec, for every dataset the study trains on and each baseline of its task."""
    study = STUDIES[study_name]
    datasets = sorted({run.dataset for run in RUNS[study_name]})
    return {
        (dataset, name): spec
        for dataset in datasets
        for name, spec in baselines.study_baselines(study, dataset_task(DATASETS[dataset])).items()
    }


def study_baseline_records(wildcards):
    study_of(wildcards)
    return [
        f"results/{wildcards.study}/baselines/{dataset}/{name}/metrics.json"
        for dataset, name in study_baseline_specs(wildcards.study)
    ]


def baseline_spec(wildcards):
    study_of(wildcards)
    key = (wildcards.dataset, wildcards.baseline)
    specs = study_baseline_specs(wildcards.study)
    if key not in specs:
        raise WorkflowError(
            f"study {wildcards.study!r} runs no baseline {wildcards.baseline!r} on dataset "
            f"{wildcards.dataset!r} (its baselines: {', '.join(sorted(n for _, n in specs)) or 'none'})"
        )
    return specs[key]


def baseline_test_examples(wildcards):
    """As generation reads the test split: its max_test_examples first rows."""
    return study_settings.dataset_generation(study_of(wildcards), wildcards.dataset).get("max_test_examples")


def study_data_manifests(wildcards):
    """Every dataset the study declares is prepared and shown in the report, trained on or not."""
    return [f"data/prepared/{name}/manifest.json" for name in sorted(study_of(wildcards)["datasets"])]


def study_model_bases(wildcards):
    """The base model of every model the study trains: their tokenizers measure the data card's token lengths."""
    return {model: f"results/bases/{model}" for model in sorted({r.model for r in RUNS[wildcards.study]})}


def study_generation_datasets(wildcards):
    """The datasets the study trains on whose task is text generation: their outputs can copy a training reference."""
    return sorted({r.dataset for r in RUNS[wildcards.study] if dataset_task(DATASETS[r.dataset]) == "generation"})


def study_dataset_model_pairs(wildcards):
    return sorted({(r.dataset, r.model) for r in RUNS[wildcards.study]})


def human_eval_settings(*keys):
    """An input function giving a rule the human-evaluation settings it reads."""
    return lambda wildcards: {key: human_eval.settings(study_of(wildcards))[key] for key in keys}


def human_eval_runs(wildcards):
    return human_eval.evaluated_runs(study_of(wildcards), study_runs(wildcards.study))


def human_eval_generations(wildcards):
    return [f"{run['directory']}/generations.jsonl" for run in human_eval_runs(wildcards)]


def human_eval_rating_files(wildcards):
    return sorted(str(p) for p in Path(human_eval.settings(study_of(wildcards))["ratings_dir"]).glob("*.csv"))


def cluster_figure_panels(wildcards):
    return output_cluster_panels(study_of(wildcards), RUNS[wildcards.study])


PAPER_FIGURES = list(paper_report.FIGURES)


def paper_figures(wildcards):
    return [f"reports/{wildcards.study}/figures/{name}.pdf" for name in PAPER_FIGURES]


PAPER_TABLES = paper_report.paper_tables()


def paper_tables(wildcards):
    return [f"reports/{wildcards.study}/tables/{name}.tex" for name in PAPER_TABLES]


def study_targets(study_name):
    targets = (
        [f"reports/{study_name}/tables/{name}.tex" for name in PAPER_TABLES]
        + [f"reports/{study_name}/figures/{name}.pdf" for name in PAPER_FIGURES]
        + [
            f"reports/{study_name}/paper.pdf",
            f"reports/{study_name}/human_eval/rating_sheet.csv",
            f"results/{study_name}/baselines.csv",
        ]
    )
    return targets


def study_target_inputs(study_name):
    """A study's target rule's inputs (study_targets and its runs' metrics), as functions: Snakemake then lists the
    files only for the targets asked for, not for every study's at each start (~2,500 files, 0.1 s). The runs an
    adaptive study's looks choose are an input apart, so `snakemake -n` lists the others before the first look."""
    return {
        "reports": lambda wildcards: study_targets(study_name),
        "runs": lambda wildcards: [f"{run.directory}/metrics.json" for run in planned_runs(study_name)],
        "looked_runs": lambda wildcards: [f"{run.directory}/metrics.json" for run in looked_runs(study_name)],
    }
