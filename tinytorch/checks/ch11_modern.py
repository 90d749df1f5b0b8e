"""The checks of notebooks/11_modern.ipynb: a reference and a verify function per piece and exercise."""

import copy
import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tinytorch.checks import add_hints, add_shortcuts, piece
from tinytorch.checks.helpers import (
    Wrong,
    _compare,
    _kind,
    _num,
    _randn,
    _randomized,
    _same,
    _shape,
    _whole,
    _with_reference_weights,
)
from tinytorch.generation import LayerKVCache
from tinytorch.modern import (
    ModernAttention,
    ModernConfig,
    Muon,
    RMSNorm,
    SwiGLU,
    apply_rotary,
    orthogonalize,
    rotary_cos_sin,
)


def _with_gains(module: nn.Module, seed: int) -> nn.Module:
    """`module` in eval mode with random weights (N(0, 0.3²)), its RMSNorm gains around 1."""
    module = _randomized(module, seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name == "weight" or name.endswith("norm.weight"):
                param.add_(1)
    return module


# ------------------------------------------------------------------------------------- RMSNorm

RMS_NORM_PARTS = {"weight": "the gain, C ones to start with (RMSNorm has no bias)"}


@piece("RMSNorm", "11_modern", "RMSNorm as a module: a gain, and x / RMS(x) · gain computed in float32", RMSNorm)
def _verify_rms_norm(rms_norm_class: Callable) -> None:
    fresh = rms_norm_class(8)
    if isinstance(fresh, nn.Module):
        state = fresh.state_dict()
        if "weight" in state and not torch.equal(state["weight"], torch.ones(8)):
            raise Wrong("the gain starts at 1 for every feature (torch.ones), so that a new RMSNorm only normalizes")
    reference = _with_gains(RMSNorm(8), 400)
    mine = _with_reference_weights(fresh, reference, "RMSNorm", RMS_NORM_PARTS, "Llama's")
    x = _randn(2, 5, 8, seed=401) * 2 + 1  # (B, T, C): a mean far from 0, so that LayerNorm differs
    weight = reference.weight.detach()
    with torch.no_grad():
        out = _shape(mine(x.clone()), (2, 5, 8), "(..., C) -> (..., C)")
        if not _same(out, reference(x)):
            mean_square = x.pow(2).mean(dim=-1, keepdim=True)  # (B, T, 1)
            if _same(out, F.layer_norm(x, (8,), weight, None, 1e-6)) or torch.allclose(
                (out / weight).mean(dim=-1), torch.zeros(2, 5), atol=1e-4
            ):
                raise Wrong("you subtracted the mean: that is LayerNorm; RMSNorm divides x itself by √(mean(x²) + eps)")
            if _same(out, x * torch.rsqrt(mean_square + 1e-6)):
                raise Wrong("the gain is not applied: multiply the normalized x by self.weight")
            if _same(out, weight * x * torch.rsqrt(x.pow(2).sum(dim=-1, keepdim=True) + 1e-6)):
                raise Wrong("divide by the root of the mean of x² over the C numbers, not of their sum: .mean(dim=-1)")
            if _same(out, weight * x / (mean_square + 1e-6)):
                raise Wrong("divide by the square root of mean(x²) + eps, the root mean square, not by the mean square")
            _compare(out, reference(x))
        tiny = _randn(3, 8, seed=402) * 1e-3  # (T, C): a mean square about 1e-6, as large as eps
        out = _shape(mine(tiny.clone()), (3, 8), "(..., C) -> (..., C), also for (T, C)")
        if not _same(out, reference(tiny)):
            rms = tiny.pow(2).mean(dim=-1, keepdim=True).sqrt()  # (T, 1)
            if _same(out, weight * tiny / (rms + 1e-6)):
                raise Wrong("eps goes inside the square root: √(mean(x²) + eps)")
            if _same(out, weight * tiny / rms):
                raise Wrong("add eps inside the square root, √(mean(x²) + eps): tiny vectors blow up without it")
            _compare(out, reference(tiny))
        loose = _with_reference_weights(rms_norm_class(8, eps=0.1), reference, "RMSNorm", RMS_NORM_PARTS, "Llama's")
        expected = weight * tiny * torch.rsqrt(tiny.pow(2).mean(dim=-1, keepdim=True) + 0.1)
        if not _same(loose(tiny.clone()), expected):
            raise Wrong("keep eps (self.eps = eps) and use it in forward: RMSNorm(C, eps=0.1) must use 0.1")
        # float16 holds numbers up to 65,504: the squares of entries near 300 overflow unless computed in float32
        big = (_randn(2, 3, 8, seed=403).sign() * 300 + _randn(2, 3, 8, seed=404) * 10).half()  # (B, T, C)
        out = _with_reference_weights(rms_norm_class(8), reference, "RMSNorm", RMS_NORM_PARTS, "Llama's").half()(big)
        out = _shape(out, (2, 3, 8), "(..., C) -> (..., C)")
        if not torch.isfinite(out).all() or (out == 0).any():
            raise Wrong(
                "on a float16 input of entries near 300 your output holds 0, inf or NaN: their squares overflow "
                "float16 (its largest number is 65,504); compute the mean of squares in float32 (x.float()) and "
                "cast back with .to(x.dtype)"
            )
        if out.dtype != torch.float16:
            raise Wrong(
                f"for a float16 input (and a float16 RMSNorm) your output is {out.dtype}: compute in float32, then "
                "cast back to x's dtype, .to(x.dtype), so that the next layer gets what it expects"
            )
        _compare(out.float(), copy.deepcopy(reference).half()(big).float(), atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------------------------------- rotary positions


def _angles(head_size: int, positions: torch.Tensor, theta: float, exponent_step: int = 2) -> torch.Tensor:
    """(T, hs/2): position · theta^(-i·exponent_step/hs), the angles of one half."""
    inv_freq = theta ** -(torch.arange(0, head_size // 2, dtype=torch.float32) * exponent_step / head_size)
    return positions.float()[:, None] * inv_freq[None, :]


def _rotary_mistakes(hs: int, T: int, theta: float) -> list[tuple[torch.Tensor, str]]:
    """(cos of a typical mistake, its message)."""
    positions = torch.arange(T)
    angles = _angles(hs, positions, theta)  # (T, hs/2)
    return [
        (
            angles.repeat_interleave(2, dim=-1).cos(),
            "your angles are laid out pair by pair, (2i, 2i + 1), as Meta's original code pairs entries; this chapter "
            "follows Llama's Hugging Face code, which pairs entry j with entry j + hs/2: the hs/2 angles, then the "
            "same hs/2 again (torch.cat of the angles with themselves)",
        ),
        (
            _angles(hs, positions, theta, exponent_step=1).repeat(1, 2).cos(),
            "pair i turns by theta^(-2i/hs) radians per position: the exponent counts in steps of 2/hs "
            "(torch.arange(0, head_size, 2) / head_size), not 1/hs",
        ),
        (
            (positions.float()[:, None] * theta ** (torch.arange(0, hs, 2) / hs)[None, :]).repeat(1, 2).cos(),
            "the angles must shrink from pair to pair: theta to the power -2i/hs (a negative power), so that the first "
            "pair turns by one radian per position and the last by a small fraction of one",
        ),
        (
            _angles(hs, positions + 1, theta).repeat(1, 2).cos(),
            "positions start at 0: the first token is not turned (torch.arange(block_size))",
        ),
    ]


@piece("rotary_cos_sin", "11_modern", "cos and sin of every position's rotary angles", rotary_cos_sin)
def _verify_rotary_cos_sin(rotary_cos_sin: Callable) -> None:
    for hs, T, theta in [(8, 6, 10000.0), (8, 6, 100.0), (12, 5, 10000.0)]:
        call = f"rotary_cos_sin({hs}, {T}" + (")" if theta == 10000.0 else f", theta={theta:g})")
        out = rotary_cos_sin(hs, T) if theta == 10000.0 else rotary_cos_sin(hs, T, theta=theta)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise Wrong(f"{call} must return two tensors, (cos, sin); got {_kind(out)}")
        want_cos, want_sin = _rotary_reference(hs, T, theta)
        half_shape = "each of the hs/2 angles serves two entries, j and j + hs/2: repeat the angles to hs columns"
        mistakes = {(T, hs // 2): half_shape, (hs, T): "positions go down the rows: (block_size, head_size)"}
        cos = _shape(out[0], (T, hs), what=f"{call}'s cos", mistakes=mistakes)
        sin = _shape(out[1], (T, hs), what=f"{call}'s sin", mistakes=mistakes)
        if _same(cos, want_cos) and _same(sin, want_sin):
            if cos.dtype != torch.float32 or sin.dtype != torch.float32:
                raise Wrong(f"{call} returned {cos.dtype} and {sin.dtype}: compute the angles in float32")
            continue
        if _same(cos, want_sin) and _same(sin, want_cos):
            raise Wrong(f"{call}: cos and sin are swapped; return (cos, sin)")
        if theta != 10000.0 and _same(cos, _rotary_reference(hs, T, 10000.0)[0]):
            raise Wrong(f"{call} used 10,000 as the base: use the theta argument")
        for wrong_cos, message in _rotary_mistakes(hs, T, theta):
            if _same(cos, wrong_cos):
                raise Wrong(f"{call}: {message}")
        try:
            _compare(cos, want_cos)
            _compare(sin, want_sin)
        except Wrong as wrong:
            raise Wrong(f"{call}: {wrong}") from None


def _rotary_reference(hs: int, T: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    return rotary_cos_sin(hs, T, theta)


@piece("apply_rotary", "11_modern", "queries or keys turned by their positions, pairs (j, j + hs/2)", apply_rotary)
def _verify_apply_rotary(apply_rotary: Callable) -> None:
    hs, T = 8, 5
    cos, sin = rotary_cos_sin(hs, 16)
    cos, sin = cos[3 : 3 + T], sin[3 : 3 + T]  # (T, hs): positions 3 to 7, as after 3 cached tokens
    x = _randn(2, 3, T, hs, seed=410)  # (B, nh, T, hs)
    given = x.clone()
    out = _shape(apply_rotary(x, cos.clone(), sin.clone()), (2, 3, T, hs), "(B, nh, T, hs) -> (B, nh, T, hs)")
    if not torch.equal(x, given):
        raise Wrong("your apply_rotary changed its input x: build a new tensor, as torch.cat does, not in-place writes")
    expected = apply_rotary_reference(x, cos, sin)
    if not _same(out, expected):
        probe = torch.zeros(1, 1, T, hs)
        probe[..., 0] = 1.0  # entry 0 alone: a rotation moves it into its partner, entry hs/2
        turned = _shape(apply_rotary(probe, cos.clone(), sin.clone()), (1, 1, T, hs), "(B, nh, T, hs)")[0, 0]
        half = hs // 2
        if turned[:, 1].abs().max() > 1e-6:  # pairs (j, j + hs/2) never move entry 0 into entry 1
            raise Wrong(
                "entry 0 turned into entry 1: you paired adjacent entries (2i, 2i + 1), as Meta's original code "
                "does; this chapter pairs entry j with entry j + hs/2 (Llama's Hugging Face code), so that the "
                "rotation is x · cos + rotate_half(x) · sin, rotate_half(x) being (-x2, x1) for the halves (x1, x2)"
            )
        if _same(turned[:, half], -sin[:, 0]):
            raise Wrong(
                "the rotation turns the wrong way: rotate_half(x) is (-x2, x1) for the halves (x1, x2), so that a "
                "pair (a, b) becomes (a·cos - b·sin, b·cos + a·sin)"
            )
        if _same(turned, probe[0, 0] * cos):
            raise Wrong("the sin term is missing: x · cos + rotate_half(x) · sin")
        if _same(out, x):
            raise Wrong("x came back unturned: return x · cos + rotate_half(x) · sin")
        _compare(out, expected)
    low = x.bfloat16()  # a model in bfloat16: cos and sin stay float32
    out = _shape(apply_rotary(low, cos.clone(), sin.clone()), (2, 3, T, hs), "(B, nh, T, hs) -> (B, nh, T, hs)")
    if out.dtype != torch.bfloat16:
        raise Wrong(
            f"for a bfloat16 x your apply_rotary returns {out.dtype} (cos and sin are float32): cast the result back "
            "to x's dtype, .to(x.dtype)"
        )
    _compare(out.float(), apply_rotary_reference(low, cos, sin).float(), atol=2e-2, rtol=2e-2)


apply_rotary_reference = apply_rotary


# ------------------------------------------------------------------------------------- SwiGLU

SWIGLU_PARTS = {
    "gate_proj": "the Linear(C, H) without bias whose output goes through SiLU: the gate",
    "up_proj": "the Linear(C, H) without bias that the gate multiplies",
    "down_proj": "the Linear(H, C) without bias back to the stream's width",
}


@piece("SwiGLU", "11_modern", "the SwiGLU MLP: gate_proj, up_proj, down_proj; silu(gate) · up", SwiGLU)
def _verify_swiglu(swiglu_class: Callable) -> None:
    with torch.random.fork_rng(devices=[]):  # nn.Linear() draws initial weights from the global generator
        reference = _randomized(SwiGLU(16, 40), 420)
        mine = _with_reference_weights(swiglu_class(16, 40), reference, "SwiGLU", SWIGLU_PARTS, "Llama's")
    x = _randn(2, 5, 16, seed=421)  # (B, T, C)
    with torch.no_grad():
        out = _shape(mine(x.clone()), (2, 5, 16), "(B, T, C) -> (B, T, H) -> (B, T, C)")
        gate, up, down = reference.gate_proj(x), reference.up_proj(x), reference.down_proj  # (B, T, H) twice
        expected = down(F.silu(gate) * up)
        if _same(out, expected):
            return
        mistakes = [
            (down(F.silu(up) * gate), "SiLU is on the wrong branch: the gate is gate_proj's output, silu(gate) · up"),
            (down(F.gelu(gate) * up), "that is GELU on the gate (GEGLU): SwiGLU's gate uses SiLU, x · σ(x)"),
            (down(F.gelu(gate, approximate="tanh") * up), "that is GELU on the gate: SwiGLU's uses SiLU, x · σ(x)"),
            (down(torch.sigmoid(gate) * up), "that is σ(x) on the gate (GLU): SwiGLU's gate uses SiLU, x · σ(x)"),
            (down(F.relu(gate) * up), "that is ReLU on the gate (ReGLU): SwiGLU's gate uses SiLU, x · σ(x)"),
            (down(gate * up), "there is no SiLU on the gate: silu(gate_proj(x)) · up_proj(x)"),
            (down(F.silu(gate)), "the gate multiplies nothing: multiply silu(gate_proj(x)) by up_proj(x)"),
            (down(F.silu(gate) + up), "the gate multiplies up_proj's output, entry by entry; it is not added"),
        ]
        for wrong, message in mistakes:
            if _same(out, wrong):
                raise Wrong(message)
        _compare(out, expected)


# ------------------------------------------------------------------------------------- grouped-query attention

ATTENTION_PARTS = {
    "q_proj": "the Linear(C, n_head · hs) of the queries, without bias",
    "k_proj": "the Linear(C, n_kv_head · hs) of the keys: fewer heads, without bias",
    "v_proj": "the Linear(C, n_kv_head · hs) of the values, without bias",
    "o_proj": "the Linear(n_head · hs, C) that mixes the heads, without bias",
    "q_norm": "an RMSNorm(hs) of each head's queries when config.qk_norm, else None",
    "k_norm": "an RMSNorm(hs) of each head's keys when config.qk_norm, else None",
}
GQA = ModernConfig(vocab_size=11, block_size=12, n_layer=1, n_head=4, n_kv_head=2, n_embd=32, qk_norm=True)


def _attention_by_hand(attn: ModernAttention, x, cos, sin, **options) -> torch.Tensor:
    """Grouped-query attention written out, with one of the typical mistakes switched on by `options`."""
    B, T, C = x.shape
    nh, nkv = attn.n_head, attn.n_kv_head
    hs = C // nh
    q = attn.q_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = attn.k_proj(x).view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
    v = attn.v_proj(x).view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
    rotate = options.get("rotate", "after")
    turn_keys = options.get("turn_keys", True)
    if rotate == "before":
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin) if turn_keys else k
    if options.get("norm", True) and attn.q_norm is not None:
        q, k = attn.q_norm(q), attn.k_norm(k)
    if rotate == "after":
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin) if turn_keys else k
    group = nh // nkv
    if options.get("repeat", "interleave") == "interleave":
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, nh, T, hs)
    else:
        k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)  # (B, nh, T, hs), heads dealt out in turn
    y = F.scaled_dot_product_attention(q, k, v, is_causal=options.get("mask", True))  # (B, nh, T, hs)
    return attn.o_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


ATTENTION_MISTAKES = [
    (
        dict(repeat="tile"),
        "key and value head j serves the neighbouring query heads j·group to (j + 1)·group - 1: repeat each head in "
        "place, k.repeat_interleave(group, dim=1); .repeat(1, group, 1, 1) deals the heads out in turn",
    ),
    (
        dict(rotate="before"),
        "rotate after the QK-norm: q_norm and k_norm first, then apply_rotary (the norms' gains are per entry, so "
        "the order matters; Llama-style models with QK-norm rotate last)",
    ),
    (dict(turn_keys=False), "the keys must be rotated too: apply_rotary to q and to k, so that a score sees distances"),
    (
        dict(rotate=None),
        "nothing is rotated: positions enter only through apply_rotary, on q and k, with the cos and sin given",
    ),
    (dict(norm=False), "config.qk_norm is True: apply self.q_norm to q and self.k_norm to k, before the rotation"),
    (dict(mask=False), "the future is not masked: each position may only look at itself and before (is_causal=True)"),
]


class _RecordingCache(LayerKVCache):
    """A LayerKVCache that says what is wrong when the learner's forward updates it with the wrong heads."""

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if k.dim() == 4 and k.size(1) != self.k.size(1):
            raise Wrong(
                f"kv_cache.update got keys of {k.size(1)} heads; the cache holds the {self.k.size(1)} key and value "
                "heads (n_kv_head): update it before repeating the heads for the queries, that is what makes the "
                "cache smaller"
            )
        return super().update(k, v)


def _learners_attention(answer: Callable, config: ModernConfig, seed: int) -> tuple[ModernAttention, nn.Module]:
    """(tinytorch's ModernAttention with random weights, the learner's with those weights loaded by name)."""
    with torch.random.fork_rng(devices=[]):  # building either module draws initial weights from the global generator
        reference = _with_gains(ModernAttention(config), seed)
        fresh = answer(config)
    if not config.qk_norm and isinstance(fresh, nn.Module) and "q_norm.weight" in fresh.state_dict():
        raise Wrong("with config.qk_norm False there is no QK-norm: self.q_norm and self.k_norm are None then")
    return reference, _with_reference_weights(fresh, reference, "ModernAttention", ATTENTION_PARTS, "Llama's")


@piece(
    "ModernAttention",
    "11_modern",
    "grouped-query attention with rotary positions and QK-norm, cached or not",
    ModernAttention,
)
def _verify_modern_attention(attention_class: Callable) -> None:
    reference, mine = _learners_attention(attention_class, GQA, 430)
    hs = GQA.n_embd // GQA.n_head
    cos, sin = rotary_cos_sin(hs, GQA.block_size)
    T = 7
    x = _randn(2, T, GQA.n_embd, seed=431)  # (B, T, C)
    with torch.no_grad():
        out = _shape(mine(x.clone(), cos[:T], sin[:T]), (2, T, GQA.n_embd), "(B, T, C) -> (B, T, C)")
        expected = reference(x, cos[:T], sin[:T])
        if not _same(out, expected):
            for options, message in ATTENTION_MISTAKES:
                if _same(out, _attention_by_hand(reference, x, cos[:T], sin[:T], **options)):
                    raise Wrong(message)
            _compare(out, expected)
        for config, seed in [(dataclasses.replace(GQA, qk_norm=False, n_kv_head=1), 432), (GQA, 433)]:
            reference, mine = _learners_attention(attention_class, config, seed)
            _verify_cached(mine, reference, x, cos, sin)


def _verify_cached(mine: nn.Module, reference: ModernAttention, x, cos, sin) -> None:
    """Wrong unless the learner's attention gives the uncached outputs fed 3, 2, 1 and 1 tokens through a cache."""
    B, T, C = x.shape
    hs = C // reference.n_head
    nkv = reference.n_kv_head
    expected = reference(x, cos[:T], sin[:T])  # (B, T, C)
    cache = _RecordingCache(B, nkv, cos.size(0), hs)
    chunks = [(0, 3), (3, 5), (5, 6), (6, 7)]
    outs = []
    for start, end in chunks:
        what = f"fed tokens {start} to {end - 1} after {start} cached"
        outs.append(_shape(mine(x[:, start:end].clone(), cos[start:end], sin[start:end], cache), (B, end - start, C)))
        if cache.length != end:
            raise Wrong(
                f"{what}, the cache holds {cache.length} positions, expected {end}: k, v = kv_cache.update(k, v) "
                "stores the new keys and values and returns all of them so far"
            )
        if start == 0:
            keys = reference.k_proj(x[:, :3]).view(B, 3, nkv, hs).transpose(1, 2)  # (B, nkv, 3, hs)
            if reference.k_norm is not None:
                keys = reference.k_norm(keys)
            if _same(cache.k[:, :, :3], keys) and not _same(keys, apply_rotary(keys, cos[:3], sin[:3])):
                raise Wrong(
                    "the cache holds the keys before their rotation: rotate k first, then kv_cache.update(k, v); a "
                    "key turned by its own position stays right for every later query"
                )
    for (start, end), got in zip(chunks, outs, strict=True):
        if not _same(got, expected[:, start:end]):
            if end - start > 1 and start > 0:
                raise Wrong(
                    f"with {start} positions cached, the {end - start} new queries must each see the cached keys and "
                    "the new ones up to their own: chapter 07's causal_mask(T, Tk) shifted to the end; is_causal=True "
                    "fits only T == Tk"
                )
            if start > 0:
                raise Wrong(
                    f"with {start} positions cached, the output of token {start} differs from the uncached one: attend "
                    "to all the keys and values that kv_cache.update returns, rotated by their own positions"
                )
            _compare(got, expected[:, start:end])


# ------------------------------------------------------------------------------------- Muon


def _spread_matrix(rows: int, cols: int, seed: int, decades: float = 3.0) -> torch.Tensor:
    """A (rows, cols) matrix whose singular values fall from 1 to 10^-decades, as a gradient's do."""
    n = min(rows, cols)
    left = torch.linalg.qr(_randn(rows, n, seed=seed))[0]  # (rows, n), orthonormal columns
    right = torch.linalg.qr(_randn(cols, n, seed=seed + 1))[0]  # (cols, n)
    return left @ torch.diag(torch.logspace(0, -decades, n)) @ right.T  # (rows, cols)


@piece("orthogonalize", "11_modern", "Newton-Schulz: a matrix's singular values pushed towards 1", orthogonalize)
def _verify_orthogonalize(orthogonalize: Callable) -> None:
    for rows, cols in [(24, 16), (12, 30)]:
        G = 4 * _spread_matrix(rows, cols, seed=440 + rows, decades=2.0)  # a gradient's size is anything
        call = f"orthogonalize(G) for G of shape ({rows}, {cols})"
        transposed = (
            f"{call} came back as ({cols}, {rows}): a tall G is turned (X.T) to work on the smaller Gram matrix; "
            "turn the result back at the end"
        )
        out = _shape(orthogonalize(G.clone()), (rows, cols), what=call, mistakes={(cols, rows): transposed})
        out = out.detach().float()
        expected = orthogonalize_reference(G).float()
        if not torch.isfinite(out).all() or out.abs().max() > 10:
            raise Wrong(
                f"{call} holds values as large as {_num(out.abs().max())} (or inf, NaN): divide G by its norm first, "
                "X / X.norm(), so that every singular value is at most 1; the iteration only converges from there"
            )
        if not _close_orthogonal(out, expected):
            singular = torch.linalg.svdvals(out)
            if _close_orthogonal(out, G / G.norm()):
                raise Wrong(f"{call} is G divided by its norm: then run the `steps` Newton-Schulz iterations")
            cubic = _newton_schulz(G, (1.5, -0.5, 0.0), 5)
            if _close_orthogonal(out, cubic):
                raise Wrong(
                    f"{call}: those are the classic cubic coefficients (1.5, -0.5); Muon uses Jordan's quintic "
                    "(3.4445, -4.7750, 2.0315), which push small singular values up much faster"
                )
            raise Wrong(
                f"{call} has singular values from {_num(singular.min())} to {_num(singular.max())}; after "
                "orthogonalize's 5 iterations they range from "
                f"{_num(torch.linalg.svdvals(expected).min())} to {_num(torch.linalg.svdvals(expected).max())}: each "
                "iteration is X = a·X + (b·A + c·A²)·X with A = X·Xᵀ"
            )
    G = 4 * _spread_matrix(24, 16, seed=450, decades=2.0)
    one = orthogonalize(G.clone(), steps=1)
    if not _close_orthogonal(_shape(one, (24, 16)).detach().float(), orthogonalize_reference(G, steps=1).float()):
        raise Wrong("use the steps argument: orthogonalize(G, steps=1) runs one iteration")
    zero = _shape(orthogonalize(torch.zeros(6, 4)), (6, 4), what="orthogonalize of a zero matrix")
    if not torch.isfinite(zero.float()).all():
        raise Wrong(
            "a zero matrix (a layer that got no gradient) gives NaN: divide by the norm clamped at eps, "
            "X.norm().clamp(min=eps)"
        )


orthogonalize_reference = orthogonalize


def _close_orthogonal(out: torch.Tensor, expected: torch.Tensor) -> bool:
    """Whether two results agree to bfloat16's precision: its rounding, compounded over the iterations, moves the
    largest entry by a few percent (float32 products, or the wide orientation for a tall G, differ by about 5%)."""
    return out.shape == expected.shape and bool((out - expected).abs().max() <= 0.1 * expected.abs().max())


def _newton_schulz(G: torch.Tensor, coefficients: tuple[float, float, float], steps: int) -> torch.Tensor:
    """Newton-Schulz with other coefficients, in float32: (m, n) -> (m, n)."""
    a, b, c = coefficients
    X = G / G.norm()
    tall = X.size(0) > X.size(1)
    X = X.T if tall else X
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


def _muon_by_hand(weights, gradients, lr, momentum, weight_decay, steps, **options) -> list[torch.Tensor]:
    """The weights after Muon's steps on these gradients, with one of the typical mistakes switched on."""
    weights = [w.clone() for w in weights]
    buffers = [torch.zeros_like(w) for w in weights]
    for grads in gradients:
        for i, (w, g) in enumerate(zip(weights, grads, strict=False)):
            if not options.get("keep_state", True):
                buffers[i] = torch.zeros_like(w)
            buffers[i] = buffers[i].lerp(g, 1 - momentum)
            ahead = g.lerp(buffers[i], momentum)
            direction = ahead if options.get("nesterov", True) else buffers[i]
            update = orthogonalize(direction, steps).float() if options.get("orthogonal", True) else direction
            scale = {
                "tall": math.sqrt(max(1.0, w.size(0) / w.size(1))),
                "none": 1.0,
                "wide": math.sqrt(max(1.0, w.size(1) / w.size(0))),
            }[options.get("scale", "tall")]
            decay = options.get("decay", "before")
            if decay == "before":
                w = w * (1 - lr * weight_decay)
            elif decay == "without lr":
                w = w * (1 - weight_decay)
            w = w - lr * scale * update
            if decay == "after":
                w = w * (1 - lr * weight_decay)
            weights[i] = w
    return weights


MUON_MISTAKES = [
    (
        dict(nesterov=False),
        "that steps along the momentum itself: Muon (with Nesterov's look-ahead) orthogonalizes grad.lerp(buf, "
        "momentum), the gradient moved a step towards the momentum",
    ),
    (
        dict(decay="after"),
        "decay the weights before the step, p.mul_(1 - lr · weight_decay), then add the update (decaying after "
        "shrinks the update too)",
    ),
    (dict(decay="none"), "the weights must shrink by (1 - lr · weight_decay) each step: the decoupled weight decay"),
    (dict(decay="without lr"), "the decay is lr · weight_decay per step: p.mul_(1 - lr * weight_decay)"),
    (
        dict(scale="none"),
        "a tall matrix (more rows than columns) takes a larger step: multiply the update by √max(1, rows / cols)",
    ),
    (dict(scale="wide"), "the larger step is for tall matrices, rows > cols: √max(1, p.size(0) / p.size(1))"),
    (dict(keep_state=False), "keep the momentum buffer from one step to the next, in self.state[p]"),
    (dict(orthogonal=False), "the update is not orthogonalized: step along orthogonalize(...) of the look-ahead"),
]


@piece("Muon", "11_modern", "Muon's step: momentum, Nesterov's look-ahead, orthogonalize, decay, scale", Muon)
def _verify_muon(muon_class: Callable) -> None:
    weights = [_randn(12, 8, seed=460), _randn(8, 16, seed=461), _randn(8, 8, seed=462)]  # tall, wide, no gradient
    settings = dict(lr=0.1, momentum=0.9, weight_decay=2.0, steps=5)  # a strong decay, so that its place shows
    gradients = [[_randn(*w.shape, seed=470 + 10 * step + i) for i, w in enumerate(weights[:2])] for step in range(3)]
    params = [nn.Parameter(w.clone()) for w in weights]
    optimizer = muon_class(params, **settings)
    if not hasattr(optimizer, "step"):
        raise Wrong(f"Muon(params, ...) must give an optimizer with a step method, got {_kind(optimizer)}")
    for grads in gradients:
        for p, g in zip(params, grads, strict=False):
            p.grad = g.clone()
        optimizer.step()
    if not torch.equal(params[2].detach(), weights[2]):
        raise Wrong("a matrix without a gradient (p.grad is None) must stay as it is: skip it")
    got = [p.detach().float() for p in params[:2]]
    expected = _muon_by_hand(weights[:2], gradients, **settings)
    if _muon_close(got, expected, settings["lr"]):
        return
    for options, message in MUON_MISTAKES:
        if _muon_close(got, _muon_by_hand(weights[:2], gradients, **settings, **options), settings["lr"]):
            raise Wrong(message)
    change = [(g - w).abs().max().item() for g, w in zip(got, weights, strict=False)]
    want = [(e - w).abs().max().item() for e, w in zip(expected, weights, strict=False)]
    raise Wrong(
        f"after 3 steps on a tall and a wide matrix, the largest changes of their weights are {_num(change[0])} and "
        f"{_num(change[1])}, expected {_num(want[0])} and {_num(want[1])}: momentum (lerp), Nesterov's look-ahead, "
        "orthogonalize, decay, then the step of lr · √max(1, rows / cols)"
    )


def _muon_close(got: list[torch.Tensor], expected: list[torch.Tensor], lr: float) -> bool:
    """Whether the weights agree to bfloat16's precision of the orthogonalized updates (entries below 1, times lr)."""
    return all(bool((g - e).abs().max() <= MUON_TOLERANCE * lr) for g, e in zip(got, expected, strict=True))


MUON_TOLERANCE = 0.1  # of lr: bfloat16's rounding in 3 steps (float32 products differ by 0.02 lr, mistakes by 0.3 lr)


# ------------------------------------------------------------------------------------- exercises


def _grouped_cache_bytes(config: ModernConfig, batch_size: int, bytes_per_number: int) -> int:
    """Bytes of a KV cache of block_size positions with n_kv_head key and value heads per block."""
    hs = config.n_embd // config.n_head
    return 2 * config.n_layer * batch_size * config.n_kv_head * config.block_size * hs * bytes_per_number


@piece(
    "my_grouped_cache_bytes",
    "11_modern",
    "the bytes of a grouped-query KV cache",
    _grouped_cache_bytes,
)
def _verify_grouped_cache_bytes(my_grouped_cache_bytes: Callable) -> None:
    config = ModernConfig(n_layer=3, n_head=8, n_kv_head=2, n_embd=64, block_size=32)
    for batch_size, nbytes in [(1, 4), (3, 2)]:
        call = f"my_grouped_cache_bytes(config, {batch_size}, {nbytes}) for 3 blocks, 8 query and 2 key heads, C = 64"
        got = _whole(my_grouped_cache_bytes(config, batch_size, nbytes), f"{call}'s result")
        want = _grouped_cache_bytes(config, batch_size, nbytes)
        if got == want:
            continue
        group = config.n_head // config.n_kv_head
        mistakes = [
            (
                want * group,
                "that is the cache of n_head key and value heads (C numbers per position): grouped-query attention "
                "keeps n_kv_head heads of hs = n_embd // n_head numbers each",
            ),
            (want // 2, "a cache keeps keys and values: 2 tensors per block"),
            (want // nbytes, f"that is a count of numbers: each takes bytes_per_number = {nbytes} bytes"),
            (want // batch_size, "each sequence of the batch has its own keys and values"),
            (want // config.n_layer, "every block has its own keys and values: multiply by n_layer"),
        ]
        hint = next((message for value, message in mistakes if got == value and value != want), "")
        raise Wrong(f"{call} returned {got:,}: " + (hint or f"too {'many' if got > want else 'few'} bytes"))


def _steps_to_half(G: torch.Tensor) -> int:
    """The fewest Newton-Schulz steps (from 1) after which orthogonalize(G)'s smallest singular value is above 0.5."""
    for steps in range(1, 31):
        if torch.linalg.svdvals(orthogonalize(G, steps).float()).min() > 0.5:
            return steps
    return 31


@piece(
    "my_steps_to_half",
    "11_modern",
    "experiment: the Newton-Schulz steps that bring every singular value above 0.5",
    _steps_to_half,
)
def _verify_steps_to_half(my_steps_to_half: Callable) -> None:
    for rows, cols, decades, seed in [(32, 24, 2.0, 480), (24, 40, 3.0, 481)]:
        G = _spread_matrix(rows, cols, seed=seed, decades=decades)
        call = f"my_steps_to_half(G) for a ({rows}, {cols}) G with singular values from 1 down to 1e-{decades:.0f}"
        got = _whole(my_steps_to_half(G.clone()), f"{call}'s result")
        want = _steps_to_half(G)
        if got == want:
            continue
        largest = next(s for s in range(1, 31) if torch.linalg.svdvals(orthogonalize(G, s).float()).max() > 0.5)
        if got == largest and largest != want:
            raise Wrong(
                f"{call} returned {got}: that is when the largest singular value passes 0.5; count until the "
                "smallest does, svdvals(...).min()"
            )
        if got in (want - 1, want + 1):
            raise Wrong(
                f"{call} returned {got}, off by one: try steps = 1, 2, 3, ... and return the first whose smallest "
                "singular value is above 0.5"
            )
        raise Wrong(f"{call} returned {got}: too {'many' if got > want else 'few'}")


add_hints(
    {
        "RMSNorm": (
            "RMSNorm is LayerNorm without the centring and the bias: each vector is divided by its root mean square, "
            "then multiplied by a gain named weight, C ones at the start. Llama computes it in float32, whatever the "
            "input's dtype.",
            "In __init__ keep eps and make weight an nn.Parameter of ones; in forward turn x into float32, multiply "
            "it by torch.rsqrt of the mean of its squares over dim=-1 (keepdim=True) plus eps, cast the result back "
            "to x's dtype and multiply by weight.",
            "Do not subtract the mean; eps goes inside the square root; and in float16 the squares of large entries "
            "overflow, which is why the computation runs in float32.",
        ),
        "rotary_cos_sin": (
            "Pair i of a head turns by theta^(-2i/hs) radians per position, for i from 0 to hs/2 - 1; the angle at "
            "position m is m times that. Entry j and entry j + hs/2 form a pair, so they share an angle.",
            "Make the hs/2 rates from torch.arange(0, head_size, 2) divided by head_size, as a negative power of "
            "theta; the outer product of torch.arange(block_size) with them gives (T, hs/2) angles; concatenate "
            "them with themselves along the last dimension and return their cos and sin.",
        ),
        "apply_rotary": (
            "Each pair (a, b) = (x[j], x[j + hs/2]) turns by its angle: (a·cos - b·sin, b·cos + a·sin). With cos and "
            "sin already laid out for all hs entries, that is two whole-tensor products.",
            "Split x into its halves x1 and x2 along the last dimension, build rotate_half(x) by concatenating -x2 "
            "and x1, and return x times cos plus rotate_half(x) times sin, cast back to x's dtype.",
            "The classic traps: pairing adjacent entries (2i, 2i + 1) instead of (j, j + hs/2), and the sign, which "
            "goes on the second half.",
        ),
        "SwiGLU": (
            "SwiGLU widens x twice: one widening goes through SiLU and gates the other, entry by entry, and a third "
            "Linear brings the product back. Name the three as Llama does: gate_proj, up_proj, down_proj.",
            "In __init__ make gate_proj and up_proj Linear(n_embd, hidden) and down_proj Linear(hidden, n_embd), all "
            "with bias=False; forward applies F.silu to gate_proj's output, multiplies it by up_proj's output and "
            "applies down_proj.",
        ),
        "ModernAttention": (
            "Like chapter 03's attention, with four changes: separate q, k and v projections (k and v with n_kv_head "
            "heads), an RMSNorm per head on q and k when config.qk_norm, rotation of q and k by their positions, and "
            "each key and value head shared by a group of n_head / n_kv_head neighbouring query heads.",
            "Project and view q as (B, nh, T, hs), k and v as (B, nkv, T, hs); norm q and k if there are norms; "
            "rotate both with your apply_rotary; if a cache is given, replace k and v by what kv_cache.update "
            "returns; repeat_interleave k and v by the group size on dim 1; attend causally (with a cache and "
            "several new tokens, chapter 07's shifted causal_mask(T, Tk)); merge the heads and apply o_proj.",
            "The order matters: norm, then rotate, then cache, then repeat (the cache keeps the n_kv_head heads, "
            "already rotated); and repeat_interleave keeps each key head next to its own queries, where repeat "
            "deals them out in turn.",
        ),
        "orthogonalize": (
            "Newton-Schulz only multiplies matrices: scale G so that its singular values are at most 1, then apply "
            "the quintic a·X + b·(X Xᵀ)X + c·(X Xᵀ)²X `steps` times, which pushes every singular value towards 1.",
            "Take G in bfloat16; if it has more rows than columns, work on its transpose (and transpose back at the "
            "end); divide by its Frobenius norm clamped at eps; in each step form A = X Xᵀ, then B = b·A + c·A·A, and "
            "set X to a·X + B·X.",
        ),
        "Muon": (
            "For each matrix with a gradient: keep a running average of its gradients in the optimizer's state, look "
            "a step ahead along it (Nesterov), orthogonalize that, shrink the weights by the decay and move them "
            "against the orthogonalized direction.",
            "With buf from self.state[p] (zeros at first): buf.lerp_ towards p.grad by 1 - momentum; the direction "
            "is p.grad.lerp towards buf by momentum, through orthogonalize with group['steps']; multiply p by "
            "1 - lr · weight_decay; add the direction times -lr · √max(1, rows / cols).",
            "Decay before the step, not after; the larger step is for tall matrices (more rows than columns); and "
            "skip any p whose grad is None.",
        ),
        "my_grouped_cache_bytes": (
            "The cache keeps, for every block, a key and a value for every sequence, key head, position and entry "
            "of a head.",
            "Multiply 2 (keys and values), n_layer, batch_size, n_kv_head, block_size, hs = n_embd // n_head and "
            "bytes_per_number.",
        ),
        "my_steps_to_half": (
            "Run orthogonalize with more and more steps, and watch the smallest singular value of its result.",
            "For steps = 1, 2, 3, ...: compute torch.linalg.svdvals of orthogonalize(G, steps) turned into float32 "
            "(svdvals does not take bfloat16), and return the first steps whose minimum is above 0.5.",
        ),
    }
)


add_shortcuts(
    {
        "RMSNorm": (r"\b(?:F|functional|torch)\.rms_norm\(", r"\bnn\.RMSNorm\b"),
    }
)
