"""The names in a run's output path: what each may be, as the workflow's wildcard constraints say."""

import re

from peftstudy.study import config, matrix
from peftstudy.study.matrix import Run


def test_path_patterns_are_the_schemas_and_the_runs_own():
    patterns = matrix.path_patterns(config.load_schema())
    assert patterns == {"study": "[a-z0-9_]+", "dataset": "[a-z0-9][a-z0-9_.-]*", "corpus": "[a-z0-9][a-z0-9_.-]*",
                        "model": "[a-z0-9][a-z0-9_.-]*", "variant": "(?:[a-z][a-z0-9_]*)(?:-r(?:[1-9][0-9]*))?",
                        "seed": "[0-9]+", "baseline": "[a-z][a-z0-9_]*"}
    accepts = {"variant": (["full", "lora-r8", "lora_t5_split-r16"], ["lora-r0", "lora-8", "Lora", "lora-r08"]),
               "seed": (["0", "42"], ["-1", "s1", ""]), "study": (["demo", "seed004"], ["my-study", "Demo"]),
               "dataset": (["debian-products", "wmt16.de-en"], ["-x", "Products", "a/b"]),
               "baseline": (["copy_input", "stuck2"], ["../x", "Copy", "a-b", "2x"])}
    for name, (good, bad) in accepts.items():
        for text in good:
            assert re.fullmatch(patterns[name], text), (name, text)
        for text in bad:
            assert not re.fullmatch(patterns[name], text), (name, text)


def test_every_part_of_a_runs_directory_matches_its_pattern():
    patterns = matrix.path_patterns(config.load_schema())
    run = Run("demo", "debian-products", "gpt2-tiny", "qlora-r8", 3)
    regex = "results/{study}/runs/{dataset}/{model}/{variant}/seed{seed}".format(
        **{name: f"(?P<{name}>{patterns[name]})" for name in ("study", "dataset", "model", "variant", "seed")})
    assert re.fullmatch(regex, run.directory).groupdict() == {"study": "demo", "dataset": "debian-products",
                                                              "model": "gpt2-tiny", "variant": "qlora-r8", "seed": "3"}


def test_unanchored_drops_the_anchors_and_names_of_a_full_match_regex():
    assert matrix.unanchored(re.compile(r"^(?P<a>x+)-(?P<b>y)?$")) == "(?:x+)-(?:y)?"
    assert matrix.unanchored("^[a-z]+$") == "[a-z]+"
