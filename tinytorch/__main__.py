"""The `tinytorch` command line: `preview` (chapter 00), `train` (chapter 06), `complete` (chapter 07), and for the
learner `workbook` (write the chapters with stubs to fill in) and `check` (run them and say what is built)."""

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path


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


def train(args: argparse.Namespace) -> None:
    """Train a GPT on Shakespeare's plays (chapter 06, appendix 09); works under torchrun too."""
    import torch
    import torch.distributed as dist

    from tinytorch import GPT, CharTokenizer, GPTConfig, count_parameters, get_device, set_seed
    from tinytorch.checkpoint import save_checkpoint
    from tinytorch.training import TrainConfig, run_meta, shakespeare
    from tinytorch.training import train as run_training

    out = Path(args.out) / "checkpoint.safetensors"
    if out.exists() and not args.resume:
        sys.exit(f"error: {out} exists; pass --resume to continue it, or choose another --out")
    if args.resume and not out.exists():
        sys.exit(f"error: --resume given but there is no checkpoint at {out}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = get_device(args.device)
    if world > 1:
        local_rank = int(os.environ["LOCAL_RANK"])
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        cfg = TrainConfig(
            max_steps=args.steps,
            batch_size=args.batch_size,
            grad_accum=args.grad_accum,
            lr=args.lr,
            min_lr=args.min_lr if args.min_lr is not None else args.lr / 10,
            warmup_steps=min(args.warmup, args.steps),
            eval_interval=args.eval_interval,
            eval_batches=args.eval_batches,
            seed=args.seed,
        )
        train_text, val_text = shakespeare()
        tokenizer = CharTokenizer.from_text(train_text + val_text)
        config = replace(GPTConfig.from_preset(args.preset), vocab_size=tokenizer.vocab_size)
        train_ids = torch.tensor(tokenizer.encode(train_text), dtype=torch.uint8)
        val_ids = torch.tensor(tokenizer.encode(val_text), dtype=torch.uint8)
        set_seed(args.seed)
        model = GPT(config).to(device)
        if rank == 0:
            print(f"{args.preset}: {count_parameters(model):,} parameters, {config}")
            print(f"data: {len(train_ids):,} training and {len(val_ids):,} validation characters; {cfg}")
        start = time.perf_counter()
        history = run_training(model, tokenizer, train_ids, val_ids, cfg, out=out, resume=args.resume)
        if rank == 0:
            weights = out.with_name("model.safetensors")  # for sampling: weights only, in float16
            meta = run_meta(cfg, history)
            save_checkpoint(weights, model, tokenizer, cfg.max_steps, meta=meta, dtype=torch.float16)
            last = history[-1]
            tokens = cfg.max_steps * cfg.grad_accum * cfg.batch_size * world * config.block_size
            print(
                f"step {last['step']}: train loss {last['train']:.4f}, val loss {last['val']:.4f}; "
                f"{tokens:,} tokens seen; this run took {time.perf_counter() - start:.0f} s; saved {out} and {weights}"
            )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def complete(args: argparse.Namespace) -> None:
    """Complete a phrase with the shipped Shakespeare model (or --checkpoint), printing as it goes."""
    from tinytorch.generation import load_pretrained, stream_text

    try:
        model, tokenizer = load_pretrained(args.checkpoint)
        pieces = stream_text(
            model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
        )
        if args.no_stream:
            print("".join(pieces))
        else:
            for piece in pieces:
                print(piece, end="", flush=True)
            print()
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    except BrokenPipeError:  # the reader went away, e.g. `tinytorch complete ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes


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

        from tinytorch.workbook import WorkbookError, chapters_in, check_chapters
    except ImportError as error:
        sys.exit(f"error: {error.name} is missing; install the dev extra: pip install -e '.[dev]'")
    try:
        paths = chapters_in(args.dir, [args.chapter] if args.chapter else None)
    except WorkbookError as error:
        sys.exit(f"error: {error}")
    if args.jobs < 1:
        sys.exit(f"error: --jobs must be at least 1, got {args.jobs}")
    rows = []
    for checked in check_chapters(paths, args.jobs):
        print(checked.chapter, flush=True)
        for result in checked.results:
            print(f"  {result.status:<8} {result.name}" + (f": {result.message}" if result.message else ""))
        for error in checked.errors:
            print(f"  error    {error}")
        counts = [sum(r.status == status for r in checked.results) for status in ("built", "not yet", "wrong")]
        rows.append((checked.chapter, *counts, len(checked.results)))
    rows.append(("total", *(sum(row[i] for row in rows) for i in range(1, 5))))
    width = max(len(row[0]) for row in rows)
    print()
    print(f"{'chapter':<{width}}  built  not yet  wrong  pieces")
    for name, built, not_yet, wrong, pieces in rows:
        print(f"{name:<{width}}  {built:>5}  {not_yet:>7}  {wrong:>5}  {pieces:>6}")
    sys.exit(0 if rows[-1][1] == rows[-1][4] else 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tinytorch", description="A small GPT, built from scratch.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("preview", help="run chapter 00's preview: GPT()(torch.randint(0, 100, (1, 10)))")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(run=preview)

    p = commands.add_parser(
        "train",
        help="train a GPT on Shakespeare's plays",
        description="Train a GPT on Shakespeare's plays (validation: Othello, Richard II, The Tempest, Twelfth "
        "Night). Saves OUT/checkpoint.safetensors (to --resume) at every evaluation and OUT/model.safetensors "
        "(float16 weights for `tinytorch complete --checkpoint`) at the end. Runs under torchrun too.",
    )
    p.add_argument(
        "--preset", default="shakespeare", help="model preset: tiny, shakespeare, gpt2 (default: shakespeare)"
    )
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps (default: 3000)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch and process (default: 8)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default: 1)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: 2e-3)")
    p.add_argument("--min-lr", type=float, default=None, help="final learning rate (default: lr / 10)")
    p.add_argument("--warmup", type=int, default=100, help="warmup steps (default: 100)")
    p.add_argument("--eval-interval", type=int, default=250, help="steps between evaluations and saves (default: 250)")
    p.add_argument("--eval-batches", type=int, default=20, help="fixed batches per evaluation (default: 20)")
    p.add_argument("--seed", type=int, default=1337, help="random seed (default: 1337)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda... (default: auto)")
    p.add_argument("--out", default="runs/shakespeare", help="output directory (default: runs/shakespeare)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.set_defaults(run=train)

    p = commands.add_parser(
        "complete",
        help="complete a phrase in Shakespeare's voice",
        description="Complete a phrase with the Shakespeare model that ships with tinytorch (or --checkpoint), "
        "streaming characters as they are sampled. Example: tinytorch complete 'ROMEO:' --seed 1",
    )
    p.add_argument("prompt", help='the start of the text, e.g. "ROMEO:" (characters from Shakespeare\'s plays)')
    p.add_argument("--max-new-tokens", type=int, default=300, help="characters to add (default: 300)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more surprising (default: 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample only from the k most likely characters")
    p.add_argument(
        "--top-p", type=float, default=None, help="sample only from the most likely characters adding up to p"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable completion")
    p.add_argument(
        "--checkpoint", default=None, help="a checkpoint from `tinytorch train` (default: the shipped model)"
    )
    p.add_argument("--no-stream", action="store_true", help="print the whole text at the end instead of streaming")
    p.set_defaults(run=complete)

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
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
