# peftstudy: models x fine-tuning methods x ranks x datasets x seeds -> metrics -> statistics -> paper.
#
#   snakemake --profile slurm all          the paper study (config.yaml) on a SLURM cluster
#   snakemake --cores 2 demo                       the embedded demo study (config/demo.yaml)
#   snakemake --cores 2 reports/demo/tables/table1_methods.tex    one table
#   snakemake --cores 2 demo --report reports/demo/report.html      the HTML report (tables, figures, provenance)
#
# Every study file (config.yaml and config/*.yaml) is validated at start-up; outputs are keyed by
# study name, so any study's table or report can be requested by path. See README.md.

import gc

from snakemake.utils import min_version

# The objects of the imports so far (Snakemake's, pandas', numpy's) are left out of the cyclic garbage collector's
# passes: each full pass walked them all again while Snakemake built the DAG, a fifth of a no-op rerun's time
# (benchmarks/dry_run_overhead.py). Objects made from here on are collected as usual.
gc.freeze()

min_version("9.0")


# One software stack for the whole workflow (envs/peftstudy.yaml: the pins of envs/requirements.lock, the same
# that setup.sh installs): with --use-conda Snakemake injects it into its own process, and every job inherits it.
# Every rule names the same file in its own conda: directive too, so `snakemake --lint` finds nothing
# (tests/unit/test_conventions.py).
conda: "envs/peftstudy.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/base.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/adaptive.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/human_eval.smk"


rule all:
    default_target: True
    input:
        **study_target_inputs(MAIN_STUDY),
    localrule: True


# Before the study targets are added: each rule's log follows the one scheme, and no study is named like a rule
# (its target rule takes its name).
check_rules(workflow.rules)


# One target per study (`snakemake --cores 2 demo`). Listing every run's metrics.json here makes a deleted
# per-run artifact count as missing: Snakemake does not regenerate a missing intermediate file on its own.
for _study in STUDIES:

    rule:
        name:
            _study
        input:
            **study_target_inputs(_study),
        localrule: True


# `snakemake --cores 2 demo_bases`: a study's shipped bases, pretrained again from their recipes.
for _study in STUDIES:
    if study_snapshot_bases(_study):

        rule:
            name:
                f"{_study}_bases"
            input:
                study_snapshot_bases(_study),
            localrule: True


# Snakemake inspects each input and params function at each of its calls; they keep their signature instead.
remember_signatures(workflow.rules)


# A failed job: Snakemake's own error, then one block per failed job (cell, one-line cause, log, and the command
# that reruns only that cell). The job's full traceback is in its log (execution.jobs.logged).
onerror:
    from peftstudy.execution.snakefile import report_failed_jobs

    report_failed_jobs(workflow)
