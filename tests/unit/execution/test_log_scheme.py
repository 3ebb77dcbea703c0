"""One log scheme for every rule: logs/{study}/<rule>/<wildcards>.log, logs/shared/<rule>/... without a study."""

from peftstudy.execution.snakefile import log_pattern, log_scheme_problems


def test_log_pattern_places_a_job_under_its_study_or_shared_then_its_rule():
    assert log_pattern("train", ["dataset", "model", "variant", "seed{seed}"]) == \
        "logs/{study}/train/{dataset}/{model}/{variant}/seed{seed}.log"
    assert log_pattern("stats_table", ["table"]) == "logs/{study}/stats_table/{table}.log"
    assert log_pattern("claims_table") == "logs/{study}/claims_table/job.log"
    assert log_pattern("prepare_dataset", ["dataset"], shared=True) == "logs/shared/prepare_dataset/{dataset}.log"
    assert log_pattern("prepare_wordnet", shared=True) == "logs/shared/prepare_wordnet/job.log"


def test_rules_following_the_scheme_pass_with_or_without_wildcard_constraints():
    rules = [
        ("train", ["logs/{study,[a-z0-9_]+}/train/{dataset}/{model}/{variant}/seed{seed,[0-9]{1,4}}.log"],
         ["study", "dataset", "model", "variant", "seed"], True),
        ("claims_table", ["logs/{study}/claims_table/job.log"], ["study"], True),
        ("prepare_wordnet", ["logs/shared/prepare_wordnet/job.log"], [], True),
        ("prepare_base", ["logs/shared/prepare_base/{model}.log"], ["model"], True),
        ("all", [], [], False),  # a target runs nothing: no log
    ]
    assert log_scheme_problems(rules) == []


def test_each_way_out_of_the_scheme_is_named():
    problems = log_scheme_problems([
        ("table1_methods", ["logs/{study}/table1_methods.log"], ["study"], True),  # not in its rule's folder
        ("stats_table", ["logs/{study}/stats_table_{table}.log"], ["study", "table"], True),
        ("statistics", ["logs/{study}/stats/summary.log"], ["study"], True),  # another rule's folder
        ("prepare_dataset", ["logs/prepare_dataset/{dataset}.log"], ["dataset"], True),  # no shared/
        ("score", ["logs/{study}/score/{dataset}.log"], ["study", "dataset", "seed"], True),  # jobs would share it
        ("anova", ["logs/{study}/anova/{study}.log"], ["study"], True),  # no other wildcard: job.log
        ("figure_stats", ["logs/{study}/figure_stats/job.log"], ["study", "figure"], True),
        ("paper_pdf", [], ["study"], True),
    ])
    assert [problem.split(":")[0] for problem in problems] == [
        "rule table1_methods", "rule stats_table", "rule statistics", "rule prepare_dataset", "rule score",
        "rule anova", "rule figure_stats", "rule paper_pdf"]
    assert "logs/{study}/table1_methods/<its other wildcards" in problems[0]
    assert "logs/shared/prepare_dataset/" in problems[3]
    assert problems[-1] == "rule paper_pdf: keeps no log (give it 'logs/{study}/paper_pdf/job.log' or the like)"
