import functools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.testing import assert_close

from tinytorch.blocks import MLP, Block, LayerNorm
from tinytorch.config import GPTConfig, count_parameters
from tinytorch.generation import LayerKVCache

C, NH, BLOCK_SIZE = 32, 4, 16  # n_embd, n_head and block_size of the test blocks


def make_config(**overrides) -> GPTConfig:
    return GPTConfig(
        **{"vocab_size": 16, "block_size": BLOCK_SIZE, "n_layer": 2, "n_head": NH, "n_embd": C, **overrides}
    )


def make_block(seed: int = 0, **overrides) -> Block:
    """A small block with seeded weights, in eval mode."""
    torch.manual_seed(seed)
    return Block(make_config(**overrides)).eval()


@functools.cache
def shared_block() -> Block:
    """One seeded block for the property tests, which only read it."""
    return make_block()


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def zero_output_projections(block: Block) -> None:
    with torch.no_grad():
        for projection in (block.attn.proj, block.mlp.proj):
            projection.weight.zero_()
            if projection.bias is not None:
                projection.bias.zero_()


# LayerNorm


@settings(max_examples=25, deadline=None)
@given(
    leading=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    n_embd=st.integers(1, 40),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_matches_torch_layer_norm(leading, n_embd, bias, seed):
    x = randn(*leading, n_embd, seed=seed) * 3 + 2
    ours, theirs = LayerNorm(n_embd, bias=bias), nn.LayerNorm(n_embd, bias=bias)
    with torch.no_grad():
        ours.weight.copy_(randn(n_embd, seed=seed + 1))
        theirs.weight.copy_(ours.weight)
        if bias:
            ours.bias.copy_(randn(n_embd, seed=seed + 2))
            theirs.bias.copy_(ours.bias)
    assert_close(ours(x), theirs(x))


def test_layer_norm_gradients_match_torch_layer_norm():
    x = randn(2, 5, C, seed=1)
    ours, theirs = LayerNorm(C), nn.LayerNorm(C)
    with torch.no_grad():
        ours.weight.copy_(randn(C, seed=2))
        theirs.weight.copy_(ours.weight)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = randn(2, 5, C, seed=3)
    (ours(x_ours) * weights).sum().backward()
    (theirs(x_theirs) * weights).sum().backward()
    assert_close(x_ours.grad, x_theirs.grad)
    assert_close(ours.weight.grad, theirs.weight.grad)
    assert_close(ours.bias.grad, theirs.bias.grad)


def test_layer_norm_uses_its_eps():
    x = randn(3, C, seed=4) * 0.05  # small variance, so eps = 0.1 changes the result visibly
    assert_close(LayerNorm(C, eps=0.1)(x), nn.LayerNorm(C, eps=0.1)(x))
    assert not torch.allclose(LayerNorm(C, eps=0.1)(x), LayerNorm(C)(x), atol=1e-3)


def test_layer_norm_of_a_constant_vector_is_its_bias_not_nan():
    ln = LayerNorm(C)
    with torch.no_grad():
        ln.bias.copy_(randn(C, seed=5))
    y = ln(torch.full((2, C), 7.0))
    assert torch.isfinite(y).all()
    assert_close(y, ln.bias.detach().expand(2, C))


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.5, 50.0), shift=st.floats(-100.0, 100.0), seed=st.integers(0, 2**16))
def test_normalized_vectors_have_mean_zero_and_variance_one(scale, shift, seed):
    y = LayerNorm(C)(randn(3, 5, C, seed=seed) * scale + shift)  # fresh: weight 1, bias 0
    assert y.mean(dim=-1).abs().max() < 1e-4
    assert (y.var(dim=-1, correction=0) - 1).abs().max() < 1e-3


def test_layer_norm_without_bias_has_only_a_weight():
    ln = LayerNorm(C, bias=False)
    assert [name for name, _ in ln.named_parameters()] == ["weight"]
    assert ln.bias is None


# MLP


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, BLOCK_SIZE))
def test_mlp_maps_btc_to_btc_through_a_4c_hidden_layer(B, T):
    torch.manual_seed(0)
    mlp = MLP(make_config())
    hidden_shapes = []
    mlp.gelu.register_forward_hook(lambda module, inputs, output: hidden_shapes.append(tuple(output.shape)))
    y = mlp(randn(B, T, C))
    assert y.shape == (B, T, C)
    assert hidden_shapes == [(B, T, 4 * C)]
    assert mlp.fc.weight.shape == (4 * C, C) and mlp.proj.weight.shape == (C, 4 * C)


def test_mlp_gelu_is_the_tanh_approximation():
    torch.manual_seed(0)
    mlp = MLP(make_config())
    x = torch.linspace(-5, 5, 1001)
    assert_close(mlp.gelu(x), F.gelu(x, approximate="tanh"))
    assert (mlp.gelu(x) - F.gelu(x)).abs().max() > 1e-4  # not the exact erf GELU
    h = randn(2, 7, C, seed=6)
    assert_close(mlp(h), mlp.proj(F.gelu(mlp.fc(h), approximate="tanh")))


# Block


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, BLOCK_SIZE))
def test_block_keeps_shape_for_any_batch_and_length(B, T):
    y = shared_block()(randn(B, T, C))
    assert y.shape == (B, T, C)
    assert torch.isfinite(y).all()


@settings(max_examples=25, deadline=None)
@given(t=st.integers(1, BLOCK_SIZE - 1), seed=st.integers(0, 2**16))
def test_block_outputs_before_t_ignore_inputs_from_t_on(t, seed):
    block = shared_block()
    x = randn(2, BLOCK_SIZE, C, seed=seed)
    x_changed = x.clone()
    x_changed[:, t:] = randn(2, BLOCK_SIZE - t, C, seed=seed + 1)
    y, y_changed = block(x), block(x_changed)
    assert_close(y_changed[:, :t], y[:, :t])
    assert not torch.allclose(y_changed[:, t:], y[:, t:])  # the change itself is visible


def test_block_adds_attention_then_mlp_to_its_input():
    block = make_block()
    x = randn(2, 9, C, seed=7)
    after_attention = x + block.attn(block.ln_1(x))
    assert_close(block(x), after_attention + block.mlp(block.ln_2(after_attention)))


@pytest.mark.parametrize("bias", [True, False])
def test_block_with_zeroed_output_projections_is_exactly_the_identity(bias):
    block = make_block(bias=bias)
    zero_output_projections(block)
    x = randn(3, BLOCK_SIZE, C, seed=8)
    assert torch.equal(block(x), x)


def test_gradient_flows_unchanged_through_the_residual_path():
    block = make_block()
    zero_output_projections(block)
    x = randn(2, 5, C, seed=9).requires_grad_()
    block(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_block_without_bias_has_no_bias_parameters():
    block = make_block(bias=False)
    names = [name for name, _ in block.named_parameters()]
    assert names and not [name for name in names if name.endswith("bias")]
    assert block.ln_1.bias is None and block.ln_2.bias is None
    assert block.attn.qkv.bias is None and block.mlp.fc.bias is None
    assert count_parameters(block) == 12 * C * C + 2 * C  # only the two LayerNorm weights remain


@pytest.mark.parametrize(("n_embd", "n_head"), [(8, 2), (32, 4), (48, 6), (64, 1)])
def test_block_parameter_count_is_12c2_plus_13c(n_embd, n_head):
    block = Block(make_config(n_embd=n_embd, n_head=n_head))
    assert count_parameters(block) == 12 * n_embd**2 + 13 * n_embd


def test_block_with_kv_cache_one_token_at_a_time_matches_full_forward():
    block = make_block()
    x = randn(2, 10, C, seed=10)
    cache = LayerKVCache(batch_size=2, n_head=NH, block_size=BLOCK_SIZE, head_size=C // NH)  # chapter 07's cache
    steps = [block(x[:, i : i + 1], kv_cache=cache) for i in range(10)]
    assert_close(torch.cat(steps, dim=1), block(x))
    assert cache.length == 10


def test_block_keeps_its_attention_weights_when_asked():
    block = make_block()
    x = randn(2, 10, C, seed=11)
    y_fast = block(x)
    block.attn.keep_weights = True
    y = block(x)
    assert_close(y, y_fast)
    assert block.attn.weights.shape == (2, NH, 10, 10)
    assert_close(block.attn.weights.sum(-1), torch.ones(2, NH, 10))
