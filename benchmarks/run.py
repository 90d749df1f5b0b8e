"""tinytorch's benchmarks: speed and memory against references measured in the same run, and what
more training time buys.

    python benchmarks/run.py                    # both sections, about 55 minutes on 2 cores
    python benchmarks/run.py speed              # about 4 minutes: writes benchmarks/speed.md and speed.png
    python benchmarks/run.py quality --minutes 2 10 30   # about 50 minutes: quality.md and quality.png
    python benchmarks/run.py tokens --minutes 10 30      # characters vs BPE at equal time: tokens.md and .png
    python benchmarks/run.py tokens --minutes 30 --tokenizers 320 1024   # some of them
    python benchmarks/run.py minutes --minutes 2         # `tinytorch train --minutes 2` ends on time: minutes.md

Speed: contenders are interleaved round by round so that both see the same machine state; each number
is the median over rounds. Targets: training >= 1.2x transformers; cached generation >= 1.5x
transformers `generate`; cached >= 10x uncached at 1000 new tokens; `complete` of 300 characters while
another process keeps every core busy <= 1.5x quiet; the course re-executes in <= 3 min.
Quality: the shakespeare preset's recipe trained from scratch for each time budget, its learning-rate
schedule fitted to the budget, validation loss against training time (evaluations not counted).
"""

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from tinytorch import generation
from tinytorch.checkpoint import load_pretrained
from tinytorch.config import GPTConfig, count_parameters
from tinytorch.generation import KVCache, generate, stream_text
from tinytorch.gpt import GPT, estimate_flops_per_token, next_token_loss
from tinytorch.training import TrainConfig, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 7


def preset_recipe(steps: int, evaluations: int) -> TrainConfig:
    """The shakespeare preset's recipe (TrainConfig's defaults; the model shipped until appendix 10's 30-minute model
    replaced it): quality and tokens train the preset with it for `steps` steps, evaluated `evaluations` times."""
    default = TrainConfig()
    interval = max(1, steps // evaluations)
    return replace(default, max_steps=steps, warmup_steps=min(default.warmup_steps, steps), eval_interval=interval)


def hf_model(config: GPTConfig):
    """A transformers GPT-2 with the same shape, random weights, no dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_config = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=config.vocab_size - 1,
        eos_token_id=config.vocab_size - 1,
    )
    return GPT2LMHeadModel(hf_config)


def time_call(fn, repeat: int) -> float:
    """Seconds per call of fn, after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def training_step(model, optimizer, x, y, hf: bool):
    def step():
        logits = model(x).logits if hf else model(x)
        next_token_loss(logits, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bench_training(config: GPTConfig, batch_size: int) -> dict:
    torch.manual_seed(0)
    ours = GPT(config)
    theirs = hf_model(config).train()
    x = torch.randint(0, config.vocab_size, (batch_size, config.block_size))
    y = torch.randint(0, config.vocab_size, (batch_size, config.block_size))
    steps = {
        "tinytorch": training_step(ours, make_optimizer(ours, TrainConfig()), x, y, hf=False),
        "transformers": training_step(theirs, make_optimizer(theirs, TrainConfig()), x, y, hf=True),
    }
    times = {name: [] for name in steps}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            times[name].append(time_call(step, repeat=3))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_generation(config: GPTConfig, new_tokens: int) -> dict:
    torch.manual_seed(0)
    theirs = hf_model(config).eval()
    ours = GPT.from_hf(theirs).eval()
    prompt = torch.randint(0, config.vocab_size - 1, (1, 10))

    def contenders(n: int) -> dict:
        return {
            "tinytorch, KV cache": lambda: generate(ours, prompt, n, do_sample=False, use_cache=True),
            "tinytorch, no cache": lambda: generate(ours, prompt, n, do_sample=False, use_cache=False),
            "transformers generate": lambda: theirs.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                use_cache=True,
                pad_token_id=config.vocab_size - 1,
            ),
        }

    times = {name: [] for name in contenders(new_tokens)}
    for run in contenders(8).values():
        run()  # untimed: first-call costs are not decoding speed
    for i in range(7 if new_tokens <= 256 else 3):
        for name, run in contenders(new_tokens).items():
            if name == "tinytorch, no cache" and new_tokens > 256 and i > 0:
                continue  # 1000 tokens without the cache take about 40 s: timed once
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: new_tokens / statistics.median(t) for name, t in times.items()}  # tokens per second


def matmul_peak() -> float:
    """FLOP/s of a large float32 matrix product on this machine: the ceiling for MFU."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = min(time_call(lambda: a @ b, repeat=5) for _ in range(3))
    return 2 * 2048**3 / seconds


PEAK_MEMORY_SCRIPT = """
import resource, sys, torch
from tinytorch.config import GPTConfig
from tinytorch.gpt import GPT, next_token_loss
from tinytorch.training import TrainConfig, make_optimizer
B = int(sys.argv[1])
config = GPTConfig.from_preset("shakespeare")
model = GPT(config)
optimizer = make_optimizer(model, TrainConfig())
x = torch.randint(0, config.vocab_size, (B, config.block_size))
before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
next_token_loss(model(x), x).backward()
optimizer.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak - before)
"""


def peak_training_memory(batch_size: int) -> int:
    """Bytes a first training step adds to the process at its peak (activations, gradients, Adam state)."""
    command = [sys.executable, "-c", PEAK_MEMORY_SCRIPT, str(batch_size)]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def course_seconds() -> float:
    """Wall time of re-executing every notebook under nbval, as scripts/test.sh does: two at a time, one thread each."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-q", "notebooks/", "-n", "2", "--dist", "loadfile"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


BURNER = "import torch\nx = torch.randn(512, 512)\nwhile True:\n    x = (x @ x).clamp_(-1, 1)\n"


def complete_seconds(model, tokenizer) -> float:
    """Seconds `tinytorch complete "ROMEO:" --max-new-tokens 300` spends decoding."""
    start = time.perf_counter()
    "".join(stream_text(model, tokenizer, "ROMEO:", 300, seed=1))
    return time.perf_counter() - start


def busy_decoding(rounds: int = 5) -> dict:
    """Decoding 300 characters with the shipped model, quiet and while a torch process keeps every core busy.

    "all threads" is decoding as it was before `decoding_threads`: PyTorch's thread count whatever the load.
    """
    model, tokenizer = load_pretrained()
    complete_seconds(model, tokenizer)  # warm-up
    quiet = statistics.median(complete_seconds(model, tokenizer) for _ in range(rounds))
    burner = subprocess.Popen([sys.executable, "-c", BURNER])
    try:
        time.sleep(2)  # the burner imports torch and starts its threads
        busy = statistics.median(complete_seconds(model, tokenizer) for _ in range(rounds))
        chosen = generation.decoding_threads
        generation.decoding_threads = lambda model: torch.get_num_threads()
        try:
            all_threads = statistics.median(complete_seconds(model, tokenizer) for _ in range(3))
        finally:
            generation.decoding_threads = chosen
    finally:
        burner.kill()
        burner.wait()
    return {"quiet": quiet, "busy": busy, "busy, all threads": all_threads}


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, float32 on CPU"
    )


def speed() -> None:
    """Items 1-4 and 6 of the benchmark issue and the busy-machine row: writes benchmarks/speed.md and speed.png."""
    torch.manual_seed(0)
    shakespeare = GPTConfig.from_preset("shakespeare")
    long_context = GPTConfig(vocab_size=76, block_size=1024, n_layer=6, n_head=6, n_embd=192)
    lines = [
        f"Machine: {machine()}. Command: `python benchmarks/run.py speed`.",
        "",
        "| what | tinytorch | reference | ratio | target |",
        "|---|---|---|---|---|",
    ]
    bars = []  # (label, ratio, target) for the plot

    train = bench_training(shakespeare, batch_size=8)
    tokens = 8 * shakespeare.block_size
    ratio = train["transformers"] / train["tinytorch"]
    bars.append(("training step\nvs transformers", ratio, 1.2))
    lines.append(
        f"| training step, shakespeare preset, 8x256 | {train['tinytorch'] * 1000:.0f} ms "
        f"({tokens / train['tinytorch']:,.0f} tok/s) | transformers {train['transformers'] * 1000:.0f} ms "
        f"({tokens / train['transformers']:,.0f} tok/s) | {ratio:.2f}x | >= 1.2x |"
    )

    peak = matmul_peak()
    achieved = estimate_flops_per_token(shakespeare) * tokens / train["tinytorch"]
    lines.append(
        f"| model FLOPs utilization | {achieved / 1e9:.1f} GFLOP/s | 2048² matmul peak {peak / 1e9:.1f} GFLOP/s "
        f"| {achieved / peak:.0%} | |"
    )

    for new in (256, 1000):
        rates = bench_generation(long_context, new)
        cached, uncached, hf = (
            rates["tinytorch, KV cache"],
            rates["tinytorch, no cache"],
            rates["transformers generate"],
        )
        bars.append((f"generation, {new} tokens\nvs transformers", cached / hf, 1.5))
        lines.append(
            f"| greedy generation, 10 + {new} tokens, cache | {cached:,.0f} tok/s | transformers {hf:,.0f} tok/s "
            f"| {cached / hf:.2f}x | >= 1.5x |"
        )
        if new == 1000:
            bars.append((f"generation, {new} tokens\nKV cache vs none", cached / uncached, 10.0))
        lines.append(
            f"| greedy generation, 10 + {new} tokens, cache vs none | {cached:,.0f} tok/s | no cache "
            f"{uncached:,.0f} tok/s | {cached / uncached:.1f}x | {'>= 10x' if new == 1000 else ''} |"
        )

    memory = peak_training_memory(batch_size=8)
    weights = count_parameters(GPT(shakespeare)) * 4  # float32
    lines.append(
        f"| peak memory added by a training step, 8x256 | {memory / 2**20:.0f} MiB | weights alone "
        f"{weights / 2**20:.1f} MiB | | |"
    )
    cache = KVCache(long_context, batch_size=1)
    formula = 2 * long_context.n_layer * 1 * long_context.block_size * long_context.n_embd * 4
    lines.append(
        f"| KV cache, 1 sequence of 1024 | {cache.memory_bytes() / 2**20:.2f} MiB | formula {formula / 2**20:.2f} MiB "
        f"| {cache.memory_bytes() / formula:.2f}x | 1.00x |"
    )

    times = busy_decoding()
    ratio = times["busy"] / times["quiet"]
    bars.append(("complete 300 characters\n1.5 / (busy / quiet)", 1.5 / ratio, 1.0))
    lines.append(
        f"| `complete` of 300 characters, busy vs quiet | busy {times['busy']:.2f} s | quiet {times['quiet']:.2f} s "
        f"| {ratio:.2f}x | <= 1.5x |"
    )
    lines.append(
        f"| `complete` of 300 characters, busy, all threads (as before) | {times['busy, all threads']:.2f} s "
        f"| quiet {times['quiet']:.2f} s | {times['busy, all threads'] / times['quiet']:.1f}x | |"
    )

    seconds = course_seconds()
    bars.append(("whole course (nbval)\n180 s / time taken", 180 / seconds, 1.0))
    lines.append(f"| re-executing the whole course (nbval) | {seconds:.0f} s | | | <= 180 s |")
    write_section("speed", lines)
    plot_speed(bars)


def plot_speed(bars: list) -> None:
    """Each ratio as a bar, its target as a black tick: a bar past its tick meets the target."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [label for label, _, _ in bars]
    y = range(len(bars))
    ax.barh(y, [r for _, r, _ in bars], color=["tab:green" if r >= t else "tab:red" for _, r, t in bars])
    ax.scatter([t for _, _, t in bars], y, marker="|", s=600, color="black", label="target", zorder=3)
    for i, (_, ratio, _) in enumerate(bars):
        ax.annotate(f"{ratio:.2f}x", (ratio, i), xytext=(4, 0), textcoords="offset points", va="center")
    ax.set_xscale("log")
    ax.set_xlim(0.8, 40)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ratio (higher is better), log scale")
    ax.set_title(f"tinytorch against references, same run ({torch.get_num_threads()} CPU threads)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "speed.png", dpi=110)


def timed_train(
    model, tokenizer, train_ids, val_ids, cfg, deadline: float | None = None, make_optimizer=None
) -> list[dict]:
    """tinytorch.training.train (with `make_optimizer` if given), with "minutes" of training (evaluations not
    counted) in each record."""
    from tinytorch import training
    from tinytorch.budget import Deadline
    from tinytorch.checkpoint import UseTF32

    evaluate, start, spent = training.evaluate, time.perf_counter(), 0.0
    marks = []  # training minutes at each evaluation (train() evaluates the train, then the val batches)

    def timed_evaluate(model, batches, *args):
        nonlocal spent
        began = time.perf_counter()
        marks.append((began - start - spent) / 60)
        loss = evaluate(model, batches, *args)
        spent += time.perf_counter() - began
        return loss

    training.evaluate = timed_evaluate
    try:
        history = training.train(
            model,
            tokenizer,
            train_ids,
            val_ids,
            cfg,
            progress=False,
            callbacks=[UseTF32()] if deadline is None else [UseTF32(), Deadline(deadline)],  # TF32: as tinytorch train
            make_optimizer=make_optimizer or training.make_optimizer,
        )
    finally:
        training.evaluate = evaluate
    return [{**record, "minutes": minutes} for record, minutes in zip(history, marks[::2], strict=True)]


def quality(budgets: list[float]) -> None:
    """Item 5: validation loss of the preset's recipe after each training-time budget; quality.md and .png."""
    from tinytorch.data import shakespeare
    from tinytorch.embeddings import CharTokenizer

    preset = asdict(TrainConfig())  # the recipe: seed, batch, learning rates, evaluation
    train_text, val_text = shakespeare()
    tokenizer = CharTokenizer.from_text(train_text + val_text)
    train_ids = torch.tensor(tokenizer.encode(train_text), dtype=torch.uint8)
    val_ids = torch.tensor(tokenizer.encode(val_text), dtype=torch.uint8)
    config = GPTConfig.from_preset("shakespeare")

    torch.manual_seed(preset["seed"])
    calibration = timed_train(GPT(config), tokenizer, train_ids, val_ids, preset_recipe(50, 1))
    minutes_per_step = calibration[-1]["minutes"] / 50  # then updated to the pace of each run
    parameters = count_parameters(GPT(config))
    lines = [
        f"Machine: {machine()}. Command: `python benchmarks/run.py quality --minutes "
        f"{' '.join(f'{m:g}' for m in budgets)}`.",
        "",
        f"The shakespeare preset ({parameters / 1e6:.2f}M parameters) trained from scratch "
        f"with its recipe "
        f"(batch {preset['batch_size']}x{config.block_size}, lr {preset['lr']:g}, cosine to {preset['min_lr']:g}), "
        f"its number of steps fitted to each budget at the pace measured just before. "
        f"Validation: {preset['eval_batches']} fixed batches of the four held-out plays. "
        f"Training time excludes the evaluations.",
        "",
        "| budget | steps | characters seen | training time | train loss | val loss | val bits/char | val perplexity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = {}
    for budget in budgets:
        steps = max(1, round(budget / minutes_per_step))
        torch.manual_seed(preset["seed"])
        history = timed_train(GPT(config), tokenizer, train_ids, val_ids, preset_recipe(steps, 12))
        runs[budget] = history
        last = history[-1]
        minutes_per_step = last["minutes"] / steps
        seen = steps * preset["batch_size"] * config.block_size
        lines.append(
            f"| {budget:g} min | {steps:,} | {seen / 1e6:.2f}M | {last['minutes']:.1f} min | {last['train']:.3f} "
            f"| {last['val']:.3f} | {last['val'] / math.log(2):.2f} | {math.exp(last['val']):.2f} |"
        )
        print(lines[-1], flush=True)
    write_section("quality", lines)
    plot_quality(runs)


def tokens(budgets: list[float], contenders: list[str]) -> None:
    """Characters against subwords at equal compute: each tokenizer's model trained for the same training time,
    compared in bits per character of the held-out plays; tokens.md and tokens.png."""
    from tinytorch.bpe import BPETokenizer
    from tinytorch.data import id_dtype, shakespeare
    from tinytorch.embeddings import CharTokenizer

    preset = asdict(TrainConfig())  # the recipe: seed, batch, learning rates, evaluation
    train_text, val_text = shakespeare()
    tokenizers = {}
    for contender in contenders:  # BPE learned from the training plays only, as `tinytorch train --tokenizer bpe` does
        if contender == "chars":
            tokenizers["characters"] = CharTokenizer.from_text(train_text + val_text)
        else:
            tokenizers[f"BPE {int(contender):,}"] = BPETokenizer.train(train_text, int(contender))
    shape = GPTConfig.from_preset("shakespeare")
    lines = [
        f"Machine: {machine()}. Command: `python benchmarks/run.py tokens --minutes "
        f"{' '.join(f'{m:g}' for m in budgets)} --tokenizers {' '.join(contenders)}`.",
        "",
        f"One model shape (the shakespeare preset: {shape.n_layer} blocks, width {shape.n_embd}, context "
        f"{shape.block_size} tokens) with each tokenizer's vocabulary, trained with the preset's recipe for "
        "the same training time (steps fitted to the budget at each model's own pace, measured just before; "
        "evaluations not counted). Loss per token on 20 fixed batches of the held-out plays, converted to bits per "
        "character with the held-out plays' characters per token (the BPE tokenizers learned from the training "
        "plays only).",
        "",
        "| budget | tokenizer | vocabulary | characters per token | steps | characters seen | val loss per token "
        "| val bits per character |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = {}
    for budget in budgets:
        for name, tokenizer in tokenizers.items():
            train_ids = torch.tensor(tokenizer.encode(train_text), dtype=id_dtype(tokenizer.vocab_size))
            val_ids = torch.tensor(tokenizer.encode(val_text), dtype=id_dtype(tokenizer.vocab_size))
            chars_per_token = len(val_text) / len(val_ids)
            config = GPTConfig(**{**shape.to_dict(), "vocab_size": tokenizer.vocab_size})

            torch.manual_seed(preset["seed"])
            calibration = timed_train(GPT(config), tokenizer, train_ids, val_ids, preset_recipe(30, 1))
            steps = max(1, round(budget / (calibration[-1]["minutes"] / 30)))
            torch.manual_seed(preset["seed"])
            history = timed_train(GPT(config), tokenizer, train_ids, val_ids, preset_recipe(steps, 8))
            for record in history:
                record["bits per character"] = record["val"] / math.log(2) / chars_per_token
            runs[(budget, name)] = history
            last = history[-1]
            seen = steps * preset["batch_size"] * config.block_size * chars_per_token
            lines.append(
                f"| {budget:g} min | {name} | {tokenizer.vocab_size:,} | {chars_per_token:.2f} | {steps:,} "
                f"| {seen / 1e6:.2f}M | {last['val']:.3f} | **{last['bits per character']:.3f}** |"
            )
            print(lines[-1], flush=True)
    write_section("tokens", lines)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for (budget, name), history in runs.items():
        label = name if len(budgets) == 1 else f"{name}, {budget:g} min"
        ax.plot(
            [r["minutes"] for r in history], [r["bits per character"] for r in history], marker="o", ms=3, label=label
        )
    ax.set_xlabel("training time (minutes; evaluations not counted)")
    ax.set_ylabel("held-out bits per character")
    ax.set_title("Characters against subwords at equal training time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "tokens.png", dpi=110)


def plot_quality(runs: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for budget, history in runs.items():
        ax.plot([r["minutes"] for r in history], [r["val"] for r in history], marker="o", ms=3, label=f"{budget:g} min")
        ax.annotate(
            f"{history[-1]['val']:.2f}",
            (history[-1]["minutes"], history[-1]["val"]),
            xytext=(3, 4),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("training time (minutes, log scale; evaluations not counted)")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_title("What more compute buys: one run per budget, schedule fitted to it")
    ax.legend(title="budget")
    fig.tight_layout()
    fig.savefig(ROOT / "benchmarks" / "quality.png", dpi=110)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def minutes(budgets: list[float]) -> None:
    """`tinytorch train --minutes N` from the shell: its wall time against N (the goal: within 5%), its validation loss.
    The test command checks the planning with a clock that ticks, whatever the machine's speed; this is the real run."""
    import re
    import tempfile

    lines = [
        "# `tinytorch train --minutes N` against its budget",
        "",
        f"Machine: {machine()}. Command: `python benchmarks/run.py minutes --minutes {' '.join(map(str, budgets))}`.",
        "",
        "| --minutes | wall time (min, Python's start included) | wall / budget | steps | val loss |",
        "|---|---|---|---|---|",
    ]
    for budget in budgets:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            command = [sys.executable, "-m", "tinytorch", "train", "--minutes", f"{budget:g}", "--out", out]
            printed = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
            wall = (time.perf_counter() - start) / 60
        step, val = re.search(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", printed).groups()
        lines.append(f"| {budget:g} | {wall:.2f} | {wall / budget:.3f}x | {int(step):,} | {float(val):.3f} |")
        print(lines[-1], flush=True)
    write_section("minutes", lines)


def write_section(name: str, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / f"{name}.md").write_text(text)
    print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "sections", nargs="*", choices=["speed", "quality", "tokens", "minutes"], default=["speed", "quality"]
    )
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 10, 30], help="training budgets")
    parser.add_argument(
        "--tokenizers", nargs="+", default=["chars", "320", "512", "1024"], help="tokens: chars or BPE vocabulary sizes"
    )
    args = parser.parse_args()
    if any(m <= 0 for m in args.minutes):
        parser.error(f"--minutes takes training budgets in minutes > 0, got {args.minutes}; e.g. --minutes 2 10 30")
    bad = [t for t in args.tokenizers if t != "chars" and not (t.isdigit() and int(t) > 256)]
    if bad:
        parser.error(f"--tokenizers takes chars or BPE vocabulary sizes above 256, got {bad}; e.g. chars 320 1024")
    if "speed" in args.sections:
        speed()
    if "quality" in args.sections:
        quality(args.minutes)
    if "tokens" in args.sections:
        tokens(args.minutes, args.tokenizers)
    if "minutes" in args.sections:
        minutes(args.minutes)


if __name__ == "__main__":
    main()
