"""The learner's workbook (hand-written): `make_workbook` writes the chapters with the pieces as stubs, nbgrader-style;
`run_checks` and `check_chapter` run the learner's chapters in fresh kernels and collect what their checks say."""

import ast
import copy
import json
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

import tinytorch
from tinytorch.checkpoint import atomic_write
from tinytorch.checks import PIECES, Result, _imported_pieces

__all__ = [
    "BOOK",
    "CellError",
    "ChapterCheck",
    "WorkbookError",
    "chapters_in",
    "check_chapter",
    "check_chapters",
    "make_workbook",
    "run_checks",
    "stubs",
]

BOOK = Path(tinytorch.__file__).resolve().parent.parent / "notebooks"  # the book, in a clone of the course
STUB = 'raise NotImplementedError("{name}: not written yet")'
CELL_TIMEOUT = 900  # seconds per cell when checking: chapter 06 trains a model
KERNEL_STARTUP_TIMEOUT = 180  # seconds for a kernel to start: minutes on a busy machine, where nbclient's 60 failed

_STUB = re.compile(r'raise NotImplementedError\("(\w+)(?:\.\w+)*: not written yet"\)')  # Block.forward: Block
_CHECK_CALL = re.compile(r"\bcheck\(")
_CHECKED_NAME = re.compile(r"""\bcheck\(\s*["'](\w+)["']""")
_DEFINITION = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+(\w+)")
_DIRECTIVE = re.compile(r"^\s*#\|\s*([\w-]+)")
_DEFAULT_EXP = re.compile(r"^\s*#\|\s*default_exp\s+([\w.]+)")
_EXPORTS = ("export", "exports", "exporti")
_CHAPTER = re.compile(r"\d+[a-z]?_\w+")  # 03_attention, 02b_subwords; not 03_attention.old
_CLEARED = "# Run this cell once your "  # the first line of a cell whose output the workbook cleared
_CHECKS_IMPORT = re.compile(r"^from tinytorch\.checks import check$", re.MULTILINE)
_CHECKS_IMPORT_WITH_HINT = 'from tinytorch.checks import check, hint  # stuck on a piece? hint("its name")'
_YOURS = (  # the lines after a chapter's imports that put the learner's earlier modules in place of tinytorch's
    "# Your modules of earlier chapters, where their notebooks next to this one have them built (tinytorch's until\n"
    "# then): this chapter runs on them.\nfrom tinytorch.checks import from_notebook"
)


class WorkbookError(ValueError):
    """A workbook that cannot be written or checked; the one-line message says what to do."""


@dataclass(frozen=True)
class CellError:
    """An error in a cell that is neither the learner's nor a check cell (or a kernel that stopped)."""

    cell: int | None  # index of the cell in the notebook, 0 for the first
    source: str  # the cell's first line
    ename: str
    evalue: str

    def __str__(self) -> str:
        where = "the kernel" if self.cell is None else f"cell {self.cell} ({self.source!r})"
        return f"{where} raised {self.ename}: {self.evalue}"


@dataclass(frozen=True)
class ChapterCheck:
    """What `tinytorch check` found in one chapter of the workbook."""

    chapter: str  # notebook stem, e.g. "03_attention"
    results: list[Result]  # one per piece, in course order
    errors: list[CellError]  # errors of the other cells


# ------------------------------------------------------------------------------------- making the workbook


def _select(paths: list[Path], chapters, where: str) -> list[Path]:
    """The notebooks named by `chapters` ("03", "3", "02b", "03_attention" or "attention"), in book order.

    Without `chapters`, all of them."""
    if not chapters:
        return paths
    chosen = set()
    for chapter in chapters:
        key = str(chapter)
        found = [
            p
            for p in paths
            if key in (p.stem, *p.stem.split("_", 1)) or (key.isdigit() and p.stem.split("_", 1)[0] == key.zfill(2))
        ]
        if not found:
            raise WorkbookError(f"no chapter {key!r} in {where}; choose from {', '.join(p.stem for p in paths)}")
        chosen.update(found)
    return [p for p in paths if p in chosen]


def _is_marker(line: str, marker: str) -> bool:
    """nbgrader's solution markers: a comment line containing BEGIN SOLUTION or END SOLUTION."""
    text = line.strip()
    return text.startswith("#") and marker in text


def _enclosing_name(lines: list[str], number: int) -> str | None:
    """The name of the innermost def or class around line `number` (0-based), or None outside any."""
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:  # e.g. IPython magics: fall back on indentation
        indent = len(lines[number]) - len(lines[number].lstrip())
        for line in reversed(lines[:number]):
            match = _DEFINITION.match(line)
            if match and len(match.group(1)) < indent:
                return match.group(2)
        return None
    around = sorted(
        (
            node
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.lineno <= number < node.end_lineno  # lineno is 1-based: the region starts after the def line
        ),
        key=lambda node: node.lineno,
    )
    if not around:
        return None
    classes = [node.name for node in around[:-1] if isinstance(node, ast.ClassDef)]
    return ".".join([*classes, around[-1].name])  # a method is named with its class: Block.__init__


def _stub_regions(source: str, where: str) -> tuple[str, list[str]]:
    """`source` with every solution region replaced by a stub, and the names of the functions stubbed."""
    lines = source.split("\n")
    kept, names, begin = [], [], None
    for number, line in enumerate(lines):
        if _is_marker(line, "BEGIN SOLUTION"):
            if begin is not None:
                raise WorkbookError(f"{where}, line {number + 1}: BEGIN SOLUTION inside another solution region")
            begin = number
            name = _enclosing_name(lines, number)
            if name is None:
                raise WorkbookError(
                    f"{where}, line {number + 1}: a solution region outside any function; "
                    "put the learner's code in a def, so the workbook can name the stub"
                )
            indent = line[: len(line) - len(line.lstrip())]
            kept += [f"{indent}# YOUR CODE HERE", indent + STUB.format(name=name)]
            names.append(name)
        elif _is_marker(line, "END SOLUTION"):
            if begin is None:
                raise WorkbookError(f"{where}, line {number + 1}: END SOLUTION without BEGIN SOLUTION")
            begin = None
        elif begin is None:
            kept.append(line)
    if begin is not None:
        raise WorkbookError(f"{where}, line {begin + 1}: BEGIN SOLUTION without END SOLUTION")
    return "\n".join(kept), names


def _export_target(source: str) -> str | None:
    """The module an export cell names itself (`#| export data` -> "data"), or None for the notebook's default."""
    for line in source.split("\n"):
        match = re.match(r"^\s*#\|\s*(?:export|exports|exporti)\s+([\w.]+)\s*$", line)
        if match:
            return match.group(1)
    return None


def _directives(source: str) -> list[str]:
    """nbdev's directives at the top of a cell: `#| export` -> ["export"]."""
    found = []
    for line in source.split("\n"):
        match = _DIRECTIVE.match(line)
        if not match:
            break
        found.append(match.group(1))
    return found


def _defined_names(node: ast.stmt) -> list[str]:
    """The module-level names a statement of an export cell defines."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)]


def _export_as_import(source: str, module: str | None, stem: str, where: str) -> str:
    """An `#| export` cell as the learner sees it: its imports, then one import of what it defines."""
    body = "\n".join(line for line in source.split("\n") if not _DIRECTIVE.match(line))
    imports, names = [], []
    for node in ast.parse(body).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(ast.get_source_segment(body, node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign)) or (
            isinstance(node, ast.AnnAssign) and node.value is not None
        ):
            names += _defined_names(node)
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a bare string is a comment
            raise WorkbookError(
                f"{where}: an export cell holds a {type(node).__name__} statement (line {node.lineno}); the workbook "
                "turns only imports and definitions into imports: move it into a function"
            )
    if names and module is None:
        raise WorkbookError(f"{where}: an export cell but no #| default_exp cell to name its module")
    lines = list(imports)
    if names:
        single = f"from tinytorch.{module} import {', '.join(names)}"
        wrapped = f"from tinytorch.{module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"
        note = f"# tinytorch's version: its code is in the book, notebooks/{stem}.ipynb, and in tinytorch/{module}.py"
        statement = single if len(single) <= 100 else wrapped
        lines += ["", note, statement] if imports else [note, statement]
    return "\n".join(lines).strip("\n")


def _intro(stem: str, names: list[str]) -> str:
    """The workbook's first cell: what it is, which cells are the learner's, how to check."""
    number = stem.split("_", 1)[0]
    if names:
        pieces = ", ".join(f"`{n}`" for n in names)
        task = f"This chapter asks you to write {len(names)} piece{'s' if len(names) > 1 else ''}: {pieces}."
    else:
        task = "This chapter has nothing for you to write: read it and run its cells."
    return (
        f"**Workbook.** This is your copy of chapter {stem} (the book, `notebooks/{stem}.ipynb`, has the answers). "
        "Every cell with `# YOUR CODE HERE` is yours: replace its `raise NotImplementedError(...)` line with your "
        "code and run the cell. The check cell below it then prints `built`, `not yet` or `wrong: ...` with what to "
        "fix; until your piece is built, the cells after it use tinytorch's version, so you can go on.\n\n"
        f"{task}\n\n"
        + (
            f'Stuck on a piece? `hint("{names[0]}")` prints a nudge, `hint("{names[0]}", 2)` the approach; no hint '
            "shows a line of the answer. Cells whose output would show your result before you have it are cleared: "
            "they say so in their first line.\n\n"
            if names
            else ""
        )
        + f"Check your work on the whole chapter from a terminal, in a fresh kernel: `tinytorch check {number}`."
    )


def _workbook_chapter(nb: nbformat.NotebookNode, stem: str) -> nbformat.NotebookNode:
    """The workbook version of one of the book's notebooks."""
    nb = copy.deepcopy(nb)
    module = None  # from `#| default_exp attention`: the package module the export cells go to
    for cell in nb.cells:
        for line in cell.source.split("\n") if cell.cell_type == "code" else []:
            match = _DEFAULT_EXP.match(line)
            if match:
                module = match.group(1)
    cells, names = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        where = f"{stem}.ipynb, cell {index}"
        cell.execution_count = None
        for output in cell.get("outputs", []):
            if "execution_count" in output:
                output.execution_count = None
        source = "\n".join(line for line in cell.source.split("\n") if not _DEFAULT_EXP.match(line))
        has_region = any(_is_marker(line, "BEGIN SOLUTION") for line in source.split("\n"))
        if any(d in _EXPORTS for d in _directives(source)):
            if has_region:
                raise WorkbookError(f"{where}: a solution region in an #| export cell; mark a teaching copy instead")
            source = _export_as_import(source, _export_target(source) or module, stem, where)
        elif has_region:
            if not cell.metadata.get("nbgrader", {}).get("solution"):
                raise WorkbookError(
                    f"{where}: a solution region in a cell without nbgrader's solution metadata "
                    '("nbgrader": {"solution": true, "grade_id": ...})'
                )
            source, stubbed = _stub_regions(source, where)
            names = list(dict.fromkeys([*names, *(name.split(".")[0] for name in stubbed)]))  # Block.forward: Block
            hidden = cell.metadata.get("jupyter", {})
            hidden.pop("source_hidden", None)  # the book folds its answers away; the learner's cell must show
            if "jupyter" in cell.metadata and not hidden:
                del cell.metadata["jupyter"]
        if not source.strip():
            continue  # the #| default_exp cell
        used = [] if has_region else [n for n in names if re.search(rf"(?<![\w.\"']){re.escape(n)}\b", source)]
        if used and not _CHECK_CALL.search(source):  # its output would show the learner's result before they have it
            pieces = f"{', '.join(used)} {'is' if len(used) == 1 else 'are'}"
            source = f"{_CLEARED}{pieces} built: its output is then yours.\n{source}"
            cell.outputs = []
        source = _CHECKS_IMPORT.sub(_CHECKS_IMPORT_WITH_HINT, source)
        earlier = [] if has_region else _imported_pieces(source, stem)
        if earlier:  # imports of earlier chapters' modules: the learner's replace tinytorch's where built
            source += "\n\n" + _YOURS + "".join(f'\n{n} = from_notebook("{n}") or {n}' for n in earlier)
        cell.source = source
        if has_region or _CHECK_CALL.search(source):
            cell.outputs = []  # the answer's outputs, and the check's verdict on it
        cells.append(cell)
    intro = nbformat.v4.new_markdown_cell(_intro(stem, names))
    if nb.nbformat_minor >= 5:
        intro.id = "workbook-intro"
    else:
        intro.pop("id", None)
    nb.cells = [intro, *cells]
    return nb


def _has_work(path: Path, fresh: nbformat.NotebookNode) -> bool:
    """True when the notebook at `path` differs from a fresh workbook chapter in any cell's source."""
    try:
        existing = nbformat.read(path, as_version=4)
    except Exception:  # not a notebook we can read: treat it as the learner's
        return True
    return [c.source for c in existing.cells] != [c.source for c in fresh.cells]


def make_workbook(out_dir: str | Path = "workbook", chapters=None, book: str | Path = BOOK) -> list[Path]:
    """Write the workbook of every chapter of `book` (or of `chapters`) to `out_dir`; returns the files written.

    Refuses, writing nothing, when a file to write holds the learner's work (a cell differs from a fresh workbook).
    """
    book, out_dir = Path(book), Path(out_dir)
    if not book.is_dir():
        raise WorkbookError(
            f"the book's notebooks are not at {book}: run tinytorch workbook from a clone of the course, "
            "installed with README's set-up (pip install -e '.[dev]')"
        )
    paths = _select(sorted(p for p in book.glob("*.ipynb") if _CHAPTER.fullmatch(p.stem)), chapters, str(book))
    fresh = {out_dir / p.name: _workbook_chapter(nbformat.read(p, as_version=4), p.stem) for p in paths}
    busy = [path for path, nb in fresh.items() if path.exists() and _has_work(path, nb)]
    if busy:
        number = busy[0].stem.split("_", 1)[0]
        command = "tinytorch workbook" + ("" if out_dir == Path("workbook") else f" {out_dir}")
        raise WorkbookError(
            f"{', '.join(map(str, busy))} {'has' if len(busy) == 1 else 'have'} your work in it, so nothing was "
            f"written. To start a chapter again without losing that work, move its file away "
            f"(mv {busy[0]} {busy[0].with_suffix('.old.ipynb')}), then run: {command} --chapter {number}"
        )
    texts = {path: nbformat.writes(nb) + "\n" for path, nb in fresh.items()}
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        needed = sum(len(text.encode()) for text in texts.values()) + 100_000  # and a margin for the folder
        free = shutil.disk_usage(out_dir).free
        if free < needed:
            raise WorkbookError(
                f"{out_dir} has {free / 1e6:.1f} MB free and the workbook needs {needed / 1e6:.1f} MB, so nothing was "
                "written; free some space or give another folder"
            )
        for path, text in texts.items():
            atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))  # all or nothing
            written.append(path)
    except OSError as error:
        done = f"{', '.join(p.name for p in written)} written, the others not" if written else "nothing was written"
        raise WorkbookError(
            f"cannot write the workbook in {out_dir} ({error.strerror or error}): {done}, and no file is half-written; "
            "free some space (or fix the folder), then run the same command again"
        ) from None
    return list(fresh)


def stubs(path: str | Path) -> list[str]:
    """The names of the pieces still stubbed in a workbook notebook, in order, each once."""
    cells = nbformat.read(path, as_version=4).cells
    found = [name for cell in cells if cell.cell_type == "code" for name in _STUB.findall(cell.source)]
    return list(dict.fromkeys(found))  # Block.__init__ and Block.forward: the piece Block, once


# ------------------------------------------------------------------------------------- checking the workbook


def _kernel_manager_class() -> type:
    """A kernel manager whose "python3" is always this Python (sys.executable), whatever kernels Jupyter lists."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    import zmq
    from traitlets import default

    class CurrentEnvironmentSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    class CurrentEnvironmentKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            if self.has_trait("transport_encryption") and zmq.has("curve"):  # jupyter_client >= 8.10
                self.transport_encryption = "auto"  # else the kernel warns that it runs unencrypted over TCP

        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return CurrentEnvironmentSpecs()

    return CurrentEnvironmentKernelManager


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:200] if lines else ""


def _error_of(cell: nbformat.NotebookNode) -> tuple[str, str] | None:
    """(ename, first line of evalue) of a cell's error output, or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", "Error"), _first_line(output.get("evalue", ""))
    return None


def _syntax_error(nb: nbformat.NotebookNode, name: str) -> str:
    """What is wrong when the cell that defines piece `name` could not even be read by Python, or "": the check cell
    below it would only say that the name is not defined."""
    for cell in nb.cells:
        defined = (match.group(2) for match in map(_DEFINITION.match, cell.source.split("\n")) if match)
        if cell.cell_type != "code" or name not in defined:
            continue
        error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        if error is None or error.get("ename") not in ("SyntaxError", "IndentationError", "TabError"):
            return ""
        found = re.search(r"^(.*) \(\S+, line (\d+)\)$", error.get("evalue", ""))
        what, line = (found.group(1), int(found.group(2))) if found else (error.get("evalue", ""), None)
        lines = cell.source.split("\n")
        where = f", line {line}: {lines[line - 1].strip()!r}" if line and line <= len(lines) else ""
        return f"your cell has a {error['ename']} ({what}){where}; fix it and run the cell again"
    return ""


def chapters_in(directory: str | Path = "workbook", chapters=None) -> list[Path]:
    """The workbook's chapter notebooks (or those named by `chapters`), in order."""
    directory = Path(directory)
    paths = sorted(p for p in directory.glob("*.ipynb") if _CHAPTER.fullmatch(p.stem)) if directory.is_dir() else []
    if not paths:
        raise WorkbookError(f"no workbook at {directory}; make one with tinytorch workbook")
    return _select(paths, chapters, f"the workbook {directory}")


def check_chapter(path: str | Path, threads: int | None = None) -> ChapterCheck:
    """Run one workbook chapter top to bottom in a fresh kernel (the file is not changed) and collect its checks.

    `threads` caps the kernel's CPU threads (OMP_NUM_THREADS), for chapters checked side by side.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    errors, reported = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.jsonl"
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            allow_errors=True,
            interrupt_on_timeout=True,
            kernel_manager_class=_kernel_manager_class(),
            startup_timeout=KERNEL_STARTUP_TIMEOUT,
            resources={"metadata": {"path": str(path.parent.resolve())}},  # the kernel's working directory
        )
        try:
            env = {**os.environ, "TINYTORCH_CHECK_REPORT": str(report)}
            if threads is not None:
                env["OMP_NUM_THREADS"] = str(threads)
            client.execute(env=env)
        except (CellTimeoutError, DeadKernelError, RuntimeError, TimeoutError, OSError) as error:
            # a kernel that did not start in time on a busy machine, died, or hung: not the learner's mistake
            again = f"run tinytorch check {path.stem.split('_', 1)[0]} again (with --jobs 1 if the machine is busy)"
            errors.append(CellError(None, "", type(error).__name__, f"{_first_line(error)}; {again}"))
        if report.exists():
            for line in report.read_text(encoding="utf-8").splitlines():
                data = json.loads(line)
                reported[data["name"]] = Result(data["name"], data["status"], data["message"])
    check_cells = {}  # piece name -> index of its check cell
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for name in _CHECKED_NAME.findall(cell.source):
                check_cells.setdefault(name, index)
    expected = [name for name, piece in PIECES.items() if piece.chapter == path.stem]
    results = []
    for name in expected + [n for n in reported if n not in expected]:
        error = _error_of(nb.cells[check_cells[name]]) if name in check_cells else None
        syntax = "" if name in reported else _syntax_error(nb, name)
        if name in reported:
            results.append(reported[name])
        elif syntax:
            results.append(Result(name, "wrong", syntax))
        elif error:
            message = f"its check cell raised {error[0]}: {error[1]}; did the cell above run without errors?"
            results.append(Result(name, "wrong", message))
        else:
            results.append(Result(name, "not yet", ""))
    skip = {check_cells[r.name] for r in results if r.name in check_cells}
    for index, cell in enumerate(nb.cells):
        learners = cell.metadata.get("nbgrader", {}).get("solution") or "# YOUR CODE HERE" in cell.source
        error = _error_of(cell) if cell.cell_type == "code" and index not in skip and not learners else None
        if error:
            shown = cell.source.split("\n", 1)[1] if cell.source.startswith(_CLEARED) else cell.source
            errors.append(CellError(index, _first_line(shown)[:60], *error))
    return ChapterCheck(path.stem, results, errors)


def check_chapters(paths: list[Path], jobs: int = 1) -> Iterator[ChapterCheck]:
    """`check_chapter` of each path, yielded in order; with jobs > 1, that many chapters run side by side.

    Side by side, each kernel gets its share of the cores: two torch processes that each use every core slow each
    other down many times over.
    """
    if jobs <= 1:
        yield from map(check_chapter, paths)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    biggest_first = sorted(paths, key=lambda path: path.stat().st_size, reverse=True)  # the longest chapters, roughly
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {path: pool.submit(check_chapter, path, threads) for path in biggest_first}
        for path in paths:
            yield futures[path].result()


def run_checks(directory: str | Path = "workbook", chapters=None, jobs: int = 1) -> dict[str, list[Result]]:
    """{chapter: results} for every chapter of the workbook (or `chapters`), each run in a fresh kernel.

    A piece whose check cell did not report is "not yet", or "wrong" when that cell raised. For the errors of the
    other cells, use `check_chapter` (as `tinytorch check` does).
    """
    return {checked.chapter: checked.results for checked in check_chapters(chapters_in(directory, chapters), jobs)}
