"""The checks of notebooks/03_attention.ipynb: a reference and a verify function per piece and exercise."""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinytorch.attention import CausalSelfAttention, attention_weights, causal_mask
from tinytorch.checks import add_hints, add_shortcuts, piece
from tinytorch.checks.helpers import (
    Wrong,
    _compare,
    _num,
    _number,
    _position,
    _randn,
    _same,
    _shape,
    _module_output,
)
from tinytorch.config import GPTConfig, count_parameters, shapes_only


def _attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Scores of every query against every key: (..., T, hs), (..., T, hs) -> (..., T, T)."""
    return q @ k.transpose(-2, -1)  # (..., T, T)


def _scale_scores(scores: torch.Tensor, head_size: int) -> torch.Tensor:
    """Scores divided by √head_size, so that their variance stays near 1."""
    return scores / math.sqrt(head_size)


def _mask_future(scores: torch.Tensor) -> torch.Tensor:
    """Scores (..., T, T) with -inf where the key comes after the query; a new tensor."""
    T = scores.size(-1)
    return scores.masked_fill(~causal_mask(T, T, scores.device), float("-inf"))


def _softmax_rows(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension: every row becomes positive weights that sum to 1."""
    return F.softmax(scores, dim=-1)


def _weighted_sum(weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Each position's weighted sum of the values: (..., T, T), (..., T, hs) -> (..., T, hs)."""
    return weights @ v


def _split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, nh, T, hs)."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, T, nh, hs) -> (B, nh, T, hs)


def _merge_heads(y: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, C)."""
    B, nh, T, hs = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, T, nh, hs) -> (B, T, C)


@piece("attention_scores", "03_attention", "scores q·kᵀ of every query against every key", _attention_scores)
def _verify_attention_scores(attention_scores: Callable) -> None:
    q, k = _randn(2, 5, 4, seed=30), _randn(2, 5, 4, seed=31)  # (B, T, hs)
    expected = q @ k.transpose(-2, -1)  # (B, T, T)
    hint = "(B, T, hs) @ (B, hs, T) -> (B, T, T): transpose k's last two dimensions"
    out = _shape(attention_scores(q.clone(), k.clone()), (2, 5, 5), hint)
    if not _same(out, expected) and _same(out, expected.transpose(-2, -1)):
        raise Wrong("scores[t, j] must be q_t · k_j; yours is k_t · q_j: did you swap q and k?")
    if not _same(out, expected) and (_same(out, expected / 2) or _same(out, expected / 4)):
        raise Wrong("the scores are already divided: that is the next step (scale_scores); here return q @ kᵀ")
    _compare(out, expected)
    q, k = _randn(2, 3, 5, 4, seed=32), _randn(2, 3, 5, 4, seed=33)  # (B, nh, T, hs): several heads
    hint = "with heads, q and k are (B, nh, T, hs): transpose the last two dimensions, k.transpose(-2, -1)"
    try:
        out = attention_scores(q.clone(), k.clone())
    except RuntimeError as error:
        raise Wrong(f"with q and k of shape (2, 3, 5, 4) it raised RuntimeError: {str(error)[:120]}; {hint}") from None
    _compare(_shape(out, (2, 3, 5, 5), hint), q @ k.transpose(-2, -1))


@piece("scale_scores", "03_attention", "scores divided by √hs, so that their variance stays near 1", _scale_scores)
def _verify_scale_scores(scale_scores: Callable) -> None:
    hs = 64
    q, k = _randn(4, 16, hs, seed=40), _randn(4, 16, hs, seed=41)  # (B, T, hs), entries of variance 1
    scores = q @ k.transpose(-2, -1)  # (B, T, T): variance about hs
    out = _shape(scale_scores(scores.clone(), hs), (4, 16, 16))
    expected = scores / math.sqrt(hs)
    if _same(out, expected):
        return
    variance = _num(out.detach().double().var(), 2)
    if _same(out, scores):
        raise Wrong(f"the scores' variance is {variance}, expected about 1: did you divide by √hs?")
    if _same(out, scores / hs):
        raise Wrong(f"the scores' variance is {variance}, expected about 1: divide by √hs, not hs")
    if _same(out, scores / math.sqrt(scores.size(-1))):
        raise Wrong("divide by √head_size, the length of the q and k vectors, not by the scores' last dimension (T)")
    if _same(out, scores * math.sqrt(hs)):
        raise Wrong(f"the scores' variance is {variance}, expected about 1: divide by √hs, do not multiply")
    _compare(out, expected)


@piece("mask_future", "03_attention", "-inf on the scores of keys that come after their query", _mask_future)
def _verify_mask_future(mask_future: Callable) -> None:
    scores = _randn(2, 5, 5, seed=50)  # (B, T, T)
    given = scores.clone()
    out = _shape(mask_future(given), (2, 5, 5)).detach()
    future = ~causal_mask(5, 5)  # (T, T): True above the diagonal, key j after query t
    past = torch.ones(5, 5, dtype=torch.bool).tril(diagonal=-1)
    diagonal = torch.eye(5, dtype=torch.bool)
    hidden = torch.isneginf(out)  # (B, T, T)
    if (out[..., future] == 0).all() and not hidden.any():
        raise Wrong("hidden scores must be -inf, not 0: softmax still gives a score of 0 a weight")
    if hidden[..., past].any() and not hidden[..., future].all():
        raise Wrong("the past is hidden instead of the future: hide keys after their query (j > t, above the diagonal)")
    if hidden[..., diagonal].any():
        raise Wrong("a token may look at itself: keep the diagonal")
    if not hidden[..., future].all():
        shown = out.masked_fill(~future, float("-inf"))  # only the future entries, -inf where correctly hidden
        where = _position(int((~torch.isneginf(shown)).flatten().nonzero()[0]), out.shape)
        value = out[where].item()
        if value < -1e3:
            raise Wrong(f"hidden scores must be float('-inf'), got {_num(value, 2)}: use float('-inf')")
        raise Wrong(
            f"the score at position {where} (query {where[-2]}, key {where[-1]}) must be -inf: hide every key j > t"
        )
    _compare(out, _mask_future(scores))  # the rest unchanged
    if not torch.equal(given, scores):
        raise Wrong("your mask_future changed its input: use masked_fill, not masked_fill_: return a new tensor")
    scores = _randn(2, 3, 4, 4, seed=51)  # (B, nh, T, T): several heads, another T
    _compare(mask_future(scores.clone()), _mask_future(scores))


@piece("softmax_rows", "03_attention", "softmax of each row, from scratch, safe for large scores", _softmax_rows)
def _verify_softmax_rows(softmax_rows: Callable) -> None:
    scores = _randn(2, 4, 6, seed=60) * 2  # (B, T, T) stand-in: 4 rows of 6 scores
    out = _shape(softmax_rows(scores.clone()), (2, 4, 6)).detach()
    expected = F.softmax(scores, dim=-1)
    if not _same(out, expected):
        if torch.allclose(out.sum(dim=-2), torch.ones(2, 6), atol=1e-5):
            raise Wrong("the columns sum to 1, the rows must: sum over dim=-1")
        if torch.allclose(out.sum(), torch.tensor(1.0), atol=1e-5):
            raise Wrong("the whole tensor sums to 1, each row must: e.sum(dim=-1, keepdim=True)")
        _compare(out, expected)
    large = _randn(2, 4, 6, seed=61) * 3 + 1000  # rows of scores around 1000: exp(1000) overflows
    out = _shape(softmax_rows(large.clone()), (2, 4, 6)).detach()
    if not torch.isfinite(out).all():
        raise Wrong("softmax overflows on large scores: subtract each row's max before exp")
    _compare(out, F.softmax(large, dim=-1))
    masked = _mask_future(_randn(2, 5, 5, seed=62))  # -inf above the diagonal, as after mask_future
    out = _shape(softmax_rows(masked.clone()), (2, 5, 5)).detach()
    hidden = torch.isneginf(masked)
    if not (out[hidden] == 0).all():
        value = out[hidden][out[hidden] != 0][0].item()
        raise Wrong(f"a score of -inf must get weight 0, got {_num(value, 2)}: exp(-inf - max) = 0")
    _compare(out, F.softmax(masked, dim=-1))


@piece("causal_weights", "03_attention", "the four steps together: scores, scale, mask, softmax", attention_weights)
def _verify_causal_weights(causal_weights: Callable) -> None:
    T, hs = 6, 16
    q, k = _randn(2, T, hs, seed=70), _randn(2, T, hs, seed=71)  # (B, T, hs)
    out = _shape(causal_weights(q.clone(), k.clone()), (2, T, T), "(B, T, hs) x 2 -> (B, T, T)").detach()
    expected = attention_weights(q, k)  # (B, T, T)
    if _same(out, expected):
        return
    sums = out.sum(dim=-1)  # (B, T)
    off = ~torch.isclose(sums, torch.ones_like(sums), atol=1e-4)  # NaN and inf are off too
    if off.any():
        b, t = _position(int(off.flatten().nonzero()[0]), off.shape)
        raise Wrong(f"row {t} sums to {_num(sums[b, t], 2)}, not 1: is the mask applied before the softmax?")
    future = ~causal_mask(T, T)  # (T, T): True above the diagonal
    ahead = out.masked_fill(~future, 0).abs()  # (B, T, T): the weights on future keys
    if (ahead > 1e-6).any():
        b, t, _ = _position(int((ahead > 1e-6).flatten().nonzero()[0]), ahead.shape)
        j = int(ahead[b, t].argmax())
        raise Wrong(
            f"row {t} puts weight {_num(out[b, t, j], 2)} on a future position (key {j}): "
            "is the mask applied before the softmax?"
        )
    raw = (q @ k.transpose(-2, -1)).masked_fill(future, float("-inf"))  # (B, T, T), unscaled
    if _same(out, F.softmax(raw, dim=-1)):
        raise Wrong("the weights are too sharp: did you divide the scores by √hs?")
    if _same(out, F.softmax(raw / hs, dim=-1)):
        raise Wrong("the weights are too flat: divide the scores by √hs, not hs")
    _compare(out, expected)


@piece("weighted_sum", "03_attention", "each position's weighted sum of the values, weights @ v", _weighted_sum)
def _verify_weighted_sum(weighted_sum: Callable) -> None:
    weights = attention_weights(_randn(2, 5, 4, seed=80), _randn(2, 5, 4, seed=81))  # (B, T, T), causal rows
    v = _randn(2, 5, 3, seed=82)  # (B, T, hs)
    out = _shape(weighted_sum(weights.clone(), v.clone()), (2, 5, 3), "(B, T, T) @ (B, T, hs) -> (B, T, hs)")
    if not _same(out, weights @ v) and _same(out, weights.transpose(-2, -1) @ v):
        raise Wrong("output 0 mixes in values of later positions: use weights @ v")
    _compare(out, weights @ v)
    weights = attention_weights(_randn(2, 2, 5, 4, seed=83), _randn(2, 2, 5, 4, seed=84))  # (B, nh, T, T)
    v = _randn(2, 2, 5, 3, seed=85)  # (B, nh, T, hs)
    _compare(_shape(weighted_sum(weights.clone(), v.clone()), (2, 2, 5, 3), "with heads too"), weights @ v)


@piece("split_heads", "03_attention", "(B, T, C) -> (B, nh, T, hs): one (T, hs) table per head", _split_heads)
def _verify_split_heads(split_heads: Callable) -> None:
    B, T, C, nh = 2, 5, 12, 3
    hs = C // nh
    x = _randn(B, T, C, seed=90)
    wrong_shapes = {
        (B, T, nh, hs): f"expected shape {(B, nh, T, hs)}, got {(B, T, nh, hs)}: "
        "transpose(1, 2) puts the heads before the positions"
    }
    out = _shape(split_heads(x.clone(), nh), (B, nh, T, hs), mistakes=wrong_shapes)
    if not torch.equal(out[:, 0, 1], x[:, 1, :hs]):
        raise Wrong("head 0 at position 1 should hold x[:, 1, :hs]: view as (B, T, nh, hs), then transpose(1, 2)")
    _compare(out, _split_heads(x, nh))


@piece("merge_heads", "03_attention", "(B, nh, T, hs) -> (B, T, C): the heads side by side again", _merge_heads)
def _verify_merge_heads(merge_heads: Callable) -> None:
    B, nh, T, hs = 2, 3, 5, 4
    y = _randn(B, nh, T, hs, seed=91)
    out = _shape(merge_heads(y.clone()), (B, T, nh * hs), "(B, nh, T, hs) -> (B, T, nh * hs)")
    expected = _merge_heads(y)
    if not _same(out, expected) and _same(out, y.reshape(B, T, nh * hs)):
        raise Wrong(
            "position 0's output holds numbers from other positions: transpose(1, 2) back before joining the heads"
        )
    _compare(out, expected)


ATTENTION_PARTS = {
    "qkv": "the fused Linear(C, 3C) that makes q, k and v at once (GPT-2's c_attn)",
    "proj": "the Linear(C, C) that mixes the heads' outputs",
}


def _attention_by_hand(x: torch.Tensor, qkv: torch.Tensor, proj, n_head: int, order=(0, 1, 2), **options):
    """Causal self-attention from the parts, with one thing changed by `options` (for the diagnosis of mistakes):
    mask=False, scale=False, heads=1 or project=False. qkv is the (B, T, 3C) output of the fused Linear."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (qkv.split(C, dim=2)[i] for i in order)  # 3 x (B, T, C)
    heads = options.get("heads", n_head)
    q, k, v = (t.view(B, T, heads, C // heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1)  # (B, nh, T, T)
    if options.get("scale", True):
        scores = scores / math.sqrt(C // heads)
    if options.get("mask", True):
        scores = scores.masked_fill(~causal_mask(T, T), float("-inf"))
    y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
    return proj(y) if options.get("project", True) else y


@piece(
    "CausalSelfAttention",
    "03_attention",
    "causal self-attention as a module: qkv and proj in __init__, your functions in forward",
    CausalSelfAttention,
)
def _verify_causal_self_attention(attention_class: Callable) -> None:
    reference, x, out = _module_output(attention_class, CausalSelfAttention, ATTENTION_PARTS, seed=160, T=6)
    with torch.no_grad():
        expected = reference(x)
        if _same(out, expected):
            return
        qkv, proj = reference.qkv(x), reference.proj  # (B, T, 3C)
        mistakes = [
            (dict(mask=False), "the future is not masked: each position may only look at itself and before"),
            (dict(scale=False), "the scores are not scaled: divide them by √hs before the softmax"),
            (dict(heads=1), "one head of width C: split q, k and v into n_head heads of C // n_head numbers"),
            (dict(project=False), "the heads' outputs go through self.proj at the end"),
            (dict(order=(1, 0, 2)), "qkv's output splits into q, k and v in that order, along its last dimension"),
            (dict(order=(0, 2, 1)), "qkv's output splits into q, k and v in that order, along its last dimension"),
        ]
        for options, message in mistakes:
            if _same(out, _attention_by_hand(x, qkv, proj, reference.n_head, **options)):
                raise Wrong(message)
        _compare(out, expected)


def _attention_parameters(C: int) -> int:
    """Parameters of CausalSelfAttention of width C, with biases."""
    with shapes_only():  # only shapes are counted: no memory, no random numbers
        return count_parameters(CausalSelfAttention(GPTConfig(n_embd=C, n_head=1)))


def _bidirectional_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Softmax(q k^T / sqrt(hs)) without a mask: (..., T, hs) x 2 -> (..., T, T)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(k.size(-1))  # (..., T, T): no mask
    return F.softmax(scores, dim=-1)


def _window_mask(T: int, window: int) -> torch.Tensor:
    """(T, T) bool: True where 0 <= t - j < window."""
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T): t - j
    return (distance >= 0) & (distance < window)


@piece("my_attention_parameters", "03_attention", "the parameters of attention of width C", _attention_parameters)
def _verify_attention_parameters(my_attention_parameters: Callable) -> None:
    for C, n_head in ((32, 1), (32, 4), (128, 8)):
        call = f"my_attention_parameters({C})"
        got = _number(my_attention_parameters(C), f"{call}'s result")
        with shapes_only():
            expected = count_parameters(CausalSelfAttention(GPTConfig(n_embd=C, n_head=n_head)))
        if got == expected:
            continue
        hint = ""
        if got in (4 * C * C, 3 * C * C):
            hint = ": count the biases too; a Linear(C, n) has n of them"
        if got in (3 * C * C + 3 * C, 3 * C * C):
            hint += ": the output projection, Linear(C, C), counts too"
        raise Wrong(
            f"{call} returned {_num(got)}, but CausalSelfAttention of width {C} with {n_head} head(s) has "
            f"{'more' if got < expected else 'fewer'} parameters{hint or ': count the qkv and proj Linear layers'}"
        )


@piece("my_bidirectional_weights", "03_attention", "attention weights without the causal mask", _bidirectional_weights)
def _verify_bidirectional_weights(my_bidirectional_weights: Callable) -> None:
    for shape, seed in (((2, 2, 6, 8), 330), ((3, 5, 4), 332)):  # (B, nh, T, hs), then (B, T, hs)
        T, hs = shape[-2], shape[-1]
        q, k = _randn(*shape, seed=seed), _randn(*shape, seed=seed + 1)
        hint = "q and k (..., T, hs) give weights (..., T, T)"
        out = _shape(my_bidirectional_weights(q.clone(), k.clone()), (*shape[:-1], T), hint).detach()
        expected = _bidirectional_weights(q, k)
        if _same(out, expected):
            continue
        if (out[..., ~causal_mask(T, T)] == 0).all():
            raise Wrong(
                "the weights above the diagonal are 0: you masked the future; an encoder lets every token "
                "see every other token, so leave out the mask"
            )
        sums = out.double().sum(dim=-1)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            raise Wrong("each row of weights must sum to 1: softmax over the keys, dim=-1")
        raw = q @ k.transpose(-2, -1)  # (..., T, T), unscaled
        if _same(out, F.softmax(raw, dim=-1)):
            raise Wrong("the weights are too sharp: did you divide the scores by √hs?")
        if _same(out, F.softmax(raw / hs, dim=-1)):
            raise Wrong("the weights are too flat: divide the scores by √hs, not hs")
        _compare(out, expected)


@piece("my_window_mask", "03_attention", "a sliding-window causal mask", _window_mask)
def _verify_window_mask(my_window_mask: Callable) -> None:
    for T, window in ((6, 3), (6, 6), (6, 1), (5, 9)):
        call = f"my_window_mask({T}, {window})"
        out = _shape(my_window_mask(T, window), (T, T), what=f"{call}'s result")
        if out.dtype != torch.bool:
            raise Wrong(f"{call} has dtype {out.dtype}: return a bool tensor, e.g. (t - j >= 0) & (t - j < window)")
        if window >= T:
            want = causal_mask(T, T)  # every earlier token fits in the window
        else:
            want = torch.eye(T, dtype=torch.bool) if window == 1 else _window_mask(T, window)
        if torch.equal(out, want):
            continue
        if torch.equal(out, want.T):
            raise Wrong(f"{call} lets queries look at later keys: True where the key j is at or before the query t")
        if torch.equal(out, _window_mask(T, window + 1)):
            raise Wrong(f"{call} is one too wide: token t sees itself and the window - 1 before it, t - j < window")
        if window > 1 and torch.equal(out, _window_mask(T, window - 1)):
            raise Wrong(f"{call} is one too narrow: token t sees itself too, t - j >= 0")
        t, j = _position(int((out != want).flatten().nonzero()[0]), out.shape)
        raise Wrong(
            f"in {call}, query {t} {'may' if want[t, j] else 'may not'} look at key {j} (t - j = {t - j}), "
            f"but the mask holds {bool(out[t, j])} there"
        )


add_hints(
    {
        "CausalSelfAttention": (
            "The module owns two Linear layers: one that makes q, k and v from the stream at once, one that mixes "
            "the heads' outputs; forward is this chapter's functions in order. Name the layers as the package does "
            "(qkv, proj), or GPT-2's weights will not load into yours.",
            "In __init__, keep n_head and make qkv, a Linear from n_embd to 3 · n_embd, and proj, a Linear from n_embd "
            "to n_embd (both with bias=config.bias). In forward: split qkv's output into q, k and v along the last "
            "dimension (.split with size C), split each into heads, take the causal weights of q and k, their "
            "weighted sum of v, merge the heads, and apply proj.",
            "Your split_heads, causal_weights, weighted_sum and merge_heads from above do the middle; "
            "the order of the three parts of qkv's output is q, then k, then v.",
        ),
        "attention_scores": (
            "Score [t, j] is the dot product of query t with key j, for every pair at once: one matrix product of q "
            "with k transposed, where transposed swaps only the last two dimensions, so that B (and later nh) "
            "ride along.",
            "Turn k from (..., T, hs) into (..., hs, T) with .transpose on its last two dimensions (-2 and -1, which "
            "works with or without heads), then take the matrix product of q with it: (..., T, hs) times "
            "(..., hs, T) gives (..., T, T).",
            "Keep q first (the product the other way round gives key against query), and do not divide yet: "
            "that is scale_scores.",
        ),
        "scale_scores": (
            "A dot product of hs numbers of variance 1 has a variance of about hs; dividing the scores by √hs brings "
            "it back to about 1, whatever the head size.",
            "Divide the scores by the square root of head_size, with math.sqrt: not by head_size itself, and not by "
            "the scores' last dimension, which is T.",
        ),
        "mask_future": (
            "Query t may look at key j only when j ≤ t: every score above the diagonal (a key after its query) must "
            "become −∞, so that softmax gives it weight 0; the diagonal stays, a token sees itself.",
            "causal_mask(T, T, device) is True where a query may look: invert it with ~ and give it to masked_fill "
            "with float('-inf'), T being the scores' last dimension; the (T, T) mask broadcasts over B and nh.",
            "Use masked_fill, which returns a new tensor, not masked_fill_, which changes the input; and −∞, not 0 or "
            "a large negative number: a score of 0 still gets weight after the softmax.",
        ),
        "softmax_rows": (
            "Softmax turns each row (the last dimension) into positive weights that sum to 1: exponentiate, then "
            "divide by the row's sum; subtract each row's largest score first, or exp overflows on large scores.",
            "Take each row's maximum with .amax over dim=-1 with keepdim=True, subtract it from the scores, "
            "exponentiate with .exp(), and divide by the sum of those over dim=-1, again with keepdim=True, so that "
            "the (..., 1) shape broadcasts back over the row.",
            "Sum over dim=-1 only, the keys: the rows must sum to 1, not the columns or the whole tensor. Scores of −∞ "
            "need nothing special, their exp is 0.",
        ),
        "causal_weights": (
            "Chain the four functions you wrote: scores, scale, mask, softmax; the mask must come before the softmax, "
            "so that hidden keys get weight exactly 0 and the visible ones share all of it.",
            "Compute attention_scores of q and k, pass them to scale_scores with the head size (the last dimension "
            "of q), then to mask_future, then to softmax_rows, and return the weights (B, T, T).",
        ),
        "weighted_sum": (
            "Output t mixes the values: the sum over j of weight [t, j] times v_j. For all t at once that is one more "
            "matrix product.",
            "Take the matrix product of weights (..., T, T) with v (..., T, hs), weights first: it gives (..., T, hs), "
            "and row t of the weights then mixes only the values of positions up to t.",
        ),
        "split_heads": (
            "Each head gets its own hs = C / nh of every token's numbers: cut the last dimension C into nh pieces, "
            "then put the heads before the positions, so that each head is a (T, hs) table.",
            "Read B, T and C from the shape of x; .view x as (B, T, nh, hs), with hs the whole-number quotient of C "
            "by n_head; then .transpose dimensions 1 and 2 to get (B, nh, T, hs).",
            "Viewing x directly as (B, nh, T, hs) cuts the numbers in the wrong order and mixes positions: split C "
            "first, then transpose.",
        ),
        "merge_heads": (
            "merge_heads undoes split_heads: the positions go back before the heads, (B, T, nh, hs), then each "
            "position's nh pieces of hs numbers are joined into C = nh · hs.",
            "Read B, nh, T and hs from the shape of y; .transpose dimensions 1 and 2; then .contiguous() and .view to "
            "(B, T, nh · hs), or .reshape, which copies when it must.",
            ".view right after .transpose fails, the numbers are no longer stored in order; reshaping y without "
            "transposing back mixes numbers of other positions into each position's output.",
        ),
        "my_attention_parameters": (
            "CausalSelfAttention has two Linear layers: qkv, one fused Linear(C, 3C) for every head's queries, keys "
            "and values, and proj, a Linear(C, C); n_head only splits them, so it does not change the count.",
            "A Linear(in, out) holds in · out weights and out biases: add up both layers' weights and biases for "
            "width C and return the total as an int.",
        ),
        "my_bidirectional_weights": (
            "An encoder lets every token see every other: the same steps as attention_weights (scores, scaled by √hs, "
            "and a softmax over the keys), only without the causal mask.",
            "Take the matrix product of q with k transposed on its last two dimensions, divide by the square root of "
            "hs (the last dimension of k), and apply a softmax over dim=-1, with F.softmax or your softmax_rows.",
        ),
        "my_window_mask": (
            "Query t may look at key j when j is not after t and fewer than window positions before it: "
            "0 ≤ t − j < window. Return a (T, T) bool tensor, the rows the queries, the columns the keys.",
            "Build the (T, T) table of differences t − j by broadcasting a column of positions (torch.arange, with a "
            "new last dimension) against a row of them, then combine two comparisons on it with &. Another way: "
            "causal_mask(T, T) without the entries that torch.tril of ones marks with diagonal=-window.",
            "Mind the off-by-one: token t sees itself and the window − 1 tokens before it. With window 1 only the "
            "diagonal is True; with a window of T or more you get causal_mask(T, T).",
        ),
    }
)


add_shortcuts({"softmax_rows": (r"\b(?:F|functional|torch)\.softmax\(", r"\.softmax\(", r"\bnn\.Softmax\b")})
