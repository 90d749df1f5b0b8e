"""tinytorch: a small GPT built from scratch in PyTorch, one notebook per chapter.

The modules are generated from the notebooks (see README); this file only re-exports.
"""

from tinytorch.attention import CausalSelfAttention
from tinytorch.blocks import MLP, Block, LayerNorm
from tinytorch.config import (
    PRESETS,
    GPTConfig,
    count_parameters,
    estimate_flops_per_token,
    estimate_parameters,
    get_device,
    set_seed,
)
from tinytorch.embeddings import CharTokenizer, Embeddings
from tinytorch.gpt import GPT, next_token_loss

__version__ = "0.1.0"

__all__ = [
    "GPT",
    "MLP",
    "PRESETS",
    "Block",
    "CausalSelfAttention",
    "CharTokenizer",
    "Embeddings",
    "GPTConfig",
    "LayerNorm",
    "count_parameters",
    "estimate_flops_per_token",
    "estimate_parameters",
    "get_device",
    "next_token_loss",
    "set_seed",
]
