#!/usr/bin/env bash
# Install into .venv/ if needed (scripts/install.sh: at constraints.txt's exact versions, the ones the notebooks'
# outputs were made with), then run every check: ruff (lint and format) on the package, tests and notebooks, then
# pytest: unit tests, the drift check and the workbook's checks one at a time (some measure the machine's load), then
# every notebook under nbval, two notebooks at a time (pytest-xdist), each kernel on one thread: two kernels on two
# threads each would wait on each other's threads (see README, "A busy machine"). With arguments: pytest with them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check tinytorch tests notebooks benchmarks scripts
.venv/bin/ruff format --check tinytorch tests notebooks benchmarks scripts
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest tests
OMP_NUM_THREADS=1 .venv/bin/python -m pytest notebooks -n 2 --dist loadfile
