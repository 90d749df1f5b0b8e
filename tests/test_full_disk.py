"""A run that cannot save: one `error:` line that says what failed, which checkpoint is intact and how to go on;
no traceback, no temporary file; and a folder without room for the run is refused before training."""

import errno
import os
import shutil
import subprocess
from collections import namedtuple

import pytest
import torch
from safetensors import SafetensorError
from test_cli import SMALL_RUN, assert_one_line_error, cli, ctrl_c_during_step

from tinytorch import checkpoint, training
from tinytorch.checkpoint import Checkpointing, load_checkpoint
from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
from tinytorch.training import TrainConfig

RUN = [*SMALL_RUN, "--steps", "6", "--eval-interval", "2"]  # saves at steps 2, 4 and 6, then model.safetensors
FULL = "Error while serializing: I/O error: No space left on device (os error 28)"  # what safetensors raises


def fail_save(monkeypatch, number: int, error: Exception | None = None) -> list:
    """The `number`-th checkpoint written fails with `error` (by default safetensors' own on a full disk)."""
    real, calls, error = checkpoint.save_file, [], error or SafetensorError(FULL)

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == number:
            with open(filename, "wb") as f:
                f.write(b"half a checkpoint")  # what a write cut short leaves behind
            raise error
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    return calls


def error_line(code, err) -> str:
    """The run's last words: one `error:` line after the progress bar, exit status 1, no traceback."""
    assert code == 1 and "Traceback" not in err and err.count("error:") == 1, err
    line = err.splitlines()[-1]
    assert line.startswith("error: "), err
    return line


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_periodic_save_on_a_full_disk_says_which_step_is_kept_and_how_to_resume(tmp_path, capsys, monkeypatch):
    fail_save(monkeypatch, 2)
    code, out, err = cli(capsys, "train", "--out", tmp_path, *RUN)
    err = error_line(code, err)
    assert err.startswith("error: the checkpoint of step 4 was not saved (no space left on "), err
    assert "checkpoint.safetensors needs " in err
    assert f"{tmp_path / 'checkpoint.safetensors'} still holds step 2, intact" in err
    assert f"`tinytorch train --resume --out {tmp_path}`" in err
    assert files(tmp_path) == [".lock", "checkpoint.safetensors"]  # no temporary file left
    assert load_checkpoint(tmp_path / "checkpoint.safetensors").meta["step"] == 2

    monkeypatch.undo()  # space freed: the run goes on from step 2
    code, out, err = cli(capsys, "train", "--resume", "--out", tmp_path)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "model.safetensors").meta["step"] == 6


def test_the_final_save_on_a_full_disk_keeps_the_one_before(tmp_path, capsys, monkeypatch):
    fail_save(monkeypatch, 3)
    code, out, err = cli(capsys, "train", "--out", tmp_path, *RUN)
    err = error_line(code, err)
    assert "the checkpoint of step 6 was not saved" in err and "still holds step 4, intact" in err, err
    assert files(tmp_path) == [".lock", "checkpoint.safetensors"]


def test_the_first_save_failing_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    fail_save(monkeypatch, 1, OSError(errno.EROFS, "Read-only file system"))
    code, out, err = cli(capsys, "train", "--out", tmp_path, *RUN)
    err = error_line(code, err)
    assert "the checkpoint of step 2 was not saved (read-only file system on " in err, err
    assert "nothing was saved yet" in err and "run the same command again" in err, err
    assert files(tmp_path) == [".lock"]


def test_model_safetensors_on_a_full_disk_keeps_the_final_checkpoint_and_resume_writes_it(
    tmp_path, capsys, monkeypatch
):
    fail_save(monkeypatch, 4)
    code, out, err = cli(capsys, "train", "--out", tmp_path, *RUN)
    err = error_line(code, err)
    assert f"error: {tmp_path / 'model.safetensors'} was not saved (no space left on " in err, err
    assert "holds the final step 6, intact" in err and f"`tinytorch train --resume --out {tmp_path}` writes it" in err
    assert files(tmp_path) == [".lock", "checkpoint.safetensors"]

    monkeypatch.undo()
    code, out, err = cli(capsys, "train", "--resume", "--out", tmp_path)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "model.safetensors").meta["step"] == 6


def test_the_save_on_ctrl_c_on_a_full_disk_is_one_line_too(tmp_path, capsys, monkeypatch):
    ctrl_c_during_step(monkeypatch, 3)
    fail_save(monkeypatch, 2)  # step 2's save works, the save of step 3 on Ctrl-C fails
    code, out, err = cli(capsys, "train", "--out", tmp_path, *RUN)
    err = error_line(code, err)
    assert "the checkpoint of step 3 was not saved" in err and "still holds step 2, intact" in err, err
    assert files(tmp_path) == [".lock", "checkpoint.safetensors"]


def test_train_from_python_raises_checkpoint_not_saved_with_the_step_kept(tmp_path, monkeypatch):
    text = "to be or not to be, that is the question\n" * 20
    tokenizer = CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text))
    model = GPT(GPTConfig(tokenizer.vocab_size, 8, 1, 2, 16))
    cfg = TrainConfig(max_steps=4, batch_size=2, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_interval=2, eval_batches=1)
    fail_save(monkeypatch, 2)
    with pytest.raises(checkpoint.CheckpointNotSaved, match="step 4 was not saved .*still holds step 2") as caught:
        training.train(
            model, tokenizer, ids, ids, cfg, progress=False, callbacks=[Checkpointing(tmp_path / "c.safetensors")]
        )
    assert (caught.value.errno, caught.value.step, caught.value.kept) == (errno.ENOSPC, 4, 2)


def test_a_folder_without_room_for_the_run_is_refused_before_training(tmp_path, capsys, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 50_000, 50_000))
    trained = []
    monkeypatch.setattr(training, "make_optimizer", lambda *args: trained.append(args))
    code, out, err = cli(capsys, "train", "--out", tmp_path, *RUN)
    err = error_line(code, err)
    assert f"error: {tmp_path} has 0.1 MB free, but this run needs about " in err, err
    assert "free some space or choose another --out" in err
    assert trained == [] and files(tmp_path) == [".lock"]


def mount_tmpfs(folder, size: str) -> bool:
    """Mount a tmpfs of `size` on `folder` (root only, as CI runs here); False where that is not allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "12M"):
        pytest.skip("mounting a 12 MB tmpfs needs root and mount; the injected-error tests above cover the same")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_on_a_real_12_mb_file_system(small_disk, capsys, monkeypatch):
    """The tiny preset's checkpoint is about 10 MB: 12 MB cannot hold the run, and the run says so before training.
    With room at the start but the disk filled by another program after the first save, the second save fails for
    real, with the operating system's own error, and the first stays intact."""
    code, out, err = cli(capsys, "train", "--out", small_disk / "run", *RUN)
    assert_one_line_error(code, "", err, "MB free, but this run needs about", "choose another --out")
    assert not list((small_disk / "run").glob("*.safetensors"))

    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real_usage(path)._replace(free=10**12))  # room, it says
    real_save, saves = checkpoint.save_file, []

    def fill_after_the_first(tensors, filename, metadata=None):
        saves.append(filename)
        if len(saves) == 2:  # another program takes what space is left
            with open(small_disk / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 2**20)
                except OSError:
                    pass
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", fill_after_the_first)
    (small_disk / "filler").unlink(missing_ok=True)
    code, out, err = cli(capsys, "train", "--out", small_disk / "run", *RUN)
    err = error_line(code, err)
    assert "the checkpoint of step 4 was not saved (no space left on " in err and "still holds step 2, intact" in err
    assert files(small_disk / "run") == [".lock", "checkpoint.safetensors"]
    assert load_checkpoint(small_disk / "run" / "checkpoint.safetensors").meta["step"] == 2
