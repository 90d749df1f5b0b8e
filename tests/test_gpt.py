import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tinytorch.config import GPTConfig, count_parameters
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT, estimate_flops_per_token, estimate_parameters, next_token_loss

SMALL = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


def small_model(config: GPTConfig = SMALL, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config).eval()


MODEL = small_model()


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, SMALL.block_size))
def test_logits_have_shape_batch_time_vocab(B, T):
    idx = torch.randint(0, SMALL.vocab_size, (B, T))
    with torch.no_grad():
        logits = MODEL(idx)
    assert logits.shape == (B, T, SMALL.vocab_size)
    assert logits.dtype == torch.float32


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_logits_at_t_ignore_tokens_after_t(data):
    T = data.draw(st.integers(2, SMALL.block_size), label="T")
    t = data.draw(st.integers(0, T - 1), label="t")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    idx = torch.randint(0, SMALL.vocab_size, (2, T), generator=torch.Generator().manual_seed(seed))
    changed = idx.clone()
    changed[:, t] = (changed[:, t] + 1) % SMALL.vocab_size  # a different token at position t
    with torch.no_grad():
        before, after = MODEL(idx), MODEL(changed)
    torch.testing.assert_close(after[:, :t], before[:, :t], atol=1e-6, rtol=0)
    assert not torch.allclose(after[:, t], before[:, t])  # position t does read its own token


def test_loss_at_initialization_is_about_ln_vocab_size():
    config = GPTConfig()
    model = small_model(config)
    generator = torch.Generator().manual_seed(1)
    idx = torch.randint(0, config.vocab_size, (8, config.block_size), generator=generator)
    targets = torch.randint(0, config.vocab_size, (8, config.block_size), generator=generator)
    with torch.no_grad():
        loss = next_token_loss(model(idx), targets).item()
    assert abs(loss - math.log(config.vocab_size)) < 0.1


def test_loss_equals_cross_entropy_and_is_ln_v_for_uniform_logits():
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    expected = -torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).mean()
    torch.testing.assert_close(next_token_loss(logits, targets), expected)
    assert next_token_loss(torch.zeros(2, 5, 7), targets).item() == pytest.approx(math.log(7))


def test_head_is_tied_to_token_embedding_and_stays_tied_after_a_step():
    model = small_model().train()
    assert model.lm_head.weight is model.embeddings.wte.weight
    before = model.lm_head.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    idx = torch.randint(0, SMALL.vocab_size, (2, 8))
    next_token_loss(model(idx), torch.randint(0, SMALL.vocab_size, (2, 8))).backward()
    optimizer.step()
    assert not torch.equal(model.embeddings.wte.weight, before)  # the step did change the matrix
    assert model.lm_head.weight is model.embeddings.wte.weight
    assert torch.equal(model.lm_head.weight, model.embeddings.wte.weight)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "config",
    [GPTConfig(), SMALL, GPTConfig(vocab_size=65, block_size=32, n_layer=3, n_head=3, n_embd=48)],
    ids=["default", "small", "odd"],
)
def test_parameter_count_equals_estimate(config, bias):
    config = dataclasses.replace(config, bias=bias)
    assert count_parameters(GPT(config)) == estimate_parameters(config)


@pytest.mark.parametrize("config", [GPTConfig(), SMALL], ids=["default", "small"])
def test_training_flops_per_token_equal_estimate(config):
    model = small_model(config)
    idx = torch.randint(0, config.vocab_size, (1, config.block_size))
    # the math backend decomposes attention into matmuls the counter sees; the CPU flash kernel is not counted
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        next_token_loss(model(idx), idx).backward()
    assert counter.get_total_flops() == estimate_flops_per_token(config) * config.block_size


def test_gpt2_preset_on_meta_device_has_124m_parameters():
    with torch.device("meta"):
        model = GPT(GPTConfig.from_preset("gpt2"))
    assert model.lm_head.weight.is_meta
    assert count_parameters(model) == 124_439_808


def _hf_model(**overrides):
    transformers = pytest.importorskip("transformers")
    settings = dict(vocab_size=100, n_positions=32, n_embd=64, n_layer=2, n_head=4, bos_token_id=99, eos_token_id=99)
    settings.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **overrides)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**settings)).eval()


def test_logits_match_hugging_face_gpt2_with_the_same_weights():
    hf_model = _hf_model()
    ours = GPT.from_hf(hf_model).eval()
    assert ours.config == GPTConfig(vocab_size=100, block_size=32, n_layer=2, n_head=4, n_embd=64)
    idx = torch.randint(0, 100, (3, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf_model(idx).logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours(idx[:, :7]), hf_model(idx[:, :7]).logits, atol=1e-5, rtol=0)


def test_from_hf_rejects_a_different_activation():
    with pytest.raises(ValueError, match="gelu_new"):
        GPT.from_hf(_hf_model(activation_function="relu"))


def test_from_pretrained_without_a_cached_model_explains_how_to_get_it():
    pytest.importorskip("transformers")
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        GPT.from_pretrained("tinytorch-test/no-such-model")


def test_initialization_is_gpt2s_with_smaller_residual_projections():
    config = GPTConfig(vocab_size=128, block_size=32, n_layer=8, n_head=4, n_embd=256)
    model = small_model(config)
    target = 0.02 / math.sqrt(2 * config.n_layer)  # 0.005
    for name, param in model.named_parameters():
        if name.endswith("proj.weight"):  # the two layers that write into the residual stream
            assert param.std().item() == pytest.approx(target, rel=0.05), name
        elif param.dim() == 2:  # embeddings, qkv, fc (and the head, tied to wte)
            assert param.std().item() == pytest.approx(0.02, rel=0.05), name
        elif ".ln_" in name or name.startswith("ln_f."):  # LayerNorms start as the identity
            assert torch.all(param == (1.0 if name.endswith("weight") else 0.0)), name
        else:  # biases of the linear layers
            assert torch.count_nonzero(param) == 0, name


@pytest.mark.parametrize(
    "idx, match",
    [
        (torch.tensor([[1, 2, SMALL.vocab_size]]), "vocab_size"),
        (torch.tensor([[1, -1, 2]]), r"outside \[0, 50\)"),
        (torch.zeros(1, SMALL.block_size + 1, dtype=torch.long), "block_size"),
    ],
    ids=["id too large", "negative id", "too long"],
)
def test_bad_token_ids_are_value_errors(idx, match):
    with pytest.raises(ValueError, match=match):
        MODEL(idx)


def test_config_must_be_a_gpt_config():
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT("not a config")


def test_loss_rejects_mismatched_shapes_and_bad_targets():
    logits = torch.zeros(2, 5, 7)
    with pytest.raises(ValueError, match=r"targets have shape \(2, 4\)"):
        next_token_loss(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        next_token_loss(logits, torch.full((2, 5), 7))
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        next_token_loss(logits, torch.full((2, 5), -1))


def test_model_memorizes_one_sentence():
    line = "ROMEO: But, soft! what light through yonder window breaks?"
    tokenizer = CharTokenizer.from_text(line)
    ids = torch.tensor([tokenizer.encode(line)])
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=64)
    model = small_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss = next_token_loss(model(ids[:, :-1]), ids[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    with torch.no_grad():
        predicted = model.eval()(ids[:, :-1]).argmax(dim=-1)  # (1, T): the next character at every position
    assert tokenizer.decode(predicted[0]) == line[1:]


def test_gpt2_preset_has_124m_parameters():
    assert estimate_parameters(GPTConfig.from_preset("gpt2")) == 124_439_808


def test_estimate_without_bias_drops_every_bias_term():
    config = GPTConfig()
    C, L = config.n_embd, config.n_layer
    biases = L * (2 * C + 3 * C + C + 4 * C + C) + C  # LayerNorm biases, attention, MLP, final LayerNorm
    assert estimate_parameters(config) - estimate_parameters(dataclasses.replace(config, bias=False)) == biases


def test_flops_estimate_follows_the_formula():
    config = GPTConfig(vocab_size=10, block_size=8, n_layer=2, n_head=2, n_embd=4)
    assert estimate_flops_per_token(config) == 6 * (2 * 12 * 16 + 10 * 4) + 12 * 2 * 8 * 4


def test_forward_and_a_cached_decoding_step_compile_without_graph_breaks():
    from tinytorch.generation import KVCache

    torch._dynamo.reset()
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    idx = torch.randint(0, 50, (2, 8))
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(idx)
        assert explained.graph_break_count == 0, explained.break_reasons  # no .item(): no host sync, one graph
        cache = KVCache(model.config, batch_size=2)
        model(idx, cache)  # fill the cache with the prompt
        explained = torch._dynamo.explain(model)(idx[:, -1:], cache)  # one decoding step
        assert explained.graph_break_count == 0, explained.break_reasons
    torch._dynamo.reset()


def test_the_last_position_only_gives_the_last_row_of_the_logits():
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    idx = torch.randint(0, 50, (2, 8))
    with torch.no_grad():
        last = model(idx, last_only=True)  # (B, 1, V): what decoding needs
        assert last.shape == (2, 1, 50)
        torch.testing.assert_close(last, model(idx)[:, -1:])
