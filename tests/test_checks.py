"""The checks of the learner's pieces (tinytorch.checks): verdicts, messages in the learner's terms, check()."""

import json
import math
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinytorch import checks
from tinytorch.attention import causal_mask
from tinytorch.checks import PIECES, Result, check, evaluate, register_exercise
from tinytorch.generation import KVCache
from tinytorch.gpt import next_token_loss

ROOT = Path(__file__).resolve().parents[1]

STUCK = "(the cells below use tinytorch's version until yours is built)"

COURSE = {
    "02_embeddings": ["encode", "decode", "embed"],
    "02b_subwords": ["count_pairs", "merge", "train_merges", "encode_chunk"],
    "03_attention": [
        "attention_scores",
        "scale_scores",
        "mask_future",
        "softmax_rows",
        "causal_weights",
        "weighted_sum",
        "split_heads",
        "merge_heads",
        "CausalSelfAttention",
    ],
    "04_blocks": ["layer_norm", "gelu", "mlp_forward", "block_forward", "LayerNorm", "MLP", "Block"],
    "05_gpt": ["gpt_forward", "cross_entropy", "lm_loss", "GPT", "milestone_shakespeare_logits"],
    "06_training": [
        "random_windows",
        "lr_at",
        "step_on_batch",
        "evaluate_loss",
        "train_loop",
        "milestone_shakespeare_run",
    ],
    "07_generation": [
        "greedy_decode",
        "apply_temperature",
        "top_k_logits",
        "top_p_logits",
        "sample",
        "decode_step",
        "cached_sample",
        "milestone_romeo_completion",
    ],
    "11_modern": ["RMSNorm", "rotary_cos_sin", "apply_rotary", "SwiGLU", "ModernAttention", "orthogonalize", "Muon"],
    "12_finetune": ["LoRALinear", "add_lora", "merge_lora"],
}


def not_written(*args, **kwargs):
    raise NotImplementedError("not written yet")


# every piece


EXPERIMENTS = ["my_short_run", "my_one_play_run"]  # exercises on a notebook's data: no stand-in (test_exercise_checks)
MILESTONES = [name for name in PIECES if name.startswith("milestone_")]  # the learner's whole model: tested below


def test_the_issue_pieces_are_registered_in_course_order():
    course = [(chapter, name) for chapter, names in COURSE.items() for name in names]
    registered = [(piece.chapter, name) for name, piece in PIECES.items() if not name.startswith("my_")]
    assert registered == course


@pytest.mark.parametrize("name", [name for name in PIECES if name not in EXPERIMENTS + MILESTONES])
def test_the_reference_reads_built(name):
    assert evaluate(name, PIECES[name].reference) == Result(name, "built", "")


@pytest.mark.parametrize("name", list(PIECES))
def test_a_stub_reads_not_yet(name):
    assert evaluate(name, not_written) == Result(name, "not yet", "")


@pytest.mark.parametrize("name", list(PIECES))
def test_something_that_is_not_a_function_reads_wrong(name):
    result = evaluate(name, 42)
    assert result == Result(name, "wrong", f"{name} is not a function: define it with def {name}(...):")


@pytest.mark.parametrize("name", list(PIECES))
def test_every_piece_says_what_it_is_in_one_line(name):
    piece = PIECES[name]
    assert piece.name == name and piece.what and "\n" not in piece.what and callable(piece.verify)


def test_an_unknown_name_is_our_bug_and_lists_the_known_ones():
    known = "my_batch_logits, my_too_long_message, my_config"
    with pytest.raises(ValueError, match=f"no piece named 'atention_scores'; known pieces: {known}, "):
        evaluate("atention_scores", not_written)


def test_a_stub_called_by_the_answer_reads_not_yet():
    def causal_weights(q, k):
        return F.softmax(not_written(q, k), dim=-1)

    assert evaluate("causal_weights", causal_weights).status == "not yet"


# typical mistakes, each a small wrong function


def encode_with_ord(text, chars):
    return [ord(c) for c in text]


def encode_off_by_one(text, chars):
    return [chars.index(c) + 1 for c in text]


def encode_as_tensor(text, chars):
    return torch.tensor([chars.index(c) for c in text])


def decode_as_list(ids, chars):
    return [chars[i] for i in ids]


def embed_without_positions(idx, wte, wpe):
    return wte[idx]


def embed_positions_from_token_ids(idx, wte, wpe):
    return wte[idx] + wpe[idx]


def scores_swapped(q, k):
    return k @ q.transpose(-2, -1)


def scores_for_three_dimensions_only(q, k):
    return q @ k.transpose(1, 2)


def scale_not_scaled(scores, head_size):
    return scores


def scale_by_head_size(scores, head_size):
    return scores / head_size


def mask_with_zero(scores):
    T = scores.size(-1)
    return scores.masked_fill(~causal_mask(T, T), 0.0)


def mask_the_past(scores):
    T = scores.size(-1)
    return scores.masked_fill(causal_mask(T, T), float("-inf"))


def mask_the_diagonal_too(scores):
    T = scores.size(-1)
    return scores.masked_fill(~causal_mask(T, T).tril(diagonal=-1), float("-inf"))


def mask_in_place(scores):
    T = scores.size(-1)
    return scores.masked_fill_(~causal_mask(T, T), float("-inf"))


def softmax_over_columns(scores):
    e = (scores - scores.max(dim=-2, keepdim=True).values).exp()
    return e / e.sum(dim=-2, keepdim=True)


def softmax_without_the_max(scores):
    e = scores.exp()
    return e / e.sum(dim=-1, keepdim=True)


def softmax_max_without_values(scores):
    e = (scores - scores.max(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def weights_masked_after_softmax(q, k):
    T = q.size(-2)
    weights = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights.masked_fill(~causal_mask(T, T), 0.0)


def weights_without_mask(q, k):
    return F.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)


def weights_unscaled(q, k):
    T = q.size(-2)
    return F.softmax((q @ k.transpose(-2, -1)).masked_fill(~causal_mask(T, T), float("-inf")), dim=-1)


def weighted_sum_transposed(weights, v):
    return weights.transpose(-2, -1) @ v


def split_heads_without_transpose(x, n_head):
    B, T, C = x.shape
    return x.view(B, n_head, T, C // n_head)


def split_heads_stopping_before_transpose(x, n_head):
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head)


def merge_heads_without_transpose(y):
    B, nh, T, hs = y.shape
    return y.reshape(B, T, nh * hs)


def merge_heads_view_without_contiguous(y):
    B, nh, T, hs = y.shape
    return y.transpose(1, 2).view(B, T, nh * hs)


def layer_norm_unbiased(x, weight, bias, eps=1e-5):
    mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True)  # torch's var is unbiased by default
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def layer_norm_eps_outside(x, weight, bias, eps=1e-5):
    mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / (torch.sqrt(var) + eps) * weight + bias


def layer_norm_over_positions(x, weight, bias, eps=1e-5):
    mean, var = x.mean(dim=-2, keepdim=True), x.var(dim=-2, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def layer_norm_needing_a_bias(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, weight.shape, eps=eps) * weight + bias


def gelu_exact(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def gelu_relu(x):
    return torch.relu(x)


def gelu_with_square(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**2)))


def mlp_without_gelu(x, fc, proj):
    return proj(fc(x))


def mlp_with_relu(x, fc, proj):
    return proj(torch.relu(fc(x)))


def block_post_norm(x, block):
    x = block.ln_1(x + block.attn(x))
    return block.ln_2(x + block.mlp(x))


def block_without_residual(x, block):
    x = block.attn(block.ln_1(x))
    return block.mlp(block.ln_2(x))


def block_mlp_reading_the_input(x, block):
    h = x + block.attn(block.ln_1(x))
    return h + block.mlp(block.ln_2(x))


def gpt_without_lm_head(model, idx):
    x = model.embeddings(idx)
    for block in model.blocks:
        x = block(x)
    return model.ln_f(x)


def gpt_without_ln_f(model, idx):
    x = model.embeddings(idx)
    for block in model.blocks:
        x = block(x)
    return model.lm_head(x)


def gpt_skipping_a_block(model, idx):
    return model.lm_head(model.ln_f(model.blocks[0](model.embeddings(idx))))


def cross_entropy_log2(logits, targets):
    probs = F.softmax(logits, dim=-1)
    return -torch.log2(probs.gather(-1, targets[..., None])).mean()


def cross_entropy_sum(logits, targets):
    return -F.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).sum()


def cross_entropy_without_minus(logits, targets):
    return F.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).mean()


def cross_entropy_over_positions(logits, targets):
    return -F.log_softmax(logits, dim=1).gather(-1, targets[..., None]).mean()


def cross_entropy_overflowing(logits, targets):
    e = logits.exp()
    return -torch.log((e / e.sum(dim=-1, keepdim=True)).gather(-1, targets[..., None])).mean()


def lm_loss_unshifted(model, ids):
    x = ids[:, :-1]
    return next_token_loss(model(x), x)


def lm_loss_shifted_the_wrong_way(model, ids):
    return next_token_loss(model(ids[:, 1:]), ids[:, :-1])


def lm_loss_as_float(model, ids):
    return next_token_loss(model(ids[:, :-1]), ids[:, 1:]).item()


def windows(ids, starts, block_size, shift=1):
    return torch.stack([ids[s + shift : s + shift + block_size] for s in starts.tolist()]).long()


def windows_not_shifted(ids, batch_size, block_size, generator):
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
    return windows(ids, starts, block_size, 0), windows(ids, starts, block_size, 0)


def windows_past_the_end(ids, batch_size, block_size, generator):
    starts = torch.randint(len(ids), (batch_size,), generator=generator)
    return windows(ids, starts, block_size, 0), windows(ids, starts, block_size)


def windows_without_the_generator(ids, batch_size, block_size, generator):
    starts = torch.randint(len(ids) - block_size, (batch_size,))
    return windows(ids, starts, block_size, 0), windows(ids, starts, block_size)


def windows_in_uint8(ids, batch_size, block_size, generator):
    x, y = windows_without_the_generator(ids, batch_size, block_size, generator)
    return x.to(torch.uint8), y.to(torch.uint8)


def train_step_without_zero_grad(model, optimizer, x, y, grad_clip):
    loss = next_token_loss(model(x), y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def train_step_without_clipping(model, optimizer, x, y, grad_clip):
    optimizer.zero_grad()
    loss = next_token_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_step_without_step(model, optimizer, x, y, grad_clip):
    optimizer.zero_grad()
    loss = next_token_loss(model(x), y)
    loss.backward()
    return loss.item()


def train_step_returning_a_tensor(model, optimizer, x, y, grad_clip):
    optimizer.zero_grad()
    loss = next_token_loss(model(x), y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss


def cosine(step, warmup_steps, max_steps, lr, min_lr):
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def lr_at_warming_up_from_zero(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * step / warmup_steps
    return cosine(step, warmup_steps, max_steps, lr, min_lr)


def lr_at_without_warmup(step, warmup_steps, max_steps, lr, min_lr):
    return cosine(step, 0, max_steps, lr, min_lr)


def lr_at_decaying_linearly(step, warmup_steps, max_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    return min_lr + (lr - min_lr) * (1 - (step - warmup_steps) / (max_steps - warmup_steps))


def mean_loss(model, batches):
    return sum(next_token_loss(model(x), y).item() for x, y in batches) / len(batches)


def evaluate_loss_in_training_mode(model, batches):
    with torch.no_grad():
        return mean_loss(model, batches)


def evaluate_loss_leaving_eval_mode_on(model, batches):
    model.eval()
    with torch.no_grad():
        return mean_loss(model, batches)


def evaluate_loss_with_gradients(model, batches):
    was_training = model.training
    model.eval()
    loss = mean_loss(model, batches)
    model.train(was_training)
    return loss


def greedy_without_crop(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        idx = torch.cat([idx, model(idx)[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return idx


def greedy_from_the_first_position(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        idx = torch.cat([idx, model(idx[:, -8:])[:, 0].argmax(dim=-1, keepdim=True)], dim=1)
    return idx


def greedy_returning_only_new_tokens(model, idx, max_new_tokens):
    return greedy_without_crop(model, idx, max_new_tokens)[:, idx.size(1) :]


def temperature_multiplied(logits, temperature):
    return logits * temperature


def top_k_with_zeros(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, 0.0)


def top_k_keeping_one_more(logits, k):
    kth = torch.topk(logits, k + 1, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_without_min(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits, p, keep_first):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    drop = sorted_logits.softmax(dim=-1).cumsum(dim=-1) > p  # drops the token that crosses p
    if keep_first:
        drop[:, 0] = False
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def top_p_dropping_the_first_token(logits, p):
    return top_p(logits, p, keep_first=False)


def top_p_dropping_the_crossing_token(logits, p):
    return top_p(logits, p, keep_first=True)


def cached_step(model, new_ids, cache, start_pos, use_cache=True):
    x = model.embeddings(new_ids, start_pos=start_pos)
    for i, block in enumerate(model.blocks):
        x = block(x, cache.layers[i] if use_cache else None)
    return model.lm_head(model.ln_f(x))  # (B, T_new, V)


def decode_step_at_position_zero(model, new_ids, cache):
    return cached_step(model, new_ids, cache, 0)[:, -1]


def decode_step_without_the_cache(model, new_ids, cache):
    return cached_step(model, new_ids, cache, cache.length, use_cache=False)[:, -1]


def decode_step_returning_every_position(model, new_ids, cache):
    return cached_step(model, new_ids, cache, cache.length)


def merge_pair(ids, pair, new_id):
    return checks._merge(ids, pair, new_id)


def count_pairs_without_overlaps(ids):
    counts, i = {}, 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def count_pairs_without_the_last(ids):
    return dict(Counter(pairwise(ids[:-1])))


def count_pairs_of_an_id_with_itself(ids):
    return dict(Counter(zip(ids, ids, strict=True)))


def count_pairs_as_a_list(ids):
    return list(pairwise(ids))


def merge_only_the_first(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2 :]
    return list(ids)


def merge_skipping_one(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out


def merge_in_place(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            ids[i : i + 2] = [new_id]
        i += 1
    return ids


def merge_right_to_left(ids, pair, new_id):
    out, i = [], len(ids) - 1
    while i >= 0:
        if i > 0 and (ids[i - 1], ids[i]) == pair:
            out.append(new_id)
            i -= 2
        else:
            out.append(ids[i])
            i -= 1
    return out[::-1]


def train_merges_without_merging(ids, num_merges):
    counts = Counter(pairwise(ids))
    return [min(counts, key=lambda p: (-counts[p], p))] * num_merges


def train_merges_from_id_0(ids, num_merges):
    merges = []
    for i in range(num_merges):
        counts = Counter(pairwise(ids))
        pair = min(counts, key=lambda p: (-counts[p], p))
        ids = merge_pair(ids, pair, i)
        merges.append(pair)
    return merges


def train_merges_first_of_the_most_frequent(ids, num_merges):
    merges = []
    for i in range(num_merges):
        counts = Counter(pairwise(ids))
        pair = max(counts, key=counts.get)  # the first pair counted, of those most frequent
        ids = merge_pair(ids, pair, 256 + i)
        merges.append(pair)
    return merges


def encode_chunk_first_found(ids, ranks):
    merged = True
    while merged:
        merged = False
        for pair in pairwise(ids):
            if pair in ranks:
                ids, merged = merge_pair(ids, pair, ranks[pair]), True
                break
    return ids


def encode_chunk_one_merge(ids, ranks):
    pair = min(pairwise(ids), key=lambda p: ranks.get(p, math.inf), default=None)
    return merge_pair(ids, pair, ranks[pair]) if pair in ranks else ids


# chapter 11's functions: rotary angles, the rotation, Newton-Schulz


def angles_of(head_size, block_size, theta=10000.0, exponent_step=2, first_position=0):
    rates = theta ** -(torch.arange(0, head_size // 2, dtype=torch.float32) * exponent_step / head_size)
    return torch.outer(torch.arange(first_position, first_position + block_size, dtype=torch.float32), rates)


def rotary_cos_sin_interleaved(head_size, block_size, theta=10000.0):
    angles = angles_of(head_size, block_size, theta).repeat_interleave(2, dim=-1)  # Meta's layout
    return angles.cos(), angles.sin()


def rotary_cos_sin_with_rates_of_one_over_hs(head_size, block_size, theta=10000.0):
    angles = angles_of(head_size, block_size, theta, exponent_step=1).repeat(1, 2)
    return angles.cos(), angles.sin()


def rotary_cos_sin_from_position_one(head_size, block_size, theta=10000.0):
    angles = angles_of(head_size, block_size, theta, first_position=1).repeat(1, 2)
    return angles.cos(), angles.sin()


def rotary_cos_sin_of_half_width(head_size, block_size, theta=10000.0):
    angles = angles_of(head_size, block_size, theta)
    return angles.cos(), angles.sin()


def rotary_cos_sin_ignoring_theta(head_size, block_size, theta=10000.0):
    angles = angles_of(head_size, block_size).repeat(1, 2)
    return angles.cos(), angles.sin()


def apply_rotary_to_adjacent_pairs(x, cos, sin):
    half = x.size(-1) // 2
    even, odd = x[..., 0::2], x[..., 1::2]  # pairs (2i, 2i + 1)
    c, s = cos[..., :half], sin[..., :half]
    return torch.stack([even * c - odd * s, even * s + odd * c], dim=-1).flatten(-2)


def apply_rotary_with_the_sign_on_the_first_half(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([x2, -x1], dim=-1) * sin).to(x.dtype)


def apply_rotary_in_float32(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin  # float32 for a bfloat16 x


def apply_rotary_in_place(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x.mul_(cos).add_(rotated * sin)


QUINTIC = (3.4445, -4.7750, 2.0315)


def newton_schulz(G, steps=5, eps=1e-7, coefficients=QUINTIC, scale=True, turn_back=True, clamp=True):
    a, b, c = coefficients
    X = G.bfloat16()
    tall = G.size(0) > G.size(1)
    X = X.mT if tall else X
    if scale:
        X = X / (X.norm().clamp(min=eps) if clamp else X.norm())
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall and turn_back else X


def orthogonalize_without_scaling(G, steps=5, eps=1e-7):
    return newton_schulz(G, steps, eps, scale=False)


def orthogonalize_without_turning_back(G, steps=5, eps=1e-7):
    return newton_schulz(G, steps, eps, turn_back=False)


def orthogonalize_with_cubic_coefficients(G, steps=5, eps=1e-7):
    return newton_schulz(G, steps, eps, coefficients=(1.5, -0.5, 0.0))


def orthogonalize_always_five_steps(G, steps=5, eps=1e-7):
    return newton_schulz(G, 5, eps)


def orthogonalize_without_clamping(G, steps=5, eps=1e-7):
    return newton_schulz(G, steps, eps, clamp=False)


SQRT = "√"
MISTAKES = [
    # (piece, wrong answer, the message, or the start of it)
    (
        "encode",
        encode_with_ord,
        "'J' should get id 10, its index in chars, got 74: ids are positions in the vocabulary",
    ),
    ("encode", encode_off_by_one, "'J' should get id 10, its index in chars, got 11: off by one"),
    ("encode", encode_as_tensor, "encode must return a list of ints, got a tensor"),
    ("decode", decode_as_list, "decode must return one string: join the characters with ''.join"),
    ("embed", embed_without_positions, "the same token at two positions gets the same vector: add the position"),
    ("embed", embed_positions_from_token_ids, "the positions were looked up with the token ids"),
    ("count_pairs", count_pairs_without_overlaps, "[7, 7, 7] holds (7, 7) twice, at positions 0-1 and 1-2"),
    ("count_pairs", count_pairs_without_the_last, "count_pairs([1, 2, 3, 1, 2]) leaves out the last pair, (1, 2)"),
    ("count_pairs", count_pairs_of_an_id_with_itself, "count_pairs([1, 2, 3, 1, 2]) counts (1, 1), which is not a"),
    ("count_pairs", count_pairs_as_a_list, "count_pairs([1, 2, 3, 1, 2]) must return a dict {(a, b): count}"),
    ("merge", merge_only_the_first, "merge([1, 2, 3, 1, 2], (1, 2), 99) returned [99, 3, 1, 2]: only the first"),
    ("merge", merge_skipping_one, "merge([1, 2, 3, 1, 2], (1, 2), 99) returned [99, 2, 3, 99, 2]: a merged pair's"),
    ("merge", merge_in_place, "merge([1, 2, 3, 1, 2], (1, 2), 99) changed the list it was given"),
    ("merge", merge_right_to_left, "merge([7, 7, 7], (7, 7), 256) returned [7, 256]: merge from left to right"),
    ("train_merges", train_merges_without_merging, "train_merges(list('aaabdaaabac'.encode()), 3): merge 1 repeats"),
    ("train_merges", train_merges_from_id_0, "train_merges(list('aaabdaaabac'.encode()), 3): merge 1, (0, 97), is not"),
    (
        "train_merges",
        train_merges_first_of_the_most_frequent,
        "train_merges(list('aaabdaaabac'.encode()), 3): at merge 1, (256, 97) and (97, 98) both occur 2 times; on a "
        "tie take the smaller pair",
    ),
    ("encode_chunk", encode_chunk_first_found, "encode_chunk([97, 98, 99, 100], ranks) returned [257, 99, 100]: merge"),
    ("encode_chunk", encode_chunk_one_merge, "encode_chunk([97, 98, 99, 100], ranks) returned [97, 256, 100] after"),
    ("attention_scores", scores_swapped, "scores[t, j] must be q_t · k_j; yours is k_t · q_j: did you swap q and k?"),
    ("attention_scores", scores_for_three_dimensions_only, "with q and k of shape (2, 3, 5, 4) it raised RuntimeError"),
    ("mask_future", mask_with_zero, "hidden scores must be -inf, not 0: softmax still gives a score of 0 a weight"),
    ("mask_future", mask_the_past, "the past is hidden instead of the future"),
    ("mask_future", mask_the_diagonal_too, "a token may look at itself: keep the diagonal"),
    ("mask_future", mask_in_place, "your mask_future changed its input: use masked_fill, not masked_fill_"),
    ("softmax_rows", softmax_over_columns, "the columns sum to 1, the rows must: sum over dim=-1"),
    ("softmax_rows", softmax_without_the_max, "softmax overflows on large scores: subtract each row's max before exp"),
    ("softmax_rows", softmax_max_without_values, "calling softmax_rows raised TypeError"),
    ("causal_weights", weights_masked_after_softmax, "row 0 sums to 0."),
    ("causal_weights", weights_without_mask, "row 0 puts weight 0."),
    ("causal_weights", weights_unscaled, f"the weights are too sharp: did you divide the scores by {SQRT}hs?"),
    ("weighted_sum", weighted_sum_transposed, "output 0 mixes in values of later positions: use weights @ v"),
    (
        "split_heads",
        split_heads_without_transpose,
        "head 0 at position 1 should hold x[:, 1, :hs]: view as (B, T, nh, hs), then transpose(1, 2)",
    ),
    (
        "split_heads",
        split_heads_stopping_before_transpose,
        "expected shape (2, 3, 5, 4), got (2, 5, 3, 4): transpose(1, 2) puts the heads before the positions",
    ),
    (
        "merge_heads",
        merge_heads_without_transpose,
        "position 0's output holds numbers from other positions: transpose(1, 2) back before joining the heads",
    ),
    ("merge_heads", merge_heads_view_without_contiguous, "calling merge_heads raised RuntimeError: view size is not"),
    ("layer_norm", layer_norm_unbiased, "LayerNorm: the variance must be the biased one (unbiased=False)"),
    ("layer_norm", layer_norm_eps_outside, "eps goes inside the square root: sqrt(var + eps)"),
    ("layer_norm", layer_norm_over_positions, "normalise each token's C numbers: mean and variance over dim=-1"),
    ("layer_norm", layer_norm_needing_a_bias, "bias may be None"),
    ("gelu", gelu_exact, "that is the exact GELU; GPT-2 uses the tanh approximation 0.5·x·(1 + tanh("),
    ("gelu", gelu_relu, "that is ReLU"),
    ("gelu", gelu_with_square, "use x³ inside the tanh"),
    ("mlp_forward", mlp_without_gelu, "there is no GELU between fc and proj: two Linear layers in a row are one"),
    ("mlp_forward", mlp_with_relu, "that is ReLU between fc and proj"),
    ("block_forward", block_post_norm, "normalise the branch's input, not the sum: x = x + attn(ln_1(x))"),
    ("block_forward", block_without_residual, "the block must add to x: x = x + ..."),
    ("block_forward", block_mlp_reading_the_input, "the MLP must read the updated stream"),
    ("gpt_forward", gpt_without_lm_head, "expected shape (2, 6, 11), got (2, 6, 16): apply lm_head"),
    ("gpt_forward", gpt_without_ln_f, "the final LayerNorm is missing"),
    ("gpt_forward", gpt_skipping_a_block, "every block must run"),
    ("cross_entropy", cross_entropy_log2, "use the natural log: the loss is in nats"),
    ("cross_entropy", cross_entropy_sum, "take the mean over the B·T = 8 positions, not the sum"),
    ("cross_entropy", cross_entropy_without_minus, "the loss is negative"),
    ("cross_entropy", cross_entropy_over_positions, "the softmax must run over the vocabulary, dim=-1"),
    ("cross_entropy", cross_entropy_overflowing, "the loss overflows on large logits"),
    (
        "lm_loss",
        lm_loss_unshifted,
        "the targets must be the inputs shifted by one: inputs ids[:, :-1], targets ids[:, 1:]",
    ),
    ("lm_loss", lm_loss_shifted_the_wrong_way, "shifted the wrong way"),
    ("lm_loss", lm_loss_as_float, "return the loss tensor, not a float"),
    ("random_windows", windows_not_shifted, "y must be x shifted left by one"),
    ("random_windows", windows_past_the_end, "with 40 ids and block_size 8, a window ran past the end"),
    ("random_windows", windows_without_the_generator, "two generators with the same seed gave different batches"),
    ("random_windows", windows_in_uint8, "x has dtype torch.uint8, expected torch.int64: call .long()"),
    (
        "step_on_batch",
        train_step_without_zero_grad,
        "the second step used the first step's gradients too: call optimizer.zero_grad() before backward",
    ),
    ("step_on_batch", train_step_without_clipping, "the gradient norm was "),
    ("step_on_batch", train_step_without_step, "the weights did not change: call optimizer.step()"),
    ("step_on_batch", train_step_returning_a_tensor, "return loss.item(), a float"),
    (
        "lr_at",
        lr_at_warming_up_from_zero,
        "at step 0 the rate is 0, so the first step does nothing: warm up with lr * (step + 1) / warmup_steps",
    ),
    ("lr_at", lr_at_without_warmup, "there is no warmup"),
    ("lr_at", lr_at_decaying_linearly, "the decay is linear; it must follow a cosine"),
    ("evaluate_loss", evaluate_loss_in_training_mode, "dropout was on: call model.eval() first"),
    ("evaluate_loss", evaluate_loss_leaving_eval_mode_on, "put the model back in training mode afterwards"),
    ("evaluate_loss", evaluate_loss_with_gradients, "gradients were tracked: use torch.no_grad()"),
    ("greedy_decode", greedy_without_crop, "crop the context to the last block_size tokens: idx[:, -block_size:]"),
    ("greedy_decode", greedy_from_the_first_position, "the next token comes from the logits of the last position"),
    ("greedy_decode", greedy_returning_only_new_tokens, "return the prompt followed by the new tokens"),
    ("apply_temperature", temperature_multiplied, "divide the logits by the temperature, do not multiply"),
    ("top_k_logits", top_k_with_zeros, "the dropped logits must be -inf, not 0"),
    ("top_k_logits", top_k_keeping_one_more, "row 0 keeps 4 tokens, expected k = 3"),
    ("top_k_logits", top_k_without_min, "k may be larger than the vocabulary: use min(k, V)"),
    (
        "top_p_logits",
        top_p_dropping_the_first_token,
        "the most likely token must always stay, even when its probability alone is above p",
    ),
    (
        "top_p_logits",
        top_p_dropping_the_crossing_token,
        "keep tokens until their mass reaches p: the token that crosses p stays",
    ),
    (
        "decode_step",
        decode_step_at_position_zero,
        "the new token got the position vector of position 0, but it sits at position 12: pass start_pos=cache.length",
    ),
    ("decode_step", decode_step_without_the_cache, "each block must read and extend its layer's cache"),
    ("decode_step", decode_step_returning_every_position, "return the logits of the last position only, (B, V)"),
    ("rotary_cos_sin", rotary_cos_sin_interleaved, "rotary_cos_sin(8, 6): your angles are laid out pair by pair"),
    ("rotary_cos_sin", rotary_cos_sin_with_rates_of_one_over_hs, "rotary_cos_sin(8, 6): pair i turns by"),
    ("rotary_cos_sin", rotary_cos_sin_from_position_one, "rotary_cos_sin(8, 6): positions start at 0"),
    ("rotary_cos_sin", rotary_cos_sin_of_half_width, "each of the hs/2 angles serves two entries, j and j + hs/2"),
    ("rotary_cos_sin", rotary_cos_sin_ignoring_theta, "rotary_cos_sin(8, 6, theta=100) used 10,000 as the base"),
    ("apply_rotary", apply_rotary_to_adjacent_pairs, "entry 0 turned into entry 1: you paired adjacent entries"),
    ("apply_rotary", apply_rotary_with_the_sign_on_the_first_half, "the rotation turns the wrong way"),
    ("apply_rotary", apply_rotary_in_float32, "for a bfloat16 x your apply_rotary returns torch.float32"),
    ("apply_rotary", apply_rotary_in_place, "your apply_rotary changed its input x"),
    ("orthogonalize", orthogonalize_without_scaling, "orthogonalize(G) for G of shape (24, 16) holds values as large"),
    (
        "orthogonalize",
        orthogonalize_without_turning_back,
        "orthogonalize(G) for G of shape (24, 16) came back as (16, 24)",
    ),
    ("orthogonalize", orthogonalize_with_cubic_coefficients, "orthogonalize(G) for G of shape (24, 16): those are the"),
    ("orthogonalize", orthogonalize_always_five_steps, "use the steps argument"),
    ("orthogonalize", orthogonalize_without_clamping, "a zero matrix (a layer that got no gradient) gives NaN"),
]


@pytest.mark.parametrize(("name", "answer", "message"), MISTAKES, ids=[answer.__name__ for _, answer, _ in MISTAKES])
def test_a_typical_mistake_reads_wrong_with_its_message(name, answer, message):
    result = evaluate(name, answer)
    assert result.status == "wrong", result
    assert result.message.startswith(message), result.message


def test_chapter_11_s_functions_have_at_least_two_mistakes_each_tested():
    counts = Counter(name for name, _, _ in MISTAKES)
    assert all(counts[name] >= 2 for name in ("rotary_cos_sin", "apply_rotary", "orthogonalize")), counts


def test_no_scaling_reports_the_measured_variance():
    result = evaluate("scale_scores", scale_not_scaled)
    variance = result.message.split("the scores' variance is ")[1].split(",")[0]
    assert 55 <= int(variance) <= 75  # about hs = 64, measured on the check's own scores
    assert result.message == f"the scores' variance is {variance}, expected about 1: did you divide by {SQRT}hs?"


def test_dividing_by_hs_reports_the_measured_variance():
    message = evaluate("scale_scores", scale_by_head_size).message
    assert re.fullmatch(f"the scores' variance is 0\\.01[4-9], expected about 1: divide by {SQRT}hs, not hs", message)


def test_a_view_of_a_transposed_tensor_gets_the_contiguous_hint():
    message = evaluate("merge_heads", merge_heads_view_without_contiguous).message
    assert message.endswith("Use .reshape(...) instead; call .contiguous() before .view(), or use .reshape()")


def test_a_mistake_in_a_row_says_which_row_and_what_it_sums_to():
    result = evaluate("causal_weights", weights_masked_after_softmax)
    row, total = result.message.split("row ")[1].split(" sums to ")
    assert int(row) >= 0 and 0 < float(total.split(",")[0]) < 1
    assert result.message.endswith(", not 1: is the mask applied before the softmax?")


def test_a_wrong_signature_is_shown_the_one_to_keep():
    result = evaluate("attention_scores", lambda q: q)
    assert result.status == "wrong"
    assert "raised TypeError" in result.message
    assert result.message.endswith(
        "keep the signature given in the cell: def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor"
    )


def test_an_error_of_the_learner_names_the_piece_and_the_error_in_one_line():
    def attention_scores(q, k):
        raise ValueError("first line\nsecond line")

    assert evaluate("attention_scores", attention_scores) == Result(
        "attention_scores", "wrong", "calling attention_scores raised ValueError: first line"
    )


def test_evaluating_leaves_the_global_random_state_alone():
    def attention_scores(q, k):
        torch.rand(100)  # the learner's code draws random numbers
        return q @ k.transpose(-2, -1)

    torch.manual_seed(0)
    state = torch.get_rng_state()
    assert evaluate("attention_scores", attention_scores).status == "built"
    assert evaluate("step_on_batch", PIECES["step_on_batch"].reference).status == "built"  # builds and trains models
    assert torch.equal(torch.get_rng_state(), state)


# check()


def test_check_prints_built_and_returns_the_learners_function(capsys):
    def attention_scores(q, k):
        return q @ k.transpose(-2, -1)

    assert check("attention_scores", attention_scores) is attention_scores
    assert capsys.readouterr().out == "attention_scores: built\n"


def test_check_of_a_stub_prints_not_yet_and_returns_the_reference(capsys):
    assert check("scale_scores", not_written) is PIECES["scale_scores"].reference
    assert capsys.readouterr().out == f"scale_scores: not yet {STUCK}\n"


def test_check_of_a_mistake_prints_the_message_and_returns_the_reference(capsys):
    assert check("mask_future", mask_with_zero) is PIECES["mask_future"].reference
    out = capsys.readouterr().out
    assert out == (
        f"mask_future: wrong: hidden scores must be -inf, not 0: softmax still gives a score of 0 a weight {STUCK}\n"
    )


def test_check_appends_one_json_line_per_check_to_the_report(tmp_path, monkeypatch, capsys):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv("TINYTORCH_CHECK_REPORT", str(report))
    check("attention_scores", PIECES["attention_scores"].reference)
    check("scale_scores", not_written)
    check("mask_future", mask_with_zero)
    lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert [(line["name"], line["status"]) for line in lines] == [
        ("attention_scores", "built"),
        ("scale_scores", "not yet"),
        ("mask_future", "wrong"),
    ]
    assert lines[2]["message"].startswith("hidden scores must be -inf, not 0") and lines[0]["message"] == ""
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_check_writes_no_report_without_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TINYTORCH_CHECK_REPORT", raising=False)
    monkeypatch.chdir(tmp_path)
    check("attention_scores", PIECES["attention_scores"].reference)
    assert list(tmp_path.iterdir()) == []


# registering exercises


@pytest.fixture
def empty_registry(monkeypatch):
    """PIECES emptied for one test, so that test pieces do not stay registered."""
    monkeypatch.setattr(checks, "PIECES", {})
    return checks.PIECES


def test_an_exercise_is_a_few_lines(empty_registry):
    register_exercise("my_double", "99_test", "twice n", lambda n: 2 * n, cases=[(1,), (21,)])
    assert list(empty_registry) == ["my_double"] and empty_registry["my_double"].chapter == "99_test"
    assert evaluate("my_double", lambda n: n + n).status == "built"
    assert evaluate("my_double", not_written).status == "not yet"
    assert evaluate("my_double", lambda n: 2 * n + 1) == Result(
        "my_double", "wrong", "my_double(1) returned 3: too large"
    )


def test_an_exercise_compares_numbers_with_its_tolerance_and_tensors_value_by_value(empty_registry):
    register_exercise("my_epochs", "99_test", "days", lambda: 99.0, rtol=0.01, hint="count the days")
    register_exercise("my_ones", "99_test", "ones", lambda n: torch.ones(n), cases=[(3,)])
    assert evaluate("my_epochs", lambda: 99.5).status == "built"
    assert evaluate("my_epochs", lambda: 90).message == "my_epochs() returned 90: too small: count the days"
    assert evaluate("my_epochs", lambda: "99").message == "my_epochs()'s result must be a number, got a str"
    assert evaluate("my_ones", lambda n: torch.zeros(n)).message.startswith("my_ones(3): values differ")
    assert (
        evaluate("my_ones", lambda n: torch.ones(n + 1)).message == "my_ones(3)'s result: expected shape (3,), got (4,)"
    )


def test_a_name_can_be_registered_once(empty_registry):
    register_exercise("my_double", "99_test", "twice n", lambda n: 2 * n)
    with pytest.raises(ValueError, match="'my_double' is already registered"):
        register_exercise("my_double", "99_test", "twice n", lambda n: 2 * n)


def test_checks_import_only_torch_and_tinytorch_and_import_tinytorch_does_not_import_them():
    code = (
        "import sys, tinytorch; before = 'tinytorch.checks' in sys.modules; import tinytorch.checks; "
        "print(before, sorted(m for m in ('matplotlib', 'ipywidgets', 'transformers', 'nbformat', 'nbclient') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False []"


def test_hint_prints_the_level_asked_for_and_points_to_the_next(capsys):
    from tinytorch.checks import HINTS, hint

    hint("attention_scores")
    first = capsys.readouterr().out
    assert first.startswith(f"attention_scores, hint 1 of {len(HINTS['attention_scores'])}: ")
    assert first.rstrip().endswith('(hint("attention_scores", 2) for more)')
    last = len(HINTS["attention_scores"])
    hint("attention_scores", last)
    assert "for more" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="has hints 1 to"):
        hint("attention_scores", last + 1)
    with pytest.raises(ValueError, match="no hints for 'attention'"):
        hint("attention")


def test_a_milestone_waits_for_the_learners_module_and_reads_built_with_a_correct_one():
    import torch

    from tinytorch.gpt import GPT

    assert evaluate("milestone_shakespeare_logits", GPT).status == "not yet"  # tinytorch's own: not the learner's

    class LearnersGPT(GPT):  # the same parts and forward, written by someone else
        def forward(self, idx):
            x = self.embeddings(idx)
            for block in self.blocks:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    assert evaluate("milestone_shakespeare_logits", LearnersGPT) == Result("milestone_shakespeare_logits", "built", "")

    class Halved(LearnersGPT):
        def forward(self, idx):
            return super().forward(idx) * torch.tensor(0.5)

    result = evaluate("milestone_shakespeare_logits", Halved)
    assert result.status == "wrong" and "logits differ from the shipped model's by up to" in result.message


def test_the_training_milestone_waits_for_the_learners_loop_and_gpt_and_reads_built_with_the_books(monkeypatch):
    from tinytorch.checks import ch06_training
    from tinytorch.checks.ch06_training import _loop_with

    short = dict(max_steps=40, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_interval=40)
    monkeypatch.setattr(ch06_training, "_MILESTONE_RUN", short)  # the real one trains 200 steps, twice

    assert evaluate("milestone_shakespeare_run", _loop_with).status == "not yet"  # no workbook here: tinytorch's GPT
    monkeypatch.chdir(ROOT / "notebooks")  # the book's chapter 05: its GPT is a learner's, written out
    assert evaluate("milestone_shakespeare_run", PIECES["milestone_shakespeare_run"].reference).status == "not yet"
    assert evaluate("milestone_shakespeare_run", _loop_with) == Result("milestone_shakespeare_run", "built", "")

    def half_the_steps(model, train_ids, val_ids, cfg):
        return _loop_with(model, train_ids, val_ids, replace(cfg, max_steps=cfg.max_steps // 2))

    result = evaluate("milestone_shakespeare_run", half_the_steps)
    assert result.status == "wrong" and "more than 0.05 apart" in result.message, result


# the sampling loops of chapter 07 (sample, cached_sample), each mistake a change to the book's answer


def teaching_top_k(logits, k):
    values, positions = logits.topk(min(k, logits.size(-1)), dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, positions, values)


def teaching_top_p(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    sorted_logits = sorted_logits.masked_fill(probs.cumsum(dim=-1) - probs >= p, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def choose_next(logits, temperature, top_k, top_p, generator, mistake=""):
    """The book's choice of the next token (B, 1), or with one mistake."""
    if mistake == "multiplied":
        logits = logits * temperature
    elif mistake not in ("no temperature", "temperature last"):
        logits = logits / temperature
    filters = [(top_k, teaching_top_k, "no top_k"), (top_p, teaching_top_p, "no top_p")]
    if mistake == "top_p first":
        filters.reverse()
    for value, keep, skipped in filters:
        if (value is not None or mistake == "filters on None") and mistake != skipped:
            logits = keep(logits, value)
    if mistake == "temperature last":
        logits = logits / temperature
    if mistake == "argmax":
        return logits.argmax(dim=-1, keepdim=True)
    if mistake == "from logits":
        return torch.multinomial(logits, 1, generator=generator)
    probs = logits.softmax(dim=0 if mistake == "softmax over the batch" else -1)
    return torch.multinomial(probs, 1, generator=None if mistake == "no generator" else generator)


def sampling_mistake(mistake):
    """The book's sample (no cache) with one mistake."""

    def sample(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        T = model.config.block_size
        if mistake != "no eval":
            model.eval()
        with torch.set_grad_enabled(mistake == "gradients"):
            for _ in range(max_new_tokens):
                context = {"no crop": idx, "first block": idx[:, :T]}.get(mistake, idx[:, -T:])
                logits = model(context)[:, 0 if mistake == "first position" else -1]
                next_id = choose_next(logits, temperature, top_k, top_p, generator, mistake)
                if mistake == "cat on dim 0":
                    idx = torch.cat([idx, next_id], dim=0)
                elif mistake == "new tokens only":
                    idx = next_id if idx.size(1) == 0 else torch.cat([idx, next_id], dim=1)
                else:
                    idx = torch.cat([idx, next_id], dim=1)
        return idx if mistake != "new tokens only" else idx[:, -max_new_tokens:]

    sample.__name__ = "sample_" + mistake.replace(" ", "_")
    return sample


def cached_mistake(mistake):
    """The book's cached_sample with one mistake."""

    def cached_sample(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        T = model.config.block_size
        cache = KVCache(model.config, idx.size(0))
        if mistake != "no eval":
            model.eval()
        with torch.no_grad():
            for step in range(max_new_tokens):
                if mistake == "whole text every step":
                    logits = model(idx[:, -T:], cache)[:, -1]
                elif mistake == "prefill without the cache" and step == 0:
                    logits = model(idx[:, -T:])[:, -1]
                elif (
                    cache.length == 0
                    and mistake != "prefill without the cache"
                    or (idx.size(1) > T and mistake != "no refill")
                ):
                    cache.reset()
                    logits = model(idx if mistake == "refill without crop" else idx[:, -T:], cache)[:, -1]
                else:
                    logits = model(idx[:, -1:], cache)[:, -1]
                idx = torch.cat([idx, choose_next(logits, temperature, top_k, top_p, generator, mistake)], dim=1)
        return idx

    cached_sample.__name__ = "cached_sample_" + mistake.replace(" ", "_")
    return cached_sample


SAMPLING_MISTAKES = [
    ("sample", sampling_mistake("no crop"), "crop the context to the last block_size tokens"),
    ("sample", sampling_mistake("first block"), "crop to the last block_size tokens, idx[:, -block_size:]: the first"),
    ("sample", sampling_mistake("first position"), "the next token comes from the logits of the last position"),
    ("sample", sampling_mistake("argmax"), "the argmax is greedy decoding"),
    ("sample", sampling_mistake("multiplied"), "divide the logits by the temperature, do not multiply"),
    ("sample", sampling_mistake("no temperature"), "the temperature was not applied"),
    ("sample", sampling_mistake("temperature last"), "divide by the temperature first, then top-k, then top-p"),
    ("sample", sampling_mistake("top_p first"), "top-k first, then top-p"),
    ("sample", sampling_mistake("no top_k"), "top_k was given but not applied"),
    ("sample", sampling_mistake("no top_p"), "top_p was given but not applied"),
    ("sample", sampling_mistake("filters on None"), "top_k=None and top_p=None mean no filter"),
    ("sample", sampling_mistake("softmax over the batch"), "the softmax must run over the vocabulary, dim=-1"),
    ("sample", sampling_mistake("from logits"), "torch.multinomial draws from probabilities"),
    ("sample", sampling_mistake("no generator"), "pass the generator to torch.multinomial"),
    ("sample", sampling_mistake("no eval"), "sample sampled with dropout on: switch the model to evaluation mode"),
    ("sample", sampling_mistake("gradients"), "sample ran the model with gradients on"),
    ("sample", sampling_mistake("cat on dim 0"), "append the new token to each row, along the time dimension"),
    ("sample", sampling_mistake("new tokens only"), "return the prompt followed by the new tokens"),
    ("cached_sample", sampling_mistake("uncached"), "every step fed the whole text from position 0"),
    ("cached_sample", cached_mistake("no refill"), "once the text is longer than block_size the window slides"),
    ("cached_sample", cached_mistake("refill without crop"), "refill the cache from the last block_size tokens only"),
    ("cached_sample", cached_mistake("prefill without the cache"), "at step 1 the newest token went in at position 0"),
    ("cached_sample", cached_mistake("whole text every step"), "step 1 fed 4 positions: with the cache, after the"),
    ("cached_sample", cached_mistake("temperature last"), "divide by the temperature first, then top-k, then top-p"),
    ("cached_sample", cached_mistake("argmax"), "the argmax is greedy decoding"),
    ("cached_sample", cached_mistake("no generator"), "pass the generator to torch.multinomial"),
    ("cached_sample", cached_mistake("no eval"), "cached_sample sampled with dropout on"),
]


@pytest.mark.parametrize(
    ("name", "answer", "message"), SAMPLING_MISTAKES, ids=[f"{name}-{a.__name__}" for name, a, _ in SAMPLING_MISTAKES]
)
def test_a_typical_mistake_in_a_sampling_loop_reads_wrong_and_names_the_fix(name, answer, message):
    result = evaluate(name, answer)
    assert result.status == "wrong" and message in result.message, result.message


def test_the_sampling_loops_as_the_book_writes_them_read_built():
    assert evaluate("sample", sampling_mistake("")) == Result("sample", "built", "")
    assert evaluate("cached_sample", cached_mistake("")) == Result("cached_sample", "built", "")


LEARNERS_GPT = '''class GPT(nn.Module):
    """A GPT, as a module: token ids (B, T) -> next-token logits (B, T, V)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        ### BEGIN SOLUTION
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.embeddings.wte.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        ### END SOLUTION

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        x = self.embeddings(idx)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))
        ### END SOLUTION'''

STUBBED_GPT = """class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError("GPT.__init__: not written yet")"""

CHAPTER_05_IMPORTS = """import math

import torch
from torch import nn

from tinytorch.blocks import Block, LayerNorm
from tinytorch.checks import check
from tinytorch.config import GPTConfig
from tinytorch.embeddings import Embeddings"""


def chapter_05(folder, gpt_source):
    """A chapter 05 notebook in `folder`: its imports, the learner's GPT cell, its check cell (which runs nothing)."""
    import nbformat

    gpt_cell = nbformat.v4.new_code_cell(gpt_source)
    gpt_cell.metadata["nbgrader"] = {"grade_id": "GPT", "solution": True}
    cells = [
        nbformat.v4.new_code_cell(CHAPTER_05_IMPORTS),
        gpt_cell,
        nbformat.v4.new_code_cell('GPT = check("GPT", GPT)'),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), folder / "05_gpt.ipynb")


MILESTONE_07 = "milestone_romeo_completion"


def test_from_notebook_gives_the_learners_built_piece_of_an_earlier_chapter_or_none(tmp_path):
    assert checks.from_notebook("GPT", tmp_path) is None  # no chapter 05 here
    chapter_05(tmp_path, STUBBED_GPT)
    assert checks.from_notebook("GPT", tmp_path) is None  # not written yet
    chapter_05(tmp_path, LEARNERS_GPT)
    learners = checks.from_notebook("GPT", tmp_path)
    assert learners.__name__ == "GPT" and learners.__module__ == "notebook_05_gpt"  # the notebook's, not tinytorch's
    with pytest.raises(ValueError, match="no piece named 'Gpt'"):
        checks.from_notebook("Gpt", tmp_path)


def test_the_generation_milestone_waits_for_the_learners_gpt_and_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    learners_sample = sampling_mistake("")
    assert evaluate(MILESTONE_07, learners_sample).status == "not yet"  # no chapter 05 next to it
    chapter_05(tmp_path, STUBBED_GPT)
    assert evaluate(MILESTONE_07, learners_sample).status == "not yet"  # GPT not written yet
    chapter_05(tmp_path, LEARNERS_GPT)
    assert evaluate(MILESTONE_07, PIECES["sample"].reference).status == "not yet"  # tinytorch's sample
    assert evaluate(MILESTONE_07, learners_sample) == Result(MILESTONE_07, "built", "")
    result = evaluate(MILESTONE_07, sampling_mistake("no temperature"))
    assert (
        result.status == "wrong" and "your GPT and sample part from tinytorch complete at character" in result.message
    )


def test_the_milestones_text_is_what_tinytorch_complete_prints():
    from tinytorch.checkpoint import complete
    from tinytorch.checks.ch07_generation import _ROMEO

    command = [sys.executable, "-m", "tinytorch", "complete", _ROMEO["prompt"], "--seed", str(_ROMEO["seed"])]
    command += ["--max-new-tokens", str(_ROMEO["max_new_tokens"]), "--device", "cpu", "--no-stream"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert _ROMEO["temperature"] == 0.8  # the command's default
    assert printed == complete(**_ROMEO) + "\n"


def test_from_notebook_builds_the_learners_gpt_from_the_learners_earlier_modules():
    gpt_class = checks.from_notebook("GPT", ROOT / "notebooks")  # the book's teaching versions, written out
    model = gpt_class(checks.ch05_gpt._SMALL)
    block = model.blocks[0]
    assert type(block).__module__ == "notebook_04_blocks"  # chapter 05 imports Block: chapter 04's notebook gives it
    assert type(block.attn).__module__ == "notebook_03_attention"  # and chapter 04 imports CausalSelfAttention
    assert type(block.ln_1).__module__ == "notebook_04_blocks"
