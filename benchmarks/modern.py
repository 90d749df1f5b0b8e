"""Chapter 11's study: which of today's changes to GPT-2 help at a learner's scale, at equal minutes of training.

Screening: the 2-minute frontier recipe (appendix 10's FRONTIER[0], GPT-2's block, AdamW) with one change at a time,
each made by swapping chapter 11's module into chapter 05's GPT (so nothing else moves), three seeds each; then the
changes that helped, together (joined by "+", or as chapter 11's ModernGPT). Then the best (BEST) against the
frontier at 10 and 30 minutes.
Each finished run is appended to modern.jsonl; a run already there (same spec) is skipped, so a study resumes.

    python benchmarks/modern.py screen                  # the 2-minute screen: every change x 3 seeds
    python benchmarks/modern.py final                   # BEST against the frontier at 10 and 30 minutes x 2 seeds
    python benchmarks/modern.py RUNS.json               # any list of runs (see `build` for a run's keys)
    python benchmarks/modern.py --report                # modern.md and modern.png from modern.jsonl
"""

import argparse
import json
import math
import statistics
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "modern.jsonl"
SEEDS = (1337, 1, 2)
# each change alone; "modern attention" is the control of the three attention changes: chapter 11's attention
# (separate q, k, v without biases) with GPT-2's learned positions, no rotation, no QK-norm, all heads
CHANGES = (
    "none",
    "rmsnorm",
    "modern attention",
    "rope",
    "qk_norm",
    "gqa",
    "swiglu",
    "relu2",
    "untied",
    "zero_init",
    "muon",
)
SESSION = time.strftime("%Y-%m-%d")


class SwappedAttention(nn.Module):
    """Chapter 11's ModernAttention in chapter 04's Block: forward(x, kv_cache) with its own angles (or none)."""

    def __init__(self, config, n_kv_head: int, qk_norm: bool, rope: bool):
        super().__init__()
        from tinytorch.modern import ModernAttention, ModernConfig, rotary_cos_sin

        modern = ModernConfig(
            vocab_size=config.vocab_size,
            block_size=config.block_size,
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_kv_head=n_kv_head,
            n_embd=config.n_embd,
            qk_norm=qk_norm,
        )
        self.attn = ModernAttention(modern)
        hs = config.n_embd // config.n_head
        cos, sin = rotary_cos_sin(hs, config.block_size)  # (T, hs)
        if not rope:
            cos, sin = torch.ones_like(cos), torch.zeros_like(sin)  # a turn by zero: positions come from wpe
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: torch.Tensor, kv_cache=None) -> torch.Tensor:
        T = x.size(1)
        return self.attn(x, self.cos[:T], self.sin[:T])  # (B, T, C)


def gpt_with(change: str, config) -> nn.Module:
    """Chapter 05's GPT with one of CHANGES, or several joined by "+" ("swiglu+muon"); new modules get GPT-2's
    initialization (their writes into the stream scaled by 1/sqrt(2L))."""
    from tinytorch import GPT

    model = GPT(config)
    for one in change.split("+"):
        _change(model, one, config)
    return model


def _change(model: nn.Module, change: str, config) -> None:
    """Make one of CHANGES in `model`, in place."""
    from tinytorch.modern import ReLUSquared, RMSNorm, SwiGLU

    fresh = []  # modules put in, to initialize
    if change == "rmsnorm":
        for block in model.blocks:
            block.ln_1, block.ln_2 = RMSNorm(config.n_embd), RMSNorm(config.n_embd)
        model.ln_f = RMSNorm(config.n_embd)
    elif change in ("modern attention", "rope", "qk_norm", "gqa"):
        n_kv = config.n_head // 2 if change == "gqa" else config.n_head
        for block in model.blocks:
            block.attn = SwappedAttention(config, n_kv, qk_norm=change == "qk_norm", rope=change == "rope")
            fresh.append(block.attn)
        if change == "rope":
            nn.init.zeros_(model.embeddings.wpe.weight)
            model.embeddings.wpe.weight.requires_grad_(False)  # positions only through the rotation
    elif change in ("swiglu", "relu2"):
        mlp = SwiGLU if change == "swiglu" else ReLUSquared
        hidden = 8 * config.n_embd // 3 if change == "swiglu" else 4 * config.n_embd  # GPT-2's MLP size
        for block in model.blocks:
            block.mlp = mlp(config.n_embd, hidden)
            fresh.append(block.mlp)
    elif change == "untied":
        model.lm_head.weight = nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.02)
    elif change == "zero_init":
        for name, param in model.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.zeros_(param)
    elif change not in ("none", "muon"):
        raise ValueError(f"unknown change {change!r}; choose from {', '.join(CHANGES)}")
    for module in fresh:
        for name, param in module.named_parameters():
            if param.dim() == 2:
                std = (
                    0.02 / math.sqrt(2 * config.n_layer)
                    if name.endswith(("o_proj.weight", "down_proj.weight"))
                    else 0.02
                )
                nn.init.normal_(param, mean=0.0, std=std)


def build(spec: dict, vocab_size: int):
    """The model and optimizer builder of a run: spec["change"] (screening: one of CHANGES on GPT-2) or
    spec["modern"] (a dict of ModernConfig's choices: chapter 11's ModernGPT); spec["optimizer"]: "adamw" or
    "muon"; the shape and recipe keys as scaling.py's."""
    from tinytorch import GPTConfig
    from tinytorch.modern import ModernConfig, ModernGPT, make_muon_optimizer
    from tinytorch.training import make_optimizer

    shape = {key: spec[key] for key in ("block_size", "n_layer", "n_head", "n_embd")}
    if "modern" in spec:
        choices = {"n_kv_head": spec["n_head"], **spec["modern"]}  # all heads keep their keys unless it says
        model = ModernGPT(ModernConfig(vocab_size=vocab_size, **shape, **choices))
    else:
        model = gpt_with(spec["change"], GPTConfig(vocab_size=vocab_size, **shape))
    return model, (partial(make_muon_optimizer, muon_lr=spec.get("muon_lr")) if uses_muon(spec) else make_optimizer)


def uses_muon(spec: dict) -> bool:
    """Whether a run trains with Muon: spec["optimizer"] says so, or "muon" is one of its changes."""
    return spec.get("optimizer") == "muon" or "muon" in spec.get("change", "").split("+")


def run(spec: dict, train_ids, val_ids, tokenizer) -> dict:
    """Train spec's model for spec["minutes"] of training time (evaluations not counted); the final evaluation."""
    from run import timed_train

    from tinytorch import count_parameters
    from tinytorch.training import TrainConfig

    seed = spec["seed"]
    torch.manual_seed(seed)  # the initial weights
    model, make_optimizer = build(spec, tokenizer.vocab_size)
    cfg = TrainConfig(
        max_steps=10**6,  # the deadline refits it to the minutes, at the run's own pace
        batch_size=spec["batch_size"],
        lr=spec["lr"],
        min_lr=spec["min_lr"],
        warmup_steps=spec["warmup"],
        weight_decay=0.1,
        eval_interval=spec.get("eval_interval", 10**9),  # by default one evaluation: at the last step
        eval_batches=20,
        seed=seed,  # the batches' order and the evaluation's fixed batches
    )
    deadline = time.perf_counter() + 60 * spec["minutes"]
    history = timed_train(model, tokenizer, train_ids, val_ids, cfg, deadline, make_optimizer=make_optimizer)
    last = history[-1]
    curve = {"curve": [[h["minutes"], h["val"]] for h in history]} if "eval_interval" in spec else {}
    if "eval_interval" in spec:  # a final run keeps its model: the 30-minute winner may ship (issue 27, item 4)
        save_model(spec, model, tokenizer, replace(cfg, max_steps=last["step"]), history)
    return {
        **spec,
        **curve,
        "session": SESSION,
        "params": count_parameters(model),
        "steps": last["step"],
        "train_minutes": last["minutes"],
        "train": last["train"],
        "val": last["val"],
    }


def model_path(spec: dict) -> Path:
    """Where a final run keeps its model: runs/modern/<change>-<minutes>min-seed<seed>.safetensors."""
    name = f"{spec.get('change', 'modern')}-{spec['minutes']}min-seed{spec['seed']}"
    return ROOT / "runs" / "modern" / f"{name}.safetensors"


def save_model(spec: dict, model, tokenizer, cfg, history: list[dict]) -> None:
    """runs/modern/<change>-<minutes>min-seed<seed>.safetensors: the final weights in float16 with the run's record, as
    tinytorch train's model.safetensors (complete --checkpoint reads it)."""
    from tinytorch.__main__ import MUON_LR
    from tinytorch.checkpoint import run_meta, save_checkpoint

    optimizer = {"name": "muon", "muon_lr": spec.get("muon_lr") or MUON_LR} if uses_muon(spec) else None
    meta = run_meta(cfg, [{k: h[k] for k in ("step", "train", "val")} for h in history], optimizer=optimizer)
    meta["made_by"] = f"python benchmarks/modern.py final ({key(spec)})"
    path = model_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, tokenizer, cfg.max_steps, meta=meta, dtype=torch.float16)


def screen_runs() -> list[dict]:
    """Every change at 2 minutes on the 2-minute frontier recipe, three seeds; seeds outermost, so that a partial
    study has every change at its first seed."""
    from tinytorch.budget import FRONTIER

    recipe = recipe_spec(FRONTIER[0])  # the 2-minute recipe
    return [{**recipe, "change": change, "seed": seed} for seed in SEEDS for change in CHANGES]


def recipe_spec(recipe) -> dict:
    """A FRONTIER Recipe as a run's keys: its budget, shape, batch and learning-rate schedule."""
    fields = ("minutes", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "lr", "min_lr", "warmup")
    return {name: getattr(recipe, name) for name in fields}


# the best recipe of the screen: Muon alone on GPT-2's block (SwiGLU, the other change that helped alone, did not add
# to it: "swiglu+muon" and ModernGPT with SwiGLU and Muon were both behind Muon alone; modern.md)
BEST = {"change": "muon"}
FINAL_SEEDS = (1337, 1)
TARGET = 1.508  # the frontier's 10-minute result (appendix 10): the speedrun's measure is the minutes to reach it


def final_runs() -> list[dict]:
    """The frontier's recipe at 10 and 30 minutes (GPT-2, AdamW) and the same shape and batch as BEST, two seeds,
    evaluated every 25 x minutes steps (the curve gives the minutes to reach TARGET); the shorter budget first, and
    the two recipes alternate so that a change in the machine's pace touches both."""
    from tinytorch.budget import FRONTIER

    if BEST is None:
        raise ValueError("BEST is not set: run the screen, read modern.md and set BEST to the best combination")
    runs = []
    for recipe in (r for r in FRONTIER if r.minutes in (10, 30)):
        for seed in FINAL_SEEDS:
            base = {**recipe_spec(recipe), "seed": seed, "eval_interval": 25 * recipe.minutes}
            runs += [{**base, "change": "none"}, {**base, **BEST}]
    return runs


SPEC_KEYS = {"minutes", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "lr", "min_lr", "warmup", "seed"}
SPEC_KEYS |= {"change", "modern", "optimizer", "muon_lr", "eval_interval"}


def key(spec: dict) -> str:
    """A run's identity: its spec without the session and results."""
    return json.dumps({k: spec[k] for k in sorted(spec) if k in SPEC_KEYS}, sort_keys=True)


TABLE_HEAD = (
    "| change | seeds | val loss, mean | range | each seed | vs none | steps, mean | parameters |",
    "|---|---|---|---|---|---|---|---|",
)


def table_row(name: str, rs: list[dict], base: float) -> str:
    """One line of TABLE_HEAD's table: the runs' mean, range, each seed, the gap to `base`, steps and parameters."""
    vals = [r["val"] for r in rs]
    mean = statistics.mean(vals)
    return (
        f"| {name} | {len(rs)} | **{mean:.3f}** | {max(vals) - min(vals):.3f} "
        f"| {', '.join(f'{v:.3f}' for v in vals)} | {mean - base:+.3f} "
        f"| {statistics.mean(r['steps'] for r in rs):,.0f} | {rs[0]['params']:,} |"
    )


def report() -> None:
    """modern.md (the screen's table: mean, range and every seed per change, and the difference to no change) and
    modern.png (the same with the seeds' range as error bars)."""
    from run import machine, pyplot

    runs = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    screen = [r for r in runs if "change" in r and r["minutes"] == 2 and not r.get("discarded")]
    kept = finished()
    print("SCREEN =", screen_literal(kept), "\nFINAL =", final_literal(kept), "\n")  # chapter 11's literals
    groups = {change: [r for r in screen if r["change"] == change] for change in CHANGES}
    groups = {change: rs for change, rs in groups.items() if rs}
    base = statistics.mean(r["val"] for r in groups["none"]) if "none" in groups else float("nan")
    lines = [
        f"Machine: {machine()}. Command: `python benchmarks/modern.py screen`, then `python benchmarks/modern.py "
        "--report`.",
        "",
        "**The screen**: the 2-minute frontier recipe (GPT-2's block, 2 x 96, context 64, batch 32, lr 6e-3, AdamW) "
        "with one change each, trained for 2 minutes of training time (evaluations not counted; the run refits its "
        "steps to the deadline at its own pace), one run at a time. Validation loss: 20 fixed batches of the four "
        "held-out plays. The seed draws the weights, the batches and the evaluation batches.",
        "",
        *TABLE_HEAD,
    ]
    lines += [table_row(change, rs, base) for change, rs in groups.items()]
    together = {}  # 2-minute runs of several changes: "+"-joined, or chapter 11's ModernGPT
    for r in runs:
        if r["minutes"] == 2 and ("modern" in r or "+" in r.get("change", "")) and not r.get("discarded"):
            together.setdefault(recipe_name(r), []).append(r)
    if together:
        lines += ["", "**Together** (the same recipe, 2 minutes; vs none: against the screen's none):", "", *TABLE_HEAD]
    lines += [table_row(name, rs, base) for name, rs in together.items()]
    for r in runs:
        if r.get("discarded"):
            lines.append(f"\nDiscarded: {r.get('change') or r.get('modern')} seed {r['seed']}: {r['discarded']}")
    lines += final_report([r for r in runs if "curve" in r and not r.get("discarded")])
    if HELDOUT.exists():
        lines += [
            "",
            "**The 30-minute models on the whole held-out text** (`python benchmarks/modern.py heldout`: each kept "
            "model on every window of 128 characters of the four held-out plays, one after another; the same "
            "characters for every run, where the table above evaluates each run on 20 batches drawn by its seed):",
            "",
            "| recipe | seed | loss |",
            "|---|---|---|",
        ]
        for _, change, seed, loss in json.loads(HELDOUT.read_text()):
            lines.append(f"| {recipe_name({'change': change})} | {seed} | {loss:.4f} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "modern.md").write_text(text)
    print(text)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(groups)[::-1]
    means = [statistics.mean(r["val"] for r in groups[n]) for n in names]
    lows = [m - min(r["val"] for r in groups[n]) for m, n in zip(means, names, strict=True)]
    highs = [max(r["val"] for r in groups[n]) - m for m, n in zip(means, names, strict=True)]
    ax.errorbar(means, range(len(names)), xerr=[lows, highs], fmt="o", capsize=3)
    ax.axvline(base, color="grey", ls="--", lw=1, label="no change (mean)")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("validation loss after 2 minutes (mean; bars: the seeds' range)")
    ax.set_title("One change at a time on the 2-minute recipe")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "modern.png", dpi=110)
    final_curves(plt, [r for r in runs if "curve" in r and not r.get("discarded")])


def final_curves(plt, runs: list[dict]) -> None:
    """modern_final.png: each final run's validation loss against its training minutes, one panel per budget, with
    TARGET."""
    budgets = sorted({r["minutes"] for r in runs})
    if not budgets:
        return
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 4), squeeze=False)
    for ax, minutes in zip(axes[0], budgets, strict=True):
        for r in (r for r in runs if r["minutes"] == minutes):
            color = "tab:grey" if r["change"] == "none" else "tab:blue"
            points = [(m, v) for m, v in r["curve"] if v < 2.0]  # the first evaluations are off the scale
            ax.plot(*zip(*points, strict=True), color=color, label=f"{recipe_name(r)}, seed {r['seed']}")
        ax.axhline(TARGET, color="black", ls=":", lw=1, label=f"{TARGET}")
        ax.set_title(f"{minutes:g} minutes")
        ax.set_xlabel("training minutes")
        ax.set_ylabel("validation loss (held-out plays)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "modern_final.png", dpi=110)


def recipe_name(run: dict) -> str:
    """ "frontier" for GPT-2 with AdamW, else the run's modern choices and optimizer."""
    if run.get("change") == "none":
        return "frontier (GPT-2, AdamW)"
    if "change" in run:
        return f"GPT-2 with {run['change']}"
    choices = ", ".join(f"{k}={v}" for k, v in sorted(run.get("modern", {}).items()))
    return f"modern ({choices}; {run.get('optimizer', 'adamw')})"


def minutes_to(curve: list[list[float]], target: float) -> float | None:
    """The training minutes at which the curve's validation loss first reaches `target` (linear between its
    evaluations), or None if it never does."""
    for (m0, v0), (m1, v1) in zip([[0.0, math.inf], *curve], curve, strict=False):
        if v1 <= target:
            return m1 if math.isinf(v0) else m0 + (m1 - m0) * (v0 - target) / (v0 - v1)
    return None


def final_report(runs: list[dict]) -> list[str]:
    """The final section of modern.md: each recipe at each budget (mean, range, each seed, steps) and the minutes
    each run needed to reach TARGET."""
    if not runs:
        return []
    lines = [
        "",
        "**The best combination against the frontier**: `python benchmarks/modern.py final`. The frontier's recipe "
        "(appendix 10) and the same shape, batch and learning rate with the combination, each trained for the "
        "budget's minutes, evaluated along the way (the evaluations' time is not training time, and is taken from "
        "the budget: both recipes pay it alike).",
        "",
        "| budget | recipe | seeds | val loss, mean | range | each seed | steps, mean | parameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["minutes"], recipe_name(r)), []).append(r)
    for (minutes, name), rs in sorted(groups.items()):
        vals = [r["val"] for r in rs]
        lines.append(
            f"| {minutes:g} min | {name} | {len(rs)} | **{statistics.mean(vals):.3f}** | {max(vals) - min(vals):.3f} "
            f"| {', '.join(f'{v:.3f}' for v in vals)} | {statistics.mean(r['steps'] for r in rs):,.0f} "
            f"| {rs[0]['params']:,} |"
        )
    lines += [
        "",
        f"**Minutes to reach {TARGET}** (the speedrun's measure): the training minutes at which each run's validation "
        "loss first reached it (linear between evaluations), on each run's own schedule (a run of a longer budget "
        "decays its learning rate later, so it reaches a loss later than a run planned to end there).",
        "",
        "| budget | recipe | each seed |",
        "|---|---|---|",
    ]
    for (minutes, name), rs in sorted(groups.items()):
        reached = [minutes_to(r["curve"], TARGET) for r in rs]
        lines.append(
            f"| {minutes:g} min | {name} | {', '.join('not reached' if m is None else f'{m:.1f}' for m in reached)} |"
        )
    return lines


def finished() -> list[dict]:
    """Every run of modern.jsonl that counts (a discarded run is kept there with its reason, and left out)."""
    runs = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return [r for r in runs if not r.get("discarded")]


def screen_literal(runs: list[dict]) -> list[tuple]:
    """Chapter 11's SCREEN rows: (change, seed, steps, val loss) of the 2-minute runs, each change alone in CHANGES'
    order, then the runs of several changes by name; each name's seeds in SEEDS' order."""
    screen = [r for r in runs if r["minutes"] == 2 and "curve" not in r]
    rows = [
        (r.get("change") or f"modern block+{r['optimizer']}", r["seed"], r["steps"], round(r["val"], 3)) for r in screen
    ]
    order = {change: i for i, change in enumerate(CHANGES)}
    return sorted(rows, key=lambda row: (order.get(row[0], len(order)), row[0], SEEDS.index(row[1])))


def final_literal(runs: list[dict]) -> list[tuple]:
    """Chapter 11's FINAL rows: (minutes, change, seed, steps, val loss, training minutes to reach TARGET or None),
    by budget, the frontier ("none") first, then by seed in FINAL_SEEDS' order."""
    final = sorted(
        (r for r in runs if "curve" in r),
        key=lambda r: (r["minutes"], r["change"] != "none", FINAL_SEEDS.index(r["seed"])),
    )
    reached = [minutes_to(r["curve"], TARGET) for r in final]
    return [
        (r["minutes"], r["change"], r["seed"], r["steps"], round(r["val"], 3), None if m is None else round(m, 1))
        for r, m in zip(final, reached, strict=True)
    ]


HELDOUT = ROOT / "benchmarks" / "modern_heldout.json"


def heldout_losses() -> None:
    """Each kept final model of 30 minutes (runs/modern/) on the whole held-out text, cut into windows of its context
    one after another, so that every run is measured on the same characters (each run's own 20 evaluation batches
    are drawn by its seed): modern_heldout.json, [minutes, change, seed, loss] per run."""
    import torch.nn.functional as F

    from tinytorch.checkpoint import load_checkpoint
    from tinytorch.data import shakespeare

    _, val_text = shakespeare()
    rows = []
    for r in (r for r in finished() if "curve" in r and r["minutes"] == 30):
        checkpoint = load_checkpoint(model_path(r))
        model, T = checkpoint.model.eval(), checkpoint.model.config.block_size
        ids = torch.tensor(checkpoint.tokenizer.encode(val_text))
        n = (len(ids) - 1) // T
        x, y = ids[: n * T].view(n, T), ids[1 : n * T + 1].view(n, T)  # (n, T) windows and their next characters
        with torch.no_grad():
            total = sum(
                F.cross_entropy(model(x[i : i + 64]).flatten(0, 1), y[i : i + 64].flatten(), reduction="sum").item()
                for i in range(0, n, 64)
            )
        rows.append([r["minutes"], r["change"], r["seed"], round(total / (n * T), 4)])
        print(rows[-1], f"{n * T:,} characters", flush=True)
    HELDOUT.write_text(json.dumps(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="?", help="'screen', 'final', 'heldout', or a JSON list of runs")
    parser.add_argument("--report", action="store_true", help="write modern.md and modern.png from modern.jsonl")
    args = parser.parse_args()
    if args.report:
        report()
        return
    if args.runs is None:
        parser.error("give 'screen', RUNS.json or --report")
    from scaling import run_each

    if args.runs == "heldout":
        heldout_losses()
        return
    named = {"screen": screen_runs, "final": final_runs}
    specs = named[args.runs]() if args.runs in named else json.loads(Path(args.runs).read_text())
    done = {key(json.loads(line)) for line in RESULTS.read_text().splitlines()} if RESULTS.exists() else set()
    run_each([spec for spec in specs if key(spec) not in done], run, RESULTS)  # an interrupted study resumes


if __name__ == "__main__":
    main()
