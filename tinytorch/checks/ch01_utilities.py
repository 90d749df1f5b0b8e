"""The checks of notebooks/01_utilities.ipynb: a reference and a verify function per piece and exercise."""

from collections.abc import Callable
from dataclasses import fields, replace

from torch import nn

from tinytorch.checks import add_hints, piece
from tinytorch.checks.helpers import Wrong, _describe, _kind, _num, _number, _pair, _same_class
from tinytorch.config import GPTConfig, count_parameters, shapes_only


def _config() -> GPTConfig:
    """The default config with 8 layers of width 256."""
    return replace(GPTConfig(), n_layer=8, n_embd=256)


def _valid_heads(n_embd: int, max_heads: int) -> list[int]:
    """The head counts 1..max_heads that divide n_embd."""
    return [h for h in range(1, max_heads + 1) if n_embd % h == 0]


def _shared_counts() -> tuple[int, int]:
    """(parameters of Sequential(a, a), parameters of Sequential(a, b)) for Linear(4, 4) layers a and b."""
    with shapes_only():  # only shapes are counted: no memory, no random numbers
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


add_hints(
    {
        "my_config": (
            "A GPTConfig is frozen: you cannot change a field of the default, but you can make a new config that "
            "differs only in n_layer (the number of blocks) and n_embd (the width).",
            "Either call GPTConfig with n_layer and n_embd as keyword arguments, leaving the other fields to their "
            "defaults, or use dataclasses.replace on a default GPTConfig() with those two fields.",
        ),
        "my_valid_heads": (
            "GPTConfig accepts n_head only when it divides n_embd evenly, since every head gets hs = n_embd / n_head "
            "of the numbers.",
            "Go through every head count from 1 up to max_heads included, and keep those that leave no remainder "
            "(the % operator) when n_embd is divided by them; return them as a list, in increasing order.",
            "Start at 1, not 0 (dividing by 0 raises), and remember that range stops before its end: max_heads counts.",
        ),
        "my_shared_counts": (
            "count_parameters counts each tensor once, even when the same layer appears twice in a model; "
            "two separately built layers have parameters of their own.",
            "Make one nn.Linear(4, 4) and pass that same object twice to nn.Sequential; then make a Sequential of it "
            "and a newly built nn.Linear(4, 4). Count both with count_parameters and return the two counts, "
            "the shared one first.",
            "Every call of nn.Linear(4, 4) makes a new layer: to share one, build it once, keep it in a variable, "
            "and use that variable twice.",
        ),
    }
)
