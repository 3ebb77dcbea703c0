"""Project conventions that no other test would notice breaking: Snakemake's linter, ruff, snakefmt, and one set of
pins split into a runtime lock and a test lock."""

import importlib.util
import re
import subprocess
import sys

import pytest
import yaml


def _lints(output):
    """(what, title) for every lint in `snakemake --lint` text output (its JSON form is not wired up in 9.x)."""
    found, current = [], None
    for line in output.splitlines():
        if line.startswith("Lints for "):
            current = line.rstrip(":")
        elif line.startswith("    * "):
            found.append((current, line[len("    * "):].rstrip(":")))
    return found


@pytest.mark.parametrize("config", ["config/demo.yaml", "config.yaml"])
def test_snakemake_lint_finds_nothing(config, repository, snakemake_runner):
    result = snakemake_runner(["--lint", "--configfile", config], check=False, timeout=300)
    output = result.stdout + result.stderr
    lints = _lints(output)
    assert not lints, "\n".join(f"{what}: {title}" for what, title in lints)
    assert "Congratulations, your workflow is in a good condition!" in output, output[-3000:]


def test_every_rule_runs_in_the_one_environment_the_snakefile_names(repository):
    """The global `conda:` directive names envs/peftstudy.yaml; each rule names the same file (the linter asks every
    rule for its software), so `--use-conda` builds one environment."""
    assert re.search(r'^conda: "envs/peftstudy\.yaml"$', (repository / "Snakefile").read_text(), re.MULTILINE)
    for path in sorted((repository / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        rules = re.findall(r"^(?:rule|checkpoint) (\w+):$", text, re.MULTILINE)
        environments = re.findall(r"^    conda:\n        \"([^\"]+)\"$", text, re.MULTILINE)
        assert len(environments) == len(rules), f"{path.name}: {len(rules)} rules, {len(environments)} conda directives"
        assert {(path.parent / env).resolve() for env in environments} <= {repository / "envs" / "peftstudy.yaml"}, path


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed (the `test` extra)")
def test_ruff_finds_no_unused_names_or_unsorted_imports(repository):
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F,I",
                             "src", "tests", "benchmarks"], cwd=repository, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.skipif(importlib.util.find_spec("snakefmt") is None, reason="snakefmt is not installed (the `test` extra)")
def test_snakefmt_leaves_the_workflow_unchanged(repository):
    """The Snakefile and the rule files stay as snakefmt writes them ([tool.snakefmt] in pyproject.toml)."""
    rules = sorted(str(path.relative_to(repository)) for path in repository.glob("workflow/rules/*.smk"))
    files = ["Snakefile", *rules]
    assert len(files) > 1, "no workflow/rules/*.smk found"
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--config", "pyproject.toml", "--check", "--diff",
                             *files], cwd=repository, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, ("snakefmt would change these files (run `.venv/bin/snakefmt Snakefile "
                                    "workflow/rules`):\n" + result.stdout[-6000:] + result.stderr[-2000:])


RUNTIME_LOCK, TEST_LOCK = "envs/requirements.lock", "envs/requirements-test.lock"


def _lock(repository, path=RUNTIME_LOCK):
    pins = {}
    for number, line in enumerate((repository / path).read_text().splitlines(), 1):
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"{path} line {number}: {line!r} is not a `name==version` pin"
        pins[_normal(match[1])] = match[2]
    return pins


def _normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_conda_environment_installs_exactly_the_lock(repository):
    env = yaml.safe_load((repository / "envs/peftstudy.yaml").read_text())
    lock = _lock(repository)
    conda = [entry for entry in env["dependencies"] if isinstance(entry, str)]
    pip = [line for entry in env["dependencies"] if isinstance(entry, dict) for line in entry["pip"]]
    python = [entry.split("=", 1)[1] for entry in conda if entry.startswith("python=")]
    assert python == [f"{sys.version_info.major}.{sys.version_info.minor}"], conda
    assert "-r requirements.lock" in pip, f"envs/peftstudy.yaml: its pip section must install the lock: {pip}"
    assert not any("requirements-test.lock" in line for line in pip), "envs/peftstudy.yaml: the test lock stays out"
    for line in pip:
        if line.startswith("-r "):
            assert (repository / "envs" / line[3:]).is_file(), f"envs/peftstudy.yaml: {line!r} names no file"
            continue
        name, _, version = line.partition("==")
        assert lock.get(_normal(name)) == version, f"envs/peftstudy.yaml pins {line!r}, the lock {lock.get(_normal(name))}"


def test_pyproject_pins_are_the_lock_pins(repository):
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((repository / "pyproject.toml").read_text())["project"]
    assert set(project["optional-dependencies"]) == {"test"}, "pyproject.toml: an extra with no lock of its own"
    for requirements, path in ((project["dependencies"], RUNTIME_LOCK),
                               (project["optional-dependencies"]["test"], TEST_LOCK)):
        lock = _lock(repository, path)
        for requirement in map(Requirement, requirements):
            name, (specifier, *more) = _normal(requirement.name), requirement.specifier
            assert specifier.operator == "==" and not more, f"pyproject.toml: {requirement} is not pinned with =="
            assert lock.get(name) == specifier.version, (
                f"pyproject.toml pins {requirement}, {path} has {lock.get(name)}")


def _closure(requirements):
    """{name: (installed version, what needs it)} of everything `requirements` pull in, from the installed
    packages' metadata: markers evaluated for this Python and platform, extras followed."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    found, followed = {}, set()
    pending = [(Requirement(requirement), "pyproject.toml") for requirement in requirements]
    while pending:
        requirement, needed_by = pending.pop()
        name = _normal(requirement.name)
        extras = [extra for extra in ("", *sorted(requirement.extras)) if (name, extra) not in followed]
        try:
            installed = distribution(name)
        except PackageNotFoundError:
            pytest.fail(f"{requirement} (needed by {needed_by}) is not installed: run ./setup.sh")
        assert requirement.specifier.contains(installed.version, prereleases=True), (
            f"{needed_by} needs {requirement}, {installed.version} is installed")
        found.setdefault(name, (installed.version, needed_by))
        for extra in extras:
            followed.add((name, extra))
            for dependency in map(Requirement, installed.requires or []):
                if (dependency.marker.evaluate({"extra": extra}) if dependency.marker else extra == ""):
                    pending.append((dependency, f"{name}[{extra}]" if extra else name))
    return found


def test_the_runtime_lock_is_what_the_workflow_needs_and_the_test_lock_the_rest(repository):
    """The runtime lock (setup.sh, the conda env, the container) is exactly the closure of pyproject.toml's
    dependencies; the test lock exactly what the `test` extra adds to it: a test tool's dependency that comes into
    the runtime lock, or a runtime package's dependency missing from it, fails here by name."""
    import tomllib

    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((repository / "pyproject.toml").read_text())["project"]
    runtime, test = _lock(repository, RUNTIME_LOCK), _lock(repository, TEST_LOCK)
    assert not set(runtime) & set(test), f"in both locks: {sorted(set(runtime) & set(test))}"

    needed = _closure(project["dependencies"])
    missing = {name: needed[name][1] for name in set(needed) - set(runtime)}
    assert not missing, f"{RUNTIME_LOCK} lacks (needed by): {missing}"
    unneeded = set(runtime) - set(needed)
    assert not unneeded, f"{RUNTIME_LOCK} pins what no runtime dependency needs: {sorted(unneeded)}"

    tools = _closure(project["optional-dependencies"]["test"])
    assert set(test) == set(tools) - set(needed), (
        f"{TEST_LOCK} lacks {sorted(set(tools) - set(needed) - set(test))}, "
        f"has what the test extra does not add {sorted(set(test) - (set(tools) - set(needed)))}")
    assert {"pytest", "pingouin", "ruff", "snakefmt"} <= set(test)

    # The metadata read above is the locked versions' (what setup.sh installs): every pin is the installed version.
    for path, lock in ((RUNTIME_LOCK, runtime), (TEST_LOCK, test)):
        for name, version in lock.items():
            installed = (needed.get(name) or tools[name])[0]
            assert SpecifierSet(f"=={version}").contains(installed, prereleases=True), (
                f"{path} pins {name}=={version}, {installed} is installed")


def test_pip_check_passes(repository):
    """pip's own view of the installed locks: every installed package's requirements are met."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_setup_sh_installs_the_runtime_lock_then_the_test_lock(repository):
    setup = (repository / "setup.sh").read_text()
    installs = re.findall(r"--no-deps -r (\S+)", setup)
    assert installs == [RUNTIME_LOCK, TEST_LOCK], f"setup.sh installs {installs}"
    stamp = re.search(r'^want="\$\(cat ([^|]*)\|', setup, re.MULTILINE)
    assert stamp and {RUNTIME_LOCK, TEST_LOCK, "pyproject.toml"} <= set(stamp[1].split()), (
        "setup.sh: its stamp must hash both locks and pyproject.toml")


def test_apptainer_image_installs_what_setup_sh_installs(repository):
    """envs/peftstudy.def is built where setup.sh never runs: its Debian packages and lock must not drift."""
    setup = (repository / "setup.sh").read_text()
    definition = (repository / "envs/peftstudy.def").read_text()
    wanted = set(re.search(r"APT_PACKAGES=\(([^)]*)\)", setup)[1].split()) - {"python3-venv"}  # the image has no venv
    install = re.search(r"apt-get install [^\n]*\\\n((?:[^\n]*\\\n)*[^\n]*)", definition)[1]
    installed = set(install.replace("\\", " ").split())
    assert installed == wanted, (f"envs/peftstudy.def lacks {sorted(wanted - installed)}, "
                                 f"adds {sorted(installed - wanted)} against setup.sh's APT_PACKAGES")
    assert re.search(r"^From: python:3\.11-", definition, re.MULTILINE)
    assert "envs/requirements.lock /opt/peftstudy/requirements.lock" in definition
    assert "-r /opt/peftstudy/requirements.lock" in definition and "pip check" in definition
    assert not re.search(r"requirements-test\.lock /opt|-r \S*requirements-test\.lock", definition), (
        "envs/peftstudy.def: the image has no test tools")


def test_the_license_file_is_the_one_pyproject_declares(repository):
    import tomllib

    project = tomllib.loads((repository / "pyproject.toml").read_text())["project"]
    assert (project["license"], project["license-files"]) == ("MIT", ["LICENSE"]), "pyproject.toml [project]"
    assert (repository / "LICENSE").read_text().startswith("MIT License\n")
