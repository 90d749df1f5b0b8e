"""The checks of notebooks/08_attention_explorer.ipynb: a reference and a verify function per piece and exercise."""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinytorch.attention import causal_mask
from tinytorch.checks import add_hints, piece
from tinytorch.checks.helpers import Wrong, _compare, _describe, _pair, _randn, _same, _shape


def _previous_character_head(maps: torch.Tensor) -> tuple[int, int]:
    """(layer, head) with the largest mean weight on the previous character, for maps (n_layer, nh, T, T)."""
    scores = maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1)  # (n_layer, nh)
    best = int(scores.argmax())
    return best // maps.size(1), best % maps.size(1)


def _row_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy of every row of a (T, T) map of weights, with 0 * log 0 = 0: (T,)."""
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))  # 0 * log 0 counts as 0
    return -(weights * logs).sum(dim=-1)  # (T,)


def _planted_maps(n_layer: int, n_head: int, T: int, winner: tuple, itself: tuple, seed: int) -> torch.Tensor:
    """Random causal attention maps (n_layer, nh, T, T): head `winner` looks at the previous character, `itself` at
    the character itself."""
    scores = _randn(n_layer, n_head, T, T, seed=seed)
    scores[winner] += 4 * torch.ones(T - 1).diag(-1)  # the diagonal below the main one: key t - 1
    scores[itself] += 6 * torch.eye(T)
    return F.softmax(scores.masked_fill(~causal_mask(T, T), float("-inf")), dim=-1)  # rows sum to 1


@piece(
    "my_previous_character_head",
    "08_attention_explorer",
    "the head that looks most at the previous character",
    _previous_character_head,
)
def _verify_previous_character_head(my_previous_character_head: Callable) -> None:
    for n_layer, n_head, winner, itself, seed in ((3, 4, (2, 1), (0, 3), 380), (2, 6, (0, 5), (1, 2), 381)):
        maps = _planted_maps(n_layer, n_head, 10, winner, itself, seed)
        out = _pair(my_previous_character_head(maps.clone()), "(layer, head)")
        if any(isinstance(i, torch.Tensor) for i in out):
            raise Wrong("return Python ints, (layer, head): int(...)")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in out):
            raise Wrong(f"return two ints, (layer, head); got {_describe(out)}")
        if out == winner:
            continue
        where = f"for maps of shape {tuple(maps.shape)}"
        if out == winner[::-1]:
            raise Wrong(f"{where} you returned {out}: return (layer, head), in that order")
        if out == itself:
            raise Wrong(
                f"{where}, layer {out[0]}, head {out[1]} attends to each character itself (the main diagonal); "
                "the previous character is on the diagonal just below it, offset=-1"
            )
        if not (0 <= out[0] < n_layer and 0 <= out[1] < n_head):
            raise Wrong(f"{where}, {out} is not a (layer, head): the layer is below {n_layer}, the head below {n_head}")
        mean = maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1)  # (n_layer, nh)
        raise Wrong(
            f"{where}, layer {out[0]}, head {out[1]} puts a mean weight of {mean[out]:.2f} on the previous character, "
            "but another head puts more: take the argmax over every layer and head"
        )


@piece("my_row_entropy", "08_attention_explorer", "the entropy of every row of an attention map", _row_entropy)
def _verify_row_entropy(my_row_entropy: Callable) -> None:
    T = 6
    allowed = causal_mask(T, T)  # (T, T)
    uniform = allowed / allowed.sum(dim=-1, keepdim=True)  # row t: 1 / (t + 1) on keys 0..t
    drawn = F.softmax(_randn(T, T, seed=390).masked_fill(~allowed, float("-inf")), dim=-1)
    cases = [
        (uniform, torch.arange(1, T + 1).log(), "uniform causal rows"),  # log(t + 1)
        (torch.eye(T), torch.zeros(T), "rows that each look at one key"),  # 0
        (drawn, _row_entropy(drawn), "random causal rows"),
    ]
    for weights, expected, what in cases:
        wrong_shapes = {(T, T): f"expected shape ({T},), got ({T}, {T}): one entropy per row, a sum over dim=-1"}
        out = _shape(my_row_entropy(weights.clone()), (T,), "one entropy per row", mistakes=wrong_shapes).detach()
        if torch.isnan(out).any():
            raise Wrong(
                f"for {what} the entropy holds NaN: 0 * log 0 gave NaN; count it as 0, "
                "e.g. torch.where(weights > 0, weights.log(), 0)"
            )
        if _same(out, expected):
            continue
        if _same(out, -expected):
            raise Wrong(f"for {what} the entropy came out negative: it is -sum(p * log p)")
        if _same(out, expected / math.log(2)):
            raise Wrong("use the natural log, weights.log(), not log2")
        columns = -(weights * torch.where(weights > 0, weights.log(), 0.0)).sum(dim=0)  # (T,): one per key
        if _same(out, columns):
            raise Wrong("that sums over the queries: each row's entropy is a sum over its keys, dim=-1")
        try:
            _compare(out, expected)
        except Wrong as wrong:
            raise Wrong(f"for {what}: {wrong}") from None


add_hints(
    {
        "my_previous_character_head": (
            "A previous-character head puts its weight just left of the diagonal: query t on key t − 1.",
            "For every layer and head, average the map's entries one below the diagonal (.diagonal with offset=-1 "
            "over the last two dimensions), find the largest, and turn its flat index into (layer, head).",
        ),
        "my_row_entropy": (
            "Entropy measures how spread a row of weights is: 0 when all the weight is on one key, ln T when it is "
            "spread evenly; a weight of 0 adds nothing (0 · log 0 counts as 0).",
            "Sum −w · ln w over each row, with the log of the zero weights replaced by 0 (torch.where) so that no nan "
            "appears.",
        ),
    }
)
