"""How long the attention explorer and the sampling playground take to answer a control change.

    python benchmarks/bench_viz.py

With the shipped Shakespeare model, for texts of 48, 256 and 1,000 characters (the model reads the last 256),
times what happens in Python when the learner changes a control: the handler that computes the new view and sends
it to the browser (the browser's own drawing is not included: it is a few milliseconds of JavaScript). Each number
is the median over rounds, printed in milliseconds and as a ratio against one forward pass of the model on the same
text, measured in the same run. Target: at most 100 ms per control change at 256 characters.

The same script measures an older tinytorch too, for a before/after table: it only sets the controls' values, so it
runs against any version whose explorer has `text`, `layer`, `head` and `query` widgets, e.g.
`git worktree add /tmp/before <commit> && PYTHONPATH=/tmp/before python benchmarks/bench_viz.py`.
"""

import statistics
import time

import matplotlib

matplotlib.use("Agg")

import torch

import tinytorch
from tinytorch.checkpoint import load_pretrained
from tinytorch.viz import AttentionExplorer

ROUNDS = 7
SPEECH = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
    "Arise, fair sun, and kill the envious moon,\nWho is already sick and pale with grief,\n"
    "That thou her maid art far more fair than she:\n"
)


def median_ms(action, rounds: int = ROUNDS) -> float:
    """Median wall time of action(r) over rounds, in milliseconds, after one untimed warm-up."""
    action(rounds)
    times = []
    for r in range(rounds):
        start = time.perf_counter()
        action(r)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def explorer_rows(model, tokenizer, length: int) -> dict[str, float]:
    text = (SPEECH * (length // len(SPEECH) + 1))[-length:]
    explorer = AttentionExplorer(model, tokenizer, text)
    idx = torch.tensor([tokenizer.encode(text[-model.config.block_size :])])
    heads = [value for _, value in explorer.head.options]
    together = next(value for value in heads if not isinstance(value, int))  # "all heads" (mean, max or a grid)
    positions = explorer.query.max + 1
    other = text[:-1] + ("e" if text[-1] != "e" else "a")

    def forward(r: int) -> None:
        with torch.no_grad():
            model(idx)

    def set_value(control, values):
        return lambda r: setattr(control, "value", values[r % len(values)])

    return {
        "forward pass (reference)": median_ms(forward),
        "new layer": median_ms(set_value(explorer.layer, [1, 2, 3, 0])),
        "new head": median_ms(set_value(explorer.head, [1, 2, 3, 0])),
        "all heads": median_ms(lambda r: setattr(explorer.head, "value", [together, 0][r % 2])),
        "new query": median_ms(set_value(explorer.query, [positions // 2, positions - 1, positions // 3])),
        "new text (maps + view)": median_ms(set_value(explorer.text, [other, text])),
    }


def playground_rows(model, tokenizer) -> dict[str, float]:
    from tinytorch.viz import SamplingPlayground

    playground = SamplingPlayground(model, tokenizer, SPEECH[-200:])
    return {
        "temperature": median_ms(lambda r: setattr(playground.temperature, "value", [0.5, 1.0][r % 2])),
        "top-k": median_ms(lambda r: setattr(playground.top_k, "value", [5, 0][r % 2])),
        "top-p": median_ms(lambda r: setattr(playground.top_p, "value", [0.5, 1.0][r % 2])),
        "repetition penalty": median_ms(lambda r: setattr(playground.penalty, "value", [1.5, 1.0][r % 2])),
        "sample one character": median_ms(lambda r: playground.sample(1)),
    }


def main() -> None:
    model, tokenizer = load_pretrained()
    print(f"tinytorch from {tinytorch.__file__}; {torch.get_num_threads()} threads; median of {ROUNDS} rounds")
    print("explorer: a control change, in ms (and x one forward pass on the same text)")
    results = {length: explorer_rows(model, tokenizer, length) for length in (48, 256, 1000)}
    print(f"{'control':<26}" + "".join(f"{f'{n} characters':>22}" for n in results))
    for name in results[48]:
        cells = [
            f"{rows[name]:8.1f} ms ({rows[name] / rows['forward pass (reference)']:5.1f}x)" for rows in results.values()
        ]
        print(f"{name:<26}" + "".join(f"{cell:>22}" for cell in cells))
    worst = max(value for name, value in results[256].items() if name != "forward pass (reference)")
    verdict = "met" if worst <= 100 else "NOT met"
    print(f"slowest control change at 256 characters: {worst:.0f} ms (target <= 100 ms): {verdict}")
    try:
        rows = playground_rows(model, tokenizer)
    except ImportError:
        print("playground: not in this version of tinytorch")
        return
    print("playground (200-character prompt): a control change, in ms")
    for name, value in rows.items():
        print(f"{name:<26}{value:8.1f} ms")


if __name__ == "__main__":
    main()
