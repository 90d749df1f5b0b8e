"""A different but equivalent way to write a piece never reads wrong (einsum for @, F.softmax, torch.tril for the
package's mask, a Python loop over heads or rows, reshape where view works, ...). The other direction, typical
mistakes reading wrong with their message, is tests/test_checks.py's MISTAKES."""

import copy
import functools
import math
from collections import Counter
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinytorch.attention import CausalSelfAttention, causal_mask
from tinytorch.blocks import MLP, Block, LayerNorm
from tinytorch.checks import PIECES, Result, evaluate
from tinytorch.checks import ch06_training as ch06_checks
from tinytorch.embeddings import Embeddings
from tinytorch.finetune import LoRALinear
from tinytorch.generation import KVCache, LayerKVCache, top_k_filter, top_p_filter
from tinytorch.gpt import next_token_loss
from tinytorch.modern import ModernAttention, ModernConfig, apply_rotary, orthogonalize, rotary_cos_sin
from tinytorch.training import fixed_batches, get_batch, make_optimizer

# ------------------------------------------------------------------ 02 embeddings


def encode_with_a_loop(text, chars):
    ids = []
    for c in text:
        ids.append(chars.index(c))
    return ids


def decode_with_a_loop(ids, chars):
    text = ""
    for i in ids:
        text += chars[i]
    return text


def embed_with_arange_positions(idx, wte, wpe):
    positions = torch.arange(idx.size(1))
    return F.embedding(idx, wte) + F.embedding(positions, wpe)[None]


# ------------------------------------------------------------------ 02b subwords


def count_pairs_with_zip(ids):
    counts = {}
    for a, b in zip(ids, ids[1:], strict=False):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def merge_with_a_for_loop_and_skip(ids, pair, new_id):
    out, skip = [], False
    for i, current in enumerate(ids):
        if skip:
            skip = False
            continue
        if i + 1 < len(ids) and (current, ids[i + 1]) == pair:
            out.append(new_id)
            skip = True
        else:
            out.append(current)
    return out


def train_merges_with_max_and_negated_pairs(ids, num_merges):
    ids, merges = list(ids), []
    for i in range(num_merges):
        counts = {}
        for pair in pairwise(ids):
            counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = max(counts, key=lambda pair: (counts[pair], -pair[0], -pair[1]))  # a tie goes to the smaller pair
        merges.append(best)
        new_id, out, j = 256 + i, [], 0
        while j < len(ids):
            if j + 1 < len(ids) and (ids[j], ids[j + 1]) == best:
                out.append(new_id)
                j += 2
            else:
                out.append(ids[j])
                j += 1
        ids = out
    return merges


# ------------------------------------------------------------------ 03 attention


def scores_with_einsum(q, k):
    return torch.einsum("...td,...sd->...ts", q, k)


def scores_with_matmul_and_mT(q, k):
    return torch.matmul(q, k.mT)


def scale_by_multiplying(scores, head_size):
    return scores * head_size**-0.5


def mask_with_tril(scores):
    T = scores.size(-1)
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool))
    return scores.masked_fill(keep.logical_not(), float("-inf"))


def mask_with_where(scores):
    T = scores.size(-1)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return torch.where(future, torch.full_like(scores, -math.inf), scores)


def softmax_with_max_values(scores):
    shifted = scores - scores.max(dim=-1, keepdim=True).values
    return shifted.exp() / shifted.exp().sum(dim=-1, keepdim=True)


def causal_weights_with_library_softmax(q, k):
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).tril().logical_not(), float("-inf"))
    return F.softmax(scores, dim=-1)


def weighted_sum_with_einsum(weights, v):
    return torch.einsum("...ts,...sd->...td", weights, v)


def split_heads_with_reshape_and_permute(x, n_head):
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).permute(0, 2, 1, 3)


def split_heads_with_a_loop_over_heads(x, n_head):
    hs = x.size(-1) // n_head
    return torch.stack([x[..., h * hs : (h + 1) * hs] for h in range(n_head)], dim=1)


def merge_heads_with_reshape(y):
    B, nh, T, hs = y.shape
    return y.transpose(1, 2).reshape(B, T, nh * hs)


def merge_heads_with_cat(y):
    return torch.cat(list(y.unbind(dim=1)), dim=-1)


# ------------------------------------------------------------------ 04 blocks


def layer_norm_with_var_unbiased_false(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    out = (x - mean) * torch.rsqrt(var + eps) * weight
    return out if bias is None else out + bias


def gelu_with_tanh_from_math(x):
    return 0.5 * x * (1.0 + torch.tanh((2.0 / math.pi) ** 0.5 * (x + 0.044715 * torch.pow(x, 3))))


def mlp_forward_step_by_step(x, fc, proj):
    h = fc(x)
    h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    return proj(h)


def block_forward_with_named_steps(x, block):
    attended = block.attn(block.ln_1(x))
    x = x + attended
    thought = block.mlp(block.ln_2(x))
    return x + thought


# ------------------------------------------------------------------ 05 GPT


def gpt_forward_with_a_sequential(model, idx):
    return model.lm_head(model.ln_f(nn.Sequential(*model.blocks)(model.embeddings(idx))))


def cross_entropy_with_logsumexp(logits, targets):
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (torch.logsumexp(logits, dim=-1) - picked).mean()


def lm_loss_with_narrow(model, ids):
    T = ids.size(1) - 1
    return next_token_loss(model(ids.narrow(1, 0, T)), ids.narrow(1, 1, T))


# ------------------------------------------------------------------ 06 training


def lr_at_written_with_if_else(step, warmup_steps, max_steps, lr, min_lr):
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max_steps - warmup_steps
    progress = (step - warmup_steps) / span if span > 0 else 0.0
    cosine = (1 + math.cos(math.pi * progress)) / 2
    return min_lr + cosine * (lr - min_lr)


def train_step_clearing_gradients_with_none(model, optimizer, x, y, grad_clip):
    for p in model.parameters():
        p.grad = None
    logits = model(x)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=grad_clip)
    optimizer.step()
    return float(loss.detach())


def evaluate_loss_under_inference_mode(model, batches):
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for x, y in batches:
            total += next_token_loss(model(x), y).item()
    model.train(was_training)
    return total / len(batches)


def loop_written_out(model, train_ids, val_ids, cfg, *, zero_grad=True, eval_mode=True, schedule=True, last=True):
    """A learner's train_loop, written with the chapter's pieces; the flags put in one mistake each."""
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    T = model.config.block_size
    sets = {
        "train": fixed_batches(train_ids, cfg.eval_batches, cfg.batch_size, T, seed=cfg.seed + 1),
        "val": fixed_batches(val_ids, cfg.eval_batches, cfg.batch_size, T, seed=cfg.seed + 2),
    }
    history, step = [], 0
    while step < cfg.max_steps:  # a while loop, steps counted after the step
        if schedule:
            for group in optimizer.param_groups:
                group["lr"] = lr_at_written_with_if_else(step, cfg.warmup_steps, cfg.max_steps, cfg.lr, cfg.min_lr)
        x, y = get_batch(train_ids, cfg.batch_size, T, generator)
        if zero_grad:
            optimizer.zero_grad()
        loss = next_token_loss(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        if step % cfg.eval_interval == 0 or (last and step == cfg.max_steps):
            if eval_mode:
                record = {name: evaluate_loss_under_inference_mode(model, b) for name, b in sets.items()}
            else:
                with torch.no_grad():
                    record = {
                        name: sum(next_token_loss(model(x), y).item() for x, y in b) / len(b)
                        for name, b in sets.items()
                    }
            history.append({"step": step, **record})
    return history


def test_a_training_loop_written_out_reads_built():
    assert evaluate("train_loop", loop_written_out).status == "built"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(zero_grad=False), "zero the gradients before backward"),
        (dict(eval_mode=False), "evaluate in eval mode (dropout off)"),
        (dict(schedule=False), "the schedule never ran"),
        (dict(last=False), "the evaluations come after steps [4, 8, 10]"),
    ],
    ids=["no zero_grad", "dropout in evaluation", "no schedule", "no evaluation at the last step"],
)
def test_a_training_loop_with_a_typical_mistake_reads_wrong_and_names_it(change, message):
    result = evaluate("train_loop", functools.partial(loop_written_out, **change))
    assert result.status == "wrong" and message in result.message, result


@pytest.mark.parametrize("mistake", sorted(ch06_checks._LOOP_MISTAKES))
def test_every_loop_mistake_the_check_knows_reads_wrong_with_its_fix(mistake):
    result = evaluate("train_loop", functools.partial(ch06_checks._loop_with, mistake=mistake))
    assert result.status == "wrong" and result.message == ch06_checks._LOOP_MISTAKES[mistake], result


# ------------------------------------------------------------------ 07 generation


def greedy_decode_with_inference_mode(model, idx, max_new_tokens):
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            context = idx[:, -model.config.block_size :]
            next_id = model(context)[:, -1, :].argmax(dim=-1)  # (B,)
            idx = torch.cat((idx, next_id.unsqueeze(1)), dim=1)
    return idx


def temperature_by_multiplying(logits, temperature):
    return logits * (1.0 / temperature)


def top_k_with_kth_value_threshold(logits, k):
    k = min(k, logits.size(-1))
    threshold = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest
    return torch.where(logits < threshold, torch.full_like(logits, float("-inf")), logits)


def top_p_with_sort_and_cumsum(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative - sorted_logits.softmax(dim=-1) >= p  # the mass before a token already reaches p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


VARIANTS = [
    ("encode", encode_with_a_loop),
    ("decode", decode_with_a_loop),
    ("embed", embed_with_arange_positions),
    ("count_pairs", count_pairs_with_zip),
    ("merge", merge_with_a_for_loop_and_skip),
    ("train_merges", train_merges_with_max_and_negated_pairs),
    ("attention_scores", scores_with_einsum),
    ("attention_scores", scores_with_matmul_and_mT),
    ("scale_scores", scale_by_multiplying),
    ("mask_future", mask_with_tril),
    ("mask_future", mask_with_where),
    ("softmax_rows", softmax_with_max_values),
    ("causal_weights", causal_weights_with_library_softmax),
    ("weighted_sum", weighted_sum_with_einsum),
    ("split_heads", split_heads_with_reshape_and_permute),
    ("split_heads", split_heads_with_a_loop_over_heads),
    ("merge_heads", merge_heads_with_reshape),
    ("merge_heads", merge_heads_with_cat),
    ("layer_norm", layer_norm_with_var_unbiased_false),
    ("gelu", gelu_with_tanh_from_math),
    ("mlp_forward", mlp_forward_step_by_step),
    ("block_forward", block_forward_with_named_steps),
    ("gpt_forward", gpt_forward_with_a_sequential),
    ("cross_entropy", cross_entropy_with_logsumexp),
    ("lm_loss", lm_loss_with_narrow),
    ("lr_at", lr_at_written_with_if_else),
    ("step_on_batch", train_step_clearing_gradients_with_none),
    ("evaluate_loss", evaluate_loss_under_inference_mode),
    ("greedy_decode", greedy_decode_with_inference_mode),
    ("apply_temperature", temperature_by_multiplying),
    ("top_k_logits", top_k_with_kth_value_threshold),
    ("top_p_logits", top_p_with_sort_and_cumsum),
]


@pytest.mark.parametrize(("name", "answer"), VARIANTS, ids=[answer.__name__ for _, answer in VARIANTS])
def test_an_equivalent_way_to_write_a_piece_reads_built(name, answer):
    result = evaluate(name, answer)
    assert (result.status, result.message) == ("built", ""), result.message


# ------------------------------------------------------------------ what is not a mistake of the piece gets its words


def layer_norm_by_the_library(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def softmax_rows_by_the_method(scores):
    return scores.softmax(dim=-1)


def gelu_by_the_library(x):
    return F.gelu(x, approximate="tanh")


def cross_entropy_by_the_library(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


SHORTCUTS = [
    ("layer_norm", layer_norm_by_the_library, "F.layer_norm"),
    ("softmax_rows", softmax_rows_by_the_method, ".softmax"),
    ("gelu", gelu_by_the_library, "F.gelu"),
    ("cross_entropy", cross_entropy_by_the_library, "F.cross_entropy"),
]


@pytest.mark.parametrize(("name", "answer", "call"), SHORTCUTS, ids=[answer.__name__ for _, answer, _ in SHORTCUTS])
def test_the_librarys_version_where_the_chapter_asks_for_it_written_out_is_pointed_out(name, answer, call):
    result = evaluate(name, answer)
    assert result.status == "wrong"
    assert result.message.startswith(f"{name} calls {call}, the library's ready-made version: the chapter asks you")
    assert f'hint("{name}")' in result.message


def scores_with_dot_T(q, k):
    return q @ k.T


def test_a_shape_error_names_the_shapes_it_was_called_with_and_dot_T_is_explained():
    message = evaluate("attention_scores", scores_with_dot_T).message
    assert message.startswith("calling attention_scores raised RuntimeError: The size of tensor a")
    assert "(called with <tensor of shape (2, 5, 4)>, <tensor of shape (2, 5, 4)>)" in message
    dot_t = "x.T reverses every dimension of a batch; to swap the last two use .transpose(-2, -1) (or .mT)"
    assert message.endswith(dot_t)


# ------------------------------------------------------------------ modules: the learner's Block (chapter 04)


class BlockWithTorchLayerNorm(nn.Module):
    """Equivalent: nn.LayerNorm has the same parameters (weight, bias) and eps."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x):
        attended = x + self.attn(self.ln_1(x))
        return attended + self.mlp(self.ln_2(attended))


class PostNormBlock(BlockWithTorchLayerNorm):
    def forward(self, x):
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class BlockWithoutTheFirstResidual(BlockWithTorchLayerNorm):
    def forward(self, x):
        x = self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class BlockWhoseMlpReadsTheOldStream(BlockWithTorchLayerNorm):
    def forward(self, x):
        return x + self.attn(self.ln_1(x)) + self.mlp(self.ln_2(x))


class BlockWithItsOwnNames(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attention = CausalSelfAttention(config)
        self.norm2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BlockWithANarrowMlp(BlockWithTorchLayerNorm):
    def __init__(self, config):
        super().__init__(config)
        self.mlp.fc = nn.Linear(config.n_embd, 2 * config.n_embd)
        self.mlp.proj = nn.Linear(2 * config.n_embd, config.n_embd)


class BlockNotAModule:
    def __init__(self, config):
        self.config = config


MODULE_MISTAKES = [
    ("Block", PostNormBlock, "normalise the branch's input, not the sum"),
    ("Block", BlockWithoutTheFirstResidual, "the block must add to x"),
    ("Block", BlockWhoseMlpReadsTheOldStream, "the MLP must read the updated stream"),
    ("Block", BlockWithItsOwnNames, "your Block has no `ln_1.weight`: the package's Block has self.ln_1, a LayerNorm"),
    ("Block", BlockWithANarrowMlp, "`mlp.fc.weight` has shape (32, 16) in your Block, (64, 16) in the package's"),
    ("Block", BlockNotAModule, "Block(config) must give an nn.Module, got"),
]


def test_an_equivalent_module_reads_built():
    assert evaluate("Block", BlockWithTorchLayerNorm) == evaluate("Block", Block)
    assert evaluate("Block", BlockWithTorchLayerNorm).status == "built"


# ------------------------------------------------------------------ modules: the learner's attention (chapter 03)


class AttentionWithALoopOverHeads(nn.Module):
    """Equivalent: the package's layers, each head computed on its own slice with einsum, then concatenated."""

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        hs = C // self.n_head
        outputs = []
        for h in range(self.n_head):
            part = slice(h * hs, (h + 1) * hs)
            scores = torch.einsum("btd,bsd->bts", q[..., part], k[..., part]) / math.sqrt(hs)
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            outputs.append(F.softmax(scores, dim=-1) @ v[..., part])
        return self.proj(torch.cat(outputs, dim=-1))


def attention_with(**change):
    """An attention module written like the loop above, with one mistake."""

    class Mistaken(AttentionWithALoopOverHeads):
        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            if change.get("swap"):
                q, k = k, q
            heads = 1 if change.get("one_head") else self.n_head
            hs = C // heads
            outputs = []
            for h in range(heads):
                part = slice(h * hs, (h + 1) * hs)
                scores = q[..., part] @ k[..., part].transpose(-2, -1)
                if not change.get("no_scale"):
                    scores = scores / math.sqrt(hs)
                if not change.get("no_mask"):
                    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
                outputs.append(F.softmax(scores, dim=-1) @ v[..., part])
            y = torch.cat(outputs, dim=-1)
            return y if change.get("no_proj") else self.proj(y)

    Mistaken.__name__ = "attention_" + "_".join(change)
    return Mistaken


class AttentionWithGPT2sNames(AttentionWithALoopOverHeads):
    def __init__(self, config):
        super().__init__(config)
        self.c_attn = self.qkv
        del self.qkv


class AttentionWithThreeLinears(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.q = nn.Linear(config.n_embd, config.n_embd)
        self.k = nn.Linear(config.n_embd, config.n_embd)
        self.v = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)


MODULE_MISTAKES += [
    ("CausalSelfAttention", attention_with(no_mask=True), "the future is not masked"),
    ("CausalSelfAttention", attention_with(no_scale=True), "the scores are not scaled: divide them by √hs"),
    ("CausalSelfAttention", attention_with(one_head=True), "one head of width C: split q, k and v into n_head heads"),
    ("CausalSelfAttention", attention_with(no_proj=True), "the heads' outputs go through self.proj at the end"),
    ("CausalSelfAttention", attention_with(swap=True), "qkv's output splits into q, k and v in that order"),
    (
        "CausalSelfAttention",
        AttentionWithGPT2sNames,
        "your CausalSelfAttention has no `qkv.weight`: the package's CausalSelfAttention has self.qkv, the fused "
        "Linear(C, 3C)",
    ),
    ("CausalSelfAttention", AttentionWithThreeLinears, "your CausalSelfAttention has no `qkv.weight`"),
]


def test_an_attention_with_a_loop_over_heads_reads_built():
    assert evaluate("CausalSelfAttention", AttentionWithALoopOverHeads) == Result("CausalSelfAttention", "built", "")


# ------------------------------------------------------------------ modules: LayerNorm and MLP (chapter 04)


class LayerNormWithoutItsShift(nn.Module):
    def __init__(self, n_embd, bias=True, eps=1e-5):
        super().__init__()
        self.eps, self.weight, self.bias = eps, nn.Parameter(torch.ones(n_embd)), None

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.weight, None, self.eps)


class LayerNormStartingAtZero(nn.Module):
    def __init__(self, n_embd, bias=True, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None


class LayerNormWithAFixedEps(nn.Module):
    def __init__(self, n_embd, bias=True, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        out = (x - mean) / torch.sqrt(var + 1e-5) * self.weight
        return out if self.bias is None else out + self.bias


class LayerNormWrittenOut(LayerNormWithAFixedEps):
    """Equivalent: the formula by hand, with the eps it is given."""

    def __init__(self, n_embd, bias=True, eps=1e-5):
        super().__init__(n_embd, bias)
        self.eps = eps

    def forward(self, x):
        centred = x - x.mean(-1, keepdim=True)
        out = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        return out if self.bias is None else out + self.bias


class MLPWithSequential(nn.Module):
    """Equivalent: the package's names, GELU as a module."""

    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.act = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.proj(self.act(self.fc(x)))


def mlp_with(activation):
    class Mistaken(MLPWithSequential):
        def forward(self, x):
            return self.proj(activation(self.fc(x)))

    Mistaken.__name__ = f"mlp_with_{getattr(activation, '__name__', 'identity')}"
    return Mistaken


class MLPTwiceAsWide(MLPWithSequential):
    def __init__(self, config):
        super().__init__(config)
        self.fc = nn.Linear(config.n_embd, 8 * config.n_embd)
        self.proj = nn.Linear(8 * config.n_embd, config.n_embd)


MODULE_MISTAKES += [
    ("LayerNorm", LayerNormWithoutItsShift, "your LayerNorm has no `bias`: the package's LayerNorm has self.bias"),
    ("LayerNorm", LayerNormStartingAtZero, "the gain starts at 1 for every feature"),
    ("LayerNorm", LayerNormWithAFixedEps, "keep eps (self.eps = eps) and use it in forward"),
    ("MLP", mlp_with(lambda h: h), "there is no nonlinearity between fc and proj"),
    ("MLP", mlp_with(torch.relu), "that is ReLU: GPT-2's MLP uses GELU"),
    ("MLP", mlp_with(F.gelu), "that is the exact GELU: GPT-2's uses the tanh approximation"),
    ("MLP", MLPTwiceAsWide, "`fc.weight` has shape (128, 16) in your MLP, (64, 16) in the package's"),
]


def test_equivalent_layer_norm_and_mlp_modules_read_built():
    assert evaluate("LayerNorm", LayerNormWrittenOut) == Result("LayerNorm", "built", "")
    assert evaluate("MLP", MLPWithSequential) == Result("MLP", "built", "")


# ------------------------------------------------------------------ modules: the learner's GPT (chapter 05)


class GPTWrittenOut(nn.Module):
    """Equivalent: the package's parts, GPT-2's initialization written with apply, a forward with its own names."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.embeddings.wte.weight
        self.apply(self.initialize)
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, std=0.02 / (2 * config.n_layer) ** 0.5)

    @staticmethod
    def initialize(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx):
        stream = self.embeddings(idx)
        for block in self.blocks:
            stream = block(stream)
        return self.lm_head(self.ln_f(stream))


class GPTWithAnUntiedHead(GPTWrittenOut):
    def __init__(self, config):
        super().__init__(config)
        self.lm_head.weight = nn.Parameter(self.embeddings.wte.weight.detach().clone())


class GPTWithoutTheFinalLayerNorm(GPTWrittenOut):
    def forward(self, idx):
        stream = self.embeddings(idx)
        for block in self.blocks:
            stream = block(stream)
        return self.lm_head(stream)


class GPTWithPyTorchsInitialization(GPTWrittenOut):
    @staticmethod
    def initialize(module):
        pass


class GPTWithoutTheResidualScaling(GPTWrittenOut):
    def __init__(self, config):
        super().__init__(config)
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, std=0.02)


class GPTWithAHeadOfItsOwnName(GPTWrittenOut):
    def __init__(self, config):
        super().__init__(config)
        self.head = self.lm_head
        del self.lm_head

    def forward(self, idx):
        return self.head(self.ln_f(self.embeddings(idx)))


MODULE_MISTAKES += [
    ("GPT", GPTWithAnUntiedHead, "lm_head has a matrix of its own: tie it to the token embedding"),
    ("GPT", GPTWithoutTheFinalLayerNorm, "the final LayerNorm is missing"),
    ("GPT", GPTWithPyTorchsInitialization, "initialize like GPT-2: every Linear and Embedding weight from a normal"),
    ("GPT", GPTWithoutTheResidualScaling, "scale the projections that write into the stream"),
    ("GPT", GPTWithAHeadOfItsOwnName, "your GPT has no `lm_head.weight`: the package's GPT has self.lm_head"),
]


def test_an_equivalent_gpt_reads_built_and_passes_the_milestone():
    assert evaluate("GPT", GPTWrittenOut) == Result("GPT", "built", "")
    assert evaluate("milestone_shakespeare_logits", GPTWrittenOut).status == "built"


@pytest.mark.parametrize(
    ("name", "answer", "message"), MODULE_MISTAKES, ids=[answer.__name__ for _, answer, _ in MODULE_MISTAKES]
)
def test_a_typical_mistake_in_a_module_reads_wrong_and_names_it(name, answer, message):
    result = evaluate(name, answer)
    assert result.status == "wrong" and message in result.message, result.message


# ------------------------------------------------------------------ 07 generation: the sampling loops


def teaching_top_k(logits, k):
    values, positions = logits.topk(min(k, logits.size(-1)), dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, positions, values)


def teaching_top_p(logits, p):
    kept = torch.full_like(logits, float("-inf"))
    for row, row_logits in enumerate(logits):  # the chapter's keep_nucleus, one row at a time
        probs, mass = row_logits.softmax(dim=-1), 0.0
        for i in probs.argsort(descending=True).tolist():
            kept[row, i] = row_logits[i]
            mass += probs[i].item()
            if mass >= p:
                break
    return kept


def filtered(logits, temperature, top_k, top_p):
    logits = logits / temperature
    if top_k is not None:
        logits = teaching_top_k(logits, top_k)
    if top_p is not None:
        logits = teaching_top_p(logits, top_p)
    return logits


def sample_as_the_book(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    T = model.config.block_size
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = filtered(model(idx[:, -T:])[:, -1], temperature, top_k, top_p)
            idx = torch.cat([idx, torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)], dim=1)
    return idx


@torch.inference_mode()
def sample_with_library_filters_and_f_softmax(
    model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None
):
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        logits = model(idx[:, -model.config.block_size :])[:, -1, :] / temperature
        if top_k:
            logits = top_k_filter(logits, top_k)
        if top_p:
            logits = top_p_filter(logits, top_p)
        next_id = F.softmax(logits, dim=-1).multinomial(num_samples=1, generator=generator)
        idx = torch.cat((idx, next_id), dim=-1)
    model.train(was_training)
    return idx


def sample_with_manual_softmax_and_a_preallocated_tensor(
    model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None
):
    B, T0 = idx.shape
    out = torch.empty(B, T0 + max_new_tokens, dtype=idx.dtype)
    out[:, :T0] = idx
    model.eval()
    with torch.no_grad():
        for t in range(T0, T0 + max_new_tokens):
            logits = filtered(model(out[:, max(0, t - model.config.block_size) : t])[:, -1], temperature, top_k, top_p)
            weights = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
            out[:, t] = torch.multinomial(weights / weights.sum(dim=-1, keepdim=True), 1, generator=generator)[:, 0]
    return out


def sample_drawing_row_by_row(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            probs = filtered(model(idx[:, -model.config.block_size :])[:, -1], temperature, top_k, top_p).softmax(-1)
            rows = [torch.multinomial(row, 1, replacement=True, generator=generator) for row in probs]
            idx = torch.cat([idx, torch.stack(rows)], dim=1)
    return idx


def cached_sample_as_the_book(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    T = model.config.block_size
    cache = KVCache(model.config, idx.size(0), idx.device)
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if cache.length == 0 or idx.size(1) > T:
                cache.reset()
                logits = decode_step(model, idx[:, -T:], cache)
            else:
                logits = decode_step(model, idx[:, -1:], cache)
            logits = filtered(logits, temperature, top_k, top_p)
            idx = torch.cat([idx, torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)], dim=1)
    return idx


def decode_step(model, new_ids, cache):
    x = model.embeddings(new_ids, start_pos=cache.length)
    for block, layer_cache in zip(model.blocks, cache.layers, strict=True):
        x = block(x, layer_cache)
    return model.lm_head(model.ln_f(x))[:, -1]


@torch.no_grad()
def cached_sample_with_the_model_and_a_new_cache_to_refill(
    model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None
):
    T = model.config.block_size
    model.eval()
    new_ids, cache = idx[:, -T:], KVCache(model.config, idx.size(0))
    for _ in range(max_new_tokens):
        logits = model(new_ids, cache)[:, -1]  # GPT.forward with the cache: the same as decode_step
        next_id = torch.multinomial(
            F.softmax(filtered(logits, temperature, top_k, top_p), dim=-1), 1, generator=generator
        )
        idx = torch.cat([idx, next_id], dim=1)
        if cache.length == T:  # full: a new cache for the window that slid
            new_ids, cache = idx[:, -T:], KVCache(model.config, idx.size(0))
        else:
            new_ids = next_id
    return idx


SAMPLING_VARIANTS = [
    ("sample", sample_as_the_book),
    ("sample", sample_with_library_filters_and_f_softmax),
    ("sample", sample_with_manual_softmax_and_a_preallocated_tensor),
    ("sample", sample_drawing_row_by_row),
    ("cached_sample", cached_sample_as_the_book),
    ("cached_sample", cached_sample_with_the_model_and_a_new_cache_to_refill),
]


@pytest.mark.parametrize(
    ("name", "answer"), SAMPLING_VARIANTS, ids=[answer.__name__ for _, answer in SAMPLING_VARIANTS]
)
def test_an_equivalent_sampling_loop_reads_built(name, answer):
    result = evaluate(name, answer)
    assert (result.status, result.message) == ("built", ""), result.message


# ------------------------------------------------------------------ 11 modern: functions written another way


def rotary_cos_sin_with_einsum_and_cat(head_size, block_size, theta=10000.0):
    rates = 1.0 / (theta ** (torch.arange(0, head_size, 2).float() / head_size))
    angles = torch.einsum("t,f->tf", torch.arange(block_size).float(), rates)  # (T, hs/2)
    angles = torch.cat([angles, angles], dim=-1)
    return torch.cos(angles), torch.sin(angles)


def rotary_cos_sin_with_a_loop(head_size, block_size, theta=10000.0):
    cos, sin = torch.zeros(block_size, head_size), torch.zeros(block_size, head_size)
    for m in range(block_size):
        for i in range(head_size // 2):
            angle = m * theta ** (-2 * i / head_size)
            cos[m, i] = cos[m, i + head_size // 2] = math.cos(angle)
            sin[m, i] = sin[m, i + head_size // 2] = math.sin(angle)
    return cos, sin


def apply_rotary_with_halves_written_out(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[..., :half], sin[..., :half]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).type_as(x)


def apply_rotary_in_float32_cast_back(x, cos, sin):
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)
    return (x32 * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)


def orthogonalize_in_float32(G, steps=5, eps=1e-7):
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.float()
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    X = X / max(X.norm(), eps)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + b * A @ X + c * A @ A @ X
    return X.T if tall else X


def orthogonalize_without_turning_tall_matrices(G, steps=5, eps=1e-7):
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16() / G.bfloat16().norm().clamp(min=eps)  # the larger Gram matrix for a tall G: slower, same result
    for _ in range(steps):
        A = X @ X.mT
        X = torch.addmm(X, torch.addmm(A, A, A, beta=b, alpha=c), X, beta=a)
    return X


VARIANTS_11 = [
    ("rotary_cos_sin", rotary_cos_sin_with_einsum_and_cat),
    ("rotary_cos_sin", rotary_cos_sin_with_a_loop),
    ("apply_rotary", apply_rotary_with_halves_written_out),
    ("apply_rotary", apply_rotary_in_float32_cast_back),
    ("orthogonalize", orthogonalize_in_float32),
    ("orthogonalize", orthogonalize_without_turning_tall_matrices),
]


@pytest.mark.parametrize(("name", "answer"), VARIANTS_11, ids=[answer.__name__ for _, answer in VARIANTS_11])
def test_an_equivalent_way_to_write_a_modern_piece_reads_built(name, answer):
    result = evaluate(name, answer)
    assert (result.status, result.message) == ("built", ""), result.message


# ------------------------------------------------------------------ 11 modern: the modules, right and wrong


class RMSNormWrittenOut(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def normalize(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)).to(x.dtype)

    def forward(self, x):
        return self.weight * self.normalize(x)


class RMSNormWithOneOverSqrt(RMSNormWrittenOut):
    def normalize(self, x):
        x32 = x.to(torch.float32)
        return (x32 * (1 / torch.sqrt((x32 * x32).mean(-1, keepdim=True) + self.eps))).type_as(x)


class RMSNormScalingInFloat32(RMSNormWrittenOut):
    def forward(self, x):
        x32 = x.float()
        out = self.weight.float() * x32 / torch.sqrt(x32.square().mean(-1, keepdim=True) + self.eps)
        return out.to(x.dtype)


class RMSNormSubtractingTheMean(RMSNormWrittenOut):
    def normalize(self, x):
        return super().normalize(x - x.mean(dim=-1, keepdim=True))


class RMSNormInTheInputsDtype(RMSNormWrittenOut):
    def normalize(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)


class RMSNormReturningFloat32(RMSNormWrittenOut):
    def normalize(self, x):
        x32 = x.float()
        return x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)


class RMSNormWithEpsOutside(RMSNormWrittenOut):
    def normalize(self, x):
        x32 = x.float()
        return (x32 / (x32.pow(2).mean(dim=-1, keepdim=True).sqrt() + self.eps)).to(x.dtype)


class RMSNormWithABias(RMSNormWrittenOut):
    def __init__(self, dim, eps=1e-6):
        super().__init__(dim, eps)
        self.bias = nn.Parameter(torch.zeros(dim))


class RMSNormWithAGain(RMSNormWrittenOut):
    def __init__(self, dim, eps=1e-6):
        super().__init__(dim, eps)
        self.gain = self.weight
        del self.weight

    def forward(self, x):
        return self.gain * self.normalize(x)


class RMSNormByTheLibrary(RMSNormWrittenOut):
    def forward(self, x):
        return F.rms_norm(x.float(), (x.size(-1),), self.weight.float(), self.eps).to(x.dtype)


class SwiGLUWrittenOut(nn.Module):
    def __init__(self, n_embd, hidden, bias=False):
        super().__init__()
        self.gate_proj = nn.Linear(n_embd, hidden, bias=bias)
        self.up_proj = nn.Linear(n_embd, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, n_embd, bias=bias)

    def activate(self, gate, up):
        return gate * torch.sigmoid(gate) * up  # SiLU written out

    def forward(self, x):
        return self.down_proj(self.activate(self.gate_proj(x), self.up_proj(x)))


class SwiGLUWithSiLUModule(SwiGLUWrittenOut):
    def __init__(self, n_embd, hidden):
        super().__init__(n_embd, hidden)
        self.act = nn.SiLU()

    def activate(self, gate, up):
        return self.act(gate) * up


class SwiGLUGatingTheWrongBranch(SwiGLUWrittenOut):
    def activate(self, gate, up):
        return F.silu(up) * gate


class SwiGLUWithGELU(SwiGLUWrittenOut):
    def activate(self, gate, up):
        return F.gelu(gate) * up


class SwiGLUWithoutTheProduct(SwiGLUWrittenOut):
    def activate(self, gate, up):
        return F.silu(gate) + up


class SwiGLUWithBiases(SwiGLUWrittenOut):
    def __init__(self, n_embd, hidden):
        super().__init__(n_embd, hidden, bias=True)


class SwiGLUWithMetasNames(nn.Module):
    def __init__(self, n_embd, hidden):
        super().__init__()
        self.w1, self.w3 = nn.Linear(n_embd, hidden, bias=False), nn.Linear(n_embd, hidden, bias=False)
        self.w2 = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class GroupedAttentionWrittenOut(nn.Module):
    """Equivalent: torch's RMSNorm for the QK-norm, expand + reshape for the repeat, the softmax written out."""

    change: dict = {}

    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        hs = config.n_embd // config.n_head
        self.q_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * hs, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * hs, bias=False)
        self.o_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.q_norm = nn.RMSNorm(hs, eps=config.norm_eps) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(hs, eps=config.norm_eps) if config.qk_norm else None

    def repeat(self, t):
        B, nkv, Tk, hs = t.shape
        group = self.n_head // nkv
        if self.change.get("tile"):
            return t.repeat(1, group, 1, 1)
        return t[:, :, None].expand(B, nkv, group, Tk, hs).reshape(B, nkv * group, Tk, hs)

    def forward(self, x, cos, sin, kv_cache=None):
        change = self.change
        B, T, C = x.shape
        hs = C // self.n_head
        q = self.q_proj(x).reshape(B, T, self.n_head, hs).permute(0, 2, 1, 3)
        k = self.k_proj(x).reshape(B, T, self.n_kv_head, hs).permute(0, 2, 1, 3)
        v = self.v_proj(x).reshape(B, T, self.n_kv_head, hs).permute(0, 2, 1, 3)
        if change.get("rotate_before_norm"):
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if kv_cache is not None and change.get("cache_before_rotation"):
            k, v = kv_cache.update(k, v)
        if not change.get("rotate_before_norm"):
            q = apply_rotary(q, cos, sin)
            k = k if change.get("unrotated_keys") else apply_rotary(k, cos, sin)
        if change.get("repeat_before_cache"):
            k, v = self.repeat(k), self.repeat(v)
        if kv_cache is not None and not change.get("cache_before_rotation") and not change.get("no_cache"):
            k, v = kv_cache.update(k, v)
        if not change.get("repeat_before_cache"):
            k, v = self.repeat(k), self.repeat(v)
        if change.get("always_causal"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.mT / math.sqrt(hs)  # (B, nh, T, Tk)
            scores = scores.masked_fill(~causal_mask(T, k.size(2)), float("-inf"))
            y = scores.softmax(dim=-1) @ v
        return self.o_proj(y.permute(0, 2, 1, 3).reshape(B, T, C))


def grouped_attention_with(**change):
    return type("GroupedAttentionWith_" + "_".join(change), (GroupedAttentionWrittenOut,), {"change": change})


class GroupedAttentionWithFullWidthKeys(GroupedAttentionWrittenOut):
    def __init__(self, config):
        super().__init__(config)
        self.k_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)


class GroupedAttentionAlwaysNormed(GroupedAttentionWrittenOut):
    def __init__(self, config):
        super().__init__(config)
        hs = config.n_embd // config.n_head
        self.q_norm, self.k_norm = nn.RMSNorm(hs, eps=config.norm_eps), nn.RMSNorm(hs, eps=config.norm_eps)


class MuonWrittenOut(torch.optim.Optimizer):
    """Equivalent: torch.lerp, a momentum kept in state.setdefault, the scale with ** 0.5."""

    change: dict = {}

    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0, steps=5):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, steps=steps))

    @torch.no_grad()
    def step(self):
        change = self.change
        for group in self.param_groups:
            lr, beta, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if change.get("fresh_buffer"):
                    self.state[p] = {}
                buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                if change.get("sgd_momentum"):  # buf = beta buf + g, look-ahead g + beta buf: the same direction
                    buf.mul_(beta).add_(p.grad)
                    ahead = p.grad + beta * buf
                else:
                    buf.copy_(torch.lerp(buf, p.grad, 1 - beta))
                    ahead = torch.lerp(p.grad, buf, beta)
                direction = orthogonalize(buf if change.get("no_nesterov") else ahead, group["steps"])
                rows, cols = p.shape
                scale = {"tall": max(1.0, rows / cols), "none": 1.0, "wide": max(1.0, cols / rows)}
                scale = scale[change.get("scale", "tall")] ** 0.5
                if not change.get("decay_after"):
                    p.mul_(1 - lr * decay)
                p.add_(direction.float() * (-lr * scale))
                if change.get("decay_after"):
                    p.mul_(1 - lr * decay)


def muon_with(**change):
    return type("MuonWith_" + "_".join(change), (MuonWrittenOut,), {"change": change})


MODERN_VARIANTS = [
    ("RMSNorm", RMSNormWrittenOut),
    ("RMSNorm", RMSNormWithOneOverSqrt),
    ("RMSNorm", RMSNormScalingInFloat32),
    ("SwiGLU", SwiGLUWrittenOut),
    ("SwiGLU", SwiGLUWithSiLUModule),
    ("ModernAttention", GroupedAttentionWrittenOut),
    ("Muon", MuonWrittenOut),
    ("Muon", muon_with(sgd_momentum=True)),
]


@pytest.mark.parametrize(("name", "answer"), MODERN_VARIANTS, ids=[answer.__name__ for _, answer in MODERN_VARIANTS])
def test_an_equivalent_modern_module_reads_built(name, answer):
    assert evaluate(name, answer) == Result(name, "built", "")


def test_the_written_out_grouped_attention_gives_the_package_s_outputs_through_a_cache():
    config = ModernConfig(block_size=8, n_layer=1, n_head=4, n_kv_head=2, n_embd=32, qk_norm=True)
    ours, theirs = GroupedAttentionWrittenOut(config), ModernAttention(config)
    ours.load_state_dict(theirs.state_dict())
    cos, sin = rotary_cos_sin(8, 8)
    x = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(0))
    cache = LayerKVCache(2, 2, 8, 8)
    with torch.no_grad():
        steps = torch.cat(
            [ours(x[:, :5], cos[:5], sin[:5], cache)]
            + [ours(x[:, t : t + 1], cos[t : t + 1], sin[t : t + 1], cache) for t in (5, 6, 7)],
            1,
        )
        torch.testing.assert_close(steps, theirs(x, cos, sin))


MODULE_MISTAKES_11 = [
    ("RMSNorm", RMSNormSubtractingTheMean, "you subtracted the mean: that is LayerNorm"),
    ("RMSNorm", RMSNormInTheInputsDtype, "on a float16 input of entries near 300 your output holds 0, inf or NaN"),
    ("RMSNorm", RMSNormReturningFloat32, "for a float16 input (and a float16 RMSNorm) your output is torch.float32"),
    ("RMSNorm", RMSNormWithEpsOutside, "eps goes inside the square root"),
    ("RMSNorm", RMSNormWithABias, "your RMSNorm has `bias`, which the package's RMSNorm has not"),
    ("RMSNorm", RMSNormWithAGain, "your RMSNorm has no `weight`: the package's RMSNorm has self.weight"),
    ("SwiGLU", SwiGLUGatingTheWrongBranch, "SiLU is on the wrong branch"),
    ("SwiGLU", SwiGLUWithGELU, "that is GELU on the gate (GEGLU)"),
    ("SwiGLU", SwiGLUWithoutTheProduct, "the gate multiplies up_proj's output, entry by entry"),
    ("SwiGLU", SwiGLUWithBiases, "your SwiGLU has `gate_proj.bias`, which the package's SwiGLU has not"),
    ("SwiGLU", SwiGLUWithMetasNames, "your SwiGLU has no `gate_proj.weight`"),
    ("ModernAttention", grouped_attention_with(tile=True), "repeat each head in place, k.repeat_interleave(group"),
    ("ModernAttention", grouped_attention_with(rotate_before_norm=True), "rotate after the QK-norm"),
    ("ModernAttention", grouped_attention_with(unrotated_keys=True), "the keys must be rotated too"),
    ("ModernAttention", grouped_attention_with(cache_before_rotation=True), "the cache holds the keys before their"),
    ("ModernAttention", grouped_attention_with(repeat_before_cache=True), "kv_cache.update got keys of 4 heads"),
    ("ModernAttention", grouped_attention_with(always_causal=True), "with 3 positions cached, the 2 new queries"),
    ("ModernAttention", grouped_attention_with(no_cache=True), "fed tokens 0 to 2 after 0 cached, the cache holds 0"),
    ("ModernAttention", GroupedAttentionWithFullWidthKeys, "`k_proj.weight` has shape (32, 32) in your"),
    ("ModernAttention", GroupedAttentionAlwaysNormed, "with config.qk_norm False there is no QK-norm"),
    ("Muon", muon_with(no_nesterov=True), "that steps along the momentum itself"),
    ("Muon", muon_with(decay_after=True), "decay the weights before the step"),
    ("Muon", muon_with(scale="none"), "a tall matrix (more rows than columns) takes a larger step"),
    ("Muon", muon_with(scale="wide"), "the larger step is for tall matrices"),
    ("Muon", muon_with(fresh_buffer=True), "keep the momentum buffer from one step to the next"),
]


@pytest.mark.parametrize(
    ("name", "answer", "message"), MODULE_MISTAKES_11, ids=[answer.__name__ for _, answer, _ in MODULE_MISTAKES_11]
)
def test_a_typical_mistake_in_a_modern_module_reads_wrong_and_names_it(name, answer, message):
    result = evaluate(name, answer)
    assert result.status == "wrong" and message in result.message, result.message


def test_every_modern_piece_has_a_variant_and_every_modern_module_two_mistakes_tested():
    pieces = [name for name, piece in PIECES.items() if piece.chapter == "11_modern" and not name.startswith("my_")]
    assert {name for name, _ in MODERN_VARIANTS + VARIANTS_11} == set(pieces)
    mistakes = Counter(name for name, _, _ in MODULE_MISTAKES_11)
    assert all(mistakes[name] >= 2 for name in ("RMSNorm", "SwiGLU", "ModernAttention", "Muon")), mistakes


def test_the_library_s_rms_norm_is_pointed_out():
    result = evaluate("RMSNorm", RMSNormByTheLibrary)
    assert result.status == "wrong" and result.message.startswith("RMSNorm calls F.rms_norm, the library's ready-made")


# ------------------------------------------------------------------ 12 fine-tuning


class LoRAWrittenOut(nn.Module):
    """LoRALinear written out, with one of the typical mistakes switched on by `change` (a subclass sets it)."""

    change: dict = {}

    def __init__(self, base, r, alpha):
        super().__init__()
        change = self.change
        if change.get("no_bias"):
            base = nn.Linear(base.in_features, base.out_features, bias=False).requires_grad_(False)
        if not change.get("unfrozen"):
            for p in base.parameters():  # a loop instead of requires_grad_(False)
                p.requires_grad = False
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)  # nn.Linear's own initialization: Kaiming's uniform
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        if change.get("a_zero"):
            nn.init.zeros_(self.lora_A.weight)
        if not change.get("b_random"):
            nn.init.zeros_(self.lora_B.weight)
        self.r, self.alpha = r, alpha

    def scaling(self, merge=False):
        what = self.change.get("merge_scaling" if merge else "scaling", "alpha / r")
        return {"alpha / r": self.alpha / self.r, "none": 1.0, "alpha": self.alpha, "r / alpha": self.r / self.alpha}[
            what
        ]

    def forward(self, x):
        base = F.linear(x, self.base.weight) if self.change.get("drop_bias") else self.base(x)
        return base + F.linear(F.linear(x, self.lora_A.weight), self.lora_B.weight) * self.scaling()

    def merged(self):
        with torch.no_grad():
            if self.change.get("merge_in_place"):
                self.base.weight += self.scaling(merge=True) * self.lora_B.weight @ self.lora_A.weight
                return self.base
            layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
            layer.weight.copy_(
                torch.addmm(self.base.weight, self.lora_B.weight, self.lora_A.weight, alpha=self.scaling(merge=True))
            )
            if self.base.bias is not None and not self.change.get("merge_drops_bias"):
                layer.bias.copy_(self.base.bias)
            elif self.base.bias is not None:
                layer.bias = None
        return layer


def lora_with(**change):
    return type("LoRAWith_" + "_".join(f"{k}_{v}" for k, v in change.items()), (LoRAWrittenOut,), {"change": change})


class LoRAStoringTheScaling(nn.Module):
    """The package's LoRALinear in other words: einsum, a stored scaling, A drawn from N(0, 0.02²)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.normal_(self.lora_A.weight, std=0.02)
        self.lora_B.weight.data.zero_()
        self.scale = alpha / r

    def forward(self, x):
        down = torch.einsum("...i,ri->...r", x, self.lora_A.weight)
        return self.base(x) + self.scale * torch.einsum("...r,or->...o", down, self.lora_B.weight)

    def merged(self):
        layer = copy.deepcopy(self.base)
        layer.weight.data = self.base.weight.data + self.scale * (self.lora_B.weight.data @ self.lora_A.weight.data)
        return layer


def add_lora_collecting_pairs(model, r, alpha, targets=("qkv", "proj", "fc")):
    model.requires_grad_(False)
    pairs = []
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Linear) and child_name in targets:
                pairs.append((parent, child_name, child))
    for parent, child_name, child in pairs:
        setattr(parent, child_name, LoRALinear(child, r, alpha))
    return model


def add_lora_freezing_after(model, r, alpha, targets=("qkv", "proj", "fc")):
    chosen = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in targets]
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha))
    return model.requires_grad_(False)


def add_lora_not_freezing(model, r, alpha, targets=("qkv", "proj", "fc")):
    for name in [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in targets]:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha))
    return model


def add_lora_to_every_linear(model, r, alpha, targets=("qkv", "proj", "fc")):
    model.requires_grad_(False)
    for name in [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha))
    return model


def add_lora_ignoring_targets(model, r, alpha, targets=("qkv", "proj", "fc")):
    return add_lora_collecting_pairs(model, r, alpha)


def add_lora_with_r_and_alpha_swapped(model, r, alpha, targets=("qkv", "proj", "fc")):
    model.requires_grad_(False)
    for name in [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in targets]:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRALinear(getattr(parent, child), alpha, r))
    return model


def merge_lora_over_children(model):
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, child_name, child.merged())
    return model


def merge_lora_on_the_top_level(model):
    for name, module in list(model.named_children()):
        if isinstance(module, LoRALinear):
            setattr(model, name, module.merged())
    return model


def merge_lora_with_dotted_setattr(model):
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            setattr(model, name, module.merged())
    return model


def merge_lora_without_the_scaling(model):
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            layer = copy.deepcopy(module.base)
            with torch.no_grad():
                layer.weight += module.lora_B.weight @ module.lora_A.weight
            setattr(model.get_submodule(parent_name), child, layer)
    return model


def merge_lora_without_returning(model):
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.merged())


VARIANTS_12 = [
    ("LoRALinear", LoRAWrittenOut),
    ("LoRALinear", LoRAStoringTheScaling),
    ("add_lora", add_lora_collecting_pairs),
    ("merge_lora", merge_lora_over_children),
]


@pytest.mark.parametrize(("name", "answer"), VARIANTS_12, ids=[answer.__name__ for _, answer in VARIANTS_12])
def test_an_equivalent_fine_tuning_piece_reads_built(name, answer):
    assert evaluate(name, answer) == Result(name, "built", "")


MISTAKES_12 = [
    ("LoRALinear", lora_with(b_random=True), "B must start at zero (nn.init.zeros_)"),
    ("LoRALinear", lora_with(scaling="none"), "the scaling alpha / r is missing"),
    ("LoRALinear", lora_with(scaling="alpha"), "you scaled the update by alpha alone"),
    ("LoRALinear", lora_with(scaling="r / alpha"), "the scaling is upside down"),
    ("LoRALinear", lora_with(unfrozen=True), "the base layer is not frozen: base.weight, base.bias still require"),
    ("LoRALinear", lora_with(a_zero=True), "A starts at zero too: then neither A nor B ever gets a gradient"),
    ("LoRALinear", lora_with(drop_bias=True), "the base's bias is missing from your output"),
    ("LoRALinear", lora_with(no_bias=True), "your LoRALinear has no `base.bias`: the base's bias was dropped"),
    ("LoRALinear", lora_with(merge_scaling="none"), "merged() forgot the scaling"),
    ("LoRALinear", lora_with(merge_in_place=True), "merged() changed your layer's own weights"),
    ("LoRALinear", lora_with(merge_drops_bias=True), "merged() dropped the base's bias"),
    ("add_lora", add_lora_freezing_after, "nothing is trainable: freeze the model before you wrap its layers"),
    ("add_lora", add_lora_not_freezing, "is still trainable: freeze the whole model first"),
    ("add_lora", add_lora_to_every_linear, "wrapped lm_head too"),
    ("add_lora", add_lora_ignoring_targets, "use the targets argument"),
    ("add_lora", add_lora_with_r_and_alpha_swapped, "gave adapters of rank 4, expected r = 2"),
    ("merge_lora", merge_lora_on_the_top_level, "after merge_lora, blocks.0.attn.qkv is still a LoRALinear"),
    ("merge_lora", merge_lora_with_dotted_setattr, "setattr(model, 'blocks.0.attn.qkv', ...) made a new attribute"),
    ("merge_lora", merge_lora_without_the_scaling, "the merged model forgot the scaling"),
    ("merge_lora", merge_lora_without_returning, "merge_lora(model) returned None"),
]


@pytest.mark.parametrize(
    ("name", "answer", "message"), MISTAKES_12, ids=[f"{name}-{answer.__name__}" for name, answer, _ in MISTAKES_12]
)
def test_a_typical_mistake_in_a_fine_tuning_piece_reads_wrong_and_names_it(name, answer, message):
    result = evaluate(name, answer)
    assert result.status == "wrong" and message in result.message, result.message


def test_every_fine_tuning_piece_has_a_variant_and_two_mistakes_tested():
    pieces = {name for name, piece in PIECES.items() if piece.chapter == "12_finetune"}
    assert {name for name, _ in VARIANTS_12} == pieces
    mistakes = Counter(name for name, _, _ in MISTAKES_12)
    assert all(mistakes[name] >= 2 for name in pieces), mistakes


def test_the_lora_check_follows_the_learners_own_class_into_merge_lora():
    # in the workbook, the learner's merge_lora finds their own LoRALinear by name once it is built
    namespace = {"LoRALinear": LoRAWrittenOut, "nn": nn}
    exec(
        "def merge_lora(model):\n"
        "    for name, module in list(model.named_modules()):\n"
        "        if isinstance(module, LoRALinear):\n"
        "            parent, _, child = name.rpartition('.')\n"
        "            setattr(model.get_submodule(parent), child, module.merged())\n"
        "    return model\n",
        namespace,
    )
    assert evaluate("merge_lora", namespace["merge_lora"]) == Result("merge_lora", "built", "")
