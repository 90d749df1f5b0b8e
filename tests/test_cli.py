"""The `tinytorch train` and `tinytorch complete` commands: one-line errors, a run folder that is protected, Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

import tinytorch.generation
from tinytorch import data, training
from tinytorch.__main__ import TRAIN_OPTIONS, main
from tinytorch.checkpoint import load_checkpoint, run_meta, save_checkpoint
from tinytorch.config import GPTConfig
from tinytorch.data import shakespeare
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
from tinytorch.training import TrainConfig, make_optimizer

SMALL_RUN = ["--preset", "tiny", "--batch-size", "2", "--eval-batches", "1", "--warmup", "1"]


def cli(capsys, *args):
    """Run `tinytorch ARGS` in this process: (exit status, stdout, stderr), as the shell would see them."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    if isinstance(code, str):  # sys.exit("error: ...") prints the message to stderr and exits with status 1
        code, err = 1, err + code + "\n"
    return code, out, err


def assert_one_line_error(code, out, err, *fragments):
    assert code not in (0, None), (out, err)
    assert out == "", "nothing may be printed before the options are checked"
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (["--steps", "0"], "--steps"),
        (["--steps", "ten"], "--steps"),
        (["--batch-size", "0"], "--batch-size"),
        (["--grad-accum", "0"], "--grad-accum"),
        (["--eval-interval", "0"], "--eval-interval"),
        (["--eval-batches", "-3"], "--eval-batches"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "inf"], "--lr"),
        (["--lr", "-1e-3"], "--lr"),
        (["--min-lr", "1"], "min_lr"),
        (["--min-lr", "nan"], "--min-lr"),
        (["--warmup", "-1"], "--warmup"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "1.5"], "--seed"),
        (["--seed", str(2**64)], "--seed"),
        (["--preset", "bogus"], "unknown preset 'bogus'"),
        (["--device", "bogus"], "unknown device 'bogus'"),
        (["--tokenizer", "words"], "argument --tokenizer: invalid choice: 'words'"),
        (["--vocab-size", "300"], "--vocab-size 300 is for --tokenizer bpe"),
        (["--tokenizer", "char", "--vocab-size", "300"], "--vocab-size 300 is for --tokenizer bpe"),
        (["--tokenizer", "bpe", "--vocab-size", "256"], "argument --vocab-size: expected an integer >= 257, got 256"),
        (["--tokenizer", "bpe", "--vocab-size", "1e3"], "argument --vocab-size: expected an integer >= 257"),
        (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
        (["--arch", "bert"], "argument --arch: invalid choice: 'bert'"),
        (["--optimizer", "sgd"], "argument --optimizer: invalid choice: 'sgd'"),
        (["--muon-lr", "0"], "argument --muon-lr"),
        (["--muon-lr", "0.05"], "--muon-lr 0.05 is for --optimizer muon"),
        (["--optimizer", "adamw", "--muon-lr", "0.05"], "--muon-lr 0.05 is for --optimizer muon"),
        (["--arch", "llama", "--preset", "bogus"], "unknown preset 'bogus'"),
        (["--minutes", "1", "--arch", "llama"], "--minutes chooses the model and how to train it, so --arch"),
        (["--minutes", "1", "--optimizer", "muon"], "so --optimizer cannot be given"),
    ],
)
def test_every_invalid_train_option_is_a_one_line_error_before_anything_happens(tmp_path, capsys, option, fragment):
    out = tmp_path / "run"
    assert_one_line_error(*cli(capsys, "train", "--out", out, *option), fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (["--temperature", "nan"], "--temperature"),
        (["--temperature", "inf"], "--temperature"),
        (["--temperature", "-1"], "--temperature"),
        (["--top-k", "0"], "--top-k"),
        (["--top-p", "0"], "--top-p"),
        (["--top-p", "1.5"], "--top-p"),
        (["--top-p", "nan"], "--top-p"),
        (["--max-new-tokens", "-1"], "--max-new-tokens"),
        (["--seed", "-5"], "--seed"),
        (["--device", "bogus"], "unknown device 'bogus'"),
        pytest.param(
            ["--device", "cuda"],
            "not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_every_invalid_complete_option_is_a_one_line_error_before_the_prompt_is_printed(capsys, option, fragment):
    assert_one_line_error(*cli(capsys, "complete", "ROMEO:", "--max-new-tokens", "5", *option), fragment)


def test_an_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("precious")
    assert_one_line_error(*cli(capsys, "train", "--out", tmp_path / "file", *SMALL_RUN), "is a file")
    assert_one_line_error(*cli(capsys, "train", "--out", tmp_path / "file" / "run", *SMALL_RUN), "cannot use --out")
    assert (tmp_path / "file").read_text() == "precious"


@pytest.mark.parametrize("name", ["model.safetensors", "checkpoint.safetensors"])
def test_a_folder_with_a_model_or_a_checkpoint_is_not_overwritten(tmp_path, capsys, name):
    (tmp_path / name).write_bytes(b"precious")
    assert_one_line_error(*cli(capsys, "train", "--out", tmp_path, *SMALL_RUN), name, "another --out")
    assert (tmp_path / name).read_bytes() == b"precious"


def hold_lock(folder, owner):
    """Lock folder/.lock as a running `tinytorch train` does: flock on an open file, its owner written in it."""
    fcntl = pytest.importorskip("fcntl")
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, owner.encode())
    return fd


def test_a_second_run_in_the_same_folder_is_refused(tmp_path, capsys):
    fd = hold_lock(tmp_path, "pid 4242 on otherhost")
    try:
        code, out, err = cli(capsys, "train", "--out", tmp_path, *SMALL_RUN)
    finally:
        os.close(fd)
    assert_one_line_error(code, out, err, f"{tmp_path} is in use by another tinytorch train (pid 4242 on otherhost)")
    assert "wait for it or choose another --out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_the_lock_of_a_killed_run_is_not_stale(tmp_path, capsys):
    pytest.importorskip("fcntl")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert "is in use by another" in cli(capsys, "train", "--out", tmp_path, *SMALL_RUN)[2]
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    (tmp_path / "checkpoint.safetensors").write_bytes(b"precious")
    code, out, err = cli(capsys, "train", "--out", tmp_path, *SMALL_RUN)  # passes the lock, stops at the checkpoint
    assert_one_line_error(code, out, err, "checkpoint.safetensors", "--resume")


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


def test_temporary_files_of_killed_saves_are_removed_at_the_next_start(tmp_path, capsys):
    stale = [".checkpoint.safetensors.k2j4x_a.tmp", ".model.safetensors.zz91q0.tmp"]
    for name in stale:
        (tmp_path / name).write_bytes(b"half a checkpoint")
    (tmp_path / "checkpoint.safetensors").write_bytes(b"precious")
    (tmp_path / "notes.tmp").write_text("not ours")
    cli(capsys, "train", "--out", tmp_path, *SMALL_RUN)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "checkpoint.safetensors", "notes.tmp"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """OUT/checkpoint.safetensors of a `--preset tiny --steps 10` run (CLI defaults otherwise), at step 5."""
    folder = tmp_path_factory.mktemp("run")
    train_text, val_text = shakespeare()
    tokenizer = CharTokenizer.from_text(train_text + val_text)
    model = GPT(replace(GPTConfig.from_preset("tiny"), vocab_size=tokenizer.vocab_size))
    cfg = TrainConfig(max_steps=10, batch_size=8, lr=2e-3, min_lr=2e-4, warmup_steps=10, eval_interval=250)
    cfg = replace(cfg, eval_batches=20, seed=1337)
    optimizer = make_optimizer(model, cfg)
    save_checkpoint(
        folder / "checkpoint.safetensors", model, tokenizer, 5, optimizer, torch.Generator(), run_meta(cfg, [])
    )
    return folder


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--lr", "0.01", "--seed", "7"], ["--lr 0.01 (the run has 0.002)", "--seed 7 (the run has 1337)"]),
        (["--batch-size", "4"], ["--batch-size 4 (the run has 8)"]),
        (["--preset", "shakespeare"], ["--preset shakespeare"]),
        (["--steps", "3"], ["--steps 3 is below the checkpoint's step 5"]),
        (["--tokenizer", "bpe"], ["--tokenizer bpe (the run has char)"]),
        (["--vocab-size", "300"], ["--vocab-size 300 (the run has 76 char tokens)"]),
        (["--dtype", "bfloat16"], ["--dtype bfloat16 (the run has float32)"]),
        (["--arch", "llama"], ["--arch llama (the run has gpt2)"]),
        (["--optimizer", "muon", "--muon-lr", "0.01"], ["--optimizer muon (the run has adamw)", "--muon-lr 0.01 (the"]),
    ],
)
def test_resume_refuses_options_that_would_change_the_run(tiny_checkpoint, capsys, options, fragments):
    before = (tiny_checkpoint / "checkpoint.safetensors").read_bytes()
    assert_one_line_error(*cli(capsys, "train", "--resume", "--out", tiny_checkpoint, *options), *fragments)
    assert (tiny_checkpoint / "checkpoint.safetensors").read_bytes() == before


def test_resume_without_a_checkpoint_or_from_weights_only(tmp_path, capsys, tiny_checkpoint):
    assert_one_line_error(*cli(capsys, "train", "--resume", "--out", tmp_path), "no checkpoint")
    weights_only = load_checkpoint(tiny_checkpoint / "checkpoint.safetensors")
    save_checkpoint(tmp_path / "checkpoint.safetensors", weights_only.model, weights_only.tokenizer, 5)
    assert_one_line_error(*cli(capsys, "train", "--resume", "--out", tmp_path), "weights only")


def test_a_diverging_run_exits_with_the_step_and_a_hint_and_saves_nothing(tmp_path, capsys):
    code, out, err = cli(
        capsys, "train", "--out", tmp_path, *SMALL_RUN, "--steps", "6", "--eval-interval", "3", "--lr", "1e30"
    )
    assert code == 1 and "Traceback" not in err
    assert "error: training diverged at step 2" in err and "--lr" in err and "--warmup" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def ctrl_c_during_step(monkeypatch, step: int) -> None:
    """Send this process a real Ctrl-C (SIGINT), once, while train sets the learning rate of `step` (1-based)."""
    real_get_lr, sent = training.get_lr, []

    def get_lr(index, cfg):
        if index == step - 1 and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return real_get_lr(index, cfg)

    monkeypatch.setattr(training, "get_lr", get_lr)


def test_ctrl_c_saves_the_step_says_how_to_resume_and_exits_130(tmp_path, capsys, monkeypatch):
    ctrl_c_during_step(monkeypatch, 4)
    code, out, err = cli(capsys, "train", "--out", tmp_path, *SMALL_RUN, "--steps", "8", "--eval-interval", "6")
    assert code == 130 and "Traceback" not in err
    assert f"stopped at step 4; resume with `tinytorch train --resume --out {tmp_path}`" in err
    assert load_checkpoint(tmp_path / "checkpoint.safetensors").meta["step"] == 4
    assert not (tmp_path / "model.safetensors").exists()

    monkeypatch.undo()
    code, out, err = cli(capsys, "train", "--resume", "--out", tmp_path)
    assert code == 0, err
    assert [h["step"] for h in load_checkpoint(tmp_path / "model.safetensors").meta["history"]] == [6, 8]


def test_ctrl_c_during_complete_exits_quietly_with_130(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        yield "ROMEO:"
        raise KeyboardInterrupt

    monkeypatch.setattr(tinytorch.generation, "stream_text", interrupted)
    code, out, err = cli(capsys, "complete", "ROMEO:")
    assert (code, err) == (130, "") and out.startswith("ROMEO:")


def run(*args):
    result = subprocess.run([sys.executable, "-m", "tinytorch", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_train_then_complete_with_its_model_then_resume_for_more_steps(tmp_path):
    """The whole story, as a user types it: train, sample from the result, go on training."""
    run("train", "--out", tmp_path, *SMALL_RUN, "--steps", "10", "--eval-interval", "5")
    complete = ["complete", "ROMEO:", "--max-new-tokens", "20", "--seed", "1", "--no-stream"]
    text = run(*complete, "--checkpoint", tmp_path / "model.safetensors").stdout
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 20 + 1

    resumed = run("train", "--resume", "--steps", "15", "--out", tmp_path)
    assert resumed.stdout.startswith(f"resuming {tmp_path / 'checkpoint.safetensors'} at step 10 of 15")
    meta = load_checkpoint(tmp_path / "model.safetensors").meta
    assert meta["step"] == 15 and [h["step"] for h in meta["history"]] == [5, 10, 15]
    assert meta["max_steps_changes"] == [{"step": 10, "from": 10, "to": 15}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "checkpoint.safetensors", "model.safetensors"]


def test_version_names_the_package_torch_and_python(capsys):
    code, out, err = cli(capsys, "--version")
    assert code == 0 and out.startswith("tinytorch 0.") and f"torch {torch.__version__}" in out, (out, err)


def test_a_bpe_run_then_complete_any_unicode_prompt_then_resume_with_its_tokenizer(tmp_path, capsys):
    """--tokenizer bpe: the tokenizer is learned from the training plays, saved with its kind, and kept on resume."""
    bpe_run = [*SMALL_RUN, "--tokenizer", "bpe", "--vocab-size", "300", "--eval-interval", "2"]
    code, out, err = cli(capsys, "train", "--out", tmp_path, *bpe_run, "--steps", "2")
    assert code == 0 and "validation tokens (BPE, 300)" in out, err
    meta = load_checkpoint(tmp_path / "model.safetensors").meta
    assert meta["tokenizer"]["kind"] == "bpe" and meta["config"]["vocab_size"] == 300
    complete = ["complete", "café", "--max-new-tokens", "5", "--seed", "1", "--no-stream"]
    text = run(*complete, "--checkpoint", tmp_path / "model.safetensors").stdout
    assert text.startswith("café") and len(text) > len("café\n")

    code, out, err = cli(capsys, "train", "--resume", "--steps", "4", "--out", tmp_path)
    assert code == 0 and "validation tokens (BPE, 300)" in out, err
    assert_one_line_error(
        *cli(capsys, "train", "--resume", "--out", tmp_path, "--tokenizer", "char"), "--tokenizer char"
    )
    checkpoint = load_checkpoint(tmp_path / "model.safetensors")
    assert checkpoint.meta["step"] == 4 and checkpoint.meta["tokenizer"] == meta["tokenizer"]


def test_complete_with_the_shipped_subword_model_reads_any_unicode_prompt(tmp_path, capsys):
    from tinytorch.__main__ import SHIPPED_MODEL_NAMES
    from tinytorch.checkpoint import SHIPPED_MODELS

    assert SHIPPED_MODEL_NAMES == tuple(SHIPPED_MODELS)  # the command's choices are the package's models
    text = run("complete", "café", "--model", "shakespeare-bpe", "--max-new-tokens", "5", "--seed", "1").stdout
    assert text.startswith("café") and len(text) > len("café\n")
    code, out, err = cli(capsys, "complete", "café", "--model", "shakespeare-bpe", "--checkpoint", tmp_path / "x")
    assert code == 2 and out == "" and "not allowed with argument --model" in err and "Traceback" not in err
    code, out, err = cli(capsys, "complete", "café", "--max-new-tokens", "5")  # the character model cannot read é
    assert_one_line_error(
        code, out, err, "character 'é' at position 3", "--model shakespeare-bpe, which reads any text"
    )
    code, out, err = cli(capsys, "complete", "café", "--model", "bpe")
    assert code == 2 and "invalid choice: 'bpe' (choose from" in err and "shakespeare-bpe" in err


def test_a_bfloat16_run_records_its_dtype_and_resumes_with_it(tmp_path, capsys):
    code, out, err = cli(capsys, "train", "--out", tmp_path, *SMALL_RUN, "--steps", "2", "--dtype", "bfloat16")
    assert code == 0, err
    assert load_checkpoint(tmp_path / "checkpoint.safetensors").meta["train_config"]["dtype"] == "bfloat16"
    code, out, err = cli(capsys, "train", "--resume", "--out", tmp_path, "--steps", "3")
    assert code == 0, err
    assert "dtype='bfloat16'" in out
    assert_one_line_error(*cli(capsys, "train", "--resume", "--out", tmp_path, "--dtype", "float32"), "--dtype")


def test_bfloat16_where_autocast_has_none_is_a_one_line_error_before_anything_happens(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)  # as on a device without it
    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "train", "--out", out, *SMALL_RUN, "--dtype", "bfloat16")
    assert_one_line_error(code, stdout, err, "bfloat16 autocast is not supported on cpu", "float32")
    assert not out.exists()


def test_sigterm_saves_the_step_says_how_to_resume_and_exits_143(tmp_path):
    """`kill PID` (what docker stop, systemd and a scheduler's preemption send) to a real run: it finishes its step,
    saves it, says how to resume and exits with 143; the run then resumes from what it saved."""
    command = [sys.executable, "-m", "tinytorch", "train", "--out", str(tmp_path), *SMALL_RUN]
    run_ = subprocess.Popen([*command, "--steps", "100000", "--eval-interval", "100000"], stderr=subprocess.PIPE)
    seen = b""
    while b"loss=" not in seen:  # the progress bar shows a loss: the loop is running (no checkpoint yet)
        chunk = os.read(run_.stderr.fileno(), 4096)
        assert chunk, f"the run ended before training: {seen.decode(errors='replace')[-2000:]}"
        seen += chunk
    run_.send_signal(signal.SIGTERM)
    seen += run_.stderr.read()
    err = seen.decode(errors="replace")
    assert run_.wait(timeout=120) == 143 and "Traceback" not in err, err
    step = load_checkpoint(tmp_path / "checkpoint.safetensors").meta["step"]
    assert f"stopped at step {step} (SIGTERM); resume with `tinytorch train --resume --out {tmp_path}`" in err, err
    run("train", "--resume", "--out", tmp_path, "--steps", step + 2)
    assert load_checkpoint(tmp_path / "model.safetensors").meta["step"] == step + 2


def test_sigterm_before_training_exits_143_and_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # while the data loads
        return "x" * 1000, "y" * 1000

    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(data, "shakespeare", terminated)
    code, out, err = cli(capsys, "train", "--out", tmp_path, *SMALL_RUN)
    assert code == 143 and err == "interrupted; no checkpoint yet\n", err
    assert signal.getsignal(signal.SIGTERM) is handler  # the command puts the process's handler back


def test_complete_takes_a_run_folder_and_says_which_file_it_used(tiny_checkpoint, tmp_path, capsys):
    complete = ["complete", "ROMEO:", "--max-new-tokens", "5", "--seed", "1", "--no-stream"]
    code, out, err = cli(capsys, *complete, "--checkpoint", tiny_checkpoint)  # a run with a checkpoint only
    assert code == 0 and err == f"using {tiny_checkpoint / 'checkpoint.safetensors'}\n", err
    assert out.startswith("ROMEO:")
    weights = load_checkpoint(tiny_checkpoint / "checkpoint.safetensors")
    folder = tmp_path / "run"
    save_checkpoint(folder / "model.safetensors", weights.model, weights.tokenizer, 5)
    save_checkpoint(folder / "checkpoint.safetensors", GPT(weights.model.config), weights.tokenizer, 5)
    code, again, err = cli(capsys, *complete, "--checkpoint", folder)  # both: model.safetensors, the run's result
    assert code == 0 and err == f"using {folder / 'model.safetensors'}\n" and again == out, err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(*cli(capsys, *complete, "--checkpoint", empty), "without model.safetensors or checkpoint")


@pytest.mark.parametrize("given", ["", " "])
def test_an_empty_checkpoint_is_an_error_not_the_shipped_model(capsys, given):
    assert_one_line_error(*cli(capsys, "complete", "ROMEO:", "--checkpoint", given), "--checkpoint is empty")


def test_the_end_of_text_marker_in_a_prompt_is_explained_in_the_command_line_s_terms(capsys):
    code, out, err = cli(capsys, "complete", "To be<|endoftext|>", "--model", "shakespeare-bpe")
    assert_one_line_error(code, out, err, "the prompt contains <|endoftext|>", "leave it out")
    assert "allowed_special" not in err and "encode_ordinary" not in err


@pytest.mark.parametrize(
    ("options", "changes"),
    [
        ([], {}),
        (["--lr", "1e-3"], dict(lr=1e-3, min_lr=1e-4)),  # --min-lr follows --lr: lr / 10, as TrainConfig's defaults
        (["--steps", "50"], dict(max_steps=50, warmup_steps=50)),  # warmup cut to the steps
        (["--batch-size", "4", "--eval-batches", "3"], dict(batch_size=4, eval_batches=3)),
    ],
)
def test_train_takes_its_defaults_from_train_config(tmp_path, capsys, monkeypatch, options, changes):
    """`tinytorch train` and Python's train(..., TrainConfig()) are the same run."""
    planned = []

    def stop_at_once(model, tokenizer, train_ids, val_ids, cfg, **kwargs):
        planned.append(cfg)
        raise training.TrainingInterrupted(0)

    monkeypatch.setattr(training, "train", stop_at_once)
    code, out, err = cli(capsys, "train", "--out", tmp_path, *options)
    assert code == 130, err
    assert planned == [replace(TrainConfig(), **changes)]


def test_train_help_shows_the_defaults_of_train_config(capsys):
    code, out, _ = cli(capsys, "train", "--help")
    options = " ".join(out.split("\noptions:\n")[1].split())  # the options' section, on one line
    defaults = TrainConfig()
    for option, field in TRAIN_OPTIONS.items():
        if field is None:  # the command's own option
            continue
        flag = "--" + option.replace("_", "-")
        shown = re.search(rf"(?:^| ){flag} (?:[A-Z_]+|\{{[^}}]*\}}) .*?\(default: ([^)]+)\)", options).group(1)
        if option == "min_lr":
            assert shown == "lr / 10" and defaults.min_lr == defaults.lr / 10
        else:
            assert type(getattr(defaults, field))(shown) == getattr(defaults, field), (flag, shown)


def test_train_and_complete_compile_the_model(tmp_path, capsys):
    """--compile runs the model through torch.compile (here on the CPU); the weights keep their names."""
    from torch._dynamo.utils import counters

    def final_losses(out):
        return [float(x) for x in re.search(r"train loss (\S+), val loss (\S+);", out).groups()]

    options = [*SMALL_RUN, "--steps", "2", "--eval-interval", "2"]
    code, out, err = cli(capsys, "train", "--out", tmp_path / "plain", *options)
    assert code == 0, err
    counters.clear()
    code, compiled_out, err = cli(capsys, "train", "--out", tmp_path / "compiled", *options, "--compile")
    assert code == 0, err
    assert counters["stats"]["unique_graphs"] >= 1, "the model was not compiled"
    assert final_losses(compiled_out) == pytest.approx(final_losses(out), abs=2e-3)
    load_checkpoint(tmp_path / "compiled" / "model.safetensors")  # its usual names: no torch.compile prefix

    counters.clear()
    prompt = ["complete", "ROMEO:", "--checkpoint", tmp_path / "compiled", "--max-new-tokens", "3", "--seed", "1"]
    code, out, err = cli(capsys, *prompt, "--no-stream", "--compile")
    assert code == 0, err
    assert counters["stats"]["unique_graphs"] >= 1, "the model was not compiled"
    assert out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 3 + 1  # 3 characters and the newline


LLAMA_RUN = [*SMALL_RUN, "--arch", "llama", "--optimizer", "muon", "--eval-interval", "2", "--steps", "4"]


def test_a_llama_run_with_muon_records_both_resumes_bit_for_bit_and_completes(tmp_path, capsys, monkeypatch):
    """--arch llama --optimizer muon: the checkpoint says so; a run stopped at step 3 and resumed is the run that
    was not stopped, to the bit; complete writes with it; the run refuses to go on as another."""
    from tinytorch.__main__ import ARCH_NAMES, MUON_LR
    from tinytorch.modern import ARCHITECTURES, ModernGPT

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    code, out, err = cli(capsys, "train", "--out", straight, *LLAMA_RUN)
    assert code == 0, err
    ctrl_c_during_step(monkeypatch, 3)
    code, out, err = cli(capsys, "train", "--out", stopped, *LLAMA_RUN)
    assert code == 130 and "stopped at step 3" in err, err
    monkeypatch.undo()
    code, out, err = cli(capsys, "train", "--resume", "--out", stopped)
    assert code == 0 and "resuming" in out, err
    a, b = (load_checkpoint(run / "checkpoint.safetensors", architectures=ARCHITECTURES) for run in (straight, stopped))
    assert isinstance(a.model, ModernGPT) and a.meta["arch"] == "llama"
    assert a.meta["optimizer"] == b.meta["optimizer"] == {"name": "muon", "muon_lr": MUON_LR}
    assert [group["rule"] for group in a.meta["param_groups"]] == ["muon", "adamw", "adamw"]
    assert a.meta["history"] == b.meta["history"] and a.tensors.keys() == b.tensors.keys()
    for name, value in a.tensors.items():
        assert torch.equal(value, b.tensors[name]), name
    assert_one_line_error(*cli(capsys, "train", "--resume", "--out", straight, "--arch", "gpt2"), "--arch gpt2")
    assert_one_line_error(
        *cli(capsys, "train", "--resume", "--out", straight, "--optimizer", "adamw"), "(the run has muon)"
    )

    complete = ["complete", "ROMEO:", "--max-new-tokens", "20", "--seed", "1", "--no-stream"]
    code, out, err = cli(capsys, *complete, "--checkpoint", straight)
    assert code == 0 and out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 20 + 1, err
    assert ARCH_NAMES == tuple(ARCHITECTURES)  # the command's choices are the package's architectures


def test_muon_lr_s_default_in_help_is_chapter_11s(capsys):
    import inspect

    from tinytorch.__main__ import MUON_LR
    from tinytorch.modern import Muon

    assert MUON_LR == inspect.signature(Muon).parameters["lr"].default
    code, out, _ = cli(capsys, "train", "--help")
    assert code == 0 and f"(default: {MUON_LR:g})" in " ".join(out.split())
