import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinytorch import training
from tinytorch.checkpoint import load_checkpoint, save_checkpoint
from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
from tinytorch.training import (
    VAL_PLAYS,
    TrainConfig,
    convert_play,
    evaluate,
    fixed_batches,
    get_batch,
    get_lr,
    make_optimizer,
    play_paths,
    shakespeare,
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
    assert train_text.startswith("PROLOGUE:\n") or train_text[0].isupper()
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


@pytest.mark.parametrize("bad", [dict(max_steps=0), dict(lr=1e-4, min_lr=1e-3), dict(warmup_steps=500)])
def test_train_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
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
    cfg = TrainConfig(max_steps=4, batch_size=4, warmup_steps=1, eval_interval=2, eval_batches=1)
    history = train(small_model(tokenizer), tokenizer, ids, ids, cfg, out=tmp_path / "c.safetensors", progress=False)
    meta = load_checkpoint(tmp_path / "c.safetensors").meta
    assert meta["step"] == 4 and meta["history"] == history and meta["val_plays"] == list(VAL_PLAYS)
    assert TrainConfig(**meta["train_config"]) == cfg


def test_resume_is_bit_exact(tmp_path, tokenizer, ids, monkeypatch):
    """N steps straight == k steps, save, load, N - k steps (dropout on, gradient accumulation on)."""
    cfg = TrainConfig(max_steps=6, batch_size=4, grad_accum=2, warmup_steps=2, eval_interval=3, eval_batches=2)
    path, at_step_3 = tmp_path / "c.safetensors", tmp_path / "c3.safetensors"

    def save_and_keep_step_3(path, model, tokenizer, step, *args, **kwargs):
        save_checkpoint(path, model, tokenizer, step, *args, **kwargs)
        if step == 3:
            shutil.copy(path, at_step_3)  # as if the run had been stopped right after step 3

    monkeypatch.setattr(training, "save_checkpoint", save_and_keep_step_3)
    straight = small_model(tokenizer, dropout=0.1)
    torch.manual_seed(1)
    history = train(straight, tokenizer, ids, ids, cfg, out=path, progress=False)
    assert load_checkpoint(at_step_3).meta["step"] == 3

    resumed = small_model(tokenizer, dropout=0.1)
    torch.manual_seed(123)  # resuming restores the random state, whatever it is now
    history_resumed = train(resumed, tokenizer, ids, ids, cfg, out=at_step_3, resume=True, progress=False)
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
            out=tmp_path / "missing.safetensors",
            resume=True,
        )


def test_two_process_ddp_matches_single_process_on_the_same_global_batch(tmp_path, tokenizer, ids):
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    result = subprocess.run([*command, str(worker), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, weight in rank0["state"].items():
        assert torch.equal(weight, rank1["state"][name]), f"ranks disagree on {name}"

    single = small_model(tokenizer)  # same seed as the worker; global batch = 2 processes x 4
    cfg = TrainConfig(max_steps=4, batch_size=8, grad_accum=2, warmup_steps=1, eval_interval=2, eval_batches=2)
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


def test_shipped_checkpoint_reaches_its_recorded_validation_loss():
    from tinytorch.generation import PRETRAINED

    checkpoint = load_checkpoint(PRETRAINED)
    cfg = TrainConfig(**checkpoint.meta["train_config"])
    _, val_text = shakespeare()
    val_ids = torch.tensor(checkpoint.tokenizer.encode(val_text), dtype=torch.uint8)
    T = checkpoint.model.config.block_size
    loss = evaluate(checkpoint.model, fixed_batches(val_ids, cfg.eval_batches, cfg.batch_size, T, seed=cfg.seed + 2))
    recorded = checkpoint.meta["history"][-1]["val"]
    assert abs(loss - recorded) < 0.02
    assert recorded <= 1.50
