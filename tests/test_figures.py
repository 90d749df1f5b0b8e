"""Every figure of the course stays readable at JupyterLab's default notebook width.

The rule: the smallest text of every figure a notebook stores (its image/png outputs) is at least 11 CSS pixels high
(the font size; 8 pt drawn at 100 dpi) as JupyterLab shows it in a 1280-pixel-wide browser window, its default
layout with the file browser open. Measured with chromium and JupyterLab 4: the output area there is 848 CSS pixels
wide, and a wider image is scaled down to it. So a font of f points in a PNG saved at d dpi, w pixels wide, is
shown f * d / 72 * min(1, 848 / w) pixels high. Example: chapter 03's four heads at figsize=(14, 4), ticks of 9 pt:
9 * 100 / 72 * 848 / 1407 = 7.5 pixels.

The PNG gives w and d (matplotlib writes its dpi into the file). The fonts come from the source: matplotlib's
defaults are 10 pt or more (the course never changes rcParams), so the smallest font of a figure is the smallest
`fontsize=` (or `labelsize=`) set in its cell or in any function the cell calls, found by name among the notebook's
own functions and the package's. That is deliberately cautious: a size set in a branch the figure did not take
counts too. A widget's picture (text/plain "AttentionExplorer: ...") is drawn by its class's _repr_mimebundle_.
"""

import ast
import base64
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
OUTPUT_WIDTH = 848  # CSS px: JupyterLab 4's output area in a 1280-px window, default layout (measured)
SMALLEST_TEXT = 11.0  # CSS px: 8 pt at 100 dpi, shown at full size
DEFAULT_FONT = 10.0  # pt: matplotlib's font.size, and its tick, label and legend size; titles are larger
NAMED_SIZES = {"xx-small": 0.579, "x-small": 0.694, "small": 0.833, "smaller": 0.833, "medium": 1.0}
FONT_KEYWORDS = {"fontsize", "labelsize", "title_fontsize"}
FIGURE_REPR = re.compile(r"<Figure size (\d+)x(\d+) with \d+ Axes>")


@dataclass
class Function:
    """A function or method: the font sizes it sets, and what it calls."""

    name: str
    owner: str | None  # the class of a method
    fonts: list[float | str] = field(default_factory=list)  # a str: a size this test cannot read
    calls: set[str] = field(default_factory=set)  # names called as f(...) or x.f(...)
    self_calls: set[str] = field(default_factory=set)  # methods called as self.f(...)


def font_size(node: ast.expr) -> float | str:
    """The size in points of a fontsize= value, or its source text if it is not a number or a named size."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Constant) and node.value in NAMED_SIZES:
        return DEFAULT_FONT * NAMED_SIZES[node.value]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return DEFAULT_FONT  # "large" and larger
    return ast.unparse(node)


def scan(tree: ast.AST, into: Function) -> None:
    """Add the font sizes and calls found anywhere under tree to into."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        into.fonts += [font_size(k.value) for k in node.keywords if k.arg in FONT_KEYWORDS]
        func = node.func
        if isinstance(func, ast.Name):
            into.calls.add(func.id)
        elif isinstance(func, ast.Attribute):
            is_self = isinstance(func.value, ast.Name) and func.value.id == "self"
            (into.self_calls if is_self else into.calls).add(func.attr)


def functions_in(tree: ast.Module) -> list[Function]:
    """Every top-level function and every method of a top-level class."""
    found = []
    for node in tree.body:
        defs = [(node, None)] if isinstance(node, ast.FunctionDef) else []
        if isinstance(node, ast.ClassDef):
            defs = [(item, node.name) for item in node.body if isinstance(item, ast.FunctionDef)]
        for item, owner in defs:
            function = Function(item.name, owner)
            scan(item, function)
            found.append(function)
    return found


def parse_cell(source: str) -> ast.Module:
    """A code cell as Python: IPython's magics and shell lines blanked."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    return ast.parse("\n".join(lines))


PACKAGE = [f for path in sorted((ROOT / "tinytorch").glob("*.py")) for f in functions_in(ast.parse(path.read_text()))]


def smallest_font(start: Function, known: list[Function]) -> tuple[float, list[str]]:
    """The smallest font start sets, itself or through the functions it calls (by name, transitively)."""
    by_name: dict[str, list[Function]] = {}
    for function in known:
        by_name.setdefault(function.name, []).append(function)
    seen, todo, fonts = set(), [start], [DEFAULT_FONT]
    while todo:
        function = todo.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        fonts += function.fonts
        todo += [f for name in function.calls for f in by_name.get(name, [])]
        todo += [f for name in function.self_calls for f in by_name.get(name, []) if f.owner == function.owner]
    unreadable = [font for font in fonts if isinstance(font, str)]
    return min(font for font in fonts if not isinstance(font, str)), unreadable


def png_size(data: str) -> tuple[int, float | None]:
    """(width in pixels, dpi or None) of a base64 PNG."""
    png = base64.b64decode(data)
    assert png.startswith(b"\x89PNG"), "not a PNG"
    (width,) = struct.unpack(">I", png[16:20])
    at = png.find(b"pHYs")
    if at < 0:
        return width, None
    per_metre, _, unit = struct.unpack(">IIB", png[at + 4 : at + 13])
    return width, per_metre * 0.0254 if unit == 1 else None


@dataclass
class Figure:
    where: str  # notebook and cell
    width: int  # pixels of the PNG
    shown: float  # CSS pixels JupyterLab gives it
    dpi: float
    font: float  # pt
    unreadable: list[str]

    @property
    def text_px(self) -> float:
        """The smallest text's size as shown, in CSS pixels."""
        return self.font * self.dpi / 72 * self.shown / self.width


def figures(notebook: Path) -> list[Figure]:
    """Every image/png output of a notebook, with what the rule needs to know about it."""
    cells = json.loads(notebook.read_text())["cells"]
    code = [(cell, parse_cell("".join(cell["source"]))) for cell in cells if cell["cell_type"] == "code"]
    known = PACKAGE + [f for _, tree in code for f in functions_in(tree)]
    found = []
    for cell, tree in code:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            other = [kind for kind in data if kind.startswith("image/") and kind != "image/png"]
            assert not other, f"{notebook.name}: an output of type {other} that this test cannot measure; store a PNG"
            if "image/png" not in data:
                continue
            where = f"{notebook.name}, cell [{cell.get('execution_count')}] ({first_line(cell)!r})"
            width, dpi = png_size(data["image/png"])
            assert dpi, f"{where}: the PNG does not say its dpi; save it with matplotlib"
            shown = min(float(output.get("metadata", {}).get("image/png", {}).get("width", width)), OUTPUT_WIDTH)
            start = Function("<cell>", None)
            scan(tree, start)
            text = "".join(data.get("text/plain", ""))
            if not FIGURE_REPR.fullmatch(text.strip()):  # a widget's picture, drawn by its class when displayed
                owner = text.split(":")[0]
                drawers = [f for f in known if f.owner == owner and f.name == "_repr_mimebundle_"]
                assert drawers, f"{where}: cannot tell what drew this picture (text/plain {text[:60]!r})"
                start.self_calls, start.owner = {"_repr_mimebundle_"}, owner
            font, unreadable = smallest_font(start, known)
            found.append(Figure(where, width, shown, dpi, font, unreadable))
    return found


def first_line(cell: dict) -> str:
    """The first line of a cell's code that is not a comment: with the execution count, how to find the cell."""
    lines = [line for line in "".join(cell["source"]).splitlines() if line.strip() and not line.startswith("#")]
    return (lines or [""])[0][:60]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_figure_is_readable_at_jupyterlabs_default_width(notebook):
    problems = []
    for figure in figures(notebook):
        if figure.unreadable:
            problems.append(f"{figure.where}: set fontsize to a number, not {figure.unreadable}, so it can be checked")
        elif figure.text_px < SMALLEST_TEXT:
            scale = f", scaled by {figure.shown / figure.width:.2f} to fit" if figure.shown < figure.width else ""
            full_size = figure.font * figure.dpi / 72  # px, unscaled
            if full_size < SMALLEST_TEXT:
                fix = f"fonts of at least {math.ceil(SMALLEST_TEXT * 72 / figure.dpi * 10) / 10:g} pt"
            else:
                widest = int(OUTPUT_WIDTH * full_size / SMALLEST_TEXT)
                fix = f"a PNG at most {widest} px wide ({widest / figure.dpi:.1f} inches), or larger text"
            problems.append(
                f"{figure.where}: its smallest text, {figure.font:g} pt at {figure.dpi:.0f} dpi in a PNG "
                f"{figure.width} px wide{scale}, is {figure.text_px:.1f} px on screen, under {SMALLEST_TEXT:g} px; "
                f"fix: {fix}"
            )
    assert not problems, "\n".join(problems)


FONT_CHANGES = re.compile(r"rcParams|rc_context|\b(?:plt|matplotlib|mpl)\.rc\(|style\.use|set_fontsize|\.set_size\(")


def test_nothing_changes_matplotlibs_default_fonts():
    """The rule reads fonts from fontsize= only: no figure may change them another way."""
    sources = {path.name: path.read_text() for path in [*NOTEBOOKS, *sorted((ROOT / "tinytorch").glob("*.py"))]}
    changed = sorted(name for name, text in sources.items() if FONT_CHANGES.search(text))
    assert not changed, (
        f"{changed} change matplotlib's fonts other than by fontsize=; tests/test_figures.py cannot see it"
    )


def test_the_rule_catches_a_wide_figure_and_small_fonts():
    """The test itself: a 14-inch figure with 9-pt ticks fails, a 2x2 grid of 8 inches passes; 6 pt fails anyway."""
    wide = Figure("wide", width=1407, shown=OUTPUT_WIDTH, dpi=100, font=9, unreadable=[])
    assert round(wide.text_px, 1) == 7.5 and wide.text_px < SMALLEST_TEXT
    assert Figure("grid", width=800, shown=800, dpi=100, font=9, unreadable=[]).text_px >= SMALLEST_TEXT
    assert Figure("tiny", width=500, shown=500, dpi=100, font=6, unreadable=[]).text_px < SMALLEST_TEXT
    helper = functions_in(ast.parse("def draw(ax):\n    ax.text(0, 0, 'x', fontsize=6)\n"))
    start = Function("<cell>", None)
    scan(parse_cell("%matplotlib inline\nfig, ax = plt.subplots()\ndraw(ax)"), start)
    assert smallest_font(start, helper) == (6.0, [])  # found through the helper the cell calls
