import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from tinytorch.attention import CausalSelfAttention, attention_weights, causal_mask
from tinytorch.config import GPTConfig

C, NH = 32, 4  # n_embd and n_head of the test layers
HS = C // NH


def make_attention(seed: int = 0, **overrides) -> CausalSelfAttention:
    """A small attention layer with seeded weights, in eval mode."""
    torch.manual_seed(seed)
    config = GPTConfig(**{"vocab_size": 16, "block_size": 16, "n_layer": 2, "n_head": NH, "n_embd": C, **overrides})
    return CausalSelfAttention(config).eval()


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def split_heads(layer: CausalSelfAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's q, k, v for x, each (B, nh, T, hs), computed by hand."""
    B, T, _ = x.shape
    q, k, v = layer.qkv(x).split(C, dim=2)
    return tuple(t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))


class ConcatCache:
    """A minimal duck-typed KV cache: keeps every key and value seen so far."""

    def __init__(self):
        self.k = self.v = None

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)  # (B, nh, Tk, hs)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


# causal_mask


def test_square_causal_mask_is_lower_triangular():
    mask = causal_mask(4, 4)
    assert mask.shape == (4, 4) and mask.dtype == torch.bool
    assert torch.equal(mask, torch.tril(torch.ones(4, 4, dtype=torch.bool)))


def test_causal_mask_with_fewer_queries_treats_them_as_the_last_positions():
    mask = causal_mask(2, 5)
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert torch.equal(causal_mask(3, 7), causal_mask(7, 7)[-3:])
    assert causal_mask(1, 6).all()  # a single newest query sees every key


# attention_weights


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), nh=st.integers(1, 4), T=st.integers(1, 12), past=st.integers(0, 5), seed=st.integers(0, 99))
def test_attention_weight_rows_sum_to_one_and_hide_the_future(B, nh, T, past, seed):
    Tk = T + past  # with past > 0 the queries are the last T of Tk positions, as with a cache
    q, k = randn(B, nh, T, HS, seed=seed), randn(B, nh, Tk, HS, seed=seed + 1000)
    weights = attention_weights(q, k)
    assert weights.shape == (B, nh, T, Tk)
    assert_close(weights.sum(dim=-1), torch.ones(B, nh, T))
    assert (weights.masked_select(~causal_mask(T, Tk)) == 0).all()
    assert (weights.masked_select(causal_mask(T, Tk)) > 0).all()


def test_attention_weights_for_the_last_queries_equal_the_last_rows():
    q, k = randn(2, NH, 8, HS), randn(2, NH, 8, HS, seed=1)
    assert_close(attention_weights(q[:, :, -3:], k), attention_weights(q, k)[:, :, -3:])


@pytest.mark.parametrize(("T", "Tk"), [(1, 1), (6, 6), (1, 6), (3, 9)])
def test_explicit_attention_matches_torch_sdpa_on_the_same_qkv(T, Tk):
    q, k, v = randn(2, NH, T, HS), randn(2, NH, Tk, HS, seed=1), randn(2, NH, Tk, HS, seed=2)
    mask = torch.ones(T, Tk, dtype=torch.bool).tril(diagonal=Tk - T)  # built independently of causal_mask
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(attention_weights(q, k) @ v, expected)


def test_attention_weights_scale_scores_by_sqrt_head_size():
    q, k = randn(1, 1, 5, HS), randn(1, 1, 5, HS, seed=1)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(HS)).masked_fill(~torch.ones(5, 5).tril().bool(), float("-inf"))
    assert_close(attention_weights(q, k), torch.softmax(scores, dim=-1))


def explicit(layer: CausalSelfAttention, x: torch.Tensor, kv_cache=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's explicit path: (y, the weights it keeps), with keep_weights switched on for one call."""
    layer.keep_weights = True
    try:
        return layer(x, kv_cache), layer.weights
    finally:
        layer.keep_weights = False


# CausalSelfAttention


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("B", "T"), [(1, 1), (1, 7), (3, 16), (2, 5)])
def test_fast_path_equals_explicit_path(bias, B, T):
    layer = make_attention(bias=bias)
    x = randn(B, T, C, seed=T)
    with torch.no_grad():
        y_fast = layer(x)
        y_explicit, weights = explicit(layer, x)
    assert weights.shape == (B, NH, T, T)
    assert_close(y_fast, y_explicit, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_layer_matches_a_reference_built_from_torch_sdpa(bias):
    layer = make_attention(bias=bias)
    x = randn(2, 9, C)
    with torch.no_grad():
        q, k, v = split_heads(layer, x)
        reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        reference = layer.proj(reference.transpose(1, 2).reshape(2, 9, C))
        y_explicit, _ = explicit(layer, x)
        y_fast = layer(x)
    assert_close(y_explicit, reference)
    assert_close(y_fast, reference)


def test_layer_has_no_bias_parameters_without_bias():
    layer = make_attention(bias=False)
    assert layer.qkv.bias is None and layer.proj.bias is None


@settings(max_examples=25, deadline=None)
@given(data=st.data(), B=st.integers(1, 3), T=st.integers(2, 16), seed=st.integers(0, 99))
def test_outputs_before_t_ignore_inputs_from_t_on(data, B, T, seed):
    t = data.draw(st.integers(1, T - 1), label="t")
    layer = make_attention()
    x = randn(B, T, C, seed=seed)
    changed = x.clone()
    changed[:, t:] = randn(B, T - t, C, seed=seed + 1000)
    with torch.no_grad():
        for run in (lambda inp: layer(inp), lambda inp: explicit(layer, inp)[0]):
            y, y_changed = run(x), run(changed)
            assert torch.equal(y[:, :t], y_changed[:, :t])
            assert not torch.allclose(y[:, t:], y_changed[:, t:])  # the change is visible from t on


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, 16))
def test_output_shape_is_input_shape_for_any_batch_and_length(B, T):
    layer = make_attention()
    x = randn(B, T, C)
    with torch.no_grad():
        y_fast = layer(x)
        y_explicit, weights = explicit(layer, x)
    assert y_fast.shape == y_explicit.shape == (B, T, C)
    assert weights.shape == (B, NH, T, T)


def test_dropout_is_off_in_eval_mode():
    layer = make_attention(dropout=0.5)
    plain = make_attention(dropout=0.0)  # same seed, so the same weights
    x = randn(2, 8, C)
    with torch.no_grad():
        for path in (lambda m: m(x), lambda m: explicit(m, x)[0]):
            first, second, reference = (path(m) for m in (layer, layer, plain))
            assert_close(first, second, rtol=0, atol=0)
            assert_close(first, reference)
        layer.train()  # the same layer in training mode does drop activations
        assert not torch.allclose(layer(x), layer(x))


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 2), T=st.integers(2, 16), data=st.data())
def test_two_chunks_through_a_kv_cache_equal_one_full_pass(B, T, data):
    split = data.draw(st.integers(1, T - 1), label="split")
    layer = make_attention()
    x = randn(B, T, C, seed=T)
    with torch.no_grad():
        full_fast = layer(x)
        full_explicit, full_weights = explicit(layer, x)
        cache = ConcatCache()
        chunked_fast = torch.cat([layer(x[:, :split], kv_cache=cache), layer(x[:, split:], kv_cache=cache)], dim=1)
        assert cache.k.shape == (B, NH, T, HS)
        cache = ConcatCache()
        first, _ = explicit(layer, x[:, :split], cache)
        second, second_weights = explicit(layer, x[:, split:], cache)
    assert second_weights.shape == (B, NH, T - split, T)  # the new queries see all Tk = T keys
    assert_close(second_weights, full_weights[:, :, split:])
    assert_close(chunked_fast, full_fast, atol=1e-6, rtol=1e-5)
    assert_close(torch.cat([first, second], dim=1), full_explicit, atol=1e-6, rtol=1e-5)


def test_keep_weights_keeps_the_last_weights_and_the_fast_path_keeps_none():
    layer = make_attention()
    x = randn(2, 6, C)
    with torch.no_grad():
        layer(x)
        assert layer.weights is None  # the fast path computes no weights to keep
        y, weights = explicit(layer, x)
    assert weights.shape == (2, NH, 6, 6) and not weights.requires_grad
    assert_close(weights.sum(dim=-1), torch.ones(2, NH, 6))
    assert not layer.keep_weights
