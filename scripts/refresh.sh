#!/usr/bin/env bash
# Re-run every notebook (or the ones named) top to bottom in a fresh kernel, save the real
# outputs, clean the metadata and regenerate the package from the notebooks.
# Usage: bash scripts/refresh.sh [notebooks/NN_name.ipynb ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
if [ "$#" -eq 0 ]; then set -- notebooks/*.ipynb; fi
"$bin/ruff" format --quiet "$@"
bash scripts/export.sh
for nb in "$@"; do
  echo "running $nb"
  "$bin/jupyter" nbconvert --to notebook --execute --inplace \
    --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=900 "$nb"
done
"$bin/python" scripts/clean_notebooks.py "$@"
bash scripts/export.sh
