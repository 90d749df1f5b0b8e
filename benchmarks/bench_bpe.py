"""How fast tinytorch's pure-Python BPE trains and encodes, against rustbpe and tiktoken (Rust) in the same run.

    python benchmarks/bench_bpe.py              # about 1 minute on 2 cores: prints the table, writes benchmarks/bpe.md

Training: 1,024 tokens (256 bytes, 767 merges, <|endoftext|>) learned from the training plays of chapter 06 (4.3M
characters) with the GPT-4 pattern, by `BPETokenizer.train` and by rustbpe's `train_from_iterator` (vocab_size 1,023:
it counts no special token); both learn the same merges. Both get the plays as one string, as in the parity test,
so rustbpe's pre-split runs on one thread (it splits the strings of its input side by side); another row gives it the
plays in pieces of 1,000 lines, as it would read a corpus of documents (its merges then differ slightly, since no
chunk spans two pieces).
Encoding: the held-out plays (477k characters) with those 1,024 tokens, by `BPETokenizer.encode`, by tiktoken built
from our merges and by rustbpe's own `encode`. Ours keeps the ids of every distinct chunk it has encoded: "cold" is a
fresh tokenizer (the first text it sees), "warm" one that has encoded the same text before.
The contenders are interleaved round by round, so that all see the same machine state; each number is the median over
rounds. A ratio is how many times faster the reference is.
"""

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import rustbpe
import tiktoken

from tinytorch.bpe import GPT4_PATTERN, BPETokenizer
from tinytorch.data import shakespeare

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5


def medians(contenders: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, float]:
    """{name: median seconds of one call}, each contender called once per round, in turn, after one warm-up each."""
    for action in contenders.values():
        action()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, action in contenders.items():
            start = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def rustbpe_trained(texts: list[str]) -> rustbpe.Tokenizer:
    tokenizer = rustbpe.Tokenizer()
    tokenizer.train_from_iterator(iter(texts), 1023, pattern=GPT4_PATTERN)
    return tokenizer


def pieces(text: str, lines: int = 1000) -> list[str]:
    """The text in pieces of `lines` lines each."""
    all_lines = text.splitlines(keepends=True)
    return ["".join(all_lines[i : i + lines]) for i in range(0, len(all_lines), lines)]


def main() -> None:
    train_text, held_out = shakespeare()
    ours = BPETokenizer.train(train_text, 1024)
    reference = rustbpe_trained([train_text])
    tokens = [bytes(token) for token, _ in sorted(reference.get_mergeable_ranks(), key=lambda item: item[1])]
    assert tokens == [ours.vocab[i] for i in range(1023)], "rustbpe learned other merges: see tests/test_bpe.py"
    encoding = tiktoken.Encoding(
        name="shakespeare-1024",
        pat_str=ours.pattern,
        mergeable_ranks={ours.vocab[i]: i for i in range(1023)},
        special_tokens=ours.special_tokens,
    )
    ids = ours.encode(held_out)
    assert encoding.encode(held_out) == ids and reference.encode(held_out) == ids, "the encoders disagree"

    split = pieces(train_text)
    train = medians(
        {
            "ours": lambda: BPETokenizer.train(train_text, 1024),
            "rustbpe": lambda: rustbpe_trained([train_text]),
            "rustbpe, pieces": lambda: rustbpe_trained(split),
        }
    )
    saved = ours.to_dict()
    warm = BPETokenizer.from_dict(saved)
    encode = medians(
        {
            "cold": lambda: BPETokenizer.from_dict(saved).encode(held_out),
            "warm": lambda: warm.encode(held_out),
            "tiktoken": lambda: encoding.encode(held_out),
            "rustbpe": lambda: reference.encode(held_out),
        }
    )

    def row(what: str, ours_s: float, size: int, unit: str, name: str, reference_s: float) -> str:
        return (
            f"| {what} | {ours_s:.2f} s ({size / ours_s / 1e6:.2f}M {unit}/s) | {name} {reference_s:.3f} s "
            f"({size / reference_s / 1e6:.2f}M {unit}/s) | {ours_s / reference_s:.1f}x |"
        )

    n_train, n_held = len(train_text), len(held_out)
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, tiktoken {tiktoken.__version__}, rustbpe 0.1. "
        "Command: `python benchmarks/bench_bpe.py`.",
        "",
        "| what | tinytorch (pure Python) | reference (Rust) | reference faster by |",
        "|---|---|---|---|",
        row("train 1,024 tokens on the training plays", train["ours"], n_train, "chars", "rustbpe", train["rustbpe"]),
        row(
            "the same, rustbpe reading the plays as 1,000-line documents (pre-split on every core)",
            train["ours"],
            n_train,
            "chars",
            "rustbpe",
            train["rustbpe, pieces"],
        ),
        row("encode the held-out plays, cold", encode["cold"], n_held, "chars", "tiktoken", encode["tiktoken"]),
        row("encode the held-out plays, warm", encode["warm"], n_held, "chars", "tiktoken", encode["tiktoken"]),
        row("encode the held-out plays, cold", encode["cold"], n_held, "chars", "rustbpe", encode["rustbpe"]),
    ]
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "bpe.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
