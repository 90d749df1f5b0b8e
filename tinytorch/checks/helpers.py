"""Helpers shared by the chapters' checks: seeded inputs, numbers for messages, and comparisons that raise
`Wrong` in the learner's terms."""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tinytorch.config import GPTConfig
from tinytorch.gpt import GPT


class Wrong(Exception):
    """What is wrong with a learner's piece, in the learner's terms."""


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator(seed), dtype=dtype)


def _randint(high: int, shape: tuple, seed: int) -> torch.Tensor:
    return torch.randint(high, shape, generator=_generator(seed))


def _num(x: Any, digits: int = 3) -> str:
    """A number for a message: `digits` significant digits, whole numbers past that."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 10**digits:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def _same_class(value: Any, cls: type) -> bool:
    """isinstance, or an instance of the class of that name that the book's notebook defines in its export cell."""
    return isinstance(value, cls) or type(value).__name__ == cls.__name__


def _kind(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def _describe(value: Any) -> str:
    """A short description of an argument, for messages."""
    if isinstance(value, torch.Tensor):
        return f"<tensor of shape {tuple(value.shape)}>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _tensor(out: Any, what: str = "the result") -> torch.Tensor:
    """`out` if it is a tensor, else Wrong saying what came back."""
    if isinstance(out, torch.Tensor):
        return out
    if out is None:
        raise Wrong(f"{what} is None: did you forget the return statement?")
    raise Wrong(f"{what} must be a tensor, got {_kind(out)}")


def _returned(out: Any, call: str, kind: str, types: type | tuple[type, ...]) -> Any:
    """`out` if it is an instance of `types`, else Wrong: a forgotten return statement, or what `call` must return."""
    if out is None:
        raise Wrong(f"{call} returned None: did you forget the return statement?")
    if not isinstance(out, types):
        raise Wrong(f"{call} must return {kind}, got {_kind(out)}")
    return out


def _shape(
    out: Any, expected: tuple, hint: str = "", what: str = "the result", mistakes: dict[tuple, str] | None = None
) -> torch.Tensor:
    """`out` if it is a tensor of the expected shape, else Wrong with both shapes.

    `mistakes` maps the shape a typical mistake gives to the message for it, e.g. {(B, T, V): "that is the one-hot
    matrix; ..."}; any other wrong shape gets the two shapes and `hint`.
    """
    out = _tensor(out, what)
    if tuple(out.shape) != tuple(expected):
        if mistakes and tuple(out.shape) in mistakes:
            raise Wrong(mistakes[tuple(out.shape)])
        prefix = "" if what == "the result" else f"{what}: "
        message = f"{prefix}expected shape {tuple(expected)}, got {tuple(out.shape)}"
        raise Wrong(message + (f": {hint}" if hint else ""))
    return out


def _same(out: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    """True when `out` has the shape and values of `expected` (with the same infinities)."""
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        return False
    a, b = out.detach().double(), expected.detach().double()
    return bool(torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=True))


def _position(flat_index: int, shape: torch.Size) -> tuple:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), shape))


def _compare(out: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Wrong with the largest difference from the reference, unless `out` matches it."""
    out = _shape(out, tuple(expected.shape))
    if _same(out, expected, atol, rtol):
        return
    a, b = out.detach().double(), expected.detach().double()
    if a.dim() == 0:
        raise Wrong(f"expected {_num(b, 4)}, got {_num(a, 4)}")
    if torch.isnan(a).any() and not torch.isnan(b).any():
        where = _position(int(torch.isnan(a).flatten().nonzero()[0]), a.shape)
        raise Wrong(f"the result holds NaN at position {where}, expected {_num(b[where], 4)}")
    diff = torch.where((a == b) | (torch.isnan(a) & torch.isnan(b)), 0.0, (a - b).abs())  # same inf: no difference
    diff = torch.nan_to_num(diff, nan=math.inf)
    where = _position(int(diff.flatten().argmax()), a.shape)
    raise Wrong(
        f"values differ from the reference: largest difference {_num(diff[where], 2)} at position {where} "
        f"(expected {_num(b[where], 4)}, got {_num(a[where], 4)})"
    )


def _number(out: Any, what: str = "the result") -> float:
    """`out` as a float: a Python number or a one-number tensor; else Wrong."""
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return out.item()
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        return float(out)
    if isinstance(out, torch.Tensor):
        raise Wrong(f"{what} must be one number, got a tensor of shape {tuple(out.shape)}")
    raise Wrong(f"{what} must be a number, got {_kind(out)}")


def _close(a: float, b: float, rel: float = 1e-5, abs_tol: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def _expect_same(got: Any, want: Any, call: str, atol: float, rtol: float, hint: str = "") -> None:
    """Wrong unless `got` equals `want` (numbers within the tolerances); does not give `want` away."""
    tail = f": {hint}" if hint else ""
    if isinstance(want, torch.Tensor):
        got = _shape(got, tuple(want.shape), what=f"{call}'s result")
        try:
            _compare(got, want, atol, rtol)
        except Wrong as wrong:
            raise Wrong(f"{call}: {wrong}{tail}") from None
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        value = _number(got, f"{call}'s result")
        if not math.isclose(value, want, rel_tol=rtol, abs_tol=atol):
            raise Wrong(f"{call} returned {_num(value, 6)}: too {'large' if value > want else 'small'}{tail}")
    elif isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        if len(got) != len(want):
            raise Wrong(f"{call} returned {len(got)} items, expected {len(want)}{tail}")
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _expect_same(g, w, f"{call}[{i}]", atol, rtol, hint)
    elif isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            raise Wrong(f"{call} returned the keys {sorted(map(str, got))}, expected {sorted(map(str, want))}{tail}")
        for key in want:
            _expect_same(got[key], want[key], f"{call}[{key!r}]", atol, rtol, hint)
    elif got != want:
        raise Wrong(f"{call} returned {_describe(got)}, which is not the answer{tail}")


def _randomized(module: nn.Module, seed: int, scale: float = 0.3) -> nn.Module:
    """`module` in eval mode with every parameter drawn from N(0, scale²), LayerNorm gains around 1.

    Random weights of this size give sharp outputs, so that typical mistakes give clearly different numbers.
    """
    generator = _generator(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator) * scale
            parts = name.split(".")  # e.g. blocks.0.ln_1.weight
            is_gain = len(parts) > 1 and parts[-2].startswith("ln") and parts[-1] == "weight"
            param.copy_(noise + 1 if is_gain else noise)
    return module.eval()


def _gpt(seed: int, dropout: float = 0.0, block_size: int = 8) -> GPT:
    """A small GPT (V = 11, C = 16, 2 blocks of 2 heads) with random weights, in eval mode."""
    config = GPTConfig(vocab_size=11, block_size=block_size, n_layer=2, n_head=2, n_embd=16, dropout=dropout)
    with torch.random.fork_rng(devices=[]):  # GPT() draws its initial weights from the global generator
        model = GPT(config)
    return _randomized(model, seed)


def _whole(out: Any, what: str) -> int:
    """`out` if it is a Python int, else Wrong saying what came back."""
    if isinstance(out, int) and not isinstance(out, bool):
        return out
    if isinstance(out, torch.Tensor):
        raise Wrong(f"{what} must be a Python int, got a tensor: use int(...)")
    raise Wrong(f"{what} must be an int, got {_kind(out)}" + (": use int(...)" if isinstance(out, float) else ""))


def _pair(out: Any, what: str) -> tuple:
    """`out` as a tuple if it is a tuple or list of two items, else Wrong saying what to return."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Wrong(f"return two numbers, {what}; got {_kind(out)}")
    return tuple(out)


def _with_reference_weights(
    mine: Any, reference: nn.Module, cls: str, parts: dict[str, str], source: str = "GPT-2's"
) -> nn.Module:
    """The learner's module `mine` with `reference`'s weights loaded by name, in eval mode. Wrong when it is not a
    module, or a parameter is missing, extra or of another shape: `parts` says what each top-level part holds, and
    `source` whose weights the names are for (GPT-2's, Llama's)."""
    if not isinstance(mine, nn.Module):
        raise Wrong(
            f"{cls}(config) must give an nn.Module, got {_kind(mine)}: class {cls}(nn.Module), with "
            "super().__init__() first in __init__"
        )
    want, got = reference.state_dict(), mine.state_dict()
    names = ", ".join(f"self.{name}" for name in parts)
    for key in want:
        if key not in got:
            top = key.split(".")[0]
            raise Wrong(
                f"your {cls} has no `{key}`: the package's {cls} has self.{top}, {parts.get(top, 'a part')}; name the "
                f"parts as it does ({names}), so that its weights (and {source}) load into yours"
            )
    for key in got:
        if key not in want:
            no_bias = " (its layers have no bias here: bias=False)" if key.endswith(".bias") else ""
            raise Wrong(f"your {cls} has `{key}`, which the package's {cls} has not: its parts are {names}{no_bias}")
    for key, value in want.items():
        if got[key].shape != value.shape:
            raise Wrong(
                f"`{key}` has shape {tuple(got[key].shape)} in your {cls}, {tuple(value.shape)} in the "
                f"package's: {parts.get(key.split('.')[0], 'check its sizes')}"
            )
    mine.load_state_dict(want)
    return mine.eval()


def _module_output(answer: Callable, reference_class: type, parts: dict[str, str], seed: int, T: int = 5):
    """For a module piece of one small block's width: (tinytorch's module with random weights, an input x (2, T, C),
    the output of the learner's module for x with those weights loaded by name). Wrong when a part is missing."""
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)
    with torch.random.fork_rng(devices=[]):  # building either module draws initial weights from the global generator
        reference = _randomized(reference_class(config), seed)
        mine = _with_reference_weights(answer(config), reference, reference_class.__name__, parts)
    x = _randn(2, T, config.n_embd, seed=seed + 1)  # (B, T, C)
    with torch.no_grad():
        out = _shape(mine(x.clone()), (2, T, config.n_embd), "(B, T, C) -> (B, T, C)")
    return reference, x, out
