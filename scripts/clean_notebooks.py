"""Strip noisy metadata from notebooks (nbdev's clean_nb and saved widget state) but keep execution
counts, which nbval needs to tell run cells from unrun ones. Usage: python scripts/clean_notebooks.py NB..."""

import sys

import nbformat
from nbdev.clean import clean_nb

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    counts = [cell.get("execution_count") for cell in nb.cells]
    clean_nb(nb, allowed_cell_metadata_keys=["jupyter", "tags", "nbgrader"], clean_ids=False)
    nb.metadata.pop("widgets", None)  # saved widget state (e.g. a tqdm bar's) is volatile; outputs keep a text view
    for cell, count in zip(nb.cells, counts, strict=True):
        if cell.cell_type == "code":
            cell.execution_count = count
            merged = []  # a stream printed in pieces (when the kernel flushes mid-cell) saved as one output
            for output in cell.outputs:
                previous = merged[-1] if merged else None
                if output.output_type == "stream" and previous and previous.output_type == "stream":
                    if previous.name == output.name:
                        previous.text += output.text
                        continue
                merged.append(output)
            cell.outputs = merged
    nbformat.write(nb, path)
