"""The workbook generator and the check runner (tinytorch.workbook, `tinytorch workbook` and `tinytorch check`).

The book here is a small synthetic one written in each test's tmp_path; tests/test_workbook_book.py uses the real one.
"""

import shutil
import unittest.mock
from collections import namedtuple
from concurrent.futures.process import BrokenProcessPool

import nbclient
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tinytorch import workbook as wb
from tinytorch.__main__ import main
from tinytorch.checks import PIECES, Result
from tinytorch.workbook import WorkbookError, check_chapter, make_workbook, stubs

SOLUTION = {"grade": False, "grade_id": "", "locked": False, "schema_version": 3, "solution": True, "task": False}

EXPORT = '''#| export
import math

import torch


def causal_mask(T: int, Tk: int, device=None) -> torch.Tensor:
    """(T, Tk) bool mask, True where a query may look."""
    return torch.ones(T, Tk, dtype=torch.bool, device=device).tril(diagonal=Tk - T)'''

ATTENTION = '''def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Scores of every query against every key: (B, T, hs), (B, T, hs) -> (B, T, T)."""
    # Hint: a matrix product of q with k transposed on its last two dimensions.
    ### BEGIN SOLUTION
    return q @ k.transpose(-2, -1)  # (B, T, T)
    ### END SOLUTION


def scale_scores(
    scores: torch.Tensor,
    head_size: int,
) -> torch.Tensor:
    """Scores divided by √head_size: (B, T, T) -> (B, T, T)."""
    # Hint: math.sqrt
    ### BEGIN SOLUTION
    scale = math.sqrt(head_size)
    return scores / scale  # (B, T, T)
    ### END SOLUTION'''

ATTENTION_STUBBED = '''def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Scores of every query against every key: (B, T, hs), (B, T, hs) -> (B, T, T)."""
    # Hint: a matrix product of q with k transposed on its last two dimensions.
    # YOUR CODE HERE
    raise NotImplementedError("attention_scores: not written yet")


def scale_scores(
    scores: torch.Tensor,
    head_size: int,
) -> torch.Tensor:
    """Scores divided by √head_size: (B, T, T) -> (B, T, T)."""
    # Hint: math.sqrt
    # YOUR CODE HERE
    raise NotImplementedError("scale_scores: not written yet")'''

ENCODE = '''def encode(text: str, chars: list[str]) -> list[int]:
    """Token ids of text: each character's index in chars."""
    ### BEGIN SOLUTION
    return [chars.index(c) for c in text]
    ### END SOLUTION'''

DEMO = "print(tuple(attention_scores(torch.ones(1, 3, 2), torch.ones(1, 3, 2)).shape))"


def code(source: str, output: str | None = None, count: int | None = None, **metadata) -> nbformat.NotebookNode:
    """A code cell as saved by a run: with its printed output and execution count."""
    cell = new_code_cell(source, metadata=metadata, execution_count=count)
    if output is not None:
        cell.outputs = [new_output("stream", name="stdout", text=output)]
    return cell


def solution(source: str, grade_id: str, output: str | None = None, **metadata) -> nbformat.NotebookNode:
    return code(source, output, 4, nbgrader={**SOLUTION, "grade_id": grade_id}, **metadata)


def write_book(book) -> None:
    """Two tiny chapters in nbgrader's and nbdev's conventions, with the outputs of a run of the answers."""
    book.mkdir()
    attention = new_notebook(
        cells=[
            code("#| default_exp attention", count=1),
            new_markdown_cell("# Chapter 03 · Attention"),
            code(EXPORT, count=2),
            code("from tinytorch.checks import check", count=3),
            solution(ATTENTION, "attention_scores", output="the answer's output\n"),
            code('attention_scores = check("attention_scores", attention_scores)', "attention_scores: built\n", 5),
            code('scale_scores = check("scale_scores", scale_scores)', "scale_scores: built\n", 6),
            code(DEMO, "(1, 3, 3)\n", 7),
            code("print(causal_mask(2, 2).shape)", "torch.Size([2, 2])\n", 8),
        ]
    )
    embeddings = new_notebook(
        cells=[
            code("#| default_exp embeddings\nimport torch", count=1),
            code('#| export\ndef check_token_ids(idx, config, start_pos=0):\n    """Stand-in."""', count=2),
            code("from tinytorch.checks import check", count=3),
            solution(ENCODE, "encode", jupyter={"source_hidden": True}),
            code('encode = check("encode", encode)', "encode: built\n", 5),
            code('print(encode("ba", ["a", "b"]))', "[1, 0]\n", 6),
        ]
    )
    nbformat.write(attention, book / "03_attention.ipynb")
    nbformat.write(embeddings, book / "02_embeddings.ipynb")


@pytest.fixture
def book(tmp_path):
    write_book(tmp_path / "book")
    return tmp_path / "book"


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def cell_with(nb: nbformat.NotebookNode, text: str) -> nbformat.NotebookNode:
    return next(cell for cell in nb.cells if text in cell.source)


# generating


def test_the_workbook_has_every_chapter_and_no_solution_code(book, tmp_path):
    paths = make_workbook(tmp_path / "wb", book=book)
    assert [p.name for p in paths] == ["02_embeddings.ipynb", "03_attention.ipynb"]
    sources = [cell.source for path in paths for cell in read(path).cells]
    for text in ("SOLUTION", "q @ k.transpose(-2, -1)  # (B, T, T)", "scale = math.sqrt", "chars.index(c)"):
        assert not any(text in source for source in sources), text
    assert stubs(paths[1]) == ["attention_scores", "scale_scores"] and stubs(paths[0]) == ["encode"]


def test_a_stub_keeps_the_signature_docstring_and_hints_at_the_markers_indentation(book, tmp_path):
    nb = read(make_workbook(tmp_path / "wb", book=book)[1])
    assert cell_with(nb, "def attention_scores").source == ATTENTION_STUBBED
    assert cell_with(nb, "def attention_scores").metadata["nbgrader"]["grade_id"] == "attention_scores"


def test_export_cells_become_imports_of_tinytorchs_version_and_default_exp_goes(book, tmp_path):
    attention, embeddings = (read(p) for p in reversed(make_workbook(tmp_path / "wb", book=book)))
    assert cell_with(attention, "import math").source == (
        "import math\nimport torch\n\n"
        "# tinytorch's version: its code is in the book, notebooks/03_attention.ipynb, and in tinytorch/attention.py\n"
        "from tinytorch.attention import causal_mask"
    )
    assert cell_with(embeddings, "check_token_ids").source.endswith("from tinytorch.embeddings import check_token_ids")
    assert cell_with(embeddings, "import torch").source == "import torch"  # the rest of the default_exp cell stays
    assert not any("#|" in cell.source for nb in (attention, embeddings) for cell in nb.cells)


def test_outputs_of_answers_checks_and_cells_using_a_piece_are_cleared_and_the_others_stay(book, tmp_path):
    nb = read(make_workbook(tmp_path / "wb", book=book)[1])
    assert cell_with(nb, "def attention_scores").outputs == []
    assert cell_with(nb, 'check("attention_scores"').outputs == []
    demo = cell_with(nb, DEMO)  # it prints what the learner's attention_scores returns: theirs to see
    assert demo.source == f"# Run this cell once your attention_scores is built: its output is then yours.\n{DEMO}"
    assert demo.outputs == []
    assert cell_with(nb, "causal_mask(2, 2)").outputs[0].text == "torch.Size([2, 2])\n"
    assert all(cell.execution_count is None for cell in nb.cells if cell.cell_type == "code")


def test_the_first_cell_says_what_a_workbook_is_and_how_to_check_it(book, tmp_path):
    intro = read(make_workbook(tmp_path / "wb", book=book)[1]).cells[0]
    assert intro.cell_type == "markdown" and intro.source.startswith("**Workbook.**")
    assert "`# YOUR CODE HERE` is yours" in intro.source and "`tinytorch check 03`" in intro.source
    assert "2 pieces: `attention_scores`, `scale_scores`" in intro.source


def test_an_answer_folded_away_in_the_book_is_shown_in_the_workbook(book, tmp_path):
    assert read(book / "02_embeddings.ipynb").cells[3].metadata["jupyter"] == {"source_hidden": True}
    nb = read(make_workbook(tmp_path / "wb", book=book)[0])
    assert "jupyter" not in cell_with(nb, "def encode").metadata


def test_the_workbook_refuses_to_overwrite_work_and_writes_nothing(book, tmp_path):
    out = tmp_path / "wb"
    attention = make_workbook(out, book=book)[1]
    nb = read(attention)
    cell_with(nb, "def attention_scores").source = ATTENTION  # the learner wrote their answers
    nbformat.write(nb, attention)
    (out / "02_embeddings.ipynb").unlink()
    with pytest.raises(WorkbookError) as refused:
        make_workbook(out, book=book)
    message = str(refused.value)
    assert "\n" not in message and f"{attention} has your work in it, so nothing was written" in message
    assert f"mv {attention} {out / '03_attention.old.ipynb'}" in message
    assert message.endswith(f"then run: tinytorch workbook {out} --chapter 03")
    assert not (out / "02_embeddings.ipynb").exists()  # nothing written
    assert cell_with(read(attention), "def attention_scores").source == ATTENTION  # the work is untouched


def test_an_untouched_workbook_is_simply_rewritten(book, tmp_path):
    out = tmp_path / "wb"
    first = [p.read_text() for p in make_workbook(out, book=book)]
    nb = read(out / "03_attention.ipynb")
    cell_with(nb, DEMO).outputs = []  # running the notebook changes outputs, not sources
    nbformat.write(nb, out / "03_attention.ipynb")
    assert [p.read_text() for p in make_workbook(out, book=book)] == first


def test_one_chapter_is_made_again_after_moving_it_away(book, tmp_path):
    out = tmp_path / "wb"
    embeddings, attention = make_workbook(out, book=book)
    for path in (embeddings, attention):  # work in both chapters
        nb = read(path)
        nb.cells[-1].source += "\n# mine"
        nbformat.write(nb, path)
    shutil.move(attention, out / "03_attention.old.ipynb")
    assert make_workbook(out, ["03"], book=book) == [attention]
    assert stubs(attention) == ["attention_scores", "scale_scores"]
    assert read(embeddings).cells[-1].source.endswith("# mine")  # the other chapter is left alone
    for name in ("attention", "03_attention", "3"):
        assert make_workbook(tmp_path / name, [name], book=book) == [tmp_path / name / "03_attention.ipynb"]
    with pytest.raises(WorkbookError, match="no chapter '04' in .*; choose from 02_embeddings, 03_attention"):
        make_workbook(out, ["04"], book=book)


def test_a_chapter_numbered_with_a_letter_comes_after_its_number_and_is_chosen_by_it(book, tmp_path):
    shutil.copy(book / "02_embeddings.ipynb", book / "02b_subwords.ipynb")  # a chapter between 02 and 03
    paths = make_workbook(tmp_path / "wb", book=book)
    assert [p.stem for p in paths] == ["02_embeddings", "02b_subwords", "03_attention"]
    for name in ("02b", "subwords", "02b_subwords"):
        assert make_workbook(tmp_path / name, [name], book=book) == [tmp_path / name / "02b_subwords.ipynb"]
    assert make_workbook(tmp_path / "two", ["02"], book=book) == [tmp_path / "two" / "02_embeddings.ipynb"]
    assert "`tinytorch check 02b`" in read(tmp_path / "02b" / "02b_subwords.ipynb").cells[0].source


@pytest.mark.parametrize(
    ("source", "metadata", "error"),
    [
        ("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION", True, "a solution region outside any function"),
        (ENCODE, False, "a solution region in a cell without nbgrader's solution metadata"),
        (ENCODE.replace("    ### END SOLUTION", ""), True, "BEGIN SOLUTION without END SOLUTION"),
        ("#| export\n" + ENCODE, True, "a solution region in an #| export cell"),
    ],
)
def test_a_badly_marked_book_is_an_error_that_names_the_cell(tmp_path, source, metadata, error):
    book = tmp_path / "book"
    book.mkdir()
    cell = solution(source, "encode") if metadata else code(source)
    nbformat.write(new_notebook(cells=[code("#| default_exp embeddings"), cell]), book / "02_embeddings.ipynb")
    with pytest.raises(WorkbookError, match=f"02_embeddings.ipynb, cell 1.*{error}"):
        make_workbook(tmp_path / "wb", book=book)
    assert not (tmp_path / "wb").exists()


def test_without_the_book_the_error_says_to_use_a_clone(tmp_path):
    with pytest.raises(WorkbookError, match="run tinytorch workbook from a clone of the course"):
        make_workbook(tmp_path / "wb", book=tmp_path / "nowhere")


def test_the_command_writes_the_workbook_and_says_how_to_start(book, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(wb, "BOOK", book)
    out = tmp_path / "wb"
    main(["workbook", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{out / '02_embeddings.ipynb'}: 1 piece to write",
        f"{out / '03_attention.ipynb'}: 2 pieces to write",
        f"start: jupyter lab {out}/",
        f"check your work: tinytorch check --dir {out} (one chapter: tinytorch check 03 --dir {out})",
    ]
    nb = read(out / "03_attention.ipynb")
    cell_with(nb, "def attention_scores").source = ATTENTION
    nbformat.write(nb, out / "03_attention.ipynb")
    with pytest.raises(SystemExit) as refused:
        main(["workbook", str(out), "--chapter", "02", "03"])
    assert str(refused.value.code).startswith(f"error: {out / '03_attention.ipynb'} has your work in it")


def test_check_without_a_workbook_says_how_to_make_one(tmp_path):
    with pytest.raises(SystemExit) as missing:
        main(["check", "--dir", str(tmp_path / "wb")])
    assert missing.value.code == f"error: no workbook at {tmp_path / 'wb'}; make one with tinytorch workbook"


# checking: each run starts a kernel


# (the workbook of the real book, as generated and with answers put back: tests/test_workbook_book.py)


def test_a_syntax_error_in_the_learners_cell_reads_wrong_as_a_syntax_error_with_its_line(book, tmp_path):
    attention = make_workbook(tmp_path / "wb", book=book)[1]
    nb = read(attention)
    cell = cell_with(nb, "def attention_scores")
    cell.source = cell.source.replace('raise NotImplementedError("attention_scores: not written yet")', "return q @")
    nbformat.write(nb, attention)
    checked = check_chapter(attention)
    syntax = "your cell has a SyntaxError (invalid syntax), line 5: 'return q @'; fix it and run the cell again"
    assert checked.results[:2] == [  # both pieces are in that cell: neither was defined
        Result("attention_scores", "wrong", syntax),
        Result("scale_scores", "wrong", syntax),
    ]
    assert [str(error) for error in checked.errors] == [
        f"cell 7 ({DEMO[:60]!r}) raised NameError: name 'attention_scores' is not defined"
    ]


def test_the_check_command_prints_every_piece_and_a_table_and_exits_0_only_when_all_are_built(
    book, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "wb"
    attention = make_workbook(out, book=book)[1]
    nb = read(attention)
    cell_with(nb, "def attention_scores").source = ATTENTION.replace("/ scale", "* scale")  # scale_scores wrong
    nbformat.write(nb, attention)
    with pytest.raises(SystemExit) as done:
        main(["check", "03", "--dir", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert done.value.code == 1
    assert lines[:2] == ["03_attention", "  built    attention_scores"]
    assert lines[2].startswith("  wrong    scale_scores: the scores' variance is ")
    assert lines[2].endswith(", expected about 1: divide by √hs, do not multiply")
    chapter_03 = [name for name, piece in PIECES.items() if piece.chapter == "03_attention"]
    assert lines[3 : len(chapter_03) + 1] == [f"  not yet  {name}" for name in chapter_03[2:]]
    pieces, not_yet = len(chapter_03), len(chapter_03) - 2
    assert lines[-3:] == [
        "chapter       built  not yet  wrong  pieces",
        f"03_attention      1  {not_yet:>7}      1  {pieces:>6}",
        f"total             1  {not_yet:>7}      1  {pieces:>6}",
    ]
    cell_with(nb, "def attention_scores").source = ATTENTION
    nbformat.write(nb, attention)
    monkeypatch.setattr(wb, "PIECES", {name: PIECES[name] for name in ("attention_scores", "scale_scores")})
    with pytest.raises(SystemExit) as done:
        main(["check", "attention", "--dir", str(out)])
    assert done.value.code == 0
    assert capsys.readouterr().out.splitlines()[-1] == "total             2        0      0       2"


def test_a_kernel_that_does_not_start_is_one_line_naming_the_chapter_and_what_to_do(
    book, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "wb"
    make_workbook(out, book=book)

    def no_kernel(self, **kwargs):
        raise RuntimeError("Kernel didn't respond in 60 seconds")

    monkeypatch.setattr(nbclient.NotebookClient, "execute", no_kernel)
    with pytest.raises(SystemExit) as done:
        main(["check", "03", "--dir", str(out)])
    printed = capsys.readouterr().out
    assert done.value.code == 1 and "Traceback" not in printed
    assert (
        "  error    the kernel raised RuntimeError: Kernel didn't respond in 60 seconds; run tinytorch check 03 again "
        "(with --jobs 1 if the machine is busy)"
    ) in printed.splitlines()


def test_a_checking_process_that_dies_is_one_error_line(book, tmp_path, monkeypatch, capsys):
    out = tmp_path / "wb"
    make_workbook(out, book=book)

    def broken(paths, jobs):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")
        yield

    monkeypatch.setattr(wb, "check_chapters", broken)
    with pytest.raises(SystemExit) as done:
        main(["check", "--dir", str(out), "--jobs", "2"])
    assert done.value.code == (
        "error: checking 02_embeddings stopped (BrokenProcessPool: A process in the process pool was terminated "
        "abruptly); run tinytorch check again, with --jobs 1 if the machine is busy"
    )


@pytest.mark.parametrize("fails_at", [1, 2])
def test_a_workbook_that_cannot_be_written_is_one_line_and_no_file_is_half_written(book, tmp_path, fails_at):
    out = tmp_path / "wb"
    real, calls = wb.atomic_write, []

    def full_disk(path, write):
        calls.append(path)
        if len(calls) == fails_at:
            raise OSError(28, "No space left on device")
        real(path, write)

    with unittest.mock.patch.object(wb, "atomic_write", full_disk), pytest.raises(WorkbookError) as refused:
        make_workbook(out, book=book)
    done = "nothing was written" if fails_at == 1 else "02_embeddings.ipynb written, the others not"
    assert str(refused.value) == (
        f"cannot write the workbook in {out} (No space left on device): {done}, and no file is half-written; "
        "free some space (or fix the folder), then run the same command again"
    )
    assert sorted(p.name for p in out.iterdir()) == (["02_embeddings.ipynb"] if fails_at == 2 else [])


def test_a_workbook_folder_without_room_is_refused_before_writing(book, tmp_path, monkeypatch):
    monkeypatch.setattr(wb.shutil, "disk_usage", lambda path: namedtuple("Usage", "total used free")(10, 10, 1000))
    with pytest.raises(WorkbookError, match=r"has 0.0 MB free and the workbook needs .* so nothing was written"):
        make_workbook(tmp_path / "wb", book=book)
    assert list((tmp_path / "wb").iterdir()) == []


def test_milestones_are_rows_of_their_own_at_the_end_of_the_table(book, tmp_path, monkeypatch, capsys):
    out = tmp_path / "wb"
    make_workbook(out, book=book)
    results = [Result("gpt_forward", "built", ""), Result("milestone_shakespeare_logits", "not yet", "")]

    def checked(paths, jobs):
        for path in paths:
            yield wb.ChapterCheck(path.stem, results, [])

    monkeypatch.setattr(wb, "check_chapters", checked)
    with pytest.raises(SystemExit) as done:
        main(["check", "03", "--dir", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert done.value.code == 1  # every piece is built, the milestone is not
    assert lines[-3:] == [
        "03_attention      1        0      0       1",
        "total             1        0      0       1",
        "milestone: shakespeare_logits  not yet",
    ]


def test_a_syntax_error_in_a_module_piece_is_named_too():
    cell = new_code_cell("class Block(nn.Module):\n    def forward(self, x):\n        return x +")
    cell.outputs = [new_output("error", ename="SyntaxError", evalue="invalid syntax (3512.py, line 3)", traceback=[])]
    message = wb._syntax_error(new_notebook(cells=[cell]), "Block")
    assert message == (
        "your cell has a SyntaxError (invalid syntax), line 3: 'return x +'; fix it and run the cell again"
    )
