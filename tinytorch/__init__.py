"""tinytorch: a small GPT built from scratch in PyTorch, one notebook per chapter.

The modules are generated from the notebooks (see README); this file only re-exports. Not re-exported:
`tinytorch.viz` (the attention explorer; it needs matplotlib and ipywidgets, from the dev extra).
"""

from tinytorch.attention import CausalSelfAttention
from tinytorch.blocks import MLP, Block, LayerNorm
from tinytorch.bpe import BPETokenizer
from tinytorch.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from tinytorch.config import PRESETS, GPTConfig, count_parameters, get_device, set_seed
from tinytorch.embeddings import CharTokenizer, Embeddings
from tinytorch.generation import KVCache, complete, generate, load_pretrained, stream_text
from tinytorch.gpt import GPT, estimate_flops_per_token, estimate_parameters, next_token_loss
from tinytorch.training import TrainConfig, shakespeare, train

__version__ = "0.1.0"

__all__ = [
    "GPT",
    "MLP",
    "PRESETS",
    "BPETokenizer",
    "Block",
    "CausalSelfAttention",
    "CharTokenizer",
    "Embeddings",
    "GPTConfig",
    "KVCache",
    "LayerNorm",
    "TrainConfig",
    "atomic_write",
    "complete",
    "count_parameters",
    "estimate_flops_per_token",
    "estimate_parameters",
    "generate",
    "get_device",
    "load_checkpoint",
    "load_pretrained",
    "next_token_loss",
    "save_checkpoint",
    "set_seed",
    "shakespeare",
    "stream_text",
    "train",
]
