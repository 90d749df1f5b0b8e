"""The checks of notebooks/04_blocks.ipynb: a reference and a verify function per piece and exercise."""

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tinytorch.blocks import MLP, Block, LayerNorm
from tinytorch.checks import add_hints, add_shortcuts, piece
from tinytorch.checks.helpers import (
    _module_output,
    _with_reference_weights,
    Wrong,
    _close,
    _compare,
    _generator,
    _num,
    _number,
    _pair,
    _randn,
    _randomized,
    _same,
    _shape,
)
from tinytorch.config import GPTConfig, count_parameters, shapes_only


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last dimension: (..., C) -> (..., C)."""
    return F.layer_norm(x, weight.shape, weight, bias, eps)


def _layer_norm_variant(x, weight, bias, eps=1e-5, dim=-1, unbiased=False, eps_inside=True) -> torch.Tensor:
    """LayerNorm written out, with one of the typical mistakes switched on."""
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
    x_hat = (x - mean) / (torch.sqrt(var + eps) if eps_inside else torch.sqrt(var) + eps)
    y = x_hat if weight is None else x_hat * weight
    return y if bias is None else y + bias


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, the tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    return F.gelu(x, approximate="tanh")


def _mlp_forward(x: torch.Tensor, fc: nn.Linear, proj: nn.Linear) -> torch.Tensor:
    """The MLP: (B, T, C) -> (B, T, 4C) -> GELU -> (B, T, C)."""
    return proj(F.gelu(fc(x), approximate="tanh"))


def _block_forward(x: torch.Tensor, block: Block) -> torch.Tensor:
    """The pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). (B, T, C) -> (B, T, C)."""
    return block(x)


@piece("layer_norm", "04_blocks", "LayerNorm from scratch: normalise each token, then scale and shift", _layer_norm)
def _verify_layer_norm(layer_norm: Callable) -> None:
    C = 8
    x = _randn(2, 4, C, seed=100) * 2 + 0.5  # (B, T, C)
    weight, bias = 1 + 0.3 * _randn(C, seed=101), 0.3 * _randn(C, seed=102)
    out = _shape(layer_norm(x.clone(), weight.clone(), bias.clone()), (2, 4, C))
    if not _same(out, _layer_norm(x, weight, bias)):
        if _same(out, _layer_norm_variant(x, weight, bias, unbiased=True)):
            raise Wrong("LayerNorm: the variance must be the biased one (unbiased=False)")
        if any(_same(out, _layer_norm_variant(x, weight, bias, dim=dim)) for dim in (-2, (-2, -1), (0, 1, 2))):
            raise Wrong("normalise each token's C numbers: mean and variance over dim=-1")
        if _same(out, _layer_norm_variant(x, None, None)):
            raise Wrong("the weight and bias are not applied: return x_hat * weight + bias")
        if _same(out, _layer_norm_variant(x, None, bias)):
            raise Wrong("the weight is not applied: multiply the normalised x by weight")
        if _same(out, _layer_norm_variant(x, weight, None)):
            raise Wrong("the bias is not applied: add bias after multiplying by weight")
        _compare(out, _layer_norm(x, weight, bias))
    tiny = _randn(2, 4, C, seed=103) * 1e-3  # tokens whose variance (about 1e-6) is below eps
    out = _shape(layer_norm(tiny.clone(), weight.clone(), bias.clone()), (2, 4, C))
    if not _same(out, _layer_norm(tiny, weight, bias)):
        if _same(out, _layer_norm_variant(tiny, weight, bias, eps_inside=False)):
            raise Wrong("eps goes inside the square root: sqrt(var + eps)")
        if _same(out, _layer_norm_variant(tiny, weight, bias, eps=0.0)):
            raise Wrong("add eps inside the square root, sqrt(var + eps): tokens with a tiny variance blow up without")
        _compare(out, _layer_norm(tiny, weight, bias))
    out = layer_norm(tiny.clone(), weight.clone(), bias.clone(), eps=0.1)
    if not _same(out, _layer_norm(tiny, weight, bias, eps=0.1)) and _same(out, _layer_norm(tiny, weight, bias)):
        raise Wrong("use the eps argument (here 0.1), not a fixed 1e-5")
    _compare(out, _layer_norm(tiny, weight, bias, eps=0.1))
    try:
        out = layer_norm(x.clone(), weight.clone(), None)
    except TypeError as error:
        if "NoneType" not in str(error):
            raise
        raise Wrong(
            "bias may be None (a LayerNorm without bias): add it only when given, y if bias is None else y + bias"
        ) from None
    _compare(out, _layer_norm(x, weight, None))


@piece("gelu", "04_blocks", "GPT-2's GELU, the tanh approximation", _gelu)
def _verify_gelu(gelu: Callable) -> None:
    x = torch.cat([torch.linspace(-5, 5, 101, dtype=torch.float64), _randn(50, seed=110, dtype=torch.float64) * 3])
    out = _shape(gelu(x.clone()), tuple(x.shape))
    tight = {"atol": 1e-6, "rtol": 1e-6}  # the exact GELU differs from the tanh one by about 1e-4
    if not _same(out, _gelu(x), **tight):
        c = math.sqrt(2 / math.pi)
        if _same(out, F.gelu(x), **tight):
            raise Wrong(
                "that is the exact GELU; GPT-2 uses the tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))"
            )
        if _same(out, F.relu(x), **tight):
            raise Wrong("that is ReLU; GELU is smooth: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))")
        if _same(out, 0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * x**2))), **tight):
            raise Wrong("use x³ inside the tanh: 0.044715·x³ (x ** 3), not x²")
        if _same(out, 2 * _gelu(x), **tight):
            raise Wrong("the result is twice too large: 0.5·x·(1 + tanh(...))")
        _compare(out, _gelu(x), **tight)
    x32 = _randn(3, 7, seed=111) * 2  # float32, as in a model
    _compare(gelu(x32.clone()), _gelu(x32))


@piece("mlp_forward", "04_blocks", "the MLP: fc, GELU, proj", _mlp_forward)
def _verify_mlp_forward(mlp_forward: Callable) -> None:
    C = 8
    with torch.random.fork_rng(devices=[]):  # nn.Linear() draws initial weights from the global generator
        fc, proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
    fc, proj = _randomized(fc, 120, 0.5).double(), _randomized(proj, 121, 0.5).double()  # float64: GELUs differ by 1e-4
    x = _randn(2, 3, C, seed=122, dtype=torch.float64)  # (B, T, C)
    out = _shape(mlp_forward(x.clone(), copy.deepcopy(fc), copy.deepcopy(proj)), (2, 3, C), "(B, T, C) -> (B, T, C)")
    tight = {"atol": 1e-7, "rtol": 1e-7}
    with torch.no_grad():
        h = fc(x)  # (B, T, 4C)
        expected = proj(F.gelu(h, approximate="tanh"))  # (B, T, C)
        if _same(out, expected, **tight):
            return
        if _same(out, proj(h), **tight):
            raise Wrong("there is no GELU between fc and proj: two Linear layers in a row are one Linear layer")
        if _same(out, proj(F.relu(h)), **tight):
            raise Wrong("that is ReLU between fc and proj; GPT-2 uses GELU, the tanh approximation")
        if _same(out, proj(F.gelu(h)), **tight):
            raise Wrong('that is the exact GELU; GPT-2 uses the tanh approximation: F.gelu(h, approximate="tanh")')
        _compare(out, expected, **tight)


@piece("block_forward", "04_blocks", "the pre-norm Transformer block with its residual connections", _block_forward)
def _verify_block_forward(block_forward: Callable) -> None:
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)
    with torch.random.fork_rng(devices=[]):  # Block() draws initial weights from the global generator
        block = _randomized(Block(config), 130)
    x = _randn(2, 5, 16, seed=131)  # (B, T, C)
    out = _shape(block_forward(x.clone(), copy.deepcopy(block)), (2, 5, 16), "(B, T, C) -> (B, T, C)")
    _diagnose_block(out, block, x)


def _diagnose_block(out: torch.Tensor, block: Block, x: torch.Tensor) -> None:
    """Nothing if `out` is the pre-norm block's output for x, else Wrong naming the mistake it matches."""
    with torch.no_grad():
        expected = block(x)
        if _same(out, expected):
            return
        attn, mlp, ln_1, ln_2 = block.attn, block.mlp, block.ln_1, block.ln_2
        h = ln_1(x + attn(x))  # post-norm: the sum is normalised
        if _same(out, ln_2(h + mlp(h))):
            raise Wrong("normalise the branch's input, not the sum: x = x + attn(ln_1(x))")
        h = x + attn(ln_1(x))
        a = attn(ln_1(x))
        if any(_same(out, y) for y in (mlp(ln_2(a)), a + mlp(ln_2(a)), mlp(ln_2(h)))):
            raise Wrong("the block must add to x: x = x + ...")
        if _same(out, h + mlp(ln_2(x))):
            raise Wrong("the MLP must read the updated stream: after x = x + attn(ln_1(x)), x = x + mlp(ln_2(x))")
        _compare(out, expected)


@piece("LayerNorm", "04_blocks", "LayerNorm as a module: gain and shift in __init__, layer_norm in forward", LayerNorm)
def _verify_layer_norm_module(layer_norm_class: Callable) -> None:
    parts = {"weight": "the gain, C ones to start with", "bias": "the shift, C zeros at first (none if bias=False)"}
    fresh = layer_norm_class(8)
    if isinstance(fresh, nn.Module):
        state = fresh.state_dict()
        if "weight" in state and not torch.equal(state["weight"], torch.ones(8)):
            raise Wrong("the gain starts at 1 for every feature (torch.ones), so that a new LayerNorm only normalises")
        if "bias" in state and not torch.equal(state["bias"], torch.zeros(8)):
            raise Wrong("the shift starts at 0 for every feature (torch.zeros)")
    reference = _randomized(LayerNorm(8), 170)
    mine = _with_reference_weights(fresh, reference, "LayerNorm", parts)
    x = _randn(2, 5, 8, seed=171) * 2 + 0.5  # (B, T, C)
    with torch.no_grad():
        _compare(_shape(mine(x.clone()), (2, 5, 8), "(..., C) -> (..., C)"), reference(x))
    without = layer_norm_class(8, bias=False)
    if isinstance(without, nn.Module) and "bias" in without.state_dict():
        raise Wrong("LayerNorm(C, bias=False) has no shift: make self.bias None then (GPT-2 has one, some models not)")
    loose = _with_reference_weights(layer_norm_class(8, eps=0.5), reference, "LayerNorm", parts)
    tiny = _randn(2, 5, 8, seed=172) * 0.1  # a variance of about 0.01: an eps of 0.5 changes the result a lot
    with torch.no_grad():
        if not _same(loose(tiny), _layer_norm(tiny, reference.weight, reference.bias, 0.5)):
            raise Wrong("keep eps (self.eps = eps) and use it in forward: LayerNorm(C, eps=0.5) must use 0.5")


MLP_PARTS = {
    "fc": "the Linear(C, 4C) that widens each token",
    "proj": "the Linear(4C, C) that brings it back to the stream's width",
}


@piece("MLP", "04_blocks", "the MLP as a module: fc and proj in __init__, fc, GELU, proj in forward", MLP)
def _verify_mlp_module(mlp_class: Callable) -> None:
    reference, x, out = _module_output(mlp_class, MLP, MLP_PARTS, seed=173)
    with torch.no_grad():
        expected = reference(x)
        if _same(out, expected):
            return
        fc, proj = reference.fc, reference.proj
        if _same(out, proj(fc(x))):
            raise Wrong("there is no nonlinearity between fc and proj: apply GELU to fc's output")
        if _same(out, proj(torch.relu(fc(x)))):
            raise Wrong("that is ReLU: GPT-2's MLP uses GELU, with its tanh approximation (your gelu above)")
        if _same(out, proj(F.gelu(fc(x)))):
            raise Wrong("that is the exact GELU: GPT-2's uses the tanh approximation (your gelu above)")
        _compare(out, expected)


BLOCK_PARTS = {
    "ln_1": "a LayerNorm(C) before attention",
    "attn": "CausalSelfAttention(config)",
    "ln_2": "a LayerNorm(C) before the MLP",
    "mlp": "MLP(config)",
}


@piece("Block", "04_blocks", "the pre-norm block as a module: four parts in __init__, two residuals in forward", Block)
def _verify_block(block_class: Callable) -> None:
    reference, x, out = _module_output(block_class, Block, BLOCK_PARTS, seed=140)
    _diagnose_block(out, reference, x)


def _gpt2_block() -> tuple[int, float]:
    """(parameters of one GPT-2 small block, the fraction of them in its MLP), counted on a real block."""
    with shapes_only():  # only shapes are counted: no memory, no random numbers
        block = Block(GPTConfig.from_preset("gpt2"))
    params = count_parameters(block)
    return params, count_parameters(block.mlp) / params


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm over the last dimension: (..., C) -> (..., C)."""
    return F.rms_norm(x, (x.size(-1),), weight, eps)


def _written_into_stream(depth: int, scale_residual: bool) -> float:
    """Std of what `depth` GPT-2-initialized blocks add to a fixed float64 input (4, 16, 64)."""
    config = GPTConfig(block_size=16, n_layer=depth, n_head=4, n_embd=64)
    with torch.random.fork_rng(devices=[]):  # Block() draws initial weights from the global generator
        stack = nn.Sequential(*[Block(config) for _ in range(depth)]).double()
    generator = torch.Generator().manual_seed(depth)  # GPT-2's initialization, as chapter 04's init_like_gpt2
    for module in stack.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02, generator=generator)
            nn.init.zeros_(module.bias)
    if scale_residual:
        for name, param in stack.named_parameters():
            if name.endswith("proj.weight"):  # attn.proj and mlp.proj write into the residual stream
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * depth), generator=generator)
    x_probe = torch.randn(4, 16, 64, generator=_generator(1), dtype=torch.float64)  # (B, T, C)
    with torch.no_grad():
        return (stack(x_probe) - x_probe).std().item()


@piece("my_gpt2_block", "04_blocks", "the parameters of a GPT-2 block and the MLP's share of them", _gpt2_block)
def _verify_gpt2_block(my_gpt2_block: Callable) -> None:
    out = _pair(my_gpt2_block(), "(parameters of the block, the fraction of them in its MLP)")
    params, fraction = _number(out[0], "the parameter count"), _number(out[1], "the MLP's fraction")
    want_params, want_fraction = _gpt2_block()
    C = 768
    if params != want_params:
        if params == 12 * C * C:
            raise Wrong(
                f"{params:,.0f} is 12·C², the matrices only: count the biases, and the two LayerNorms' weights and "
                "biases, too"
            )
        raise Wrong(
            f"a GPT-2 block has {'more' if params < want_params else 'fewer'} than {params:,.0f} parameters: count "
            "attention (qkv and proj), the MLP (fc and proj) and the two LayerNorms, with their biases"
        )
    if not 0 < fraction < 1:
        raise Wrong(
            f"the MLP's fraction is {_num(fraction)}: a share between 0 and 1, MLP parameters / block parameters"
        )
    if not _close(fraction, want_fraction, 1e-6):
        if _close(fraction, 2 / 3, 1e-9):
            raise Wrong("exactly 2/3 counts the matrices only: count the MLP's biases, and the block's, too")
        raise Wrong(
            f"the MLP's fraction {fraction:.4f} is too {'large' if fraction > want_fraction else 'small'}: the MLP is "
            "fc, Linear(C, 4C), and proj, Linear(4C, C), with their biases"
        )


@piece("my_rms_norm", "04_blocks", "RMSNorm: divide by the root mean square, no mean subtracted", _rms_norm)
def _verify_rms_norm(my_rms_norm: Callable) -> None:
    C = 8
    x = _randn(2, 4, C, seed=340) * 2 + 1  # (B, T, C): a mean far from 0, so that LayerNorm differs
    weight = 1 + 0.3 * _randn(C, seed=341)
    out = _shape(my_rms_norm(x.clone(), weight.clone()), (2, 4, C)).detach()
    if not _same(out, _rms_norm(x, weight)):
        if _same(out, F.layer_norm(x, (C,), weight, None, 1e-5)) or torch.allclose(
            (out / weight).mean(dim=-1), torch.zeros(2, 4), atol=1e-4
        ):
            raise Wrong("you subtracted the mean: that is LayerNorm; RMSNorm divides x itself by sqrt(mean(x²) + eps)")
        if _same(out, _rms_norm(x, torch.ones(C))):
            raise Wrong("the weight is not applied: multiply the normalised x by weight")
        if _same(out, x / torch.sqrt((x**2).sum(dim=-1, keepdim=True) + 1e-5) * weight):
            raise Wrong("divide by the root of the mean of x² over the C numbers, not of their sum: .mean(dim=-1)")
        _compare(out, _rms_norm(x, weight))
    tiny = _randn(3, C, seed=342) * 1e-3  # (T, C): a mean square about 1e-6, below eps
    out = _shape(my_rms_norm(tiny.clone(), weight.clone()), (3, C), "(..., C) -> (..., C), also for (T, C)")
    if not _same(out, _rms_norm(tiny, weight)):
        rms = (tiny**2).mean(dim=-1, keepdim=True).sqrt()  # (T, 1)
        if _same(out, tiny / (rms + 1e-5) * weight):
            raise Wrong("eps goes inside the square root: sqrt(mean(x²) + eps)")
        if _same(out, tiny / rms * weight):
            raise Wrong("add eps inside the square root, sqrt(mean(x²) + eps): tiny vectors blow up without it")
        _compare(out, _rms_norm(tiny, weight))
    out = my_rms_norm(tiny.clone(), weight.clone(), eps=0.1)
    if not _same(out, _rms_norm(tiny, weight, 0.1)) and _same(out, _rms_norm(tiny, weight)):
        raise Wrong("use the eps argument (here 0.1), not a fixed 1e-5")
    _compare(_shape(out, (3, C)), _rms_norm(tiny, weight, 0.1))


@piece(
    "my_written_into_stream",
    "04_blocks",
    "experiment: what 24 blocks write into the stream, with and without the 1/√(2L) scaling",
    _written_into_stream,
)
def _verify_written_into_stream(my_written_into_stream: Callable) -> None:
    found = {}
    for scale_residual in (True, False):
        call = f"my_written_into_stream(24, {scale_residual})"
        out = my_written_into_stream(24, scale_residual)
        if isinstance(out, torch.Tensor):
            raise Wrong(f"{call} returned a tensor: return a Python float, .item()")
        found[scale_residual] = _number(out, f"{call}'s result")
    scaled, unscaled = found[True], found[False]
    if scaled > 0.5:
        raise Wrong(
            f"with the scaling, yours measured {_num(scaled)}, about the size of the input itself: return the std of "
            "stack(x_probe) - x_probe, what the blocks added"
        )
    if not 0.01 < scaled < 0.04:
        raise Wrong(
            "with the scaling, 24 blocks should write about as much into the stream as a single block, a std "
            f"between 0.01 and 0.04; yours measured {_num(scaled)}: re-initialize the stack with init_like_gpt2(stack, "
            "depth, scale_residual=scale_residual, generator=torch.Generator().manual_seed(depth))"
        )
    if not unscaled > 4 * scaled:
        raise Wrong(
            f"without the scaling, 24 blocks should write several times more than with it; yours measured "
            f"{_num(unscaled)} without and {_num(scaled)} with: pass scale_residual on to init_like_gpt2"
        )


add_hints(
    {
        "LayerNorm": (
            "A LayerNorm module holds what layer_norm needs besides x: a gain and a shift of C numbers each, which "
            "training learns, and eps. Name them weight and bias, as the package (and PyTorch) do.",
            "In __init__ keep eps and make weight an nn.Parameter of C ones and bias an nn.Parameter of C zeros, or "
            "None when bias=False; forward is your layer_norm with them.",
        ),
        "MLP": (
            "The MLP widens each token four times, applies GELU, and narrows it back: two Linear layers named fc and "
            "proj, with your gelu between them.",
            "In __init__, fc is a Linear from n_embd to 4 · n_embd and proj one from 4 · n_embd to n_embd (both with "
            "bias=config.bias); forward applies fc, your gelu, then proj.",
        ),
        "Block": (
            "The block owns four parts and uses them in forward: a LayerNorm and attention, then a LayerNorm and the "
            "MLP. Name them as the package does (ln_1, attn, ln_2, mlp), or its weights will not load into yours.",
            "In __init__, after super().__init__(), make two LayerNorms of width n_embd (with config.bias), a "
            "CausalSelfAttention(config) and an MLP(config); in forward, add attention's output on the normalised "
            "stream to the stream, then the MLP's output on the normalised updated stream.",
            "Pre-norm: the LayerNorm goes on the branch's input, never on the sum; and the MLP reads the stream "
            "after attention's addition.",
        ),
        "layer_norm": (
            "LayerNorm normalises each token on its own: its C numbers (the last dimension) get mean 0 and "
            "variance 1, then are scaled by weight and shifted by bias, when there is one.",
            "Take the mean over dim=-1 with keepdim=True, the variance as the mean of the squared differences from "
            "it, subtract the mean and divide by the square root of the variance plus eps, multiply by weight, and "
            "add bias only if it is not None.",
            "The classic traps: the variance must be the biased one (divide by C; with .var, unbiased=False), eps "
            "goes inside the square root, and use the eps argument rather than a fixed 1e-5.",
        ),
        "gelu": (
            "GPT-2's GELU is the tanh approximation, 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))): write "
            "that formula with tensor operations, element by element.",
            "Use torch.tanh on the tensor, math.sqrt and math.pi for the constant √(2/π), and the power operator for "
            "the cube; not F.gelu, and not the exact GELU with erf.",
            "Mind the cube inside the tanh (x³, not x²) and the factor 0.5 in front.",
        ),
        "mlp_forward": (
            "The MLP works on each position on its own: fc goes from C up to 4C, GELU bends the result, and proj "
            "comes back down to C, so that it can be added to the stream.",
            "Apply fc to x, your gelu to that, and proj to the result, as nested calls: (B, T, C) → (B, T, 4C) → "
            "(B, T, 4C) → (B, T, C).",
            "Without the GELU two Linear layers in a row are one Linear layer; use GPT-2's tanh GELU (your gelu), "
            "not ReLU and not the exact GELU.",
        ),
        "block_forward": (
            "A pre-norm block has two residual additions: each branch (attention, then the MLP) reads a normalised "
            "copy of the stream x, and its output is added to x; the sum itself is not normalised.",
            "First replace x with x plus block.attn applied to block.ln_1 of x; then return that new x plus "
            "block.mlp applied to block.ln_2 of the new x.",
            "The MLP must read the updated stream, after attention's addition, not the block's input.",
        ),
        "my_gpt2_block": (
            "Count a block's parts from their shapes, with C = 768: attention (qkv Linear(C, 3C) and proj "
            "Linear(C, C)), the MLP (fc Linear(C, 4C) and proj Linear(4C, C)) and the two LayerNorms.",
            "A Linear(in, out) has in · out weights and out biases, a LayerNorm of width C has C weights and C "
            "biases; add everything up for the block, and divide the MLP's count by the block's for the fraction.",
            "12·C² and 2/3 count the matrices only: the biases and the LayerNorms make both numbers a little "
            "different.",
        ),
        "my_rms_norm": (
            "RMSNorm is LayerNorm without the mean: each token's C numbers are divided by their root mean square, "
            "then multiplied by weight; there is no bias.",
            "Square x, take the mean over dim=-1 with keepdim=True, add eps, take the square root with torch.sqrt, "
            "divide x by it and multiply by weight.",
            "eps goes inside the square root, use the eps argument, and average the squares over the C numbers "
            "(a mean, not a sum); do not subtract the mean of x.",
        ),
        "my_written_into_stream": (
            "What the blocks wrote into the residual stream is the stack's output minus its input; its standard "
            "deviation measures how much, and GPT-2's 1/√(2L) scaling of the projections keeps it small at depth.",
            "Build depth real Blocks with build_stack, re-initialize them with init_like_gpt2, passing scale_residual "
            "and a torch.Generator seeded with depth; make a float64 x_probe of shape (4, 16, 64) with torch.randn "
            "and a seeded generator, run the stack under torch.no_grad(), and return the std of output minus x_probe.",
            "Subtract the input before taking the std (the output itself has about the input's std, 1), and return a "
            "Python float with .item(), not a tensor.",
        ),
    }
)


add_shortcuts(
    {
        "layer_norm": (r"\b(?:F|functional|torch)\.layer_norm\(", r"\bnn\.LayerNorm\b"),
        "gelu": (r"\b(?:F|functional|torch)\.gelu\(", r"\bnn\.GELU\b"),
    }
)
