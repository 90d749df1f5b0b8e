"""tinytorch: a small GPT built from scratch in PyTorch, one notebook per chapter.

The modules are generated from the notebooks (see README); this file only re-exports, and lazily: a name is imported
from its chapter's module the first time it is used, so `import tinytorch` and `tinytorch --help` do not load torch.
Not re-exported: `tinytorch.viz` (the attention explorer; it needs matplotlib and ipywidgets, from the dev extra).
"""

import importlib

__version__ = "0.1.0"

_HOMES = {  # name -> the module that defines it, in course order
    "CausalSelfAttention": "attention",
    "MLP": "blocks",
    "Block": "blocks",
    "LayerNorm": "blocks",
    "BPETokenizer": "bpe",
    "PRESETS": "config",
    "GPTConfig": "config",
    "count_parameters": "config",
    "get_device": "config",
    "set_seed": "config",
    "CharTokenizer": "embeddings",
    "Embeddings": "embeddings",
    "GPT": "gpt",
    "estimate_flops_per_token": "gpt",
    "estimate_parameters": "gpt",
    "next_token_loss": "gpt",
    "shakespeare": "data",
    "TrainConfig": "train_config",
    "train": "training",
    "KVCache": "generation",
    "generate": "generation",
    "stream_text": "generation",
    "atomic_write": "checkpoint",
    "complete": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_pretrained": "checkpoint",
    "save_checkpoint": "checkpoint",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(f"tinytorch.{_HOMES[name]}"), name)
        globals()[name] = value  # the next use finds it directly
        return value
    raise AttributeError(f"module 'tinytorch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
