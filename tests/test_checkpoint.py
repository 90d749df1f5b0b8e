"""Appendix 09's module: atomic writes, and checkpoints that round-trip and fail clearly."""

import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tinytorch.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT

TEXT = "To be, or not to be, that is the question:\n"


@pytest.fixture
def tokenizer():
    return CharTokenizer.from_text(TEXT)


def small_model(tokenizer):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32))


def test_atomic_write_replaces_the_file_with_normal_permissions(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: Path(tmp).write_text("one"))
    atomic_write(target, lambda tmp: Path(tmp).write_text("two"))
    assert target.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("precious")

    def crash(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_checkpoint_round_trip(tmp_path, tokenizer):
    model = small_model(tokenizer)
    save_checkpoint(tmp_path / "c.safetensors", model, tokenizer, step=7, meta={"note": "seven"})
    loaded = load_checkpoint(tmp_path / "c.safetensors")
    assert loaded.meta["step"] == 7 and loaded.meta["note"] == "seven"
    assert loaded.model.config == model.config and loaded.tokenizer.chars == tokenizer.chars
    for (name, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.model.lm_head.weight is loaded.model.embeddings.wte.weight
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left behind


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_truncated_checkpoint_is_a_clear_error(tmp_path, tokenizer):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"c\.safetensors.*truncated or corrupt"):
        load_checkpoint(path)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_checkpoint_that_does_not_match_its_config(tmp_path, tokenizer):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer)
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    tensors["model.ln_f.weight"] = torch.ones(7)
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(ValueError, match=r"ln_f.weight has shape \(7,\)"):
        load_checkpoint(path)


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, tokenizer):
    path = tmp_path / "c.safetensors"
    model = small_model(tokenizer)
    save_checkpoint(path, model, tokenizer, step=1)
    before = path.read_bytes()
    with pytest.raises(TypeError):  # the history is not JSON-serializable
        save_checkpoint(path, model, tokenizer, step=2, meta={"history": [{"bad": object()}]})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]
