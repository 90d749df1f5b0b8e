"""The checks of notebooks/09_training_runs.ipynb: a reference and a verify function per piece and exercise."""

import copy
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from tinytorch.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tinytorch.checks import add_hints, piece
from tinytorch.checks.helpers import Wrong, _generator, _gpt, _kind, _number, _pair, _randint, _randn
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import next_token_loss


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


add_hints(
    {
        "my_read_header": (
            "A safetensors file starts with 8 bytes that give the length of the JSON header that follows them.",
            "Open the file in binary, read 8 bytes and turn them into an int (little-endian), read that many bytes "
            "more and parse them with json.loads.",
        ),
        "my_state_bytes": (
            "The checkpoint's tensors are named by what they hold: 'model.' for the weights, 'optimizer.' for Adam's "
            "averages and step counts.",
            "Go over checkpoint.tensors and add each tensor's .nbytes to the total of its prefix; return the two "
            "totals.",
        ),
    }
)
