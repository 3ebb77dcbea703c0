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


def test_demo_study_runs_every_method(snakemake_runner, job_stats):
    result = snakemake_runner(["-n", "--forceall", "demo"])
    counts = job_stats(result.stdout + result.stderr)
    core = 2 * 4 * 3  # models x (full + 3 LoRA ranks) x seeds
    every_other_method = 15 + 5  # 15 methods once on GPT-2; (IA)3, QLoRA, prefix, prompt and Houlsby on T5
    tasks = 2 * 2 * 2  # classification and QA x (full, LoRA r8) x 2 seeds on GPT-2
    assert counts["train"] == counts["generate"] == core + every_other_method + tasks == 52
    assert counts["prepare_base"] == 2 and counts["prepare_corpus"] == 1
