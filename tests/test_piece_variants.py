"""A different but equivalent way to write a piece never reads wrong (einsum for @, F.softmax, torch.tril for the
package's mask, a Python loop over heads or rows, reshape where view works, ...). The other direction, typical
mistakes reading wrong with their message, is tests/test_checks.py's MISTAKES."""

import functools
import math
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinytorch.attention import CausalSelfAttention
from tinytorch.blocks import MLP, Block, LayerNorm
from tinytorch.checks import Result, evaluate
from tinytorch.checks import ch06_training as ch06_checks
from tinytorch.embeddings import Embeddings
from tinytorch.generation import KVCache, top_k_filter, top_p_filter
from tinytorch.gpt import next_token_loss
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
