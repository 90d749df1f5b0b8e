#!/usr/bin/env bash
# Install the course into .venv/ at the repository root, at constraints.txt's exact versions (those the notebooks'
# outputs were made with): README's first command and scripts/test.sh both call this, so the second finds the first's
# install. It runs pip again only when pyproject.toml or constraints.txt changed since the last install (a stamp in
# .venv/ holds their hash), and pip then installs only what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 11), f"tinytorch needs Python 3.11+, found {sys.version.split()[0]}"'
  "$python" -m venv .venv
fi
stamp=.venv/.tinytorch-installed
wanted="$(cat pyproject.toml constraints.txt | .venv/bin/python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
  echo "$wanted" > "$stamp"
fi
