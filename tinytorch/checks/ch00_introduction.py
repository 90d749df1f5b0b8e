"""The checks of notebooks/00_introduction.ipynb: a reference and a verify function per piece and exercise."""

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinytorch.checks import add_hints, piece
from tinytorch.checks.helpers import Wrong, _gpt, _kind, _same, _shape
from tinytorch.gpt import GPT


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
        wrong_shapes = {
            (B, T): f"{call} returned a ({B}, {T}) tensor, the ids: return the model's output for them, (B, T, V)",
            (T, B, V): f"{call} has shape {(T, B, V)}: the batch of ids is (batch_size, length), not the other way",
        }
        hint = "a batch of B sequences of T ids gives (B, T, V): one score per token"
        out = _shape(out, (B, T, V), hint, f"{call}'s result", wrong_shapes)
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


add_hints(
    {
        "my_batch_logits": (
            "The model reads a batch of token ids (B, T) and returns logits (B, T, V): here B is batch_size, "
            "T is length, and every id must be below the model's vocab_size.",
            "Draw random integer ids with torch.randint, from 0 up to model.config.vocab_size (excluded), in a tensor "
            "of size (batch_size, length); call the model on them and return its output as it is, not a softmax of it.",
        ),
        "my_too_long_message": (
            "The model refuses more than block_size positions with a ValueError; the exercise wants that error's "
            "message, caught, rather than the error stopping the cell.",
            "Make a (1, block_size + 1) tensor of integer ids (torch.zeros with dtype=torch.long will do), call the "
            "model on it inside a try block, and in the except ValueError branch return the message, with str.",
            "Read block_size from model.config rather than writing 64: the check uses a model with another block_size.",
        ),
    }
)
