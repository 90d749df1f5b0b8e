import dataclasses
import json

import pytest
import torch
from torch import nn

from tinytorch.config import PRESETS, GPTConfig, count_parameters, get_device, set_seed
from tinytorch.gpt import estimate_parameters


def test_default_config_is_tiny_and_accepts_ids_below_100():
    config = GPTConfig()
    assert config.vocab_size >= 100
    assert estimate_parameters(config) < 1_000_000


def test_indivisible_width_names_both_values():
    with pytest.raises(ValueError, match=r"n_embd=100.*n_head=3"):
        GPTConfig(n_embd=100, n_head=3)


@pytest.mark.parametrize("field", ["vocab_size", "block_size", "n_layer", "n_head", "n_embd"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sizes_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        GPTConfig(**{field: value})


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_dropout_outside_unit_interval_is_rejected(value):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        GPTConfig(dropout=value)


def test_wrong_types_are_type_errors():
    with pytest.raises(TypeError, match="block_size must be an int"):
        GPTConfig(block_size=64.0)
    with pytest.raises(TypeError, match="bias"):
        GPTConfig(bias="yes")


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GPTConfig().n_layer = 2


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    config = GPTConfig.from_preset(name)
    assert GPTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="gpt2"):
        GPTConfig.from_preset("gpt3")


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="n_layers"):
        GPTConfig.from_dict({"n_layers": 2})


def test_set_seed_makes_draws_repeatable():
    set_seed(3)
    first = torch.rand(5)
    set_seed(3)
    assert torch.equal(first, torch.rand(5))


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_get_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device("auto") == get_device() == torch.device(expected)


def test_get_device_uses_a_named_device_as_given():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("cpu:0") == torch.device("cpu", 0)


@pytest.mark.parametrize("name", ["bogus", "gpu", ""])
def test_get_device_rejects_unknown_names(name):
    with pytest.raises(ValueError, match=f"unknown device {name!r}.*'cpu'"):
        get_device(name)


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_get_device_rejects_a_device_this_machine_does_not_have(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    backend = "torch.cuda" if name.startswith("cuda") else "torch.backends.mps"
    with pytest.raises(ValueError, match=rf"{name!r} is not available \({backend}\.is_available\(\) is False\)"):
        get_device(name)


@pytest.mark.parametrize(("seed", "error"), [("1", TypeError), (1.5, TypeError), (True, TypeError), (None, TypeError)])
def test_set_seed_rejects_what_is_not_an_int(seed, error):
    with pytest.raises(error, match="seed must be an int"):
        set_seed(seed)


@pytest.mark.parametrize("seed", [-1, 2**63, 10**30])
def test_set_seed_rejects_ints_out_of_range(seed):
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\)"):
        set_seed(seed)


@pytest.mark.parametrize("sizes", [dict(vocab_size=10**12), dict(block_size=10**12), dict(n_layer=10**9)])
def test_a_config_too_big_for_any_memory_is_a_value_error(sizes):
    with pytest.raises(ValueError, match="GB of memory"):
        GPTConfig(**sizes)


def test_count_parameters_counts_shared_tensors_once():
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    assert count_parameters(model) == 16 + 4 + 4
    first.bias.requires_grad_(False)
    assert count_parameters(model) == 16 + 4
