"""Appendix 09's module: atomic writes, and checkpoints that round-trip and fail clearly."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tinytorch.checkpoint import atomic_write, load_checkpoint, remove_leftovers, restore, save_checkpoint
from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT, next_token_loss

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


def test_atomic_write_fsyncs_the_file_before_the_rename_and_then_its_folder(tmp_path, monkeypatch):
    synced = []  # (inode, is a folder, does the target exist yet) of every fsync, in order
    real_fsync = os.fsync

    def spy(fd):
        info = os.fstat(fd)
        synced.append((info.st_ino, stat.S_ISDIR(info.st_mode), (tmp_path / "out.txt").exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "out.txt", lambda tmp: Path(tmp).write_text("durable"))
    file_inode, folder_inode = (tmp_path / "out.txt").stat().st_ino, tmp_path.stat().st_ino
    assert synced == [(file_inode, False, False), (folder_inode, True, True)]


def test_remove_leftovers_removes_only_the_temporary_files_of_that_file(tmp_path):
    keep = ["c.safetensors", ".c.safetensors.lock", ".other.safetensors.abc.tmp", "notes.tmp"]
    stale = [".c.safetensors.k2j4_x.tmp", ".c.safetensors.zz.tmp"]
    for name in keep + stale:
        (tmp_path / name).write_text(name)
    assert sorted(remove_leftovers(tmp_path / "c.safetensors")) == sorted(tmp_path / name for name in stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def rewrite(path, meta=None, tensors=None, raw_meta=None):
    """Save `path` again with changed metadata (a dict, or the raw string) or changed tensors."""
    with safe_open(path, "pt") as f:
        header = f.metadata()
    saved = load_file(path)
    if meta is not None:
        header = {"tinytorch": json.dumps(meta)}
    if raw_meta is not None:
        header = raw_meta
    save_file(tensors(saved) if tensors else saved, path, metadata=header)


def saved_meta(path):
    with safe_open(path, "pt") as f:
        return json.loads(f.metadata()["tinytorch"])


def edit(change):
    """A function meta -> changed copy of meta."""

    def apply(meta):
        meta = json.loads(json.dumps(meta))
        change(meta)
        return meta

    return apply


BPE_DICT = {"kind": "bpe", "merges": [], "pattern": r"\S+|\s+", "special_tokens": {"<|endoftext|>": 256}}
BAD_METADATA = {
    "no tinytorch metadata": ({"other": "1"}, "no tinytorch metadata"),
    "not JSON": ({"tinytorch": "{'config': "}, "not valid JSON"),
    "a list": ({"tinytorch": "[1, 2]"}, "a JSON object"),
    "null": ({"tinytorch": "null"}, "a JSON object"),
    "no config": (edit(lambda m: m.pop("config")), "'config'"),
    "no tokenizer": (edit(lambda m: m.pop("tokenizer")), "'tokenizer'"),
    "config is a list": (edit(lambda m: m.update(config=[1, 2])), "'config'"),
    "int as a string": (edit(lambda m: m["config"].update(n_embd="32")), "n_embd must be an int"),
    "int as a float": (edit(lambda m: m["config"].update(n_embd=32.0)), "n_embd must be an int"),
    "unknown config key": (edit(lambda m: m["config"].update(n_layers=2)), "n_layers"),
    "impossible config": (edit(lambda m: m["config"].update(n_head=3)), "n_head=3"),
    "tokenizer without chars": (edit(lambda m: m.update(tokenizer={"letters": "abc"})), "'chars'"),
    "tokenizer with a repeated char": (edit(lambda m: m["tokenizer"]["chars"].append("T")), "twice"),
    "wrong format": (edit(lambda m: m.update(format="other-1")), "format"),
    "step as a string": (edit(lambda m: m.update(step="7")), "step"),
    "negative step": (edit(lambda m: m.update(step=-1)), "step"),
    "unknown tokenizer kind": (edit(lambda m: m["tokenizer"].update(kind="words")), "unknown tokenizer kind"),
    "tokenizer kind not a string": (edit(lambda m: m["tokenizer"].update(kind=["bpe"])), "tokenizer kind"),
    "bpe without merges": (edit(lambda m: m.update(tokenizer={"kind": "bpe", "pattern": "x"})), "'merges'"),
    "bpe merge of a later token": (
        edit(lambda m: m.update(tokenizer={**BPE_DICT, "merges": [[300, 1]]})),
        "merge 0 must be a pair",
    ),
    "bpe pattern that is no regex": (
        edit(lambda m: m.update(tokenizer={**BPE_DICT, "pattern": "("})),
        "is not a valid regular expression",
    ),
    "bpe special token at the wrong id": (
        edit(lambda m: m.update(tokenizer={**BPE_DICT, "special_tokens": {"<|endoftext|>": 300}})),
        "special tokens' ids",
    ),
    "bpe of another size than the model": (edit(lambda m: m.update(tokenizer=BPE_DICT)), "257 tokens"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_every_malformed_metadata_is_one_value_error_naming_the_file(tmp_path, tokenizer, case):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer, step=3)
    change, message = BAD_METADATA[case]
    if callable(change):
        rewrite(path, meta=change(saved_meta(path)))
    else:
        rewrite(path, raw_meta=change)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t["model.ln_f.weight"].fill_(float("nan")), "ln_f.weight holds NaN or infinite values"),
        (lambda t: t["model.blocks.0.mlp.fc.weight"].fill_(float("inf")), "fc.weight holds NaN or infinite"),
        (lambda t: t.update({"model.ln_f.weight": t["model.ln_f.weight"].to(torch.int8)}), "dtype torch.int8"),
        (lambda t: t.update({"model.ln_f.bias": t["model.ln_f.bias"].bool()}), "dtype torch.bool"),
    ],
)
def test_non_finite_or_non_float_weights_are_refused(tmp_path, tokenizer, change, message):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer)

    def tamper(tensors):
        change(tensors)
        return tensors

    rewrite(path, tensors=tamper)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        load_checkpoint(path)


SIZE_CLAIMS = """
import json, resource, sys, time
from tinytorch.checkpoint import load_checkpoint
from tinytorch.modern import ARCHITECTURES
load_checkpoint(sys.argv[1], architectures=ARCHITECTURES)  # an honest file first: what loading costs anyway
before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
results = []
for name in sys.argv[2:]:
    start = time.perf_counter()
    try:
        load_checkpoint(name, architectures=ARCHITECTURES)
        results.append(("loaded", name))
    except ValueError as error:
        results.append(("ValueError", str(error)))
    except BaseException as error:
        results.append((type(error).__name__, str(error)[:200]))
    results[-1] += (time.perf_counter() - start,)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"results": results, "grew_mb": peak_mb - before_mb}))
"""


def test_size_claims_in_the_metadata_are_checked_before_any_memory_is_allocated(tmp_path, tokenizer):
    """A file of a few kB that claims a huge model is refused quickly, in little memory, naming the file."""
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer)
    claims = [("block_size", 10**9), ("n_layer", 10**6), ("block_size", 2 * 10**6), ("vocab_size", 2 * 10**6)]
    assert_size_claims_refused(tmp_path, path, [*claims, ("n_embd", 2 * 10**6)])


def test_size_claims_of_a_modern_checkpoint_are_checked_before_any_memory_is_allocated(tmp_path, tokenizer):
    """Chapter 11's model computes rotary tables of block_size rows that no weight bounds: checked all the same."""
    from tinytorch.modern import ARCHITECTURES, ModernConfig, ModernGPT

    path = tmp_path / "modern.safetensors"
    config = ModernConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    save_checkpoint(path, ModernGPT(config), tokenizer, architectures=ARCHITECTURES)
    claims = [("block_size", 10**9), ("block_size", 10**7), ("n_layer", 10**6), ("mlp_hidden", 10**8)]
    assert_size_claims_refused(tmp_path, path, [*claims, ("n_kv_head", 1), ("vocab_size", 2 * 10**6)])


def assert_size_claims_refused(tmp_path, path, claims):
    """Each (field, value) claimed in a copy of `path` is a ValueError naming the copy, in seconds and little memory."""
    paths = []
    for i, (field, value) in enumerate(claims):
        meta = saved_meta(path)
        meta["config"][field] = value
        tampered = tmp_path / f"{i}-{field}.safetensors"
        shutil.copy(path, tampered)
        rewrite(tampered, meta=meta)
        paths.append(str(tampered))
    command = [sys.executable, "-c", SIZE_CLAIMS, str(path), *paths]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    for (kind, message, seconds), tampered in zip(report["results"], paths, strict=True):
        assert kind == "ValueError" and tampered in message, (kind, message)
        assert seconds < 5, (tampered, seconds)
    assert report["grew_mb"] < 50  # no model of the claimed size was built, not even for a moment


def test_save_refuses_non_finite_weights_and_keeps_the_previous_checkpoint(tmp_path, tokenizer):
    path = tmp_path / "c.safetensors"
    model = small_model(tokenizer)
    save_checkpoint(path, model, tokenizer, step=1)
    before = path.read_bytes()
    with torch.no_grad():
        model.ln_f.weight[0] = float("nan")
    with pytest.raises(ValueError, match="ln_f.weight holds NaN or infinite values"):
        save_checkpoint(path, model, tokenizer, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_float16_overflow_is_refused_too(tmp_path, tokenizer):
    model = small_model(tokenizer)
    with torch.no_grad():
        model.ln_f.weight[0] = 1e6  # fine in float32, inf in float16
    with pytest.raises(ValueError, match="ln_f.weight holds NaN or infinite values"):
        save_checkpoint(tmp_path / "c.safetensors", model, tokenizer, dtype=torch.float16)


def test_a_weights_only_file_cannot_be_restored(tmp_path, tokenizer):
    path = tmp_path / "model.safetensors"
    model = small_model(tokenizer)
    save_checkpoint(path, model, tokenizer, step=5, dtype=torch.float16)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*weights only"):
        restore(load_checkpoint(path), model, optimizer, torch.Generator())


def test_a_damaged_optimizer_state_is_a_clear_error(tmp_path, tokenizer):
    path = tmp_path / "c.safetensors"
    model = small_model(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters())
    next_token_loss(model(torch.zeros(1, 4, dtype=torch.long)), torch.zeros(1, 4, dtype=torch.long)).backward()
    optimizer.step()
    save_checkpoint(path, model, tokenizer, 1, optimizer, torch.Generator(), meta={"history": []})
    rewrite(path, tensors=lambda t: {**t, "rng.generator": torch.zeros(3, dtype=torch.uint8)})
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*cannot be resumed"):
        restore(load_checkpoint(path), small_model(tokenizer), torch.optim.AdamW(model.parameters()), torch.Generator())


def small_bpe():
    from tinytorch.bpe import BPETokenizer

    return BPETokenizer.train(TEXT * 3, 270)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_tokenizer_is_stored_with_its_kind_and_loads_as_its_class(tmp_path, tokenizer, kind):
    tokenizer = small_bpe() if kind == "bpe" else tokenizer
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer, step=1)
    assert saved_meta(path)["tokenizer"] == {"kind": kind, **tokenizer.to_dict()}
    loaded = load_checkpoint(path).tokenizer
    assert type(loaded) is type(tokenizer) and loaded.to_dict() == tokenizer.to_dict()
    assert loaded.decode(loaded.encode(TEXT)) == TEXT


def test_a_checkpoint_without_a_tokenizer_kind_loads_as_characters(tmp_path, tokenizer):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer, step=1)
    rewrite(path, meta=edit(lambda m: m["tokenizer"].pop("kind"))(saved_meta(path)))
    assert "kind" not in saved_meta(path)["tokenizer"]
    loaded = load_checkpoint(path).tokenizer
    assert isinstance(loaded, CharTokenizer) and loaded.to_dict() == tokenizer.to_dict()


def test_a_bpe_model_completes_any_unicode_prompt(tmp_path):
    from tinytorch.checkpoint import load_pretrained
    from tinytorch.generation import stream_text

    tokenizer = small_bpe()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer, step=1)
    model, loaded = load_pretrained(path)
    prompt = "café, naïve 😀 Ελληνικά"
    text = "".join(stream_text(model, loaded, prompt, max_new_tokens=10, seed=0))
    assert text.startswith(prompt) and len(text) > len(prompt)


def fake_cuda(monkeypatch, states, restored):
    """Make torch.cuda look initialised with len(states) GPUs whose random states are `states`."""
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(states))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((device, state.clone())))


def test_the_cuda_random_state_is_saved_and_restored(tmp_path, tokenizer, monkeypatch):
    states, restored = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)], []
    fake_cuda(monkeypatch, states, restored)
    path, model = tmp_path / "c.safetensors", small_model(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(path, model, tokenizer, 1, optimizer, torch.Generator(), meta={"history": []})
    assert torch.equal(load_file(path)["rng.cuda"], torch.stack(states))
    restore(load_checkpoint(path), model, optimizer, torch.Generator())
    assert [device for device, _ in restored] == [0, 1]
    assert all(torch.equal(state, states[device]) for device, state in restored)


def test_without_cuda_nothing_about_it_is_saved_or_restored(tmp_path, tokenizer, monkeypatch):
    assert not torch.cuda.is_initialized()
    path, model = tmp_path / "c.safetensors", small_model(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(path, model, tokenizer, 1, optimizer, torch.Generator(), meta={"history": []})
    assert "rng.cuda" not in load_file(path)
    restored = []
    fake_cuda(monkeypatch, [torch.zeros(16, dtype=torch.uint8)], restored)  # resumed on a machine with a GPU
    restore(load_checkpoint(path), model, optimizer, torch.Generator())
    assert restored == []


def test_a_modern_checkpoint_round_trips_with_chapter_11s_architectures_only(tmp_path, tokenizer):
    """The file records its architecture; appendix 09's own table (GPT-2 only) refuses it, saying what to pass."""
    from tinytorch.modern import ARCHITECTURES, ModernConfig, ModernGPT

    config = ModernConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    model, path = ModernGPT(config), tmp_path / "modern.safetensors"
    with pytest.raises(TypeError, match="ModernGPT.*architectures=tinytorch.modern.ARCHITECTURES"):
        save_checkpoint(path, model, tokenizer)
    save_checkpoint(path, model, tokenizer, 3, architectures=ARCHITECTURES)
    loaded = load_checkpoint(path, architectures=ARCHITECTURES)
    assert loaded.meta["arch"] == "llama" and loaded.model.config == config and isinstance(loaded.model, ModernGPT)
    assert "model.lm_head.weight" in loaded.tensors  # untied: its own matrix
    for (name, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*architecture 'llama'.*ARCHITECTURES"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(rope_theta="1e4"), "config rope_theta must be a float"),
        (dict(qk_norm=1), "config qk_norm must be a bool"),
        (dict(norm_eps=float("nan")), "config norm_eps must be a float"),
        (dict(bogus=1), "bogus"),
    ],
)
def test_a_modern_config_of_the_wrong_types_is_refused(tmp_path, tokenizer, change, message):
    from tinytorch.modern import ARCHITECTURES, ModernConfig, ModernGPT

    path = tmp_path / "modern.safetensors"
    config = ModernConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_kv_head=1, n_embd=16)
    save_checkpoint(path, ModernGPT(config), tokenizer, architectures=ARCHITECTURES)
    rewrite(path, meta=edit(lambda meta: meta["config"].update(change))(saved_meta(path)))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        load_checkpoint(path, architectures=ARCHITECTURES)


@pytest.mark.parametrize("name", ["shakespeare", "shakespeare-bpe"])
def test_the_shipped_checkpoints_record_no_architecture_and_load_as_gpt2(name):
    from tinytorch.checkpoint import SHIPPED_MODELS
    from tinytorch.modern import ARCHITECTURES

    assert "arch" not in saved_meta(SHIPPED_MODELS[name])  # saved before there was a choice
    for architectures in ({}, {"architectures": ARCHITECTURES}):
        assert type(load_checkpoint(SHIPPED_MODELS[name], **architectures).model) is GPT


def test_the_shipped_modern_model_is_gpt2_trained_with_muon_by_the_30_minute_recipe():
    from tinytorch.budget import FRONTIER
    from tinytorch.checkpoint import SHIPPED_MODELS, load_pretrained

    meta, old_meta = (saved_meta(SHIPPED_MODELS[name]) for name in ("shakespeare-modern", "shakespeare"))
    recipe = next(r for r in FRONTIER if r.minutes == 30)  # what tinytorch train --minutes 30 trains
    assert meta["arch"] == "gpt2" and recipe.optimizer == meta["optimizer"]["name"] == "muon"
    shape = ("n_layer", "n_head", "n_embd", "block_size")
    assert [meta["config"][k] for k in shape] == [getattr(recipe, k) for k in shape] == [4, 4, 160, 128]
    assert meta["config"] == old_meta["config"]  # the shipped model's shape
    assert meta["train_config"]["batch_size"] == recipe.batch_size and meta["train_config"]["lr"] == recipe.lr
    model, tokenizer = load_pretrained("shakespeare-modern")
    assert type(model) is GPT and tokenizer.chars == load_pretrained("shakespeare")[1].chars
    assert meta["history"][-1]["val"] < old_meta["history"][-1]["val"] - 0.03  # chapter 11: 1.405 against 1.462


def test_a_gpt_checkpoint_records_gpt2_and_stores_the_tied_head_once(tmp_path, tokenizer):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer)
    assert saved_meta(path)["arch"] == "gpt2"
    assert "model.lm_head.weight" not in load_file(path)
