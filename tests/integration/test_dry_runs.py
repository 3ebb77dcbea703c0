"""The shipped study configs expand to their full job matrices without touching the network."""


def test_paper_study_dry_run_lists_the_full_matrix(snakemake_runner, job_stats):
    result = snakemake_runner(["-n", "all"])
    counts = job_stats(result.stdout + result.stderr)
    runs = 3 * (3 * 6 + 5) * 5  # datasets x (3 models x 6 variants + LLaMA x 5 LoRA ranks) x seeds
    assert counts["train"] == counts["generate"] == counts["score"] == runs == 345
    assert counts["prepare_base"] == 4 and counts["prepare_dataset"] == 3
    assert counts["paper_pdf"] == 1


def test_demo_study_can_be_requested_by_path(snakemake_runner, job_stats):
    result = snakemake_runner(["-n", "--forceall", "demo"])
    counts = job_stats(result.stdout + result.stderr)
    assert counts["train"] == 2 * 4 * 3  # models x (full + 3 LoRA ranks) x seeds
    assert counts["prepare_base"] == 2 and counts["prepare_corpus"] == 1


def test_every_method_study_lists_each_method_once_per_architecture(snakemake_runner, job_stats):
    result = snakemake_runner(["-n", "--forceall", "demo_methods"])
    counts = job_stats(result.stdout + result.stderr)
    assert counts["train"] == 2 * 16 - 1  # full + 15 methods on both models, BitFit excluded on T5
