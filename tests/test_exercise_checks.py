"""The checks of the exercises (pieces named my_...): course order, typical mistakes, experiments with crafted results.

Every piece's reference reading "built" and a stub reading "not yet" are tested for all pieces in test_checks.py.
"""

import dataclasses
import inspect
import json
import math
import struct
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinytorch.attention import attention_weights
from tinytorch.bpe import END_OF_TEXT
from tinytorch.checks import PIECES, Result, evaluate
from tinytorch.config import GPTConfig, count_parameters
from tinytorch.gpt import GPT, estimate_flops_per_token, estimate_parameters, next_token_loss
from tinytorch.modern import ModernConfig, orthogonalize
from tinytorch.training import TrainConfig

EXERCISES = {
    "00_introduction": ["my_batch_logits", "my_too_long_message"],
    "01_utilities": ["my_config", "my_valid_heads", "my_shared_counts"],
    "02_embeddings": ["my_new_characters", "my_one_hot_embed", "my_embed_last"],
    "02b_subwords": ["my_chars_per_token", "my_glued_tokens", "my_join_documents"],
    "03_attention": ["my_attention_parameters", "my_bidirectional_weights", "my_window_mask"],
    "04_blocks": ["my_gpt2_block", "my_rms_norm", "my_written_into_stream"],
    "05_gpt": ["my_untied_params", "my_uniform_loss", "my_unchanged_positions", "my_training_days"],
    "06_training": ["my_short_run", "my_one_play_run", "my_accumulation_config"],
    "07_generation": ["my_min_p_filter", "my_kv_cache_bytes", "my_positions", "my_last_outputs"],
    "08_attention_explorer": ["my_previous_character_head", "my_row_entropy"],
    "09_training_runs": ["my_read_header", "my_state_bytes"],
    "10_budget": ["my_steps_for", "my_frontier"],
    "11_modern": ["my_grouped_cache_bytes", "my_steps_to_half"],
}
EXPERIMENTS = ["my_short_run", "my_one_play_run"]  # on chapter 06's data: their references only say so
LN_V = math.log(76)  # chapter 06's plays have 76 distinct characters


# registration


def test_every_exercise_is_registered_in_its_chapter_in_course_order():
    exercises = [(piece.chapter, name) for name, piece in PIECES.items() if name.startswith("my_")]
    assert exercises == [(chapter, name) for chapter, names in EXERCISES.items() for name in names]


def test_chapters_come_in_course_order_and_each_ends_with_its_exercises():
    chapters = [piece.chapter for piece in PIECES.values()]
    assert chapters == sorted(chapters)  # the stems start with the chapter's number
    for chapter in EXERCISES:
        names = [name for name, piece in PIECES.items() if piece.chapter == chapter]
        pieces = [name for name in names if not name.startswith("my_")]
        assert names == pieces + EXERCISES[chapter]


SIGNATURES = {  # the parameters of each exercise's function in the book
    "my_batch_logits": "(model, batch_size, length)",
    "my_too_long_message": "(model)",
    "my_config": "()",
    "my_valid_heads": "(n_embd, max_heads)",
    "my_shared_counts": "()",
    "my_new_characters": "(text, known)",
    "my_one_hot_embed": "(idx, weight)",
    "my_embed_last": "(embeddings, ids)",
    "my_chars_per_token": "(tokenizer, text)",
    "my_glued_tokens": "(tokens)",
    "my_join_documents": "(tokenizer, documents)",
    "my_attention_parameters": "(C)",
    "my_bidirectional_weights": "(q, k)",
    "my_window_mask": "(T, window)",
    "my_gpt2_block": "()",
    "my_rms_norm": "(x, weight, eps=1e-05)",
    "my_written_into_stream": "(depth, scale_residual)",
    "my_untied_params": "(config)",
    "my_uniform_loss": "(V)",
    "my_unchanged_positions": "(model, ids, t)",
    "my_training_days": "(config, tokens, flops_per_second)",
    "my_short_run": "(lr, warmup_steps, grad_clip)",
    "my_one_play_run": "()",
    "my_accumulation_config": "()",
    "my_min_p_filter": "(logits, min_p)",
    "my_kv_cache_bytes": "(config, batch_size)",
    "my_positions": "(prompt_length, max_new_tokens, block_size, use_cache)",
    "my_last_outputs": "(q, k, v, n)",
    "my_previous_character_head": "(maps)",
    "my_row_entropy": "(weights)",
    "my_read_header": "(path)",
    "my_state_bytes": "(checkpoint)",
    "my_steps_for": "(minutes, seconds_per_step, evaluations, seconds_per_evaluation)",
    "my_frontier": "(runs)",
    "my_grouped_cache_bytes": "(config, batch_size, bytes_per_number)",
    "my_steps_to_half": "(G)",
}


def parameters(function) -> str:
    """The signature without annotations, e.g. (x, weight, eps=1e-05)."""
    signature = inspect.signature(function)
    bare = [parameter.replace(annotation=parameter.empty) for parameter in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=signature.empty))


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_the_reference_has_the_signature_of_the_exercise(name):
    assert parameters(PIECES[name].reference) == SIGNATURES[name]
    assert inspect.signature(PIECES[name].reference).return_annotation is not inspect.Signature.empty


def test_a_wrong_signature_is_shown_the_exercise_s_one():
    message = evaluate("my_window_mask", lambda T: T).message
    assert message.startswith("calling my_window_mask raised TypeError")
    assert message.endswith(
        "keep the signature given in the cell: def my_window_mask(T: int, window: int) -> torch.Tensor"
    )


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_experiments_reference_runs_the_experiment_on_chapter_06_data_and_reads_built(name):
    assert evaluate(name, PIECES[name].reference) == Result(name, "built", "")


def test_checking_the_exercises_leaves_the_global_random_state_alone():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    for name in ("my_batch_logits", "my_uniform_loss", "my_written_into_stream", "my_positions", "my_state_bytes"):
        assert evaluate(name, PIECES[name].reference).status == "built", name
    assert torch.equal(torch.get_rng_state(), state)


def test_the_references_give_the_numbers_the_book_states():
    gpt2 = GPTConfig.from_preset("gpt2")
    assert PIECES["my_shared_counts"].reference() == (20, 40)
    assert PIECES["my_attention_parameters"].reference(128) == 4 * 128 * 128 + 4 * 128
    params, fraction = PIECES["my_gpt2_block"].reference()
    assert params == 12 * 768**2 + 13 * 768 and fraction == pytest.approx((8 * 768**2 + 5 * 768) / params)
    assert PIECES["my_untied_params"].reference(gpt2) == 124_439_808 + 50257 * 768
    assert PIECES["my_training_days"].reference(gpt2, 1e9, 100e9) == pytest.approx(98.9, abs=0.05)
    assert PIECES["my_kv_cache_bytes"].reference(gpt2, 1) == 75_497_472
    llama_8b = ModernConfig(vocab_size=128256, block_size=8192, n_layer=32, n_head=32, n_kv_head=8, n_embd=4096)
    assert PIECES["my_grouped_cache_bytes"].reference(llama_8b, 1, 2) == 2**30  # chapter 11: 1 GiB
    assert PIECES["my_positions"].reference(5, 30, 16, True) == 5 + 11 + 18 * 16  # 11 cached steps, then refills
    assert PIECES["my_positions"].reference(5, 30, 16, False) == sum(min(5 + s, 16) for s in range(30))
    scaled, unscaled = (PIECES["my_written_into_stream"].reference(24, scale) for scale in (True, False))
    assert (round(scaled, 3), round(unscaled, 3)) == (0.020, 0.137)  # chapter 04 prints these


def test_changing_token_t_leaves_exactly_the_t_positions_before_it_unchanged():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 11, (1, 10))
    assert [PIECES["my_unchanged_positions"].reference(model, ids, t) for t in (4, 0, 9)] == [4, 0, 9]


# experiments: hand-written answers that return crafted results


def blow_up_then_learn(lr, warmup_steps, grad_clip, steps=40):
    """Losses as a short run at lr 0.3 gives them: far above ln V without warmup and clipping, below it with."""
    if warmup_steps == 0 and grad_clip is None:
        return [4.4, 9.0, 25.0] + [20.0] * (steps - 3)
    return [4.4 - 1.2 * step / (steps - 1) for step in range(steps)]


def never_blows_up(lr, warmup_steps, grad_clip):
    return [3.9] + [3.5] * 39


def blows_up_both_times(lr, warmup_steps, grad_clip):
    return blow_up_then_learn(lr, 0, None)


def blows_up_to_nan(lr, warmup_steps, grad_clip):
    if warmup_steps == 0 and grad_clip is None:
        return [4.4, 7.0] + [math.nan] * 38
    return blow_up_then_learn(lr, warmup_steps, grad_clip)


def sixty_steps(lr, warmup_steps, grad_clip):
    return blow_up_then_learn(lr, warmup_steps, grad_clip, steps=60)


def losses_as_tensors(lr, warmup_steps, grad_clip):
    return [torch.tensor(loss) for loss in blow_up_then_learn(lr, warmup_steps, grad_clip)]


def history(train, val):
    return [{"step": 40 * (i + 1), "train": t, "val": v} for i, (t, v) in enumerate(zip(train, val, strict=True))]


def overfits():
    return history([2.45, 2.13, 1.96, 1.82, 1.67, 1.46], [2.81, 2.80, 2.86, 2.97, 3.06, 3.18])


def keeps_generalizing():
    return history([2.45, 2.13, 1.96, 1.82, 1.67, 1.46], [2.81, 2.60, 2.50, 2.45, 2.40, 2.38])


def barely_overfits():
    return history([2.45, 2.13, 1.96, 1.82, 1.67, 1.46], [2.81, 2.70, 2.72, 2.74, 2.76, 2.78])


def train_loss_rises_too():
    return history([2.45, 2.13, 2.20, 2.30, 2.40, 2.50], [2.81, 2.60, 2.86, 2.97, 3.06, 3.18])


def three_records():
    return overfits()[:3]


@pytest.mark.parametrize("answer", [overfits])
def test_an_overfitting_history_reads_built(answer):
    assert evaluate("my_one_play_run", answer) == Result("my_one_play_run", "built", "")


@pytest.mark.parametrize("answer", [blow_up_then_learn, blows_up_to_nan])
def test_a_run_that_blows_up_then_learns_reads_built(answer):
    assert evaluate("my_short_run", answer) == Result("my_short_run", "built", "")


def test_a_run_that_never_blows_up_gets_the_message_of_the_spec():
    assert evaluate("my_short_run", never_blows_up).message == (
        f"with lr 0.3 and neither warmup nor clipping the loss should blow up far above ln V = {LN_V:.2f}; "
        "yours peaked at 3.9: did you apply lr without warmup, and skip clipping when grad_clip is None?"
    )


# typical mistakes, each a small wrong function


def batch_logits_for_128_tokens(model, batch_size, length):
    return model(torch.randint(0, 128, (batch_size, length)))


def batch_logits_returning_the_ids(model, batch_size, length):
    return torch.randint(0, model.config.vocab_size, (batch_size, length))


def batch_logits_swapped(model, batch_size, length):
    return model(torch.randint(0, model.config.vocab_size, (length, batch_size)))


def batch_logits_as_probabilities(model, batch_size, length):
    return model(torch.randint(0, model.config.vocab_size, (batch_size, length))).softmax(dim=-1)


def too_long_not_caught(model):
    return model(torch.zeros(1, model.config.block_size + 1, dtype=torch.long))


def too_long_for_a_fixed_length(model):
    try:
        model(torch.zeros(1, 65, dtype=torch.long))
    except ValueError as error:
        return str(error)
    return "no error"


def too_long_returning_the_error(model):
    try:
        model(torch.zeros(1, model.config.block_size + 1, dtype=torch.long))
    except ValueError as error:
        return error


def too_long_with_float_ids(model):
    try:
        model(torch.zeros(1, model.config.block_size + 1))
    except ValueError as error:
        return str(error)


def config_swapped():
    return GPTConfig(n_layer=256, n_embd=8)


def config_with_more_heads():
    return GPTConfig(n_layer=8, n_head=8, n_embd=256)


def valid_heads_below_max(n_embd, max_heads):
    return [h for h in range(1, max_heads) if n_embd % h == 0]


def valid_heads_from_zero(n_embd, max_heads):
    return [h for h in range(max_heads + 1) if n_embd % h == 0]


def valid_heads_all(n_embd, max_heads):
    return list(range(1, max_heads + 1))


def shared_counts_of_two_layers():
    return count_parameters(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))), 40


def shared_counts_swapped():
    return 40, 20


def new_characters_the_other_way(text, known):
    return set(known) - set(text)


def new_characters_as_a_list(text, known):
    return sorted(set(text) - set(known))


def one_hot_in_int64(idx, weight):
    return F.one_hot(idx, num_classes=weight.size(0)) @ weight


def one_hot_without_num_classes(idx, weight):
    return F.one_hot(idx).to(weight.dtype) @ weight


def one_hot_itself(idx, weight):
    return F.one_hot(idx, num_classes=weight.size(0)).to(weight.dtype)


def embed_first(embeddings, ids):
    return embeddings(ids[None][:, : embeddings.config.block_size])


def embed_without_batch(embeddings, ids):
    return embeddings(ids[-embeddings.config.block_size :])


def embed_last_16(embeddings, ids):
    return embeddings(ids[None][:, -16:])


def attention_parameters_without_biases(C):
    return 4 * C * C


def attention_parameters_of_qkv(C):
    return 3 * C * C + 3 * C


def bidirectional_masked(q, k):
    return attention_weights(q, k)


def bidirectional_unscaled(q, k):
    return F.softmax(q @ k.transpose(-2, -1), dim=-1)


def window_one_too_wide(T, window):
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    return (distance >= 0) & (distance <= window)


def window_as_ints(T, window):
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    return ((distance >= 0) & (distance < window)).long()


def window_on_the_future(T, window):
    distance = torch.arange(T)[None, :] - torch.arange(T)[:, None]
    return (distance >= 0) & (distance < window)


def gpt2_block_matrices_only():
    C = 768
    return 12 * C * C, 8 * C * C / (12 * C * C)


def gpt2_block_two_thirds():
    C = 768
    return 12 * C * C + 13 * C, 2 / 3


def gpt2_block_in_percent():
    C = 768
    return 12 * C * C + 13 * C, 100 * (8 * C * C + 5 * C) / (12 * C * C + 13 * C)


def rms_norm_subtracting_the_mean(x, weight, eps=1e-5):
    return F.layer_norm(x, (x.size(-1),), weight, None, eps)


def rms_norm_eps_outside(x, weight, eps=1e-5):
    return x / (torch.sqrt((x**2).mean(dim=-1, keepdim=True)) + eps) * weight


def rms_norm_fixed_eps(x, weight, eps=1e-5):
    return F.rms_norm(x, (x.size(-1),), weight, 1e-5)


def stream_ignoring_the_scaling(depth, scale_residual):
    return PIECES["my_written_into_stream"].reference(depth, True)


def stream_of_the_output(depth, scale_residual):
    return 1.02


def stream_as_a_tensor(depth, scale_residual):
    return torch.tensor(0.02 if scale_residual else 0.14)


def untied_tied(config):
    return estimate_parameters(config)


def untied_with_a_head_bias(config):
    return estimate_parameters(config) + config.vocab_size * config.n_embd + config.vocab_size


def uniform_loss_tensor(V):
    return next_token_loss(torch.zeros(2, 5, V), torch.randint(0, V, (2, 5)))


def uniform_loss_in_bits(V):
    return math.log2(V)


def unchanged(model, ids, changed):
    with torch.no_grad():
        return (model(ids) == model(changed)).all(dim=-1)[0]


def unchanged_counting_the_changed(model, ids, t):
    changed = ids.clone()
    changed[0, t] = (changed[0, t] + 1) % model.config.vocab_size
    return int((~unchanged(model, ids, changed)).sum())


def unchanged_not_changing(model, ids, t):
    return int(unchanged(model, ids, ids.clone()).sum())


def unchanged_up_to_t(model, ids, t):
    return t + 1


def unchanged_in_place(model, ids, t):
    before = ids.clone()
    ids[0, t] = (ids[0, t] + 1) % model.config.vocab_size
    return int(unchanged(model, before, ids).sum())


def days_in_seconds(config, tokens, flops_per_second):
    return estimate_flops_per_token(config) * tokens / flops_per_second


def days_with_6_again(config, tokens, flops_per_second):
    return 6 * estimate_flops_per_token(config) * tokens / flops_per_second / 86_400


def accumulation_in_one_batch():
    return TrainConfig(batch_size=64)


def accumulation_of_64_batches():
    return TrainConfig(batch_size=16, grad_accum=64)


def accumulation_with_another_lr():
    return TrainConfig(batch_size=16, grad_accum=4, lr=3e-3)


def min_p_with_zeros(logits, min_p):
    probs = logits.softmax(dim=-1)
    return logits.masked_fill(probs < min_p * probs.max(dim=-1, keepdim=True).values, 0.0)


def min_p_dropping_ties(logits, min_p):
    probs = logits.softmax(dim=-1)
    return logits.masked_fill(probs <= min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))


def min_p_absolute(logits, min_p):
    return logits.masked_fill(logits.softmax(dim=-1) < min_p, float("-inf"))


def min_p_on_logits(logits, min_p):
    return logits.masked_fill(logits < min_p * logits.max(dim=-1, keepdim=True).values, float("-inf"))


def min_p_returning_probabilities(logits, min_p):
    probs = logits.softmax(dim=-1)
    return probs.masked_fill(probs < min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))


def min_p_in_place(logits, min_p):
    probs = logits.softmax(dim=-1)
    return logits.masked_fill_(probs < min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))


def chars_per_token_inverted(tokenizer, text):
    return len(tokenizer.encode(text)) / len(text)


def chars_per_token_of_bytes(tokenizer, text):
    return len(text.encode("utf-8")) / len(tokenizer.encode(text))


def glued_tokens_with_any_space(tokens):
    return [token for token in tokens if " " in token]


def glued_tokens_before_a_space_only(tokens):
    return [token for token in tokens if any(a.isalpha() and b == " " for a, b in pairwise(token))]


def join_documents_without_the_last_end(tokenizer, documents):
    end = tokenizer.special_tokens[END_OF_TEXT]
    ids = []
    for i, document in enumerate(documents):
        ids += tokenizer.encode(document) + ([end] if i < len(documents) - 1 else [])
    return ids


def join_documents_as_text(tokenizer, documents):
    return tokenizer.encode_ordinary("".join(document + END_OF_TEXT for document in documents))


def join_documents_allowing_the_special_inside(tokenizer, documents):
    joined = "".join(document + END_OF_TEXT for document in documents)
    return tokenizer.encode(joined, allowed_special="all")


def cache_bytes_of_keys_only(config, batch_size):
    return config.n_layer * batch_size * config.block_size * config.n_embd * 4


def cache_bytes_in_numbers(config, batch_size):
    return 2 * config.n_layer * batch_size * config.block_size * config.n_embd


def cache_bytes_of_one_sequence(config, batch_size):
    return 2 * config.n_layer * config.block_size * config.n_embd * 4


def positions_without_the_cache(prompt_length, max_new_tokens, block_size, use_cache):
    return sum(min(prompt_length + step, block_size) for step in range(max_new_tokens))


def positions_never_refilling(prompt_length, max_new_tokens, block_size, use_cache):
    if use_cache:
        return min(prompt_length, block_size) + max_new_tokens - 1
    return positions_without_the_cache(prompt_length, max_new_tokens, block_size, use_cache)


def positions_without_the_window(prompt_length, max_new_tokens, block_size, use_cache):
    if use_cache:
        return PIECES["my_positions"].reference(prompt_length, max_new_tokens, block_size, use_cache)
    return sum(prompt_length + step for step in range(max_new_tokens))


def last_outputs_square_mask(q, k, v, n):
    T = k.size(-2)
    scores = q[:, :, -n:] @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return F.softmax(scores.masked_fill(torch.ones(n, T).tril() == 0, float("-inf")), dim=-1) @ v


def last_outputs_of_the_last_keys(q, k, v, n):
    return attention_weights(q[:, :, -n:], k[:, :, -n:]) @ v[:, :, -n:]


def last_outputs_of_every_query(q, k, v, n):
    return attention_weights(q, k) @ v


def head_swapped(maps):
    layer, head = PIECES["my_previous_character_head"].reference(maps)
    return head, layer


def head_on_the_main_diagonal(maps):
    scores = maps.diagonal(dim1=-2, dim2=-1).mean(dim=-1)
    best = int(scores.argmax())
    return best // maps.size(1), best % maps.size(1)


def head_as_tensors(maps):
    best = maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1).argmax()
    return best // maps.size(1), best % maps.size(1)


def entropy_with_nan(weights):
    return -(weights * weights.log()).sum(dim=-1)


def entropy_without_minus(weights):
    return (weights * torch.where(weights > 0, weights.log(), 0.0)).sum(dim=-1)


def entropy_of_columns(weights):
    return -(weights * torch.where(weights > 0, weights.log(), 0.0)).sum(dim=0)


def header(path, byteorder="little", size=8):
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(size), byteorder)
        return json.loads(file.read(length))


def header_big_endian(path):
    return header(path, "big")


def header_after_4_bytes(path):
    return header(path, size=4)


def header_as_text(path):
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        return file.read(length).decode()


def state_prefix_bytes(checkpoint, measure=lambda t: t.nbytes, keep=lambda name, prefix: name.startswith(prefix)):
    return tuple(
        sum(measure(t) for name, t in checkpoint.tensors.items() if keep(name, prefix))
        for prefix in ("model.", "optimizer.")
    )


def state_in_numbers(checkpoint):
    return state_prefix_bytes(checkpoint, measure=lambda t: t.numel())


def state_swapped(checkpoint):
    return state_prefix_bytes(checkpoint)[::-1]


def state_counting_the_rng(checkpoint):
    return state_prefix_bytes(checkpoint, keep=lambda name, prefix: name.startswith("model.") == (prefix == "model."))


def state_without_steps(checkpoint):
    return state_prefix_bytes(
        checkpoint, keep=lambda name, prefix: name.startswith(prefix) and not name.endswith("step")
    )


def steps_in_minutes(minutes, seconds_per_step, evaluations, seconds_per_evaluation):
    return max(0, math.floor((minutes - evaluations * seconds_per_evaluation) / seconds_per_step))


def steps_without_evaluations(minutes, seconds_per_step, evaluations, seconds_per_evaluation):
    return max(0, math.floor(60 * minutes / seconds_per_step))


def steps_rounded_up(minutes, seconds_per_step, evaluations, seconds_per_evaluation):
    return max(0, math.ceil((60 * minutes - evaluations * seconds_per_evaluation) / seconds_per_step))


def steps_below_zero(minutes, seconds_per_step, evaluations, seconds_per_evaluation):
    return math.floor((60 * minutes - evaluations * seconds_per_evaluation) / seconds_per_step)


def steps_as_float(minutes, seconds_per_step, evaluations, seconds_per_evaluation):
    return max(0.0, (60 * minutes - evaluations * seconds_per_evaluation) // seconds_per_step)


def frontier_of_the_worst(runs):
    return {
        m: max((r for r in runs if r["minutes"] == m), key=lambda r: r["val"])
        for m in sorted({r["minutes"] for r in runs})
    }


def frontier_of_losses(runs):
    return {m: min(r["val"] for r in runs if r["minutes"] == m) for m in sorted({r["minutes"] for r in runs})}


def frontier_unsorted(runs):
    best = {}
    for run in runs:
        if run["minutes"] not in best or run["val"] < best[run["minutes"]]["val"]:
            best[run["minutes"]] = run
    return best


def grouped_cache_bytes_of_every_head(config, batch_size, bytes_per_number):
    return 2 * config.n_layer * batch_size * config.block_size * config.n_embd * bytes_per_number


def grouped_cache_bytes_of_keys_only(config, batch_size, bytes_per_number):
    hs = config.n_embd // config.n_head
    return config.n_layer * batch_size * config.n_kv_head * config.block_size * hs * bytes_per_number


def grouped_cache_bytes_in_numbers(config, batch_size, bytes_per_number):
    hs = config.n_embd // config.n_head
    return 2 * config.n_layer * batch_size * config.n_kv_head * config.block_size * hs


def steps_until_the_largest_passes(G):
    steps = 1
    while torch.linalg.svdvals(orthogonalize(G, steps).float()).max() <= 0.5:
        steps += 1
    return steps


def steps_counted_from_zero(G):
    steps = 1
    while torch.linalg.svdvals(orthogonalize(G, steps).float()).min() <= 0.5:
        steps += 1
    return steps - 1


def steps_on_bfloat16(G):
    steps = 1
    while torch.linalg.svdvals(orthogonalize(G, steps)).min() <= 0.5:
        steps += 1
    return steps


MISTAKES = [
    # (piece, wrong answer, the message, or the start of it)
    ("my_batch_logits", batch_logits_for_128_tokens, "an id was too large for this model, whose vocab_size is 11"),
    ("my_batch_logits", batch_logits_returning_the_ids, "my_batch_logits(model, 3, 20) returned a (3, 20) tensor"),
    ("my_batch_logits", batch_logits_swapped, "my_batch_logits(model, 3, 20) has shape (20, 3, 11): the batch"),
    ("my_batch_logits", batch_logits_as_probabilities, "my_batch_logits(model, 3, 20) returned probabilities"),
    ("my_too_long_message", too_long_not_caught, "the ValueError escaped (sequence has 9 tokens"),
    ("my_too_long_message", too_long_for_a_fixed_length, "got 'sequence has 65 tokens but block_size is 8"),
    ("my_too_long_message", too_long_returning_the_error, "return the message, str(error), not the error itself"),
    ("my_too_long_message", too_long_with_float_ids, "calling my_too_long_message raised TypeError: idx must hold"),
    ("my_config", config_swapped, "n_layer and n_embd are swapped"),
    ("my_config", config_with_more_heads, "n_head is 8, but the exercise keeps its default, 4"),
    ("my_valid_heads", valid_heads_below_max, "my_valid_heads(7, 7) leaves out 7 = max_heads"),
    ("my_valid_heads", valid_heads_from_zero, "n_head counts from 1"),
    ("my_valid_heads", valid_heads_all, "my_valid_heads(200, 12) contains 3, but 200 % 3 = 2"),
    ("my_shared_counts", shared_counts_of_two_layers, "the first Sequential has 40 parameters"),
    ("my_shared_counts", shared_counts_swapped, "the shared count comes first"),
    ("my_new_characters", new_characters_the_other_way, "my_new_characters('hello, world', 'hold up') gave the"),
    ("my_new_characters", new_characters_as_a_list, "my_new_characters('hello, world', 'hold up') must return a set"),
    ("my_one_hot_embed", one_hot_in_int64, "F.one_hot gives int64 numbers"),
    ("my_one_hot_embed", one_hot_without_num_classes, "F.one_hot(idx) makes only max(idx) + 1 = 7 columns"),
    ("my_one_hot_embed", one_hot_itself, "expected shape (2, 5, 6), got (2, 5, 10): that is the one-hot matrix"),
    ("my_embed_last", embed_first, "those are the first block_size ids"),
    ("my_embed_last", embed_without_batch, "embeddings takes a batch (B, T)"),
    ("my_embed_last", embed_last_16, "embeddings raised ValueError: sequence has 13 tokens but block_size is 8"),
    ("my_chars_per_token", chars_per_token_inverted, "my_chars_per_token(tokenizer, 'JULIET:\\nO Romeo, Romeo!"),
    ("my_chars_per_token", chars_per_token_of_bytes, "my_chars_per_token(tokenizer, 'café 🙂') counted bytes"),
    ("my_glued_tokens", glued_tokens_with_any_space, "my_glued_tokens(['the', ' the', 'd the', 'e\\n', 'ROME...)"),
    ("my_glued_tokens", glued_tokens_before_a_space_only, "my_glued_tokens(['the', ' the', 'd the', 'e\\n', 'ROME"),
    ("my_join_documents", join_documents_without_the_last_end, "my_join_documents(tokenizer, ['To be.', 'Or not.'])"),
    ("my_join_documents", join_documents_as_text, "my_join_documents(tokenizer, ['To be.', 'Or not.']) has 0"),
    ("my_join_documents", join_documents_allowing_the_special_inside, "a document that contains the string"),
    ("my_attention_parameters", attention_parameters_without_biases, "my_attention_parameters(32) returned 4096"),
    ("my_attention_parameters", attention_parameters_of_qkv, "my_attention_parameters(32) returned 3168"),
    ("my_bidirectional_weights", bidirectional_masked, "the weights above the diagonal are 0: you masked the future"),
    ("my_bidirectional_weights", bidirectional_unscaled, "the weights are too sharp"),
    ("my_window_mask", window_one_too_wide, "my_window_mask(6, 3) is one too wide"),
    ("my_window_mask", window_as_ints, "my_window_mask(6, 3) has dtype torch.int64: return a bool tensor"),
    ("my_window_mask", window_on_the_future, "my_window_mask(6, 3) lets queries look at later keys"),
    ("my_gpt2_block", gpt2_block_matrices_only, "7,077,888 is 12·C², the matrices only"),
    ("my_gpt2_block", gpt2_block_two_thirds, "exactly 2/3 counts the matrices only"),
    ("my_gpt2_block", gpt2_block_in_percent, "the MLP's fraction is 66.6: a share between 0 and 1"),
    ("my_rms_norm", rms_norm_subtracting_the_mean, "you subtracted the mean: that is LayerNorm"),
    ("my_rms_norm", rms_norm_eps_outside, "eps goes inside the square root"),
    ("my_rms_norm", rms_norm_fixed_eps, "use the eps argument (here 0.1)"),
    ("my_written_into_stream", stream_ignoring_the_scaling, "without the scaling, 24 blocks should write several"),
    ("my_written_into_stream", stream_of_the_output, "with the scaling, yours measured 1.02, about the size of the"),
    ("my_written_into_stream", stream_as_a_tensor, "my_written_into_stream(24, True) returned a tensor"),
    ("my_untied_params", untied_tied, 'my_untied_params(GPTConfig.from_preset("gpt2")) returned 124,439,808, the'),
    ("my_untied_params", untied_with_a_head_bias, 'my_untied_params(GPTConfig.from_preset("gpt2")) counts a bias'),
    ("my_uniform_loss", uniform_loss_tensor, "my_uniform_loss(50) returned a tensor: return a Python float"),
    ("my_uniform_loss", uniform_loss_in_bits, "my_uniform_loss(50) returned 5.64386: all-equal logits give"),
    ("my_unchanged_positions", unchanged_counting_the_changed, "my_unchanged_positions(model, ids, 4) with ids of"),
    ("my_unchanged_positions", unchanged_not_changing, "my_unchanged_positions(model, ids, 4) with ids of shape"),
    ("my_unchanged_positions", unchanged_up_to_t, "my_unchanged_positions(model, ids, 4) with ids of shape"),
    ("my_unchanged_positions", unchanged_in_place, "my_unchanged_positions changed the ids it was given"),
    ("my_training_days", days_in_seconds, 'my_training_days(GPTConfig.from_preset("gpt2"), 1e+09, 1e+11) returned'),
    ("my_training_days", days_with_6_again, 'my_training_days(GPTConfig.from_preset("gpt2"), 1e+09, 1e+11) returned'),
    ("my_short_run", never_blows_up, "with lr 0.3 and neither warmup nor clipping the loss should blow up"),
    ("my_short_run", blows_up_both_times, "with 20 warmup steps and clipping at 1 the same lr should learn"),
    ("my_short_run", sixty_steps, "my_short_run(0.3, 0, None) returned 60 losses, expected one per step, 40"),
    ("my_short_run", losses_as_tensors, "loss 0 of my_short_run(0.3, 0, None) is a tensor: append loss.item()"),
    ("my_one_play_run", keeps_generalizing, "the validation loss is at its lowest at the end, step 240: the model"),
    ("my_one_play_run", barely_overfits, "the validation loss should end well above its lowest point"),
    ("my_one_play_run", train_loss_rises_too, "the training loss should keep falling after step 80"),
    ("my_one_play_run", three_records, "the history has 3 records, expected at least 5"),
    ("my_accumulation_config", accumulation_in_one_batch, "batch_size is 64, but only 16 windows fit in memory"),
    ("my_accumulation_config", accumulation_of_64_batches, "each step sees batch_size × grad_accum = 16 × 64 = 1024"),
    ("my_accumulation_config", accumulation_with_another_lr, "lr is 0.003, but the exercise keeps its default, 0.002"),
    ("my_min_p_filter", min_p_with_zeros, "the dropped logits must be -inf, not 0"),
    ("my_min_p_filter", min_p_dropping_ties, "in my_min_p_filter(logits, 1.0) the most likely token was dropped"),
    ("my_min_p_filter", min_p_absolute, "my_min_p_filter(logits, 0.05): the threshold is min_p times the most"),
    ("my_min_p_filter", min_p_on_logits, "my_min_p_filter(logits, 0.05): compare probabilities, not logits"),
    ("my_min_p_filter", min_p_returning_probabilities, "my_min_p_filter(logits, 0.05): the kept logits must stay"),
    ("my_min_p_filter", min_p_in_place, "my_min_p_filter changed its input"),
    ("my_kv_cache_bytes", cache_bytes_of_keys_only, 'my_kv_cache_bytes(GPTConfig.from_preset("gpt2"), 1) returned'),
    ("my_kv_cache_bytes", cache_bytes_in_numbers, 'my_kv_cache_bytes(GPTConfig.from_preset("gpt2"), 1) returned'),
    ("my_kv_cache_bytes", cache_bytes_of_one_sequence, "my_kv_cache_bytes(GPTConfig(vocab_size=11, block_size=12"),
    ("my_positions", positions_without_the_cache, "my_positions(3, 10, 16, True) returned 75, as many as without"),
    ("my_positions", positions_never_refilling, "my_positions(5, 30, 16, True) returned 34: once the text is"),
    ("my_positions", positions_without_the_window, "my_positions(5, 30, 16, False) returned 585: each step feeds"),
    (
        "my_last_outputs",
        last_outputs_square_mask,
        "the queries need the offset mask: use attention_weights (it shifts the mask when there are more keys than "
        "queries)",
    ),
    ("my_last_outputs", last_outputs_of_the_last_keys, "the last n queries see all T keys and values"),
    ("my_last_outputs", last_outputs_of_every_query, "my_last_outputs(q, k, v, 3) with q, k and v of shape"),
    ("my_previous_character_head", head_swapped, "for maps of shape (3, 4, 10, 10) you returned (1, 2): return"),
    ("my_previous_character_head", head_on_the_main_diagonal, "for maps of shape (3, 4, 10, 10), layer 0, head 3"),
    ("my_previous_character_head", head_as_tensors, "return Python ints, (layer, head): int(...)"),
    ("my_row_entropy", entropy_with_nan, "for uniform causal rows the entropy holds NaN: 0 * log 0 gave NaN"),
    ("my_row_entropy", entropy_without_minus, "for uniform causal rows the entropy came out negative"),
    ("my_row_entropy", entropy_of_columns, "that sums over the queries"),
    ("my_read_header", header_big_endian, "reading the header raised "),
    ("my_read_header", header_after_4_bytes, "reading the header raised UnicodeDecodeError"),
    ("my_read_header", header_as_text, "return the header parsed into a dict: json.loads(...)"),
    ("my_state_bytes", state_in_numbers, "those are numbers of elements; count bytes: tensor.nbytes"),
    ("my_state_bytes", state_swapped, "the weights come first"),
    ("my_state_bytes", state_counting_the_rng, "the rng.* tensors are the random state, not the optimizer's"),
    ("my_state_bytes", state_without_steps, "the optimizer's step tensors count too"),
    ("my_steps_for", steps_in_minutes, "my_steps_for(2, 0.045, 4, 0.5) returned 0: minutes are 60 seconds each"),
    ("my_steps_for", steps_without_evaluations, "my_steps_for(2, 0.045, 4, 0.5) returned 2666: the evaluations"),
    ("my_steps_for", steps_rounded_up, "my_steps_for(2, 0.045, 4, 0.5) returned 2623: round down"),
    ("my_steps_for", steps_below_zero, "my_steps_for(0.05, 1, 4, 1) returned -1: never fewer than 0 steps"),
    ("my_steps_for", steps_as_float, "my_steps_for(2, 0.045, 4, 0.5) returned a float"),
    ("my_frontier", frontier_of_the_worst, "at budget 2 that is the run of the highest val"),
    ("my_frontier", frontier_of_losses, "the value of budget 2 is a float"),
    ("my_frontier", frontier_unsorted, "put the budgets in increasing order"),
    (
        "my_grouped_cache_bytes",
        grouped_cache_bytes_of_every_head,
        "my_grouped_cache_bytes(config, 1, 4) for 3 blocks, 8 query and 2 key heads, C = 64 returned 49,152: that is "
        "the cache of n_head key and value heads",
    ),
    ("my_grouped_cache_bytes", grouped_cache_bytes_of_keys_only, "my_grouped_cache_bytes(config, 1, 4) for 3 blocks"),
    ("my_grouped_cache_bytes", grouped_cache_bytes_in_numbers, "my_grouped_cache_bytes(config, 1, 4) for 3 blocks"),
    ("my_steps_to_half", steps_until_the_largest_passes, "my_steps_to_half(G) for a (32, 24) G"),
    ("my_steps_to_half", steps_counted_from_zero, "my_steps_to_half(G) for a (32, 24) G"),
    ("my_steps_to_half", steps_on_bfloat16, "calling my_steps_to_half raised NotImplementedError"),
]


@pytest.mark.parametrize(("name", "answer", "message"), MISTAKES, ids=[answer.__name__ for _, answer, _ in MISTAKES])
def test_a_typical_mistake_reads_wrong_with_its_message(name, answer, message):
    result = evaluate(name, answer)
    assert result.status == "wrong", result
    assert result.message.startswith(message), result.message


def test_every_chapter_with_exercises_has_a_typical_mistake_tested():
    tested = {PIECES[name].chapter for name, _, _ in MISTAKES}
    assert tested == set(EXERCISES)
    assert {name for name, _, _ in MISTAKES} == {name for names in EXERCISES.values() for name in names}


def test_a_wrong_count_says_which_way_it_is_off_without_giving_the_answer():
    result = evaluate("my_attention_parameters", attention_parameters_without_biases)
    assert result.message == (
        "my_attention_parameters(32) returned 4096, but CausalSelfAttention of width 32 with 1 head(s) has more "
        "parameters: count the biases too; a Linear(C, n) has n of them"
    )
    assert str(4 * 32 * 32 + 4 * 32) not in evaluate("my_attention_parameters", lambda C: 1).message


def test_a_mistake_in_chapter_11_s_exercises_is_named():
    assert evaluate("my_grouped_cache_bytes", grouped_cache_bytes_of_keys_only).message.endswith(
        "a cache keeps keys and values: 2 tensors per block"
    )
    assert evaluate("my_grouped_cache_bytes", grouped_cache_bytes_in_numbers).message.endswith(
        "that is a count of numbers: each takes bytes_per_number = 4 bytes"
    )
    assert (
        "when the largest singular value passes 0.5"
        in evaluate("my_steps_to_half", steps_until_the_largest_passes).message
    )
    assert "off by one" in evaluate("my_steps_to_half", steps_counted_from_zero).message
    assert evaluate("my_steps_to_half", steps_on_bfloat16).message.endswith("call .float() on the tensor first")


def test_a_message_names_the_unit_that_was_wrong():
    assert evaluate("my_training_days", days_in_seconds).message.endswith(
        "that is in seconds: a day has 86,400 of them"
    )
    assert evaluate("my_kv_cache_bytes", cache_bytes_of_keys_only).message.endswith(
        "a cache keeps keys and values: 2 tensors per block"
    )
    assert evaluate("my_kv_cache_bytes", cache_bytes_in_numbers).message.endswith("a float32 number takes 4 bytes")
    assert evaluate("my_kv_cache_bytes", cache_bytes_of_one_sequence).message.endswith(
        "each sequence of the batch has its own keys and values"
    )


def test_a_count_of_positions_names_the_mistake_of_each_kind():
    messages = {
        answer.__name__: evaluate("my_unchanged_positions", answer).message
        for answer in (unchanged_counting_the_changed, unchanged_not_changing, unchanged_up_to_t)
    }
    assert messages["unchanged_counting_the_changed"].endswith(
        "returned 6: that counts the positions that changed; count those that stayed"
    )
    assert "every position kept its logits, so the token at t did not change" in messages["unchanged_not_changing"]
    assert "position t reads the token you changed" in messages["unchanged_up_to_t"]


def test_a_config_of_the_books_own_class_is_accepted():
    """In the book, chapter 01 defines GPTConfig in its own export cell: a class of the same name and fields."""
    fields = [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(GPTConfig)]
    book_config = dataclasses.make_dataclass("GPTConfig", fields, frozen=True)
    assert evaluate("my_config", lambda: book_config(n_layer=8, n_embd=256)).status == "built"
    assert evaluate("my_config", lambda: {"n_layer": 8, "n_embd": 256}).status == "wrong"
