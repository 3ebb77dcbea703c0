"""The package's layering, read from its import graph: no cycles, and the arrows that keep stages apart.

Every import counts, at module level or inside a function: a lazy import hides a dependency from the reader,
not from this test. Importing a submodule runs its package's ``__init__`` too; that implicit arrow is not one a
module writes, so it is left out of the cycle check (Python resolves it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "peftstudy"
HEAVY = {"torch", "transformers", "peft", "bitsandbytes", "adapters", "accelerate"}


def module_name(path: Path) -> str:
    parts = ("peftstudy", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module `name` imports: package modules by full name, third-party ones by their top-level name."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {target if target.startswith("peftstudy") else target.split(".")[0] for target in found}


GRAPH = {name: {target for target in imports_of(name) if target in MODULES and target != name} for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def stage(module: str) -> str:
    """The top-level package or module a module belongs to (peftstudy.training.loop -> training)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "peftstudy"


def test_graph_is_read():
    assert "peftstudy.training.loop" in GRAPH and "peftstudy.methods" in GRAPH["peftstudy.training.loop"]
    assert "peftstudy.modeling.families" in GRAPH["peftstudy.modeling.batching"]


def test_no_module_import_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_no_stage_import_cycle():
    """Stages form a DAG too: a package that imports another is never imported back by it."""
    stages = {}
    for module, targets in GRAPH.items():
        stages.setdefault(stage(module), set()).update(stage(t) for t in targets if stage(t) != stage(module))
    assert find_cycle(stages) is None, " -> ".join(find_cycle(stages))


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


FORBIDDEN = {
    # stage: (package stages it must not import, third-party modules it must not import)
    # The statistics and the claims read metrics.csv and the metric catalogue, never a model.
    "stats": ({"training", "modeling", "methods", "generation", "report", "claims"}, HEAVY),
    "claims": ({"training", "modeling", "methods", "generation"}, HEAVY),
    "metrics": ({"training"}, set()),
    "report": ({"training", "modeling", "generation"}, HEAVY),
    "study": ({"training", "generation", "metrics", "stats", "claims", "report"}, set()),
}


@pytest.mark.parametrize("owner", sorted(FORBIDDEN))
def test_forbidden_arrows(owner):
    stages, modules = FORBIDDEN[owner]
    wrong = []
    for module in (m for m in MODULES if stage(m) == owner):
        for target in imports_of(module):
            if (target.startswith("peftstudy") and stage(target) in stages) or target in modules:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_light_stages_load_without_torch():
    """What the arrows promise, checked on the running interpreter: the statistics, the claims and the report
    (every table and the paper) import without loading torch, so their jobs start in a second."""
    code = ("import sys; import peftstudy.stats, peftstudy.claims.verdicts, peftstudy.report.paper, "
            "peftstudy.report.tables, peftstudy.report.stats_tables, peftstudy.report.metric_tables; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % sorted(HEAVY))
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(PACKAGE.parent)}).stdout.strip()
    assert loaded == "[]"


def test_package_does_not_read_the_repository_layout():
    """The package works installed: no path into workflow/ (or any repository folder) appears in its code."""
    wrong = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ("workflow", "schemas"):
                wrong.append(f"{module}: {node.value!r}")
    assert not wrong, "\n".join(wrong)
