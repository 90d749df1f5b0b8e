"""The workbook of the real book: what `tinytorch workbook` makes of notebooks/, and what `tinytorch check` says of it.

The slow test runs every chapter of the workbook as generated (two chapters at a time); the others read notebooks.
"""

import copy
import re
from pathlib import Path

import nbformat
import pytest

from tinytorch.checks import PIECES
from tinytorch.workbook import check_chapters, make_workbook, stubs

ROOT = Path(__file__).resolve().parents[1]
BOOK = sorted((ROOT / "notebooks").glob("*.ipynb"))
STUB_RAISE = re.compile(r'raise NotImplementedError\("[\w.]+: not written yet"\)')


def pieces_of(chapter: str) -> list[str]:
    """The registered pieces of a chapter, in course order."""
    return [name for name, piece in PIECES.items() if piece.chapter == chapter]


def is_solution(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def is_export(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(("#| export", "#| default_exp"))


def answer_lines(source: str) -> list[str]:
    """The code lines between the solution markers of a cell (comments and blank lines left out)."""
    lines, inside = [], False
    for line in source.split("\n"):
        if "BEGIN SOLUTION" in line:
            inside = True
        elif "END SOLUTION" in line:
            inside = False
        elif inside and line.strip() and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


@pytest.fixture(scope="module")
def workbook(tmp_path_factory) -> dict[str, Path]:
    """{chapter: path} of a workbook made from the real book."""
    paths = make_workbook(tmp_path_factory.mktemp("workbook") / "workbook")
    return {path.stem: path for path in paths}


def test_every_chapter_gets_a_workbook_and_every_piece_a_stub_and_a_check_cell(workbook):
    assert list(workbook) == [path.stem for path in BOOK]
    assert {piece.chapter for piece in PIECES.values()} <= set(workbook)
    for chapter, path in workbook.items():
        assert stubs(path) == [n for n in pieces_of(chapter) if not n.startswith("milestone_")], chapter
        checked = re.findall(r"""\bcheck\(\s*"(\w+)",""", "\n".join(c.source for c in nbformat.read(path, 4).cells))
        assert checked == pieces_of(chapter), chapter


def code_lines(source: str) -> str:
    """The code lines of a source, stripped, one per line (comments and blank lines left out)."""
    return "\n".join(line.strip() for line in source.split("\n") if line.strip() and not line.strip().startswith("#"))


def test_the_workbook_holds_no_solution_code_and_no_answer_outputs(workbook):
    for book_path in BOOK:
        book = nbformat.read(book_path, 4)
        cells = nbformat.read(workbook[book_path.stem], 4).cells
        by_id = {cell.id: cell for cell in cells}
        code = "\n".join(code_lines(cell.source) for cell in cells if cell.cell_type == "code")
        assert "BEGIN SOLUTION" not in code and "END SOLUTION" not in code, book_path.stem
        for cell in filter(is_solution, book.cells):
            answer = answer_lines(cell.source)
            assert not set(answer) & set(code_lines(by_id[cell.id].source).split("\n")), book_path.stem
            if len(answer) > 1:  # a one-line answer may well appear in a demo cell, as the idea is shown before
                assert "\n".join(answer) not in code, f"{book_path.stem}: the answer {answer} is still in the workbook"
        for cell in cells:
            if "# YOUR CODE HERE" in cell.source or re.search(r"\bcheck\(", cell.source):
                assert cell.get("outputs", []) == [], f"{book_path.stem}: {cell.source[:60]!r} kept its outputs"


def test_prose_figures_and_demo_cells_stay_as_in_the_book(workbook):
    for book_path in BOOK:
        book = {cell.id: cell for cell in nbformat.read(book_path, 4).cells}
        for cell in nbformat.read(workbook[book_path.stem], 4).cells:
            original = book.get(cell.id)
            if original is None or is_solution(original) or is_export(original) or cell.source.startswith(CLEARED):
                continue  # the intro cell, the learner's cells, the export cells (now imports), the cleared cells
            source = cell.source.split(YOURS)[0]  # the learner's earlier modules, in place of tinytorch's: below
            if "from tinytorch.checks import check" in original.source:
                original = copy.deepcopy(original)
                original.source = original.source.replace("import check", f"import check, hint{HINT_NOTE}")
            assert source == original.source, f"{book_path.stem}: {cell.source[:60]!r}"
            if not re.search(r"\bcheck\(", cell.source):
                assert cell.get("outputs", []) == original.get("outputs", []), f"{book_path.stem}: {cell.source[:60]!r}"


YOURS = "\n\n# Your modules of earlier chapters"


def test_a_chapter_runs_on_the_learners_earlier_modules_where_it_imports_them(workbook):
    lines = {}
    for chapter, path in workbook.items():
        for cell in nbformat.read(path, 4).cells:
            if YOURS in cell.source:
                lines.setdefault(chapter, set()).update(x for x in cell.source.split("\n") if "= from_notebook(" in x)
    assert lines["05_gpt"] == {
        'Block = from_notebook("Block") or Block',
        'LayerNorm = from_notebook("LayerNorm") or LayerNorm',
    }
    gpt = 'GPT = from_notebook("GPT") or GPT'
    assert gpt in lines["06_training"] and gpt in lines["07_generation"]
    assert "03_attention" not in lines and "02_embeddings" not in lines  # nothing earlier to take


CLEARED = "# Run this cell once your "
HINT_NOTE = '  # stuck on a piece? hint("its name")'


def uses(source: str, name: str) -> bool:
    """Whether a cell's code calls or names the learner's piece (not a method of the same name)."""
    return re.search(rf"(?<![\w.\"']){re.escape(name)}\b", source) is not None


def test_no_workbook_output_shows_a_result_the_learner_is_about_to_compute(workbook):
    for chapter, path in workbook.items():
        written = []  # the pieces stubbed so far in the chapter
        for cell in nbformat.read(path, 4).cells:
            if cell.cell_type != "code":
                continue
            written += [name for name in dict.fromkeys(stubs_in(cell.source)) if name not in written]
            used = [name for name in written if uses(cell.source, name)]
            if used and "# YOUR CODE HERE" not in cell.source and not re.search(r"\bcheck\(", cell.source):
                assert cell.source.startswith(f"{CLEARED}{', '.join(used)} "), f"{chapter}: {cell.source[:80]!r}"
                assert cell.get("outputs", []) == [], f"{chapter}: {cell.source[:80]!r} shows its result"
    text = "".join(str(cell.get("outputs", "")) for cell in nbformat.read(workbook["01_utilities"], 4).cells)
    assert "n_embd=200 works with n_head in" not in text  # exercise 2's answer, printed under its usage cell


def stubs_in(source: str) -> list[str]:
    return re.findall(r'raise NotImplementedError\("(\w+)(?:\.\w+)?: not written yet"\)', source)


def test_every_piece_has_hints_in_levels_and_none_holds_a_line_of_its_answer():
    from tinytorch.checks import HINTS

    assert set(HINTS) == set(PIECES)
    assert all(len(levels) >= 2 for levels in HINTS.values())
    answers = {}
    for book_path in BOOK:
        for cell in filter(is_solution, nbformat.read(book_path, 4).cells):
            for name in re.findall(r"^(?:def|class) (\w+)\(", cell.source, re.MULTILINE):  # a cell may hold two pieces
                answers[name] = answer_lines(cell.source)
            assert not re.search(r"^\s*#.*\bhint\b", cell.source, re.IGNORECASE | re.MULTILINE), (
                f"{book_path.stem}: {cell.source[:60]!r} shows a hint before it is asked for"
            )
    assert set(answers) == {name for name in PIECES if not name.startswith("milestone_")}  # a milestone: no code
    for name, levels in HINTS.items():
        for line in answers.get(name, []):
            code = re.sub(r"\s+", "", line.split("  #")[0])
            for level, text in enumerate(levels, 1):
                assert len(code) < 8 or code not in re.sub(r"\s+", "", text).replace("`", ""), (
                    f"hint {level} of {name} holds a line of the answer: {line}"
                )


def test_the_workbook_imports_hint_and_its_intro_says_how_to_ask(workbook):
    for chapter, path in workbook.items():
        cells = nbformat.read(path, 4).cells
        if pieces_of(chapter):
            assert any(f"import check, hint{HINT_NOTE}" in cell.source for cell in cells), chapter
            assert f'`hint("{pieces_of(chapter)[0]}")` prints a nudge' in cells[0].source, chapter


def test_nbgrader_clears_exactly_what_the_workbook_clears(workbook):
    from nbgrader.preprocessors import ClearSolutions

    clear = ClearSolutions(enforce_metadata=True, code_stub={"python": "# YOUR CODE HERE\nraise NotImplementedError()"})
    for book_path in BOOK:
        book = nbformat.read(book_path, 4)
        theirs, _ = clear.preprocess(copy.deepcopy(book), {})  # raises on a region outside a solution cell
        ours = {cell.id: cell for cell in nbformat.read(workbook[book_path.stem], 4).cells}
        for original, cleared in zip(book.cells, theirs.cells, strict=True):
            if is_solution(original):
                mine = STUB_RAISE.sub("raise NotImplementedError()", ours[original.id].source)
                assert mine == cleared.source, f"{book_path.stem}: {original.source[:60]!r}"


@pytest.mark.parametrize("chapter", ["03_attention", "11_modern", "12_finetune"])
def test_with_the_books_answers_put_back_every_piece_reads_built(tmp_path, chapter):
    path = make_workbook(tmp_path / "workbook", chapters=[chapter])[0]
    nb = nbformat.read(path, 4)
    answers = {cell.id: cell.source for cell in nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", 4).cells}
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = answers[cell.id]  # paste the book's answer into the learner's cell
    nbformat.write(nb, path)
    [checked] = check_chapters([path])
    assert checked.errors == []
    assert [(r.name, r.status, r.message) for r in checked.results] == [(n, "built", "") for n in pieces_of(chapter)]


def test_the_workbook_as_generated_reads_not_yet_for_every_piece_and_nothing_else_fails(workbook):
    before = {path: path.read_bytes() for path in workbook.values()}
    for checked in check_chapters(list(workbook.values()), jobs=2):
        assert checked.errors == [], checked.chapter
        assert [(r.name, r.status) for r in checked.results] == [
            (name, "not yet") for name in pieces_of(checked.chapter)
        ], checked.chapter
    assert {path: path.read_bytes() for path in workbook.values()} == before  # checking never writes a notebook
