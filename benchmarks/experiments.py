"""The book's experiments that take minutes, precomputed: each runs its chapter's own cells (in a kernel, up to the
cell that defines the experiment's function), then every run its results file does not hold yet, one at a time,
appending each result as it finishes (an interrupted study resumes). The chapter holds the results as a literal.

    python benchmarks/experiments.py ladder             # chapter 06's ladder: 21 runs, about 6 minutes on 2 cores
    python benchmarks/experiments.py subwords           # appendix 09's characters or subwords: 9 runs
    python benchmarks/experiments.py ladder --report    # the literal the chapter holds, from the results file
"""

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Study:
    name: str  # also the name of its results file, benchmarks/NAME.jsonl
    notebook: str  # the chapter whose cells define the experiment
    function: str  # the function it defines: function(*run) -> a float (the validation loss) or a dict
    keys: tuple[str, ...]  # the names of a run's arguments
    runs: tuple[tuple, ...]
    variable: str  # the name of the literal the chapter holds the results in
    summarize: Callable[[list[dict]], dict]  # the runs' records, in order of steps and seed -> that literal

    @property
    def results(self) -> Path:
        return ROOT / "benchmarks" / f"{self.name}.jsonl"


RUNGS = ("attention alone", "+ direct path", "+ MLP", "+ LayerNorm", "GPT, 1 block", "GPT, 2 blocks")
RUNGS += ("LayerNorm, no direct path",)  # a control: rung 4 without its residual connections
LONGER = ("attention alone", "GPT, 1 block", "GPT, 2 blocks")  # also trained for 3,000 steps, seed 0
CONTENDERS = ("characters", "BPE 320", "BPE 1,024")


def ladder(found: list[dict]) -> dict:
    """rung -> {steps: [validation loss of each seed]}."""
    rungs = {rung: {} for rung in RUNGS}
    for r in found:
        rungs[r["rung"]].setdefault(r["steps"], []).append(round(r["val"], 3))
    return rungs


def subwords(found: list[dict]) -> dict:
    """contender -> {"chars_per_token": ..., "flops_per_token": ..., "val": [[nats per token at each evaluation] for
    each seed]}."""
    short = {}
    for r in found:
        entry = short.setdefault(r["name"], dict(chars_per_token=round(r["chars_per_token"], 4), val=[]))
        entry["flops_per_token"] = r["flops_per_token"]
        entry["val"].append([round(v, 3) for v in r["val"]])
    return {name: short[name] for name in CONTENDERS if name in short}


STUDIES = {
    "ladder": Study(
        "ladder",
        "06_training.ipynb",
        "train_rung",
        ("rung", "seed", "steps"),
        tuple((rung, seed, 600) for rung in RUNGS for seed in (0, 1, 2)) + tuple((rung, 0, 3000) for rung in LONGER),
        "LADDER",
        ladder,
    ),
    "subwords": Study(
        "subwords",
        "09_training_runs.ipynb",
        "short_run",
        ("name", "seed"),
        tuple((name, seed) for name in CONTENDERS for seed in (0, 1, 2)),
        "SHORT",
        subwords,
    ),
}


def records(study: Study) -> list[dict]:
    """The runs in the study's results file."""
    if not study.results.exists():
        return []
    return [json.loads(line) for line in study.results.read_text().splitlines()]


def run(study: Study) -> None:
    """Train the study's missing runs in a kernel that has run its chapter up to the experiment's function."""
    done = {tuple(r[key] for key in study.keys) for r in records(study)}
    todo = [args for args in study.runs if args not in done]
    if not todo:
        print("nothing to run: every run is in", study.results)
        return
    path = ROOT / "notebooks" / study.notebook
    nb = nbformat.read(path, as_version=4)
    last = next(i for i, cell in enumerate(nb.cells) if f"def {study.function}(" in cell.source)
    runner = f"""
import json, time
for args in {todo!r}:
    began = time.perf_counter()
    result = {study.function}(*args)
    record = dict(zip({study.keys!r}, args))
    record.update(result if isinstance(result, dict) else dict(val=round(result, 4)))
    record["seconds"] = round(time.perf_counter() - began, 1)
    with open({str(study.results)!r}, "a") as f:
        f.write(json.dumps(record) + "\\n")
"""
    nb.cells = nb.cells[: last + 1] + [nbformat.v4.new_code_cell(runner)]
    print(f"running {study.notebook} up to {study.function}, then {len(todo)} runs; results go to {study.results}")
    NotebookClient(nb, timeout=None, resources={"metadata": {"path": str(path.parent)}}).execute()


def literal(name: str) -> dict:
    """What the study's chapter holds (its `variable`), from its results file, rounded to three decimals."""
    study = STUDIES[name]
    return study.summarize(sorted(records(study), key=lambda r: (r.get("steps", 0), r["seed"])))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--report", action="store_true", help="print the chapter's literal, from the results file")
    args = parser.parse_args()
    if args.report:
        print(f"{STUDIES[args.study].variable} = {literal(args.study)!r}")
    else:
        run(STUDIES[args.study])
