"""tinytorch: a small GPT built from scratch in PyTorch, one notebook per chapter.

The modules are generated from the notebooks (see README); this file only re-exports.
"""

from tinytorch.config import (
    PRESETS,
    GPTConfig,
    count_parameters,
    estimate_flops_per_token,
    estimate_parameters,
    get_device,
    set_seed,
)

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "GPTConfig",
    "count_parameters",
    "estimate_flops_per_token",
    "estimate_parameters",
    "get_device",
    "set_seed",
]
