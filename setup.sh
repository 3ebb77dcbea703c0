#!/usr/bin/env bash
# Installs everything peftstudy needs on a fresh Debian machine; safe to run again (does only what is missing).
#   - Debian packages: TeX Live + latexmk (the PDF report), WordNet and dictionaries (demo data sources),
#     and SLURM + munge for the tests' single-node cluster where no SLURM is installed
#   - .venv with the pinned Python stack (envs/requirements.lock), the test tools (envs/requirements-test.lock)
#     and peftstudy itself (editable)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(texlive-latex-base texlive-latex-recommended texlive-fonts-recommended latexmk lz4
              wordnet-base wordnet-sense-index dict-foldoc dict-jargon python3-venv)
# The SLURM tests start a real single-node cluster: Debian's slurm-wlm and munge, only where no SLURM is
# installed already (on a cluster's login node, its own SLURM is left alone).
command -v sbatch >/dev/null || APT_PACKAGES+=(slurm-wlm munge)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    # Acquire::Languages=en also fetches Debian's English package descriptions (a demo data source).
    $SUDO apt-get update -qq -o Acquire::Languages=en
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

# pip warns about every local index location that this machine lacks; keep real errors visible.
quiet_pip() {
    .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}

stamp=".setup-stamp"
want="$(cat envs/requirements.lock envs/requirements-test.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing the pinned Python stack into .venv (a few minutes the first time)"
    quiet_pip --upgrade pip
    # The locks are a complete freeze: no resolver needed, and nothing outside them may come in. The runtime
    # lock is what the workflow runs on (also the conda env's and the container's); the test lock adds pytest,
    # pingouin, ruff, snakefmt and what they alone pull in (tests/unit/test_conventions.py checks the split).
    quiet_pip --no-deps -r envs/requirements.lock
    quiet_pip --no-deps -r envs/requirements-test.lock
    quiet_pip --no-deps -e .
    .venv/bin/python -m pip check
    echo "$want" > "$stamp"
fi
echo "setup: ready ($(.venv/bin/python -c 'from importlib.metadata import version as v; print(", ".join(f"{p} {v(p)}" for p in ("torch", "transformers", "peft", "snakemake")))'))"
