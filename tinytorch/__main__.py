"""The `tinytorch` command line: `preview` (chapter 00), `train` (chapter 06), `complete` (chapter 07), `finetune`,
`reply` and `classify` (chapter 12), and for the learner `workbook` (write the chapters with stubs to fill in) and
`check` (run them and say what is built)."""

import argparse
import copy
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

from tinytorch.train_config import TrainConfig  # no torch: --help and a bad option answer without loading it
from tinytorch.validation import check_int, check_number, check_seed


def preview(args: argparse.Namespace) -> None:
    """Chapter 00's preview: an untrained GPT turns 10 random token ids into next-token scores."""
    import torch

    from tinytorch import GPT, set_seed

    set_seed(args.seed)
    model = GPT()
    input_data = torch.randint(0, 100, (1, 10))
    output = model(input_data)
    print("input ", tuple(input_data.shape), "token ids:", input_data[0].tolist())
    print("output", tuple(output.shape), "= (batch, positions, scores for each of the 128 possible next tokens)")


# The options of `train` that describe the run, in --help's order: option -> the TrainConfig field it sets, or None
# for the command's own. None on the command line unless given: a resumed run takes them from its checkpoint.
TRAIN_OPTIONS = dict(
    preset=None,
    arch=None,
    steps="max_steps",
    batch_size="batch_size",
    grad_accum="grad_accum",
    lr="lr",
    min_lr="min_lr",
    optimizer=None,
    muon_lr=None,
    warmup="warmup_steps",
    eval_interval="eval_interval",
    eval_batches="eval_batches",
    seed="seed",
    tokenizer=None,
    vocab_size=None,
    dtype="dtype",
)
BPE_VOCAB_SIZE = 1024  # --vocab-size when --tokenizer bpe is given without it
DEFAULT = TrainConfig()  # the one home of train's defaults; the command's own follow
TRAIN_DEFAULTS = {option: getattr(DEFAULT, field) for option, field in TRAIN_OPTIONS.items() if field is not None}
TRAIN_DEFAULTS |= dict(preset="shakespeare", tokenizer="char", vocab_size=None)  # vocab_size: BPE_VOCAB_SIZE for bpe
TRAIN_DEFAULTS |= dict(arch="gpt2", optimizer="adamw", muon_lr=None)  # muon_lr: Muon's own default (MUON_LR)
RESUMED_FIELDS = {option: field for option, field in TRAIN_OPTIONS.items() if field not in (None, "max_steps")}
# the options --minutes chooses itself, or that its study did not vary: all but the evaluation's batches and the seed
PLANNED = tuple(option for option in TRAIN_OPTIONS if option not in ("eval_batches", "seed"))
SHIPPED_MODEL_NAMES = (
    "shakespeare",
    "shakespeare-bpe",
    "shakespeare-modern",
)  # tinytorch.checkpoint.SHIPPED_MODELS, without importing torch
ARCH_NAMES = ("gpt2", "llama")  # tinytorch.modern.ARCHITECTURES, without importing torch
MUON_LR = 0.02  # the default lr of tinytorch.modern.Muon (chapter 11), for --help without importing torch


class _Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, `docker stop`, a scheduler's preemption) outside the training loop: stop like Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise _Terminated


def train(args: argparse.Namespace) -> None:
    """Train a GPT on Shakespeare's plays (chapter 06, appendix 09); works under torchrun too."""
    import torch
    import torch.distributed as dist

    from tinytorch import CharTokenizer, GPTConfig, count_parameters, get_device, set_seed
    from tinytorch.bpe import GPT4_PATTERN, BPETokenizer
    from tinytorch.budget import SPARE_SECONDS, Deadline, plan_run
    from tinytorch.checkpoint import CheckpointNotSaved, Checkpointing, checkpoint_bytes, load_checkpoint
    from tinytorch.checkpoint import StopOnSignal, UseTF32, remove_leftovers, save_checkpoint
    from tinytorch.data import id_dtype, shakespeare
    from tinytorch.modern import ARCHITECTURES, ModernConfig, modern_config_from_preset
    from tinytorch.training import TrainingDiverged, TrainingInterrupted, autocast
    from tinytorch.training import train as run_training

    began = time.perf_counter()  # --minutes counts from here
    given = {name: getattr(args, name) for name in TRAIN_DEFAULTS if getattr(args, name) is not None}
    folder = Path(args.out)
    out, weights = folder / "checkpoint.safetensors", folder / "model.safetensors"
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    try:  # every option is checked before anything is written or printed
        device = get_device(args.device)
        if args.minutes is not None:
            _check_minutes(args, given, world)  # exits naming the options --minutes chooses itself
        if not args.resume:  # with --minutes, the plan replaces config and cfg once the data is loaded
            settings = {**TRAIN_DEFAULTS, **given}
            if "lr" in given and "min_lr" not in given:
                settings["min_lr"] = given["lr"] / 10  # as TrainConfig's defaults: min_lr = lr / 10
            if settings["muon_lr"] is not None and settings["optimizer"] != "muon":
                raise ValueError(
                    f"--muon-lr {settings['muon_lr']:g} is for --optimizer muon (AdamW's peak is --lr); add "
                    "--optimizer muon or leave --muon-lr out"
                )
            if settings["tokenizer"] == "char" and settings["vocab_size"] is not None:
                raise ValueError(
                    f"--vocab-size {settings['vocab_size']} is for --tokenizer bpe (the characters' vocabulary is "
                    "the characters of the plays); add --tokenizer bpe or leave --vocab-size out"
                )
            from_preset = modern_config_from_preset if settings["arch"] == "llama" else GPTConfig.from_preset
            config = from_preset(settings["preset"])
            recipe = _optimizer_record(settings["optimizer"], settings["muon_lr"])
            settings["warmup"] = min(settings["warmup"], settings["steps"])  # a short run warms up for all of it
            cfg = TrainConfig(**{field: settings[option] for option, field in TRAIN_OPTIONS.items() if field})
            autocast(device, cfg.dtype)  # a ValueError where bfloat16 autocast is not supported
    except (TypeError, ValueError) as error:
        sys.exit(f"error: {error}")
    lock = _own_folder(folder) if rank == 0 else None  # the process that writes the folder owns it
    terminate = signal.signal(signal.SIGTERM, _terminate)  # outside train's StopOnSignal, SIGTERM acts as Ctrl-C
    try:
        if rank == 0:
            for path in (out, weights):
                remove_leftovers(path)  # left by a save that was killed; nobody else writes here: we hold the lock
        if not args.resume and out.exists():
            sys.exit(f"error: {out} exists; pass --resume to continue it, or choose another --out")
        if not args.resume and weights.exists():
            sys.exit(f"error: {weights} exists and would be overwritten; move it away or choose another --out")
        if args.resume:
            if not out.exists():
                only = f"; {weights} holds weights only and cannot be resumed" if weights.exists() else ""
                sys.exit(f"error: --resume given but there is no checkpoint at {out}{only}")
            checkpoint = load_checkpoint(out, architectures=ARCHITECTURES)  # read once: Checkpointing resumes from it
            cfg, config, step = _resumed_settings(checkpoint, given)
            recipe = checkpoint.meta.get("optimizer")  # the run's own optimizer (None: AdamW)
            tokenizer = checkpoint.tokenizer  # the run's own: a BPE tokenizer is never trained again
        train_text, val_text = shakespeare()
        if not args.resume and args.minutes is None and settings["tokenizer"] == "bpe":  # from the training plays
            tokenizer = BPETokenizer.train(train_text, settings["vocab_size"] or BPE_VOCAB_SIZE, GPT4_PATTERN)
        elif not args.resume:
            tokenizer = CharTokenizer.from_text(train_text + val_text)
        ids_dtype = id_dtype(tokenizer.vocab_size)  # uint8 for characters, int16 for BPE: 1/8 or 1/4 of int64
        train_ids = torch.tensor(tokenizer.encode(train_text), dtype=ids_dtype)
        val_ids = torch.tensor(tokenizer.encode(val_text), dtype=ids_dtype)
        plan, deadline = None, None
        if args.minutes is not None:  # measure this machine's pace, choose the shape, fit the steps to the time left
            deadline = began + 60 * args.minutes - SPARE_SECONDS  # training ends then; the final save follows
            config, cfg, plan = plan_run(
                args.minutes,
                tokenizer.vocab_size,
                train_ids,
                deadline,
                device,
                settings["eval_batches"],
                settings["seed"],
            )
            recipe = _optimizer_record(plan["recipe"]["optimizer"], None)  # Muon where chapter 11 measured it ahead
        elif not args.resume:
            config = replace(config, vocab_size=tokenizer.vocab_size)
        model_class = ARCHITECTURES["llama" if isinstance(config, ModernConfig) else "gpt2"].model
        if world > 1:
            local_rank = int(os.environ["LOCAL_RANK"])
            if device.type == "cuda":
                device = torch.device("cuda", local_rank)
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        set_seed(cfg.seed)
        model = model_class(config).to(device)
        if args.compile:
            model.compile()  # in place: the weights keep their names, in the checkpoints too
        if rank == 0:
            size = checkpoint_bytes(model, tokenizer)
            _check_space(folder, size, size // 6, args.resume)  # model.safetensors: float16 weights, a sixth of it
            name = f"resuming {out} at step {step} of {cfg.max_steps}" if args.resume else settings["preset"]
            if plan is not None:
                print(f"--minutes {args.minutes:g}: {plan['why']}")
                name = f"{cfg.max_steps:,} steps at {plan['seconds_per_step']:.3f} s each"
            print(f"{name}: {count_parameters(model):,} parameters, {config}")
            unit = "characters" if isinstance(tokenizer, CharTokenizer) else f"tokens (BPE, {tokenizer.vocab_size:,})"
            print(f"data: {len(train_ids):,} training and {len(val_ids):,} validation {unit}; {cfg}")
        saving = Checkpointing(out, checkpoint if args.resume else False, plan, recipe, ARCHITECTURES)
        callbacks = [saving] if deadline is None else [saving, Deadline(deadline)]
        callbacks += [StopOnSignal(), UseTF32()]  # Ctrl-C and SIGTERM stop after the step, saved; TF32 on a GPU
        checkpoint = None  # Checkpointing holds it until it has restored the run
        start = time.perf_counter()
        history = run_training(
            model, tokenizer, train_ids, val_ids, cfg, callbacks=callbacks, make_optimizer=_optimizer_factory(recipe)
        )
        if rank == 0:  # for sampling: the final weights in float16, from the model in memory, and the run's record
            step, record = saving.saved, saving.meta  # the last step is always evaluated, so saved
            try:
                save_checkpoint(
                    weights, model, tokenizer, step, meta=record, dtype=torch.float16, architectures=ARCHITECTURES
                )
            except OSError as error:
                sys.exit(
                    f"error: {weights} was not saved ({error.strerror}); {out} holds the final step {step}, "
                    f"intact; free some space, then `{_resume_command(args.out)}` writes it"
                )
            last = history[-1]
            tokens = last["step"] * cfg.grad_accum * cfg.batch_size * world * config.block_size
            print(
                f"step {last['step']}: train loss {last['train']:.4f}, val loss {last['val']:.4f}; "
                f"{tokens:,} tokens seen; this run took {time.perf_counter() - start:.0f} s; saved {out} and {weights}"
            )
            if plan is not None:
                wall = (time.perf_counter() - began) / 60
                off = 100 * (wall / args.minutes - 1)
                print(f"wall time {wall:.2f} minutes, for --minutes {args.minutes:g} ({off:+.1f}%)")
    except TrainingInterrupted as stop:
        if rank == 0:
            by = " (SIGTERM)" if stop.signum == signal.SIGTERM else ""
            print(f"stopped at step {stop.step}{by}; resume with `{_resume_command(args.out)}`", file=sys.stderr)
        sys.exit(128 + stop.signum)  # the shell's status for a process ended by that signal: 130, 143
    except KeyboardInterrupt as stop:  # under torchrun, a second signal, or before training: no checkpoint of now
        if rank == 0:
            then = (
                f"resume from the last checkpoint with `{_resume_command(args.out)}`"
                if out.exists()
                else "no checkpoint yet"
            )
            print(f"interrupted; {then}", file=sys.stderr)
        sys.exit(128 + (signal.SIGTERM if isinstance(stop, _Terminated) else signal.SIGINT))
    except CheckpointNotSaved as error:
        then = f"`{_resume_command(args.out)}`" if error.kept is not None else "run the same command again"
        sys.exit(f"error: {error.strerror}; free some space (or fix the folder), then {then}")
    except TrainingDiverged as error:
        kept = f"; {out} keeps step {saving.saved}" if saving.saved is not None else "; nothing was saved"
        sys.exit(
            f"error: training diverged at step {error.step}: {error.reason}{kept}. "
            + error.advice({"lr": "--lr", "warmup_steps": "--warmup"})
        )
    except (ValueError, OSError) as error:  # a checkpoint that cannot be resumed, a full disk...
        sys.exit(f"error: {error}")
    finally:
        signal.signal(signal.SIGTERM, terminate)
        if dist.is_initialized():
            dist.destroy_process_group()
        if lock is not None:
            lock.release()  # (the operating system lets go of it too if the process is killed)


def _check_minutes(args: argparse.Namespace, given: dict, world: int) -> None:
    """Exit with one line if --minutes comes with an option it chooses itself, with --resume or under torchrun."""
    if args.resume:
        sys.exit("error: --minutes plans a new run; --resume continues one with its own steps (add more with --steps)")
    chosen = [f"--{name.replace('_', '-')}" for name in PLANNED if name in given]
    if chosen:
        sys.exit(
            f"error: --minutes chooses the model and how to train it, so {', '.join(chosen)} cannot be given with it; "
            "leave them out, or give --steps instead of --minutes"
        )
    if world > 1:
        sys.exit("error: --minutes plans a run of one process from its pace; under torchrun give --steps")


def _optimizer_record(name: str, muon_lr: float | None) -> dict | None:
    """What a checkpoint records about --optimizer: None for AdamW (as before there was a choice), else its name and
    Muon's peak learning rate."""
    return None if name == "adamw" else {"name": name, "muon_lr": MUON_LR if muon_lr is None else muon_lr}


def _optimizer_factory(recipe: dict | None):
    """train's make_optimizer for a run's optimizer record: chapter 06's AdamW, or chapter 11's Muon with AdamW."""
    from functools import partial

    from tinytorch.modern import make_muon_optimizer
    from tinytorch.training import make_optimizer

    return make_optimizer if recipe is None else partial(make_muon_optimizer, muon_lr=recipe["muon_lr"])


def _resume_command(out: str) -> str:
    return f"tinytorch train --resume --out {shlex.quote(out)}"


def _check_space(folder: Path, size: int, final: int, resume: bool) -> None:
    """Exit with one line, before training, if `folder` has no room for the run's files: the checkpoint (`size`
    bytes), its temporary copy while a save replaces it (a resumed run's checkpoint is already there), and the final
    file without the optimizer (`final` bytes: train's model.safetensors, finetune's adapter.safetensors)."""
    needed = size * (1 if resume else 2) + final
    free = shutil.disk_usage(folder).free
    if free < needed:
        sys.exit(
            f"error: {folder} has {free / 1e6:.1f} MB free, but this run needs about {needed / 1e6:.1f} MB there "
            f"(a checkpoint is {size / 1e6:.1f} MB, and a save writes the new one before it removes the old); "
            "free some space or choose another --out"
        )


def _own_folder(folder: Path):
    """Check that --out is a folder this process can write and lock it (OUT/.lock, with the owner written in it): a
    second run there is refused. Returns the lock, a filelock.FileLock: held until it is released or this process
    ends, however it ends (an flock, which the operating system lets go of)."""
    import filelock  # comes with torch

    if folder.exists() and not folder.is_dir():
        sys.exit(f"error: --out {folder} is a file, not a folder; choose another --out")
    path = folder / ".lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(path, timeout=0)
        lock.acquire()
    except filelock.Timeout:
        try:
            owner = path.read_text(errors="replace").strip() or "pid unknown"
        except OSError:  # Windows: the locked file cannot be read
            owner = "pid unknown"
        sys.exit(f"error: {folder} is in use by another tinytorch train ({owner}); wait for it or choose another --out")
    except OSError as error:
        sys.exit(f"error: cannot use --out {folder}: {error.strerror or error}")
    try:
        path.write_text(f"pid {os.getpid()} on {socket.gethostname()}")
    except OSError:  # where the locked file cannot be written (Windows): the owner stays unknown
        pass
    return lock


def _resumed_settings(checkpoint, given: dict):
    """(TrainConfig, GPTConfig, step) of a run to resume: the checkpoint's own, with more --steps if given. Exits
    with one line naming the options that would change the run."""
    from tinytorch.checkpoint import DEFAULT_ARCH, resume_differences, saved_train_config, tokenizer_to_dict
    from tinytorch.config import GPTConfig
    from tinytorch.modern import modern_config_from_preset

    path, meta, config = checkpoint.path, checkpoint.meta, checkpoint.model.config
    if "param_groups" not in meta or "rng.generator" not in checkpoint.tensors:
        sys.exit(f"error: {path} holds weights only, not the state of a run; it cannot be resumed")
    arch, recipe = meta.get("arch", DEFAULT_ARCH), meta.get("optimizer")
    if recipe is not None and not (
        isinstance(recipe, dict)
        and recipe.get("name") == "muon"
        and type(recipe.get("muon_lr")) in (int, float)
        and 0 < recipe["muon_lr"] < float("inf")
    ):
        sys.exit(f"error: {path} records an unknown optimizer {str(recipe)[:60]}; it cannot be resumed")
    try:
        saved = saved_train_config(checkpoint)
        preset = given.get("preset")
        from_preset = modern_config_from_preset if arch == "llama" else GPTConfig.from_preset
        preset = preset and replace(from_preset(preset), vocab_size=config.vocab_size)
    except ValueError as error:
        sys.exit(f"error: {error}")
    steps = given.get("steps", saved.max_steps)
    if steps < meta["step"]:
        sys.exit(
            f"error: --steps {steps} is below the checkpoint's step {meta['step']}; give --steps {meta['step']} or more"
        )
    fields = {field: given[option] for option, field in RESUMED_FIELDS.items() if option in given}
    if "warmup_steps" in fields:
        fields["warmup_steps"] = min(fields["warmup_steps"], saved.max_steps)  # a fresh run cuts it to --steps too
    options = {field: option for option, field in RESUMED_FIELDS.items()} | {"config": "preset"}
    differ = []
    optimizer = "adamw" if recipe is None else recipe["name"]
    if given.get("arch", arch) != arch:
        differ.append(f"--arch {given['arch']} (the run has {arch})")
    if given.get("optimizer", optimizer) != optimizer:
        differ.append(f"--optimizer {given['optimizer']} (the run has {optimizer})")
    if "muon_lr" in given and (recipe is None or given["muon_lr"] != recipe["muon_lr"]):
        run = "AdamW alone" if recipe is None else f"{recipe['muon_lr']:g}"
        differ.append(f"--muon-lr {given['muon_lr']:g} (the run has {run})")
    kind = tokenizer_to_dict(checkpoint.tokenizer)["kind"]
    if given.get("tokenizer", kind) != kind:
        differ.append(f"--tokenizer {given['tokenizer']} (the run has {kind})")
    if "vocab_size" in given and (kind == "char" or given["vocab_size"] != checkpoint.tokenizer.vocab_size):
        differ.append(
            f"--vocab-size {given['vocab_size']} (the run has {checkpoint.tokenizer.vocab_size} {kind} tokens)"
        )
    for what, before, _ in resume_differences(checkpoint, fields, config=preset or None):
        option = options[what]
        run = f"the run's model is {before}" if what == "config" else f"the run has {before}"
        differ.append(f"--{option.replace('_', '-')} {given[option]} ({run})")
    if differ:
        sys.exit(
            f"error: --resume continues {path} with the settings it was started with, and these differ: "
            f"{'; '.join(differ)}; leave them out (only --steps may grow, --device change), or choose another --out"
        )
    return replace(saved, max_steps=steps), config, meta["step"]


def complete(args: argparse.Namespace) -> None:
    """Complete a phrase with a shipped Shakespeare model (--model) or --checkpoint, printing as it goes."""
    from tinytorch.checkpoint import architecture_of, load_pretrained
    from tinytorch.config import get_device
    from tinytorch.generation import stream_text
    from tinytorch.modern import ARCHITECTURES

    source = args.model if args.checkpoint is None else _checkpoint_file(args.checkpoint)
    try:
        model, tokenizer = load_pretrained(source, get_device(args.device), ARCHITECTURES)
        cache = ARCHITECTURES[architecture_of(model, ARCHITECTURES)].kv_cache  # the cache of the model's kind
        if args.compile:
            model.compile()
        special = [token for token in getattr(tokenizer, "special_tokens", {}) if token in args.prompt]
        if special:
            sys.exit(
                f"error: the prompt contains {special[0]}, the marker that ends a document in the training text; "
                "complete does not take it in a prompt: leave it out (a new document starts after it anyway)"
            )
        pieces = stream_text(
            model,
            tokenizer,
            args.prompt,
            args.max_new_tokens,
            args.temperature,
            args.top_k,
            args.top_p,
            args.seed,
            cache,
        )
        if args.no_stream:
            print("".join(pieces))
        else:
            for piece in pieces:
                print(piece, end="", flush=True)
            print()
    except (ValueError, FileNotFoundError) as error:
        unknown = "not in the tokenizer's vocabulary" in str(error) and args.checkpoint is None
        hint = "; or use --model shakespeare-bpe, which reads any text" if unknown else ""
        sys.exit(f"error: {error}{hint}")
    except BrokenPipeError:  # the reader went away, e.g. `tinytorch complete ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes


def _checkpoint_file(given: str) -> str | Path:
    """--checkpoint's file: the path given, or in a run's folder (train's --out) its model.safetensors, else its
    checkpoint.safetensors, named on stderr. Exits with one line for an empty path or a folder without either."""
    if not given.strip():
        sys.exit("error: --checkpoint is empty; give a checkpoint file or a run's --out folder, or leave it out")
    folder = Path(given)
    if not folder.is_dir():
        return given
    for name in ("model.safetensors", "checkpoint.safetensors"):
        if (folder / name).is_file():
            print(f"using {folder / name}", file=sys.stderr)
            return folder / name
    sys.exit(
        f"error: {folder} is a folder without model.safetensors or checkpoint.safetensors; give a checkpoint file "
        "or the --out folder of a tinytorch train run"
    )


FINETUNE_TASKS = {  # what finetune can teach: the shipped model it adapts, and the recipe of the adapter that ships
    "reply": dict(base="shakespeare-bpe", steps=600, batch_size=16, lr=1e-3, rank=8, seed=0),
    "genre": dict(base="shakespeare", steps=250, batch_size=32, lr=3e-3, rank=4, seed=0),
}
FINETUNE_OPTIONS = ("steps", "batch_size", "lr", "rank", "seed")
HELDOUT_PAIRS = 256  # pairs of the held-out plays that a reply run measures its adapter on, at the end


class _Task:
    """One fine-tuning task for `finetune`: its model, its examples, one step, its file and its measure."""

    def __init__(self, task: str, settings: dict, resume: Path | None):
        import torch

        from tinytorch.bpe import END_OF_TEXT
        from tinytorch.checkpoint import load_pretrained
        from tinytorch.data import load_plays
        from tinytorch.finetune import (
            GenreClassifier,
            add_lora,
            add_reply_tokens,
            encode_pair,
            passages,
            read_adapter,
            read_classifier,
            split_pairs,
            split_plays,
            train_new_rows,
        )

        self.task, self.base_name = task, FINETUNE_TASKS[task]["base"]
        self.base, tokenizer = load_pretrained(self.base_name)
        if task == "reply":
            if resume is not None:
                self.model, self.tokenizer = read_adapter(resume, self.base, tokenizer)  # refuses another base's
            else:
                self.model, self.tokenizer = add_reply_tokens(self.base, tokenizer)
                torch.manual_seed(settings["seed"])  # the adapters' A
                add_lora(self.model, settings["rank"], 2 * settings["rank"])
            train_new_rows(self.model, self.tokenizer.special_tokens[END_OF_TEXT])  # END's row and the new two
            train, heldout = ([encode_pair(self.tokenizer, s, r) for s, r in pairs] for pairs in split_pairs())
            chosen = torch.randperm(len(heldout), generator=torch.Generator().manual_seed(0))[:HELDOUT_PAIRS]
            self.train, self.heldout = train, [heldout[i] for i in chosen.tolist()]
            self.what = f"{len(train):,} pairs of the training plays"
        else:
            if resume is not None:
                self.model = read_classifier(resume, self.base)
            else:
                torch.manual_seed(settings["seed"])  # the adapters' A and the head
                self.model = GenreClassifier(add_lora(copy.deepcopy(self.base), settings["rank"], 2 * settings["rank"]))
            plays, (train_genres, heldout_genres) = load_plays(), split_plays()
            encode = tokenizer.encode
            texts, self.labels = passages(plays, train_genres, 1000, 128, seed=0)  # chapter 12's study
            self.inputs = torch.tensor([encode(text) for text in texts])  # (N, 128)
            texts, self.heldout_labels = passages(plays, heldout_genres, 250, 128, seed=1)
            self.heldout_inputs = torch.tensor([encode(text) for text in texts])
            self.train = self.labels  # what the batches index
            self.what = f"{len(self.labels):,} passages of the training plays"

    def optimizer(self, lr: float):
        from tinytorch.finetune import reply_optimizer

        return reply_optimizer(self.model, lr)  # AdamW on what trains; no weight decay

    def step(self, optimizer, batch) -> float:
        from tinytorch.finetune import classify_step, reply_step

        if self.task == "reply":
            return reply_step(self.model, optimizer, [self.train[j] for j in batch.tolist()])
        return classify_step(self.model, optimizer, self.inputs[batch], self.labels[batch])

    def save(self, path: Path, optimizer, meta: dict) -> None:
        from tinytorch.finetune import save_adapter, save_classifier

        if self.task == "reply":
            save_adapter(path, self.model, self.tokenizer, self.base, self.base_name, optimizer, meta)
        else:
            save_classifier(path, self.model, self.base, self.base_name, optimizer, meta)

    def measure(self) -> str:
        from tinytorch.finetune import genre_accuracy, reply_loss

        if self.task == "reply":
            loss = reply_loss(self.model, self.heldout)
            return f"reply loss {loss:.3f} on {len(self.heldout)} pairs of the held-out plays"
        accuracy = genre_accuracy(self.model, self.heldout_inputs, self.heldout_labels)
        return f"accuracy {accuracy:.1%} on {len(self.heldout_labels):,} passages of the held-out plays"


def finetune(args: argparse.Namespace) -> None:
    """Train a LoRA adapter (chapter 12): one that replies, or a genre classifier; Ctrl-C saves, --resume goes on."""
    from safetensors import safe_open

    from tinytorch.checkpoint import load_optimizer_state, remove_leftovers
    from tinytorch.finetune import shuffled_batches

    began = time.perf_counter()
    folder = Path(args.out)
    out, adapter = folder / "checkpoint.safetensors", folder / "adapter.safetensors"
    given = {name: getattr(args, name) for name in FINETUNE_OPTIONS if getattr(args, name) is not None}
    if args.resume and (given.keys() - {"steps"} or args.task is not None):
        chosen = [f"--{name.replace('_', '-')}" for name in sorted(given.keys() - {"steps"})]
        chosen += ["--task"] if args.task is not None else []
        sys.exit(
            f"error: --resume continues the run with its own settings; {', '.join(chosen)} cannot be given with it"
        )
    lock = _own_folder(folder)
    terminate = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM acts as Ctrl-C: save, then stop
    step = 0
    try:
        for path in (out, adapter):
            remove_leftovers(path)
        if args.resume:
            if not out.exists():
                sys.exit(f"error: --resume given but there is no checkpoint at {out}")
            with safe_open(out, framework="pt") as f:
                header = json.loads(f.metadata()["tinytorch"])
                saved = {key: f.get_tensor(key) for key in f.keys() if key.startswith("optimizer.")}
            settings, step, task = {**header["settings"], **given}, header["step"], header.get("task", "reply")
            if settings["steps"] <= step:
                sys.exit(f"error: {out} is at step {step} of {settings['steps']}; give more --steps to go on")
        else:
            if out.exists() or adapter.exists():
                sys.exit(f"error: {folder} holds a finetune run; pass --resume to continue it, or choose another --out")
            task = args.task or "reply"
            settings = {**{k: FINETUNE_TASKS[task][k] for k in FINETUNE_OPTIONS}, **given}
        job = _Task(task, settings, out if args.resume else None)
        trained = sum(p.numel() for p in job.model.parameters() if p.requires_grad)  # float32, AdamW's two averages
        _check_space(folder, 3 * 4 * trained + 100_000, 4 * trained + 100_000, args.resume)
        optimizer = job.optimizer(settings["lr"])
        if args.resume:
            try:
                load_optimizer_state(optimizer, saved, header["param_groups"])  # as train's --resume (appendix 09)
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
                raise ValueError(f"{out} cannot be resumed: its optimizer state is damaged ({error})") from None
        deadline = None if args.minutes is None else began + 60 * args.minutes
        what = (
            f"resuming {out} at step {step}"
            if args.resume
            else f"{task}: LoRA rank {settings['rank']} on {job.base_name}"
        )
        print(f"{what}: {job.what}; {settings}")
        job.model.train()
        losses = []
        try:
            batches = shuffled_batches(len(job.train), settings["batch_size"], settings["steps"], settings["seed"])
            for i, batch in enumerate(batches):
                if i < step:
                    continue  # trained on before the run was resumed: the same batches in the same order
                losses.append(job.step(optimizer, batch))
                step = i + 1
                if step % 50 == 0 or step == settings["steps"]:
                    print(f"step {step}: loss {sum(losses[-50:]) / len(losses[-50:]):.3f}", flush=True)
                    job.save(out, optimizer, {"step": step, "settings": settings})
                if deadline is not None and time.perf_counter() >= deadline:
                    break
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM through _terminate
            job.save(out, optimizer, {"step": step, "settings": settings})
            print(
                f"stopped at step {step}; resume with `tinytorch finetune --resume --out {shlex.quote(args.out)}`",
                file=sys.stderr,
            )
            sys.exit(128 + (signal.SIGTERM if isinstance(stop, _Terminated) else signal.SIGINT))
        job.save(out, optimizer, {"step": step, "settings": settings})
        job.save(adapter, None, {"step": step, "settings": settings})
        use = "reply 'To be, or not to be'" if task == "reply" else "classify 'Now is the winter of our discontent'"
        print(
            f"step {step}: {job.measure()}; {(time.perf_counter() - began) / 60:.2f} minutes; saved {adapter} (use it: "
            f"tinytorch {use} --adapter {shlex.quote(str(adapter))})"
        )
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    finally:
        signal.signal(signal.SIGTERM, terminate)
        lock.release()


def reply(args: argparse.Namespace) -> None:
    """Reply to a line with shakespeare-bpe and a reply adapter (the shipped one, or --adapter)."""
    from tinytorch.checkpoint import load_pretrained
    from tinytorch.finetune import REPLY_ADAPTER, load_adapter
    from tinytorch.finetune import reply as write_reply

    try:
        base, tokenizer = load_pretrained(FINETUNE_TASKS["reply"]["base"])
        model, grown = load_adapter(args.adapter or REPLY_ADAPTER, base, tokenizer)
        text = write_reply(model, grown, args.line, args.max_new_tokens, args.temperature, args.top_k, args.seed)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(text)


def classify(args: argparse.Namespace) -> None:
    """Say which kind of play a passage reads like, with shakespeare and a genre adapter (the shipped one)."""
    import torch

    from tinytorch.checkpoint import load_pretrained
    from tinytorch.finetune import GENRE_ADAPTER, GENRES, load_classifier

    try:
        base, tokenizer = load_pretrained(FINETUNE_TASKS["genre"]["base"])
        classifier = load_classifier(args.adapter or GENRE_ADAPTER, base)
        ids = tokenizer.encode(args.passage)  # characters the plays never use: a one-line error
        if not ids or len(ids) > base.config.block_size:
            raise ValueError(
                f"the passage has {len(ids)} characters; the classifier reads 1 to {base.config.block_size} (it was "
                "trained on passages of 128)"
            )
        with torch.no_grad():
            probs = classifier(torch.tensor([ids])).softmax(dim=-1)[0]  # (n_classes,)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    for p, genre in sorted(zip(probs.tolist(), GENRES, strict=True), reverse=True):
        print(f"{genre:10s} {p:6.1%}")


def workbook(args: argparse.Namespace) -> None:
    """Write the learner's workbook: every chapter (or --chapter) with the pieces to write as stubs."""
    try:
        import tinytorch.workbook
        from tinytorch.workbook import WorkbookError, make_workbook, stubs
    except ImportError as error:  # nbformat comes with the dev extra
        sys.exit(f"error: {error.name} is missing; install the dev extra: pip install -e '.[dev]'")
    try:
        paths = make_workbook(args.dir, args.chapter, tinytorch.workbook.BOOK)  # BOOK read now: tests replace it
    except WorkbookError as error:
        sys.exit(f"error: {error}")
    for path in paths:
        count = len(stubs(path))
        print(f"{path}: {count} piece{'' if count == 1 else 's'} to write")
    where = "" if Path(args.dir) == Path("workbook") else f" --dir {args.dir}"
    print(f"start: jupyter lab {Path(args.dir)}/")
    print(f"check your work: tinytorch check{where} (one chapter: tinytorch check 03{where})")


def check(args: argparse.Namespace) -> None:
    """Run the workbook's chapters in fresh kernels; print each piece's state and a table; exit 0 if all are built."""
    try:
        import nbclient  # noqa: F401  (runs the notebooks; comes with the dev extra)

        from tinytorch.checks import MILESTONE
        from tinytorch.workbook import WorkbookError, chapters_in, check_chapters
    except ImportError as error:
        sys.exit(f"error: {error.name} is missing; install the dev extra: pip install -e '.[dev]'")
    try:
        paths = chapters_in(args.dir, [args.chapter] if args.chapter else None)
    except WorkbookError as error:
        sys.exit(f"error: {error}")
    if args.jobs < 1:
        sys.exit(f"error: --jobs must be at least 1, got {args.jobs}")
    rows, milestones = [], []
    checking = iter(check_chapters(paths, args.jobs))
    for path in paths:
        try:
            checked = next(checking)
        except Exception as error:  # a worker process that died (--jobs), a kernel that could not be started...
            first = (str(error).strip().splitlines() or [""])[0][:200]
            sys.exit(
                f"error: checking {path.stem} stopped ({type(error).__name__}: {first}); run tinytorch check again, "
                "with --jobs 1 if the machine is busy"
            )
        print(checked.chapter, flush=True)
        for result in checked.results:
            print(f"  {result.status:<8} {result.name}" + (f": {result.message}" if result.message else ""))
        for error in checked.errors:
            print(f"  error    {error}")
        pieces = [r for r in checked.results if not r.name.startswith(MILESTONE)]
        milestones += [r for r in checked.results if r.name.startswith(MILESTONE)]
        counts = [sum(r.status == status for r in pieces) for status in ("built", "not yet", "wrong")]
        rows.append((checked.chapter, *counts, len(pieces)))
    rows.append(("total", *(sum(row[i] for row in rows) for i in range(1, 5))))
    width = max(len(row[0]) for row in rows)
    print()
    print(f"{'chapter':<{width}}  built  not yet  wrong  pieces")
    for name, built, not_yet, wrong, count in rows:
        print(f"{name:<{width}}  {built:>5}  {not_yet:>7}  {wrong:>5}  {count:>6}")
    for result in milestones:  # the learner's own model doing the course's job: rows of their own, last
        print(f"milestone: {result.name[len(MILESTONE) :]}  {result.status}")
    sys.exit(0 if rows[-1][1] == rows[-1][4] and all(r.status == "built" for r in milestones) else 1)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like tinytorch's own: `error: argument --steps: ...`."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _option(parse, expected: str, check):
    """An argparse type: text that `parse` (int or float) reads and `check` (one of tinytorch.validation's, the
    package's own checks) accepts; argparse's error says `expected`."""

    def option(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        try:
            check(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}") from None
        return value

    return option


def _integer(low: int):
    """An argparse type: an int >= low."""
    return _option(int, f"an integer >= {low}", lambda value: check_int("", value, low))


def _number(expected: str, **bounds):
    """An argparse type: a finite float within check_number's bounds (low, low_ok, high), described as `expected`."""
    return _option(float, expected, lambda value: check_number("", value, **bounds))


def _exponent(value: float) -> str:
    """A number as --help writes it: 2e-3 (where Python writes 0.002)."""
    mantissa, exponent = f"{value:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


SEED = _option(int, f"an integer in [0, {2**63})", check_seed)
POSITIVE = _number("a finite number > 0", low=0, low_ok=False)


class _Version(argparse.Action):
    """--version, which imports torch only when it is asked for (--help and the rest of the parsing do not)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())  # to stdout, as argparse's own version action does
        parser.exit()


def _version() -> str:
    """`tinytorch --version`: this package's version, and the torch and Python it runs on."""
    from importlib.metadata import version

    import torch

    return f"tinytorch {version('tinytorch')} (torch {torch.__version__}, Python {sys.version.split()[0]})"


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    """--temperature and --top-k, as complete and reply take them."""
    p.add_argument(
        "--temperature",
        type=_number("a finite number >= 0", low=0),
        default=0.8,
        help="0 = greedy; higher = more surprising (default: 0.8)",
    )
    p.add_argument("--top-k", type=_integer(1), default=None, help="sample only from the k most likely tokens")


def _add_device_options(p: argparse.ArgumentParser) -> None:
    """--device and --compile, which `train` and `complete` both take."""
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda... (default: auto)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the model with torch.compile: faster on a GPU, after a slow start while it compiles",
    )


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog="tinytorch", description="A small GPT, built from scratch.")
    parser.add_argument("--version", action=_Version, help="show the versions of tinytorch, torch and Python and exit")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("preview", help="run chapter 00's preview: GPT()(torch.randint(0, 100, (1, 10)))")
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default: 0)")
    p.set_defaults(run=preview)

    p = commands.add_parser(
        "train",
        help="train a GPT on Shakespeare's plays",
        description="Train a GPT on Shakespeare's plays (validation: Othello, Richard II, The Tempest, Twelfth "
        "Night). Saves OUT/checkpoint.safetensors (to --resume) at every evaluation and on Ctrl-C, and "
        "OUT/model.safetensors (float16 weights for `tinytorch complete --checkpoint`) at the end. A run owns "
        "its OUT: a second run there, or a new run over an earlier one's files, is refused. Stops if the loss "
        "becomes nan or inf, keeping the last good checkpoint. Runs under torchrun too.",
    )
    p.add_argument("--preset", help="model preset: tiny, shakespeare, gpt2 (default: shakespeare)")
    p.add_argument(
        "--arch",
        choices=ARCH_NAMES,
        help="the model: gpt2 (chapter 05's GPT: LayerNorm, learned positions, GELU MLP, tied head) or llama "
        "(chapter 11's ModernGPT of the preset's sizes: RMSNorm, rotary positions, SwiGLU, untied head) "
        "(default: gpt2)",
    )
    p.add_argument("--steps", type=_integer(1), help=f"optimizer steps (default: {DEFAULT.max_steps})")
    p.add_argument(
        "--minutes",
        type=POSITIVE,
        help="train for this much wall time instead of --steps: measures this machine's pace, then chooses the "
        "model's shape, batch, learning rate and steps for the budget from the scaling study (appendix 10)",
    )
    p.add_argument(
        "--batch-size", type=_integer(1), help=f"sequences per micro-batch and process (default: {DEFAULT.batch_size})"
    )
    p.add_argument("--grad-accum", type=_integer(1), help=f"micro-batches per step (default: {DEFAULT.grad_accum})")
    p.add_argument("--lr", type=POSITIVE, help=f"peak learning rate (default: {_exponent(DEFAULT.lr)})")
    p.add_argument("--min-lr", type=POSITIVE, help="final learning rate (default: lr / 10)")
    p.add_argument(
        "--optimizer",
        choices=["adamw", "muon"],
        help="adamw: AdamW on every weight; muon: Muon (chapter 11) on the blocks' weight matrices and AdamW (--lr) "
        "on the embeddings, the output layer and the norms' gains, as the NanoGPT speedrun (default: adamw)",
    )
    p.add_argument(
        "--muon-lr",
        type=POSITIVE,
        help=f"Muon's peak learning rate, with --optimizer muon; the schedule scales it as --lr (default: {MUON_LR:g})",
    )
    p.add_argument("--warmup", type=_integer(0), help=f"warmup steps (default: {DEFAULT.warmup_steps})")
    p.add_argument(
        "--eval-interval",
        type=_integer(1),
        help=f"steps between evaluations and saves (default: {DEFAULT.eval_interval})",
    )
    p.add_argument(
        "--eval-batches", type=_integer(1), help=f"fixed batches per evaluation (default: {DEFAULT.eval_batches})"
    )
    p.add_argument("--seed", type=SEED, help=f"random seed (default: {DEFAULT.seed})")
    p.add_argument(
        "--tokenizer",
        choices=["char", "bpe"],
        help="char: one token per character; bpe: byte-level BPE learned from the training plays (default: char)",
    )
    p.add_argument(
        "--vocab-size",
        type=_integer(257),
        help=f"BPE vocabulary: 256 bytes, merges, <|endoftext|> (default: {BPE_VOCAB_SIZE})",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        help="bfloat16: forward pass and loss under bfloat16 autocast, weights stay float32; for GPUs (a CPU without "
        f"bfloat16 units emulates it, many times slower) (default: {DEFAULT.dtype})",
    )
    _add_device_options(p)
    p.add_argument("--out", default="runs/shakespeare", help="output directory (default: runs/shakespeare)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its own settings; only --steps (more), --device and --compile may be "
        "given",
    )
    p.set_defaults(run=train)

    p = commands.add_parser(
        "complete",
        help="complete a phrase in Shakespeare's voice",
        description="Complete a phrase with a Shakespeare model that ships with tinytorch (or --checkpoint), "
        "streaming characters as they are sampled. Example: tinytorch complete 'ROMEO:' --seed 1",
    )
    p.add_argument(
        "prompt",
        help='the start of the text, e.g. "ROMEO:" (shakespeare knows only the characters of Shakespeare\'s '
        "plays; shakespeare-bpe and any model trained with --tokenizer bpe read any text)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=_integer(0),
        default=300,
        help="tokens to add: characters for shakespeare, subwords for shakespeare-bpe (default: 300)",
    )
    _add_sampling_options(p)
    p.add_argument(
        "--top-p",
        type=_number("a number in (0, 1]", low=0, low_ok=False, high=1),
        default=None,
        help="sample only from the most likely tokens adding up to p",
    )
    p.add_argument("--seed", type=SEED, default=None, help="random seed, for a repeatable completion")
    chosen = p.add_mutually_exclusive_group()
    chosen.add_argument(
        "--model",
        choices=SHIPPED_MODEL_NAMES,
        default="shakespeare",
        help="a shipped model: shakespeare (characters), shakespeare-bpe (subwords, reads any text) or "
        "shakespeare-modern (characters, trained with Muon: chapter 11) (default: shakespeare)",
    )
    chosen.add_argument("--checkpoint", default=None, help="a checkpoint from `tinytorch train` instead")
    _add_device_options(p)
    p.add_argument("--no-stream", action="store_true", help="print the whole text at the end instead of streaming")
    p.set_defaults(run=complete)

    p = commands.add_parser(
        "finetune",
        help="train an adapter: one that replies to a line, or a genre classifier (LoRA, chapter 12)",
        description="Fine-tune a shipped model with LoRA (chapter 12): --task reply (the default) teaches "
        "shakespeare-bpe to reply to a line, from pairs of a speech and the next speaker's reply in the training "
        "plays; --task genre teaches shakespeare to tell which kind of play a passage comes from. Writes "
        "OUT/adapter.safetensors (for tinytorch reply or classify --adapter) and OUT/checkpoint.safetensors (to "
        "resume); Ctrl-C saves and stops, --resume goes on. Example: tinytorch finetune --out runs/reply --minutes 2",
    )
    p.add_argument("--task", choices=tuple(FINETUNE_TASKS), default=None, help="reply or genre (default: reply)")
    p.add_argument("--out", default="runs/reply", help="output directory (default: runs/reply)")
    d, g = FINETUNE_TASKS["reply"], FINETUNE_TASKS["genre"]
    p.add_argument("--steps", type=_integer(1), help=f"steps (default: {d['steps']}; genre: {g['steps']})")
    p.add_argument("--minutes", type=POSITIVE, help="stop after this many minutes, saved, if --steps are not done")
    p.add_argument(
        "--batch-size",
        type=_integer(1),
        help=f"examples per step (default: {d['batch_size']}; genre: {g['batch_size']})",
    )
    p.add_argument(
        "--lr",
        type=POSITIVE,
        help=f"AdamW's learning rate (default: {_exponent(d['lr'])}; genre: {_exponent(g['lr'])})",
    )
    p.add_argument(
        "--rank", type=_integer(1), help=f"LoRA's rank r, alpha = 2r (default: {d['rank']}; genre: {g['rank']})"
    )
    p.add_argument("--seed", type=SEED, help=f"random seed: the adapters' start and the batches (default: {d['seed']})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out; only --steps (more) may be given")
    p.set_defaults(run=finetune)

    p = commands.add_parser(
        "reply",
        help="reply to a line in Shakespeare's voice (shakespeare-bpe with a reply adapter)",
        description="Reply to a line with shakespeare-bpe and the reply adapter that ships with tinytorch (or "
        "--adapter, from tinytorch finetune). Example: tinytorch reply 'To be, or not to be, that is the question:'",
    )
    p.add_argument("line", help="the line to reply to, any text")
    p.add_argument("--adapter", default=None, help="an adapter from tinytorch finetune (default: the shipped one)")
    p.add_argument("--max-new-tokens", type=_integer(1), default=120, help="longest reply, in subwords (default: 120)")
    _add_sampling_options(p)
    p.add_argument("--seed", type=SEED, default=None, help="random seed, for a repeatable reply")
    p.set_defaults(run=reply)

    p = commands.add_parser(
        "classify",
        help="say which kind of play a passage reads like (shakespeare with the shipped genre adapter)",
        description="Print how likely a passage (up to 128 characters of the plays' alphabet) comes from each kind of "
        "play, comedies, histories, romances or tragedies, by shakespeare with the genre adapter that ships with "
        "tinytorch (or --adapter, from tinytorch finetune --task genre). Example: tinytorch classify 'Now is the "
        "winter of our discontent'",
    )
    p.add_argument("passage", help="the passage, up to 128 characters")
    p.add_argument("--adapter", default=None, help="an adapter from finetune --task genre (default: the shipped one)")
    p.set_defaults(run=classify)

    p = commands.add_parser(
        "workbook",
        help="write your workbook: the chapters with the pieces for you to build as stubs",
        description="Write the learner's copy of every chapter (or --chapter): the pieces to build are stubs that "
        "raise NotImplementedError, their check cells say built, not yet or wrong. Refuses to overwrite a file "
        "with your work in it. Then open it with jupyter lab and check it with tinytorch check.",
    )
    p.add_argument("dir", nargs="?", default="workbook", help="where to write it (default: workbook)")
    p.add_argument(
        "--chapter",
        action="extend",
        nargs="+",
        help="only these chapters, e.g. 03 or attention (default: all); the others are left as they are",
    )
    p.set_defaults(run=workbook)

    p = commands.add_parser(
        "check",
        help="check your workbook: which pieces are built, not yet built or wrong",
        description="Run each chapter of your workbook (or CHAPTER) top to bottom in a fresh kernel, without "
        "changing it, and print every piece as built, not yet or wrong (with what is wrong), then a table. "
        "Exits with status 0 only when every piece checked is built.",
    )
    p.add_argument("chapter", nargs="?", default=None, help="one chapter, e.g. 03 or attention (default: all)")
    p.add_argument("--dir", default="workbook", help="the workbook's directory (default: workbook)")
    p.add_argument(
        "--jobs", type=int, default=1, help="chapters to run side by side, each on its share of the cores (default: 1)"
    )
    p.set_defaults(run=check)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, as other commands do (train says how to resume first)
        sys.exit(130)


if __name__ == "__main__":
    sys.exit(main())
