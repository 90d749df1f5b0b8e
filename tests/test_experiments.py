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


def held(notebook: str, variable: str) -> object:
    """The literal assigned to `variable` in a code cell of the notebook."""
    for cell in json.loads((ROOT / "notebooks" / notebook).read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.parse("".join(cell["source"])).body:
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [variable]:
                return ast.literal_eval(node.value)
    raise AssertionError(f"{notebook} assigns no {variable}")


@pytest.mark.parametrize("study", sorted(experiments.STUDIES))
def test_the_chapter_holds_what_the_study_measured(study):
    plan = experiments.STUDIES[study]
    assert held(plan.notebook, plan.variable) == experiments.literal(study), (
        f"{plan.notebook}'s {plan.variable} differs from benchmarks/{study}.jsonl: paste the output of "
        f"`python benchmarks/experiments.py {study} --report`"
    )


@pytest.mark.parametrize("study", sorted(experiments.STUDIES))
def test_every_planned_run_was_measured(study):
    plan = experiments.STUDIES[study]
    found = experiments.records(plan)
    done = {tuple(record[key] for key in plan.keys) for record in found}
    assert set(plan.runs) <= done, f"not measured yet: {sorted(set(plan.runs) - done)}"
    assert len(done) == len(found), "a run is in the results file twice"
