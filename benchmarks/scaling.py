"""The scaling study behind `tinytorch train --minutes`: shapes x batch x learning rate, each trained for a budget
of training minutes on this machine, one run at a time. Each finished run is appended to scaling.jsonl.

    python benchmarks/scaling.py RUNS.json        # RUNS.json: a list of runs, see `Run` below
    python benchmarks/scaling.py --report         # scaling.md and scaling.png from scaling.jsonl
"""

import argparse
import json
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "scaling.jsonl"


def run(spec: dict, train_ids, val_ids, tokenizer) -> dict:
    """Train spec's shape for spec["minutes"] of training time (evaluations not counted); the final evaluation."""
    from run import timed_train

    from tinytorch import GPT, GPTConfig, count_parameters
    from tinytorch.budget import seconds_per_step
    from tinytorch.training import TrainConfig

    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=spec["block_size"],
        n_layer=spec["n_layer"],
        n_head=spec["n_head"],
        n_embd=spec["n_embd"],
    )

    def recipe(steps: int) -> TrainConfig:
        return TrainConfig(
            max_steps=steps,
            batch_size=spec["batch_size"],
            lr=spec["lr"],
            min_lr=spec["lr"] * spec.get("min_lr_ratio", 0.1),
            warmup_steps=min(spec.get("warmup", 100), steps),
            weight_decay=spec.get("weight_decay", 0.1),
            eval_interval=10**9,  # one evaluation: at the last step
            eval_batches=20,
            seed=spec.get("seed", 1337),  # the batches' order and the evaluation's fixed batches
        )

    pace = seconds_per_step(config, spec["batch_size"], train_ids, torch.device("cpu"), seconds=3.0)
    torch.manual_seed(spec.get("seed", 1337))  # the initial weights
    model = GPT(config)
    deadline = time.perf_counter() + 60 * spec["minutes"]  # train() refits its steps to end then (appendix 10)
    history = timed_train(model, tokenizer, train_ids, val_ids, recipe(round(60 * spec["minutes"] / pace)), deadline)
    last = history[-1]
    steps = last["step"]
    return {
        **spec,
        "params": count_parameters(model),
        "steps": steps,
        "seconds_per_step": pace,
        "train_minutes": last["minutes"],
        "tokens": steps * spec["batch_size"] * config.block_size,
        "train": last["train"],
        "val": last["val"],
    }


@contextmanager
def cpu_lock(path: str = os.environ.get("TINYTORCH_CPU_LOCK", "/tmp/cpu.lock")):
    """Hold an exclusive lock on `path` (flock) while training, where the system has one."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_each(specs: list[dict], run, results: Path) -> None:
    """run(spec, train_ids, val_ids, tokenizer) for each spec on the plays' characters, one at a time under the CPU
    lock, each result appended to `results` (a JSON line) as it finishes."""
    from tinytorch.data import shakespeare
    from tinytorch.embeddings import CharTokenizer

    train_text, val_text = shakespeare()
    tokenizer = CharTokenizer.from_text(train_text + val_text)
    train_ids = torch.tensor(tokenizer.encode(train_text), dtype=torch.uint8)
    val_ids = torch.tensor(tokenizer.encode(val_text), dtype=torch.uint8)
    for spec in specs:
        with cpu_lock():  # one torch process at a time: two on the same cores slow each other tens of times
            began = time.perf_counter()
            result = run(spec, train_ids, val_ids, tokenizer)
            result["wall_minutes"] = (time.perf_counter() - began) / 60
        time.sleep(3)  # let a process waiting for the cores have them between runs
        with results.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)


NANOGPT = ((2.1, 1.902, "nanoGPT's CPU recipe"), (26, 1.540, "nanoGPT's best 26-minute configuration"))
GOALS = {2: 1.65, 10: 1.52, 30: 1.42}  # issue 18: validation loss on the held-out plays


def shape(run: dict) -> str:
    return f"{run['n_layer']}x{run['n_embd']}, context {run['block_size']}"


def run_pace(run: dict) -> float:
    """A finished run's own pace: its training minutes over its steps."""
    return 60 * run["train_minutes"] / run["steps"]


def repeats_section(repeats: list[dict], study: list[dict]) -> list[str]:
    """Markdown: the repeated runs of each session, grouped by budget and shape (mean, range, seeds), and the
    session machine's pace against the study's for the same shape and batch."""
    lines = []
    for session in sorted({r["session"] for r in repeats}):
        mine = [r for r in repeats if r["session"] == session and not r.get("discarded")]
        lines += [
            "",
            f"**Repeats, session {session}** (another machine: compare these runs with each other, not with the "
            "study's). Each line: one recipe at one budget, every seed (the seed draws the weights, the batches "
            "and the evaluation batches); the pace is the median of the runs' seconds per step (training minutes "
            "over steps), and `speed` is the "
            "study's pace for the same recipe divided by it (below 1: slower than the study's machine).",
            "",
            "| budget | shape | batch | lr | seeds | val loss, mean | range | each seed | steps | s/step | speed |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        groups = {}
        for r in mine:
            groups.setdefault((r["minutes"], shape(r), r["batch_size"], r["lr"]), []).append(r)
        for (minutes, name, batch, lr), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            vals, steps = [r["val"] for r in rs], [r["steps"] for r in rs]
            pace = statistics.median(run_pace(r) for r in rs)
            theirs = [run_pace(r) for r in study if (shape(r), r["batch_size"]) == (name, batch)]
            speed = f"{statistics.median(theirs) / pace:.2f}" if theirs else ""
            lines.append(
                f"| {minutes:g} min | {name} | {batch} | {lr:g} | {len(rs)} | **{statistics.mean(vals):.3f}** "
                f"| {max(vals) - min(vals):.3f} | {', '.join(f'{v:.3f}' for v in vals)} "
                f"| {', '.join(f'{n:,}' for n in steps)} | {pace:.4f} | {speed} |"
            )
        for r in repeats:
            if r["session"] == session and r.get("discarded"):
                lines.append(f"\nDiscarded: {shape(r)} at {r['minutes']:g} min, seed {r['seed']}: {r['discarded']}")
    return lines


def report() -> None:
    """scaling.md and scaling.png from scaling.jsonl: every run, the frontier, the goals and nanoGPT's numbers."""
    from run import machine, pyplot

    every = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    runs = [r for r in every if "session" not in r]  # the study, on its machine
    repeats = [r for r in every if "session" in r]  # later sessions: other machines, compared only among themselves
    frontier = {}  # the best run of each budget among those that kept to it (at most 5% over)
    for r in runs:
        on_time = r["train_minutes"] <= 1.05 * r["minutes"]
        if on_time and (r["minutes"] not in frontier or r["val"] < frontier[r["minutes"]]["val"]):
            frontier[r["minutes"]] = r
    lines = [
        f"Machine: {machine()}. Command: `python benchmarks/scaling.py RUNS.json` for each list of runs, then "
        "`python benchmarks/scaling.py --report`.",
        "",
        "Each run: a model shape, batch and peak learning rate trained from scratch (seed 1337) for a budget of "
        "training minutes (evaluations not counted): the first runs fitted their steps to the budget at the pace "
        "measured just before (3 s of steps), so some took more or less than their budget (training minutes below); "
        "the later ones used `train(..., deadline=...)`, which refits the steps as the run goes and ends it on the "
        "minute. Warmup 100 steps and cosine to lr/10 unless the table says otherwise, AdamW (0.9, 0.99), weight "
        "decay 0.1, no dropout, "
        "GPT-2 initialization. Validation loss: 20 fixed batches of the four held-out plays, at each model's own "
        "context. Runs one at a time. The three runs of the 6x192 shape are the shipped model's recipe from "
        "`python benchmarks/run.py quality --minutes 2 10 30` (benchmarks/quality.md), made the same way.",
        "",
        "**Frontier** (the best run of each budget among those that kept to it, at most 5% over) and the goals of "
        "issue 18; nanoGPT's numbers were measured on "
        "the same split and machine:",
        "",
        "| budget | best shape | parameters | batch | lr | steps | characters read | val loss | goal | nanoGPT |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    nanogpt = {2: "1.902 (2.1 min)", 30: "1.540 (26 min)"}
    for minutes, r in sorted(frontier.items()):
        goal = GOALS.get(minutes)
        if goal is None:
            met = ""
        else:
            met = f"≤ {goal}: " + ("met" if r["val"] <= goal else f"missed by {r['val'] - goal:.3f}")
        lines.append(
            f"| {minutes:g} min | {shape(r)} | {r['params'] / 1e6:.2f}M | {r['batch_size']} | {r['lr']:g} "
            f"| {r['steps']:,} | {r['tokens'] / 1e6:.1f}M | **{r['val']:.3f}** | {met} | {nanogpt.get(minutes, '')} |"
        )
    lines += [
        "",
        "Every run:",
        "",
        "| budget | shape | parameters | batch | lr | floor, warmup | steps | training minutes | characters read "
        "| train loss | val loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["minutes"], r["val"])):
        lines.append(
            f"| {r['minutes']:g} | {shape(r)} | {r['params'] / 1e6:.2f}M | {r['batch_size']} | {r['lr']:g} "
            f"| {r['lr'] * r.get('min_lr_ratio', 0.1):.2g}, {r.get('warmup', 100)} | {r['steps']:,} "
            f"| {r['train_minutes']:.2f} | {r['tokens'] / 1e6:.1f}M | {r['train']:.3f} "
            f"| {r['val']:.3f} |"
        )
    lines += repeats_section(repeats, runs)
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "scaling.md").write_text(text)
    print(text)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    best = {}
    for r in runs:
        key = (shape(r), r["minutes"])
        if key not in best or r["val"] < best[key]["val"]:
            best[key] = r
    for name in sorted({s for s, _ in best}, key=lambda s: min(r["params"] for r in runs if shape(r) == s)):
        points = sorted((r["train_minutes"], r["val"]) for (s, _), r in best.items() if s == name)
        params = min(r["params"] for r in runs if shape(r) == name)
        ax.plot(*zip(*points, strict=True), marker="o", ms=4, label=f"{name} ({params / 1e6:.2f}M)")
    budgets = sorted(frontier)
    ax.plot(
        [frontier[b]["train_minutes"] for b in budgets],
        [frontier[b]["val"] for b in budgets],
        "k--",
        lw=1,
        label="frontier",
    )
    for minutes, val, label in NANOGPT:
        ax.plot([minutes], [val], "kx", ms=8)
        ax.annotate(label, (minutes, val), xytext=(4, 4), textcoords="offset points", fontsize=7)
    for minutes, goal in GOALS.items():
        ax.plot([minutes], [goal], marker="_", color="red", ms=14)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.minorticks_off()
    top = 1.8  # the biggest shape's two-minute run is far above: drawn at the top edge, its loss written
    for r in runs:
        if r["val"] > top:
            ax.annotate(
                f"{shape(r)}: {r['val']:.2f}",
                (r["train_minutes"], top),
                xytext=(6, -12),
                textcoords="offset points",
                fontsize=7,
                arrowprops={"arrowstyle": "->"},
            )
    ax.set_ylim(None, top)
    ax.set_xlabel("training minutes (log scale; evaluations not counted)")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_title("The best loss each budget buys (red: issue 18's goals, x: nanoGPT)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "scaling.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs", nargs="?", help="a JSON list of runs: minutes, n_layer, n_head, n_embd, block_size, ..."
    )
    parser.add_argument("--report", action="store_true", help="write scaling.md and scaling.png from scaling.jsonl")
    args = parser.parse_args()
    if args.report:
        report()
        return
    if args.runs is None:
        parser.error("give RUNS.json or --report")
    run_each(json.loads(Path(args.runs).read_text()), run, RESULTS)


if __name__ == "__main__":
    main()
