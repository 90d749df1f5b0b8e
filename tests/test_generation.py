import collections
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch import generation
from tinytorch.checkpoint import SHIPPED_MODELS, complete, load_pretrained
from tinytorch.config import GPTConfig
from tinytorch.generation import (
    KVCache,
    apply_repetition_penalty,
    decoding_threads,
    generate,
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


def test_kv_cache_memory_is_what_its_buffers_hold():
    cache = KVCache(CONFIG, batch_size=3)
    # k and v, in 2 blocks, for 3 sequences of 16 positions of 32 numbers (2 heads x 16), 4 bytes each
    assert cache.memory_bytes() == 2 * 2 * 3 * 16 * 32 * 4 == 24_576
    held = sum(buffer.untyped_storage().nbytes() for layer in cache.layers for buffer in (layer.k, layer.v))
    assert cache.memory_bytes() == held  # measured on the tensors' storage, not on a formula
    assert KVCache(CONFIG, batch_size=3, dtype=torch.float16).memory_bytes() == 24_576 // 2


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


@pytest.mark.parametrize("use_cache", [True, False])
def test_each_sequence_of_a_batch_stops_at_its_own_end_token(model, use_cache):
    idx = torch.randint(0, 50, (2, 4), generator=torch.Generator().manual_seed(0))
    sample = dict(generator=torch.Generator().manual_seed(1), use_cache=use_cache)
    free = generate(model, idx, 12, **sample)[:, 4:]  # (2, 12): no end token
    firsts = [{} for _ in free]  # token -> the first step it appears at, for each sequence
    for row, tokens in zip(firsts, free.tolist(), strict=True):
        for step, token in enumerate(tokens):
            row.setdefault(token, step)
    eos = next(t for t in sorted(firsts[0]) if t in firsts[1] and firsts[0][t] != firsts[1][t])
    ends = [firsts[0][eos], firsts[1][eos]]  # the two sequences reach it at different steps

    sample["generator"] = torch.Generator().manual_seed(1)
    out = generate(model, idx, 12, eos_token_id=eos, **sample)[:, 4:]
    assert out.size(1) == max(ends) + 1  # generation stops when the last sequence has ended
    for row, end in enumerate(ends):
        assert torch.equal(out[row, : end + 1], free[row, : end + 1])  # the same text up to its end token,
        assert (out[row, end:] == eos).all()  # then only end tokens


@pytest.mark.parametrize("sampling", [dict(do_sample=False), dict(temperature=0.9, top_k=20)])
def test_repetition_penalty_is_the_same_with_and_without_the_cache(model, sampling):
    idx = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    kwargs = dict(repetition_penalty=1.5, **sampling)  # 5 + 25 tokens: past block_size = 16 as well
    cached = generate(model, idx, 25, generator=torch.Generator().manual_seed(1), use_cache=True, **kwargs)
    uncached = generate(model, idx, 25, generator=torch.Generator().manual_seed(1), use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    plain = generate(model, idx, 25, generator=torch.Generator().manual_seed(1), **sampling)
    assert not torch.equal(cached, plain)  # the penalty changed the text, so the comparison means something


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


def test_the_shipped_subword_model_completes_any_unicode_prompt():
    model, tokenizer = load_pretrained("shakespeare-bpe")
    assert type(tokenizer).__name__ == "BPETokenizer" and model.config.vocab_size == tokenizer.vocab_size == 1024
    text = complete("Roméo, 東京 🙂:", max_new_tokens=20, seed=1, model="shakespeare-bpe")
    assert text.startswith("Roméo, 東京 🙂:") and len(text) > len("Roméo, 東京 🙂:") + 20
    assert text == complete("Roméo, 東京 🙂:", max_new_tokens=20, seed=1, model=SHIPPED_MODELS["shakespeare-bpe"])


def test_load_pretrained_names_the_shipped_models_when_it_finds_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*shakespeare, shakespeare-bpe"):
        load_pretrained("shakespeare-gpt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        complete("ROMEO:", model=tmp_path / "none.safetensors")
    with pytest.raises(TypeError, match="name_or_path must be a str or Path, got int"):
        load_pretrained(1)


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=float("inf")), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature="hot"), "temperature"),
        (dict(top_k=True), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(eos_token_id=50), "eos_token_id"),
        (dict(eos_token_id=-1), "eos_token_id"),
    ],
)
def test_sampling_values_of_the_wrong_kind_are_named(model, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 5, **kwargs)


def test_stream_text_checks_its_arguments_before_the_first_character():
    model, tokenizer = load_pretrained()
    stream = stream_text(model, tokenizer, "ROMEO:", 5, temperature=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        next(stream)  # the first next() raises: nothing was streamed before the error
    with pytest.raises(TypeError, match="seed"):
        next(stream_text(model, tokenizer, "ROMEO:", 5, seed=1.5))


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_a_small_model_decodes_on_one_thread_when_the_cores_are_busy(model, two_threads, monkeypatch):
    monkeypatch.setattr(generation, "_busy_cores", lambda: float(os.cpu_count() or 1))
    assert decoding_threads(model) == 1
    monkeypatch.setattr(generation, "_busy_cores", lambda: 0.0)
    assert decoding_threads(model) == 2  # quiet: PyTorch's setting
    monkeypatch.setattr(generation, "ONE_THREAD_BELOW", 0)  # now every model counts as big
    monkeypatch.setattr(generation, "_busy_cores", lambda: float(os.cpu_count() or 1))
    assert decoding_threads(model) == 2


def test_decoding_threads_apply_to_the_steps_only(model, two_threads, monkeypatch):
    monkeypatch.setattr(generation, "decoding_threads", lambda model: 1)
    seen = []
    hook = model.register_forward_hook(lambda *args: seen.append(torch.get_num_threads()))
    try:
        for _ in generation.stream_tokens(model, torch.zeros(1, 2, dtype=torch.long), 4):
            assert torch.get_num_threads() == 2  # the caller's setting while it holds a token
    finally:
        hook.remove()
    assert seen == [1, 1, 1, 1] and torch.get_num_threads() == 2


def no_proc():
    raise OSError("no /proc here")


def test_busy_cores_is_zero_where_the_system_does_not_tell(monkeypatch):
    monkeypatch.setattr(generation, "_cpu_ticks", no_proc)
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil raises ImportError: not installed
    monkeypatch.delattr(os, "getloadavg", raising=False)  # as on Windows
    monkeypatch.setattr(generation, "_last_reading", {})  # no earlier reading to reuse
    assert generation._busy_cores() == 0.0


def test_busy_cores_without_proc_asks_psutil_then_the_load_average(monkeypatch):
    monkeypatch.setattr(generation, "_cpu_ticks", no_proc)  # not Linux
    cpu_times = collections.namedtuple("cpu_times", "user idle")
    times = iter([cpu_times(10.0, 10.0), cpu_times(10.05, 10.05)])  # seconds of all cores: half of them busy

    class FakePsutil:
        @staticmethod
        def cpu_times():
            return next(times)

    monkeypatch.setitem(sys.modules, "psutil", FakePsutil)
    monkeypatch.setattr(generation, "_last_reading", {})
    busy = generation._busy_cores()
    assert busy <= (os.cpu_count() or 1) / 2 and busy > (os.cpu_count() or 1) / 2 - 1  # less this process's share
    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 2.0, 1.0), raising=False)
    monkeypatch.setattr(generation, "_last_reading", {})
    assert 2.0 < generation._busy_cores() <= 3.0  # the last minute's load, less this process's share


def test_busy_cores_reuses_a_reading_for_a_second(monkeypatch):
    reads = []

    def ticks():
        reads.append(1)
        return (100 * len(reads), 50 * len(reads), 0)  # half of the machine busy

    monkeypatch.setattr(generation, "_cpu_ticks", ticks)
    monkeypatch.setattr(generation, "_last_reading", {})
    first = generation._busy_cores()
    assert generation._busy_cores() == first == (os.cpu_count() or 1) / 2
    assert len(reads) == 2  # one measurement (two reads, 50 ms apart), then the reading is reused


def test_stream_text_holds_the_bytes_of_a_character_until_it_is_whole(monkeypatch):
    from tinytorch.bpe import BPETokenizer

    tokenizer = BPETokenizer(merges=[])  # bytes only: "é" is the two tokens 195, 169
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8))
    sampled = [torch.tensor([i]) for i in [*"é".encode(), *b" ok", 0xE2, 0x80]]  # ends inside "—"
    monkeypatch.setattr(generation, "stream_tokens", lambda *args, **kwargs: iter(sampled))
    pieces = list(stream_text(model, tokenizer, "café", 10))
    assert pieces == ["café", "é", " ", "o", "k", "\ufffd"]  # never half a character; the unfinished one at the end
