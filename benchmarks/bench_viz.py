"""How fast the attention explorer redraws, against references measured in the same run.

    python benchmarks/bench_viz.py

For a 64-character text and the shipped Shakespeare model, times `AttentionExplorer.render` for a new
layer, a new head, a new query row, the all-heads view and a new text (which also recomputes the
maps), and prints each as milliseconds and as a ratio against two references: one forward pass of the
model on the same text, and a bare matplotlib draw (a 64 x 64 imshow saved to PNG, no labels).
Each number is the median over rounds, contenders interleaved. Target: a new layer or head < ~150 ms.
"""

import statistics
import time
from io import BytesIO

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch

from tinytorch.generation import load_pretrained
from tinytorch.viz import ALL_HEADS, AttentionExplorer

ROUNDS = 7
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks? It is "  # 64 characters


def bare_draw() -> bytes:
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(torch.rand(64, 64).numpy())
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    return buffer.getvalue()


def main() -> None:
    assert len(TEXT) == 64, len(TEXT)
    model, tokenizer = load_pretrained()
    explorers = {}  # one explorer per view, so that no view's timing pays for another's cache

    def explorer(name: str) -> AttentionExplorer:
        if name not in explorers:
            explorers[name] = AttentionExplorer(model, tokenizer, TEXT)
        return explorers[name]

    idx = torch.tensor([tokenizer.encode(TEXT)])
    other = TEXT[1:] + "e"
    texts = [TEXT, other]

    def new_text(r: int) -> bytes:
        return explorer("text").render(text=texts[r % 2])  # a different text each round: the maps are recomputed

    def forward(r: int):
        with torch.no_grad():
            return model(idx)

    contenders = {
        "forward pass (reference)": forward,
        "bare matplotlib draw (reference)": lambda r: bare_draw(),
        "new layer": lambda r: explorer("layer").render(layer=r % 6, head=0),
        "new head": lambda r: explorer("head").render(layer=0, head=r % 6),
        "new query row": lambda r: explorer("query").render(layer=0, head=0, query=r % 64),
        "all heads of a layer": lambda r: explorer("all").render(layer=r % 6, head=ALL_HEADS),
        "new text (maps + draw)": new_text,
    }
    for fn in contenders.values():  # warm-up: imports, font cache, first kernels
        fn(1)
    times = {name: [] for name in contenders}
    for r in range(ROUNDS):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn(r)
            times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    forward_ms, draw_ms = ms["forward pass (reference)"], ms["bare matplotlib draw (reference)"]
    print(f"attention explorer redraw, 64-character text, {torch.get_num_threads()} threads, median of {ROUNDS}")
    print(f"{'view':<34}{'ms':>8}{'x forward':>11}{'x bare draw':>13}")
    for name, value in ms.items():
        print(f"{name:<34}{value:8.1f}{value / forward_ms:11.1f}{value / draw_ms:13.1f}")
    worst = max(ms["new layer"], ms["new head"])
    print(f"new layer or head: {worst:.0f} ms (target < 150 ms): {'ok' if worst < 150 else 'SLOW'}")


if __name__ == "__main__":
    main()
