import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from tinytorch.config import (
    PRESETS,
    GPTConfig,
    atomic_write,
    count_parameters,
    estimate_flops_per_token,
    estimate_parameters,
    get_device,
    set_seed,
)


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


def test_atomic_write_replaces_the_file_with_normal_permissions(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: Path(tmp).write_text("one"))
    atomic_write(target, lambda tmp: Path(tmp).write_text("two"))
    assert target.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("precious")

    def crash(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
