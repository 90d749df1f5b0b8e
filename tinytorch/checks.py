"""Checks for the pieces the learner writes in the workbook: `check(name, answer)` says built, not yet or wrong."""

# Hand-written (not generated from a notebook). Each piece has a reference (what later cells use until the learner's
# version is built) and a verify function that calls the learner's code on its own small, seeded inputs and raises
# `Wrong` with a message in the learner's terms at the first problem it finds. The exercises (pieces named my_...)
# come at the end of their chapter's section; an experiment that needs a notebook's data only calls the learner's
# function and checks what it found.

import copy
import functools
import inspect
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from tinytorch.attention import CausalSelfAttention, attention_weights, causal_mask
from tinytorch.blocks import Block
from tinytorch.bpe import END_OF_TEXT, BPETokenizer, _encode_chunk, _merge
from tinytorch.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tinytorch.config import GPTConfig, count_parameters
from tinytorch.embeddings import CharTokenizer, Embeddings
from tinytorch.generation import KVCache, generate, top_k_filter, top_p_filter
from tinytorch.gpt import GPT, estimate_flops_per_token, estimate_parameters, next_token_loss
from tinytorch.training import (
    TrainConfig,
    convert_play,
    get_batch,
    get_lr,
    play_paths,
    shakespeare,
    train,
)
from tinytorch.training import evaluate as evaluate_model

__all__ = ["PIECES", "Piece", "Result", "Wrong", "check", "evaluate", "piece", "register", "register_exercise"]


class Wrong(Exception):
    """What is wrong with a learner's piece, in the learner's terms."""


@dataclass(frozen=True)
class Piece:
    """A function the learner writes, with tinytorch's version and the check of the learner's."""

    name: str  # what the learner writes, e.g. "attention_scores" (unique)
    chapter: str  # notebook stem, e.g. "03_attention"
    what: str  # one line, e.g. "scores q·kᵀ of every query against every key"
    reference: Callable  # what later cells use until the learner's version is built
    verify: Callable  # verify(answer) -> None; raises Wrong(message) at the first problem


@dataclass(frozen=True)
class Result:
    """The verdict on one piece: status "built", "not yet" or "wrong"; message "" when built."""

    name: str
    status: str
    message: str


PIECES: dict[str, Piece] = {}  # in course order


def register(name: str, chapter: str, what: str, reference: Callable, verify: Callable) -> Piece:
    """Add a piece to PIECES; a name can be registered once."""
    if name in PIECES:
        raise ValueError(f"a piece named {name!r} is already registered (chapter {PIECES[name].chapter}); pick another")
    PIECES[name] = Piece(name, chapter, what, reference, verify)
    return PIECES[name]


def piece(name: str, chapter: str, what: str, reference: Callable) -> Callable:
    """Decorator: register the decorated function as the verify function of a piece."""

    def decorate(verify: Callable) -> Callable:
        register(name, chapter, what, reference, verify)
        return verify

    return decorate


def register_exercise(
    name: str,
    chapter: str,
    what: str,
    reference: Callable,
    cases: tuple | list = ((),),
    atol: float = 1e-6,
    rtol: float = 1e-6,
    hint: str = "",
) -> Piece:
    """Register an exercise whose answer must return what `reference` returns, for each tuple of arguments in `cases`.

    Numbers are compared with the tolerances, tensors value by value, lists and dicts item by item. A wrong number
    is reported as too large or too small, so the message does not give the answer away; `hint` is added to it.
    """

    def verify(answer: Callable) -> None:
        for args in cases:
            call = f"{name}({', '.join(_describe(a) for a in args)})"
            got = answer(*copy.deepcopy(args))
            _expect_same(got, reference(*copy.deepcopy(args)), call, atol, rtol, hint)

    return register(name, chapter, what, reference, verify)


# ------------------------------------------------------------------------------------- evaluate and check

_STUCK = "(the cells below use tinytorch's version until yours is built)"

# (text in the error message, hint) for errors a learner typically meets, in their terms
_HINTS = [
    (
        "view size is not compatible with input tensor's size and stride",
        "call .contiguous() before .view(), or use .reshape()",
    ),
    ("torch.return_types", "x.max(dim=...) returns (values, indices): use x.max(dim=-1, keepdim=True).values"),
    (
        "must match the size of tensor b",
        "the shapes do not line up: print them; keepdim=True keeps a reduced dimension",
    ),
    ("shapes cannot be multiplied", "the inner sizes of a matrix product must agree: print both shapes"),
    ("tensors used as indices must be long", "token ids must be int64: call .long()"),
    ("expected scalar type Long", "token ids must be int64: call .long()"),
    ("index out of range in self", "an id is too large for its embedding table: ids must be below its number of rows"),
    ("division by zero", "a count is 0 here: handle that case on its own (e.g. warmup_steps = 0 means no warmup)"),
]


def _hint(name: str, error: Exception) -> str:
    """A hint for an error raised by the learner's code, or ""."""
    text = str(error)
    if isinstance(error, NameError):
        return "is it defined in a cell above, and did that cell run?"
    if isinstance(error, TypeError) and "argument" in text and name in PIECES:
        return f"keep the signature given in the cell: def {name}{inspect.signature(PIECES[name].reference)}"
    return next((hint for needle, hint in _HINTS if needle in text), "")


def evaluate(name: str, answer: Any) -> Result:
    """The verdict on the learner's `answer` for piece `name`; never raises for the learner's mistakes.

    The global random state is restored afterwards, so a check does not change what later cells draw.
    """
    if name not in PIECES:
        raise ValueError(f"no piece named {name!r}; known pieces: {', '.join(PIECES)}")
    if not callable(answer):
        return Result(name, "wrong", f"{name} is not a function: define it with def {name}(...):")
    try:
        with torch.random.fork_rng(devices=[]):
            PIECES[name].verify(answer)
    except NotImplementedError:
        return Result(name, "not yet", "")
    except Wrong as wrong:
        return Result(name, "wrong", str(wrong))
    except Exception as error:  # the learner's code raised: say what, in one line
        lines = str(error).strip().splitlines()
        first = lines[0][:200].rstrip(".") if lines else ""
        message = f"calling {name} raised {type(error).__name__}" + (f": {first}" if first else "")
        hint = _hint(name, error)
        return Result(name, "wrong", message + (f"; {hint}" if hint else ""))
    return Result(name, "built", "")


def check(name: str, answer: Any) -> Callable:
    """Print one line on the learner's piece and return it when built, else tinytorch's version.

    With the environment variable TINYTORCH_CHECK_REPORT set to a file, also append the result to it as a JSON line
    (`tinytorch check` reads it).
    """
    result = evaluate(name, answer)
    line = f"{name}: {result.status}"
    if result.status == "wrong":
        line += f": {result.message}"
    if result.status != "built":
        line += f" {_STUCK}"
    print(line)
    report = os.environ.get("TINYTORCH_CHECK_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as file:
            file.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
    return answer if result.status == "built" else PIECES[name].reference


# ------------------------------------------------------------------------------------- helpers for verify


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


def _shape(out: Any, expected: tuple, hint: str = "", what: str = "the result") -> torch.Tensor:
    """`out` if it is a tensor of the expected shape, else Wrong with both shapes."""
    out = _tensor(out, what)
    if tuple(out.shape) != tuple(expected):
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


# ------------------------------------------------------------------------------------- 00_introduction


def _batch_logits(model: GPT, batch_size: int, length: int) -> torch.Tensor:
    """The model's output for a (batch_size, length) batch of random token ids."""
    return model(torch.randint(0, model.config.vocab_size, (batch_size, length)))  # (B, T) -> (B, T, V)


def _too_long_message(model: GPT) -> str:
    """The message of the ValueError the model raises for one position too many."""
    try:
        model(torch.zeros(1, model.config.block_size + 1, dtype=torch.long))
    except ValueError as error:
        return str(error)
    return "no error"


@piece("my_batch_logits", "00_introduction", "the model's output for a batch of random token ids", _batch_logits)
def _verify_batch_logits(my_batch_logits: Callable) -> None:
    model = _gpt(seed=300, block_size=32)  # V = 11
    V = model.config.vocab_size
    fed = []  # the ids of every call of the learner's copy of the model
    for B, T in ((3, 20), (1, 5)):
        theirs = copy.deepcopy(model)
        fed.clear()
        theirs.register_forward_pre_hook(lambda module, args: fed.extend(a.detach().clone() for a in args[:1]))
        try:
            out = my_batch_logits(theirs, B, T)
        except ValueError as error:
            if "vocab_size" not in str(error):
                raise
            raise Wrong(
                f"an id was too large for this model, whose vocab_size is {V}: draw the ids below "
                "model.config.vocab_size, torch.randint(0, model.config.vocab_size, (batch_size, length))"
            ) from None
        call = f"my_batch_logits(model, {B}, {T})"
        out = _tensor(out, f"{call}'s result")
        if tuple(out.shape) == (B, T):
            raise Wrong(f"{call} returned a ({B}, {T}) tensor, the ids: return the model's output for them, (B, T, V)")
        if tuple(out.shape) == (T, B, V):
            raise Wrong(f"{call} has shape {(T, B, V)}: the batch of ids is (batch_size, length), not the other way")
        _shape(
            out, (B, T, V), "a batch of B sequences of T ids gives (B, T, V): one score per token", f"{call}'s result"
        )
        if not out.dtype.is_floating_point:
            raise Wrong(f"{call} has dtype {out.dtype}: the model's output is a float tensor of logits")
        if fed and tuple(fed[-1].shape) == (B, T):
            with torch.no_grad():
                expected = model(fed[-1])  # (B, T, V)
            if _same(out, F.softmax(expected, dim=-1)):
                raise Wrong(f"{call} returned probabilities: return the model's output itself, the logits")
            if not _same(out, expected):
                raise Wrong(f"{call} is not the model's output for the ids it was given: return model(ids) as it is")


@piece("my_too_long_message", "00_introduction", "the error message for one position too many", _too_long_message)
def _verify_too_long_message(my_too_long_message: Callable) -> None:
    model = _gpt(seed=301)  # block_size 8
    try:
        out = my_too_long_message(copy.deepcopy(model))
    except ValueError as error:
        raise Wrong(
            f"the ValueError escaped ({str(error)[:80]}): catch it with try/except ValueError as error, "
            "and return str(error)"
        ) from None
    if isinstance(out, Exception):
        raise Wrong("return the message, str(error), not the error itself")
    if not isinstance(out, str):
        raise Wrong(f"return the message as a string, str(error); got {_kind(out)}")
    if "block_size" not in out or "8" not in out:
        raise Wrong(
            f"with a model of block_size 8, the message should name block_size and 8; got {out[:100]!r}: "
            "call the model on a (1, block_size + 1) tensor of integer ids, "
            "torch.zeros(1, model.config.block_size + 1, dtype=torch.long)"
        )
    if out != _too_long_message(model):
        raise Wrong(
            f"got {out[:100]!r}: that is the message for another length; feed exactly block_size + 1 ids, "
            "with model.config.block_size rather than a fixed number"
        )


# ------------------------------------------------------------------------------------- 01_utilities


def _config() -> GPTConfig:
    """The default config with 8 layers of width 256."""
    return replace(GPTConfig(), n_layer=8, n_embd=256)


def _valid_heads(n_embd: int, max_heads: int) -> list[int]:
    """The head counts 1..max_heads that divide n_embd."""
    return [h for h in range(1, max_heads + 1) if n_embd % h == 0]


def _shared_counts() -> tuple[int, int]:
    """(parameters of Sequential(a, a), parameters of Sequential(a, b)) for Linear(4, 4) layers a and b."""
    with torch.device("meta"):  # only shapes are counted: no memory, no random numbers
        shared = nn.Linear(4, 4)
        return count_parameters(nn.Sequential(shared, shared)), count_parameters(nn.Sequential(shared, nn.Linear(4, 4)))


@piece("my_config", "01_utilities", "the default config with 8 layers of width 256", _config)
def _verify_config(my_config: Callable) -> None:
    out = my_config()
    if not _same_class(out, GPTConfig):
        raise Wrong(f"return a GPTConfig, got {_kind(out)}: e.g. dataclasses.replace(GPTConfig(), ...)")
    want = _config()
    if (out.n_layer, out.n_embd) == (want.n_embd, want.n_layer):
        raise Wrong("n_layer and n_embd are swapped: n_layer counts the blocks, n_embd is the width")
    for field in fields(GPTConfig):
        got, expected = getattr(out, field.name), getattr(want, field.name)
        if got == expected:
            continue
        if field.name in ("n_layer", "n_embd"):
            raise Wrong(f"{field.name} is {got!r}, expected {expected!r}")
        raise Wrong(
            f"{field.name} is {got!r}, but the exercise keeps its default, {expected!r}: "
            "change only n_layer and n_embd, e.g. with dataclasses.replace(GPTConfig(), ...)"
        )


@piece("my_valid_heads", "01_utilities", "the head counts up to max_heads that divide n_embd", _valid_heads)
def _verify_valid_heads(my_valid_heads: Callable) -> None:
    for n_embd, max_heads in ((200, 12), (96, 10), (7, 7)):
        call = f"my_valid_heads({n_embd}, {max_heads})"
        try:
            out = my_valid_heads(n_embd, max_heads)
        except ZeroDivisionError:
            raise Wrong("n_head counts from 1, range(1, max_heads + 1): n_embd % 0 divides by zero") from None
        if not isinstance(out, list):
            raise Wrong(f"{call} must return a list of ints, got {_kind(out)}: e.g. [h for h in ... if ...]")
        if any(not isinstance(h, int) or isinstance(h, bool) for h in out):
            raise Wrong(f"{call} must return a list of ints (head counts), got {_describe(out)}")
        want = _valid_heads(n_embd, max_heads)
        if out == want:
            continue
        extra, missing = [h for h in out if h not in want], [h for h in want if h not in out]
        if extra and not 1 <= extra[0] <= max_heads:
            raise Wrong(f"{call} contains {extra[0]}, outside 1..max_heads = 1..{max_heads}")
        if extra:
            h = extra[0]
            raise Wrong(
                f"{call} contains {h}, but {n_embd} % {h} = {n_embd % h}: GPTConfig(n_embd={n_embd}, n_head={h}) "
                "raises a ValueError"
            )
        if missing and missing[-1] == max_heads:
            raise Wrong(f"{call} leaves out {max_heads} = max_heads: range(1, max_heads + 1) includes it")
        if missing:
            raise Wrong(f"{call} leaves out {missing[0]}: {n_embd} % {missing[0]} == 0, so that many heads work")
        raise Wrong(f"{call} returned {_describe(out)}: list each head count once, in increasing order")


@piece("my_shared_counts", "01_utilities", "parameters of a shared layer used twice and of two layers", _shared_counts)
def _verify_shared_counts(my_shared_counts: Callable) -> None:
    out = _pair(my_shared_counts(), "(parameters of Sequential(a, a), parameters of Sequential(a, b))")
    shared, separate = _number(out[0], "the shared count"), _number(out[1], "the separate count")
    want = _shared_counts()
    if (shared, separate) == want:
        return
    if (shared, separate) == want[::-1]:
        raise Wrong("the shared count comes first: (Sequential(a, a), Sequential(a, b))")
    if shared == want[1]:
        raise Wrong(
            f"the first Sequential has {shared:.0f} parameters, as many as two layers: put the same layer in twice, "
            "a = nn.Linear(4, 4) then nn.Sequential(a, a); each nn.Linear(4, 4) call makes a new layer"
        )
    if separate == want[0]:
        raise Wrong("the second Sequential needs two separate layers: nn.Sequential(a, nn.Linear(4, 4))")
    raise Wrong(f"returned ({_num(shared)}, {_num(separate)}): count the parameters with count_parameters(...)")


# ------------------------------------------------------------------------------------- 02_embeddings

_TEXT = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n"
_CHARS = sorted(set(_TEXT))  # the vocabulary: 30 distinct characters, sorted


def _encode(text: str, chars: list[str]) -> list[int]:
    """Token ids of `text`: the index of each character in the vocabulary `chars`."""
    stoi = {c: i for i, c in enumerate(chars)}
    return [stoi[c] for c in text]


def _decode(ids: list[int], chars: list[str]) -> str:
    """The text of token ids: the characters at those indices of `chars`, joined."""
    return "".join(chars[i] for i in ids)


@piece("encode", "02_embeddings", "text -> token ids: each character's index in the vocabulary", _encode)
def _verify_encode(encode: Callable) -> None:
    text = "JULIET: O Romeo!"
    expected = _encode(text, _CHARS)
    out = encode(text, list(_CHARS))
    if isinstance(out, torch.Tensor):
        raise Wrong("encode must return a list of ints, got a tensor: return a list, e.g. [stoi[c] for c in text]")
    if isinstance(out, str):
        raise Wrong("encode must return a list of ints, got a string: one id per character, [stoi[c] for c in text]")
    if not isinstance(out, list):
        raise Wrong(f"encode must return a list of ints, got {_kind(out)}")
    if len(out) != len(text):
        raise Wrong(f"{text!r} has {len(text)} characters, so expected {len(text)} ids, got {len(out)}")
    for i, (char, want, got) in enumerate(zip(text, expected, out, strict=True)):
        if not isinstance(got, int) or isinstance(got, bool):
            raise Wrong(f"the ids must be Python ints, got {_kind(got)} at position {i}: use int(...)")
        if got == want:
            continue
        if got == ord(char):
            raise Wrong(
                f"{char!r} should get id {want}, its index in chars, got {got}: "
                "ids are positions in the vocabulary, not Unicode numbers"
            )
        if abs(got - want) == 1:
            raise Wrong(f"{char!r} should get id {want}, its index in chars, got {got}: off by one; chars[0] has id 0")
        raise Wrong(f"{char!r} (character {i} of {text!r}) should get id {want}, its index in chars, got {got}")


@piece("decode", "02_embeddings", "token ids -> text: the characters at those indices, joined", _decode)
def _verify_decode(decode: Callable) -> None:
    text = "Romeo, deny thy name!"
    ids = _encode(text, _CHARS)
    out = decode(list(ids), list(_CHARS))
    if isinstance(out, (list, tuple)):
        raise Wrong("decode must return one string: join the characters with ''.join")
    if not isinstance(out, str):
        raise Wrong(f"decode must return a string, got {_kind(out)}")
    if out != text:
        raise Wrong(f"decode(encode({text!r})) gave {out!r}: the round trip must give the text back; id i is chars[i]")


def _embed(idx: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor) -> torch.Tensor:
    """Token plus position embedding: idx (B, T), wte (V, C), wpe (block_size, C) -> (B, T, C)."""
    T = idx.size(1)
    return wte[idx] + wpe[:T]  # (B, T, C) + (T, C) -> (B, T, C)


@piece("embed", "02_embeddings", "token embedding plus position embedding: wte[idx] + wpe[:T]", _embed)
def _verify_embed(embed: Callable) -> None:
    V, block_size, C = 10, 8, 6
    idx = torch.tensor([[3, 1, 3, 7, 0], [5, 5, 2, 6, 4]])  # (2, 5): token 3 and token 5 each appear twice
    wte, wpe = _randn(V, C, seed=20), _randn(block_size, C, seed=21)
    out = _shape(embed(idx.clone(), wte.clone(), wpe.clone()), (2, 5, C), "(B, T) ids -> (B, T, C) vectors")
    if _same(out, wte[idx]):
        raise Wrong("the same token at two positions gets the same vector: add the position embedding wpe[:T]")
    if _same(out, wte[idx] + wpe[idx]):
        raise Wrong("the positions were looked up with the token ids: position t gets row t of wpe, so add wpe[:T]")
    if _same(out, wpe[:5].expand(2, 5, C)):
        raise Wrong("the token embedding is missing: add wte[idx], the row of each token id")
    _compare(out, _embed(idx, wte, wpe))


def _new_characters(text: str, known: str) -> set[str]:
    """The characters of `text` that `known` never uses."""
    return set(text) - set(known)


def _one_hot_embed(idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The rows of weight (V, C) picked by idx (B, T), as a one-hot product: (B, T, C)."""
    return F.one_hot(idx, num_classes=weight.size(0)).to(weight.dtype) @ weight  # (B, T, V) @ (V, C) -> (B, T, C)


def _embed_last(embeddings: Embeddings, ids: torch.Tensor) -> torch.Tensor:
    """The embedding of the last block_size ids of a 1-D tensor, as a batch of one: (1, block_size, C)."""
    return embeddings(ids[None][:, -embeddings.config.block_size :])  # (1, T) -> (1, T, C)


@piece("my_new_characters", "02_embeddings", "the characters of a text that another text never uses", _new_characters)
def _verify_new_characters(my_new_characters: Callable) -> None:
    cases = [("hello, world", "hold up"), ("", "abc"), ("abc", ""), ("Ça, naïve — ü!", "Ca, naive - u!"), ("aaa", "a")]
    for text, known in cases:
        call = f"my_new_characters({text!r}, {known!r})"
        out = my_new_characters(text, known)
        if not isinstance(out, (set, frozenset)):
            raise Wrong(f"{call} must return a set of characters, got {_kind(out)}: e.g. set(text) - set(known)")
        want = _new_characters(text, known)
        if out == want:
            continue
        if out == set(known) - set(text):
            raise Wrong(f"{call} gave the characters of known that text does not use: the question is the other way")
        extra, missing = sorted(out - want, key=repr), sorted(want - out, key=repr)
        if extra:
            where = "known uses it too" if extra[0] in set(known) else "it is not in text"
            raise Wrong(f"{call} contains {extra[0]!r}, but {where}")
        raise Wrong(f"{call} leaves out {missing[0]!r}, which text uses and known does not")


@piece("my_one_hot_embed", "02_embeddings", "a token embedding as a one-hot matrix product", _one_hot_embed)
def _verify_one_hot_embed(my_one_hot_embed: Callable) -> None:
    V, C = 10, 6
    cases = [
        (_randint(7, (2, 5), seed=310), _randn(V, C, seed=311)),  # ids below 7: the last rows of weight unused
        (_randint(V, (3, 4), seed=312), _randn(V, C, seed=313, dtype=torch.float64)),  # float64 weights
    ]
    for idx, weight in cases:
        B, T = idx.shape
        try:
            out = my_one_hot_embed(idx.clone(), weight.clone())
        except RuntimeError as error:
            if "dtype" in str(error):
                raise Wrong(
                    "F.one_hot gives int64 numbers: convert them to the weight's dtype, .to(weight.dtype), "
                    "before the product"
                ) from None
            if "cannot be multiplied" in str(error):
                raise Wrong(
                    f"F.one_hot(idx) makes only max(idx) + 1 = {int(idx.max()) + 1} columns here: "
                    "pass num_classes=weight.size(0), the V rows of weight"
                ) from None
            raise
        out = _tensor(out)
        if tuple(out.shape) == (B, T, V):
            raise Wrong(
                f"expected shape {(B, T, C)}, got {(B, T, V)}: that is the one-hot matrix; "
                "multiply it by weight, (B, T, V) @ (V, C)"
            )
        _compare(_shape(out, (B, T, C), "(B, T) ids and a (V, C) weight give (B, T, C)"), F.embedding(idx, weight))


@piece("my_embed_last", "02_embeddings", "the embedding of the last block_size ids, as a batch of one", _embed_last)
def _verify_embed_last(my_embed_last: Callable) -> None:
    config = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=4, n_embd=16)
    with torch.random.fork_rng(devices=[]):  # Embeddings() draws initial weights from the global generator
        embeddings = _randomized(Embeddings(config), 320)
    ids = _randint(10, (13,), seed=321)  # 1-D, longer than block_size
    try:
        out = my_embed_last(copy.deepcopy(embeddings), ids.clone())
    except ValueError as error:
        if "batch dimension" in str(error):
            raise Wrong("embeddings takes a batch (B, T): make the 1-D ids a batch of one, ids[None]") from None
        if "block_size" in str(error):
            raise Wrong(
                f"embeddings raised ValueError: {str(error)[:100]}: keep only the last embeddings.config.block_size ids"
            ) from None
        raise
    with torch.no_grad():
        out = _tensor(out)
        if tuple(out.shape) == (8, 16):
            raise Wrong("expected shape (1, 8, 16), got (8, 16): a batch of one keeps its batch dimension, ids[None]")
        out = _shape(out, (1, 8, 16), "the last block_size ids as a batch of one: (1, block_size, C)")
        if _same(out, embeddings(ids[None, :8])):
            raise Wrong("those are the first block_size ids; embed the last ones: ids[-block_size:]")
        _compare(out, _embed_last(embeddings, ids))
        short = _randint(10, (5,), seed=322)  # fewer ids than block_size: all of them
        hint = "with 5 ids, fewer than block_size 8, embed all 5"
        out = _shape(my_embed_last(copy.deepcopy(embeddings), short.clone()), (1, 5, 16), hint)
        _compare(out, _embed_last(embeddings, short))


# ------------------------------------------------------------------------------------- 02b_subwords


def _count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each pair of neighbours occurs in `ids`: {(a, b): count}."""
    counts = {}
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _train_merges(ids: list[int], num_merges: int) -> list[tuple[int, int]]:
    """The pairs merged by `num_merges` steps of BPE on `ids`, in order; merge i makes token 256 + i."""
    merges = []
    for i in range(num_merges):
        counts = _count_pairs(ids)
        pair = min(counts, key=lambda p: (-counts[p], p))  # the most frequent; on a tie, the smallest pair
        ids = _merge(ids, pair, 256 + i)
        merges.append(pair)
    return merges


def _id_list(out: Any, call: str) -> list:
    """`out` if it is a list of Python ints, else Wrong saying what came back."""
    if out is None:
        raise Wrong(f"{call} returned None: did you forget the return statement?")
    if not isinstance(out, list):
        raise Wrong(f"{call} must return a list of ids, got {_kind(out)}")
    if any(not isinstance(i, int) or isinstance(i, bool) for i in out):
        raise Wrong(f"{call} must return a list of ints, got {_describe(out)}")
    return out


@piece("count_pairs", "02b_subwords", "how often each pair of neighbouring ids occurs: {(a, b): count}", _count_pairs)
def _verify_count_pairs(count_pairs: Callable) -> None:
    for ids in ([1, 2, 3, 1, 2], [7, 7, 7], list(b"to be or not to be"), [5], []):
        call = f"count_pairs({_describe(ids)})"
        out = count_pairs(list(ids))
        if out is None:
            raise Wrong(f"{call} returned None: did you forget the return statement?")
        if not isinstance(out, dict):
            raise Wrong(f"{call} must return a dict {{(a, b): count}}, got {_kind(out)}")
        want = _count_pairs(ids)
        if out == want:
            continue
        key = next((k for k in out if not isinstance(k, tuple) or len(k) != 2), None)
        if key is not None:
            raise Wrong(f"the keys must be pairs of ids as tuples, (a, b); {call} has the key {key!r}")
        if ids == [7, 7, 7] and out.get((7, 7)) == 1:
            raise Wrong("[7, 7, 7] holds (7, 7) twice, at positions 0-1 and 1-2: when counting, pairs overlap")
        if out == _count_pairs(ids[:-1]):
            raise Wrong(
                f"{call} leaves out the last pair, {tuple(ids[-2:])}: every id but the last has a right neighbour"
            )
        extra, missing = [p for p in out if p not in want], [p for p in want if p not in out]
        if extra:
            raise Wrong(f"{call} counts {extra[0]}, which is not a pair of neighbours: pairwise(ids) gives them")
        if missing:
            raise Wrong(f"{call} leaves out the pair {missing[0]}")
        pair = next(p for p in want if out[p] != want[p])
        raise Wrong(f"{call} gives {pair} the count {out[pair]}, but it occurs {want[pair]} times")


@piece("merge", "02b_subwords", "every occurrence of a pair, left to right, replaced by a new id", _merge)
def _verify_merge(merge: Callable) -> None:
    cases = [
        ([1, 2, 3, 1, 2], (1, 2), 99),
        ([7, 7, 7], (7, 7), 256),  # overlapping occurrences: left to right
        ([1, 2, 1, 2], (1, 2), 300),  # neighbouring occurrences
        ([5, 6, 5], (6, 5), 257),  # at the end
        ([3, 1], (1, 2), 256),  # absent
        ([], (1, 2), 256),
    ]
    for ids, pair, new_id in cases:
        call = f"merge({ids}, {pair}, {new_id})"
        given = list(ids)
        out = _id_list(merge(given, pair, new_id), call)
        if given != ids:
            raise Wrong(f"{call} changed the list it was given: build a new list and leave ids as it is")
        want = _merge(ids, pair, new_id)
        if out == want:
            continue
        if out == _merge(ids[::-1], pair[::-1], new_id)[::-1]:
            raise Wrong(f"{call} returned {out}: merge from left to right, so the first 7 joins the second")
        if out.count(new_id) > want.count(new_id):
            raise Wrong(f"{call} returned {out}: an id joined two pairs; after a merge, skip both of its ids (i += 2)")
        if len(out) > len(want) and out.count(new_id) == want.count(new_id) > 0:
            raise Wrong(f"{call} returned {out}: a merged pair's second id is still there; skip both ids (i += 2)")
        first = ids.index(pair[0]) if pair[0] in ids else 0
        only_first = ids[:first] + [new_id] + ids[first + 2 :]
        if want.count(new_id) > 1 and out == only_first:
            raise Wrong(f"{call} returned {out}: only the first occurrence was merged; replace every occurrence")
        raise Wrong(f"{call} returned {out}, expected {want}")


@piece("train_merges", "02b_subwords", "the training loop: count, merge the most frequent pair, repeat", _train_merges)
def _verify_train_merges(train_merges: Callable) -> None:
    for text, num_merges in (("aaabdaaabac", 3), ("to be or not to be, that is the question", 8), ("hello", 0)):
        ids = list(text.encode("utf-8"))
        call = f"train_merges(list({text!r}.encode()), {num_merges})"
        out = train_merges(list(ids), num_merges)
        if out is None:
            raise Wrong(f"{call} returned None: did you forget the return statement?")
        if not isinstance(out, (list, tuple)):
            raise Wrong(f"{call} must return a list of pairs, got {_kind(out)}")
        if len(out) != num_merges:
            raise Wrong(f"{call} returned {len(out)} merges, expected {num_merges}: one pair per merge")
        state = list(ids)
        for i, (got, want) in enumerate(zip(out, _train_merges(ids, num_merges), strict=True)):
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise Wrong(f"{call}: merge {i} must be a pair of ids (a, b), got {got!r}")
            got, counts = tuple(got), _count_pairs(state)
            if got in [tuple(p) for p in out[:i]]:
                raise Wrong(
                    f"{call}: merge {i} repeats the pair {got}; after choosing a pair, replace it in ids with "
                    f"merge(ids, pair, 256 + i) before counting again"
                )
            if got not in counts:
                raise Wrong(
                    f"{call}: merge {i}, {got}, is not a pair of neighbours at that point: merge i makes token "
                    "256 + i, and each merge must change ids before the next count"
                )
            if counts[got] < counts[want]:
                raise Wrong(f"{call}: merge {i}, {got}, occurs {counts[got]} times; another pair occurs more often")
            if got != want:
                raise Wrong(
                    f"{call}: at merge {i}, {got} and {want} both occur {counts[got]} times; on a tie take the "
                    "smaller pair, min(counts, key=lambda p: (-counts[p], p))"
                )
            state = _merge(state, want, 256 + i)


def _first_found(ids: list[int], ranks: dict[tuple[int, int], int]) -> list[int]:
    """A typical mistake: merging the first pair found that has a rank, instead of the lowest rank."""
    while True:
        pair = next((p for p in pairwise(ids) if p in ranks), None)
        if pair is None:
            return ids
        ids = _merge(ids, pair, ranks[pair])


@piece("encode_chunk", "02b_subwords", "a chunk's bytes merged in the order the merges were learned", _encode_chunk)
def _verify_encode_chunk(encode_chunk: Callable) -> None:
    ranks = {(98, 99): 256, (97, 98): 257, (97, 256): 258, (258, 100): 259}  # bc, ab, a+bc, abc+d
    learned = _small_bpe()
    cases = [(list(b"abcd"), ranks), (list(b"abab"), ranks), (list(b"xbcbc"), ranks), ([97], ranks), ([], ranks)]
    cases += [(list(chunk.encode("utf-8")), learned.ranks) for chunk in (" Romeo", " wherefore", " thou", " Hamlet")]
    for ids, table in cases:
        name = "ranks" if table is ranks else "the ranks of a small trained tokenizer"
        call = f"encode_chunk({ids}, {name})"
        out = _id_list(encode_chunk(list(ids), dict(table)), call)
        want = _encode_chunk(ids, table)
        if out == want:
            continue
        if out == _first_found(ids, table):
            raise Wrong(
                f"{call} returned {out}: merge the pair of lowest rank first, wherever it stands, not the first "
                "pair found"
            )
        pair = min(pairwise(ids), key=lambda p: table.get(p, math.inf))
        if out == _merge(ids, pair, table[pair]):
            raise Wrong(f"{call} returned {out} after one merge: repeat until no pair present has a rank")
        raise Wrong(f"{call} returned {out}, expected {want}" + (f" with ranks = {ranks}" if table is ranks else ""))


@functools.cache
def _small_bpe_cached() -> BPETokenizer:
    return BPETokenizer.train(_TEXT * 2 + "O Hamlet, thou art the question.\n", 300)


def _small_bpe() -> BPETokenizer:
    """A tokenizer of 300 tokens trained on two lines of Romeo and Juliet (a copy: the learner's code may change it)."""
    return BPETokenizer.from_dict(_small_bpe_cached().to_dict())


def _chars_per_token(tokenizer: BPETokenizer, text: str) -> float:
    """The number of characters of `text` per token of tokenizer.encode(text)."""
    return len(text) / len(tokenizer.encode(text))


def _glued_tokens(tokens: list[str]) -> list[str]:
    """The tokens in which a letter is directly followed by whitespace (a space, a newline, ...)."""
    return [token for token in tokens if any(a.isalpha() and b.isspace() for a, b in pairwise(token))]


def _join_documents(tokenizer: BPETokenizer, documents: list[str]) -> list[int]:
    """The ids of the documents, in order, each followed by the end-of-text token's id."""
    end = tokenizer.special_tokens[END_OF_TEXT]
    ids = []
    for document in documents:
        ids += tokenizer.encode(document) + [end]
    return ids


@piece("my_chars_per_token", "02b_subwords", "the characters of a text per token", _chars_per_token)
def _verify_chars_per_token(my_chars_per_token: Callable) -> None:
    for text in (_TEXT, "Romeo", "café 🙂", "O Romeo, Romeo!"):
        tokenizer = _small_bpe()
        call = f"my_chars_per_token(tokenizer, {_describe(text)})"
        got = _number(my_chars_per_token(tokenizer, text), f"{call}'s result")
        n_tokens = len(tokenizer.encode(text))
        want = len(text) / n_tokens
        if _close(got, want):
            continue
        if _close(got, n_tokens / len(text)):
            raise Wrong(f"{call} gave tokens per character: divide the characters by the tokens")
        if _close(got, len(text.encode("utf-8")) / n_tokens):
            raise Wrong(f"{call} counted bytes: count the characters of the text, len(text)")
        if _close(got, len(text) // n_tokens):
            raise Wrong(f"{call} is a whole number: divide with /, not //")
        raise Wrong(f"{call} returned {_num(got, 4)}: too {'large' if got > want else 'small'}")


@piece("my_glued_tokens", "02b_subwords", "the tokens in which a letter is followed by whitespace", _glued_tokens)
def _verify_glued_tokens(my_glued_tokens: Callable) -> None:
    tokens = ["the", " the", "d the", "e\n", "ROMEO:\n", ":\n", " ", "\n\n", "é ", "1 2", "o, ", "s\t", "e of"]
    for given in (tokens, tokens[::-1], [], [" thou", "thou"]):
        call = f"my_glued_tokens({_describe(given)})"
        out = my_glued_tokens(list(given))
        if out is None:
            raise Wrong(f"{call} returned None: did you forget the return statement?")
        if not isinstance(out, list):
            raise Wrong(f"{call} must return a list of tokens, got {_kind(out)}")
        want = _glued_tokens(given)
        if out == want:
            continue
        extra, missing = [t for t in out if t not in want], [t for t in want if t not in out]
        if extra:
            raise Wrong(f"{call} keeps {extra[0]!r}, but no letter in it is directly followed by whitespace")
        if missing:
            raise Wrong(f"{call} leaves out {missing[0]!r}: a letter followed by whitespace (a newline counts too)")
        raise Wrong(f"{call} returned {_describe(out)}: keep each token once, in the order of the list")


@piece(
    "my_join_documents",
    "02b_subwords",
    "documents as one list of ids, each followed by the end-of-text id",
    _join_documents,
)
def _verify_join_documents(my_join_documents: Callable) -> None:
    end = _small_bpe().special_tokens[END_OF_TEXT]
    for documents in (["To be.", "Or not."], ["Romeo"], [], ["", "JULIET:\nAy me!\n"]):
        call = f"my_join_documents(tokenizer, {documents!r})"
        out = _id_list(my_join_documents(_small_bpe(), list(documents)), call)
        want = _join_documents(_small_bpe(), documents)
        if out == want:
            continue
        found = f"{call} has {out.count(end)} end-of-text id{'' if out.count(end) == 1 else 's'} ({end})"
        if documents and not out.count(end):
            raise Wrong(
                f"{found}: add the special token's id, tokenizer.special_tokens[END_OF_TEXT], after each document; "
                "its string encoded as text is not the token"
            )
        if out.count(end) < len(documents):
            where = "after the last document too" if out.count(end) == len(documents) - 1 else "after each document"
            raise Wrong(f"{found}, expected {len(documents)}: one {where}")
        if out.count(end) > len(documents):
            raise Wrong(f"{found}, expected {len(documents)}: one per document")
        raise Wrong(f"{call}: the ids of the documents differ; encode each with tokenizer.encode(document)")
    try:
        my_join_documents(_small_bpe(), ["Exeunt.", f"a document with {END_OF_TEXT} inside"])
    except ValueError:
        return
    raise Wrong(
        f"a document that contains the string {END_OF_TEXT} was accepted: encode each document with "
        "tokenizer.encode(document), which refuses it"
    )


# ------------------------------------------------------------------------------------- 03_attention


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
    out = _tensor(split_heads(x.clone(), nh))
    if tuple(out.shape) == (B, T, nh, hs):
        raise Wrong(
            f"expected shape {(B, nh, T, hs)}, got {(B, T, nh, hs)}: "
            "transpose(1, 2) puts the heads before the positions"
        )
    out = _shape(out, (B, nh, T, hs))
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


def _attention_parameters(C: int) -> int:
    """Parameters of CausalSelfAttention of width C, with biases."""
    with torch.device("meta"):  # only shapes are counted: no memory, no random numbers
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
        with torch.device("meta"):
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


# ------------------------------------------------------------------------------------- 04_blocks


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


def _gpt2_block() -> tuple[int, float]:
    """(parameters of one GPT-2 small block, the fraction of them in its MLP), counted on a real block."""
    with torch.device("meta"):  # only shapes are counted: no memory, no random numbers
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


# ------------------------------------------------------------------------------------- 05_gpt


def _gpt_forward(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of a GPT for token ids (B, T)."""
    return model(idx)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -ln softmax(logits)[target]: (B, T, V), (B, T) -> scalar."""
    V = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))  # (B*T, V), (B*T,) -> scalar


def _lm_loss(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """The loss of predicting ids[:, 1:] from ids[:, :-1]: ids (B, T + 1) -> scalar."""
    return next_token_loss(model(ids[:, :-1]), ids[:, 1:])


@piece("gpt_forward", "05_gpt", "the whole forward pass: embeddings, blocks, ln_f, lm_head", _gpt_forward)
def _verify_gpt_forward(gpt_forward: Callable) -> None:
    model = _gpt(seed=140)
    idx = _randint(11, (2, 6), seed=141)  # (B, T)
    out = _tensor(gpt_forward(copy.deepcopy(model), idx.clone()))
    if tuple(out.shape) == (2, 6, 16):
        raise Wrong("expected shape (2, 6, 11), got (2, 6, 16): apply lm_head to get one score per vocabulary token")
    out = _shape(out, (2, 6, 11), "(B, T) -> (B, T, V)")
    with torch.no_grad():
        expected = model(idx)
        if _same(out, expected):
            return
        x = model.embeddings(idx)  # (B, T, C)
        h = x
        for block in model.blocks:
            h = block(h)
        if _same(out, model.lm_head(h)):
            raise Wrong("the final LayerNorm is missing: x = model.ln_f(x) before lm_head")
        skipped = [model.blocks[1](x), model.blocks[0](x), x]  # only block 1, only block 0, no block
        if any(_same(out, model.lm_head(model.ln_f(h))) for h in skipped):
            raise Wrong("every block must run, in order: for block in model.blocks: x = block(x)")
        _compare(out, expected)


@piece("cross_entropy", "05_gpt", "the mean next-token loss, from scratch", _cross_entropy)
def _verify_cross_entropy(cross_entropy: Callable) -> None:
    B, T, V = 2, 4, 7
    logits, targets = _randn(B, T, V, seed=150) * 2, _randint(V, (B, T), seed=151)
    out = cross_entropy(logits.clone(), targets.clone())
    if isinstance(out, torch.Tensor) and out.numel() != 1:
        raise Wrong(
            f"the loss must be one number, the mean over all B·T = {B * T} positions; got shape {tuple(out.shape)}"
        )
    got = _number(out, "the loss")
    expected = _cross_entropy(logits, targets).item()
    if _close(got, expected):
        large = logits * 100  # confident predictions: exp(logits) overflows
        got = _number(cross_entropy(large.clone(), targets.clone()), "the loss")
        if not math.isfinite(got):
            raise Wrong("the loss overflows on large logits: subtract each row's max before exp, or use log_softmax")
        expected = _cross_entropy(large, targets).item()
        if not _close(got, expected):
            raise Wrong(f"on large logits the loss should be {_num(expected, 4)}, got {_num(got, 4)}")
        return
    if _close(got, expected / math.log(2)) or _close(got, expected / math.log(10)):
        raise Wrong("use the natural log: the loss is in nats")
    if _close(got, expected * B * T):
        raise Wrong(f"take the mean over the B·T = {B * T} positions, not the sum")
    if _close(got, -expected):
        raise Wrong("the loss is negative: it is minus the log-probability of the target, -ln p")
    wrong_dim = -(F.log_softmax(logits, dim=1).gather(-1, targets[..., None])).mean().item()
    if _close(got, wrong_dim):
        raise Wrong("the softmax must run over the vocabulary, dim=-1 (the last dimension)")
    raise Wrong(f"the loss should be {_num(expected, 4)}, got {_num(got, 4)}")


@piece("lm_loss", "05_gpt", "the loss of predicting each next token of a batch of ids", _lm_loss)
def _verify_lm_loss(lm_loss: Callable) -> None:
    model = _gpt(seed=160)
    ids = _randint(11, (2, 8), seed=161)  # (B, T + 1)
    out = lm_loss(copy.deepcopy(model), ids.clone())
    if isinstance(out, float):
        raise Wrong("return the loss tensor, not a float: training calls loss.backward() on it")
    got = _number(out, "the loss")
    with torch.no_grad():
        expected = _lm_loss(model, ids).item()
        if not _close(got, expected):
            unshifted = [next_token_loss(model(ids[:, :-1]), ids[:, :-1]), next_token_loss(model(ids), ids)]
            if any(_close(got, loss.item()) for loss in unshifted):
                raise Wrong("the targets must be the inputs shifted by one: inputs ids[:, :-1], targets ids[:, 1:]")
            if _close(got, next_token_loss(model(ids[:, 1:]), ids[:, :-1]).item()):
                raise Wrong(
                    "shifted the wrong way: the inputs are ids[:, :-1], the targets the next tokens, ids[:, 1:]"
                )
            raise Wrong(f"the loss should be {_num(expected, 4)}, got {_num(got, 4)}")
    if not out.requires_grad:
        raise Wrong("the loss has no gradient: do not compute it under torch.no_grad(); training calls loss.backward()")


def _untied_params(config: GPTConfig) -> int:
    """Parameters of GPT(config) with an output layer that does not share the token embedding."""
    return estimate_parameters(config) + config.vocab_size * config.n_embd  # plus the head's own (V, C) matrix


def _uniform_loss(V: int) -> float:
    """next_token_loss of all-equal logits (2, 5, V) against random targets, as a float."""
    return next_token_loss(torch.zeros(2, 5, V), torch.randint(0, V, (2, 5))).item()


def _unchanged_positions(model: GPT, ids: torch.Tensor, t: int) -> int:
    """How many positions of ids (1, T) keep exactly the same logits when the token at t changes."""
    changed = ids.clone()
    changed[0, t] = (changed[0, t] + 1) % model.config.vocab_size  # another id
    with torch.no_grad():
        same = (model(ids) == model(changed)).all(dim=-1)[0]  # (T,): True where no logit moved
    return int(same.sum())


def _training_days(config: GPTConfig, tokens: float, flops_per_second: float) -> float:
    """Days to train GPT(config) on `tokens` tokens at a sustained `flops_per_second`."""
    return estimate_flops_per_token(config) * tokens / flops_per_second / 86_400  # seconds -> days


_SMALL = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
_SMALL_TEXT = "GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)"
_GPT2_TEXT = 'GPTConfig.from_preset("gpt2")'


@piece("my_untied_params", "05_gpt", "the parameters of a GPT whose output layer is not tied", _untied_params)
def _verify_untied_params(my_untied_params: Callable) -> None:
    for config, text in ((GPTConfig.from_preset("gpt2"), _GPT2_TEXT), (_SMALL, _SMALL_TEXT)):
        call = f"my_untied_params({text})"
        got = _whole(my_untied_params(config), f"{call}'s result")
        want = _untied_params(config)
        if got == want:
            continue
        if got == estimate_parameters(config):
            raise Wrong(
                f"{call} returned {got:,}, the count with tying: give the head its own matrix, e.g. "
                "model.lm_head.weight = nn.Parameter(torch.empty_like(model.lm_head.weight))"
            )
        if got == want + config.vocab_size:
            raise Wrong(f"{call} counts a bias in the head: lm_head is Linear(C, V, bias=False)")
        raise Wrong(
            f"{call} returned {got:,}: too {'large' if got > want else 'small'}; count the parameters of the model "
            "whose head has a matrix of its own"
        )


@piece("my_uniform_loss", "05_gpt", "the loss of all-equal logits, as a float", _uniform_loss)
def _verify_uniform_loss(my_uniform_loss: Callable) -> None:
    for V in (50, 7):
        call = f"my_uniform_loss({V})"
        out = my_uniform_loss(V)
        if isinstance(out, torch.Tensor):
            raise Wrong(f"{call} returned a tensor: return a Python float, loss.item()")
        got, want = _number(out, f"{call}'s result"), math.log(V)
        if abs(got - want) <= 1e-5:
            continue
        if abs(got + want) <= 1e-5:
            raise Wrong(f"{call} returned {_num(got, 6)}: the loss is minus the log-probability of the target, > 0")
        raise Wrong(
            f"{call} returned {_num(got, 6)}: all-equal logits give every token probability 1/V, so whatever the "
            "targets the loss is -ln(1/V) = ln V; make logits of shape (2, 5, V) that are all equal, e.g. zeros"
        )


@piece(
    "my_unchanged_positions",
    "05_gpt",
    "positions whose logits stay the same when a token changes",
    _unchanged_positions,
)
def _verify_unchanged_positions(my_unchanged_positions: Callable) -> None:
    model = _gpt(seed=350, block_size=16)  # V = 11
    ids = _randint(11, (1, 10), seed=351)  # (1, T)
    T = ids.size(1)
    for t in (4, 0, 9):
        call = f"my_unchanged_positions(model, ids, {t}) with ids of shape (1, {T})"
        given = ids.clone()
        got = _whole(my_unchanged_positions(copy.deepcopy(model), given, t), f"{call}'s result")
        if not torch.equal(given, ids):
            raise Wrong("my_unchanged_positions changed the ids it was given: change a copy, ids.clone()")
        want = _unchanged_positions(model, ids, t)
        if got == want:
            continue
        if got == T:
            raise Wrong(
                f"{call} returned {T}: every position kept its logits, so the token at t did not change; set it "
                "to another id, e.g. (ids[0, t] + 1) % vocab_size"
            )
        if got == T - t:
            raise Wrong(f"{call} returned {got}: that counts the positions that changed; count those that stayed")
        if got == t + 1:
            raise Wrong(
                f"{call} returned {got}: position t reads the token you changed, so its logits change too; "
                "count only the positions whose logits stayed exactly the same"
            )
        raise Wrong(
            f"{call} returned {got}: compare every position's logits exactly, (logits == new_logits).all(dim=-1)"
        )


@piece("my_training_days", "05_gpt", "the days of training at a given speed", _training_days)
def _verify_training_days(my_training_days: Callable) -> None:
    cases = [(GPTConfig.from_preset("gpt2"), 1e9, 100e9, _GPT2_TEXT), (_SMALL, 2e6, 1e9, _SMALL_TEXT)]
    for config, tokens, speed, text in cases:
        call = f"my_training_days({text}, {tokens:g}, {speed:g})"
        got = _number(my_training_days(config, tokens, speed), f"{call}'s result")
        want = _training_days(config, tokens, speed)
        if _close(got, want, 1e-6):
            continue
        mistakes = [
            (86_400, "that is in seconds: a day has 86,400 of them"),
            (24, "that is in hours: a day has 24 of them"),
            (6, "estimate_flops_per_token already counts the forward and backward passes: do not multiply by 6"),
        ]
        hint = next((hint for factor, hint in mistakes if _close(got, want * factor, 1e-6)), "")
        raise Wrong(
            f"{call} returned {_num(got)}: "
            + (hint or f"too {'large' if got > want else 'small'}; FLOPs per token × tokens / FLOP/s gives seconds")
        )


# ------------------------------------------------------------------------------------- 06_training


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, grad_clip: float):
    """One optimizer step on the batch (x, y); returns the loss before the step, a float."""
    optimizer.zero_grad(set_to_none=True)
    loss = next_token_loss(model(x), y)  # scalar
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def _lr_at(step: int, warmup_steps: int, max_steps: int, lr: float, min_lr: float) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at max_steps."""
    return get_lr(step, TrainConfig(max_steps=max_steps, warmup_steps=warmup_steps, lr=lr, min_lr=min_lr))


def _windows(random_windows: Callable, ids: torch.Tensor, batch_size: int, block_size: int, seed: int) -> Any:
    """random_windows(ids, ...) with a seeded generator; an indexing error is a window that ran past the end."""
    try:
        return random_windows(ids.clone(), batch_size, block_size, _generator(seed))
    except (IndexError, RuntimeError) as error:
        if not any(text in str(error) for text in ("out of bounds", "equal size", "index")):
            raise
        raise Wrong(
            f"with {len(ids)} ids and block_size {block_size}, a window ran past the end: draw the starts with "
            "torch.randint(len(ids) - block_size, (batch_size,), generator=generator)"
        ) from None


@piece("random_windows", "06_training", "a random batch of (input, target) windows, targets shifted by one", get_batch)
def _verify_random_windows(random_windows: Callable) -> None:
    B, T = 4, 8
    ids = torch.arange(40, dtype=torch.uint8)  # token ids 0, 1, 2, ...: a window is a run of consecutive numbers
    out = _windows(random_windows, ids, B, T, 170)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Wrong(f"random_windows must return two tensors, (x, y); got {_kind(out)}")
    x, y = (_shape(t, (B, T), what=name) for t, name in zip(out, ("x", "y"), strict=True))
    for t, name in ((x, "x"), (y, "y")):
        if t.dtype != torch.int64:
            raise Wrong(f"{name} has dtype {t.dtype}, expected torch.int64: call .long(): embeddings need int64 ids")
    for b in range(B):
        if not torch.equal(x[b], torch.arange(int(x[b, 0]), int(x[b, 0]) + T)):
            raise Wrong(f"row {b} of x is not a window of ids: take ids[start : start + block_size]")
    if not torch.equal(y, x + 1):
        raise Wrong(
            "y must be x shifted left by one: the target of each input is the token after it, "
            "ids[start + 1 : start + block_size + 1]"
        )
    short = torch.arange(T + 2, dtype=torch.uint8)  # 10 ids: the only starts with a full window and target are 0 and 1
    for seed in (171, 172, 173):
        xs, ys = _windows(random_windows, short, 16, T, seed)
        if xs.shape != (16, T) or ys.shape != (16, T) or ys.max() > T + 1:
            raise Wrong(
                f"with {len(short)} ids and block_size {T}, a window ran past the end: draw the starts with "
                "torch.randint(len(ids) - block_size, (batch_size,), generator=generator)"
            )
    first, second = (_windows(random_windows, ids, B, T, 174) for _ in range(2))
    if not (torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])):
        raise Wrong(
            "two generators with the same seed gave different batches: "
            "draw the starts with torch.randint(..., generator=generator)"
        )
    if not torch.equal(x, get_batch(ids, B, T, _generator(170))[0]):
        raise Wrong(
            "the windows are not the ones torch.randint(len(ids) - block_size, (batch_size,), generator=generator) "
            "draws: draw the starts exactly so, and a seed gives the same batches as tinytorch's"
        )


@piece("lr_at", "06_training", "the learning rate at a step: linear warmup, then cosine decay", _lr_at)
def _verify_lr_at(lr_at: Callable) -> None:
    warmup, max_steps, lr, min_lr = 10, 100, 1e-3, 1e-4
    got = [_number(lr_at(step, warmup, max_steps, lr, min_lr), f"lr_at({step}, ...)") for step in range(max_steps + 1)]
    want = [_lr_at(step, warmup, max_steps, lr, min_lr) for step in range(max_steps + 1)]
    if got[0] == 0:
        raise Wrong(
            "at step 0 the rate is 0, so the first step does nothing: warm up with lr * (step + 1) / warmup_steps"
        )
    if _close(got[0], lr, 1e-6, 0.0):
        raise Wrong(
            f"there is no warmup: at step 0 the rate is {_num(got[0])}, expected {_num(want[0])}; "
            "for step < warmup_steps use lr * (step + 1) / warmup_steps"
        )
    for step in range(warmup):
        if not _close(got[step], want[step], 1e-6, 0.0):
            raise Wrong(
                f"in the warmup, at step {step} the rate should be {_num(want[step])}, got {_num(got[step])}: "
                "lr * (step + 1) / warmup_steps"
            )
    if not _close(got[max_steps], min_lr, 1e-6, 0.0):
        raise Wrong(
            f"at step max_steps = {max_steps} the rate should be min_lr = {min_lr:g}, got {_num(got[max_steps])}: "
            "the decay's progress is (step - warmup_steps) / (max_steps - warmup_steps)"
        )
    quarter = warmup + (max_steps - warmup) // 4
    linear = min_lr + (lr - min_lr) * (1 - (quarter - warmup) / (max_steps - warmup))
    if _close(got[quarter], linear, 1e-6, 0.0):
        raise Wrong(
            "the decay is linear; it must follow a cosine: "
            "min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)"
        )
    for step in range(max_steps + 1):
        if not _close(got[step], want[step], 1e-6, 0.0):
            raise Wrong(f"at step {step} the rate should be {_num(want[step])}, got {_num(got[step])}")
    for step in range(21):  # no warmup at all
        value = _number(lr_at(step, 0, 20, lr, min_lr), f"lr_at({step}, ...)")
        if not _close(value, _lr_at(step, 0, 20, lr, min_lr), 1e-6, 0.0):
            raise Wrong(
                f"with warmup_steps = 0, at step {step} the rate should be {_num(_lr_at(step, 0, 20, lr, min_lr))}, "
                f"got {_num(value)}"
            )


def _parameters_differ(model: nn.Module, expected: dict[str, torch.Tensor], atol: float = 1e-6) -> str | None:
    """The name of the first parameter of `model` that differs from `expected`, or None."""
    for name, param in model.named_parameters():
        if not torch.allclose(param.detach(), expected[name], atol=atol, rtol=1e-5):
            return name
    return None


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


@piece("train_step", "06_training", "one training step: zero_grad, forward, backward, clip, step", _train_step)
def _verify_train_step(train_step: Callable) -> None:
    base = _gpt(seed=180).train()
    batches = [(_randint(11, (2, 6), seed=181 + 2 * i), _randint(11, (2, 6), seed=182 + 2 * i)) for i in range(2)]
    grad_clip = 1.0

    def reference_runs(zero_grad: bool = True, clip: bool = True) -> tuple[list[float], list[dict], float]:
        """Two steps done right (or with one mistake): losses, weights after each step, first gradient norm."""
        model = copy.deepcopy(base)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses, weights, norms = [], [], []
        for x, y in batches:
            if zero_grad:
                optimizer.zero_grad(set_to_none=True)
            loss = next_token_loss(model(x), y)
            loss.backward()
            norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip if clip else math.inf)))
            optimizer.step()
            losses.append(loss.item())
            weights.append(_snapshot(model))
        return losses, weights, norms[0]

    model = copy.deepcopy(base)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # no momentum: a step is -lr * gradient
    start = _snapshot(model)
    losses, weights = [], []
    for x, y in batches:
        loss = train_step(model, optimizer, x.clone(), y.clone(), grad_clip)
        if isinstance(loss, torch.Tensor):
            raise Wrong("return loss.item(), a float")
        losses.append(_number(loss, "the returned loss"))
        weights.append(_snapshot(model))
    ref_losses, ref_weights, norm = reference_runs()
    if not _close(losses[0], ref_losses[0]):
        raise Wrong(
            f"the returned loss {_num(losses[0], 4)} is not the batch's loss before the step, "
            f"{_num(ref_losses[0], 4)}: return loss.item() of the forward pass"
        )
    model.load_state_dict(weights[0], strict=False)
    if _parameters_differ(model, start) is None:
        raise Wrong("the weights did not change: call optimizer.step()")
    if _parameters_differ(model, ref_weights[0]) is not None:
        if _parameters_differ(model, reference_runs(clip=False)[1][0]) is None:
            raise Wrong(
                f"the gradient norm was {_num(norm, 2)} but grad_clip is {grad_clip}: "
                "clip with nn.utils.clip_grad_norm_ before optimizer.step()"
            )
        raise Wrong(f"after one step, {_parameters_differ(model, ref_weights[0])} differs from the reference's")
    model.load_state_dict(weights[1], strict=False)
    if _parameters_differ(model, ref_weights[1]) is not None:
        if _parameters_differ(model, reference_runs(zero_grad=False)[1][1]) is None:
            raise Wrong(
                "the second step used the first step's gradients too: call optimizer.zero_grad() before backward"
            )
        raise Wrong(f"after two steps, {_parameters_differ(model, ref_weights[1])} differs from the reference's")
    if not _close(losses[1], ref_losses[1]):
        raise Wrong(
            f"the second step returned {_num(losses[1], 4)}, expected the loss before it, {_num(ref_losses[1], 4)}"
        )


@piece(
    "evaluate_loss", "06_training", "the mean loss over fixed batches, in eval mode, without gradients", evaluate_model
)
def _verify_evaluate_loss(evaluate_loss: Callable) -> None:
    model = _gpt(seed=200, dropout=0.5).train()  # with dropout, training mode gives other numbers
    batches = [(_randint(11, (2, 6), seed=201 + 2 * i), _randint(11, (2, 6), seed=202 + 2 * i)) for i in range(2)]
    theirs = copy.deepcopy(model)
    calls = []  # (training mode, gradients on) at every forward call
    hook = theirs.register_forward_pre_hook(
        lambda module, args: calls.append((module.training, torch.is_grad_enabled()))
    )
    out = evaluate_loss(theirs, [(x.clone(), y.clone()) for x, y in batches])
    hook.remove()
    if any(training for training, _ in calls):
        raise Wrong("dropout was on: call model.eval() first")
    if not theirs.training:
        raise Wrong("put the model back in training mode afterwards: model.train(was_training)")
    if any(grad for _, grad in calls) or (isinstance(out, torch.Tensor) and out.requires_grad):
        raise Wrong("gradients were tracked: use torch.no_grad() around the evaluation")
    if isinstance(out, torch.Tensor):
        raise Wrong("return a float: loss.item()")
    got, expected = _number(out, "the mean loss"), evaluate_model(copy.deepcopy(model), batches)
    if not _close(got, expected):
        raise Wrong(
            f"the mean loss should be {_num(expected, 4)}, got {_num(got, 4)}: "
            "average next_token_loss(model(x), y) over the batches"
        )
    theirs = copy.deepcopy(model).eval()
    evaluate_loss(theirs, batches)
    if theirs.training:
        raise Wrong(
            "a model in eval mode came back in training mode: restore the mode it had, model.train(was_training)"
        )


_PLAYS_VOCAB = GPTConfig.from_preset("shakespeare").vocab_size  # V = 76 characters in chapter 06's plays
_SHORT_RUN = {"steps": 40, "warmup_steps": 20}  # as exercise 1 of chapter 06 asks


@functools.cache
def _chapter06_data() -> tuple[CharTokenizer, torch.Tensor, torch.Tensor, GPTConfig]:
    """Chapter 06's tokenizer, training and validation ids, and demo config, rebuilt from the cached corpus."""
    train_text, val_text = shakespeare()
    tokenizer = CharTokenizer.from_text(train_text + val_text)
    train_ids, val_ids = (torch.tensor(tokenizer.encode(text), dtype=torch.uint8) for text in (train_text, val_text))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=96)
    return tokenizer, train_ids, val_ids, config


def _short_run(lr: float, warmup_steps: int, grad_clip: float | None) -> list[float]:
    """Chapter 06, exercise 1: 40 AdamW steps of a fresh GPT at peak rate lr, with optional warmup and clipping."""
    _, train_ids, _, config = _chapter06_data()
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(_SHORT_RUN["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
        x, y = get_batch(train_ids, 16, config.block_size, generator)
        loss = next_token_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(loss.item())
    return losses


def _one_play_run() -> list[dict]:
    """Chapter 06, exercise 2: 240 steps of a fresh width-64 GPT on the first 3,000 characters of Hamlet."""
    tokenizer, _, val_ids, config = _chapter06_data()
    hamlet = convert_play(play_paths()["hamlet"].read_text(encoding="utf-8"))
    one_play = torch.tensor(tokenizer.encode(hamlet[:3000]), dtype=torch.uint8)
    cfg = TrainConfig(
        max_steps=240, batch_size=16, lr=3e-3, min_lr=3e-3, warmup_steps=20, eval_interval=40, eval_batches=4
    )
    torch.manual_seed(0)
    return train(GPT(replace(config, n_embd=64)), tokenizer, one_play, val_ids, cfg, progress=False)


def _accumulation_config() -> TrainConfig:
    """A TrainConfig with at most 16 windows per micro-batch and 64 per optimizer step."""
    return TrainConfig(batch_size=16, grad_accum=4)  # 4 micro-batches of 16 windows each step


def _losses(out: Any, call: str, steps: int) -> list[float]:
    """`out` as a list of floats if it is a list of `steps` numbers, else Wrong."""
    if not isinstance(out, (list, tuple)):
        raise Wrong(f"{call} must return the list of its {steps} losses, got {_kind(out)}")
    if len(out) != steps:
        raise Wrong(f"{call} returned {len(out)} losses, expected one per step, {steps}")
    for i, loss in enumerate(out):
        if isinstance(loss, torch.Tensor):
            raise Wrong(f"loss {i} of {call} is a tensor: append loss.item(), a float")
    return [_number(loss, f"loss {i} of {call}") for i, loss in enumerate(out)]


@piece(
    "my_short_run",
    "06_training",
    "experiment: a short run at lr 0.3 blows up without warmup and clipping, and learns with them",
    _short_run,
)
def _verify_short_run(my_short_run: Callable) -> None:
    ln_v, steps, warmup_steps = math.log(_PLAYS_VOCAB), _SHORT_RUN["steps"], _SHORT_RUN["warmup_steps"]
    wild = _losses(my_short_run(0.3, 0, None), "my_short_run(0.3, 0, None)", steps)
    if all(math.isfinite(loss) for loss in wild) and max(wild) <= 2 * ln_v:
        raise Wrong(
            f"with lr 0.3 and neither warmup nor clipping the loss should blow up far above ln V = {ln_v:.2f}; "
            f"yours peaked at {_num(max(wild), 2)}: did you apply lr without warmup, and skip clipping when "
            "grad_clip is None?"
        )
    tame = _losses(my_short_run(0.3, warmup_steps, 1.0), f"my_short_run(0.3, {warmup_steps}, 1.0)", steps)
    if not tame[-1] < ln_v:
        raise Wrong(
            f"with {warmup_steps} warmup steps and clipping at 1 the same lr should learn: the last loss should be "
            f"below ln V = {ln_v:.2f}, yours is {_num(tame[-1], 3)}: warm up with "
            "lr * min(1, (step + 1) / warmup_steps), and clip with nn.utils.clip_grad_norm_(model.parameters(), "
            "grad_clip) before optimizer.step()"
        )


@piece(
    "my_one_play_run",
    "06_training",
    "experiment: trained on 3,000 characters of one play, the model overfits",
    _one_play_run,
)
def _verify_one_play_run(my_one_play_run: Callable) -> None:
    history = my_one_play_run()
    if not isinstance(history, list):
        raise Wrong(f"return the history that train returns, a list of records; got {_kind(history)}")
    if len(history) < 5:
        raise Wrong(
            f"the history has {len(history)} records, expected at least 5: train for 240 steps and evaluate every "
            "40 (eval_interval=40)"
        )
    for i, record in enumerate(history):
        if not isinstance(record, dict) or not {"step", "train", "val"} <= set(record):
            raise Wrong(f"record {i} must be a dict with 'step', 'train' and 'val', got {_describe(record)}")
    steps = [record["step"] for record in history]
    train = [_number(record["train"], f"the training loss of record {i}") for i, record in enumerate(history)]
    val = [_number(record["val"], f"the validation loss of record {i}") for i, record in enumerate(history)]
    best = min(range(len(val)), key=val.__getitem__)  # the record with the lowest validation loss
    if best == len(val) - 1:
        raise Wrong(
            f"the validation loss is at its lowest at the end, step {steps[best]}: the model has not overfit; train "
            "on the first 3,000 characters of Hamlet only, for 240 steps at a constant learning rate of 3e-3"
        )
    if not val[-1] > val[best] + 0.1:
        raise Wrong(
            f"the validation loss should end well above its lowest point (by more than 0.1): it ends at "
            f"{val[-1]:.3f}, and its lowest was {val[best]:.3f} at step {steps[best]}; train on the first 3,000 "
            "characters of Hamlet only, for 240 steps at a constant learning rate of 3e-3"
        )
    if not train[-1] < train[best]:
        raise Wrong(
            f"the training loss should keep falling after step {steps[best]}, where validation was best: it was "
            f"{train[best]:.3f} there and is {train[-1]:.3f} at the end"
        )


@piece(
    "my_accumulation_config", "06_training", "a TrainConfig for 64 windows a step, 16 at a time", _accumulation_config
)
def _verify_accumulation_config(my_accumulation_config: Callable) -> None:
    out = my_accumulation_config()
    if not _same_class(out, TrainConfig):
        raise Wrong(f"return a TrainConfig, got {_kind(out)}")
    if out.batch_size > 16:
        raise Wrong(
            f"batch_size is {out.batch_size}, but only 16 windows fit in memory at once: batch_size is one "
            "micro-batch; grad_accum micro-batches make up each step"
        )
    if out.batch_size * out.grad_accum != 64:
        raise Wrong(
            f"each step sees batch_size × grad_accum = {out.batch_size} × {out.grad_accum} = "
            f"{out.batch_size * out.grad_accum} windows, expected 64"
        )
    default = TrainConfig()
    for field in fields(TrainConfig):
        got, want = getattr(out, field.name), getattr(default, field.name)
        if field.name not in ("batch_size", "grad_accum") and got != want:
            raise Wrong(
                f"{field.name} is {got!r}, but the exercise keeps its default, {want!r}: change only batch_size "
                "and grad_accum"
            )


# ------------------------------------------------------------------------------------- 07_generation


def _greedy_decode(model: GPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The prompt idx (B, T) followed by max_new_tokens argmax tokens: (B, T + max_new_tokens), without a cache."""
    return generate(model, idx, max_new_tokens, do_sample=False, use_cache=False)  # the window, every step


def _greedy_loop(model: GPT, idx: torch.Tensor, max_new_tokens: int, position: int = -1) -> torch.Tensor:
    """Greedy decoding without a cache, reading the logits at `position` (-1 is right)."""
    for _ in range(max_new_tokens):
        logits = model(idx[:, -model.config.block_size :])[:, position]  # (B, V)
        idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)  # (B, T + 1)
    return idx


def _apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits (B, V) divided by the temperature: below 1 sharper, above 1 flatter."""
    return logits / temperature


def _decode_step(model: GPT, new_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits (B, V) of the last of the new tokens (B, T_new), fed at positions cache.length.. with the cache."""
    return model(new_ids, cache)[:, -1]


@piece("greedy_decode", "07_generation", "greedy decoding: append the argmax of the last position", _greedy_decode)
def _verify_greedy_decode(greedy_decode: Callable) -> None:
    model = _gpt(seed=210)  # block_size 8
    idx = _randint(11, (2, 3), seed=211)  # (B, T)
    with torch.no_grad():
        out = _tensor(greedy_decode(copy.deepcopy(model), idx.clone(), 4))
        if tuple(out.shape) == (2, 4):
            raise Wrong(
                "return the prompt followed by the new tokens, (B, T + max_new_tokens): torch.cat([idx, ...], dim=1)"
            )
        out = _shape(out, (2, 7), "(B, T + max_new_tokens)")
        if not torch.equal(out[:, :3], idx):
            raise Wrong("the result must start with the prompt idx, followed by the new tokens")
        expected = _greedy_loop(model, idx, 4)
        if not torch.equal(out, expected):
            if torch.equal(out, _greedy_loop(model, idx, 4, position=0)):
                raise Wrong("the next token comes from the logits of the last position, logits[:, -1]")
            b, t = _position(int((out != expected).flatten().nonzero()[0]), out.shape)
            raise Wrong(
                f"new token {t - 3} of sequence {b} should be {int(expected[b, t])}, "
                f"the argmax of the last position's logits, got {int(out[b, t])}"
            )
        try:
            out = greedy_decode(copy.deepcopy(model), idx.clone(), 10)  # 3 + 10 tokens: more than block_size 8
        except ValueError as error:
            if "block_size" not in str(error):
                raise
            raise Wrong("crop the context to the last block_size tokens: idx[:, -block_size:]") from None
        _compare(_shape(out, (2, 13)), _greedy_loop(model, idx, 10))


@piece("apply_temperature", "07_generation", "logits divided by the temperature", _apply_temperature)
def _verify_apply_temperature(apply_temperature: Callable) -> None:
    logits = _randn(2, 7, seed=220) * 2  # (B, V)
    for temperature in (0.5, 2.0):
        given = logits.clone()
        out = _shape(apply_temperature(given, temperature), (2, 7))
        if _same(out, logits * temperature):
            raise Wrong(
                "divide the logits by the temperature, do not multiply: below 1 it sharpens, above 1 it flattens"
            )
        _compare(out, logits / temperature)
        if not torch.equal(given, logits):
            raise Wrong("apply_temperature changed its input: return logits / temperature, a new tensor")


@piece("top_k_logits", "07_generation", "keep the k largest logits of each row, the rest -inf", top_k_filter)
def _verify_top_k_logits(top_k_logits: Callable) -> None:
    logits = _randn(2, 10, seed=230) * 2  # (B, V): all different
    k = 3
    out = _shape(top_k_logits(logits.clone(), k), (2, 10)).detach()
    expected = top_k_filter(logits, k)
    if not _same(out, expected):
        dropped = torch.isneginf(expected)
        if (out[dropped] == 0).all():
            raise Wrong("the dropped logits must be -inf, not 0: a logit of 0 still gets a share of the probability")
        kept = (~torch.isneginf(out) & ~torch.isnan(out)).sum(dim=-1)  # (B,)
        if (kept != k).any():
            b = int((kept != k).nonzero()[0])
            raise Wrong(
                f"row {b} keeps {int(kept[b])} tokens, expected k = {k}: keep the logits >= the k-th largest, "
                "torch.topk(logits, k).values[:, -1:]"
            )
        _compare(out, expected)
    try:
        out = top_k_logits(logits.clone(), 20)  # k larger than V = 10: keep all
    except (RuntimeError, IndexError):
        raise Wrong("k may be larger than the vocabulary: use min(k, V)") from None
    _compare(out, logits)


@piece("top_p_logits", "07_generation", "keep the most likely tokens whose probabilities reach p", top_p_filter)
def _verify_top_p_logits(top_p_logits: Callable) -> None:
    probs = torch.tensor(
        [
            [0.05, 0.40, 0.10, 0.30, 0.15],  # p = 0.6: 0.40 and 0.30 stay (0.30 crosses p)
            [0.02, 0.03, 0.85, 0.06, 0.04],  # the most likely token alone is above p: only it stays
        ]
    )
    logits, p = probs.log(), 0.6  # (B, V)
    out = _shape(top_p_logits(logits.clone(), p), (2, 5)).detach()
    expected = top_p_filter(logits, p)
    if not _same(out, expected):
        top = logits.argmax(dim=-1)  # (B,)
        if not torch.isfinite(out[torch.arange(2), top]).all():
            raise Wrong("the most likely token must always stay, even when its probability alone is above p")
        if (out[torch.isneginf(expected)] == 0).all():
            raise Wrong("the dropped logits must be -inf, not 0: a logit of 0 still gets a share of the probability")
        if torch.isneginf(out[0, 3]) and torch.isfinite(out[0, 1]):
            raise Wrong("keep tokens until their mass reaches p: the token that crosses p stays")
        if _same(out, expected.sort(dim=-1, descending=True).values):
            raise Wrong(
                "the logits came back sorted: put each back at its token's position, scatter with the sort order"
            )
        _compare(out, expected)
    logits = _randn(3, 20, seed=240) * 2  # more tokens, another p
    _compare(top_p_logits(logits.clone(), 0.9), top_p_filter(logits, 0.9))


@piece(
    "decode_step", "07_generation", "one cached decoding step: only the new tokens go through the model", _decode_step
)
def _verify_decode_step(decode_step: Callable) -> None:
    model = _gpt(seed=250, block_size=16)
    prompt, new, more = _randint(11, (2, 12), seed=251), _randint(11, (2, 1), seed=252), _randint(11, (2, 2), seed=253)
    with torch.no_grad():
        cache = KVCache(model.config, batch_size=2)
        model(prompt, cache)  # prefill: the cache holds 12 positions
        theirs, ours = copy.deepcopy(cache), copy.deepcopy(cache)
        out = _tensor(decode_step(model, new.clone(), theirs))
        expected = _decode_step(model, new, ours)  # (B, V)
        if tuple(out.shape) == (2, 1, 11):
            raise Wrong("return the logits of the last position only, (B, V): logits[:, -1]")
        out = _shape(out, (2, 11), "(B, V): the logits of the last new position")
        if not _same(out, expected):
            for start_pos, use_cache in ((0, True), (12, False)):
                layers = copy.deepcopy(cache).layers
                x = model.embeddings(new, start_pos=start_pos)  # (B, 1, C)
                for block, layer in zip(model.blocks, layers, strict=True):
                    x = block(x, layer if use_cache else None)
                if _same(out, model.lm_head(model.ln_f(x))[:, -1]):
                    if use_cache:
                        raise Wrong(
                            "the new token got the position vector of position 0, but it sits at position 12: "
                            "pass start_pos=cache.length"
                        )
                    raise Wrong("each block must read and extend its layer's cache: block(x, cache.layers[i])")
            _compare(out, expected)
        if theirs.length != 13:
            raise Wrong(
                f"after one new token the cache should hold 13 positions, it holds {theirs.length}: "
                "each block must extend its layer's cache, block(x, cache.layers[i])"
            )
        out = _shape(decode_step(model, more.clone(), theirs), (2, 11), "(B, V): the logits of the last new position")
        _compare(out, _decode_step(model, more, ours))


def _min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Logits (B, V) with every token below min_p times the top token's probability set to -inf."""
    probs = logits.softmax(dim=-1)  # (B, V)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values  # (B, 1)
    return logits.masked_fill(probs < threshold, float("-inf"))


def _kv_cache_bytes(config: GPTConfig, batch_size: int) -> int:
    """Bytes of a float32 KV cache of block_size positions for batch_size sequences."""
    return 2 * config.n_layer * batch_size * config.block_size * config.n_embd * 4  # k and v, 4 bytes a number


def _positions(prompt_length: int, max_new_tokens: int, block_size: int, use_cache: bool) -> int:
    """Positions generate feeds the model in all to write max_new_tokens tokens, counted on a small random GPT."""
    config = GPTConfig(vocab_size=50, block_size=block_size, n_layer=1, n_head=2, n_embd=16)
    with torch.random.fork_rng(devices=[]):  # GPT() draws its initial weights from the global generator
        model = GPT(config)
    fed = []  # the number of positions of every call
    model.embeddings.register_forward_pre_hook(lambda module, args: fed.append(args[0].size(1)))
    generate(
        model, torch.zeros(1, prompt_length, dtype=torch.long), max_new_tokens, do_sample=False, use_cache=use_cache
    )
    return sum(fed)


def _last_outputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n: int) -> torch.Tensor:
    """Outputs of the last n queries against all keys and values: (B, nh, n, hs)."""
    return attention_weights(q[:, :, -n:], k) @ v  # (B, nh, n, T) @ (B, nh, T, hs) -> (B, nh, n, hs)


@piece("my_min_p_filter", "07_generation", "min-p: drop the tokens far less likely than the top one", _min_p_filter)
def _verify_min_p_filter(my_min_p_filter: Callable) -> None:
    logits = _randn(6, 76, seed=360) * 3  # (B, V)
    probs = logits.softmax(dim=-1)  # (B, V)
    top = torch.arange(6), logits.argmax(dim=-1)  # where each row's most likely token is
    for min_p in (0.05, 0.1, 0.5, 1.0):
        call = f"my_min_p_filter(logits, {min_p})"
        given = logits.clone()
        out = _shape(my_min_p_filter(given, min_p), (6, 76), what=f"{call}'s result").detach()
        if not torch.equal(given, logits):
            raise Wrong("my_min_p_filter changed its input: use masked_fill, not masked_fill_, and return a new tensor")
        expected = _min_p_filter(logits, min_p)
        keep, kept = torch.isfinite(expected), torch.isfinite(out)  # (B, V) each
        if kept.all() and (out[~keep] == 0).all():
            raise Wrong("the dropped logits must be -inf, not 0: a logit of 0 still gets a share of the probability")
        if not kept[top].all():
            raise Wrong(
                f"in {call} the most likely token was dropped: it always stays; drop only the tokens strictly "
                "below min_p × its probability (<, not <=)"
            )
        if not torch.equal(kept, keep):
            if torch.equal(kept, probs >= min_p):
                raise Wrong(
                    f"{call}: the threshold is min_p times the most likely token's probability, not min_p itself"
                )
            if torch.equal(kept, logits >= min_p * logits.max(dim=-1, keepdim=True).values):
                raise Wrong(f"{call}: compare probabilities, not logits: probs = logits.softmax(dim=-1)")
            b = int((kept != keep).any(dim=-1).nonzero()[0])
            raise Wrong(
                f"with min_p = {min_p}, row {b} keeps {int(kept[b].sum())} tokens, expected {int(keep[b].sum())}: "
                "keep the tokens whose probability is at least min_p × the most likely token's"
            )
        if not torch.equal(out[keep], logits[keep]):
            raise Wrong(
                f"{call}: the kept logits must stay as they were; only the dropped ones become -inf "
                "(return logits, not probabilities)"
            )


@piece("my_kv_cache_bytes", "07_generation", "the bytes of a float32 KV cache", _kv_cache_bytes)
def _verify_kv_cache_bytes(my_kv_cache_bytes: Callable) -> None:
    small = GPTConfig(vocab_size=11, block_size=12, n_layer=3, n_head=2, n_embd=10)
    small_text = "GPTConfig(vocab_size=11, block_size=12, n_layer=3, n_head=2, n_embd=10)"
    for config, batch_size, text in ((GPTConfig.from_preset("gpt2"), 1, _GPT2_TEXT), (small, 5, small_text)):
        call = f"my_kv_cache_bytes({text}, {batch_size})"
        got = _number(my_kv_cache_bytes(config, batch_size), f"{call}'s result")
        want = KVCache(config, batch_size, device="meta").memory_bytes()  # the buffers' size, none allocated
        if got == want:
            continue
        mistakes = [
            (1 / 2, "a cache keeps keys and values: 2 tensors per block"),
            (1 / 4, "a float32 number takes 4 bytes"),
            (1 / config.n_layer, "each of the n_layer blocks keeps its own keys and values"),
            (1 / batch_size, "each sequence of the batch has its own keys and values"),
        ]
        hint = next((hint for factor, hint in mistakes if _close(got, want * factor)), "")
        raise Wrong(
            f"{call} returned {got:,.0f}: "
            + (hint or f"too {'large' if got > want else 'small'}; count the numbers in k and v of every block")
        )


@piece("my_positions", "07_generation", "the positions generate feeds the model, with and without a cache", _positions)
def _verify_positions(my_positions: Callable) -> None:
    block_size = 16
    for prompt_length, new, use_cache in ((3, 10, True), (3, 10, False), (5, 30, True), (5, 30, False), (20, 8, True)):
        call = f"my_positions({prompt_length}, {new}, {block_size}, {use_cache})"
        got = _number(my_positions(prompt_length, new, block_size, use_cache), f"{call}'s result")
        want = _positions(prompt_length, new, block_size, use_cache)
        if got == want:
            continue
        windows = [min(prompt_length + step, block_size) for step in range(new)]  # the context at each step
        if use_cache and got == sum(windows):
            raise Wrong(
                f"{call} returned {got:.0f}, as many as without the cache: with it, after the first step only the "
                "newest token goes in, until the text grows past block_size"
            )
        if not use_cache and got == sum(prompt_length + step for step in range(new)):
            raise Wrong(f"{call} returned {got:.0f}: each step feeds the whole text, but at most block_size tokens")
        if use_cache and got == min(prompt_length, block_size) + new - 1:
            raise Wrong(
                f"{call} returned {got:.0f}: once the text is longer than block_size the cached path refills its "
                "cache from the last block_size tokens, at every step"
            )
        raise Wrong(
            f"{call} returned {got:.0f}, but generate feeds the model {'more' if got < want else 'fewer'} positions"
        )


@piece("my_last_outputs", "07_generation", "attention outputs of the last n queries against all keys", _last_outputs)
def _verify_last_outputs(my_last_outputs: Callable) -> None:
    B, nh, T, hs = 2, 2, 7, 4
    q, k, v = (_randn(B, nh, T, hs, seed=seed) for seed in (370, 371, 372))
    full = attention_weights(q, k) @ v  # (B, nh, T, hs): every query
    for n in (3, 1, 7):
        call = f"my_last_outputs(q, k, v, {n}) with q, k and v of shape {(B, nh, T, hs)}"
        out = _tensor(my_last_outputs(q.clone(), k.clone(), v.clone(), n), f"{call}'s result")
        if tuple(out.shape) == (B, nh, T, hs) and n != T:
            raise Wrong(f"{call}: expected shape {(B, nh, n, hs)}, got {(B, nh, T, hs)}: keep the last n queries")
        out = _shape(
            out, (B, nh, n, hs), "(B, nh, n, hs): an output for each of the last n queries", f"{call}'s result"
        )
        if _same(out, full[:, :, -n:]):
            continue
        scores = q[:, :, -n:] @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, n, T)
        square = torch.ones(n, T, dtype=torch.bool).tril()  # (n, T): the mask of the first n queries
        if _same(out, F.softmax(scores.masked_fill(~square, float("-inf")), dim=-1) @ v):
            raise Wrong(
                "the queries need the offset mask: use attention_weights (it shifts the mask when there are more "
                "keys than queries)"
            )
        if _same(out, attention_weights(q[:, :, -n:], k[:, :, -n:]) @ v[:, :, -n:]):
            raise Wrong("the last n queries see all T keys and values, not only the last n: pass all of k and v")
        if _same(out, F.softmax(scores, dim=-1) @ v):
            raise Wrong("the queries see the keys after them: mask the future with attention_weights")
        _compare(out, full[:, :, -n:])


# ------------------------------------------------------------------------------------- 08_attention_explorer


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
        out = _tensor(my_row_entropy(weights.clone()))
        if tuple(out.shape) == (T, T):
            raise Wrong(f"expected shape ({T},), got ({T}, {T}): one entropy per row, a sum over dim=-1")
        out = _shape(out, (T,), "one entropy per row").detach()
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


# ------------------------------------------------------------------------------------- 09_training_runs


def _read_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file, read by hand."""
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")  # 8 bytes: the header's length, little-endian
        return json.loads(file.read(length))


def _state_bytes(checkpoint: Checkpoint) -> tuple[int, int]:
    """(bytes of the weights, bytes of the optimizer state) among a checkpoint's tensors."""
    sizes = {prefix: 0 for prefix in ("model.", "optimizer.")}
    for name, tensor in checkpoint.tensors.items():
        for prefix in sizes:
            if name.startswith(prefix):
                sizes[prefix] += tensor.nbytes
    return sizes["model."], sizes["optimizer."]


def _resumable_checkpoint(folder: str | Path) -> Checkpoint:
    """A tiny GPT's checkpoint after one AdamW step, with the optimizer's and the random state, loaded back."""
    model = _gpt(seed=410).train()  # V = 11
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    next_token_loss(model(_randint(11, (2, 6), seed=411)), _randint(11, (2, 6), seed=412)).backward()
    optimizer.step()  # now the optimizer holds its averages
    path = Path(folder) / "resume.safetensors"
    save_checkpoint(path, model, CharTokenizer("abcdefghijk"), 1, optimizer, _generator(413))
    return load_checkpoint(path)


@piece("my_read_header", "09_training_runs", "the JSON header of a safetensors file, read by hand", _read_header)
def _verify_read_header(my_read_header: Callable) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "check.safetensors"
        tensors = {"wte": _randn(5, 3, seed=400), "ids": torch.arange(4), "half": _randn(2, seed=401).half()}
        save_file(tensors, str(path), metadata={"note": "for my_read_header", "step": "7"})
        expected = _read_header(path)
        for given in (str(path), path):
            try:
                out = my_read_header(given)
            except (ValueError, OverflowError, MemoryError) as error:  # json's errors are ValueErrors
                first = (str(error).splitlines() or [""])[0][:120]
                raise Wrong(
                    f"reading the header raised {type(error).__name__}: {first}; the file starts with 8 bytes of "
                    "length, little-endian, int.from_bytes(f.read(8), 'little'), then that many bytes of JSON"
                ) from None
            if isinstance(out, (str, bytes)):
                raise Wrong("return the header parsed into a dict: json.loads(...)")
            if not isinstance(out, dict):
                raise Wrong(f"return the header as a dict, got {_kind(out)}")
            if set(out) != set(expected):
                raise Wrong(f"the header's keys are {sorted(expected)}, got {sorted(map(str, out))}")
            if out != expected:
                raise Wrong("the header differs from the file's JSON: read 8 bytes of length, then that many bytes")


@piece("my_state_bytes", "09_training_runs", "the bytes of a checkpoint's weights and optimizer state", _state_bytes)
def _verify_state_bytes(my_state_bytes: Callable) -> None:
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = _resumable_checkpoint(folder)
    want = _state_bytes(checkpoint)
    out = _pair(my_state_bytes(copy.deepcopy(checkpoint)), "(bytes of the weights, bytes of the optimizer state)")
    got = (_number(out[0], "the weights' bytes"), _number(out[1], "the optimizer state's bytes"))
    if got == want:
        return
    if got == want[::-1]:
        raise Wrong("the weights come first: (bytes of the model.* tensors, bytes of the optimizer.* tensors)")
    sizes = {name: (tensor.numel(), tensor.nbytes) for name, tensor in checkpoint.tensors.items()}
    numbers = tuple(sum(n for name, (n, _) in sizes.items() if name.startswith(p)) for p in ("model.", "optimizer."))
    if got == numbers:
        raise Wrong("those are numbers of elements; count bytes: tensor.nbytes, numel() × element_size()")
    rng = sum(b for name, (_, b) in sizes.items() if name.startswith("rng."))
    if got[1] == want[1] + rng:
        raise Wrong("the rng.* tensors are the random state, not the optimizer's: count only names with optimizer.")
    steps = sum(b for name, (_, b) in sizes.items() if name.startswith("optimizer.") and name.endswith(".step"))
    if got[1] == want[1] - steps:
        raise Wrong("the optimizer's step tensors count too: every tensor whose name starts with optimizer.")
    for value, expected, prefix in zip(got, want, ("model.", "optimizer."), strict=True):
        if value != expected:
            raise Wrong(
                f"the tensors whose names start with {prefix} take {'more' if value < expected else 'fewer'} than "
                f"{value:,.0f} bytes: add up tensor.nbytes over them"
            )


# ------------------------------------------------------------------------------------- 10_budget


def _steps_for(minutes: float, seconds_per_step: float, evaluations: int, seconds_per_evaluation: float) -> int:
    """Whole training steps that fit in `minutes`, after `evaluations` evaluations."""
    return max(0, math.floor((60 * minutes - evaluations * seconds_per_evaluation) / seconds_per_step))


def _frontier(runs: list[dict]) -> dict:
    """{budget: the run of lowest val at that budget}, budgets in increasing order."""
    best = {}
    for run in runs:
        if run["minutes"] not in best or run["val"] < best[run["minutes"]]["val"]:
            best[run["minutes"]] = run
    return dict(sorted(best.items()))


@piece("my_steps_for", "10_budget", "the training steps that fit in a budget", _steps_for)
def _verify_steps_for(my_steps_for: Callable) -> None:
    for args in [(2, 0.045, 4, 0.5), (10, 0.3, 4, 2.3), (0.5, 0.07, 3, 1.0), (0.05, 1.0, 4, 1.0)]:
        call = f"my_steps_for({', '.join(f'{a:g}' for a in args)})"
        got, want = my_steps_for(*args), _steps_for(*args)
        if isinstance(got, bool) or not isinstance(got, int):
            raise Wrong(f"{call} returned {_kind(got)}: a number of steps is an int, e.g. math.floor(...)")
        if got == want:
            continue
        minutes, pace, evaluations, each = args
        mistakes = [
            (max(0, math.floor((minutes - evaluations * each) / pace)), "minutes are 60 seconds each"),
            (max(0, math.floor(60 * minutes / pace)), "the evaluations take time too: evaluations × their seconds"),
            (math.floor((60 * minutes - evaluations * each) / pace), "never fewer than 0 steps: max(0, ...)"),
            (math.ceil((60 * minutes - evaluations * each) / pace), "round down: a step that does not fit is not done"),
        ]
        hint = next((hint for value, hint in mistakes if got == value), "")
        raise Wrong(f"{call} returned {got}: " + (hint or f"too {'many' if got > want else 'few'}"))


@piece("my_frontier", "10_budget", "the best run of each budget", _frontier)
def _verify_frontier(my_frontier: Callable) -> None:
    runs = [
        {"minutes": 10, "val": 1.61, "shape": "4x128"},
        {"minutes": 2, "val": 1.72, "shape": "4x128"},
        {"minutes": 2, "val": 1.68, "shape": "2x96"},
        {"minutes": 10, "val": 1.58, "shape": "4x192"},
        {"minutes": 5, "val": 1.66, "shape": "2x96"},
    ]
    got, want = my_frontier(copy.deepcopy(runs)), _frontier(runs)
    if not isinstance(got, dict):
        raise Wrong(f"return a dict {{budget: run}}, got {_kind(got)}")
    if set(got) != set(want):
        raise Wrong(f"the budgets are {sorted(want)}: one key per budget of the runs, got {sorted(got)}")
    for budget, run in got.items():
        if not isinstance(run, dict):
            raise Wrong(f"the value of budget {budget} is {_kind(run)}: return the whole run, the dict")
        if run["val"] == max(r["val"] for r in runs if r["minutes"] == budget) != want[budget]["val"]:
            raise Wrong(f"at budget {budget} that is the run of the highest val: the best is the lowest loss")
        if run != want[budget]:
            raise Wrong(f"at budget {budget} that is not the run of the lowest val")
    if list(got) != list(want):
        raise Wrong("put the budgets in increasing order: dict(sorted(...items()))")
