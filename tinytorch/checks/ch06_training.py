"""The checks of notebooks/06_training.ipynb: a reference and a verify function per piece and exercise."""

import copy
import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import torch
from torch import nn

from tinytorch.checks import MILESTONE, add_hints, piece
from tinytorch.checks.helpers import (
    Wrong,
    _close,
    _describe,
    _generator,
    _gpt,
    _kind,
    _num,
    _number,
    _randint,
    _same_class,
    _shape,
)
from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT, next_token_loss
from tinytorch.data import convert_play, play_paths, shakespeare
from tinytorch.training import TrainConfig, fixed_batches, get_batch, get_lr, make_optimizer, train, train_step
from tinytorch.training import evaluate as evaluate_model


def _step_on_batch(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, grad_clip: float
) -> float:
    """One optimizer step on the batch (x, y); returns the loss before the step, a float."""
    return train_step(model, optimizer, [(x, y)], grad_clip)[0].item()


def _lr_at(step: int, warmup_steps: int, max_steps: int, lr: float, min_lr: float) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at max_steps."""
    return get_lr(step, TrainConfig(max_steps=max_steps, warmup_steps=warmup_steps, lr=lr, min_lr=min_lr))


def _windows(random_windows: Callable, ids: torch.Tensor, batch_size: int, block_size: int, seed: int) -> Any:
    """random_windows(ids, ...) with a seeded generator; an indexing error is a window that ran past the end."""
    try:
        return random_windows(ids.clone(), batch_size, block_size, _generator(seed))
    except (IndexError, RuntimeError) as error:
        if not any(text in str(error) for text in ("out of bounds", "equal size", "index")):
            raise
        raise Wrong(
            f"with {len(ids)} ids and block_size {block_size}, a window ran past the end: draw the starts with "
            "torch.randint(len(ids) - block_size, (batch_size,), generator=generator)"
        ) from None


@piece("random_windows", "06_training", "a random batch of (input, target) windows, targets shifted by one", get_batch)
def _verify_random_windows(random_windows: Callable) -> None:
    B, T = 4, 8
    ids = torch.arange(40, dtype=torch.uint8)  # token ids 0, 1, 2, ...: a window is a run of consecutive numbers
    out = _windows(random_windows, ids, B, T, 170)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Wrong(f"random_windows must return two tensors, (x, y); got {_kind(out)}")
    x, y = (_shape(t, (B, T), what=name) for t, name in zip(out, ("x", "y"), strict=True))
    for t, name in ((x, "x"), (y, "y")):
        if t.dtype != torch.int64:
            raise Wrong(f"{name} has dtype {t.dtype}, expected torch.int64: call .long(): embeddings need int64 ids")
    for b in range(B):
        if not torch.equal(x[b], torch.arange(int(x[b, 0]), int(x[b, 0]) + T)):
            raise Wrong(f"row {b} of x is not a window of ids: take ids[start : start + block_size]")
    if not torch.equal(y, x + 1):
        raise Wrong(
            "y must be x shifted left by one: the target of each input is the token after it, "
            "ids[start + 1 : start + block_size + 1]"
        )
    short = torch.arange(T + 2, dtype=torch.uint8)  # 10 ids: the only starts with a full window and target are 0 and 1
    for seed in (171, 172, 173):
        xs, ys = _windows(random_windows, short, 16, T, seed)
        if xs.shape != (16, T) or ys.shape != (16, T) or ys.max() > T + 1:
            raise Wrong(
                f"with {len(short)} ids and block_size {T}, a window ran past the end: draw the starts with "
                "torch.randint(len(ids) - block_size, (batch_size,), generator=generator)"
            )
    first, second = (_windows(random_windows, ids, B, T, 174) for _ in range(2))
    if not (torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])):
        raise Wrong(
            "two generators with the same seed gave different batches: "
            "draw the starts with torch.randint(..., generator=generator)"
        )
    if not torch.equal(x, get_batch(ids, B, T, _generator(170))[0]):
        raise Wrong(
            "the windows are not the ones torch.randint(len(ids) - block_size, (batch_size,), generator=generator) "
            "draws: draw the starts exactly so, and a seed gives the same batches as tinytorch's"
        )


@piece("lr_at", "06_training", "the learning rate at a step: linear warmup, then cosine decay", _lr_at)
def _verify_lr_at(lr_at: Callable) -> None:
    warmup, max_steps, lr, min_lr = 10, 100, 1e-3, 1e-4
    got = [_number(lr_at(step, warmup, max_steps, lr, min_lr), f"lr_at({step}, ...)") for step in range(max_steps + 1)]
    want = [_lr_at(step, warmup, max_steps, lr, min_lr) for step in range(max_steps + 1)]
    if got[0] == 0:
        raise Wrong(
            "at step 0 the rate is 0, so the first step does nothing: warm up with lr * (step + 1) / warmup_steps"
        )
    if _close(got[0], lr, 1e-6, 0.0):
        raise Wrong(
            f"there is no warmup: at step 0 the rate is {_num(got[0])}, expected {_num(want[0])}; "
            "for step < warmup_steps use lr * (step + 1) / warmup_steps"
        )
    for step in range(warmup):
        if not _close(got[step], want[step], 1e-6, 0.0):
            raise Wrong(
                f"in the warmup, at step {step} the rate should be {_num(want[step])}, got {_num(got[step])}: "
                "lr * (step + 1) / warmup_steps"
            )
    if not _close(got[max_steps], min_lr, 1e-6, 0.0):
        raise Wrong(
            f"at step max_steps = {max_steps} the rate should be min_lr = {min_lr:g}, got {_num(got[max_steps])}: "
            "the decay's progress is (step - warmup_steps) / (max_steps - warmup_steps)"
        )
    quarter = warmup + (max_steps - warmup) // 4
    linear = min_lr + (lr - min_lr) * (1 - (quarter - warmup) / (max_steps - warmup))
    if _close(got[quarter], linear, 1e-6, 0.0):
        raise Wrong(
            "the decay is linear; it must follow a cosine: "
            "min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)"
        )
    for step in range(max_steps + 1):
        if not _close(got[step], want[step], 1e-6, 0.0):
            raise Wrong(f"at step {step} the rate should be {_num(want[step])}, got {_num(got[step])}")
    for step in range(21):  # no warmup at all
        value = _number(lr_at(step, 0, 20, lr, min_lr), f"lr_at({step}, ...)")
        if not _close(value, _lr_at(step, 0, 20, lr, min_lr), 1e-6, 0.0):
            raise Wrong(
                f"with warmup_steps = 0, at step {step} the rate should be {_num(_lr_at(step, 0, 20, lr, min_lr))}, "
                f"got {_num(value)}"
            )


def _parameters_differ(model: nn.Module, expected: dict[str, torch.Tensor], atol: float = 1e-6) -> str | None:
    """The name of the first parameter of `model` that differs from `expected`, or None."""
    for name, param in model.named_parameters():
        if not torch.allclose(param.detach(), expected[name], atol=atol, rtol=1e-5):
            return name
    return None


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


@piece("step_on_batch", "06_training", "one training step: zero_grad, forward, backward, clip, step", _step_on_batch)
def _verify_step_on_batch(step_on_batch: Callable) -> None:
    base = _gpt(seed=180).train()
    batches = [(_randint(11, (2, 6), seed=181 + 2 * i), _randint(11, (2, 6), seed=182 + 2 * i)) for i in range(2)]
    grad_clip = 1.0

    def reference_runs(zero_grad: bool = True, clip: bool = True) -> tuple[list[float], list[dict], float]:
        """Two steps done right (or with one mistake): losses, weights after each step, first gradient norm."""
        model = copy.deepcopy(base)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses, weights, norms = [], [], []
        for x, y in batches:
            if zero_grad:
                optimizer.zero_grad(set_to_none=True)
            loss = next_token_loss(model(x), y)
            loss.backward()
            norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip if clip else math.inf)))
            optimizer.step()
            losses.append(loss.item())
            weights.append(_snapshot(model))
        return losses, weights, norms[0]

    model = copy.deepcopy(base)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # no momentum: a step is -lr * gradient
    start = _snapshot(model)
    losses, weights = [], []
    for x, y in batches:
        loss = step_on_batch(model, optimizer, x.clone(), y.clone(), grad_clip)
        if isinstance(loss, torch.Tensor):
            raise Wrong("return loss.item(), a float")
        losses.append(_number(loss, "the returned loss"))
        weights.append(_snapshot(model))
    ref_losses, ref_weights, norm = reference_runs()
    if not _close(losses[0], ref_losses[0]):
        raise Wrong(
            f"the returned loss {_num(losses[0], 4)} is not the batch's loss before the step, "
            f"{_num(ref_losses[0], 4)}: return loss.item() of the forward pass"
        )
    model.load_state_dict(weights[0], strict=False)
    if _parameters_differ(model, start) is None:
        raise Wrong("the weights did not change: call optimizer.step()")
    if _parameters_differ(model, ref_weights[0]) is not None:
        if _parameters_differ(model, reference_runs(clip=False)[1][0]) is None:
            raise Wrong(
                f"the gradient norm was {_num(norm, 2)} but grad_clip is {grad_clip}: "
                "clip with nn.utils.clip_grad_norm_ before optimizer.step()"
            )
        raise Wrong(f"after one step, {_parameters_differ(model, ref_weights[0])} differs from the reference's")
    model.load_state_dict(weights[1], strict=False)
    if _parameters_differ(model, ref_weights[1]) is not None:
        if _parameters_differ(model, reference_runs(zero_grad=False)[1][1]) is None:
            raise Wrong(
                "the second step used the first step's gradients too: call optimizer.zero_grad() before backward"
            )
        raise Wrong(f"after two steps, {_parameters_differ(model, ref_weights[1])} differs from the reference's")
    if not _close(losses[1], ref_losses[1]):
        raise Wrong(
            f"the second step returned {_num(losses[1], 4)}, expected the loss before it, {_num(ref_losses[1], 4)}"
        )


@piece(
    "evaluate_loss", "06_training", "the mean loss over fixed batches, in eval mode, without gradients", evaluate_model
)
def _verify_evaluate_loss(evaluate_loss: Callable) -> None:
    model = _gpt(seed=200, dropout=0.5).train()  # with dropout, training mode gives other numbers
    batches = [(_randint(11, (2, 6), seed=201 + 2 * i), _randint(11, (2, 6), seed=202 + 2 * i)) for i in range(2)]
    theirs = copy.deepcopy(model)
    calls = []  # (training mode, gradients on) at every forward call
    hook = theirs.register_forward_pre_hook(
        lambda module, args: calls.append((module.training, torch.is_grad_enabled()))
    )
    out = evaluate_loss(theirs, [(x.clone(), y.clone()) for x, y in batches])
    hook.remove()
    if any(training for training, _ in calls):
        raise Wrong("dropout was on: call model.eval() first")
    if not theirs.training:
        raise Wrong("put the model back in training mode afterwards: model.train(was_training)")
    if any(grad for _, grad in calls) or (isinstance(out, torch.Tensor) and out.requires_grad):
        raise Wrong("gradients were tracked: use torch.no_grad() around the evaluation")
    if isinstance(out, torch.Tensor):
        raise Wrong("return a float: loss.item()")
    got, expected = _number(out, "the mean loss"), evaluate_model(copy.deepcopy(model), batches)
    if not _close(got, expected):
        raise Wrong(
            f"the mean loss should be {_num(expected, 4)}, got {_num(got, 4)}: "
            "average next_token_loss(model(x), y) over the batches"
        )
    theirs = copy.deepcopy(model).eval()
    evaluate_loss(theirs, batches)
    if theirs.training:
        raise Wrong(
            "a model in eval mode came back in training mode: restore the mode it had, model.train(was_training)"
        )


def _train_loop(model: nn.Module, train_ids: torch.Tensor, val_ids: torch.Tensor, cfg: TrainConfig) -> list[dict]:
    """Train model in place for cfg.max_steps steps of one batch each; returns the evaluations."""
    return train(model, None, train_ids, val_ids, cfg, progress=False)


def _loop_with(model: nn.Module, train_ids, val_ids, cfg: TrainConfig, mistake: str = "") -> list[dict]:
    """The loop written out, right or with one typical mistake: what a learner's train_loop is compared with."""
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed if mistake != "unseeded" else cfg.seed + 99)
    T = model.config.block_size
    seeds = (cfg.seed + 2, cfg.seed + 1) if mistake == "swapped sets" else (cfg.seed + 1, cfg.seed + 2)
    eval_sets = {
        "train": fixed_batches(train_ids, cfg.eval_batches, cfg.batch_size, T, seed=seeds[0]),
        "val": fixed_batches(val_ids, cfg.eval_batches, cfg.batch_size, T, seed=seeds[1]),
    }
    history = []
    model.train()
    for step in range(cfg.max_steps):
        if mistake != "constant lr":
            at = step + 1 if mistake == "lr one step late" else step
            for group in optimizer.param_groups:
                group["lr"] = get_lr(at, cfg)
        x, y = get_batch(train_ids, cfg.batch_size, T, generator)
        if mistake != "no zero_grad":
            optimizer.zero_grad(set_to_none=True)
        next_token_loss(model(x), y).backward()
        if mistake != "no clipping":
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if (step + 1) % cfg.eval_interval == 0 or step + 1 == cfg.max_steps:
            if mistake == "dropout in evaluation":
                with torch.no_grad():
                    scores = {
                        k: sum(next_token_loss(model(x), y).item() for x, y in b) / len(b) for k, b in eval_sets.items()
                    }
            else:
                scores = {k: evaluate_model(model, b) for k, b in eval_sets.items()}
            history.append({"step": step + 1, **scores})
            if mistake == "left in eval mode":
                model.eval()
    return history


_LOOP_MISTAKES = {
    "constant lr": "set every param group's lr to lr_at(step, ...) before each step: the schedule never ran",
    "lr one step late": "the rate of step s is lr_at(s, ...), steps counted from 0: yours is one step ahead",
    "no zero_grad": "each step used the earlier steps' gradients too: zero the gradients before backward",
    "no clipping": "clip the gradient norm to cfg.grad_clip before each optimizer step",
    "dropout in evaluation": "evaluate in eval mode (dropout off), e.g. with your evaluate_loss",
    "left in eval mode": "after an evaluation, train in training mode again (dropout back on)",
    "unseeded": "draw the training batches from torch.Generator().manual_seed(cfg.seed)",
    "swapped sets": "the train set's fixed batches come from seed cfg.seed + 1, the val set's from cfg.seed + 2",
}


@piece(
    "train_loop",
    "06_training",
    "the training loop: schedule, batch, step and an evaluation every eval_interval steps, as train does it",
    _train_loop,
)
def _verify_train_loop(train_loop: Callable) -> None:
    data = _randint(11, (400,), seed=210).to(torch.uint8)
    train_ids, val_ids = data[:300], data[300:]
    cfg = TrainConfig(
        max_steps=10, batch_size=3, lr=3e-2, min_lr=3e-3, warmup_steps=3, eval_interval=4, eval_batches=2, grad_clip=0.5
    )  # grad_clip small enough that clipping acts
    call = "train_loop(model, train_ids, val_ids, cfg)"

    def run(loop: Callable, mistake: str | None = None) -> tuple[Any, nn.Module]:
        model = _gpt(seed=211, dropout=0.2).train()  # dropout: training and eval mode give other numbers
        torch.manual_seed(212)  # dropout's masks come from the global generator
        args = (model, train_ids.clone(), val_ids.clone(), cfg)
        return (loop(*args) if mistake is None else _loop_with(*args, mistake)), model

    out, model = run(train_loop)
    want, reference = run(_loop_with)
    if not isinstance(out, list) or not all(isinstance(r, dict) for r in out):
        raise Wrong(f"{call} must return the history, a list of {{'step', 'train', 'val'}} dicts; got {_kind(out)}")
    steps, want_steps = [r.get("step") for r in out], [r["step"] for r in want]
    if steps != want_steps:
        raise Wrong(
            f"with max_steps=10 and eval_interval=4 the evaluations come after steps {want_steps} (every "
            f"eval_interval steps, counted from 1, and after the last); yours are at {steps}"
        )
    for record in out:
        if set(record) != {"step", "train", "val"} or any(
            isinstance(record[k], torch.Tensor) for k in ("train", "val")
        ):
            raise Wrong(f"each record is {{'step': int, 'train': float, 'val': float}}; one is {_describe(record)}")
    if _same_history(out, want):
        if _parameters_differ(model, _snapshot(reference)) is None:
            return
        raise Wrong("the history is right but the model's final weights are not: train the model you were given")
    for mistake, fix in _LOOP_MISTAKES.items():
        if _same_history(out, run(_loop_with, mistake)[0]):
            raise Wrong(fix)
    first = next(i for i, (a, b) in enumerate(zip(out, want, strict=True)) if not _same_history([a], [b]))
    got, expected = out[first], want[first]
    raise Wrong(
        f"the evaluation after step {expected['step']} gave train {_num(got['train'], 4)}, val {_num(got['val'], 4)}; "
        f"train's loop gives {_num(expected['train'], 4)}, {_num(expected['val'], 4)}: use make_optimizer(model, cfg), "
        "a generator seeded with cfg.seed for random_windows, and fixed_batches seeded cfg.seed + 1 (train) and "
        "cfg.seed + 2 (val)"
    )


def _same_history(a: list[dict], b: list[dict]) -> bool:
    """Whether two histories of the same steps have the same train and val losses (to float rounding)."""
    return all(_close(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in ("train", "val"))


_MILESTONE_RUN = dict(max_steps=200, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=20, eval_interval=200)
_MILESTONE_MARGIN = 0.05  # nats: two runs of the same recipe whose float rounding differs end about this close


@piece(
    f"{MILESTONE}shakespeare_run",
    "06_training",
    "milestone: your train_loop trains your GPT (chapter 05) on the plays as well as train trains tinytorch's",
    _train_loop,
)
def _verify_milestone_shakespeare_run(train_loop: Callable) -> None:
    from tinytorch.checks import from_notebook  # the registry imports this module: import it when it is complete

    gpt_class = from_notebook("GPT")  # chapter 05's notebook, next to this one
    if inspect.unwrap(train_loop) is _train_loop or gpt_class is None:
        raise NotImplementedError("the milestone waits for your train_loop and your GPT (chapter 05)")
    _, train_ids, val_ids, config = _chapter06_data()
    cfg = TrainConfig(**_MILESTONE_RUN, eval_batches=4)
    torch.manual_seed(0)
    history = train_loop(gpt_class(config), train_ids, val_ids, cfg)
    if not isinstance(history, list) or not history or "val" not in history[-1]:
        raise Wrong("train_loop must return its history, the evaluations as {'step', 'train', 'val'} dicts")
    want = _milestone_reference(cfg)
    got = _number(history[-1]["val"], "your run's last val loss")
    if not abs(got - want) <= _MILESTONE_MARGIN:
        raise Wrong(
            f"after {cfg.max_steps} steps of chapter 06's recipe your GPT reached a val loss of {_num(got, 4)}, "
            f"tinytorch's {_num(want, 4)} with train: more than {_MILESTONE_MARGIN} apart"
        )


@functools.cache
def _milestone_reference(cfg: TrainConfig) -> float:
    """The last val loss of train on tinytorch's GPT with the milestone's recipe (one run per process)."""
    _, train_ids, val_ids, config = _chapter06_data()
    torch.manual_seed(0)
    return train(GPT(config), None, train_ids, val_ids, cfg, progress=False)[-1]["val"]


_PLAYS_VOCAB = GPTConfig.from_preset("shakespeare").vocab_size  # V = 76 characters in chapter 06's plays
_SHORT_RUN = {"steps": 40, "warmup_steps": 20}  # as exercise 1 of chapter 06 asks


@functools.cache
def _chapter06_data() -> tuple[CharTokenizer, torch.Tensor, torch.Tensor, GPTConfig]:
    """Chapter 06's tokenizer, training and validation ids, and demo config, rebuilt from the cached corpus."""
    train_text, val_text = shakespeare()
    tokenizer = CharTokenizer.from_text(train_text + val_text)
    train_ids, val_ids = (torch.tensor(tokenizer.encode(text), dtype=torch.uint8) for text in (train_text, val_text))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=96)
    return tokenizer, train_ids, val_ids, config


def _short_run(lr: float, warmup_steps: int, grad_clip: float | None) -> list[float]:
    """Chapter 06, exercise 1: 40 AdamW steps of a fresh GPT at peak rate lr, with optional warmup and clipping."""
    _, train_ids, _, config = _chapter06_data()
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(_SHORT_RUN["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
        x, y = get_batch(train_ids, 16, config.block_size, generator)
        loss = next_token_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(loss.item())
    return losses


def _one_play_run() -> list[dict]:
    """Chapter 06, exercise 2: 240 steps of a fresh GPT (width 64, context 32) on 3,000 characters of Hamlet."""
    tokenizer, _, val_ids, config = _chapter06_data()
    hamlet = convert_play(play_paths()["hamlet"].read_text(encoding="utf-8"))
    one_play = torch.tensor(tokenizer.encode(hamlet[:3000]), dtype=torch.uint8)
    cfg = TrainConfig(
        max_steps=240, batch_size=16, lr=3e-3, min_lr=3e-3, warmup_steps=20, eval_interval=40, eval_batches=4
    )
    torch.manual_seed(0)
    return train(GPT(replace(config, n_embd=64, block_size=32)), tokenizer, one_play, val_ids, cfg, progress=False)


def _accumulation_config() -> TrainConfig:
    """A TrainConfig with at most 16 windows per micro-batch and 64 per optimizer step."""
    return TrainConfig(batch_size=16, grad_accum=4)  # 4 micro-batches of 16 windows each step


def _losses(out: Any, call: str, steps: int) -> list[float]:
    """`out` as a list of floats if it is a list of `steps` numbers, else Wrong."""
    if not isinstance(out, (list, tuple)):
        raise Wrong(f"{call} must return the list of its {steps} losses, got {_kind(out)}")
    if len(out) != steps:
        raise Wrong(f"{call} returned {len(out)} losses, expected one per step, {steps}")
    for i, loss in enumerate(out):
        if isinstance(loss, torch.Tensor):
            raise Wrong(f"loss {i} of {call} is a tensor: append loss.item(), a float")
    return [_number(loss, f"loss {i} of {call}") for i, loss in enumerate(out)]


@piece(
    "my_short_run",
    "06_training",
    "experiment: a short run at lr 0.3 blows up without warmup and clipping, and learns with them",
    _short_run,
)
def _verify_short_run(my_short_run: Callable) -> None:
    ln_v, steps, warmup_steps = math.log(_PLAYS_VOCAB), _SHORT_RUN["steps"], _SHORT_RUN["warmup_steps"]
    wild = _losses(my_short_run(0.3, 0, None), "my_short_run(0.3, 0, None)", steps)
    if all(math.isfinite(loss) for loss in wild) and max(wild) <= 2 * ln_v:
        raise Wrong(
            f"with lr 0.3 and neither warmup nor clipping the loss should blow up far above ln V = {ln_v:.2f}; "
            f"yours peaked at {_num(max(wild), 2)}: did you apply lr without warmup, and skip clipping when "
            "grad_clip is None?"
        )
    tame = _losses(my_short_run(0.3, warmup_steps, 1.0), f"my_short_run(0.3, {warmup_steps}, 1.0)", steps)
    if not tame[-1] < ln_v:
        raise Wrong(
            f"with {warmup_steps} warmup steps and clipping at 1 the same lr should learn: the last loss should be "
            f"below ln V = {ln_v:.2f}, yours is {_num(tame[-1], 3)}: warm up with "
            "lr * min(1, (step + 1) / warmup_steps), and clip with nn.utils.clip_grad_norm_(model.parameters(), "
            "grad_clip) before optimizer.step()"
        )


@piece(
    "my_one_play_run",
    "06_training",
    "experiment: trained on 3,000 characters of one play, the model overfits",
    _one_play_run,
)
def _verify_one_play_run(my_one_play_run: Callable) -> None:
    history = my_one_play_run()
    if not isinstance(history, list):
        raise Wrong(f"return the history that train returns, a list of records; got {_kind(history)}")
    if len(history) < 5:
        raise Wrong(
            f"the history has {len(history)} records, expected at least 5: train for 240 steps and evaluate every "
            "40 (eval_interval=40)"
        )
    for i, record in enumerate(history):
        if not isinstance(record, dict) or not {"step", "train", "val"} <= set(record):
            raise Wrong(f"record {i} must be a dict with 'step', 'train' and 'val', got {_describe(record)}")
    steps = [record["step"] for record in history]
    train = [_number(record["train"], f"the training loss of record {i}") for i, record in enumerate(history)]
    val = [_number(record["val"], f"the validation loss of record {i}") for i, record in enumerate(history)]
    best = min(range(len(val)), key=val.__getitem__)  # the record with the lowest validation loss
    if best == len(val) - 1:
        raise Wrong(
            f"the validation loss is at its lowest at the end, step {steps[best]}: the model has not overfit; train "
            "on the first 3,000 characters of Hamlet only, for 240 steps at a constant learning rate of 3e-3"
        )
    if not val[-1] > val[best] + 0.1:
        raise Wrong(
            f"the validation loss should end well above its lowest point (by more than 0.1): it ends at "
            f"{val[-1]:.3f}, and its lowest was {val[best]:.3f} at step {steps[best]}; train on the first 3,000 "
            "characters of Hamlet only, for 240 steps at a constant learning rate of 3e-3"
        )
    if not train[-1] < train[best]:
        raise Wrong(
            f"the training loss should keep falling after step {steps[best]}, where validation was best: it was "
            f"{train[best]:.3f} there and is {train[-1]:.3f} at the end"
        )


@piece(
    "my_accumulation_config", "06_training", "a TrainConfig for 64 windows a step, 16 at a time", _accumulation_config
)
def _verify_accumulation_config(my_accumulation_config: Callable) -> None:
    out = my_accumulation_config()
    if not _same_class(out, TrainConfig):
        raise Wrong(f"return a TrainConfig, got {_kind(out)}")
    if out.batch_size > 16:
        raise Wrong(
            f"batch_size is {out.batch_size}, but only 16 windows fit in memory at once: batch_size is one "
            "micro-batch; grad_accum micro-batches make up each step"
        )
    if out.batch_size * out.grad_accum != 64:
        raise Wrong(
            f"each step sees batch_size × grad_accum = {out.batch_size} × {out.grad_accum} = "
            f"{out.batch_size * out.grad_accum} windows, expected 64"
        )
    default = TrainConfig()
    for field in fields(TrainConfig):
        got, want = getattr(out, field.name), getattr(default, field.name)
        if field.name not in ("batch_size", "grad_accum") and got != want:
            raise Wrong(
                f"{field.name} is {got!r}, but the exercise keeps its default, {want!r}: change only batch_size "
                "and grad_accum"
            )


add_hints(
    {
        "random_windows": (
            "A window of T + 1 consecutive ids gives T inputs and, shifted by one, T targets; draw B random starts "
            "with the generator you are given.",
            "Draw B starts with torch.randint(..., generator=generator) so that a window never runs past the end, cut "
            "all windows at once by indexing with the starts plus an arange of T + 1, make them int64 (.long()), and "
            "return the window without its last id and the window without its first.",
        ),
        "lr_at": (
            "Two phases: during warmup the rate climbs in a straight line to lr; after it, it follows half a cosine "
            "from lr down to min_lr, reached at max_steps.",
            "For step < warmup_steps scale lr by how far into the warmup the step is (the first step gets a rate above "
            "zero); after it, compute progress from 0 to 1 over the remaining steps and mix lr and min_lr with "
            "(1 + cos(π · progress)) / 2. Guard against warmup_steps == 0 and warmup_steps == max_steps.",
        ),
        "step_on_batch": (
            "One step is the five lines of the chapter's loop, in order: clear the old gradients, forward pass and "
            "loss, backward pass, clip, optimizer step.",
            "Zero the optimizer's gradients first (backward adds to .grad), compute the loss with next_token_loss, "
            "run the backward pass, clip the norm of the model's gradients to grad_clip (nn.utils.clip_grad_norm_), "
            "take the optimizer's step, and return the loss as a float.",
        ),
        "evaluate_loss": (
            "An evaluation must not train: no dropout (eval mode), no gradients, and the model is left in the mode it "
            "was in.",
            "Remember the model's training flag, switch it to eval mode, compute the loss of each batch under "
            "torch.no_grad() as a float, put the mode back as it was, and return the mean.",
        ),
        "train_loop": (
            "The loop of train without its extras: a schedule, a batch, your step, and now and then an evaluation on "
            "fixed batches; it returns the evaluations.",
            "Build the optimizer with make_optimizer, a generator seeded with cfg.seed, and the two evaluation sets "
            "with fixed_batches (seeds cfg.seed + 1 and + 2) before the loop; at each step set every param group's "
            "rate with lr_at, draw a batch with random_windows, take your step, and after every eval_interval-th "
            "step (counted from 1) and the last, append the step and both mean losses from evaluate_loss.",
        ),
        "milestone_shakespeare_run": (
            "Nothing new to write: this milestone trains your GPT of chapter 05 with your train_loop on the chapter's "
            "recipe and compares its validation loss with train's on tinytorch's GPT. If both are built, it passes.",
            "If it reads wrong, run your loop next to train as the chapter does, and your GPT's check in chapter 05: "
            "the numbers part where the mistake is.",
        ),
        "my_short_run": (
            "Write the chapter's hand-made loop for 40 steps, with the rate and clipping the arguments ask for, from a "
            "seeded fresh model and batch generator, and keep every step's loss.",
            "Seed, build GPT(config) and an AdamW at lr; at each step set every param group's lr (warmup: grow it "
            "linearly over warmup_steps, none when it is 0), draw a batch, zero the gradients, loss, backward, clip "
            "only if grad_clip is not None, step, and append the loss as a float.",
        ),
        "my_one_play_run": (
            "Use the chapter's train with a TrainConfig of its own: a narrow model, a tiny training text (the start of "
            "Hamlet), the same validation plays, and evaluations often enough to see the curves part.",
            "Encode the first 3,000 characters of plays['hamlet'] as a uint8 tensor, build a TrainConfig with the "
            "steps, batch, a constant learning rate, warmup and evaluation interval the exercise gives, a GPT with "
            "n_embd=64 and block_size=32 (dataclasses.replace), and return train(...)'s history.",
        ),
        "my_accumulation_config": (
            "The windows of one optimizer step are batch_size × grad_accum; memory only has to hold batch_size of "
            "them at once.",
            "Return a TrainConfig whose batch_size is the most that fits and whose grad_accum makes up the rest.",
        ),
    }
)
