"""Checks for the pieces the learner writes in the workbook: `check(name, answer)` says built, not yet or wrong.

Hand-written (not generated from a notebook). Each piece has a reference (what later cells use until the learner's
version is built) and a verify function that calls the learner's code on its own small, seeded inputs and raises
`Wrong` with a message in the learner's terms at the first problem it finds. The exercises (pieces named my_...)
come at the end of their chapter's module; an experiment that needs a notebook's data only calls the learner's
function and checks what it found.

This file holds the registry, `evaluate` and `check`; `helpers.py` the comparisons that the verify functions share;
`ch03_attention.py` and its siblings the references and verify functions of one chapter each. A chapter's module
registers its pieces when it is imported, so the chapters are imported at the end of this file, in course order
(PIECES keeps that order, and the progress table follows it).
"""

import ast
import copy
import functools
import inspect
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tinytorch.bpe import _merge as _merge  # a trusted merge for tests/test_checks.py, as checks._merge
from tinytorch.checks.helpers import Wrong, _describe, _expect_same

__all__ = [
    "HINTS",
    "MILESTONE",
    "PIECES",
    "Piece",
    "Result",
    "Wrong",
    "SHORTCUTS",
    "add_hints",
    "add_shortcuts",
    "check",
    "evaluate",
    "from_notebook",
    "hint",
    "piece",
    "register",
    "register_exercise",
]


@dataclass(frozen=True)
class Piece:
    """A function the learner writes, with tinytorch's version and the check of the learner's."""

    name: str  # what the learner writes, e.g. "attention_scores" (unique)
    chapter: str  # notebook stem, e.g. "03_attention"
    what: str  # one line, e.g. "scores q·kᵀ of every query against every key"
    reference: Callable  # what later cells use until the learner's version is built
    verify: Callable  # verify(answer) -> None; raises Wrong(message) at the first problem


@dataclass(frozen=True)
class Result:
    """The verdict on one piece: status "built", "not yet" or "wrong"; message "" when built."""

    name: str
    status: str
    message: str


PIECES: dict[str, Piece] = {}  # in course order
MILESTONE = "milestone_"  # the name's prefix of a piece whose check runs the learner's whole model on the course's job
HINTS: dict[str, tuple[str, ...]] = {}  # piece -> its hints, a nudge first, then the approach; none holds its answer


def add_hints(hints: dict[str, tuple[str, ...]]) -> None:
    """Give pieces their hints, in levels (at least two: a nudge in the chapter's words, then the approach)."""
    for name, levels in hints.items():
        if name not in PIECES or len(levels) < 2:
            raise ValueError(f"hints for {name!r}: need a registered piece and at least two levels, got {levels!r}")
        HINTS[name] = tuple(levels)


def hint(name: str, level: int = 1) -> None:
    """Print hint `level` of piece `name`: 1 is a nudge, 2 the approach. No hint gives a line of the answer."""
    if name not in HINTS:
        raise ValueError(f"no hints for {name!r}; the pieces are {', '.join(HINTS)}")
    levels = HINTS[name]
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= len(levels):
        raise ValueError(f"{name} has hints 1 to {len(levels)}, got level {level!r}")
    more = f' (hint("{name}", {level + 1}) for more)' if level < len(levels) else ""
    print(f"{name}, hint {level} of {len(levels)}: {levels[level - 1]}{more}")


def register(name: str, chapter: str, what: str, reference: Callable, verify: Callable) -> Piece:
    """Add a piece to PIECES; a name can be registered once."""
    if name in PIECES:
        raise ValueError(f"a piece named {name!r} is already registered (chapter {PIECES[name].chapter}); pick another")
    PIECES[name] = Piece(name, chapter, what, reference, verify)
    return PIECES[name]


def piece(name: str, chapter: str, what: str, reference: Callable) -> Callable:
    """Decorator: register the decorated function as the verify function of a piece."""

    def decorate(verify: Callable) -> Callable:
        register(name, chapter, what, reference, verify)
        return verify

    return decorate


def register_exercise(
    name: str,
    chapter: str,
    what: str,
    reference: Callable,
    cases: tuple | list = ((),),
    atol: float = 1e-6,
    rtol: float = 1e-6,
    hint: str = "",
) -> Piece:
    """Register an exercise whose answer must return what `reference` returns, for each tuple of arguments in `cases`.

    Numbers are compared with the tolerances, tensors value by value, lists and dicts item by item. A wrong number
    is reported as too large or too small, so the message does not give the answer away; `hint` is added to it.
    """

    def verify(answer: Callable) -> None:
        for args in cases:
            call = f"{name}({', '.join(_describe(a) for a in args)})"
            got = answer(*copy.deepcopy(args))
            _expect_same(got, reference(*copy.deepcopy(args)), call, atol, rtol, hint)

    return register(name, chapter, what, reference, verify)


# ------------------------------------------------------------------------------------- evaluate and check

_STUCK = "(the cells below use tinytorch's version until yours is built)"

# (text in the error message, hint) for errors a learner typically meets, in their terms
_HINTS = [
    (
        "view size is not compatible with input tensor's size and stride",
        "call .contiguous() before .view(), or use .reshape()",
    ),
    ("torch.return_types", "x.max(dim=...) returns (values, indices): use x.max(dim=-1, keepdim=True).values"),
    (
        "must match the size of tensor b",
        "the shapes do not line up: print them; keepdim=True keeps a reduced dimension",
    ),
    ("shapes cannot be multiplied", "the inner sizes of a matrix product must agree: print both shapes"),
    ("tensors used as indices must be long", "token ids must be int64: call .long()"),
    ("expected scalar type Long", "token ids must be int64: call .long()"),
    ("index out of range in self", "an id is too large for its embedding table: ids must be below its number of rows"),
    ("division by zero", "a count is 0 here: handle that case on its own (e.g. warmup_steps = 0 means no warmup)"),
    (
        "a leaf Variable that requires grad is being used in an in-place operation",
        "an optimizer changes the weights in place, outside autograd: decorate step with @torch.no_grad()",
    ),
    ("not implemented for 'BFloat16'", "this operation does not take bfloat16: call .float() on the tensor first"),
]


def _hint(name: str, error: Exception, source: str = "") -> str:
    """A hint for an error raised by the learner's code, or ""."""
    text = str(error)
    if isinstance(error, RuntimeError) and re.search(r"\.T\b", source):
        return "x.T reverses every dimension of a batch; to swap the last two use .transpose(-2, -1) (or .mT)"
    if isinstance(error, NameError):
        return "is it defined in a cell above, and did that cell run?"
    if isinstance(error, TypeError) and "argument" in text and name in PIECES:
        return f"keep the signature given in the cell: def {name}{inspect.signature(PIECES[name].reference)}"
    return next((hint for needle, hint in _HINTS if needle in text), "")


def evaluate(name: str, answer: Any) -> Result:
    """The verdict on the learner's `answer` for piece `name`; never raises for the learner's mistakes.

    The global random state is restored afterwards, so a check does not change what later cells draw.
    """
    if name not in PIECES:
        raise ValueError(f"no piece named {name!r}; known pieces: {', '.join(PIECES)}")
    if not callable(answer):
        return Result(name, "wrong", f"{name} is not a function: define it with def {name}(...):")
    calls = []  # the arguments of the learner's last call, to name them when it fails on their shapes

    @functools.wraps(answer)
    def recorded(*args, **kwargs):
        calls[:] = [(args, kwargs)]
        return answer(*args, **kwargs)

    try:
        with torch.random.fork_rng(devices=[]):
            PIECES[name].verify(recorded)
    except NotImplementedError as error:
        if "not implemented for '" not in str(error):  # a stub; PyTorch says so of a dtype an operation lacks
            return Result(name, "not yet", "")
        return _raised(name, answer, error, calls)
    except Wrong as wrong:
        return Result(name, "wrong", str(wrong))
    except Exception as error:  # the learner's code raised: say what, in one line
        return _raised(name, answer, error, calls)
    shortcut = "" if answer is PIECES[name].reference else _shortcut(name, _source(answer))  # tinytorch's may
    if shortcut:
        return Result(
            name,
            "wrong",
            f"{name} calls {shortcut}, the library's ready-made version: the chapter asks you to write it out "
            f'yourself, as its docstring says (hint("{name}") if you are stuck)',
        )
    return Result(name, "built", "")


def _raised(name: str, answer: Any, error: Exception, calls: list) -> Result:
    """The verdict when the learner's code raised `error`: what, in one line, with the call's shapes and a hint."""
    lines = str(error).strip().splitlines()
    first = lines[0][:200].rstrip(".") if lines else ""
    message = f"calling {name} raised {type(error).__name__}" + (f": {first}" if first else "")
    if calls and isinstance(error, (RuntimeError, IndexError)) and any(w in first for w in _SHAPE_ERRORS):
        args, kwargs = calls[0]
        given = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
        message += f" (called with {', '.join(given)})"
    hint = _hint(name, error, _source(answer))
    return Result(name, "wrong", message + (f"; {hint}" if hint else ""))


_SHAPE_ERRORS = (  # PyTorch's words when the shapes of a call do not fit together
    "must match the size",
    "cannot be multiplied",
    "Expected size",
    "size mismatch",
    "Dimension out of range",
    "is invalid for input of size",
    "number of dims",
)


def _source(answer: Callable) -> str:
    """The learner's code, where Python can find it (a notebook cell, a file), else ""."""
    try:
        return inspect.getsource(inspect.unwrap(answer))
    except (OSError, TypeError):
        return ""


SHORTCUTS: dict[str, tuple[str, ...]] = {}  # piece -> regexes of the library calls it must not use (from scratch)


def add_shortcuts(shortcuts: dict[str, tuple[str, ...]]) -> None:
    """Name the library's ready-made versions of pieces the chapter asks to write out ("step by step")."""
    for name, patterns in shortcuts.items():
        if name not in PIECES:
            raise ValueError(f"shortcuts for {name!r}: no such piece")
        SHORTCUTS[name] = tuple(patterns)


def _shortcut(name: str, source: str) -> str:
    """The first library call of SHORTCUTS[name] in the learner's code (comments and docstrings left out), or ""."""
    code = "\n".join(line.split("#")[0] for line in source.split("\n"))
    code = re.sub(r'"""[\s\S]*?"""', "", code)
    found = (re.search(pattern, code) for pattern in SHORTCUTS.get(name, ()))
    return next((match.group(0).rstrip("(") for match in found if match), "")


def check(name: str, answer: Any) -> Callable:
    """Print one line on the learner's piece and return it when built, else tinytorch's version.

    With the environment variable TINYTORCH_CHECK_REPORT set to a file, also append the result to it as a JSON line
    (`tinytorch check` reads it).
    """
    result = evaluate(name, answer)
    line = f"{name}: {result.status}"
    if result.status == "wrong":
        line += f": {result.message}"
    if result.status != "built":
        line += f" {_STUCK}"
    print(line)
    report = os.environ.get("TINYTORCH_CHECK_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as file:
            file.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
    return answer if result.status == "built" else PIECES[name].reference


def from_notebook(name: str, directory: str | Path = ".") -> Any:
    """The learner's piece `name` as its chapter's notebook in `directory` defines it (e.g. GPT from 05_gpt.ipynb),
    if its check reads built; else None (no such notebook, or the piece is not built there).

    Runs the notebook's cells that only import and define, up to and including the piece's own cell: a later chapter
    (and its milestone) can use the learner's earlier module without running the earlier chapter. An earlier
    chapter's piece that the notebook imports from tinytorch (chapter 05's `Block`) is the learner's where it is built
    in its own notebook, so your GPT is made of your blocks, made of your attention."""
    if name not in PIECES:
        raise ValueError(f"no piece named {name!r}; known pieces: {', '.join(PIECES)}")
    path = (Path(directory) / f"{PIECES[name].chapter}.ipynb").resolve()
    try:
        return _from_notebook(name, str(path), path.stat().st_mtime_ns)
    except OSError:
        return None


@functools.lru_cache(maxsize=64)
def _from_notebook(name: str, path: str, mtime: int) -> Any:
    """from_notebook, once per version of the notebook file (`mtime`)."""
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None
    chapter = PIECES[name].chapter
    definitions = []  # every function and class, in order, up to the piece's own cell (not the cells' code)
    for cell in cells:
        definitions += _top_level(cell, (ast.FunctionDef, ast.ClassDef))
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == name:
            break  # the learner's cell: what follows may redefine the name (a check cell returns tinytorch's)
    else:
        return None
    nodes = [node for source in definitions for node in ast.walk(ast.parse(source))]
    local = {name for node in nodes if isinstance(node, (ast.Import, ast.ImportFrom)) for name in _bound(node)}
    used = {node.id for node in nodes if isinstance(node, ast.Name)} - local  # a function's own import: not needed
    namespace: dict[str, Any] = {"__name__": f"notebook_{chapter}"}
    for cell in cells:  # the imports the definitions use, with the learner's earlier modules in place of tinytorch's
        for statement in _top_level(cell, (ast.Import, ast.ImportFrom)):
            bound = _bound_names(statement)
            if "*" not in bound and bound.isdisjoint(used):
                continue  # e.g. transformers, which a cell that compares imports: seconds to import, unused here
            try:
                exec(compile(statement, path, "exec"), namespace)
            except Exception:  # an import that fails here fails in the learner's notebook too, where they see it
                continue
            for other in _imported_pieces(statement, chapter):
                namespace[other] = from_notebook(other, Path(path).parent) or namespace[other]
    for source in definitions:
        try:
            exec(compile(source, path, "exec"), namespace)
        except Exception:
            continue
    answer = namespace.get(name)
    return answer if answer is not None and evaluate(name, answer).status == "built" else None


def _top_level(cell: dict, kinds: tuple[type, ...]) -> list[str]:
    """The top-level statements of these kinds in a code cell, as source (none if it does not parse: a magic)."""
    source = "".join(cell.get("source", "")) if cell.get("cell_type") == "code" else ""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.split("\n")
    return [
        "\n".join(
            lines[min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1 : node.end_lineno]
        )
        for node in tree.body
        if isinstance(node, kinds)
    ]


def _bound(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The names an import binds (`import torch.nn as nn` binds nn, `import torch.nn` torch); "*" for a star."""
    return {alias.asname or alias.name.split(".")[0] for alias in node.names}


def _bound_names(source: str) -> set[str]:
    """The names the import statement `source` binds."""
    return {name for node in ast.parse(source).body for name in _bound(node)}


def _imported_pieces(source: str, chapter: str) -> list[str]:
    """The pieces of chapters before `chapter` that a cell imports from tinytorch by their own name (`Block`)."""
    names = [
        alias.asname or alias.name
        for node in ast.parse(source).body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinytorch")
        for alias in node.names
    ]
    return [n for n in names if n in PIECES and PIECES[n].chapter < chapter and not n.startswith(("my_", MILESTONE))]


# Importing a chapter registers its pieces, so the chapters come after the registry (E402) and are imported for that
# alone (F401), in course order: their names sort in it, and PIECES and the progress table keep it.
from tinytorch.checks import (  # noqa: E402, F401
    ch00_introduction,
    ch01_utilities,
    ch02_embeddings,
    ch02b_subwords,
    ch03_attention,
    ch04_blocks,
    ch05_gpt,
    ch06_training,
    ch07_generation,
    ch08_attention_explorer,
    ch09_training_runs,
    ch10_budget,
    ch11_modern,
    ch12_finetune,
)
