"""What the Snakefile itself runs, never a job: the code fingerprints of its rules (at parse time) and the
summary of failed jobs (its onerror handler).

Kept apart from execution.jobs, which every job script imports: a rule's fingerprint covers the modules its
script imports, so editing this module redoes no job.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from pathlib import Path

from peftstudy.execution.jobs import MAX_CAUSE_CHARS, cell_label, failure_path

MAX_LISTED_FAILURES = 20
_RUN_STARTED = time.time()  # imported while Snakemake parses the Snakefile: the run's start

# Options that pick or force which jobs run, or make Snakemake do something else than run them: the command that
# reruns one cell leaves them out.
_NOT_FOR_A_RERUN = ("forceall", "forcerun", "until", "omit_from", "batch", "prioritize", "touch", "dryrun",
                    "report", "report_after_run", "report_stylesheet", "report_metadata", "reporter",
                    "report_html_path", "report_html_stylesheet_path", "target_jobs")



def rerun_target(outputs) -> str | None:
    """What to ask Snakemake for to rerun one job: its first output that is a file, else its first output.

    outputs: (path, is_directory) pairs, in the rule's order.
    """
    outputs = [(str(path), bool(is_directory)) for path, is_directory in outputs]
    files = [path for path, is_directory in outputs if not is_directory]
    return files[0] if files else (outputs[0][0] if outputs else None)


def rerun_command(argv, target: str, program: str = "snakemake") -> str:
    """The Snakemake command line argv (without the program) with its targets replaced by `target`.

    Every option is kept (profile, Snakefile, directory, config files, cores, ...) except those that pick or force
    which jobs run (--forceall, --forcerun, --until, ...) or make Snakemake report instead of run. Snakemake's own
    argument parser decides which words are targets, so an option's value is never taken for one.
    """
    import shlex

    tokens = [str(token) for token in argv]
    if "--" in tokens:  # what follows `--` is targets only
        tokens = tokens[: tokens.index("--")]
    parsed = _parse_command(tokens)
    if parsed is None:
        return shlex.join([program, "--cores", "1", target])
    parser, args = parsed
    drop = set(_positions(getattr(args, "targets", None)))
    dropped_options = set()
    for action in parser._actions:
        if action.dest in _NOT_FOR_A_RERUN:
            drop.update(_positions(getattr(args, action.dest, None)))
            dropped_options.update(action.option_strings)
    drop.update(i for i, token in enumerate(tokens) if token.split("=", 1)[0] in dropped_options)
    kept = [token for i, token in enumerate(tokens) if i not in drop]
    # After the options, unless the last one takes any number of values (--configfile a.yaml): then first.
    for command in (kept + [target], [target] + kept):
        check = _parse_command(command)
        if check is not None and _positions(getattr(check[1], "targets", None)) == [command.index(target)]:
            return shlex.join([program, *command])
    return shlex.join([program, *kept, "--", target])


def _parse_command(tokens):
    """(parser, args) for a Snakemake command line whose non-option words are marked with their positions."""
    import argparse

    try:
        from snakemake.cli import get_argument_parser

        parser = get_argument_parser()
        for action in parser._actions:
            action.type, action.choices = None, None  # keep values as given: never converted or checked
            if isinstance(action, argparse._StoreAction):
                action.__class__ = argparse._StoreAction  # Snakemake's ParserAction would parse them
        marked = [token if token.startswith("-") else f"\0{i}\0{token}" for i, token in enumerate(tokens)]
        args, _ = parser.parse_known_args(marked)
        return parser, args
    except (Exception, SystemExit):
        return None


def _positions(value) -> list[int]:
    """The argv positions of the marked words in a parsed value."""
    if isinstance(value, str):
        head, separator, _ = value[1:].partition("\0")
        return [int(head)] if value.startswith("\0") and separator and head.isdigit() else []
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [position for item in value for position in _positions(item)]
    return []


def failure_summary(cells, argv, absolute_logs: bool = False) -> str:
    """The end-of-run block: for each failed job its cell, one-line cause, log and the command that reruns it only.

    cells: dicts with rule, wildcards (a mapping), cause, log (or None) and target (or None); argv: Snakemake's
    command line without the program.
    """
    cells = list(cells)
    if not cells:
        return ""
    ruler = "=" * 100
    lines = [ruler, f"peftstudy: {len(cells)} job{'' if len(cells) == 1 else 's'} failed. The full tracebacks are in "
                    "the logs; fix the cause, then rerun only the failed cell:"]
    for cell in cells[:MAX_LISTED_FAILURES]:
        log = cell.get("log")
        if log and absolute_logs:
            log = str(Path(log).resolve())
        lines += ["", cell_label(cell["rule"], cell.get("wildcards") or {}),
                  f"  cause: {cell.get('cause') or 'unknown'}",
                  f"  log:   {log or '(this rule keeps no log)'}"]
        if cell.get("target"):
            lines.append(f"  rerun: {rerun_command(argv, cell['target'])}")
    if len(cells) > MAX_LISTED_FAILURES:
        lines += ["", f"... and {len(cells) - MAX_LISTED_FAILURES} more (see Snakemake's log)"]
    lines.append(ruler)
    return "\n".join(lines)


def recorded_cause(log, since: float | None = None) -> str:
    """The cause a failed job recorded next to its log (not before `since`); else a hint from the log's last line."""
    import json

    if not log:
        return "not recorded (this rule keeps no log): see Snakemake's error above"
    facts = failure_path(log)
    try:
        if since is None or facts.stat().st_mtime >= since - 5:
            return str(json.loads(facts.read_text(encoding="utf-8"))["cause"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    last = ""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, os.path.getsize(log) - 4096))
            tail = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
        last = tail[-1][:MAX_CAUSE_CHARS] if tail else ""
    except OSError:
        pass
    hint = "not recorded: the job ended without a Python error (killed? out of memory? out of time?)"
    return f"{hint}; last log line: {last}" if last else hint


def report_failed_jobs(workflow, argv=None, out=None) -> None:
    """The Snakefile's onerror handler: print failure_summary for the jobs Snakemake saw fail in this run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        failed = list(workflow.scheduler.failed)
    except AttributeError:
        return
    jobs = []
    for job in failed:
        members = list(getattr(job, "jobs", None) or [job])  # a group job: the members that recorded a failure
        if len(members) > 1:
            members = [m for m in members if m.log and failure_path(m.log[0]).exists()] or members
        jobs.extend(members)
    cells = []
    for job in sorted(jobs, key=lambda job: getattr(job, "jobid", 0) or 0):
        log = str(job.log[0]) if getattr(job, "log", None) else None
        cells.append({"rule": job.rule.name, "wildcards": dict(getattr(job, "wildcards_dict", None) or {}),
                      "cause": recorded_cause(log, since=_RUN_STARTED), "log": log,
                      "target": rerun_target((str(f), f.is_directory) for f in job.output)})
    summary = failure_summary(cells, argv, absolute_logs=_moved_away())
    if not summary:
        return
    if out is None:
        print(summary, file=sys.stderr, flush=True)
    else:
        out.write(summary + "\n")


def _moved_away() -> bool:
    """Snakemake runs in another directory than the one it was started from (--directory): show absolute logs."""
    started = os.environ.get("PWD")
    return bool(started) and os.path.realpath(started) != os.path.realpath(os.getcwd())


def _package_root(package_root: str | Path | None) -> Path:
    return (Path(__file__).parents[1] if package_root is None else Path(package_root)).resolve()


def _package_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root` ("peftstudy.x", "peftstudy.x.y")."""
    modules = {}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d.isidentifier()]  # what an import can name
        prefix = ".".join(Path(directory).relative_to(root.parent).parts)
        for name in files:
            if name.endswith(".py") and name[:-3].isidentifier():
                modules[prefix if name == "__init__.py" else f"{prefix}.{name[:-3]}"] = Path(directory) / name
    return modules


# A line that starts an import statement (at any indentation: imports inside functions count too).
_IMPORT_LINE = re.compile(r"[ \t]*(from[ \t]+[\w.]+[ \t]+import|import[ \t]+\w)")


def _import_statements(source: str):
    """The import statements in `source`, parsed with ast one statement at a time (parsing whole modules would
    cost the Snakefile ~0.3 s). A line that looks like an import but never parses (prose in a docstring) is
    skipped; tests/unit/execution/test_fingerprint.py checks this finds what a full ast walk finds in the package."""
    import ast

    lines = source.split("\n")
    for number, line in enumerate(lines):
        if not _IMPORT_LINE.match(line):
            continue
        for end in range(number + 1, min(number + 40, len(lines)) + 1):  # a parenthesised import spans lines
            try:
                tree = ast.parse("\n".join(lines[number:end]).lstrip())
            except SyntaxError:
                continue
            yield from (node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))
            break


@functools.lru_cache(maxsize=None)
def _referenced_modules(path: str, own_name: str | None, package: str, _mtime_ns: int, _size: int) -> tuple[str, ...]:
    """Every dotted name in `package` that the file at `path` may import: its import statements, anywhere in it
    (relative ones resolved against `own_name`, the dotted name of the package holding the file), and string
    literals "package.module:function" or "package.module", work called by name (zygote.call,
    distributed.launch, importlib.import_module). Cached per file version; some names are not modules."""
    import ast

    source = Path(path).read_text(encoding="utf-8")
    names = []
    for node in _import_statements(source):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
            continue
        module = node.module
        if node.level:
            if own_name is None or node.level > len(own_name.split(".")):
                continue  # a relative import outside the package: not ours
            anchor = own_name.split(".")[:len(own_name.split(".")) - node.level + 1]
            module = ".".join(anchor + ([node.module] if node.module else []))
        names.append(module)
        names += [f"{module}.{alias.name}" for alias in node.names if alias.name != "*"]  # submodules, maybe
    by_name = re.compile(rf"""(["'])({re.escape(package)}(?:\.\w+)*)(?::\w+(?:\.\w+)*)?\1""")
    names += [match.group(2) for match in by_name.finditer(source)]
    return tuple(name for name in names if name == package or name.startswith(package + "."))


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, _mtime_ns: int, _size: int) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def import_closure(script: str | Path, package_root: str | Path | None = None) -> tuple[str, ...]:
    """The package's module files that `script` imports, directly or through other modules (sorted paths
    relative to the package's parent directory, e.g. "peftstudy/modeling/heads.py"), found by reading the code, not by
    running it. Importing a submodule imports its parent packages' __init__.py too."""
    root = _package_root(package_root)
    return _import_closure(script, root, _package_modules(root))


def _import_closure(script: str | Path, root: Path, modules: dict[str, Path]) -> tuple[str, ...]:
    found: set[str] = set()
    pending = [(Path(script).resolve(), None)]
    while pending:
        path, own_name = pending.pop()
        stat = path.stat()
        for dotted in set(_referenced_modules(str(path), own_name, root.name, stat.st_mtime_ns, stat.st_size)):
            parts = dotted.split(".")
            for depth in range(1, len(parts) + 1):  # the parent packages, then the module itself
                name = ".".join(parts[:depth])
                if name in modules and name not in found:
                    found.add(name)
                    file = modules[name]
                    pending.append((file, name if file.name == "__init__.py" else name.rpartition(".")[0]))
    return tuple(sorted(modules[name].relative_to(root.parent).as_posix() for name in found))


def package_data(closure: tuple[str, ...], package_root: str | Path | None = None) -> tuple[str, ...]:
    """The non-Python files beside the modules of `closure` (paths as import_closure gives them): files in their
    directories and in data folders below them that are not packages themselves (report/templates/)."""
    root = _package_root(package_root)
    return _package_data(closure, root, lambda directory: _data_files(directory, root))


def _package_data(closure, root: Path, data_files) -> tuple[str, ...]:
    directories = {(root.parent / relative).parent for relative in closure}
    return tuple(sorted({path for directory in directories for path in data_files(directory)}))


def _data_files(directory: Path, root: Path) -> list[str]:
    """The non-Python files of one module directory and of its data folders (see package_data)."""
    found = []
    for path in directory.rglob("*"):
        inside = path.relative_to(directory).parts[:-1]
        if (path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in inside
                and not any(part.startswith(".") for part in path.relative_to(directory).parts)
                and not any((directory.joinpath(*inside[:depth + 1]) / "__init__.py").exists()
                            for depth in range(len(inside)))):
            found.append(path.relative_to(root.parent).as_posix())
    return found


def script_fingerprint(script: str | Path, package_root: str | Path | None = None) -> str:
    """sha256 of the package source that a workflow script runs: every module in its import closure, and the data
    files those modules' packages ship (the study schema, the paper template).

    Snakemake tracks a rule's script, not the package the script calls. Given to the rule as a param (`code`),
    this makes Snakemake redo the rule when any module the script imports changes, and only the rules whose
    scripts import it (and what depends on their outputs).
    """
    return script_fingerprints([script], package_root)[0]


def script_fingerprints(scripts, package_root: str | Path | None = None) -> list[str]:
    """script_fingerprint of each of `scripts`, the package's modules and data files listed once for all: listing
    them again for each of the Snakefile's ~25 scripts took ~0.2 s of every Snakemake start."""
    import hashlib

    root = _package_root(package_root)
    modules = _package_modules(root)
    data_files = functools.cache(lambda directory: _data_files(directory, root))
    fingerprints = []
    for script in scripts:
        digest = hashlib.sha256()
        closure = _import_closure(script, root, modules)
        for relative in (*closure, *_package_data(closure, root, data_files)):
            stat = (root.parent / relative).stat()
            file_digest = _file_digest(str(root.parent / relative), stat.st_mtime_ns, stat.st_size)
            digest.update(f"{relative}\0{file_digest}\0".encode())
        fingerprints.append(digest.hexdigest())
    return fingerprints


# ----------------------------------------------------------------------------------------------- rule functions

def remember_signature(function):
    """`function`, its parameters looked up once for Snakemake, which otherwise inspects them (inspect.signature,
    ~20 µs) at every call of an input, params or resource function to know which arguments it takes: some 30,000
    calls in `snakemake -n all`. Snakemake reads them from this attribute where it is set
    (snakemake.common.get_function_params); without it (another Snakemake) nothing changes."""
    import inspect
    import types

    try:
        from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR
    except ImportError:
        return function
    if isinstance(function, types.FunctionType) and not hasattr(function, FUNC_OVERWRITE_PARAMS_ATTR):
        setattr(function, FUNC_OVERWRITE_PARAMS_ATTR, inspect.signature(function).parameters)
    return function


def remember_signatures(rules) -> None:
    """remember_signature for every function among the rules' inputs and params."""
    for rule in rules:
        for item in (*rule.input, *rule.params):
            remember_signature(item)


# ---------------------------------------------------------------------------------------------------------- logs

SHARED_LOGS = "shared"  # logs/shared/<rule>/...: the jobs of artifacts that studies share (datasets, corpora, bases)
_CONSTRAINED_WILDCARD = re.compile(r"\{\s*(\w+)\s*,(?:[^{}]|\{[^{}]*\})*\}")
_WILDCARD = re.compile(r"\{(\w+)\}")


def log_pattern(rule: str, wildcards=(), shared: bool = False) -> str:
    """Where a rule's jobs log, the one scheme of every rule: logs/{study}/<rule>/<wildcards>.log, or
    logs/shared/<rule>/<wildcards>.log for a rule without a study; <wildcards> are the job's other wildcards, one
    path segment each in the given order ("seed{seed}" may stand for {seed}), or "job" when it has none."""
    segments = [str(w) if "{" in str(w) else f"{{{w}}}" for w in wildcards] or ["job"]
    return "/".join(["logs", SHARED_LOGS if shared else "{study}", rule, *segments]) + ".log"


def log_scheme_problems(rules) -> list[str]:
    """What breaks the log scheme (log_pattern) among the workflow's rules, one line each.

    rules: (name, log patterns, wildcard names, runs code) per rule, patterns as Snakemake holds them (wildcard
    constraints allowed). A rule that runs code keeps one log, named by all its wildcards so no two jobs share it.
    """
    problems = []
    for name, logs, wildcards, runs_code in rules:
        logs = [_CONSTRAINED_WILDCARD.sub(r"{\1}", str(log)) for log in logs]
        if not logs:
            if runs_code:
                problems.append(f"rule {name}: keeps no log (give it {log_pattern(name)!r} or the like)")
            continue
        if len(logs) > 1:
            problems.append(f"rule {name}: {len(logs)} logs; a job keeps one")
        log, wildcards = logs[0], set(wildcards)
        shared = "study" not in wildcards
        prefix = f"logs/{SHARED_LOGS if shared else '{study}'}/{name}/"
        rest = log[len(prefix):-len(".log")] if log.startswith(prefix) and log.endswith(".log") else None
        named = set(_WILDCARD.findall(rest or "")) if rest is not None else set()
        if rest is None or not rest or (rest == "job") != (wildcards <= {"study"}) or named != wildcards - {"study"}:
            problems.append(f"rule {name}: log {log!r} is not {prefix}<its other wildcards, one path segment each,"
                            f" or job>.log")
    return problems
