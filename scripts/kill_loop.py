"""Fault injection for `tinytorch train`: kill a run again and again, resume it, and check that nothing was lost.

One reference run trains without interruption. The same run is then started in another folder and, until it
finishes, stopped at random: SIGKILL at a random moment, SIGKILL while a checkpoint is being written (as soon as
its temporary file appears), or SIGINT (Ctrl-C: it must save, say how to resume and exit with 130); after each
stop it is started again with --resume (or from scratch if nothing was saved yet). At the end the two folders must
hold the same checkpoint.safetensors and model.safetensors, byte for byte, and no temporary file. Then a second run
in a folder that a running one owns must be refused.

Usage: .venv/bin/python scripts/kill_loop.py [--rounds 12] [--seed 0]   (about two minutes on 2 CPU cores)
"""

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["--preset", "tiny", "--steps", "60", "--eval-interval", "5", "--batch-size", "4", "--eval-batches", "2"]
RUN += ["--warmup", "5", "--seed", "7"]


def start(out: Path, resume: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "tinytorch", "train", "--out", str(out)]
    command += ["--resume"] if resume else RUN
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(process: subprocess.Popen, out: Path, timeout: float = 60) -> bool:
    """Wait until the run has started training (its lock names it); False if it ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            return False
        lock = out / ".lock"
        if lock.exists() and f"pid {process.pid} " in lock.read_text(errors="replace"):
            return True
        time.sleep(0.01)
    raise TimeoutError("the run did not start")


def temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".*.tmp"))


def interrupted_run(out: Path, rounds: int, rng: random.Random) -> list[str]:
    """Run to the end while stopping it `rounds` times; returns what happened, one line per start."""
    log = []
    while True:
        resume = (out / "checkpoint.safetensors").exists()
        process = start(out, resume)
        started = wait_for_training(process, out)
        action = rng.choice(["kill", "kill during a save", "ctrl-c"]) if len(log) < rounds and started else "none"
        left = temporaries(out)
        if action == "kill":
            time.sleep(rng.uniform(0.5, 3.0))
            process.kill()
        elif action == "kill during a save":
            end = time.monotonic() + 20
            while process.poll() is None and not temporaries(out) and time.monotonic() < end:
                time.sleep(0.0005)
            process.kill()
        elif action == "ctrl-c":
            time.sleep(rng.uniform(1.5, 3.0))
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=300)
        step = _checkpoint_step(out)
        log.append(
            f"{'resume' if resume else 'start '}  {action:<18} exit {process.returncode:>4}  checkpoint at step "
            f"{step}  temporary files now {temporaries(out) or 'none'}" + (f" (found {left})" if left else "")
        )
        if action == "ctrl-c" and process.returncode == 130:
            saved = "stopped at step" in stderr and "resume with `tinytorch train --resume --out" in stderr
            early = stderr.startswith("interrupted; ")  # Ctrl-C before the training loop, while the data loads
            assert (saved or early) and "Traceback" not in stderr, stderr
        if process.returncode == 0:
            return log
        # -SIGINT: the Ctrl-C came after the run had finished and saved, as Python was exiting (a shell shows 130)
        assert process.returncode in (-signal.SIGKILL, -signal.SIGINT, 130), (process.returncode, stderr[-2000:])


def _checkpoint_step(out: Path):
    from safetensors import safe_open

    path = out / "checkpoint.safetensors"
    if not path.exists():
        return None
    import json

    with safe_open(path, "pt") as f:
        return json.loads(f.metadata()["tinytorch"])["step"]


def two_runs_one_folder(out: Path) -> str:
    """Start a long run, then a second one in the same folder: the second must be refused."""
    command = [sys.executable, "-m", "tinytorch", "train", "--out", str(out), "--preset", "tiny", "--steps", "100000"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_training(first, out)
        second = subprocess.run([*command[:-1], "150", "--seed", "7"], capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert second.returncode != 0 and f"is in use by another tinytorch train (pid {first.pid} " in second.stderr
    return f"second run: exit {second.returncode}, {second.stderr.strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="stops to inflict (default: 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random stops (default: 0)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        reference, interrupted = Path(folder) / "reference", Path(folder) / "interrupted"
        done = start(reference, resume=False)
        assert done.wait(timeout=600) == 0, done.stderr.read()
        for line in interrupted_run(interrupted, args.rounds, random.Random(args.seed)):
            print(line)
        for name in ("checkpoint.safetensors", "model.safetensors"):
            same = (reference / name).read_bytes() == (interrupted / name).read_bytes()
            print(f"{name}: byte-identical to the uninterrupted run: {same}")
            assert same, name
        left = temporaries(interrupted)
        print("temporary files left:", left or "none")
        assert not left
        print(two_runs_one_folder(Path(folder) / "shared"))
    print("all checks passed")


if __name__ == "__main__":
    main()
