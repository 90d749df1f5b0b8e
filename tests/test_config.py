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


def test_get_device():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert get_device().type == "cpu"


def test_count_parameters_counts_shared_tensors_once():
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    assert count_parameters(model) == 16 + 4 + 4
    first.bias.requires_grad_(False)
    assert count_parameters(model) == 16 + 4
