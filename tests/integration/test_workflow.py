"""The real Snakemake workflow on a micro study in a temporary directory: values and caching."""

import copy
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from support.micro import MICRO

REPOSITORY = Path(__file__).resolve().parents[2]

# Every process of these runs sees a CPU with AVX512-BF16 as far as bitsandbytes can tell (its probe forced on), so
# the QLoRA cell takes the route that repacks 4-bit weights unless the project turns it off; TMPDIR gives the
# runs their own zygote (a warm process started elsewhere would not have the probe forced).
FORCED_AVX512BF16 = REPOSITORY / "tests" / "fixtures" / "avx512bf16_probe"


def snakemake(workdir, *args, check=True):
    from support.workflow_runner import run_snakemake

    (Path(workdir) / "tmp").mkdir(exist_ok=True)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(FORCED_AVX512BF16), os.environ.get("PYTHONPATH")])),
           "TMPDIR": str(Path(workdir) / "tmp")}
    return run_snakemake(["--snakefile", REPOSITORY / "Snakefile", "--directory", workdir,
                          "--configfile", Path(workdir) / "config" / "micro.yaml", "--cores", "2", *args], check=check,
                         env=env)


def metrics_value(workdir, dataset, method, rank, metric):
    """The mean over seeds of one cell's metric, read back from metrics.csv."""
    import pandas as pd

    metrics = pd.read_csv(workdir / "results/micro/metrics.csv", dtype={"rank": "string"}, keep_default_na=False)
    rows = metrics[(metrics["dataset"] == dataset) & (metrics["method"] == method) & (metrics["rank"] == rank)
                   & (metrics["metric"] == metric)]
    return pd.to_numeric(rows["value"]).mean()


def write_study(workdir, study):
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "micro.yaml").write_text(yaml.safe_dump(study, sort_keys=False))


def planned_jobs(workdir, *targets):
    """Rule -> job count that a dry run would execute."""
    from support.workflow_runner import parse_job_stats

    result = snakemake(workdir, "-n", *targets)
    return parse_job_stats(result.stdout + result.stderr)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro")
    (path / "data/snapshots").mkdir(parents=True)
    shutil.copy(REPOSITORY / "data/snapshots/debian_descriptions.jsonl.gz", path / "data/snapshots")
    write_study(path, MICRO)
    snakemake(path, "micro")
    return path


@pytest.mark.slow
def test_report_and_tables_are_built(workdir):
    pdf = workdir / "reports/micro/paper.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    table = (workdir / "reports/micro/tables/table1_methods.csv").read_text().splitlines()
    # full, lora r2, lora r4, qlora r2; then the generation dataset's 3 trivial baselines
    assert len(table) == 1 + 4 + 3
    assert [line.split(",")[2] for line in table[5:]] == [
        "baseline:copy_input", "baseline:most_frequent_reference", "baseline:nearest_neighbour"]
    tex = (workdir / "reports/micro/tables/table1_methods.tex").read_text()
    assert r"\toprule" in tex and "LoRA $r=4$" in tex and r"\textit{Trivial} & Copy of an input field" in tex


@pytest.mark.slow
def test_metrics_table_values_equal_independent_recomputation(workdir):
    import pandas as pd
    from sacrebleu.metrics import BLEU
    from scipy import stats as scipy_stats

    metrics = pd.read_csv(workdir / "results/micro/metrics.csv", dtype={"rank": "string"})
    assert list(metrics.columns) == ["study", "dataset", "model", "method", "rank", "seed", "metric", "value", "unit",
                                     "device", "note"]
    every_metric = set(metrics["metric"])
    assert {"rouge1", "rouge2", "rouge_lsum", "meteor", "bertscore_f1", "perplexity", "mattr", "yules_k",
            "novel_ngram_rate", "mean_pairwise_cosine", "train_peak_memory_bytes", "train_energy_kwh",
            "generate_peak_memory_bytes"} <= every_metric
    meteor = metrics[metrics["metric"] == "meteor"]
    assert meteor["value"].notna().all() and (meteor["note"].isna()).all()  # WordNet was prepared and used
    from peftstudy.metrics.efficiency import rapl_domains

    energy = metrics[metrics["metric"] == "train_energy_kwh"]
    if rapl_domains():
        assert (energy["value"] > 0).all()
    else:  # never estimated, never zero
        assert energy["value"].isna().all() and energy["note"].str.startswith("not measured").all()
    assert (metrics[metrics["metric"] == "train_peak_memory_bytes"]["device"] == "cpu").all()
    assert len(metrics[metrics["metric"] == "bleu4"]) == 7  # 3 variants x 2 seeds of the text dataset + QLoRA once
    run = workdir / "results/micro/runs/micro-data/gpt2-micro/lora-r4/seed2"
    rows = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"id", "input", "reference", "prediction"}
    expected = BLEU().corpus_score([r["prediction"] for r in rows], [[r["reference"] for r in rows]]).score
    recorded = metrics.query("method == 'lora' and rank == '4' and seed == 2 and metric == 'bleu4'")["value"].item()
    assert recorded == pytest.approx(expected, abs=1e-9)

    comparisons = pd.read_csv(workdir / "results/micro/stats/comparisons.csv", dtype={"rank_a": "string", "rank_b": "string"})
    # Training time: it differs between every run (the micro models' text scores are all zero).
    times = metrics[(metrics["metric"] == "train_time_s") & (metrics["dataset"] == "micro-data")]
    lora = times.query("method == 'lora' and rank == '2'").sort_values("seed")["value"].to_numpy()
    full = times.query("method == 'full'").sort_values("seed")["value"].to_numpy()
    row = comparisons.query("dataset == 'micro-data' and metric == 'train_time_s' and method_a == 'lora'"
                            " and rank_a == '2' and method_b == 'full'").iloc[0]
    assert row["test"] == "paired_t"  # both ran on seeds 1 and 2: the seeds pair them
    assert row["p_value"] == pytest.approx(scipy_stats.ttest_rel(lora, full).pvalue, rel=1e-9)
    assert row["p_corrected"] >= row["p_value"]

    train = json.loads((run / "train.json").read_text())
    assert train["trainable_parameters"] == 1 * 4 * ((32 + 96) + (32 + 32))  # r * (d_in + d_out), c_attn + c_proj
    assert train["provenance"]["code_version"] and train["provenance"]["packages"]["torch"]
    assert list((run / "weights").glob("*.safetensors"))


@pytest.mark.slow
def test_classification_and_qa_runs_are_scored_by_their_task(workdir):
    import pandas as pd

    from peftstudy.metrics import quality

    metrics = pd.read_csv(workdir / "results/micro/metrics.csv", dtype={"rank": "string"})
    gpt2 = metrics[metrics["model"] == "gpt2-micro"]
    sections = gpt2[gpt2["dataset"] == "micro-sections"].set_index("metric")["value"]
    run = workdir / "results/micro/runs/micro-sections/gpt2-micro/full/seed1"
    rows = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    assert {row["prediction"] for row in rows} <= {"perl", "python", "rust"}  # chosen by label likelihood
    expected = quality.classification([r["prediction"] for r in rows], [r["reference"] for r in rows],
                                      ["perl", "python", "rust"])
    assert sections["accuracy"] == pytest.approx(100 * expected["accuracy"])
    assert sections["f1[rust]"] == pytest.approx(100 * expected["f1[rust]"])
    assert "bleu4" not in sections and json.loads((run / "generation.json").read_text())["decoding"] == "label_likelihood"
    qa_rows = [json.loads(line) for line in
               (workdir / "results/micro/runs/micro-qa/gpt2-micro/full/seed1/generations.jsonl").read_text().splitlines()]
    assert all(row["answers"] for row in qa_rows)
    qa = gpt2[gpt2["dataset"] == "micro-qa"].set_index("metric")["value"]
    assert qa["squad_f1"] == pytest.approx(quality.squad([r["prediction"] for r in qa_rows],
                                                         [r["answers"] for r in qa_rows])["squad_f1"])
    for name in ("classification", "extractive_qa", "per_class"):
        assert (workdir / f"reports/micro/tables/{name}.tex").stat().st_size > 0
    per_class = pd.read_csv(workdir / "reports/micro/tables/per_class.csv")
    assert sorted(set(per_class["class"])) == ["perl", "python", "rust"]

    # BERT: a classifier head and a span head, trained with LoRA (the new head in full), scored by the task.
    bert = workdir / "results/micro/runs/micro-sections/bert-mini/lora-r2/seed1"
    rows = [json.loads(line) for line in (bert / "generations.jsonl").read_text().splitlines()]
    assert {row["prediction"] for row in rows} <= {"perl", "python", "rust"}
    assert json.loads((bert / "generation.json").read_text())["decoding"] == "classifier_argmax"
    bert_metrics = metrics[(metrics["model"] == "bert-mini") & (metrics["dataset"] == "micro-sections")]
    bert_values = bert_metrics.set_index("metric")["value"]
    expected = quality.classification([r["prediction"] for r in rows], [r["reference"] for r in rows],
                                      ["perl", "python", "rust"])
    assert bert_values["accuracy"] == pytest.approx(100 * expected["accuracy"])
    assert bert_values["test_loss"] > 0 and pd.isna(bert_values["perplexity"])
    # MiniLM: 6 layers x 4 attention matrices of 384 x 384 at r = 2, plus the 3-label classifier.
    assert bert_values["trainable_parameters"] == 6 * 4 * 2 * (384 + 384) + (384 * 3 + 3)
    qa_run = workdir / "results/micro/runs/micro-qa/bert-mini/lora-r2/seed1"
    qa_rows = [json.loads(line) for line in (qa_run / "generations.jsonl").read_text().splitlines()]
    contexts = {row["id"]: row["context"] for row in
                map(json.loads, (workdir / "data/prepared/micro-qa/test.jsonl").read_text().splitlines())}
    assert all(row["prediction"] in contexts[row["id"]] for row in qa_rows)  # spans of the context
    bert_qa = metrics[(metrics["model"] == "bert-mini") & (metrics["dataset"] == "micro-qa")].set_index("metric")["value"]
    assert bert_qa["exact_match"] == pytest.approx(quality.squad([r["prediction"] for r in qa_rows],
                                                                 [r["answers"] for r in qa_rows])["exact_match"])


@pytest.mark.slow
def test_qlora_cell_runs_on_the_forced_avx512bf16_route_and_every_record_has_its_provenance(workdir):
    from peftstudy import provenance
    from peftstudy.execution.snakefile import script_fingerprint

    qlora = workdir / "results/micro/runs/micro-data/gpt2-micro/qlora-r2/seed1"
    train = json.loads((qlora / "train.json").read_text())
    assert train["provenance"]["hardware"]["capability"]["bitsandbytes_avx512bf16"] is True  # the forced probe
    assert train["method_extras"]["quantization"]["quantized_modules"] == 4  # really quantized (1 block)
    assert train["validation_losses"] and all(math.isfinite(v) for v in train["validation_losses"])
    assert len(json.loads((qlora / "generation.json").read_text())["settings"]) and (qlora / "generations.jsonl").stat().st_size

    code = {stage: script_fingerprint(REPOSITORY / "workflow/scripts" / f"{stage}.py", REPOSITORY / "src/peftstudy")
            for stage in ("train", "generate", "score")}
    for metrics_path in sorted((workdir / "results/micro/runs").glob("*/*/*/*/metrics.json")):
        run_dir = metrics_path.parent
        train = json.loads((run_dir / "train.json").read_text())
        stages = json.loads(metrics_path.read_text())["provenance"]
        assert stages["train"] == train["provenance"]
        assert stages["generate"] == json.loads((run_dir / "generation.json").read_text())["provenance"]
        assert train["provenance"]["settings_hash"] == provenance.canonical_hash(train["settings"])
        for stage, record in stages.items():
            assert record["stage"] == stage and record["code_fingerprint"] == code[stage], (run_dir, stage)
            assert len(record["settings_hash"]) == 64 and record["packages"]["torch"]
            facts = record["hardware"]["capability"]
            assert facts["torch_cpu_capability"] and facts["cpu"] and "cpu_flags" in facts
            # The job's threads, not the machine's: scoring is pinned to one; training and generation get the CPUs
            # the study asks for (the default 4), which a local run caps at its --cores 2.
            assert facts["torch_threads"] == (1 if stage == "score" else 2), (run_dir, stage)
    # Runs differ in settings, so in their hashes; the two seeds of one cell differ in the seed only.
    hashes = {json.loads(p.read_text())["provenance"]["settings_hash"]
              for p in (workdir / "results/micro/runs").glob("*/*/*/*/train.json")}
    assert len(hashes) == len(list((workdir / "results/micro/runs").glob("*/*/*/*/train.json")))
    tex = (workdir / "reports/micro/paper.tex").read_text()
    assert "Per-run provenance" in tex and tex.count("qlora-r2") >= 1


@pytest.mark.slow
def test_caching_reruns_only_what_changed(workdir):
    assert planned_jobs(workdir, "micro") == {}

    (workdir / "results/micro/runs/micro-data/gpt2-micro/lora-r2/seed1/metrics.json").unlink()
    assert planned_jobs(workdir, "micro") == {
        "score": 1, "aggregate_metrics": 1, "statistics": 1, "comparisons": 1, "anova": 1, "correlations": 1,
        "rank_study": 1, "table1_methods": 1, "significance_table": 1, "stats_table": 7, "claims_table": 1,
        "metric_table": 7, "human_tables": 1, "figure_stats": 5, "figure_output_clusters": 1, "paper_tex": 1,
        "paper_pdf": 1, "micro": 1, "against_baselines": 1, "learned_table": 1, "integrity_table": 1,
        "adaptive_seeds_table": 1,
    }  # the figure reads the cluster count of each variant's first seed; not the rating sheet: no new generations
    snakemake(workdir, "micro")

    for table, rule in (("table1_methods", "table1_methods"), ("anova", "stats_table"), ("claims_check", "claims_table")):
        (workdir / f"reports/micro/tables/{table}.tex").unlink()
        assert planned_jobs(workdir, f"reports/micro/tables/{table}.tex") == {rule: 1}  # from cached statistics
        snakemake(workdir, f"reports/micro/tables/{table}.tex")

    changed = copy.deepcopy(MICRO)
    changed["methods"]["lora"]["training"]["learning_rate"] = 0.004
    write_study(workdir, changed)
    plan = planned_jobs(workdir, "micro")
    # The LoRA runs only: 2 ranks x 2 seeds on GPT-2 and BERT's two task runs; full fine-tuning is untouched.
    assert plan["train"] == 4 + 2
    assert plan["generate"] == 6 and plan["score"] == 6
    assert "prepare_base" not in plan and "prepare_dataset" not in plan

    # A dataset's preparation parameter (its split seed here; a hub revision alike) redoes that dataset and what
    # was trained on it, on every model, and nothing else.
    resplit = copy.deepcopy(MICRO)
    resplit["datasets"]["micro-sections"]["seed"] = 6
    write_study(workdir, resplit)
    plan = planned_jobs(workdir, "micro")
    assert plan["prepare_dataset"] == 1 and plan["train"] == plan["generate"] == plan["score"] == 2
    assert "prepare_base" not in plan

    threshold = copy.deepcopy(MICRO)
    threshold["statistics"] = {"practical_thresholds": {"bleu4": 1.0, "rouge_l": 0.3}}
    write_study(workdir, threshold)
    plan = planned_jobs(workdir, "micro")
    assert plan["comparisons"] == 1 and plan["rank_study"] == 1  # the two that read the thresholds...
    assert not {"statistics", "anova", "correlations", "train", "score"} & set(plan)  # ...and nothing upstream
    write_study(workdir, MICRO)


@pytest.mark.slow
def test_statistics_outputs_and_the_html_report(workdir):
    import pandas as pd

    claims = pd.read_csv(workdir / "reports/micro/tables/claims_check.csv").set_index("claim_id")
    trainable = metrics_value(workdir, "micro-data", "lora", "4", "trainable_percent")
    assert trainable < 5 and claims.loc["lora-trains-fewer-parameters", "verdict"] == "supported"
    assert claims.loc["big-model", "verdict"] == "not testable here"
    assert "gpt2-large" in claims.loc["big-model", "reason"]

    stats_dir = workdir / "results/micro/stats"
    comparisons = pd.read_csv(stats_dir / "comparisons.csv")
    assert set(comparisons["correction"]) == {"holm"} and "practical" in comparisons
    rank = pd.read_csv(stats_dir / "rank_study.csv")
    assert set(rank["rank"]) == {2, 4} and set(rank["method"]) == {"lora"}
    for name in ("anova_oneway", "tukey_hsd", "anova_twoway", "correlations", "power", "summary"):
        assert (stats_dir / f"{name}.csv").stat().st_size > 0
    for name in ("rank_saturation", "quality_vs_parameters", "efficiency", "correlation_heatmap", "diversity"):
        assert (workdir / f"reports/micro/figures/{name}.pdf").read_bytes()[:5] == b"%PDF-"
    snakemake(workdir, "micro", "--report", workdir / "reports/micro/report.html")
    html = (workdir / "reports/micro/report.html").read_text(errors="replace")
    assert "rank_saturation.pdf" in html and "paper.pdf" in html


@pytest.mark.slow
def test_bad_config_stops_before_anything_runs(workdir):
    before = sorted(p.relative_to(workdir) for p in (workdir / "results").rglob("*"))
    broken = copy.deepcopy(MICRO)
    broken["training"]["learnig_rate"] = 0.1
    write_study(workdir, broken)
    try:
        result = snakemake(workdir, "micro", check=False)
    finally:
        write_study(workdir, MICRO)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "config/micro.yaml" in message and "unknown key 'learnig_rate'" in message
    assert sorted(p.relative_to(workdir) for p in (workdir / "results").rglob("*")) == before


@pytest.mark.slow
def test_a_classification_dataset_can_be_table_1(workdir):
    """Seed 001's Table 1 is SST-2: accuracy and macro-F1 columns; the output-cluster figure uses free text."""
    classified = copy.deepcopy(MICRO)
    classified["report"] = {"table1_dataset": "micro-sections"}
    write_study(workdir, classified)
    try:
        plan = planned_jobs(workdir, "micro")
        assert not {"train", "generate", "score", "statistics", "comparisons"} & set(plan)  # the report only
        snakemake(workdir, "micro")
    finally:
        write_study(workdir, MICRO)
    tex = (workdir / "reports/micro/tables/table1_methods.tex").read_text()
    assert r"Accuracy (\%) & Macro-F1 (\%)" in tex and "BLEU" not in tex and "bert-mini" in tex
    assert (workdir / "reports/micro/paper.pdf").read_bytes()[:5] == b"%PDF-"


def rule_scripts(root):
    """Rule -> the workflow script it runs, read from <root>/workflow/rules/*.smk."""
    import re

    scripts = {}
    for rules in (root / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule \w+:)", rules.read_text()):
            found = re.match(r"rule (\w+):.*?script:\s*\n\s*\"\.\./scripts/([\w.]+)\"", block, re.S)
            if found:
                scripts[found.group(1)] = root / "workflow" / "scripts" / found.group(2)
    return scripts


@pytest.mark.slow
def test_a_package_change_redoes_exactly_the_rules_whose_scripts_import_it(workdir, tmp_path):
    """Each rule's `code` param fingerprints its script's import closure: editing a module plans the rules importing
    it (and what follows from their outputs), as forcing those rules would, and nothing else."""
    from support.workflow_runner import parse_job_stats, run_snakemake

    from peftstudy.execution.snakefile import import_closure

    copy = tmp_path / "checkout"  # the Snakefile runs <its dir>/src: edits to the copy's package are what run
    copy.mkdir()
    shutil.copy2(REPOSITORY / "Snakefile", copy)
    for folder in ("workflow", "src"):
        shutil.copytree(REPOSITORY / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))

    def planned(*args):
        result = run_snakemake(["--snakefile", copy / "Snakefile", "--directory", workdir, "--configfile",
                                workdir / "config" / "micro.yaml", "--cores", "2", "-n", "micro", *args])
        return parse_job_stats(result.stdout + result.stderr)

    snakemake(workdir, "micro")  # up to date whatever the tests before left behind
    assert planned() == {}
    scripts = rule_scripts(copy)
    assert len(scripts) >= 25 and {"train", "generate", "score", "aggregate_metrics", "statistics"} <= set(scripts)

    def importers(module):
        return sorted(rule for rule, script in scripts.items() if module in import_closure(script, copy / "src/peftstudy"))

    def plan_after_editing(module):
        path = copy / "src" / module
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit that changes no behaviour, but the code\n")
        try:
            return planned()
        finally:
            path.write_bytes(original)

    # The task heads: model code trained, generated, pretrained (warm starts) and validated in study configs.
    rules = importers("peftstudy/modeling/heads.py")
    assert {"train", "generate", "prepare_base"} <= set(rules)
    assert not {"statistics", "comparisons", "prepare_dataset", "prepare_corpus"} & set(rules)  # tidy tables only
    plan = plan_after_editing("peftstudy/modeling/heads.py")
    assert plan == planned("--forcerun", *rules)
    runs = len(list((workdir / "results/micro/runs").glob("*/*/*/*/metrics.json")))
    assert plan["train"] == plan["generate"] == plan["score"] == runs and "prepare_dataset" not in plan

    # A report formatter: its table (and the paper that includes it), no training, generation or scoring.
    rules = importers("peftstudy/report/stats_tables.py")
    assert rules == ["stats_table"]
    plan = plan_after_editing("peftstudy/report/stats_tables.py")
    assert plan == planned("--forcerun", *rules)
    assert plan["stats_table"] == 7 and "paper_pdf" in plan
    assert not {"train", "generate", "score", "aggregate_metrics", "statistics", "metric_table"} & set(plan)

    assert planned() == {}  # the edits undone, nothing to do again


@pytest.mark.slow
def test_editing_a_study_key_redoes_only_the_outputs_that_read_it(workdir):
    """Each report rule's params hold only the keys of the study its script reads (study_part in report.smk), so
    rewording a claim redoes the claims table, the adaptive-seeds table (it takes the claims' verdicts again) and the
    paper (which states the whole study), no other table or figure; the paper's authors redo the paper alone."""
    snakemake(workdir, "micro")  # up to date whatever the tests before left behind
    reworded = copy.deepcopy(MICRO)
    reworded["claims"][0]["text"] = "LoRA r4 trains under five percent of the parameters"
    authored = copy.deepcopy(MICRO)
    authored["report"] = {"authors": "A. Reviewer"}
    try:
        write_study(workdir, reworded)
        assert planned_jobs(workdir, "micro") == {"claims_table": 1, "adaptive_seeds_table": 1, "paper_tex": 1,
                                                  "paper_pdf": 1, "micro": 1}
        write_study(workdir, authored)
        assert planned_jobs(workdir, "micro") == {"paper_tex": 1, "paper_pdf": 1, "micro": 1}
    finally:
        write_study(workdir, MICRO)
    assert planned_jobs(workdir, "micro") == {}


def _process_with(program, argument_suffix, under, controller, timeout=180):
    """The pid of a running process whose program name starts with `program`, with an argument ending in
    `argument_suffix`, working under the directory `under` (polled from /proc: Snakemake runs a job's script by a
    path relative to its working directory, through a shell whose command line names the script too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if controller.poll() is not None:
            raise AssertionError(f"snakemake ended (exit {controller.returncode}) before {program} ... "
                                 f"{argument_suffix} ran")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if (Path(argv[0]).name.startswith(program) and any(a.endswith(argument_suffix) for a in argv[1:])
                    and cwd.startswith(str(under))):
                return int(entry.name)
        time.sleep(0.02)
    raise AssertionError(f"no {program} ... {argument_suffix} appeared within {timeout} s")


@pytest.mark.slow
def test_a_job_killed_during_generation_scoring_or_the_pdf_is_redone_alone_with_the_same_numbers(workdir):
    """SIGKILL (no handler runs) one job at a time: the failed job leaves no output that looks complete, the
    plan after it holds that job and what depends on it only, and the rerun reproduces the numbers."""
    from support.workflow_runner import SNAKEMAKE

    run = workdir / "results/micro/runs/micro-data/gpt2-micro/lora-r2/seed1"
    generations = (run / "generations.jsonl").read_bytes()
    def computed(path):  # what the numbers are computed from the text; not the timing and memory of generation
        return {name: value for name, value in json.loads(path.read_text())["metrics"].items()
                if not re.search(r"per_s|_ms_|memory|energy|gpu|time", name)}

    metrics = computed(run / "metrics.json")
    assert {"bleu4", "rouge_l", "bertscore_f1", "meteor", "perplexity"} <= set(metrics)
    for name in ("generations.jsonl", "metrics.json"):  # a missing intermediate alone is not redone by Snakemake
        (run / name).unlink()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(workdir / "tmp"), "PEFTSTUDY_ZYGOTE": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FORCED_AVX512BF16), os.environ.get("PYTHONPATH")]))}
    command = [str(SNAKEMAKE), "--snakefile", str(REPOSITORY / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config/micro.yaml"), "--cores", "2", "micro"]
    # The job's own Python process (not the shell that started it); for the PDF, LaTeX itself.
    stages = [("generate", ("python", ".generate.py"), run / "generations.jsonl"),
              ("score", ("python", ".score.py"), run / "metrics.json"),
              ("paper_pdf", ("", "paper.tex"), workdir / "reports/micro/paper.pdf")]
    for rule, process, output in stages:
        controller = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            os.kill(_process_with(*process, workdir, controller), signal.SIGKILL)
            assert controller.wait(timeout=300) != 0, f"snakemake succeeded though its {rule} job was killed"
        finally:
            if controller.poll() is None:
                controller.kill()
        assert not output.exists(), f"the killed {rule} job left {output}"
        plan = planned_jobs(workdir, "micro")
        assert plan.get(rule) == 1 and "train" not in plan and plan.get("generate", 0) <= 1, plan
    snakemake(workdir, "micro")
    assert planned_jobs(workdir, "micro") == {}
    assert (run / "generations.jsonl").read_bytes() == generations
    assert computed(run / "metrics.json") == metrics
    assert (workdir / "reports/micro/paper.pdf").read_bytes()[:5] == b"%PDF-"
