"""The shipped study configs expand to their full job matrices without touching the network."""


def test_paper_study_dry_run_lists_the_full_matrix(snakemake_runner, job_stats):
    result = snakemake_runner(["-n", "all"])
    counts = job_stats(result.stdout + result.stderr)
    # seed000 block: full + LoRA x5 + QLoRA + adapters x4 + prefix + MAM + UniPELT + LoRA+prefix = 15 variants,
    # on 3 datasets x 4 models minus LLaMA full; T5 split ranks on 3 datasets; methods_extra: 8 methods on
    # the products domain x 4 models minus BitFit on T5 and LLaMA. Five seeds each.
    runs = 5 * (3 * (4 * 15 - 1) + 3 + (8 * 4 - 2))
    assert counts["train"] == counts["generate"] == counts["score"] == runs == 1050
    assert counts["prepare_base"] == 4 and counts["prepare_dataset"] == 3
    assert counts["paper_pdf"] == 1


def test_demo_study_compares_full_fine_tuning_and_lora_on_every_domain_and_task(snakemake_runner, job_stats):
    result = snakemake_runner(["-n", "--forceall", "demo"])
    counts = job_stats(result.stdout + result.stderr)
    core = 4 * 3 + 2 * 3  # GPT-2: full + 3 LoRA ranks; T5: full + LoRA r8; three seeds
    domains = 2 * 4  # FOLDOC and Jargon x (full + 3 LoRA ranks) on GPT-2, one seed
    tasks = 2 * 2 * 2  # classification and QA x (full, LoRA r8) x 2 seeds on GPT-2
    assert counts["train"] == counts["generate"] == core + domains + tasks == 34
    # The bases are the shipped snapshots (data/bases/): the demo neither builds the corpus nor pretrains.
    assert counts["prepare_base"] == 2 and "prepare_corpus" not in counts and "build_snapshot_base" not in counts
    # The trivial baselines of each trained dataset: 3 per generation dataset, majority class, QA window.
    assert counts["baseline"] == 3 * 3 + 1 + 1 and counts["aggregate_baselines"] == 1
    # Adaptive seeds on the core blocks: round one is their first two seeds (12 runs), and the look after it is a
    # checkpoint; the demo runs seed 3 everywhere too (full_grid), so the plan holds all 34 runs from the start.
    assert counts["adaptive_look"] == 1
    output = result.stdout + result.stderr
    assert "look after 2 seeds of study demo, on 12 runs: it decides which cells run the next seed" in output
    assert "DAG of jobs will be updated after completion." in output


def test_demo_methods_runs_every_other_method_once(snakemake_runner, job_stats):
    result = snakemake_runner(["-n", "--forceall", "demo_methods"])
    counts = job_stats(result.stdout + result.stderr)
    # 15 methods + full on GPT-2, LoRA r8 on both, full + 5 methods on T5: one seed
    assert counts["train"] == counts["generate"] == 16 + 2 + 6 == 24


def test_demo_bases_rebuilds_the_shipped_bases_from_a_decontaminated_corpus(snakemake_runner, job_stats):
    result = snakemake_runner(["-n", "--forceall", "demo_bases"])
    counts = job_stats(result.stdout + result.stderr)
    # one corpus, decontaminated against the evaluation splits of the five datasets; one build per base
    assert counts["build_snapshot_base"] == 2 and counts["prepare_corpus"] == 1 and counts["prepare_dataset"] == 5
    assert "results/base_builds/gpt2-en" in result.stdout + result.stderr


def test_seed004_study_expands_to_its_27_cells_with_their_own_settings(snakemake_runner, job_stats, repository):
    from peftstudy.study.config import load_study
    from peftstudy.study.matrix import Run
    from peftstudy.study.settings import run_settings

    result = snakemake_runner(["-n", "seed004"])
    counts = job_stats(result.stdout + result.stderr)
    # BERT (BERT2BERT for summaries), GPT-2 and T5-Small x sentiment, QA and summaries x LoRA, QLoRA and SFT,
    # three seeds each.
    assert counts["train"] == counts["generate"] == counts["score"] == 3 * 3 * 3 * 3 == 81
    assert counts["prepare_base"] == 4 and counts["prepare_dataset"] == 3 and counts["paper_pdf"] == 1

    study = load_study(repository / "config" / "seed004.yaml")

    def cell(dataset, model, variant):
        return run_settings(study, Run("seed004", dataset, model, variant, 42))

    bert_qa = cell("squad", "bert-base", "qlora-r16")  # §V.4.8
    assert bert_qa["method_spec"]["head"] == {"kind": "span", "module": "qa_outputs", "max_length": 384, "stride": 128,
                                              "max_answer_tokens": 30}
    assert bert_qa["method_spec"]["alpha"] == 32 and bert_qa["method_spec"]["target_modules"] == ["query", "value", "key", "dense"]
    assert bert_qa["training"]["learning_rate"] == 2e-4 and bert_qa["training"]["batch_size"] == 8
    gpt2_sentiment = cell("amazon", "gpt2-small", "lora-r8")  # §V.5.1
    assert gpt2_sentiment["method_spec"]["head"]["kind"] == "classifier"
    assert gpt2_sentiment["method_spec"]["head"]["labels"] == ["negative", "positive"]
    assert gpt2_sentiment["method_spec"]["target_modules"] == ["c_attn"]
    assert {k: gpt2_sentiment["training"][k] for k in ("batch_size", "gradient_accumulation_steps", "max_grad_norm",
                                                        "max_source_tokens")} == {
        "batch_size": 8, "gradient_accumulation_steps": 4, "max_grad_norm": 0.1, "max_source_tokens": 256}
    t5_summaries = cell("cnn", "t5-small", "qlora-r8")  # §V.6.8
    assert "head" not in t5_summaries["method_spec"] and t5_summaries["training"]["epochs"] == 1
    assert cell("cnn", "t5-small", "lora-r4")["method_spec"]["dropout"] == 0.1
    assert cell("cnn", "bert-base-s2s", "full")["family"] == "bert2bert"


def test_seed001_study_expands_to_lora_r8_against_full_on_every_task(snakemake_runner, job_stats, repository):
    from peftstudy.study.config import load_study
    from peftstudy.study.matrix import Run
    from peftstudy.study.settings import run_settings

    result = snakemake_runner(["-n", "seed001"])
    counts = job_stats(result.stdout + result.stderr)
    # {SST-2, MRPC, RTE, SQuAD} x {BERT, GPT-2} x {full, LoRA r = 8} x 5 seeds.
    assert counts["train"] == counts["generate"] == counts["score"] == 4 * 2 * 2 * 5 == 80
    assert counts["prepare_base"] == 2 and counts["prepare_dataset"] == 4
    study = load_study(repository / "config" / "seed001.yaml")
    bert = run_settings(study, Run("seed001", "sst2", "bert-base", "lora-r8", 42))
    assert bert["method_spec"]["head"]["kind"] == "classifier" and bert["training"]["learning_rate"] == 2e-5
    assert bert["training"]["batch_size"] == 16
    assert "head" not in run_settings(study, Run("seed001", "sst2", "gpt2-small", "full", 42))["method_spec"]


def test_every_job_logs_under_its_study_or_shared_then_its_rule(snakemake_runner):
    """One log scheme (docs/cluster.md, "Logs"): logs/<study>/<rule>/... for a study's jobs, logs/shared/<rule>/... for the
    datasets, corpora and base models studies share; every job that runs a script has its own log."""
    import re

    result = snakemake_runner(["-n", "--forceall", "demo"])
    jobs = re.findall(r"^rule (\w+):\n((?:    .*\n)*)", result.stdout + result.stderr, re.M)
    logs = {}
    for rule, block in jobs:
        found = re.search(r"^    log: (\S+)$", block, re.M)
        logs.setdefault(rule, []).append(found.group(1) if found else None)
    assert logs.pop("demo") == [None]  # the study's target runs nothing
    # The demo's 164 planned jobs (34 runs), less its target and the adaptive look, which prints its message instead
    # of its rule (its log, logs/demo/adaptive_look/look2.log, follows the scheme: the Snakefile's check_rules).
    assert sum(map(len, logs.values())) == 164 - 2
    for rule, paths in logs.items():
        scope = "shared" if rule.startswith("prepare_") else "demo"
        for path in paths:
            assert path and path.startswith(f"logs/{scope}/{rule}/") and path.endswith(".log"), (rule, path)
        assert len(set(paths)) == len(paths), rule  # no two jobs share a log
    assert logs["claims_table"] == ["logs/demo/claims_table/job.log"]
    assert sorted(logs["stats_table"])[0] == "logs/demo/stats_table/anova.log"
    assert "logs/demo/train/debian-products/gpt2-en/full/seed1.log" in logs["train"]
    assert "logs/demo/baseline/debian-products/copy_input.log" in logs["baseline"]


def test_a_study_named_like_a_rule_is_refused(snakemake_runner, repository, tmp_path):
    (tmp_path / "config").mkdir()
    clash = (repository / "config" / "demo.yaml").read_text().replace("\nstudy: demo\n", "\nstudy: figure_stats\n", 1)
    (tmp_path / "config" / "clash.yaml").write_text(clash)
    result = snakemake_runner(["--snakefile", repository / "Snakefile", "--directory", tmp_path, "--configfile",
                               tmp_path / "config" / "clash.yaml", "-n"], check=False)
    assert result.returncode != 0
    assert "study name 'figure_stats' is reserved (it names a rule)" in result.stdout + result.stderr


def test_model_jobs_get_as_many_threads_as_the_cpus_they_ask_for(snakemake_runner):
    """A job's threads (which its script gives torch) are the CPUs SLURM grants it, so none sits idle: in the
    paper study training asks for 8, generation for 4 (config.yaml's resources)."""
    import re

    result = snakemake_runner(["-n", "--cores", "64", "all"])
    seen = {}
    for block in re.split(r"\n(?=rule \w+:)", result.stdout + result.stderr):
        rule = re.match(r"rule (\w+):", block)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.MULTILINE)
        cpus = re.search(r"cpus_per_task=(\d+)", block)
        if rule and rule.group(1) in ("train", "generate", "prepare_base"):
            assert cpus, block
            # Snakemake prints no threads line for a one-thread job.
            seen.setdefault(rule.group(1), set()).add((int(threads.group(1)) if threads else 1, int(cpus.group(1))))
    assert {pair for pairs in seen.values() for pair in pairs if pair[0] != pair[1]} == set()
    assert seen["train"] == {(8, 8)} and seen["generate"] == {(4, 4)}, seen
