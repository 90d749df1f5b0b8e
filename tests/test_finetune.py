"""Chapter 12's LoRA: it starts as the base model, trains only its adapters, merges exactly, gives peft's outputs."""

import copy

import pytest
import torch
from torch import nn

from tinytorch.config import GPTConfig
from tinytorch.finetune import LoRALinear, add_lora, merge_lora, trainable_parameters
from tinytorch.gpt import GPT

SMALL = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every LoRA B random values, as training would (at B = 0 an adapter changes nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.weight.copy_(torch.randn(module.lora_B.weight.shape, generator=g) * 0.1)
    return model


def peft_twin(base: nn.Module, ours: nn.Module, r: int, alpha: float, targets: list[str]) -> nn.Module:
    """peft's LoRA on a copy of `base`, with our A and B copied in."""
    peft = pytest.importorskip("peft")
    theirs = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    )
    with torch.no_grad():
        for name, module in ours.named_modules():
            if isinstance(module, LoRALinear):
                layer = theirs.base_model.model.get_submodule(name)
                layer.lora_A["default"].weight.copy_(module.lora_A.weight)
                layer.lora_B["default"].weight.copy_(module.lora_B.weight)
    return theirs


@pytest.mark.parametrize(("r", "alpha"), [(1, 1), (4, 8), (8, 32)])
def test_adapted_gpt_gives_pefts_logits(r, alpha):
    torch.manual_seed(0)
    base = GPT(SMALL).eval()
    ours = trained_like(add_lora(copy.deepcopy(base), r, alpha))
    theirs = peft_twin(base, ours, r, alpha, ["qkv", "proj", "fc"])
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), theirs(idx), atol=1e-6, rtol=1e-6)
    assert trainable_parameters(ours) == theirs.get_nb_trainable_parameters()[0]


def test_adapted_layer_gives_pefts_outputs():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(12, 20))
    ours = copy.deepcopy(base)
    ours[0] = LoRALinear(ours[0], r=3, alpha=6)
    trained_like(ours)
    theirs = peft_twin(base, ours, 3, 6, ["0"])
    x = torch.randn(4, 12)
    torch.testing.assert_close(ours(x), theirs(x))


def test_adapted_model_starts_as_the_base_model():
    torch.manual_seed(0)
    base = GPT(SMALL).eval()
    adapted = add_lora(copy.deepcopy(base), r=4, alpha=8).eval()
    idx = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        torch.testing.assert_close(adapted(idx), base(idx), atol=0, rtol=0)


def test_merged_equals_unmerged():
    torch.manual_seed(0)
    adapted = trained_like(add_lora(GPT(SMALL), r=4, alpha=8)).eval()
    merged = merge_lora(copy.deepcopy(adapted)).eval()
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert type(merged.blocks[0].attn.qkv) is nn.Linear
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(merged(idx), adapted(idx), atol=1e-5, rtol=1e-5)


def test_training_moves_only_the_adapters():
    torch.manual_seed(0)
    model = add_lora(GPT(SMALL), r=2, alpha=4)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    idx = torch.randint(0, 50, (2, 16))
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(idx).view(-1, 50), idx.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]) and p.grad is None, name
    assert all("lora_" in name for name, p in model.named_parameters() if p.requires_grad)


def test_trainable_count_is_r_times_in_plus_out_per_layer():
    model = add_lora(GPT(SMALL), r=4, alpha=8)
    C = SMALL.n_embd
    per_block = 4 * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C))  # qkv, attn proj, fc, mlp proj
    assert trainable_parameters(model) == SMALL.n_layer * per_block


def test_lora_says_what_is_wrong():
    with pytest.raises(ValueError, match="r must be a whole number from 1 to 8"):
        LoRALinear(nn.Linear(8, 16), r=9, alpha=1)
    with pytest.raises(ValueError, match="r must be"):
        LoRALinear(nn.Linear(8, 16), r=0, alpha=1)
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1), r=1, alpha=1)
    with pytest.raises(ValueError, match="no nn.Linear named"):
        add_lora(GPT(SMALL), r=2, alpha=4, targets=("q_proj",))


def test_lora_layer_freezes_its_base_and_trains_a_and_b():
    layer = LoRALinear(nn.Linear(8, 16), r=2, alpha=4)
    assert [name for name, p in layer.named_parameters() if p.requires_grad] == ["lora_A.weight", "lora_B.weight"]
    assert torch.equal(layer.lora_B.weight, torch.zeros(16, 2)) and layer.lora_A.weight.abs().sum() > 0
    assert layer.scaling == 2.0
