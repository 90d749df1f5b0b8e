"""Chapter 11's modern model: RMSNorm, rotary positions, grouped-query attention, Muon; checked against
transformers' Llama and torch.optim.Muon."""

import copy
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tinytorch.modern import (
    GroupedKVCache,
    ModernConfig,
    ModernGPT,
    Muon,
    RMSNorm,
    apply_rotary,
    orthogonalize,
    rotary_cos_sin,
)

SMALL = ModernConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)


def llama(**changes):
    """A small random transformers LlamaForCausalLM (nothing downloaded), in eval mode."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = dict(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**config, **changes})).eval()


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_logits_equal_llamas_uncached_and_cached(n_kv_head):
    hf_model = llama(num_key_value_heads=n_kv_head)
    ours = ModernGPT.from_hf(hf_model).eval()
    assert ours.config.n_kv_head == n_kv_head
    idx = torch.randint(0, 100, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf_model(idx).logits
        torch.testing.assert_close(ours(idx), theirs, atol=1e-5, rtol=0)
        cache = GroupedKVCache(ours.config, batch_size=2)
        steps = [ours(idx[:, :5], cache)] + [ours(idx[:, t : t + 1], cache) for t in range(5, 32)]
        torch.testing.assert_close(torch.cat(steps, dim=1), theirs, atol=1e-5, rtol=0)


def test_from_hf_refuses_a_llama_it_cannot_copy():
    with pytest.raises(ValueError, match="SiLU"):
        ModernGPT.from_hf(llama(hidden_act="gelu"))
    with pytest.raises(ValueError, match="biases"):
        ModernGPT.from_hf(llama(attention_bias=True))


def test_rmsnorm_equals_torchs():
    x = torch.randn(3, 5, 32) * 4 + 1
    norm = RMSNorm(32)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(32))
    reference = nn.RMSNorm(32, eps=1e-6)
    reference.load_state_dict(norm.state_dict())
    torch.testing.assert_close(norm(x), reference(x))
    assert norm.half()(x.half()).dtype == torch.float16  # the mean of squares in float32, the result in x's dtype


@settings(max_examples=20, deadline=None)
@given(m=st.integers(0, 60), n=st.integers(0, 60), shift=st.integers(0, 60))
def test_rotary_scores_depend_only_on_the_distance(m, n, shift):
    cos, sin = rotary_cos_sin(16, 128)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(i, j):
        return (apply_rotary(q, cos[i : i + 1], sin[i : i + 1]) * apply_rotary(k, cos[j : j + 1], sin[j : j + 1])).sum()

    torch.testing.assert_close(score(m, n), score(m + shift, n + shift), atol=1e-4, rtol=1e-4)


def test_rotary_needs_an_even_head_size():
    with pytest.raises(ValueError, match="even head size"):
        rotary_cos_sin(15, 8)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(n_kv_head=3), "not a multiple of n_kv_head"),
        (dict(n_head=32), "even whole number"),
        (dict(mlp="gelu"), "mlp must be"),
        (dict(n_layer=0), "n_layer must be a positive integer"),
        (dict(mlp_hidden=-1), "mlp_hidden"),
    ],
)
def test_config_says_what_is_wrong(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **changes)


def test_model_refuses_a_gpt_config():
    from tinytorch.config import GPTConfig

    with pytest.raises(TypeError, match="ModernConfig"):
        ModernGPT(GPTConfig())


@pytest.mark.parametrize("changes", [{}, dict(qk_norm=True, mlp="relu2", zero_init=True), dict(tie_embeddings=True)])
def test_cached_decoding_equals_the_full_forward(changes):
    torch.manual_seed(0)
    model = ModernGPT(dataclasses.replace(SMALL, **changes)).eval()
    idx = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        full = model(idx)
        cache = GroupedKVCache(model.config, batch_size=3)
        steps = torch.cat([model(idx[:, :1], cache)] + [model(idx[:, t : t + 1], cache) for t in range(1, 16)], 1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_logits_at_t_ignore_tokens_after_t():
    torch.manual_seed(0)
    model = ModernGPT(SMALL).eval()
    idx = torch.randint(0, 50, (1, 16))
    changed = idx.clone()
    changed[0, 9:] = (changed[0, 9:] + 1) % 50
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[:, :9], model(changed)[:, :9])


def test_zero_init_makes_every_block_the_identity():
    model = ModernGPT(dataclasses.replace(SMALL, zero_init=True))
    x = torch.randn(2, 8, 32)
    cos, sin = model.rope_cos[:8], model.rope_sin[:8]
    for layer in model.layers:
        torch.testing.assert_close(layer(x, cos, sin), x)
    assert model.lm_head.weight is not model.embed_tokens.weight  # untied unless asked


def test_tied_head_shares_the_embedding():
    model = ModernGPT(dataclasses.replace(SMALL, tie_embeddings=True))
    assert model.lm_head.weight is model.embed_tokens.weight


def test_grouped_cache_holds_n_kv_head_heads():
    config = dataclasses.replace(SMALL, n_kv_head=1)
    cache = GroupedKVCache(config, batch_size=2)
    hs = config.n_embd // config.n_head
    assert cache.memory_bytes() == 2 * config.n_layer * 2 * 1 * config.block_size * hs * 4
    assert cache.layers[0].k.shape == (2, 1, config.block_size, hs)


@pytest.mark.parametrize("shape", [(48, 32), (32, 80)])
def test_orthogonalize_puts_singular_values_near_one(shape):
    g, k = torch.Generator().manual_seed(0), min(shape)
    U, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=g))  # orthonormal columns
    V, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=g))
    G = U @ torch.diag(torch.logspace(0, -2, k)) @ V.T  # singular values from 1 down to 0.01
    values = torch.linalg.svdvals(orthogonalize(G).float())
    assert orthogonalize(G).shape == shape
    assert 0.6 < values.min() and values.max() < 1.25, values


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="this torch has no torch.optim.Muon (it arrived in 2.9)")
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_muon_step_equals_torchs(weight_decay):
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(48, 32, generator=g), torch.randn(32, 96, generator=g), torch.randn(40, 40, generator=g)]
    ours = [nn.Parameter(w.clone()) for w in weights]
    theirs = [nn.Parameter(w.clone()) for w in weights]
    ours_optimizer = Muon(ours, lr=0.03, weight_decay=weight_decay)
    theirs_optimizer = torch.optim.Muon(theirs, lr=0.03, weight_decay=weight_decay)
    for _ in range(4):
        for mine, reference in zip(ours, theirs, strict=True):
            grad = torch.randn(mine.shape, generator=g)
            mine.grad, reference.grad = grad.clone(), grad.clone()
        ours_optimizer.step()
        theirs_optimizer.step()
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, reference, atol=0, rtol=0)


def test_muon_refuses_vectors():
    with pytest.raises(ValueError, match="matrices only"):
        Muon([nn.Parameter(torch.ones(4))])


def test_muon_trains_a_matrix():
    torch.manual_seed(0)
    target = torch.randn(16, 16) * 0.1
    weight = nn.Parameter(torch.zeros(16, 16))
    optimizer = Muon([weight], lr=0.05)  # each step moves every direction by about lr: a few dozen steps
    x = torch.randn(64, 16)
    losses = []
    for _ in range(60):
        loss = ((x @ weight.T - x @ target.T) ** 2).mean()
        weight.grad = None
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0] and math.isfinite(losses[-1])


# The modern model for train, checkpoints and generation (Build 7)


def test_muon_with_adamw_gives_the_blocks_matrices_to_muon_and_the_rest_to_adamw():
    from tinytorch.modern import make_muon_optimizer
    from tinytorch.training import TrainConfig

    model, cfg = ModernGPT(SMALL), TrainConfig(lr=4e-3, min_lr=4e-4)
    optimizer = make_muon_optimizer(model, cfg)
    rules = {id(p): group["rule"] for group in optimizer.param_groups for p in group["params"]}
    names = {name: rules[id(p)] for name, p in model.named_parameters()}
    assert {n for n, rule in names.items() if rule == "muon"} == {
        n for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("layers.")
    }
    assert names["embed_tokens.weight"] == names["lm_head.weight"] == names["norm.weight"] == "adamw"
    muon = optimizer.param_groups[0]
    assert muon["rule"] == "muon" and muon["lr"] == 0.02 and math.isclose(muon["lr_scale"], 0.02 / 4e-3)
    with pytest.raises(ValueError, match="muon_lr must be a finite number > 0"):
        make_muon_optimizer(model, cfg, muon_lr=-1.0)


def test_muon_with_adamw_state_dict_resumes_the_same_steps():
    """state_dict then load_state_dict into a fresh optimizer: the next steps are the same, bit for bit."""
    from tinytorch.modern import make_muon_optimizer
    from tinytorch.training import TrainConfig

    torch.manual_seed(0)
    idx = torch.randint(0, SMALL.vocab_size, (2, 8))

    def steps(model, optimizer, n):
        for _ in range(n):
            optimizer.zero_grad()
            model(idx).logsumexp(-1).mean().backward()
            optimizer.step()

    a = ModernGPT(SMALL)
    b = ModernGPT(SMALL)
    b.load_state_dict(a.state_dict())
    opt_a, cfg = make_muon_optimizer(a, TrainConfig()), TrainConfig()
    steps(a, opt_a, 2)
    b.load_state_dict(a.state_dict())
    opt_b = make_muon_optimizer(b, cfg)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # a copy, as a checkpoint file is
    assert {k for s in opt_b.state.values() for k in s} == {"momentum_buffer", "step", "exp_avg", "exp_avg_sq"}
    steps(a, opt_a, 2)
    steps(b, opt_b, 2)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("do_sample", [False, True])
def test_generation_with_the_grouped_cache_equals_uncached_past_block_size(do_sample):
    from tinytorch.generation import generate

    torch.manual_seed(0)
    model = ModernGPT(dataclasses.replace(SMALL, qk_norm=True))
    prompt = torch.randint(0, SMALL.vocab_size, (2, 5))
    n = 3 * SMALL.block_size  # far past block_size: the window slides and the cache refills
    runs = [
        generate(model, prompt, n, do_sample=do_sample, generator=torch.Generator().manual_seed(1), **cache)
        for cache in ({"kv_cache": GroupedKVCache}, {"use_cache": False})
    ]
    assert runs[0].shape == (2, 5 + n) and torch.equal(runs[0], runs[1])


def test_generating_with_a_modern_model_without_its_cache_class_is_a_type_error():
    from tinytorch.generation import generate

    with pytest.raises(TypeError, match="ModernConfig needs its own cache class: pass kv_cache="):
        generate(ModernGPT(SMALL), torch.zeros(1, 3, dtype=torch.long), 2)


def test_complete_streams_from_a_modern_checkpoint(tmp_path):
    from tinytorch.checkpoint import complete, save_checkpoint
    from tinytorch.embeddings import CharTokenizer
    from tinytorch.modern import ARCHITECTURES

    tokenizer = CharTokenizer.from_text("ROMEO: wherefore art thou")
    model = ModernGPT(dataclasses.replace(SMALL, vocab_size=tokenizer.vocab_size))
    save_checkpoint(tmp_path / "m.safetensors", model, tokenizer, architectures=ARCHITECTURES)
    text = complete("ROMEO:", 40, seed=1, model=tmp_path / "m.safetensors", architectures=ARCHITECTURES)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40
    with pytest.raises(ValueError, match="architecture 'llama'"):
        complete("ROMEO:", 5, model=tmp_path / "m.safetensors")


def test_a_preset_becomes_a_modern_config_of_its_sizes_with_as_many_kv_heads_as_heads():
    from tinytorch.config import GPTConfig
    from tinytorch.modern import modern_config_from_preset

    gpt, modern = GPTConfig.from_preset("shakespeare"), modern_config_from_preset("shakespeare")
    assert (modern.n_layer, modern.n_head, modern.n_kv_head, modern.n_embd) == (6, 6, 6, 192)
    assert (modern.vocab_size, modern.block_size) == (gpt.vocab_size, gpt.block_size)
    with pytest.raises(ValueError, match="unknown preset 'bogus'"):
        modern_config_from_preset("bogus")


def test_config_checks_types_as_gptconfig_does():
    with pytest.raises(TypeError, match=r"n_layer must be an int, got '2' \(str\)"):
        dataclasses.replace(SMALL, n_layer="2")
    with pytest.raises(TypeError, match="mlp_hidden must be an int"):
        dataclasses.replace(SMALL, mlp_hidden=True)


@pytest.mark.parametrize("changes", [{}, {"n_kv_head": 1, "qk_norm": True}])
def test_the_explorers_explicit_path_gives_the_fused_kernels_logits(changes):
    from tinytorch.viz import attention_maps

    torch.manual_seed(0)
    model = ModernGPT(ModernConfig(vocab_size=20, block_size=12, n_layer=2, n_head=4, n_embd=32, **changes)).eval()
    idx = torch.randint(0, 20, (1, 12))
    with torch.no_grad():
        fast = model(idx)
    maps = attention_maps(model, idx)  # switches every layer's explicit path on, then off
    assert maps.shape == (2, 4, 12, 12)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 4, 12)) and torch.all(maps.triu(1) == 0)  # causal rows
    for layer in model.layers:
        layer.self_attn.keep_weights = True
    with torch.no_grad():
        explicit = model(idx)
    torch.testing.assert_close(explicit, fast, atol=1e-5, rtol=1e-5)
    assert all(layer.self_attn.weights.shape == (1, 4, 12, 12) for layer in model.layers)
