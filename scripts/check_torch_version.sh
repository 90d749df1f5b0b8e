#!/usr/bin/env bash
# Does tinytorch work with another torch release? Makes a scratch venv with that torch, installs the package with
# its dev extra (every other package at constraints.txt's version, torch at the one asked for), and runs the
# package tests (not the notebooks, whose outputs were made with constraints.txt's torch).
#
#   bash scripts/check_torch_version.sh 2.4.0              # every package test
#   bash scripts/check_torch_version.sh 2.4.0 -x -k gpt    # extra arguments go to pytest
#   ALSO='transformers<5' bash scripts/check_torch_version.sh 2.4.0   # also install these, unconstrained
#
# It tests the repository's committed HEAD, cloned into the scratch folder (the tests write files there, not here).
# Scratch folder: $SCRATCH, default /tmp/tinytorch-torch-VERSION (kept, so a second run installs nothing new).
# A torch from PyPI other than the one already on your disk may be a CUDA build of several GB.
set -euo pipefail
version="${1:?usage: bash scripts/check_torch_version.sh TORCH_VERSION [pytest arguments], e.g. 2.4.0}"
shift
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
scratch="${SCRATCH:-${TMPDIR:-/tmp}/tinytorch-torch-$version}"
mkdir -p "$scratch"
rm -rf "$scratch/src"
git clone --quiet "$repo" "$scratch/src"
[ -x "$scratch/venv/bin/python" ] || "$python" -m venv "$scratch/venv"
py="$scratch/venv/bin/python"
# constraints.txt with its torch line replaced by the version under test
{ grep -v '^torch==' "$scratch/src/constraints.txt"; echo "torch==$version"; } > "$scratch/constraints.txt"
# pyproject's requirements and dev extra less torch, so that a torch below pyproject's floor can be checked too
"$py" - "$scratch/src/pyproject.toml" > "$scratch/requirements.txt" <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
dev = [r for r in extras["dev"] if not r.startswith("tinytorch[")]  # "tinytorch[notebooks]": that extra's requirements
dev += [r for name in re.findall(r"tinytorch\[(\w+)\]", " ".join(extras["dev"])) for r in extras[name]]
print("\n".join(r for r in project["dependencies"] + dev if not re.match(r"torch\b", r)))
PY
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "torch==$version"
"$py" -m pip install --quiet -c "$scratch/constraints.txt" -r "$scratch/requirements.txt"
"$py" -m pip install --quiet --no-deps -e "$scratch/src"
if [ -n "${ALSO:-}" ]; then  # e.g. ALSO='transformers<5': transformers 5 needs torch >= 2.6 for its GPT-2
  # shellcheck disable=SC2086  # ALSO may name several requirements
  "$py" -m pip install --quiet $ALSO "torch==$version"
fi
"$py" -m pip check || echo "(pip check: see above; a torch below pyproject's floor is expected there)"
cd "$scratch/src"
"$py" -c 'import sys, torch; print(f"torch {torch.__version__}, Python {sys.version.split()[0]}, commit", end=" ")'
git rev-parse --short HEAD
"$py" -m pytest tests -p no:cacheprovider -o addopts="" -q --ignore=tests/test_browser.py "$@"
