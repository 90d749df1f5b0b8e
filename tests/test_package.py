"""The package as a whole: what `import tinytorch` pulls in, and the `tinytorch` command."""

import subprocess
import sys


def test_import_needs_only_the_runtime_dependencies():
    optional = "('matplotlib', 'ipywidgets', 'transformers')"
    code = f"import sys, tinytorch; print(sorted(m for m in {optional} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_cli_preview_prints_both_shapes():
    result = subprocess.run([sys.executable, "-m", "tinytorch", "preview"], capture_output=True, text=True, check=True)
    assert "input  (1, 10)" in result.stdout and "output (1, 10, 128)" in result.stdout
