#!/usr/bin/env bash
# Install into .venv/ if needed (scripts/install.sh: at constraints.txt's exact versions, the ones the notebooks'
# outputs were made with), then run every check: ruff (lint and format) on the package, tests and notebooks, then
# pytest: unit tests, the drift check, the workbook's checks and every notebook under nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check tinytorch tests notebooks benchmarks scripts
.venv/bin/ruff format --check tinytorch tests notebooks benchmarks scripts
.venv/bin/python -m pytest "$@"
