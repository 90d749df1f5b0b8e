#!/usr/bin/env bash
# Install into .venv/ if needed, at constraints.txt's exact versions (the ones the notebooks' outputs were made with),
# then run every check: ruff (lint and format) on the package, tests and notebooks, then pytest: unit tests, the drift
# check and every notebook under nbval. It installs again when pyproject.toml or constraints.txt has changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 11), f"tinytorch needs Python 3.11+, found {sys.version.split()[0]}"'
  "$python" -m venv .venv
fi
stamp=.venv/.tinytorch-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
  touch "$stamp"
fi
.venv/bin/ruff check tinytorch tests notebooks benchmarks scripts
.venv/bin/ruff format --check tinytorch tests notebooks benchmarks scripts
.venv/bin/python -m pytest "$@"
