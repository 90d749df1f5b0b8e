"""The numbers the book's prose quotes come from its cells.

Every number in a chapter's text (a decimal such as 2.125, or a count with thousands separators such as 4,305,285)
must be one that the chapter's code or its stored outputs hold, at the precision the prose gives it (2.11 stands for
a printed 2.113; 15,500 for a printed 15,487; "4.3 million" for 4,305,285). So when a refreshed output changes a
number, this test fails until the prose follows it. A number the chapter quotes from elsewhere (the literature,
another chapter, arithmetic worked in the sentence itself) is listed in QUOTED, with where it comes from.
"""

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PROSE_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)(?![\w.]|,\d)( million| MB)?")
CODE_NUMBER = re.compile(r"(?<![\w.])\d[\d_,]*(?:\.\d+)?(?:e-?\d+)?")

QUOTED = {  # chapter -> {number as the prose writes it: where it comes from}
    "00_introduction": {
        "0.9": "an illustration of a next-character distribution",
        "0.05": "an illustration of a next-character distribution",
        "0.008": "1/128, worked in the sentence",
        "0.00001": "chapter 05's tolerance against transformers' GPT-2",
        "124,439,808": "chapter 05 counts GPT-2 small's parameters",
    },
    "02_embeddings": {
        "8,213": "the em dash's code point, 8212, plus one, worked in the sentence",
        "50,000": "GPT-2's number of BPE merges (Radford et al., 2019)",
    },
    "02b_subwords": {
        "150,000": "the number of Unicode characters, rounded (Unicode 15: 149,186)",
        "50,256": "the id of GPT-2's <|endoftext|> token",
        "50,257": "GPT-2's vocabulary",
    },
    "03_attention": {
        "2.03": "e^0.71, worked by hand in the pencil example",
        "3.03": "1 + e^0.71, worked by hand in the pencil example",
        "0.03": "1/32, worked in the sentence",
    },
    "04_blocks": {
        "0.75": "where GELU's minimum lies (Hendrycks and Gimpel, 2016)",
        "1.4": "the smallest positive float32, 1.4e-45 (IEEE 754)",
    },
    "05_gpt": {
        "50,257": "GPT-2's vocabulary",
    },
    "06_training": {
        "4.33": "ln 76, worked in the sentence",
        "614,000": "600 steps x 16 windows x 64 characters = 614,400, worked in the sentence",
        "0.013": "1/76, worked in the sentence",
        "5,000": "the steps of Karpathy's lecture 'Let's build GPT'",
        "1.1": "nanoGPT's tiny Shakespeare: 1,115,394 characters",
    },
    "07_generation": {
        "2.5": "characters per token of the shipped BPE model: appendix 09 measures 2.48",
        "2.03": "the shipped BPE model's bits per character: appendix 09 computes it",
        "2.11": "the shipped character model's bits per character: appendix 09 computes it",
    },
    "09_training_runs": {
        "2.49": "chapter 06's bigram baseline",
        "3.6": "chapter 06's bigram baseline in bits",
        "2,000": "an earlier run's steps, recorded in the table of earlier runs",
        "1.884": "an earlier run, recorded in the table of earlier runs",
        "2.346": "an earlier run, recorded in the table of earlier runs",
        "2.247": "an earlier run, recorded in the table of earlier runs",
        "5,000": "the preset's earlier run, recorded in the table of earlier runs",
        "1.489": "the preset's earlier run, recorded in the table of earlier runs",
        "2.3": "the plateau of the two probes in the table (2.346, 2.247)",
        "0.027": "1.489 - 1.462, worked in the sentence",
        "0.05": "the largest spread of chapter 06's ladder (three seeds)",
    },
    "11_modern": {
        "1.58": "issue 27's goal at 2 minutes",
    },
    "10_budget": {
        "5,000": "the preset's earlier run, appendix 09's table",
        "1.489": "the preset's earlier run, appendix 09's table",
        "1.462": "the shipped model's validation loss, evaluated in appendix 09",
        "2.3": "an illustration of a run over its budget",
        "0.05": "the largest spread of chapter 06's ladder (three seeds)",
    },
}


def _markdown(cell: dict) -> str:
    """A markdown cell's prose: without code blocks, code spans and link targets."""
    text = "".join(cell["source"])
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def _computed(cells: list[dict]) -> set[Decimal]:
    """Every number in the code cells' sources and stored outputs."""
    texts = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        texts.append("".join(cell["source"]))
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            texts.append("".join(output.get("data", {}).get("text/plain", "")))
    numbers = set()
    for text in texts:
        for found in CODE_NUMBER.findall(text):
            try:
                numbers.add(Decimal(found.replace(",", "").replace("_", "")))
            except ArithmeticError:
                continue
    return numbers


def _stands_for(quoted: str, unit: str | None, value: Decimal) -> bool:
    """Whether the prose's `quoted` (with " million" or " MB" after it, or not) is `value` at the prose's precision."""
    number = Decimal(quoted.replace(",", ""))
    if unit:
        value = value / Decimal(1_000_000)
    if "." in quoted:
        places = Decimal(1).scaleb(-len(quoted.split(".")[1]))
    else:
        zeros = len(quoted.replace(",", "")) - len(quoted.replace(",", "").rstrip("0"))
        places = Decimal(1).scaleb(zeros)
    return abs(value - number) <= places / 2


def _uncomputed(path: Path) -> list[str]:
    """The numbers a chapter's prose quotes that none of its cells holds and QUOTED does not list."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    computed, quoted = _computed(cells), QUOTED.get(path.stem, {})
    missing = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for match in PROSE_NUMBER.finditer(_markdown(cell)):
            number, unit = match.group(1), match.group(2)
            if number in quoted or any(_stands_for(number, unit, value) for value in computed):
                continue
            missing.append(f"{number}{unit or ''}")
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_every_number_the_prose_quotes_comes_from_a_cell(path):
    missing = _uncomputed(path)
    assert not missing, (
        f"{path.name}'s prose quotes {missing}, which no cell computes: print it from the cell that computes it "
        "(or assert it beside the prose), or list it in QUOTED with where it comes from"
    )


def test_every_quoted_number_is_still_in_its_chapter():
    for stem, numbers in QUOTED.items():
        prose = " ".join(
            _markdown(cell)
            for cell in json.loads((NOTEBOOKS[0].parent / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]
            if cell["cell_type"] == "markdown"
        )
        found = {match.group(1) for match in PROSE_NUMBER.finditer(prose)}
        assert set(numbers) <= found, f"{stem}: QUOTED lists {sorted(set(numbers) - found)}, no longer in its prose"


def test_a_number_stands_for_what_it_rounds():
    assert _stands_for("2.11", None, Decimal("2.113")) and not _stands_for("2.11", None, Decimal("2.116"))
    assert _stands_for("15,500", None, Decimal(15487)) and not _stands_for("15,500", None, Decimal(15449))
    assert _stands_for("4.3", " million", Decimal(4_305_285)) and not _stands_for("4.3", None, Decimal(4_305_285))
