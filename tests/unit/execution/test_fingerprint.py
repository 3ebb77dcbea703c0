"""The code fingerprints that make Snakemake redo a rule when a package module its script imports changes."""

import ast
import re
import time
from pathlib import Path

import pytest

from peftstudy.execution import snakefile
from peftstudy.execution.snakefile import import_closure, script_fingerprint

REPOSITORY = Path(__file__).resolve().parents[3]
SCRIPTS = REPOSITORY / "workflow" / "scripts"
PACKAGE = REPOSITORY / "src" / "peftstudy"


def closure(script):
    return set(import_closure(SCRIPTS / script, PACKAGE))


def test_train_closure_reaches_the_work_called_by_name_and_the_methods_registry():
    files = closure("train.py")
    # zygote.call("peftstudy.training.oom:train_run") and distributed.launch("peftstudy.training.loop:train_run"): strings, not imports.
    assert {"peftstudy/training/oom.py", "peftstudy/training/loop.py", "peftstudy/training/distributed.py"} <= files
    assert {"peftstudy/modeling/heads.py", "peftstudy/modeling/loading.py", "peftstudy/modeling/batching.py"} <= files
    # methods/__init__ registers every method module: QLoRA is trained through it.
    assert {"peftstudy/methods/__init__.py", "peftstudy/methods/quantized.py", "peftstudy/methods/base.py"} <= files
    assert "peftstudy/__init__.py" in files  # the parents of every imported submodule


def test_other_stage_closures():
    assert {"peftstudy/modeling/heads.py", "peftstudy/generation.py", "peftstudy/methods/quantized.py"} <= closure("generate.py")
    assert {"peftstudy/training/bases.py", "peftstudy/modeling/registry.py", "peftstudy/training/pretrain.py"} <= closure("prepare_base.py")
    assert {"peftstudy/stats/__init__.py", "peftstudy/stats/describe.py"} <= closure("stats_summary.py")
    assert {"peftstudy/metrics/scoring.py", "peftstudy/metrics/quality.py"} <= closure("score.py")
    assert "peftstudy/training/loop.py" not in closure("score.py")
    assert "peftstudy/generation.py" not in closure("score.py")
    assert {"peftstudy/data/wordnet.py", "peftstudy/data/__init__.py"} <= closure("prepare_wordnet.py")
    # The statistics read the tidy table only: no model code, so a model change leaves them cached.
    assert not {"peftstudy/modeling/loading.py", "peftstudy/modeling/heads.py", "peftstudy/training/loop.py"} & closure("stats_summary.py")


def test_every_rule_with_a_script_has_the_code_param_of_that_script():
    missing = []
    for rules in sorted((REPOSITORY / "workflow" / "rules").glob("*.smk")):
        text = rules.read_text()
        for block in re.split(r"\n(?=(?:rule|checkpoint) \w+:)", text):
            script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+)"', block)
            if script and f'code=code_of("{script.group(1)}")' not in block:
                missing.append(f"{rules.name}: {block.split(chr(10))[0]}")
    assert missing == []
    assert "CODE[" not in "".join(p.read_text() for p in (REPOSITORY / "workflow" / "rules").glob("*.smk"))


def full_ast_modules(path, own_name):
    """The reference: every import node and whole-string "peftstudy.x[:f]" constant of a full ast walk."""
    names = []
    for node in ast.walk(ast.parse(Path(path).read_bytes())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                anchor = own_name.split(".")[:len(own_name.split(".")) - node.level + 1]
                module = ".".join(anchor + ([node.module] if node.module else []))
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"peftstudy(\.\w+)*(:[\w.]+)?", node.value):
            names.append(node.value.split(":")[0])
    return names


def test_the_line_wise_import_scan_finds_what_a_full_ast_walk_finds():
    """The fingerprint parses import statements one at a time (fast at Snakefile parse time); it must miss none."""
    modules = snakefile._package_modules(PACKAGE)
    files = [(path, None) for path in sorted(SCRIPTS.glob("*.py"))]
    for name, path in modules.items():
        files.append((path, name if path.name == "__init__.py" else name.rpartition(".")[0]))
    assert len(files) > 50
    for path, own_name in files:
        stat = path.stat()
        fast = snakefile._referenced_modules(str(path), own_name, "peftstudy", stat.st_mtime_ns, stat.st_size)
        assert {m for m in fast if m in modules} == {m for m in full_ast_modules(path, own_name) if m in modules}, path


def test_fingerprinting_every_script_is_fast():
    snakefile._referenced_modules.cache_clear()
    snakefile._file_digest.cache_clear()
    start = time.perf_counter()
    fingerprints = {script.name: script_fingerprint(script, PACKAGE) for script in SCRIPTS.glob("*.py")}
    assert time.perf_counter() - start < 1.0  # ~0.05 s: the Snakefile computes them at every parse
    assert len(fingerprints) >= 20 and all(re.fullmatch(r"[0-9a-f]{64}", f) for f in fingerprints.values())
    assert fingerprints["train.py"] != fingerprints["generate.py"] != fingerprints["score.py"]


@pytest.fixture
def fake_package(tmp_path):
    """pkg/ with every kind of dependency; the script reaches all of it except unused.py."""
    files = {
        "pkg/__init__.py": "VERSION = 1\n",
        "pkg/a.py": "from . import b\n\n\ndef late():\n    from .sub import c\n    return c\n",
        "pkg/b.py": "import os\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..d import value\n",
        "pkg/d.py": "value = 1\n",
        "pkg/called.py": "import importlib\n\nmodule = importlib.import_module('pkg.dynamic')\n",
        "pkg/dynamic.py": "from pkg.e import (\n    x,\n    y,\n)\n",
        "pkg/e.py": "x = y = 0\n",
        "pkg/unused.py": "z = 0\n",
        "script.py": '"""Calls pkg.unused by name in prose only."""\nimport pkg.a\n\nrun("pkg.called:main", 1)\n',
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_closure_of_a_fake_package(fake_package):
    assert import_closure(fake_package / "script.py", fake_package / "pkg") == (
        "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/called.py", "pkg/d.py", "pkg/dynamic.py", "pkg/e.py",
        "pkg/sub/__init__.py", "pkg/sub/c.py")


def test_fingerprint_follows_the_closure_and_nothing_else(fake_package):
    script, root = fake_package / "script.py", fake_package / "pkg"
    before = script_fingerprint(script, root)
    assert script_fingerprint(script, root) == before
    (root / "unused.py").write_text("z = 1  # outside the closure\n")
    assert script_fingerprint(script, root) == before
    (root / "sub" / "c.py").write_text("from ..d import value  # reached through a function-level import\n")
    changed = script_fingerprint(script, root)
    assert changed != before
    (root / "e.py").write_text("x = y = 10\n")  # reached through a string and importlib
    assert script_fingerprint(script, root) != changed
    (root / "b.py").write_text("import os\nfrom . import unused\n")  # a new import joins the closure
    assert "pkg/unused.py" in import_closure(script, root)


def test_a_module_that_is_gone_changes_the_fingerprint(fake_package):
    script, root = fake_package / "script.py", fake_package / "pkg"
    before = script_fingerprint(script, root)
    (root / "d.py").rename(root / "d_moved.py")
    assert "pkg/d.py" not in import_closure(script, root) and script_fingerprint(script, root) != before


def test_data_files_beside_the_closure_count(fake_package):
    """A template or schema the package ships is code too: editing it redoes the rules whose modules sit beside it,
    and only those; a subpackage's files, caches and hidden folders do not count."""
    script, root = fake_package / "script.py", fake_package / "pkg"
    (root / "sub" / "templates").mkdir()
    (root / "sub" / "templates" / "paper.tex").write_text("\\VAR{title}\n")
    (root / "schema.yaml").write_text("type: object\n")
    (root / "other").mkdir()
    (root / "other" / "__init__.py").write_text("")
    (root / "other" / "notes.txt").write_text("not reached\n")
    (root / ".ruff_cache").mkdir()
    (root / ".ruff_cache" / "state").write_text("1\n")
    assert snakefile.package_data(import_closure(script, root), root) == (
        "pkg/schema.yaml", "pkg/sub/templates/paper.tex")
    before = script_fingerprint(script, root)
    (root / ".ruff_cache" / "state").write_text("2\n")
    (root / "other" / "notes.txt").write_text("still not reached\n")
    assert script_fingerprint(script, root) == before
    (root / "sub" / "templates" / "paper.tex").write_text("\\VAR{title}!\n")
    assert script_fingerprint(script, root) != before


def test_the_shipped_template_and_schema_are_in_the_fingerprints_that_read_them():
    assert "peftstudy/report/templates/paper.tex" in snakefile.package_data(tuple(closure("paper_tex.py")), PACKAGE)
    assert not snakefile.package_data(tuple(closure("stats_summary.py")), PACKAGE)


def test_default_package_root_is_the_package():
    assert import_closure(SCRIPTS / "score.py") == import_closure(SCRIPTS / "score.py", PACKAGE)
