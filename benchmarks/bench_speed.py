"""Speed and memory of tinytorch against references measured in the same run, on this machine.

    python benchmarks/bench_speed.py            # writes benchmarks/results.md and prints it

Contenders are interleaved round by round so that both see the same machine state; each number is
the median over rounds. Targets (issue 8): training >= 1.2x transformers; cached generation >= 1.5x
transformers `generate`; cached >= 10x uncached at 1000 new tokens.
"""

import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from tinytorch.config import GPTConfig, estimate_flops_per_token
from tinytorch.generation import KVCache, generate
from tinytorch.gpt import GPT, next_token_loss
from tinytorch.training import TrainConfig, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5


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
    runs = {
        "tinytorch, KV cache": lambda: generate(ours, prompt, new_tokens, do_sample=False, use_cache=True),
        "tinytorch, no cache": lambda: generate(ours, prompt, new_tokens, do_sample=False, use_cache=False),
        "transformers generate": lambda: theirs.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=config.vocab_size - 1,
        ),
    }
    rounds = 3 if new_tokens <= 256 else 1
    times = {name: [] for name in runs}
    with torch.no_grad():
        for _ in range(rounds):
            for name, run in runs.items():
                times[name].append(time_call(run, repeat=1))
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
    """Wall time of re-executing every notebook under nbval."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-q", "notebooks/"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    shakespeare = GPTConfig.from_preset("shakespeare")
    long_context = GPTConfig(vocab_size=76, block_size=1024, n_layer=6, n_head=6, n_embd=192)
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, float32 on CPU. Command: `python benchmarks/bench_speed.py`.",
        "",
        "| what | tinytorch | reference | ratio | target |",
        "|---|---|---|---|---|",
    ]

    train = bench_training(shakespeare, batch_size=8)
    tokens = 8 * shakespeare.block_size
    ratio = train["transformers"] / train["tinytorch"]
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
        speed = bench_generation(long_context, new)
        cached, uncached, hf = (
            speed["tinytorch, KV cache"],
            speed["tinytorch, no cache"],
            speed["transformers generate"],
        )
        lines.append(
            f"| greedy generation, 10 + {new} tokens, cache | {cached:,.0f} tok/s | transformers {hf:,.0f} tok/s "
            f"| {cached / hf:.2f}x | >= 1.5x |"
        )
        lines.append(
            f"| greedy generation, 10 + {new} tokens, cache vs none | {cached:,.0f} tok/s | no cache "
            f"{uncached:,.0f} tok/s | {cached / uncached:.1f}x | {'>= 10x' if new == 1000 else ''} |"
        )

    memory = peak_training_memory(batch_size=8)
    weights = sum(p.numel() for p in GPT(shakespeare).parameters()) * 4
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

    seconds = course_seconds()
    lines.append(f"| re-executing the whole course (nbval) | {seconds:.0f} s | | | <= 180 s |")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
