"""The book's precomputed experiments: what a chapter holds is what `benchmarks/experiments.py` measured."""

import ast
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("experiments", ROOT / "benchmarks" / "experiments.py")
experiments = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(experiments)

HELD = {"ladder": ("06_training.ipynb", "LADDER"), "subwords": ("09_training_runs.ipynb", "SHORT")}


def held(notebook: str, variable: str) -> object:
    """The literal assigned to `variable` in a code cell of the notebook."""
    for cell in json.loads((ROOT / "notebooks" / notebook).read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.parse("".join(cell["source"])).body:
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [variable]:
                return ast.literal_eval(node.value)
    raise AssertionError(f"{notebook} assigns no {variable}")


@pytest.mark.parametrize("study", sorted(HELD))
def test_the_chapter_holds_what_the_study_measured(study):
    assert held(*HELD[study]) == experiments.literal(study), (
        f"{HELD[study][0]}'s {HELD[study][1]} differs from benchmarks/{study}.jsonl: paste the output of "
        f"`python benchmarks/experiments.py {study} --report`"
    )


@pytest.mark.parametrize("study", sorted(HELD))
def test_every_planned_run_was_measured(study):
    plan = experiments.STUDIES[study]
    done = {tuple(record[key] for key in plan.keys) for record in experiments.records(plan)}
    assert set(plan.runs) <= done, f"not measured yet: {sorted(set(plan.runs) - done)}"
    assert len(done) == len(experiments.records(plan)), "a run is in the results file twice"
