import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.config import GPTConfig
from tinytorch.generation import (
    KVCache,
    apply_repetition_penalty,
    complete,
    generate,
    load_pretrained,
    stream_text,
    top_k_filter,
    top_p_filter,
)
from tinytorch.gpt import GPT, next_token_loss

CONFIG = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(CONFIG).eval()


@settings(max_examples=15, deadline=None)
@given(prompt_length=st.integers(1, 20), new=st.integers(1, 30))
def test_cached_and_uncached_greedy_agree_across_block_size(model, prompt_length, new):
    idx = torch.randint(0, 50, (2, prompt_length), generator=torch.Generator().manual_seed(prompt_length))
    cached = generate(model, idx, new, do_sample=False, use_cache=True)
    uncached = generate(model, idx, new, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    assert cached.shape == (2, prompt_length + new)


def test_cached_and_uncached_seeded_sampling_agree(model):
    idx = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    kwargs = dict(temperature=0.9, top_k=20, top_p=0.9, num_return_sequences=3)
    cached = generate(model, idx, 40, generator=torch.Generator().manual_seed(1), use_cache=True, **kwargs)
    uncached = generate(model, idx, 40, generator=torch.Generator().manual_seed(1), use_cache=False, **kwargs)
    assert cached.shape == (6, 45)
    assert torch.equal(cached, uncached)


def test_cached_logits_match_a_full_forward(model):
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    full = model(idx)  # (B, T, V)
    cache = KVCache(CONFIG, batch_size=2)
    steps = [model(idx[:, :6], cache)] + [model(idx[:, t : t + 1], cache) for t in range(6, 16)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 16


def test_cache_refuses_more_than_block_size(model):
    cache = KVCache(CONFIG, batch_size=1)
    model(torch.zeros(1, 16, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 1, dtype=torch.long), cache)


def test_kv_cache_memory_follows_the_formula():
    cache = KVCache(CONFIG, batch_size=3)
    hs = CONFIG.n_embd // CONFIG.n_head
    assert cache.memory_bytes() == 2 * CONFIG.n_layer * 3 * CONFIG.n_head * CONFIG.block_size * hs * 4


def test_greedy_generation_matches_transformers():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        vocab_size=100, n_positions=128, n_embd=64, n_layer=2, n_head=4, bos_token_id=99, eos_token_id=99
    )
    hf_config.resid_pdrop = hf_config.embd_pdrop = hf_config.attn_pdrop = 0.0
    hf_model = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = GPT.from_hf(hf_model).eval()
    idx = torch.randint(0, 99, (1, 10), generator=torch.Generator().manual_seed(0))
    theirs = hf_model.generate(
        idx,
        attention_mask=torch.ones_like(idx),
        max_new_tokens=100,
        min_new_tokens=100,
        do_sample=False,
        pad_token_id=99,
    )
    assert torch.equal(generate(ours, idx, 100, do_sample=False), theirs)


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = top_k_filter(logits, 2)
    assert torch.isfinite(kept).tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(top_p_filter(probs.log(), 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(probs.log(), 0.01)).sum() == 1  # the likeliest always stays


def test_repetition_penalty_lowers_seen_tokens_only():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def test_eos_stops_generation(model):
    idx = torch.randint(0, 50, (1, 4), generator=torch.Generator().manual_seed(0))
    first = generate(model, idx, 1, do_sample=False)[0, -1].item()
    out = generate(model, idx, 20, do_sample=False, eos_token_id=first)
    assert out.shape == (1, 5) and out[0, -1].item() == first


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=0), "top_k"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(num_return_sequences=0), "num_return_sequences"),
    ],
)
def test_invalid_sampling_values_are_value_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 5, **kwargs)


def test_empty_prompt_is_a_value_error(model):
    with pytest.raises(ValueError, match="empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 5)


def test_long_prompts_are_cropped_to_block_size(model):
    idx = torch.randint(0, 50, (1, 40), generator=torch.Generator().manual_seed(0))
    out = generate(model, idx, 3, do_sample=False)
    assert out.shape == (1, 43)
    assert torch.equal(out[:, 40:], generate(model, idx[:, -16:], 3, do_sample=False)[:, 16:])


def test_generation_restores_training_mode(model):
    model.train()
    generate(model, torch.zeros(1, 2, dtype=torch.long), 2)
    assert model.training
    model.eval()


def test_shipped_model_completes_a_phrase():
    text = complete("ROMEO:", max_new_tokens=50, seed=1)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 50
    assert text == complete("ROMEO:", max_new_tokens=50, seed=1)  # seeded: repeatable


def test_streamed_text_equals_the_completion():
    model, tokenizer = load_pretrained()
    pieces = list(stream_text(model, tokenizer, "To be, or not", 30, seed=3))
    assert pieces[0] == "To be, or not" and len(pieces) == 31
    assert "".join(pieces) == complete("To be, or not", max_new_tokens=30, seed=3)


def test_unknown_characters_in_the_prompt_are_named():
    with pytest.raises(ValueError, match="'@' at position 5"):
        complete("ROMEO@", max_new_tokens=5)


def test_cli_complete_streams_text():
    command = [sys.executable, "-m", "tinytorch", "complete", "ROMEO:", "--max-new-tokens", "40", "--seed", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout.rstrip("\n")) >= len("ROMEO:") + 30
    no_stream = subprocess.run([*command, "--no-stream"], capture_output=True, text=True, timeout=120)
    assert no_stream.stdout == result.stdout


def test_cli_complete_reports_a_missing_checkpoint(tmp_path):
    command = [sys.executable, "-m", "tinytorch", "complete", "ROMEO:", "--checkpoint", str(tmp_path / "none")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "no checkpoint at" in result.stderr


def test_generated_ids_can_be_trained_on(model):
    out = generate(model, torch.zeros(1, 3, dtype=torch.long), 10, do_sample=False)
    assert not out.is_inference()  # decoding runs under inference_mode, its result is an ordinary tensor
    model.train()
    next_token_loss(model(out[:, :-1]), out[:, 1:]).backward()
    model.zero_grad()
    model.eval()


def test_cli_complete_into_a_closed_pipe_is_quiet():
    command = f'"{sys.executable}" -m tinytorch complete "ROMEO:" --max-new-tokens 200 --seed 1 | head -c 10'
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) == 10
    assert "Traceback" not in result.stderr
