"""The checks of notebooks/10_budget.ipynb: a reference and a verify function per piece and exercise."""

import copy
import math
from collections.abc import Callable

from tinytorch.budget import steps_in
from tinytorch.checks import add_hints, piece
from tinytorch.checks.helpers import Wrong, _kind


def _steps_for(minutes: float, seconds_per_step: float, evaluations: int, seconds_per_evaluation: float) -> int:
    """Whole training steps that fit in `minutes`, after `evaluations` evaluations."""
    return max(0, steps_in(60 * minutes, seconds_per_step, evaluations, seconds_per_evaluation))


def _frontier(runs: list[dict]) -> dict:
    """{budget: the run of lowest val at that budget}, budgets in increasing order."""
    best = {}
    for run in runs:
        if run["minutes"] not in best or run["val"] < best[run["minutes"]]["val"]:
            best[run["minutes"]] = run
    return dict(sorted(best.items()))


@piece("my_steps_for", "10_budget", "the training steps that fit in a budget", _steps_for)
def _verify_steps_for(my_steps_for: Callable) -> None:
    for args in [(2, 0.045, 4, 0.5), (10, 0.3, 4, 2.3), (0.5, 0.07, 3, 1.0), (0.05, 1.0, 4, 1.0)]:
        call = f"my_steps_for({', '.join(f'{a:g}' for a in args)})"
        got, want = my_steps_for(*args), _steps_for(*args)
        if isinstance(got, bool) or not isinstance(got, int):
            raise Wrong(f"{call} returned {_kind(got)}: a number of steps is an int, e.g. math.floor(...)")
        if got == want:
            continue
        minutes, pace, evaluations, each = args
        mistakes = [
            (max(0, math.floor((minutes - evaluations * each) / pace)), "minutes are 60 seconds each"),
            (max(0, math.floor(60 * minutes / pace)), "the evaluations take time too: evaluations × their seconds"),
            (math.floor((60 * minutes - evaluations * each) / pace), "never fewer than 0 steps: max(0, ...)"),
            (math.ceil((60 * minutes - evaluations * each) / pace), "round down: a step that does not fit is not done"),
        ]
        hint = next((hint for value, hint in mistakes if got == value), "")
        raise Wrong(f"{call} returned {got}: " + (hint or f"too {'many' if got > want else 'few'}"))


@piece("my_frontier", "10_budget", "the best run of each budget", _frontier)
def _verify_frontier(my_frontier: Callable) -> None:
    runs = [
        {"minutes": 10, "val": 1.61, "shape": "4x128"},
        {"minutes": 2, "val": 1.72, "shape": "4x128"},
        {"minutes": 2, "val": 1.68, "shape": "2x96"},
        {"minutes": 10, "val": 1.58, "shape": "4x192"},
        {"minutes": 5, "val": 1.66, "shape": "2x96"},
    ]
    got, want = my_frontier(copy.deepcopy(runs)), _frontier(runs)
    if not isinstance(got, dict):
        raise Wrong(f"return a dict {{budget: run}}, got {_kind(got)}")
    if set(got) != set(want):
        raise Wrong(f"the budgets are {sorted(want)}: one key per budget of the runs, got {sorted(got)}")
    for budget, run in got.items():
        if not isinstance(run, dict):
            raise Wrong(f"the value of budget {budget} is {_kind(run)}: return the whole run, the dict")
        if run["val"] == max(r["val"] for r in runs if r["minutes"] == budget) != want[budget]["val"]:
            raise Wrong(f"at budget {budget} that is the run of the highest val: the best is the lowest loss")
        if run != want[budget]:
            raise Wrong(f"at budget {budget} that is not the run of the lowest val")
    if list(got) != list(want):
        raise Wrong("put the budgets in increasing order: dict(sorted(...items()))")


add_hints(
    {
        "my_steps_for": (
            "The budget pays for the evaluations first; what is left, divided by the time of a step, is the steps.",
            "Convert the minutes to seconds, subtract the evaluations' seconds, divide by seconds_per_step, round "
            "down, and never return fewer than 0.",
        ),
        "my_frontier": (
            "For each budget keep the run with the lowest validation loss, the whole run.",
            "Go over the runs keeping, per minutes, the best so far in a dict; return it with its budgets sorted "
            "(dict(sorted(...items()))).",
        ),
    }
)
