#!/usr/bin/env bash
# Regenerate the package from the notebooks: nbdev writes tinytorch/<module>.py from the
# `#| export` cells, then ruff formats the generated files the same way as the rest of the code.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${TINYTORCH_BIN:-.venv/bin}"
"$bin/nbdev-export"
"$bin/ruff" format --quiet tinytorch
