"""The checks of notebooks/07_generation.ipynb: a reference and a verify function per piece and exercise."""

import contextlib
import copy
import functools
import inspect
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from tinytorch.attention import attention_weights
from tinytorch.checks import MILESTONE, add_hints, piece
from tinytorch.checks.ch05_gpt import _GPT2_TEXT, _with_shipped_weights
from tinytorch.checks.helpers import (
    Wrong,
    _close,
    _compare,
    _generator,
    _gpt,
    _number,
    _position,
    _randint,
    _randn,
    _same,
    _shape,
)
from tinytorch.config import GPTConfig
from tinytorch.generation import KVCache, generate, top_k_filter, top_p_filter
from tinytorch.gpt import GPT


def _greedy_decode(model: GPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The prompt idx (B, T) followed by max_new_tokens argmax tokens: (B, T + max_new_tokens), without a cache."""
    return generate(model, idx, max_new_tokens, do_sample=False, use_cache=False)  # the window, every step


def _greedy_loop(model: GPT, idx: torch.Tensor, max_new_tokens: int, position: int = -1) -> torch.Tensor:
    """Greedy decoding without a cache, reading the logits at `position` (-1 is right)."""
    for _ in range(max_new_tokens):
        logits = model(idx[:, -model.config.block_size :])[:, position]  # (B, V)
        idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)  # (B, T + 1)
    return idx


def _apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits (B, V) divided by the temperature: below 1 sharper, above 1 flatter."""
    return logits / temperature


def _decode_step(model: GPT, new_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits (B, V) of the last of the new tokens (B, T_new), fed at positions cache.length.. with the cache."""
    return model(new_ids, cache)[:, -1]


@piece("greedy_decode", "07_generation", "greedy decoding: append the argmax of the last position", _greedy_decode)
def _verify_greedy_decode(greedy_decode: Callable) -> None:
    model = _gpt(seed=210)  # block_size 8
    idx = _randint(11, (2, 3), seed=211)  # (B, T)
    with torch.no_grad():
        wrong_shapes = {
            (2, 4): "return the prompt followed by the new tokens, (B, T + max_new_tokens): "
            "torch.cat([idx, ...], dim=1)"
        }
        out = greedy_decode(copy.deepcopy(model), idx.clone(), 4)
        out = _shape(out, (2, 7), "(B, T + max_new_tokens)", mistakes=wrong_shapes)
        if not torch.equal(out[:, :3], idx):
            raise Wrong("the result must start with the prompt idx, followed by the new tokens")
        expected = _greedy_loop(model, idx, 4)
        if not torch.equal(out, expected):
            if torch.equal(out, _greedy_loop(model, idx, 4, position=0)):
                raise Wrong("the next token comes from the logits of the last position, logits[:, -1]")
            b, t = _position(int((out != expected).flatten().nonzero()[0]), out.shape)
            raise Wrong(
                f"new token {t - 3} of sequence {b} should be {int(expected[b, t])}, "
                f"the argmax of the last position's logits, got {int(out[b, t])}"
            )
        try:
            out = greedy_decode(copy.deepcopy(model), idx.clone(), 10)  # 3 + 10 tokens: more than block_size 8
        except ValueError as error:
            if "block_size" not in str(error):
                raise
            raise Wrong("crop the context to the last block_size tokens: idx[:, -block_size:]") from None
        _compare(_shape(out, (2, 13)), _greedy_loop(model, idx, 10))


@piece("apply_temperature", "07_generation", "logits divided by the temperature", _apply_temperature)
def _verify_apply_temperature(apply_temperature: Callable) -> None:
    logits = _randn(2, 7, seed=220) * 2  # (B, V)
    for temperature in (0.5, 2.0):
        given = logits.clone()
        out = _shape(apply_temperature(given, temperature), (2, 7))
        if _same(out, logits * temperature):
            raise Wrong(
                "divide the logits by the temperature, do not multiply: below 1 it sharpens, above 1 it flattens"
            )
        _compare(out, logits / temperature)
        if not torch.equal(given, logits):
            raise Wrong("apply_temperature changed its input: return logits / temperature, a new tensor")


@piece("top_k_logits", "07_generation", "keep the k largest logits of each row, the rest -inf", top_k_filter)
def _verify_top_k_logits(top_k_logits: Callable) -> None:
    logits = _randn(2, 10, seed=230) * 2  # (B, V): all different
    k = 3
    out = _shape(top_k_logits(logits.clone(), k), (2, 10)).detach()
    expected = top_k_filter(logits, k)
    if not _same(out, expected):
        dropped = torch.isneginf(expected)
        if (out[dropped] == 0).all():
            raise Wrong("the dropped logits must be -inf, not 0: a logit of 0 still gets a share of the probability")
        kept = (~torch.isneginf(out) & ~torch.isnan(out)).sum(dim=-1)  # (B,)
        if (kept != k).any():
            b = int((kept != k).nonzero()[0])
            raise Wrong(
                f"row {b} keeps {int(kept[b])} tokens, expected k = {k}: keep the logits >= the k-th largest, "
                "torch.topk(logits, k).values[:, -1:]"
            )
        _compare(out, expected)
    try:
        out = top_k_logits(logits.clone(), 20)  # k larger than V = 10: keep all
    except (RuntimeError, IndexError):
        raise Wrong("k may be larger than the vocabulary: use min(k, V)") from None
    _compare(out, logits)


@piece("top_p_logits", "07_generation", "keep the most likely tokens whose probabilities reach p", top_p_filter)
def _verify_top_p_logits(top_p_logits: Callable) -> None:
    probs = torch.tensor(
        [
            [0.05, 0.40, 0.10, 0.30, 0.15],  # p = 0.6: 0.40 and 0.30 stay (0.30 crosses p)
            [0.02, 0.03, 0.85, 0.06, 0.04],  # the most likely token alone is above p: only it stays
        ]
    )
    logits, p = probs.log(), 0.6  # (B, V)
    out = _shape(top_p_logits(logits.clone(), p), (2, 5)).detach()
    expected = top_p_filter(logits, p)
    if not _same(out, expected):
        top = logits.argmax(dim=-1)  # (B,)
        if not torch.isfinite(out[torch.arange(2), top]).all():
            raise Wrong("the most likely token must always stay, even when its probability alone is above p")
        if (out[torch.isneginf(expected)] == 0).all():
            raise Wrong("the dropped logits must be -inf, not 0: a logit of 0 still gets a share of the probability")
        if torch.isneginf(out[0, 3]) and torch.isfinite(out[0, 1]):
            raise Wrong("keep tokens until their mass reaches p: the token that crosses p stays")
        if _same(out, expected.sort(dim=-1, descending=True).values):
            raise Wrong(
                "the logits came back sorted: put each back at its token's position, scatter with the sort order"
            )
        _compare(out, expected)
    logits = _randn(3, 20, seed=240) * 2  # more tokens, another p
    _compare(top_p_logits(logits.clone(), 0.9), top_p_filter(logits, 0.9))


def _sample(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The prompt idx (B, T) followed by max_new_tokens sampled tokens, (B, T + max_new_tokens), without a cache."""
    knobs = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    return generate(model, idx, max_new_tokens, use_cache=False, **knobs)


def _cached_sample(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The tokens of _sample, computed with a KV cache: (B, T + max_new_tokens)."""
    knobs = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    return generate(model, idx, max_new_tokens, use_cache=True, **knobs)


def _sampling_with(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
    mistake: str = "",
) -> torch.Tensor:
    """The uncached sampling loop, right, or with one typical `mistake` (a key of _SAMPLING_MISTAKES)."""
    T = model.config.block_size
    filters = [(top_k, top_k_filter, "top_k"), (top_p, top_p_filter, "top_p")]
    if mistake == "top_p first":
        filters.reverse()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            context = idx[:, :T] if mistake == "first block" else idx[:, -T:]
            logits = model(context)[:, 0 if mistake == "first position" else -1]  # (B, V)
            if mistake == "multiplied":
                logits = logits * temperature
            elif mistake not in ("no temperature", "temperature last"):
                logits = logits / temperature
            for value, keep, knob in filters:
                if value is not None and mistake != f"no {knob}":
                    logits = keep(logits, value)
            if mistake == "temperature last":
                logits = logits / temperature
            if mistake == "argmax":
                next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                probs = logits.softmax(dim=0 if mistake == "softmax over the batch" else -1)  # (B, V)
                next_id = torch.multinomial(probs, 1, generator=None if mistake == "global" else generator)
            idx = torch.cat([idx, next_id], dim=1)  # (B, t + 1)
    return idx


_SAMPLING_MISTAKES = {  # mistake -> what to fix, in the chapter's words
    "first position": "the next token comes from the logits of the last position, logits[:, -1]",
    "first block": "crop to the last block_size tokens, idx[:, -block_size:]: the first ones are the oldest",
    "argmax": "sampling draws the next token at random from the probabilities, torch.multinomial(probs, 1, "
    "generator=generator); the argmax is greedy decoding",
    "multiplied": "divide the logits by the temperature, do not multiply (apply_temperature)",
    "temperature last": "divide by the temperature first, then top-k, then top-p: the temperature changes which "
    "tokens make the nucleus of mass p (generate's order, and Hugging Face's)",
    "no temperature": "the temperature was not applied: divide the logits by it, before top-k and top-p",
    "top_p first": "top-k first, then top-p, in generate's order: the nucleus is taken from the k tokens that stay",
    "no top_k": "top_k was given but not applied: keep the top_k largest logits (top_k_logits) when it is not None",
    "no top_p": "top_p was given but not applied: keep the nucleus (top_p_logits) when it is not None",
    "softmax over the batch": "the softmax must run over the vocabulary, dim=-1, so that each row sums to 1",
    "global": "pass the generator to torch.multinomial (generator=generator): the draws must come from it, so that "
    "the same seed writes the same text, and the global random state stays untouched",
}


def _record_call(calls: list, module: torch.nn.Module, args: tuple) -> None:
    """A forward pre-hook: note whether gradients are on and the module is in training mode."""
    calls.append((torch.is_grad_enabled(), module.training))


_GLOBAL_SEED = 4242  # seeds the global generator before each call, to recognize draws that ignore `generator`


def _same_tokens(out: torch.Tensor, other: torch.Tensor | None) -> bool:
    return other is not None and torch.equal(out, other)


def _knobs(temperature: float, top_k: int | None, top_p: float | None) -> str:
    return f"temperature={temperature}, top_k={top_k}, top_p={top_p}"


def _sampling_error(error: Exception, name: str) -> Wrong | None:
    """The Wrong for an error a typical sampling mistake raises, or None."""
    text = str(error)
    if isinstance(error, ValueError) and "block_size" in text:
        if "cached" in text:
            return Wrong(
                "the text grew past block_size with the cache full: once it is longer than block_size the window "
                "slides and every position moves, so reset the cache and refill it from the last block_size tokens"
            )
        return Wrong("crop the context to the last block_size tokens: idx[:, -block_size:]")
    if isinstance(error, RuntimeError) and ("probability tensor" in text or "multinomial" in text):
        return Wrong(
            "torch.multinomial draws from probabilities (each row >= 0, adding up to 1), not from logits: softmax "
            "the filtered logits over the vocabulary (dim=-1), then draw"
        )
    if isinstance(error, RuntimeError) and ("Sizes of tensors must match" in text or "same number of dim" in text):
        return Wrong(
            "append the new token to each row, along the time dimension: torch.cat([idx, next_id], dim=1) with "
            "next_id of shape (B, 1)"
        )
    if isinstance(error, TypeError) and "NoneType" in text:
        return Wrong(f"top_k=None and top_p=None mean no filter: in {name}, apply each filter only when it is given")
    return None


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny models on one CPU thread: many short forward passes, which threads only slow down (many times over
    when other programs keep the cores busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_sampling_loop(answer: Callable, name: str, expected: Callable, seed: int) -> None:
    """Compare `answer` with generate (the same seed, the same tokens) on small random GPTs, naming typical mistakes."""
    model = _gpt(seed=seed)  # block_size 8
    cases = [  # temperature, top_k, top_p, prompt (B, T), new tokens: all of them pass block_size
        (1.0, None, None, _randint(11, (2, 3), seed=seed + 1), 10),
        (0.7, 4, None, _randint(11, (2, 3), seed=seed + 2), 10),
        (1.3, None, 0.8, _randint(11, (3, 5), seed=seed + 3), 10),
        (1.0, 3, 0.6, _randint(11, (2, 4), seed=seed + 4), 8),  # the order of the filters alone
        (0.6, 5, 0.9, _randint(11, (2, 10), seed=seed + 5), 6),  # a prompt longer than block_size
    ]
    outs, raised = [], None  # the learner's tokens for each case; the Wrong for an error it raised
    for number, (temperature, top_k, top_p, idx, new) in enumerate(cases):
        B, T0 = idx.shape
        calls = []  # (grad enabled, training) at each call of the model
        given = copy.deepcopy(model)
        given.register_forward_pre_hook(functools.partial(_record_call, calls))
        torch.manual_seed(_GLOBAL_SEED)  # evaluate restores the global random state afterwards
        knobs = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=_generator(seed + 10 + number))
        try:
            out = answer(given, idx.clone(), new, **knobs)
        except (ValueError, RuntimeError, TypeError) as error:
            raised = _sampling_error(error, name)
            if raised is None:
                raise
            break  # the cases before may show the mistake better than its error does
        wrong_shapes = {
            (B, new): "return the prompt followed by the new tokens, (B, T + max_new_tokens): torch.cat([idx, ...], "
            "dim=1) at each step"
        }
        outs.append(_shape(out, (B, T0 + new), "(B, T + max_new_tokens)", mistakes=wrong_shapes))
        if any(grad for grad, _ in calls):
            raise Wrong(
                f"{name} ran the model with gradients on: sampling needs none, so run the loop under "
                "torch.no_grad() (or decorate the function with it); otherwise every step keeps a graph for nothing"
            )
        if not torch.equal(out[:, :T0], idx):
            raise Wrong("the result must start with the prompt idx, followed by the new tokens")

    def run(number: int, mistake: str | None) -> torch.Tensor:
        temperature, top_k, top_p, idx, new = cases[number]
        generator = _generator(seed + 10 + number)
        if mistake is None:
            return expected(copy.deepcopy(model), idx, new, temperature, top_k, top_p, generator)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_GLOBAL_SEED)
            try:
                return _sampling_with(model, idx, new, temperature, top_k, top_p, generator, mistake)
            except RuntimeError:  # this mistake cannot even draw here (NaN probabilities): it is not the learner's
                return None

    failed = [number for number, out in enumerate(outs) if not torch.equal(out, run(number, None))]
    if raised is not None and not failed:
        raise raised
    if failed:
        first = failed[0]
        knobs = _knobs(*cases[first][:3])
        explains = [m for m in _SAMPLING_MISTAKES if _same_tokens(outs[first], run(first, m))]
        everywhere = [m for m in explains if all(_same_tokens(outs[n], run(n, m)) for n in failed[1:])]
        if everywhere or explains:
            raise Wrong(f"with {knobs}: {_SAMPLING_MISTAKES[(everywhere or explains)[0]]}")
        out, want, T0 = outs[first], run(first, None), cases[first][3].size(1)
        b, t = _position(int((out != want).flatten().nonzero()[0]), out.shape)
        raise Wrong(
            f"with {knobs} and a generator seeded with {seed + 10 + first}, new token {t - T0} of sequence {b} "
            f"should be {int(want[b, t])}, got {int(out[b, t])}: follow generate's steps (the last position's "
            "logits, the temperature, top-k, top-p, softmax, torch.multinomial with the generator), so that the same "
            "seed writes the same text"
        )
    dropout = _gpt(seed=seed + 20, dropout=0.5).train()  # handed over in training mode, as after chapter 06
    modes = []
    dropout.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    idx = _randint(11, (2, 3), seed=seed + 21)
    with torch.no_grad():
        answer(dropout, idx, 4, temperature=1.0, generator=_generator(seed + 22))
    if any(modes):
        raise Wrong(
            f"{name} sampled with dropout on: switch the model to evaluation mode (model.eval()) before the loop, as "
            "generate does; a model fresh from training is in training mode"
        )


@piece("sample", "07_generation", "the sampling loop with temperature, top-k and top-p, without a cache", _sample)
def _verify_sample(sample: Callable) -> None:
    def expected(model, idx, new, temperature, top_k, top_p, generator):
        return _sample(model, idx, new, temperature, top_k, top_p, generator)

    with _one_thread():
        _check_sampling_loop(sample, "sample", expected, seed=260)


@piece(
    "decode_step", "07_generation", "one cached decoding step: only the new tokens go through the model", _decode_step
)
def _verify_decode_step(decode_step: Callable) -> None:
    model = _gpt(seed=250, block_size=16)
    prompt, new, more = _randint(11, (2, 12), seed=251), _randint(11, (2, 1), seed=252), _randint(11, (2, 2), seed=253)
    with torch.no_grad():
        cache = KVCache(model.config, batch_size=2)
        model(prompt, cache)  # prefill: the cache holds 12 positions
        theirs, ours = copy.deepcopy(cache), copy.deepcopy(cache)
        wrong_shapes = {(2, 1, 11): "return the logits of the last position only, (B, V): logits[:, -1]"}
        hint = "(B, V): the logits of the last new position"
        out = _shape(decode_step(model, new.clone(), theirs), (2, 11), hint, mistakes=wrong_shapes)
        expected = _decode_step(model, new, ours)  # (B, V)
        if not _same(out, expected):
            for start_pos, use_cache in ((0, True), (12, False)):
                layers = copy.deepcopy(cache).layers
                x = model.embeddings(new, start_pos=start_pos)  # (B, 1, C)
                for block, layer in zip(model.blocks, layers, strict=True):
                    x = block(x, layer if use_cache else None)
                if _same(out, model.lm_head(model.ln_f(x))[:, -1]):
                    if use_cache:
                        raise Wrong(
                            "the new token got the position vector of position 0, but it sits at position 12: "
                            "pass start_pos=cache.length"
                        )
                    raise Wrong("each block must read and extend its layer's cache: block(x, cache.layers[i])")
            _compare(out, expected)
        if theirs.length != 13:
            raise Wrong(
                f"after one new token the cache should hold 13 positions, it holds {theirs.length}: "
                "each block must extend its layer's cache, block(x, cache.layers[i])"
            )
        out = _shape(decode_step(model, more.clone(), theirs), (2, 11), "(B, V): the logits of the last new position")
        _compare(out, _decode_step(model, more, ours))


def _expected_feeds(prompt_length: int, new: int, block_size: int) -> list[tuple[int, int]]:
    """(positions fed, position of the first) at each step of generate with the cache."""
    feeds = [(min(prompt_length, block_size), 0)]  # the prompt fills the cache
    for step in range(1, new):
        length = prompt_length + step  # the text before this step's token
        feeds.append((block_size, 0) if length > block_size else (1, length - 1))  # refill, or the newest token
    return feeds


def _verify_cached_sample(cached_sample: Callable) -> None:
    """The feeds of the cached loop, then its tokens (see _check_sampling_loop)."""
    model = _gpt(seed=270)  # block_size 8
    idx = _randint(11, (2, 3), seed=271)  # (B, T): 3 + 9 new tokens pass block_size
    fed = []  # (positions, first position) of every call of the embeddings
    given = copy.deepcopy(model)

    def record(module, args, kwargs):
        fed.append((args[0].size(1), args[1] if len(args) > 1 else kwargs.get("start_pos", 0)))

    given.embeddings.register_forward_pre_hook(record, with_kwargs=True)
    error = None
    try:
        cached_sample(given, idx.clone(), 9, temperature=1.0, generator=_generator(272))
    except (ValueError, RuntimeError, TypeError) as raised:  # the feeds so far may say why
        error = raised
    want = _expected_feeds(3, 9, 8)
    if fed == [(min(3 + step, 8), 0) for step in range(9)]:
        raise Wrong(
            "every step fed the whole text from position 0: that is sample without the cache; feed the prompt once "
            "into a KVCache, then only the newest token (decode_step does both)"
        )
    differ = [
        (step, got, expected) for step, (got, expected) in enumerate(zip(fed, want, strict=False)) if got != expected
    ]
    if differ:
        step, (got, start), (expected, position) = differ[0]
        if expected == 1 and got > 1:
            raise Wrong(
                f"step {step} fed {got} positions: with the cache, after the first step only the newest token goes "
                "in, idx[:, -1:]; the cache already holds the keys and values of the others"
            )
        if expected == 1:
            raise Wrong(
                f"at step {step} the newest token went in at position {start}, but it sits at position {position}: "
                "the cache must hold every token before it, so fill it with the prompt first (through the cache, "
                "with decode_step), and then cache.length is the newest token's position"
            )
        if got == 1:
            raise Wrong(
                "once the text is longer than block_size the window slides and every position moves: reset the cache "
                "and refill it from the last block_size tokens"
            )
        raise Wrong(
            f"step {step} fed {got} positions from position {start}: refill the cache from the last block_size "
            "tokens only, idx[:, -block_size:], starting at position 0 (cache.reset() first)"
        )
    if error is not None:
        wrong = _sampling_error(error, "cached_sample")
        if wrong is None:
            raise error
        raise wrong from None
    if fed and len(fed) != len(want):
        raise Wrong(f"{len(want)} new tokens need {len(want)} calls of the model, one per token; yours made {len(fed)}")

    def expected(model, idx, new, temperature, top_k, top_p, generator):
        return _cached_sample(model, idx, new, temperature, top_k, top_p, generator)

    _check_sampling_loop(cached_sample, "cached_sample", expected, seed=280)


@piece(
    "cached_sample",
    "07_generation",
    "the sampling loop with a KV cache: the prompt once, then one token at a time",
    _cached_sample,
)
def _verify_cached_sample_on_one_thread(cached_sample: Callable) -> None:
    with _one_thread():
        _verify_cached_sample(cached_sample)


_ROMEO = dict(prompt="ROMEO:", max_new_tokens=100, temperature=0.8, seed=1)  # tinytorch complete's defaults, seed 1


@piece(
    f"{MILESTONE}romeo_completion",
    "07_generation",
    "milestone: your GPT with the shipped weights and your sample complete ROMEO: as tinytorch complete does",
    _sample,
)
def _verify_milestone_romeo_completion(sample: Callable) -> None:
    from tinytorch.checks import from_notebook  # the registry imports this module: import it when it is complete
    from tinytorch.checkpoint import complete

    if inspect.unwrap(sample) is _sample:  # check("sample", ...) gives tinytorch's until the learner's is built
        raise NotImplementedError("the milestone waits for your sample")
    gpt_class = from_notebook("GPT")  # chapter 05's notebook, next to this one
    if gpt_class is None:
        raise NotImplementedError("the milestone waits for your GPT (chapter 05, saved next to this notebook)")
    mine, shipped, tokenizer = _with_shipped_weights(gpt_class, 155)
    if not hasattr(mine, "config"):
        mine.config = shipped.config  # sample reads block_size from it
    idx = torch.tensor([tokenizer.encode(_ROMEO["prompt"])])  # (1, 6)
    generator = torch.Generator().manual_seed(_ROMEO["seed"])
    with _one_thread():
        out = sample(mine, idx, _ROMEO["max_new_tokens"], temperature=_ROMEO["temperature"], generator=generator)
    out = _shape(out, (1, 6 + _ROMEO["max_new_tokens"]), "(1, 6 + max_new_tokens)")
    got, want = tokenizer.decode(out[0]), complete(**_ROMEO)
    if got != want:
        at = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        raise Wrong(
            f"your GPT and sample part from tinytorch complete at character {at}: {got[max(0, at - 20) : at + 10]!r} "
            f"where it writes {want[max(0, at - 20) : at + 10]!r}; the check of sample above says what differs"
        )


def _min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Logits (B, V) with every token below min_p times the top token's probability set to -inf."""
    probs = logits.softmax(dim=-1)  # (B, V)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values  # (B, 1)
    return logits.masked_fill(probs < threshold, float("-inf"))


def _kv_cache_bytes(config: GPTConfig, batch_size: int) -> int:
    """Bytes of a float32 KV cache of block_size positions for batch_size sequences."""
    return 2 * config.n_layer * batch_size * config.block_size * config.n_embd * 4  # k and v, 4 bytes a number


def _positions(prompt_length: int, max_new_tokens: int, block_size: int, use_cache: bool) -> int:
    """Positions generate feeds the model in all to write max_new_tokens tokens, counted on a small random GPT."""
    config = GPTConfig(vocab_size=50, block_size=block_size, n_layer=1, n_head=2, n_embd=16)
    with torch.random.fork_rng(devices=[]):  # GPT() draws its initial weights from the global generator
        model = GPT(config)
    fed = []  # the number of positions of every call
    model.embeddings.register_forward_pre_hook(lambda module, args: fed.append(args[0].size(1)))
    generate(
        model, torch.zeros(1, prompt_length, dtype=torch.long), max_new_tokens, do_sample=False, use_cache=use_cache
    )
    return sum(fed)


def _last_outputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n: int) -> torch.Tensor:
    """Outputs of the last n queries against all keys and values: (B, nh, n, hs)."""
    return attention_weights(q[:, :, -n:], k) @ v  # (B, nh, n, T) @ (B, nh, T, hs) -> (B, nh, n, hs)


@piece("my_min_p_filter", "07_generation", "min-p: drop the tokens far less likely than the top one", _min_p_filter)
def _verify_min_p_filter(my_min_p_filter: Callable) -> None:
    logits = _randn(6, 76, seed=360) * 3  # (B, V)
    probs = logits.softmax(dim=-1)  # (B, V)
    top = torch.arange(6), logits.argmax(dim=-1)  # where each row's most likely token is
    for min_p in (0.05, 0.1, 0.5, 1.0):
        call = f"my_min_p_filter(logits, {min_p})"
        given = logits.clone()
        out = _shape(my_min_p_filter(given, min_p), (6, 76), what=f"{call}'s result").detach()
        if not torch.equal(given, logits):
            raise Wrong("my_min_p_filter changed its input: use masked_fill, not masked_fill_, and return a new tensor")
        expected = _min_p_filter(logits, min_p)
        keep, kept = torch.isfinite(expected), torch.isfinite(out)  # (B, V) each
        if kept.all() and (out[~keep] == 0).all():
            raise Wrong("the dropped logits must be -inf, not 0: a logit of 0 still gets a share of the probability")
        if not kept[top].all():
            raise Wrong(
                f"in {call} the most likely token was dropped: it always stays; drop only the tokens strictly "
                "below min_p × its probability (<, not <=)"
            )
        if not torch.equal(kept, keep):
            if torch.equal(kept, probs >= min_p):
                raise Wrong(
                    f"{call}: the threshold is min_p times the most likely token's probability, not min_p itself"
                )
            if torch.equal(kept, logits >= min_p * logits.max(dim=-1, keepdim=True).values):
                raise Wrong(f"{call}: compare probabilities, not logits: probs = logits.softmax(dim=-1)")
            b = int((kept != keep).any(dim=-1).nonzero()[0])
            raise Wrong(
                f"with min_p = {min_p}, row {b} keeps {int(kept[b].sum())} tokens, expected {int(keep[b].sum())}: "
                "keep the tokens whose probability is at least min_p × the most likely token's"
            )
        if not torch.equal(out[keep], logits[keep]):
            raise Wrong(
                f"{call}: the kept logits must stay as they were; only the dropped ones become -inf "
                "(return logits, not probabilities)"
            )


@piece("my_kv_cache_bytes", "07_generation", "the bytes of a float32 KV cache", _kv_cache_bytes)
def _verify_kv_cache_bytes(my_kv_cache_bytes: Callable) -> None:
    small = GPTConfig(vocab_size=11, block_size=12, n_layer=3, n_head=2, n_embd=10)
    small_text = "GPTConfig(vocab_size=11, block_size=12, n_layer=3, n_head=2, n_embd=10)"
    for config, batch_size, text in ((GPTConfig.from_preset("gpt2"), 1, _GPT2_TEXT), (small, 5, small_text)):
        call = f"my_kv_cache_bytes({text}, {batch_size})"
        got = _number(my_kv_cache_bytes(config, batch_size), f"{call}'s result")
        want = KVCache(config, batch_size, device="meta").memory_bytes()  # the buffers' size, none allocated
        if got == want:
            continue
        mistakes = [
            (1 / 2, "a cache keeps keys and values: 2 tensors per block"),
            (1 / 4, "a float32 number takes 4 bytes"),
            (1 / config.n_layer, "each of the n_layer blocks keeps its own keys and values"),
            (1 / batch_size, "each sequence of the batch has its own keys and values"),
        ]
        hint = next((hint for factor, hint in mistakes if _close(got, want * factor)), "")
        raise Wrong(
            f"{call} returned {got:,.0f}: "
            + (hint or f"too {'large' if got > want else 'small'}; count the numbers in k and v of every block")
        )


@piece("my_positions", "07_generation", "the positions generate feeds the model, with and without a cache", _positions)
def _verify_positions(my_positions: Callable) -> None:
    block_size = 16
    for prompt_length, new, use_cache in ((3, 10, True), (3, 10, False), (5, 30, True), (5, 30, False), (20, 8, True)):
        call = f"my_positions({prompt_length}, {new}, {block_size}, {use_cache})"
        got = _number(my_positions(prompt_length, new, block_size, use_cache), f"{call}'s result")
        want = _positions(prompt_length, new, block_size, use_cache)
        if got == want:
            continue
        windows = [min(prompt_length + step, block_size) for step in range(new)]  # the context at each step
        if use_cache and got == sum(windows):
            raise Wrong(
                f"{call} returned {got:.0f}, as many as without the cache: with it, after the first step only the "
                "newest token goes in, until the text grows past block_size"
            )
        if not use_cache and got == sum(prompt_length + step for step in range(new)):
            raise Wrong(f"{call} returned {got:.0f}: each step feeds the whole text, but at most block_size tokens")
        if use_cache and got == min(prompt_length, block_size) + new - 1:
            raise Wrong(
                f"{call} returned {got:.0f}: once the text is longer than block_size the cached path refills its "
                "cache from the last block_size tokens, at every step"
            )
        raise Wrong(
            f"{call} returned {got:.0f}, but generate feeds the model {'more' if got < want else 'fewer'} positions"
        )


@piece("my_last_outputs", "07_generation", "attention outputs of the last n queries against all keys", _last_outputs)
def _verify_last_outputs(my_last_outputs: Callable) -> None:
    B, nh, T, hs = 2, 2, 7, 4
    q, k, v = (_randn(B, nh, T, hs, seed=seed) for seed in (370, 371, 372))
    full = attention_weights(q, k) @ v  # (B, nh, T, hs): every query
    for n in (3, 1, 7):
        call = f"my_last_outputs(q, k, v, {n}) with q, k and v of shape {(B, nh, T, hs)}"
        wrong_shapes = {
            (B, nh, T, hs): f"{call}: expected shape {(B, nh, n, hs)}, got {(B, nh, T, hs)}: keep the last n queries"
        }
        hint = "(B, nh, n, hs): an output for each of the last n queries"
        out = my_last_outputs(q.clone(), k.clone(), v.clone(), n)
        out = _shape(out, (B, nh, n, hs), hint, f"{call}'s result", wrong_shapes)
        if _same(out, full[:, :, -n:]):
            continue
        scores = q[:, :, -n:] @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, n, T)
        square = torch.ones(n, T, dtype=torch.bool).tril()  # (n, T): the mask of the first n queries
        if _same(out, F.softmax(scores.masked_fill(~square, float("-inf")), dim=-1) @ v):
            raise Wrong(
                "the queries need the offset mask: use attention_weights (it shifts the mask when there are more "
                "keys than queries)"
            )
        if _same(out, attention_weights(q[:, :, -n:], k[:, :, -n:]) @ v[:, :, -n:]):
            raise Wrong("the last n queries see all T keys and values, not only the last n: pass all of k and v")
        if _same(out, F.softmax(scores, dim=-1) @ v):
            raise Wrong("the queries see the keys after them: mask the future with attention_weights")
        _compare(out, full[:, :, -n:])


add_hints(
    {
        "greedy_decode": (
            "Generating is a loop: run the model, take the single most likely next token of the last position, "
            "append it, and repeat; the model can only see block_size tokens.",
            "Under torch.no_grad(), max_new_tokens times: crop idx to its last block_size columns, take the logits of "
            "the last position, argmax over the vocabulary (keep a dimension of size 1), and torch.cat it to idx "
            "along the time dimension.",
        ),
        "apply_temperature": (
            "Temperature rescales the logits before the softmax: below 1 it sharpens the distribution, above 1 it "
            "flattens it.",
            "Divide the logits by the temperature; nothing else changes.",
        ),
        "top_k_logits": (
            "Keep the k largest logits of each row where they are, and make every other token impossible (-inf); k "
            "may be larger than V.",
            "logits.topk gives each row's k largest values and their positions; start from a tensor full of -inf of "
            "the logits' shape and put the values back at their positions (scatter), with k capped at V.",
        ),
        "top_p_logits": (
            "The nucleus is the smallest set of most likely tokens whose probabilities add up to at least p; the "
            "chapter's keep_nucleus finds it for one row of probabilities.",
            "Start from a tensor full of -inf, and for each row: softmax it, ask keep_nucleus for the ids to keep, and "
            "copy that row's logits at those ids.",
        ),
        "sample": (
            "It is Build 2's sample_loop with the knobs in between: each step turns the last position's logits into a "
            "filtered distribution and draws from it, in generate's order (temperature, top-k, top-p).",
            "Switch the model to evaluation mode and work under torch.no_grad(). max_new_tokens times: crop to the "
            "last block_size tokens, take the last position's logits (B, V), pass them through apply_temperature, then "
            "through top_k_logits and top_p_logits for the knobs that are not None, softmax over the vocabulary, draw "
            "one id per row with torch.multinomial and the generator (a (B, 1) tensor), and cat it to idx along dim 1.",
        ),
        "cached_sample": (
            "Same choice of the next token as sample; only what goes into the model changes: the prompt once, then "
            "one token per step, each at its own position, which the cache's length tells.",
            "Make a KVCache for the model's config and the batch size. At each step: if the cache is still empty or "
            "the text has grown past block_size, reset it and give decode_step the last block_size tokens; otherwise "
            "give decode_step only the last token (a (B, 1) slice). Then choose and append as sample does.",
        ),
        "milestone_romeo_completion": (
            "Nothing new to write: this milestone runs your GPT of chapter 05 with the shipped weights and your "
            "sample, and compares the text with tinytorch complete's. Save 05_gpt.ipynb next to this notebook.",
            "If it reads not yet, the check of GPT (chapter 05) or of sample is not built yet; if it reads wrong, "
            "the checks of GPT and sample say what differs.",
        ),
        "decode_step": (
            "With a cache, only the new tokens go through the model; they sit at positions after those already "
            "cached, and each layer adds their keys and values to its own cache.",
            "Embed new_ids starting at position cache.length (model.embeddings takes start_pos), run each block with "
            "its layer's cache (zip the blocks with cache.layers), then ln_f and lm_head, and return the last "
            "position's logits (B, V).",
        ),
        "my_min_p_filter": (
            "min-p keeps a token if its probability is at least min_p times the probability of the row's most likely "
            "token; the rest become impossible.",
            "Softmax each row, take the row's largest probability (keepdim=True), multiply by min_p for a threshold, "
            "and masked_fill the logits below it with -inf.",
        ),
        "my_kv_cache_bytes": (
            "The cache holds a key and a value vector for every layer, every sequence of the batch and every position, "
            "each n_embd numbers of 4 bytes.",
            "Multiply: keys and values (2) × layers × batch × block_size × n_embd × 4 bytes.",
        ),
        "my_positions": (
            "Count, step by step, how many positions the model is given. Without a cache every step feeds the whole "
            "window; with one only the first step and steps past block_size do.",
            "Loop over the new tokens: the text before the token has prompt_length + step tokens; add the window "
            "(that length, at most block_size) when there is no cache, at the first step, or when the text no "
            "longer fits the context; otherwise add 1.",
        ),
        "my_last_outputs": (
            "The last n queries still attend to every key before them; only the rows of the attention map for those "
            "queries are needed.",
            "Take the last n query positions, compute their attention weights against all the keys with the chapter's "
            "attention_weights (it knows the mask for fewer queries than keys), and multiply by v.",
        ),
    }
)
