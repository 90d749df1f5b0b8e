"""The learner's whole path, with the book's answers: write a workbook, paste the book's teaching answers into the
pieces of chapters 03 to 07, check those chapters (every piece and milestone must read built), and complete "ROMEO:"
with the learner's own GPT and sampling loop, next to `tinytorch complete`. Exits 1 if anything differs.

Usage: python scripts/filled_workbook.py [FOLDER]   (default: a temporary folder)
"""

import sys
import tempfile
from pathlib import Path

import nbformat
import torch

from tinytorch.checkpoint import complete, load_pretrained
from tinytorch.checks import PIECES, from_notebook
from tinytorch.workbook import check_chapters, make_workbook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ["03_attention", "04_blocks", "05_gpt", "06_training", "07_generation"]


def fill(path: Path) -> None:
    """Put the book's answer into every solution cell of a workbook chapter."""
    nb = nbformat.read(path, 4)
    answers = {cell.id: cell.source for cell in nbformat.read(ROOT / "notebooks" / path.name, 4).cells}
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[cell.id]
    nbformat.write(nb, path)


def main(folder: Path) -> int:
    paths = make_workbook(folder, chapters=CHAPTERS)
    for path in paths:
        fill(path)
    failures = 0
    for checked in check_chapters(paths):
        for result in checked.results:
            print(f"{checked.chapter:15s} {result.name:30s} {result.status} {result.message}".rstrip())
            failures += result.status != "built"
        for error in checked.errors:
            print(f"{checked.chapter:15s} cell {error.cell}: {error.ename}: {error.evalue}")
            failures += 1
    print("pieces checked:", sum(PIECES[n].chapter in CHAPTERS for n in PIECES), "| not built or failing:", failures)
    gpt_class, sample = from_notebook("GPT", folder), from_notebook("sample", folder)
    shipped, tokenizer = load_pretrained()
    mine = gpt_class(shipped.config)
    mine.load_state_dict(shipped.state_dict())
    prompt = torch.tensor([tokenizer.encode("ROMEO:")])  # (1, 6)
    ids = sample(mine, prompt, 100, temperature=0.8, generator=torch.Generator().manual_seed(1))
    yours, theirs = tokenizer.decode(ids[0]), complete("ROMEO:", max_new_tokens=100, seed=1)
    print(f"--- your GPT ({gpt_class.__module__}), your sample:\n{yours}\n--- tinytorch complete:\n{theirs}")
    print("the same text:", yours == theirs)
    return 0 if failures == 0 and yours == theirs else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp) / "workbook"))
