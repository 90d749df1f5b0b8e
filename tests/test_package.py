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


def test_import_tinytorch_loads_torch_only_when_a_name_is_used():
    code = "import sys, tinytorch; a = 'torch' in sys.modules; tinytorch.GPT; print(a, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def test_help_and_option_errors_do_not_import_torch():
    """`tinytorch --help`, `train --help`, `complete --help` and a bad option answer without loading torch (a second
    or two saved on every such call: README)."""
    code = (
        "import sys\nfrom tinytorch.__main__ import main\n"
        "for argv in (['--help'], ['train', '--help'], ['complete', '--help'], ['train', '--steps', 'x']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.splitlines()[-1] == "no torch", result.stderr[-2000:]
