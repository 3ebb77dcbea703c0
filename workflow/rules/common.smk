# Study loading, the run matrix and every input function. Rules stay declarative.

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

from peftstudy import human_eval
from peftstudy import study as studyconfig
from peftstudy.data.prepare import dataset_task, snapshot_corpus
from peftstudy.execution import cluster
from peftstudy.execution.snakefile import script_fingerprint
from peftstudy.report import outputs as paper_report


def code_of(script):
    """The `code` param of a rule running workflow/scripts/<script>: the fingerprint of the package modules the
    script imports (its import closure). Snakemake tracks the script, not the package it calls; with this param a
    change to any module a rule's script imports redoes that rule and what follows, nothing else."""
    return script_fingerprint(Path(workflow.basedir) / "workflow" / "scripts" / script,
                              Path(PACKAGE_SOURCE) / "peftstudy")


wildcard_constraints:
    study=r"[a-z0-9_]+",
    dataset=r"[a-z0-9][a-z0-9_.-]*",
    corpus=r"[a-z0-9][a-z0-9_.-]*",
    model=r"[a-z0-9][a-z0-9_.-]*",
    variant=r"[a-z][a-z0-9_]*(-r[1-9][0-9]*)?",
    seed=r"[0-9]+",
    split=r"train|validation|test",


RESERVED_TARGETS = {"all", "prepare_dataset", "prepare_corpus", "prepare_wordnet", "prepare_base", "train", "generate", "score",
                    "aggregate_metrics", "statistics", "comparisons", "anova", "correlations", "rank_study",
                    "stats_table", "claims_table", "table1_methods", "significance_table", "metric_table", "paper_tex",
                    "paper_pdf", "rating_sheet", "human_ratings", "human_tables", "figure_output_clusters",
                    "figure_stats", "data_card"}


def _load_studies():
    """config.yaml (or the single --configfile) is the main study; config/*.yaml are the others."""
    if workflow.config_settings.config:
        raise WorkflowError(
            "--config overrides are not supported: put the change in a study file (config/<study>.yaml)"
        )
    given = [Path(p) for p in workflow.overwrite_configfiles or []]
    if len(given) > 1:
        raise WorkflowError("give at most one --configfile: each study is one self-contained file")
    main_file = given[0] if given else Path("config.yaml")
    files = [main_file] + sorted(p for p in Path("config").glob("*.yaml") if p.resolve() != main_file.resolve())
    studies, sources = {}, {}
    for path in files:
        study = studyconfig.load_study(path)
        name = study["study"]
        if name in RESERVED_TARGETS:
            raise WorkflowError(f"{path}: study name {name!r} is reserved (it names a rule)")
        if name in studies:
            raise WorkflowError(f"{path}: study name {name!r} is already used by {sources[name]}")
        studies[name], sources[name] = study, path
    problems = studyconfig.shared_definitions_conflicts(studies)
    if problems:
        raise WorkflowError("\n".join(problems))
    main_name = next(iter(studies))  # the main file is loaded first
    return studies, sources, main_name


try:
    STUDIES, STUDY_FILES, MAIN_STUDY = _load_studies()
except studyconfig.StudyConfigError as error:
    raise WorkflowError(f"invalid study config: {error}") from None
RUNS = {study: studyconfig.expand_runs(spec) for study, spec in STUDIES.items()}
RUN_INDEX = {(r.study, r.dataset, r.model, r.variant, int(r.seed)): r for runs in RUNS.values() for r in runs}
DATASETS = {name: spec for s in STUDIES.values() for name, spec in s["datasets"].items()}
CORPORA = {name: spec for s in STUDIES.values() for name, spec in s["corpora"].items()}
MODELS = {name: spec for s in STUDIES.values() for name, spec in s["models"].items()}
SPLITS = ["train", "validation", "test"]
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


def run_settings(wildcards):
    return studyconfig.run_settings(study_of(wildcards), run_of(wildcards))


try:
    CLUSTER_SITE = cluster.site_settings()  # partition/account: environment or slurm/local.yaml
except cluster.ClusterSettingsError as error:
    raise WorkflowError(str(error)) from None
# Shared artifacts (a dataset, a base model) take their resources from the first study declaring them.
DECLARING_STUDY = {(section, name): spec for spec in reversed(list(STUDIES.values()))
                   for section in ("datasets", "corpora", "models") for name in spec[section]}


def cluster_resources(job):
    """A rule's SLURM resources, from the study config per (model, method); memory and runtime grow per attempt.

    The local executor ignores them (it schedules by --cores), so they never change a local run.
    """

    def resources(wildcards, attempt):
        if job in ("train", "generate", "score"):
            run = run_of(wildcards)
            return cluster.slurm_resources(study_of(wildcards), job, model=run.model, method=run.method,
                                           attempt=attempt, site=CLUSTER_SITE)
        if job == "pretrain":
            study, model = DECLARING_STUDY[("models", wildcards.model)], wildcards.model
        else:
            key = ("datasets", wildcards.dataset) if "dataset" in wildcards.keys() else ("corpora", wildcards.corpus)
            study, model = DECLARING_STUDY[key], None
        return cluster.slurm_resources(study, job, model=model, attempt=attempt, site=CLUSTER_SITE)

    return {name: (lambda wildcards, attempt, name=name: resources(wildcards, attempt)[name])
            for name in cluster.SLURM_RESOURCE_NAMES}


def statistics_settings(*keys):
    """An input function giving a stats rule only the study's statistics settings it reads."""
    return lambda wildcards: {key: study_of(wildcards)["statistics"][key] for key in keys}


def generation_settings(wildcards):
    study = study_of(wildcards)
    run = run_of(wildcards)
    training = studyconfig.training_settings(study, run.method, run.model, run.dataset)
    return {
        # A dataset may override generation settings (a class label needs a few tokens, not a paragraph).
        "generation": {**study["generation"], **study["datasets"][run.dataset].get("generation", {}),
                       **({"labels": study["datasets"][run.dataset]["labels"]}
                          if dataset_task(study["datasets"][run.dataset]) == "classification" else {})},
        "max_source_tokens": training["max_source_tokens"],
        "max_target_tokens": training["max_target_tokens"],
        "method_spec": studyconfig.run_settings(study, run)["method_spec"],
        "family": study["models"][run.model]["family"],
    }


def dataset_inputs(wildcards):
    spec = DATASETS[wildcards.dataset]
    if spec["source"] == "snapshot":
        return [f"data/snapshots/{snapshot_corpus(spec['corpus'])}.jsonl.gz"]
    return []


def corpus_inputs(wildcards):
    spec = CORPORA[wildcards.corpus]
    if spec["source"] == "snapshot":
        return [f"data/snapshots/{spec['corpus']}.txt.gz"]
    return []


def base_inputs(wildcards):
    spec = MODELS[wildcards.model]
    if spec["source"] == "scratch":
        return [f"data/corpora/{spec['pretraining']['corpus']}.txt"]
    return []


def base_spec(wildcards):
    """What the base is made from; a study's task heads (which differ between studies) are not part of it."""
    return {"name": wildcards.model, **{k: v for k, v in MODELS[wildcards.model].items() if k != "heads"}}


def run_paths(study_name, filename):
    return [f"{r.directory}/{filename}" for r in RUNS[study_name]]


def study_metrics_inputs(wildcards):
    study_of(wildcards)
    return run_paths(wildcards.study, "metrics.json")


def study_data_manifests(wildcards):
    """Every dataset the study declares is prepared and shown in the report, trained on or not."""
    return [f"data/prepared/{name}/manifest.json" for name in sorted(study_of(wildcards)["datasets"])]


def study_model_bases(wildcards):
    """The base model of every model the study trains: their tokenizers measure the data card's token lengths."""
    return {model: f"results/bases/{model}" for model in sorted({r.model for r in RUNS[wildcards.study]})}


def study_dataset_model_pairs(wildcards):
    return sorted({(r.dataset, r.model) for r in RUNS[wildcards.study]})


def human_eval_settings(wildcards):
    return human_eval.settings(study_of(wildcards))


def human_eval_runs(wildcards):
    """The runs whose outputs go to the raters: every run of the selected datasets (by default, those whose
    outputs are free text) and models."""
    settings = human_eval_settings(wildcards)
    study = study_of(wildcards)
    text_datasets = [name for name, spec in study["datasets"].items() if dataset_task(spec) == "generation"]
    selected = [r for r in RUNS[wildcards.study]
                if r.dataset in settings.get("datasets", text_datasets) and r.model in settings.get("models", [r.model])]
    return [{"dataset": r.dataset, "model": r.model, "method": r.method, "rank": "" if r.rank is None else str(r.rank),
             "seed": r.seed, "directory": r.directory} for r in selected]


def human_eval_generations(wildcards):
    return [f"{run['directory']}/generations.jsonl" for run in human_eval_runs(wildcards)]


def human_eval_rating_files(wildcards):
    return sorted(str(p) for p in Path(human_eval_settings(wildcards)["ratings_dir"]).glob("*.csv"))


def cluster_figure_panels(wildcards):
    """Per model of the Table-1 dataset (or, when it is not free text, the study's first free-text dataset): every
    method variant's first seed (its generations and metrics). None when the study generates no free text."""
    study = study_of(wildcards)
    free_text = [name for name in [study["report"]["table1_dataset"], *study["datasets"]]
                 if dataset_task(study["datasets"][name]) == "generation"]
    if not free_text:
        return []
    dataset = free_text[0]
    panels = {}
    for run in RUNS[wildcards.study]:
        if run.dataset != dataset:
            continue
        series = panels.setdefault(run.model, {})
        if run.variant not in series or run.seed < series[run.variant]["seed"]:
            series[run.variant] = {"seed": run.seed, "label": run.variant,
                                   "generations": f"{run.directory}/generations.jsonl", "metrics": f"{run.directory}/metrics.json"}
    order = {name: index for index, name in enumerate(study["methods"])}
    return [{"title": f"{model} on {dataset}: outputs per method (first seed)",
             "series": sorted(series.values(), key=lambda s: (order[studyconfig.parse_variant(s["label"])[0]],
                                                              studyconfig.parse_variant(s["label"])[1] or 0))}
            for model, series in sorted(panels.items())]


PAPER_FIGURES = list(paper_report.FIGURES)


def paper_figures(wildcards):
    return [f"reports/{wildcards.study}/figures/{name}.pdf" for name in PAPER_FIGURES]


PAPER_TABLES = paper_report.paper_tables()


def paper_tables(wildcards):
    return [f"reports/{wildcards.study}/tables/{name}.tex" for name in PAPER_TABLES]


def study_targets(study_name, with_runs=False):
    targets = [f"reports/{study_name}/tables/{name}.tex" for name in PAPER_TABLES] + [
        f"reports/{study_name}/figures/{name}.pdf" for name in PAPER_FIGURES] + [
        f"reports/{study_name}/paper.pdf", f"reports/{study_name}/human_eval/rating_sheet.csv"]
    return targets + (run_paths(study_name, "metrics.json") if with_runs else [])
