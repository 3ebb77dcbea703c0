"""Project conventions that no other test would notice breaking: Snakemake's linter, ruff, and one set of pins."""

import importlib.util
import re
import subprocess
import sys

import pytest
import yaml

# The one lint the workflow keeps by design: its software stack is the Snakefile's global `conda:` directive
# (envs/peftstudy.yaml), not a copy of it in every rule (see the Snakefile).
ALLOWED_LINT = "Specify a conda environment or container for each rule."


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
def test_snakemake_lint_finds_nothing_but_the_per_rule_environment(config, repository, snakemake_runner):
    result = snakemake_runner(["--lint", "--configfile", config], check=False, timeout=300)
    output = result.stdout + result.stderr
    lints = _lints(output)
    assert lints, f"no lint parsed from `snakemake --lint` (its format changed?):\n{output[-3000:]}"
    unexpected = [lint for lint in lints if lint[1] != ALLOWED_LINT or not lint[0].startswith("Lints for rule ")]
    assert not unexpected, "\n".join(f"{what}: {title}" for what, title in unexpected)
    # ...and the allowed lint is only true because the global directive names the environment.
    assert re.search(r'^conda: "envs/peftstudy\.yaml"$', (repository / "Snakefile").read_text(), re.MULTILINE)


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed (the `test` extra)")
def test_ruff_finds_no_unused_names_or_unsorted_imports(repository):
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F,I",
                             "src", "tests", "benchmarks"], cwd=repository, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _lock(repository):
    pins = {}
    for number, line in enumerate((repository / "envs/requirements.lock").read_text().splitlines(), 1):
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"envs/requirements.lock line {number}: {line!r} is not a `name==version` pin"
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
    for line in pip:
        if line.startswith("-r "):
            assert (repository / "envs" / line[3:]).is_file(), f"envs/peftstudy.yaml: {line!r} names no file"
            continue
        name, _, version = line.partition("==")
        assert lock.get(_normal(name)) == version, f"envs/peftstudy.yaml pins {line!r}, the lock {lock.get(_normal(name))}"


def test_pyproject_pins_are_the_lock_pins(repository):
    import tomllib

    project = tomllib.loads((repository / "pyproject.toml").read_text())["project"]
    lock = _lock(repository)
    requirements = [*project["dependencies"], *[r for extra in project["optional-dependencies"].values() for r in extra]]
    for requirement in requirements:
        name, separator, version = requirement.partition("==")
        assert separator, f"pyproject.toml: {requirement!r} is not pinned with =="
        assert lock.get(_normal(name)) == version, (
            f"pyproject.toml pins {requirement!r}, envs/requirements.lock has {lock.get(_normal(name))}")


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


def test_the_license_file_is_the_one_pyproject_declares(repository):
    import tomllib

    project = tomllib.loads((repository / "pyproject.toml").read_text())["project"]
    assert (project["license"], project["license-files"]) == ("MIT", ["LICENSE"]), "pyproject.toml [project]"
    assert (repository / "LICENSE").read_text().startswith("MIT License\n")
