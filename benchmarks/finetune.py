"""Chapter 12's classifier study: which kind of play a passage of 128 characters comes from (comedies, histories,
romances, tragedies), trained on passages of the training plays and measured on passages of the four held-out plays,
one per genre. Majority class, a bag of characters, a linear probe on the frozen shipped model, full fine-tuning and
LoRA at ranks 4 and 16; three seeds each (the seed draws the new weights and the order of the batches; the passages
are the same in every run). Each finished run is appended to finetune.jsonl, one at a time under the CPU lock; a run
already there (same spec) is skipped, so a study resumes.

    python benchmarks/finetune.py classify     # the study, about 20 minutes on 2 cores
    python benchmarks/finetune.py reply        # the reply study (replies.jsonl), about 25 minutes
    python benchmarks/finetune.py --report     # finetune.md from both, and the chapter's CLASSIFY and REPLIES rows

The reply study: pairs of a speech and the next speaker's reply, in the template <|speech|> ... <|reply|> ...
<|endoftext|>; the shipped subword model grown by the two tokens, before any training and after full fine-tuning or
LoRA (rank 8), each trained with the loss on the reply only (masked) or on every token, three seeds; measured by the
loss per token of the replies (and their end token) of 1,000 pairs of the held-out plays.
"""

import argparse
import copy
import functools
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "finetune.jsonl"
REPLY_RESULTS = ROOT / "benchmarks" / "replies.jsonl"
SEEDS = (0, 1, 2)
DATA = dict(per_genre=1000, heldout_per_genre=250, length=128)  # passages: 4,000 to train on, 1,000 to test on
RECIPES = {  # steps of batch_size passages, AdamW at lr (chosen on seed 0 of a first probe, by the held-out accuracy
    # for want of a third set of plays: full 1e-4 and 1e-3 reached less than 3e-4, LoRA at 1e-2 collapsed to one genre)
    "majority": dict(steps=0, batch_size=0, lr=0.0),
    "bag": dict(steps=2000, batch_size=64, lr=1e-2),  # logistic regression on character counts
    "probe": dict(steps=2000, batch_size=64, lr=1e-2),  # a head on the frozen model's last hidden state
    "full": dict(steps=250, batch_size=32, lr=3e-4),  # every weight and the head
    "lora": dict(steps=250, batch_size=32, lr=3e-3),  # adapters of rank r, alpha = 2r, on every block matrix
}
RANKS = (4, 16)
SPEC_KEYS = {"method", "rank", "seed", "steps", "batch_size", "lr", "per_genre", "heldout_per_genre", "length"}


def classify_runs() -> list[dict]:
    """Every method and seed (majority once: it has no randomness); seeds outermost, so that a partial study has
    every method at its first seed."""
    methods = [("majority", 0), ("bag", 0), ("probe", 0), ("full", 0)] + [("lora", r) for r in RANKS]
    return [
        {"method": method, "rank": rank, "seed": seed, **RECIPES[method], **DATA}
        for seed in SEEDS
        for method, rank in methods
        if method != "majority" or seed == SEEDS[0]
    ]


def key(spec: dict) -> str:
    """A run's identity: its spec without its results."""
    return json.dumps({k: spec[k] for k in sorted(spec) if k in SPEC_KEYS | REPLY_KEYS}, sort_keys=True)


REPLY_RECIPES = {  # steps of batch_size pairs, AdamW at lr without weight decay (LoRA at 2e-3 on a first probe of one
    # seed, with <|endoftext|>'s row still frozen, sampled bytes that never occur in the plays; its rate was halved)
    "base": dict(steps=0, batch_size=0, lr=0.0),  # the shipped model grown by the two tokens, not trained
    "full": dict(steps=200, batch_size=16, lr=3e-4),
    "lora": dict(steps=200, batch_size=16, lr=1e-3),  # rank 8, alpha 16, on every block matrix; the template's rows
}
REPLY_RANK = 8
REPLY_DATA = dict(max_chars=300, heldout_pairs=1000)
REPLY_KEYS = {"method", "rank", "masked", "seed", "steps", "batch_size", "lr", "max_chars", "heldout_pairs"}


def reply_runs() -> list[dict]:
    """The base once; full fine-tuning and LoRA, each with the loss masked to the reply or on every token, three
    seeds, seeds outermost."""
    base = {"method": "base", "rank": 0, "masked": True, "seed": SEEDS[0], **REPLY_RECIPES["base"], **REPLY_DATA}
    return [base] + [
        {"method": method, "rank": rank, "masked": masked, "seed": seed, **REPLY_RECIPES[method], **REPLY_DATA}
        for seed in SEEDS
        for method, rank in (("full", 0), ("lora", REPLY_RANK))
        for masked in (True, False)
    ]


@dataclass
class Pairs:
    """The grown model and tokenizer, and the encoded pairs of the training plays and of the held-out plays."""

    base: torch.nn.Module  # the shipped subword model, as loaded
    model: torch.nn.Module  # grown by SPEECH and REPLY
    tokenizer: object
    train: list  # [(ids, learn)]
    heldout: list


@functools.cache
def load_pairs(max_chars: int, heldout_pairs: int) -> Pairs:
    """Every pair of the training plays; `heldout_pairs` pairs of the held-out plays drawn with seed 0."""
    from tinytorch.checkpoint import load_pretrained
    from tinytorch.finetune import add_reply_tokens, encode_pair, split_pairs

    base, tokenizer = load_pretrained("shakespeare-bpe")
    model, grown = add_reply_tokens(base, tokenizer)
    train, heldout = ([encode_pair(grown, s, r) for s, r in pairs] for pairs in split_pairs(max_chars))
    chosen = torch.randperm(len(heldout), generator=torch.Generator().manual_seed(0))[:heldout_pairs].tolist()
    return Pairs(base, model, grown, train, [heldout[i] for i in chosen])


def reply_study(spec: dict, data: Pairs) -> dict:
    """Fine-tune (or not) as spec says; the held-out replies' loss per token."""
    from tinytorch.bpe import END_OF_TEXT
    from tinytorch.finetune import add_lora, fit_replies, reply_loss, train_new_rows, trainable_parameters

    method, seed = spec["method"], spec["seed"]
    torch.manual_seed(seed)  # the adapters' A
    model = copy.deepcopy(data.model)
    began, losses, trainable = time.perf_counter(), [], 0
    if method != "base":
        if method == "lora":
            add_lora(model, spec["rank"], 2 * spec["rank"])
            before = trainable_parameters(model)
            first = data.tokenizer.special_tokens[END_OF_TEXT]
            train_new_rows(model, first)
            trainable = before + (model.config.vocab_size - first) * model.config.n_embd  # adapters, template's rows
        else:
            trainable = trainable_parameters(model)
        examples = data.train if spec["masked"] else [(ids, [True] * len(ids)) for ids, _ in data.train]
        losses = fit_replies(model, examples, spec["steps"], spec["batch_size"], spec["lr"], seed)
    train_minutes = (time.perf_counter() - began) / 60
    return {
        **spec,
        "reply_loss": reply_loss(model, data.heldout),
        "trainable": trainable,
        "train_minutes": train_minutes,
        "final_loss": statistics.mean(losses[-20:]) if losses else None,
    }


@dataclass
class Data:
    """The shipped model and the passages' ids and labels (an index in GENRES) on both sides of the split."""

    model: torch.nn.Module
    train_ids: torch.Tensor  # (N, T)
    train_labels: torch.Tensor  # (N,)
    heldout_ids: torch.Tensor  # (M, T)
    heldout_labels: torch.Tensor  # (M,)
    heldout_plays: tuple[str, ...]  # the held-out play of each genre, in GENRES' order


@functools.cache
def load_data(per_genre: int, heldout_per_genre: int, length: int) -> Data:
    """The course's split, as chapter 12 builds it: passages of the training plays (seed 0) and of the held-out
    plays (seed 1), encoded with the shipped model's tokenizer."""
    from tinytorch.checkpoint import load_pretrained
    from tinytorch.data import load_plays
    from tinytorch.finetune import GENRES, passages, split_plays

    model, tokenizer = load_pretrained("shakespeare")
    plays = load_plays()
    train, heldout = split_plays()
    train_texts, train_labels = passages(plays, train, per_genre, length, seed=0)
    heldout_texts, heldout_labels = passages(plays, heldout, heldout_per_genre, length, seed=1)
    return Data(
        model=model,
        train_ids=torch.tensor([tokenizer.encode(text) for text in train_texts]),
        train_labels=train_labels,
        heldout_ids=torch.tensor([tokenizer.encode(text) for text in heldout_texts]),
        heldout_labels=heldout_labels,
        heldout_plays=tuple(next(name for name, g in heldout.items() if g == genre) for genre in GENRES),
    )


@torch.no_grad()
def features(model: torch.nn.Module, ids: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The frozen model's last hidden state of each passage: (N, T) -> (N, C), in batches."""
    from tinytorch.finetune import last_hidden

    return torch.cat([last_hidden(model, ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)])


def classify(spec: dict, data: Data) -> dict:
    """Train spec's method on the training passages; its accuracy on the held-out passages, overall and per play."""
    from tinytorch.finetune import (
        GENRES,
        BagOfCharacters,
        GenreClassifier,
        add_lora,
        fit_classifier,
        predict,
        trainable_parameters,
    )

    method, seed = spec["method"], spec["seed"]
    torch.manual_seed(seed)  # the new weights: the head, the bag's layer, the adapters' A
    began = time.perf_counter()
    train_inputs, heldout_inputs = data.train_ids, data.heldout_ids
    if method == "majority":
        guess = int(data.train_labels.bincount().argmax())  # every genre has as many passages: the first
        predicted = torch.full_like(data.heldout_labels, guess)
        trainable = 0
    else:
        if method == "bag":
            classifier = BagOfCharacters(data.model.config.vocab_size, len(GENRES))
        elif method == "probe":  # the frozen model's vectors, once; then a linear layer on them
            train_inputs = features(data.model, data.train_ids)
            classifier = torch.nn.Linear(data.model.config.n_embd, len(GENRES))
        elif method == "full":
            classifier = GenreClassifier(copy.deepcopy(data.model), len(GENRES))
        elif method == "lora":
            adapted = add_lora(copy.deepcopy(data.model), spec["rank"], 2 * spec["rank"])
            classifier = GenreClassifier(adapted, len(GENRES))
        else:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(RECIPES)}")
        trainable = trainable_parameters(classifier)
        losses = fit_classifier(
            classifier, train_inputs, data.train_labels, spec["steps"], spec["batch_size"], spec["lr"], seed
        )
    train_minutes = (time.perf_counter() - began) / 60  # features and training; the evaluation not counted
    if method == "probe":
        heldout_inputs = features(data.model, data.heldout_ids)
    if method != "majority":
        predicted = predict(classifier, heldout_inputs)
    right = predicted == data.heldout_labels
    per_play = {
        play: right[data.heldout_labels == label].float().mean().item() for label, play in enumerate(data.heldout_plays)
    }
    return {
        **spec,
        "accuracy": right.float().mean().item(),
        "per_play": per_play,
        "trainable": trainable,
        "train_minutes": train_minutes,
        "final_loss": statistics.mean(losses[-20:]) if method != "majority" else None,
    }


def run(spec: dict, train_ids, val_ids, tokenizer) -> dict:
    """scaling.run_each's signature: the character ids it passes are not used (the runs read passages or pairs)."""
    if "masked" in spec:
        return reply_study(spec, load_pairs(spec["max_chars"], spec["heldout_pairs"]))
    return classify(spec, load_data(spec["per_genre"], spec["heldout_per_genre"], spec["length"]))


METHODS = {  # method, rank -> its name in the tables
    ("majority", 0): "majority class",
    ("bag", 0): "bag of characters",
    ("probe", 0): "linear probe (frozen model)",
    ("full", 0): "full fine-tuning",
    **{("lora", r): f"LoRA, rank {r}" for r in RANKS},
}


def report() -> None:
    """finetune.md: each method's accuracy on the held-out passages (mean, min-max, each seed), per held-out play,
    trainable parameters and training minutes; and the rows of the chapter's CLASSIFY literal."""
    from run import machine

    runs = finished()
    groups = {}
    for r in runs:
        groups.setdefault((r["method"], r["rank"]), []).append(r)
    plays = list(runs[0]["per_play"])
    lines = [
        f"Machine: {machine()}. Command: `python benchmarks/finetune.py classify`, then `python benchmarks/finetune.py "
        "--report`.",
        "",
        f"**Which kind of play?** Passages of {DATA['length']} characters: {DATA['per_genre']:,} per genre from the "
        f"training plays of four genres (comedies, histories, romances, tragedies), {DATA['heldout_per_genre']} per "
        "genre from the held-out plays, one play per genre. Accuracy on the held-out passages (chance: 25%); the seed "
        "draws the new weights and the batches' order. Minutes of training (the probe's include computing the frozen "
        "model's vectors), one run at a time; the evaluation not counted.",
        "",
        "| method | trainable parameters | seeds | accuracy, mean | min-max | each seed | "
        + " | ".join(plays)
        + " | minutes, mean |",
        "|---|---|---|---|---|---|" + "---|" * len(plays) + "---|",
    ]
    for (method, rank), name in METHODS.items():
        rs = groups.get((method, rank), [])
        if not rs:
            continue
        accs = [r["accuracy"] for r in rs]
        per_play = " | ".join(f"{statistics.mean(r['per_play'][p] for r in rs):.1%}" for p in plays)
        lines.append(
            f"| {name} | {rs[0]['trainable']:,} | {len(rs)} | **{statistics.mean(accs):.1%}** "
            f"| {min(accs):.1%}-{max(accs):.1%} | {', '.join(f'{a:.1%}' for a in accs)} | {per_play} "
            f"| {statistics.mean(r['train_minutes'] for r in rs):.2f} |"
        )
    replies = finished(REPLY_RESULTS) if REPLY_RESULTS.exists() else []
    if replies:
        lines += reply_table(replies)
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "finetune.md").write_text(text)
    print(text)
    print("CLASSIFY = [  # (method, rank, seed, accuracy, per held-out play, trainable, minutes, loss): finetune.jsonl")
    for row in literal(runs):
        print(f"    {row!r},")
    print("]")
    if replies:
        print("REPLIES = [  # (method, rank, masked, seed, reply loss, trainable, minutes): benchmarks/replies.jsonl")
        for row in reply_literal(replies):
            print(f"    {row!r},")
        print("]")


REPLY_METHODS = {  # method, rank, masked -> its name in the tables
    ("base", 0, True): "shakespeare-bpe, not fine-tuned",
    ("full", 0, True): "full fine-tuning, loss on the reply",
    ("full", 0, False): "full fine-tuning, loss on every token",
    ("lora", REPLY_RANK, True): f"LoRA rank {REPLY_RANK}, loss on the reply",
    ("lora", REPLY_RANK, False): f"LoRA rank {REPLY_RANK}, loss on every token",
}


def reply_table(runs: list[dict]) -> list[str]:
    """finetune.md's lines for the reply study: each model's loss on the held-out replies."""
    spec = runs[0]
    lines = [
        "",
        f"**A model that replies.** Pairs of a speech and the next speaker's reply (each at most {spec['max_chars']} "
        f"characters), in the template; {spec['heldout_pairs']:,} pairs of the held-out plays measure the loss per "
        "token of the reply and its end token (nats). Fine-tuning: "
        f"{REPLY_RECIPES['full']['steps']} steps of {REPLY_RECIPES['full']['batch_size']} pairs of the training plays, "
        f"full at lr {REPLY_RECIPES['full']['lr']:g}, LoRA (rank {REPLY_RANK}, alpha {2 * REPLY_RANK}, and the rows of "
        f"the template's three tokens) at lr {REPLY_RECIPES['lora']['lr']:g}; the seed draws the adapters' A and the "
        "batches.",
        "",
        "| model | trainable parameters | seeds | reply loss, mean | min-max | each seed | minutes, mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, rank, masked), name in REPLY_METHODS.items():
        rs = [r for r in runs if (r["method"], r["rank"], r["masked"]) == (method, rank, masked)]
        if rs:
            losses = [r["reply_loss"] for r in rs]
            lines.append(
                f"| {name} | {rs[0]['trainable']:,} | {len(rs)} | **{statistics.mean(losses):.3f}** "
                f"| {min(losses):.3f}-{max(losses):.3f} | {', '.join(f'{x:.3f}' for x in losses)} "
                f"| {statistics.mean(r['train_minutes'] for r in rs):.2f} |"
            )
    return lines


def reply_literal(runs: list[dict]) -> list[tuple]:
    """The chapter's REPLIES rows: (method, rank, masked, seed, reply loss, trainable, minutes), in table order."""
    ordered = sorted(runs, key=lambda r: (list(REPLY_METHODS).index((r["method"], r["rank"], r["masked"])), r["seed"]))
    return [
        (
            r["method"],
            r["rank"],
            r["masked"],
            r["seed"],
            round(r["reply_loss"], 4),
            r["trainable"],
            round(r["train_minutes"], 2),
        )
        for r in ordered
    ]


def literal(runs: list[dict]) -> list[tuple]:
    """The chapter's CLASSIFY rows: (method, rank, seed, accuracy, accuracy per held-out play in GENRES' order,
    trainable parameters, training minutes, training loss of the last 20 steps), rounded, in the tables' order."""
    ordered = sorted(runs, key=lambda r: (list(METHODS).index((r["method"], r["rank"])), r["seed"]))
    return [
        (
            r["method"],
            r["rank"],
            r["seed"],
            round(r["accuracy"], 3),
            tuple(round(value, 3) for value in r["per_play"].values()),
            r["trainable"],
            round(r["train_minutes"], 2),
            None if r["final_loss"] is None else round(r["final_loss"], 3),
        )
        for r in ordered
    ]


def finished(results: Path = RESULTS) -> list[dict]:
    """The finished runs of a study's file (finetune.jsonl by default)."""
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", choices=["classify", "reply"], help="the study to run")
    parser.add_argument("--report", action="store_true", help="write finetune.md from finetune.jsonl")
    args = parser.parse_args()
    if args.report:
        report()
        return
    if args.study is None:
        parser.error("give 'classify', 'reply' or --report")
    from scaling import run_each

    specs, results = (classify_runs(), RESULTS) if args.study == "classify" else (reply_runs(), REPLY_RESULTS)
    done = {key(r) for r in finished(results)} if results.exists() else set()
    run_each([spec for spec in specs if key(spec) not in done], run, results)  # a study resumes


if __name__ == "__main__":
    main()
