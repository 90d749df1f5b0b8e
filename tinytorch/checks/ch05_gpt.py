"""The checks of notebooks/05_gpt.ipynb: a reference and a verify function per piece and exercise."""

import copy
import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinytorch.checks import MILESTONE, add_hints, add_shortcuts, piece
from tinytorch.checks.helpers import (
    Wrong,
    _close,
    _compare,
    _gpt,
    _num,
    _number,
    _randint,
    _randn,
    _same,
    _shape,
    _whole,
    _with_reference_weights,
)
from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT, estimate_flops_per_token, estimate_parameters, next_token_loss


def _gpt_forward(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of a GPT for token ids (B, T)."""
    return model(idx)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -ln softmax(logits)[target]: (B, T, V), (B, T) -> scalar."""
    V = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))  # (B*T, V), (B*T,) -> scalar


def _lm_loss(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """The loss of predicting ids[:, 1:] from ids[:, :-1]: ids (B, T + 1) -> scalar."""
    return next_token_loss(model(ids[:, :-1]), ids[:, 1:])


@piece("gpt_forward", "05_gpt", "the whole forward pass: embeddings, blocks, ln_f, lm_head", _gpt_forward)
def _verify_gpt_forward(gpt_forward: Callable) -> None:
    model = _gpt(seed=140)
    idx = _randint(11, (2, 6), seed=141)  # (B, T)
    wrong_shapes = {
        (2, 6, 16): "expected shape (2, 6, 11), got (2, 6, 16): apply lm_head to get one score per vocabulary token"
    }
    out = gpt_forward(copy.deepcopy(model), idx.clone())
    out = _shape(out, (2, 6, 11), "(B, T) -> (B, T, V)", mistakes=wrong_shapes)
    with torch.no_grad():
        expected = model(idx)
        if _same(out, expected):
            return
        x = model.embeddings(idx)  # (B, T, C)
        h = x
        for block in model.blocks:
            h = block(h)
        if _same(out, model.lm_head(h)):
            raise Wrong("the final LayerNorm is missing: x = model.ln_f(x) before lm_head")
        skipped = [model.blocks[1](x), model.blocks[0](x), x]  # only block 1, only block 0, no block
        if any(_same(out, model.lm_head(model.ln_f(h))) for h in skipped):
            raise Wrong("every block must run, in order: for block in model.blocks: x = block(x)")
        _compare(out, expected)


@piece("cross_entropy", "05_gpt", "the mean next-token loss, from scratch", _cross_entropy)
def _verify_cross_entropy(cross_entropy: Callable) -> None:
    B, T, V = 2, 4, 7
    logits, targets = _randn(B, T, V, seed=150) * 2, _randint(V, (B, T), seed=151)
    out = cross_entropy(logits.clone(), targets.clone())
    if isinstance(out, torch.Tensor) and out.numel() != 1:
        raise Wrong(
            f"the loss must be one number, the mean over all B·T = {B * T} positions; got shape {tuple(out.shape)}"
        )
    got = _number(out, "the loss")
    expected = _cross_entropy(logits, targets).item()
    if _close(got, expected):
        large = logits * 100  # confident predictions: exp(logits) overflows
        got = _number(cross_entropy(large.clone(), targets.clone()), "the loss")
        if not math.isfinite(got):
            raise Wrong("the loss overflows on large logits: subtract each row's max before exp, or use log_softmax")
        expected = _cross_entropy(large, targets).item()
        if not _close(got, expected):
            raise Wrong(f"on large logits the loss should be {_num(expected, 4)}, got {_num(got, 4)}")
        return
    if _close(got, expected / math.log(2)) or _close(got, expected / math.log(10)):
        raise Wrong("use the natural log: the loss is in nats")
    if _close(got, expected * B * T):
        raise Wrong(f"take the mean over the B·T = {B * T} positions, not the sum")
    if _close(got, -expected):
        raise Wrong("the loss is negative: it is minus the log-probability of the target, -ln p")
    wrong_dim = -(F.log_softmax(logits, dim=1).gather(-1, targets[..., None])).mean().item()
    if _close(got, wrong_dim):
        raise Wrong("the softmax must run over the vocabulary, dim=-1 (the last dimension)")
    raise Wrong(f"the loss should be {_num(expected, 4)}, got {_num(got, 4)}")


@piece("lm_loss", "05_gpt", "the loss of predicting each next token of a batch of ids", _lm_loss)
def _verify_lm_loss(lm_loss: Callable) -> None:
    model = _gpt(seed=160)
    ids = _randint(11, (2, 8), seed=161)  # (B, T + 1)
    out = lm_loss(copy.deepcopy(model), ids.clone())
    if isinstance(out, float):
        raise Wrong("return the loss tensor, not a float: training calls loss.backward() on it")
    got = _number(out, "the loss")
    with torch.no_grad():
        expected = _lm_loss(model, ids).item()
        if not _close(got, expected):
            unshifted = [next_token_loss(model(ids[:, :-1]), ids[:, :-1]), next_token_loss(model(ids), ids)]
            if any(_close(got, loss.item()) for loss in unshifted):
                raise Wrong("the targets must be the inputs shifted by one: inputs ids[:, :-1], targets ids[:, 1:]")
            if _close(got, next_token_loss(model(ids[:, 1:]), ids[:, :-1]).item()):
                raise Wrong(
                    "shifted the wrong way: the inputs are ids[:, :-1], the targets the next tokens, ids[:, 1:]"
                )
            raise Wrong(f"the loss should be {_num(expected, 4)}, got {_num(got, 4)}")
    if not out.requires_grad:
        raise Wrong("the loss has no gradient: do not compute it under torch.no_grad(); training calls loss.backward()")


GPT_PARTS = {
    "embeddings": "chapter 02's Embeddings(config) (wte and wpe)",
    "blocks": "an nn.ModuleList of n_layer Block(config)",
    "ln_f": "the final LayerNorm(C)",
    "lm_head": "a Linear(C, V) without bias, sharing wte's matrix",
}


def _learners_gpt(gpt_class: Callable, config: GPTConfig, seed: int) -> torch.nn.Module:
    """The learner's GPT(config), built from a seeded global generator (its initialization draws from it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return gpt_class(config)


def _with_shipped_weights(gpt_class: Callable, seed: int) -> tuple[torch.nn.Module, GPT, CharTokenizer]:
    """(the learner's GPT with the shipped model's weights, the shipped model, its tokenizer): the milestones' start."""
    from tinytorch.checkpoint import load_pretrained  # the shipped model: appendix 09's loader, used here to read it

    shipped, tokenizer = load_pretrained()
    mine = _with_reference_weights(_learners_gpt(gpt_class, shipped.config, seed), shipped, "GPT", GPT_PARTS)
    return mine, shipped, tokenizer


@piece("GPT", "05_gpt", "the GPT as a module: its parts, tying and GPT-2's initialization, and forward", GPT)
def _verify_gpt(gpt_class: Callable) -> None:
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
    reference = _gpt(150)
    mine = _with_reference_weights(_learners_gpt(gpt_class, config, 151), reference, "GPT", GPT_PARTS)
    if mine.lm_head.weight is not mine.embeddings.wte.weight:
        raise Wrong(
            "lm_head has a matrix of its own: tie it to the token embedding, so that one V x C matrix reads and writes "
            "tokens (self.lm_head.weight = self.embeddings.wte.weight)"
        )
    idx = _randint(11, (2, 6), seed=152)  # (B, T)
    with torch.no_grad():
        out = _shape(mine(idx), (2, 6, 11), "(B, T) -> (B, T, V)")
        expected = reference(idx)
        if not _same(out, expected):
            x = reference.embeddings(idx)  # (B, T, C)
            for block in reference.blocks:
                x = block(x)
            if _same(out, reference.lm_head(x)):
                raise Wrong("the final LayerNorm is missing: the stream goes through ln_f before lm_head")
            if _same(out, reference.lm_head(reference.ln_f(reference.embeddings(idx)))):
                raise Wrong("the blocks are not applied: x = block(x) for every block of self.blocks, in order")
            _compare(out, expected)
    deep = GPTConfig(vocab_size=64, block_size=16, n_layer=4, n_head=4, n_embd=64)
    fresh = dict(_learners_gpt(gpt_class, deep, 153).named_parameters())
    stds = {name: param.detach().float().std().item() for name, param in fresh.items() if param.dim() == 2}
    if not 0.015 < stds["embeddings.wte.weight"] < 0.025 or not 0.015 < stds["blocks.0.attn.qkv.weight"] < 0.025:
        wte, qkv = stds["embeddings.wte.weight"], stds["blocks.0.attn.qkv.weight"]
        raise Wrong(
            "initialize like GPT-2: every Linear and Embedding weight from a normal of std 0.02 "
            f"(wte's std is {wte:.3g}, blocks.0.attn.qkv's {qkv:.3g})"
        )
    scaled = 0.02 / math.sqrt(2 * deep.n_layer)
    if not 0.75 * scaled < stds["blocks.0.attn.proj.weight"] < 1.25 * scaled:
        raise Wrong(
            f"scale the projections that write into the stream (attn.proj, mlp.proj) to std 0.02 / sqrt(2 n_layer) = "
            f"{scaled:.4f} at n_layer={deep.n_layer}; yours is {stds['blocks.0.attn.proj.weight']:.4f}"
        )
    biases = [name for name, param in fresh.items() if name.endswith(".bias") and "ln" not in name and param.any()]
    if biases:
        raise Wrong(f"GPT-2 starts every Linear's bias at zero; {biases[0]} is not")


@piece(
    f"{MILESTONE}shakespeare_logits",
    "05_gpt",
    "milestone: your GPT, with the shipped model's weights, gives the shipped model's logits",
    GPT,
)
def _verify_milestone_shakespeare_logits(gpt_class: Callable) -> None:
    if inspect.unwrap(gpt_class) is GPT:  # check("GPT", ...) gives tinytorch's GPT until the learner's is built
        raise NotImplementedError("the milestone waits for your GPT")
    mine, shipped, tokenizer = _with_shipped_weights(gpt_class, 154)
    ids = torch.tensor([tokenizer.encode("ROMEO:\nBut, soft! what light through yonder window breaks?")])  # (1, T)
    with torch.no_grad():
        got, want = mine(ids), shipped(ids)  # (1, T, V)
    if not torch.allclose(got, want, atol=1e-5, rtol=1e-5):
        worst = (got - want).abs().max().item()
        raise Wrong(f"with the shipped weights your GPT's logits differ from the shipped model's by up to {worst:.3g}")


def _untied_params(config: GPTConfig) -> int:
    """Parameters of GPT(config) with an output layer that does not share the token embedding."""
    return estimate_parameters(config) + config.vocab_size * config.n_embd  # plus the head's own (V, C) matrix


def _uniform_loss(V: int) -> float:
    """next_token_loss of all-equal logits (2, 5, V) against random targets, as a float."""
    return next_token_loss(torch.zeros(2, 5, V), torch.randint(0, V, (2, 5))).item()


def _unchanged_positions(model: GPT, ids: torch.Tensor, t: int) -> int:
    """How many positions of ids (1, T) keep exactly the same logits when the token at t changes."""
    changed = ids.clone()
    changed[0, t] = (changed[0, t] + 1) % model.config.vocab_size  # another id
    with torch.no_grad():
        same = (model(ids) == model(changed)).all(dim=-1)[0]  # (T,): True where no logit moved
    return int(same.sum())


def _training_days(config: GPTConfig, tokens: float, flops_per_second: float) -> float:
    """Days to train GPT(config) on `tokens` tokens at a sustained `flops_per_second`."""
    return estimate_flops_per_token(config) * tokens / flops_per_second / 86_400  # seconds -> days


_SMALL = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
_SMALL_TEXT = "GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)"
_GPT2_TEXT = 'GPTConfig.from_preset("gpt2")'


@piece("my_untied_params", "05_gpt", "the parameters of a GPT whose output layer is not tied", _untied_params)
def _verify_untied_params(my_untied_params: Callable) -> None:
    for config, text in ((GPTConfig.from_preset("gpt2"), _GPT2_TEXT), (_SMALL, _SMALL_TEXT)):
        call = f"my_untied_params({text})"
        got = _whole(my_untied_params(config), f"{call}'s result")
        want = _untied_params(config)
        if got == want:
            continue
        if got == estimate_parameters(config):
            raise Wrong(
                f"{call} returned {got:,}, the count with tying: give the head its own matrix, e.g. "
                "model.lm_head.weight = nn.Parameter(torch.empty_like(model.lm_head.weight))"
            )
        if got == want + config.vocab_size:
            raise Wrong(f"{call} counts a bias in the head: lm_head is Linear(C, V, bias=False)")
        raise Wrong(
            f"{call} returned {got:,}: too {'large' if got > want else 'small'}; count the parameters of the model "
            "whose head has a matrix of its own"
        )


@piece("my_uniform_loss", "05_gpt", "the loss of all-equal logits, as a float", _uniform_loss)
def _verify_uniform_loss(my_uniform_loss: Callable) -> None:
    for V in (50, 7):
        call = f"my_uniform_loss({V})"
        out = my_uniform_loss(V)
        if isinstance(out, torch.Tensor):
            raise Wrong(f"{call} returned a tensor: return a Python float, loss.item()")
        got, want = _number(out, f"{call}'s result"), math.log(V)
        if abs(got - want) <= 1e-5:
            continue
        if abs(got + want) <= 1e-5:
            raise Wrong(f"{call} returned {_num(got, 6)}: the loss is minus the log-probability of the target, > 0")
        raise Wrong(
            f"{call} returned {_num(got, 6)}: all-equal logits give every token probability 1/V, so whatever the "
            "targets the loss is -ln(1/V) = ln V; make logits of shape (2, 5, V) that are all equal, e.g. zeros"
        )


@piece(
    "my_unchanged_positions",
    "05_gpt",
    "positions whose logits stay the same when a token changes",
    _unchanged_positions,
)
def _verify_unchanged_positions(my_unchanged_positions: Callable) -> None:
    model = _gpt(seed=350, block_size=16)  # V = 11
    ids = _randint(11, (1, 10), seed=351)  # (1, T)
    T = ids.size(1)
    for t in (4, 0, 9):
        call = f"my_unchanged_positions(model, ids, {t}) with ids of shape (1, {T})"
        given = ids.clone()
        got = _whole(my_unchanged_positions(copy.deepcopy(model), given, t), f"{call}'s result")
        if not torch.equal(given, ids):
            raise Wrong("my_unchanged_positions changed the ids it was given: change a copy, ids.clone()")
        want = _unchanged_positions(model, ids, t)
        if got == want:
            continue
        if got == T:
            raise Wrong(
                f"{call} returned {T}: every position kept its logits, so the token at t did not change; set it "
                "to another id, e.g. (ids[0, t] + 1) % vocab_size"
            )
        if got == T - t:
            raise Wrong(f"{call} returned {got}: that counts the positions that changed; count those that stayed")
        if got == t + 1:
            raise Wrong(
                f"{call} returned {got}: position t reads the token you changed, so its logits change too; "
                "count only the positions whose logits stayed exactly the same"
            )
        raise Wrong(
            f"{call} returned {got}: compare every position's logits exactly, (logits == new_logits).all(dim=-1)"
        )


@piece("my_training_days", "05_gpt", "the days of training at a given speed", _training_days)
def _verify_training_days(my_training_days: Callable) -> None:
    cases = [(GPTConfig.from_preset("gpt2"), 1e9, 100e9, _GPT2_TEXT), (_SMALL, 2e6, 1e9, _SMALL_TEXT)]
    for config, tokens, speed, text in cases:
        call = f"my_training_days({text}, {tokens:g}, {speed:g})"
        got = _number(my_training_days(config, tokens, speed), f"{call}'s result")
        want = _training_days(config, tokens, speed)
        if _close(got, want, 1e-6):
            continue
        mistakes = [
            (86_400, "that is in seconds: a day has 86,400 of them"),
            (24, "that is in hours: a day has 24 of them"),
            (6, "estimate_flops_per_token already counts the forward and backward passes: do not multiply by 6"),
        ]
        hint = next((hint for factor, hint in mistakes if _close(got, want * factor, 1e-6)), "")
        raise Wrong(
            f"{call} returned {_num(got)}: "
            + (hint or f"too {'large' if got > want else 'small'}; FLOPs per token × tokens / FLOP/s gives seconds")
        )


add_hints(
    {
        "GPT": (
            "The GPT owns chapter 02's embeddings, n_layer of chapter 04's blocks, a final LayerNorm and a head that "
            "turns vectors into V scores; the head reuses the token embedding's matrix. Keep the package's names "
            "(embeddings, blocks, ln_f, lm_head) so that the shipped weights load into yours.",
            "In __init__: keep config; Embeddings(config); an nn.ModuleList of Block(config); a LayerNorm of width "
            "n_embd; a Linear from n_embd to vocab_size without bias whose weight is the embedding's wte weight; then "
            "GPT-2's initialization (normal, std 0.02, for every Linear and Embedding weight, zero biases, and std "
            "0.02 / sqrt(2 n_layer) for the weights ending in proj.weight). In forward: embeddings, each block, ln_f, "
            "lm_head.",
            "Tie after creating lm_head (assign the Parameter itself, not a copy), and initialize after tying, so "
            "that both ends see the same numbers; model.apply(fn) calls fn on every submodule.",
        ),
        "milestone_shakespeare_logits": (
            "Nothing new to write: this milestone runs your GPT with the weights of the model that ships with "
            "tinytorch. If your GPT is built, it passes.",
            "If it reads wrong, your GPT's names or shapes differ from the package's, or its forward differs: the "
            "check of GPT above says which.",
        ),
        "gpt_forward": (
            "Follow a token id through the model as the chapter's diagram does: embeddings, every block in order, the "
            "final LayerNorm, then the output layer that turns each vector into V scores.",
            "Use the model's own parts: model.embeddings on idx gives (B, T, C); loop over model.blocks, each "
            "(B, T, C) to (B, T, C); then model.ln_f and model.lm_head give the logits (B, T, V).",
        ),
        "cross_entropy": (
            "The loss is minus the log of the probability the model gave to the right token, averaged over every "
            "position of the batch.",
            "Take log_softmax over the vocabulary (the last dimension), pick at each position the entry of its target "
            "with gather (the targets need a trailing dimension of size 1), average, and flip the sign.",
            "log_softmax is stable for large logits; a softmax followed by a log can give log(0) = -inf.",
        ),
        "lm_loss": (
            "A batch of ids is both the input and the answer: the target at position t is the token at t + 1.",
            "Split each row into inputs (all tokens but the last) and targets (all but the first), run the model on "
            "the inputs and give its logits and the targets to next_token_loss.",
        ),
        "my_untied_params": (
            "Tying makes the output layer reuse the token embedding's matrix, so it is counted once; untied, the "
            "output layer has its own V × C matrix.",
            "Either count the parameters of the tied model and add one more V × C matrix, or build the model, give "
            "lm_head a new nn.Parameter of the same shape, and count (torch.device('meta') avoids allocating memory).",
        ),
        "my_uniform_loss": (
            "If every logit of a position is equal, the model gives each of the V tokens the same probability, "
            "whatever the target is.",
            "Build logits of zeros of shape (B, T, V) and any targets below V, and return next_token_loss of them as "
            "a Python float (.item()); it should equal ln V.",
        ),
        "my_unchanged_positions": (
            "Causal attention means a position only sees the tokens at or before it: changing the token at t cannot "
            "change the logits of the positions before t.",
            "Copy ids, change the token at t to another valid id, run the model on both under torch.no_grad(), and "
            "count the positions whose whole row of logits is exactly equal (.all over the vocabulary).",
        ),
        "my_training_days": (
            "Total work is FLOPs per token times tokens; a machine does flops_per_second of it each second.",
            "Use estimate_flops_per_token(config), multiply by the tokens, divide by the speed for seconds, then by "
            "the seconds in a day (86,400).",
        ),
    }
)


add_shortcuts(
    {
        "cross_entropy": (
            r"\b(?:F|functional)\.cross_entropy\(",
            r"\bnn\.CrossEntropyLoss\b",
            r"\b(?:F|functional)\.nll_loss\(",
            r"\bnext_token_loss\(",
        )
    }
)
