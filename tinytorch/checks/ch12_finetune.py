"""The checks of notebooks/12_finetune.ipynb: a reference and a verify function per piece."""

import copy
import inspect
from collections.abc import Callable

import torch
from torch import nn

from tinytorch.checks import add_hints, piece
from tinytorch.checks.helpers import (
    Wrong,
    _compare,
    _gpt,
    _kind,
    _num,
    _randint,
    _randn,
    _randomized,
    _returned,
    _same,
    _shape,
)
from tinytorch import finetune
from tinytorch.finetune import LoRALinear, add_lora, merge_lora

# ------------------------------------------------------------------------------------- LoRALinear

LORA_PARTS = {
    "base": "the nn.Linear it is given, frozen, its weight and bias as they were",
    "lora_A": "A, an nn.Linear(in_features, r, bias=False) drawn at random",
    "lora_B": "B, an nn.Linear(r, out_features, bias=False) at zero",
}
PART_NAMES = "self.base, self.lora_A and self.lora_B (peft's names)"


def _linear(n_in: int, n_out: int, seed: int, bias: bool = True) -> nn.Linear:
    """A Linear with random weights (N(0, 0.3²)), as a pretrained layer has."""
    with torch.random.fork_rng(devices=[]):  # nn.Linear() draws its initial weights from the global generator
        layer = nn.Linear(n_in, n_out, bias=bias)
    return _randomized(layer, seed)


def _parts(mine: nn.Module, base: nn.Linear, r: int) -> dict[str, torch.Tensor]:
    """The learner's state once its names and shapes are found to be the package's; Wrong at the first that is not."""
    want = {"base.weight": tuple(base.weight.shape)}
    if base.bias is not None:
        want["base.bias"] = tuple(base.bias.shape)
    want |= {"lora_A.weight": (r, base.in_features), "lora_B.weight": (base.out_features, r)}
    got = mine.state_dict()
    for key in want:
        if key not in got:
            if key == "base.bias":
                raise Wrong(
                    "your LoRALinear has no `base.bias`: the base's bias was dropped; keep the layer you are given "
                    "whole, self.base = base, its bias included"
                )
            top = key.split(".")[0]
            raise Wrong(
                f"your LoRALinear has no `{key}`: the package's LoRALinear has self.{top}, {LORA_PARTS[top]}; name "
                f"the parts as it does, {PART_NAMES}, so that its weights (and peft's) load into yours"
            )
    for key in got:
        if key not in want:
            no_bias = " (A and B have no bias: bias=False)" if key.startswith("lora_") else ""
            raise Wrong(
                f"your LoRALinear has `{key}`, which the package's has not: its parts are {PART_NAMES}{no_bias}"
            )
    for key, shape in want.items():
        if tuple(got[key].shape) != shape:
            what = {"lora_A": f"A takes the {base.in_features} inputs down to r = {r} numbers"}
            what["lora_B"] = f"B brings the r = {r} numbers up to the {base.out_features} outputs"
            raise Wrong(
                f"`{key}` has shape {tuple(got[key].shape)} in your LoRALinear, {shape} in the package's: "
                + what.get(key.split(".")[0], "keep the base layer you are given")
            )
    return got


def _fresh(answer: Callable, base: nn.Linear, r: int, alpha: float) -> nn.Module:
    """The learner's LoRALinear around a copy of `base`, as built: Wrong when its parts, freezing or start are not
    the package's."""
    with torch.random.fork_rng(devices=[]):  # the learner's A is drawn from the global generator
        mine = answer(copy.deepcopy(base), r, alpha)
    if not isinstance(mine, nn.Module):
        raise Wrong(
            f"LoRALinear(base, r, alpha) must give an nn.Module, got {_kind(mine)}: class LoRALinear(nn.Module), with "
            "super().__init__() first in __init__"
        )
    got = _parts(mine, base, r)
    if any(not torch.equal(got[f"base.{name}"], p) for name, p in base.named_parameters()):
        raise Wrong(
            "the base's weights changed: keep the pretrained layer you are given as it is, self.base = base (LoRA "
            "adds beside it, it does not retrain it)"
        )
    trainable = [name for name, p in mine.named_parameters() if p.requires_grad]
    if any(name.startswith("base.") for name in trainable):
        raise Wrong(
            f"the base layer is not frozen: {', '.join(n for n in trainable if n.startswith('base.'))} still "
            "require gradients, so training would change the pretrained weights (and keep optimizer state for "
            "them); freeze it with base.requires_grad_(False)"
        )
    if not {"lora_A.weight", "lora_B.weight"} <= set(trainable):
        raise Wrong("lora_A and lora_B must be trainable (requires_grad): they are what fine-tuning trains")
    A, B = got["lora_A.weight"], got["lora_B.weight"]
    if not A.any() and not B.any():
        raise Wrong(
            "A starts at zero too: then neither A nor B ever gets a gradient (each one's gradient is multiplied by "
            "the other), and nothing learns; leave A random (nn.Linear's own initialization, Kaiming's uniform, as "
            "peft's) and set only B to zero"
        )
    if B.any():
        raise Wrong(
            f"B must start at zero (nn.init.zeros_), so that B A = 0 and the adapted layer starts as the base layer; "
            f"yours starts with entries as large as {_num(B.abs().max())}"
            + (" (and A at zero: it is B that starts at zero, A at random, as in peft)" if not A.any() else "")
        )
    return mine


def _lora_mistakes(x, base: nn.Linear, A, B, r: int, alpha: float) -> list[tuple[torch.Tensor, str]]:
    """(the output of a typical mistake, its message), for the base and the adapters' A and B."""
    update = x @ A.T @ B.T  # (..., out): B A x
    scaling = alpha / r
    plain = x @ base.weight.T  # (..., out): the base without its bias
    return [
        (
            base(x) + update,
            f"the scaling alpha / r is missing: multiply the update B(A(x)) by alpha / r (here {_num(scaling)})",
        ),
        (base(x) + alpha * update, "you scaled the update by alpha alone; the scaling is alpha / r"),
        (base(x) + r / alpha * update, "the scaling is upside down: alpha / r, not r / alpha"),
        (plain + scaling * update, "the base's bias is missing from your output: call self.base(x), which adds it"),
        (scaling * (base(x) + update), "the scaling multiplies the update only: base(x) + (alpha / r) · B(A(x))"),
        (
            scaling * update,
            "the base layer's output is missing: the adapted layer returns base(x) + (alpha / r) · B(A(x))",
        ),
    ]


@piece("LoRALinear", "12_finetune", "a frozen Linear plus (alpha / r) · B A x, B at zero, and merged()", LoRALinear)
def _verify_lora_linear(lora_class: Callable) -> None:
    for n_in, n_out, r, alpha, seed in [(12, 20, 2, 8.0, 500), (12, 20, 4, 6.0, 510)]:
        base = _linear(n_in, n_out, seed)
        mine = _fresh(lora_class, base, r, alpha)
        call = f"LoRALinear(base, r={r}, alpha={alpha:g})"
        x = _randn(2, 5, n_in, seed=seed + 1)  # (B, T, in)
        with torch.no_grad():
            out = _shape(mine(x.clone()), (2, 5, n_out), "(..., in) -> (..., out)", what=f"{call}(x)")
            if not _same(out, base(x)):
                if _same(out, x @ base.weight.T):
                    raise Wrong("the base's bias is missing from your output: call self.base(x), which adds it")
                raise Wrong(
                    f"with B at zero, {call} must give the base layer's outputs; it does not: the adapted layer "
                    "returns base(x) + (alpha / r) · B(A(x))"
                )
            A, B = _randn(r, n_in, seed=seed + 2) * 0.3, _randn(n_out, r, seed=seed + 3) * 0.3  # as if trained
            mine.load_state_dict({**mine.state_dict(), "lora_A.weight": A, "lora_B.weight": B})
            out = _shape(mine(x.clone()), (2, 5, n_out), "(..., in) -> (..., out)", what=f"{call}(x)")
            expected = base(x) + (alpha / r) * (x @ A.T @ B.T)  # (B, T, out)
            if not _same(out, expected):
                for wrong, message in _lora_mistakes(x, base, A, B, r, alpha):
                    if _same(out, wrong):
                        raise Wrong(f"{call}: {message}")
                _compare(out, expected)
            _verify_merged(mine, base, x, expected, r, alpha, call)
    _verify_without_bias(lora_class)


def _verify_without_bias(lora_class: Callable) -> None:
    """Wrong unless the learner's LoRALinear also wraps a Linear without bias, as Llama's are, and merges it."""
    bare = _linear(12, 20, 520, bias=False)
    x = _randn(3, 12, seed=521)  # (T, in)
    try:
        mine = _fresh(lora_class, bare, 2, 4.0)
        with torch.no_grad():
            out, merged = mine(x.clone()), mine.merged()
    except Wrong:
        raise
    except Exception as error:
        raise Wrong(
            f"around a Linear without bias (bias=False), your LoRALinear raised {type(error).__name__}: {error}; "
            "a layer's bias may be None"
        ) from None
    _compare(_shape(out, (3, 20), "(..., in) -> (..., out), also for (T, in)"), bare(x))
    if isinstance(merged, nn.Linear) and merged.bias is not None:
        raise Wrong(
            "merged() of a layer without bias must have no bias either: deep-copy the base, then add to its weight"
        )


def _verify_merged(mine: nn.Module, base: nn.Linear, x, expected, r: int, alpha: float, call: str) -> None:
    """Wrong unless the learner's merged() is a plain Linear that gives the adapted outputs and leaves the layer as
    it was."""
    before = {name: p.clone() for name, p in mine.state_dict().items()}
    merged = mine.merged()
    if not isinstance(merged, nn.Linear):
        raise Wrong(
            f"{call}.merged() must return a plain nn.Linear (the base's shape, with W + (alpha / r) B A as its "
            f"weight), got {_kind(merged)}"
        )
    if any(not torch.equal(p, before[name]) for name, p in mine.state_dict().items()):
        raise Wrong(
            f"{call}.merged() changed your layer's own weights: the adapted layer would then add its update twice; "
            "merge into a copy of the base, copy.deepcopy(self.base)"
        )
    out = _shape(merged(x.clone()), tuple(expected.shape), "(..., in) -> (..., out)", what=f"{call}.merged()(x)")
    if _same(out, expected, atol=1e-4, rtol=1e-4):
        return
    A, B = mine.lora_A.weight, mine.lora_B.weight
    weights = [
        (base.weight + B @ A, "merged() forgot the scaling: the merged weight is W + (alpha / r) · B A"),
        (base.weight + alpha * B @ A, "merged() scaled B A by alpha alone: the merged weight is W + (alpha / r) · B A"),
        (base.weight + r / alpha * B @ A, "merged() scaled B A by r / alpha: the scaling is alpha / r"),
    ]
    for weight, message in weights:
        if _same(out, x @ weight.T + base.bias, atol=1e-4, rtol=1e-4):
            raise Wrong(f"{call}.{message}")
    if merged.bias is None and base.bias is not None:
        raise Wrong(
            f"{call}.merged() dropped the base's bias: deep-copy the base, bias included, then add to its weight"
        )
    _compare(out, expected, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------- add_lora and merge_lora

TARGET_LAYERS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")  # where add_lora's default targets sit in a block


def _wrapped(model: nn.Module) -> list[str]:
    """The names of a model's LoRALinear modules (the learner's class or the package's)."""
    return [name for name, module in model.named_modules() if type(module).__name__ == "LoRALinear"]


def _dotted(model: nn.Module) -> str:
    """A message when the learner's setattr made attributes with dots in their names, else ""."""
    dotted = [name for name in model._modules if "." in name]
    if not dotted:
        return ""
    parent, _, child = dotted[0].rpartition(".")
    return (
        f"setattr(model, {dotted[0]!r}, ...) made a new attribute with that name, dots included, and left the layer "
        f"in place: set it on its parent, setattr(model.get_submodule({parent!r}), {child!r}, ...)"
    )


@piece("add_lora", "12_finetune", "freeze a model and wrap each chosen Linear in a LoRALinear", add_lora)
def _verify_add_lora(add_lora: Callable) -> None:
    model = _gpt(530)
    idx = _randint(11, (2, 8), seed=531)
    call = "add_lora(model, 2, 4)"
    with torch.random.fork_rng(devices=[]):  # the adapters' A are drawn from the global generator
        adapted = _returned(add_lora(copy.deepcopy(model), 2, 4), call, "the model, its layers wrapped", nn.Module)
    wrapped = _wrapped(adapted)
    expected = [f"blocks.{i}.{layer}" for i in range(2) for layer in TARGET_LAYERS]
    if _dotted(adapted):
        raise Wrong(f"{call}: {_dotted(adapted)}")
    if "lm_head" in wrapped:
        raise Wrong(
            f"{call} wrapped lm_head too: wrap only the layers whose own name (the last part of the module's name, "
            "name.split('.')[-1]) is one of targets; the output layer shares its matrix with the token embedding"
        )
    missing = [name for name in expected if name not in wrapped]
    if missing == expected:
        raise Wrong(
            f"{call} wrapped no layer: replace each chosen nn.Linear by LoRALinear(layer, r, alpha) on its parent "
            "module, setattr(parent, child_name, ...)"
        )
    if missing:
        raise Wrong(f"{call} left {missing[0]} unwrapped: wrap every nn.Linear whose own name is one of targets")
    extra = [name for name in wrapped if name not in expected]
    if extra:
        raise Wrong(f"{call} wrapped {extra[0]}, whose own name is not one of targets")
    ranks = {adapted.get_submodule(name).lora_A.weight.size(0) for name in wrapped}
    if ranks != {2}:
        raise Wrong(f"{call} gave adapters of rank {sorted(ranks)[0]}, expected r = 2: pass r and alpha on, in order")
    trainable = [name for name, p in adapted.named_parameters() if p.requires_grad]
    if not trainable:
        raise Wrong(
            f"after {call} nothing is trainable: freeze the model before you wrap its layers; freezing after also "
            "freezes the new adapters"
        )
    others = [name for name in trainable if ".lora_" not in name]
    if others:
        raise Wrong(
            f"after {call}, {others[0]} is still trainable: freeze the whole model first, model.requires_grad_(False), "
            "then wrap; only the adapters' A and B train"
        )
    with torch.no_grad():
        if not _same(adapted(idx), model(idx)):
            raise Wrong(f"the model after {call} must start as the model itself (each B at zero)")
        state = adapted.state_dict()
        for i, name in enumerate(k for k in state if k.endswith("lora_B.weight")):
            state[name] = _randn(*state[name].shape, seed=540 + i) * 0.3  # as if trained
        adapted.load_state_dict(state)
        twin = finetune.add_lora(copy.deepcopy(model), 2, 4)  # the package's, with the same A and B
        twin.load_state_dict(state)
        if not _same(adapted(idx), twin(idx)):
            raise Wrong(
                f"with the same A and B, the model after {call} does not give the package's outputs: pass r and "
                "alpha on"
            )
    only_fc = _returned(add_lora(copy.deepcopy(model), 2, 4, targets=("fc",)), "add_lora", "the model", nn.Module)
    if _wrapped(only_fc) != ["blocks.0.mlp.fc", "blocks.1.mlp.fc"]:
        raise Wrong(
            f"add_lora(model, 2, 4, targets=('fc',)) wrapped {', '.join(_wrapped(only_fc)) or 'nothing'}: use the "
            "targets argument, not a list of your own"
        )


def _lora_class_of(answer: Callable) -> type:
    """The LoRALinear that the learner's function finds by name: theirs once built (the check cell returns it), else
    the package's."""
    found = getattr(inspect.unwrap(answer), "__globals__", {}).get("LoRALinear")
    return found if isinstance(found, type) and issubclass(found, nn.Module) else LoRALinear


def _adapted(lora_class: type, seed: int) -> nn.Module:
    """A small GPT, frozen, each block matrix wrapped in `lora_class` (r 2, alpha 4) with B as if trained."""
    model = _gpt(seed).requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        for i in range(2):
            for layer in TARGET_LAYERS:
                parent, _, child = f"blocks.{i}.{layer}".rpartition(".")
                module = model.get_submodule(parent)
                setattr(module, child, lora_class(getattr(module, child), 2, 4))
    state = model.state_dict()
    for i, name in enumerate(k for k in state if k.endswith("lora_B.weight")):
        state[name] = _randn(*state[name].shape, seed=seed + 1 + i) * 0.3
    model.load_state_dict(state)
    return model


@piece("merge_lora", "12_finetune", "replace every LoRALinear of a model by its merged Linear", merge_lora)
def _verify_merge_lora(merge_lora: Callable) -> None:
    adapted = _adapted(_lora_class_of(merge_lora), 550)
    idx = _randint(11, (2, 8), seed=551)
    with torch.no_grad():
        want = adapted(idx)  # (B, T, V)
        got = _returned(merge_lora(copy.deepcopy(adapted)), "merge_lora(model)", "the model, merged", nn.Module)
        if _dotted(got):
            raise Wrong(f"merge_lora: {_dotted(got)}")
        left = _wrapped(got)
        if left:
            raise Wrong(
                f"after merge_lora, {left[0]} is still a LoRALinear: replace every one, however deep "
                "(model.named_modules() finds them all), by its merged() on its parent module"
            )
        kinds = {type(got.get_submodule(f"blocks.{i}.{layer}")).__name__ for i in range(2) for layer in TARGET_LAYERS}
        if kinds != {"Linear"}:
            raise Wrong(
                f"after merge_lora the adapted layers must be plain nn.Linear again (each one's merged()), got {kinds}"
            )
        logits = got(idx)
        if _same(logits, want, atol=1e-4, rtol=1e-4):
            return
        unscaled = _gpt(550)
        for i in range(2):
            for layer in TARGET_LAYERS:
                lora = adapted.get_submodule(f"blocks.{i}.{layer}")
                unscaled.get_submodule(f"blocks.{i}.{layer}").weight += lora.lora_B.weight @ lora.lora_A.weight
        if _same(logits, unscaled(idx), atol=1e-4, rtol=1e-4):
            raise Wrong(
                "the merged model forgot the scaling: each weight becomes W + (alpha / r) · B A, as merged() does"
            )
        _compare(logits, want, atol=1e-4, rtol=1e-4)


add_hints(
    {
        "LoRALinear": (
            "Keep the layer you are given as the base, frozen, and put two small layers beside it, named as peft "
            "names them: lora_A takes the in_features inputs down to r numbers, lora_B brings them up to "
            "out_features. B starts at zero, so the adapted layer starts as the base, and the update is multiplied "
            "by alpha / r.",
            "In __init__: freeze the base (requires_grad_ with False) and keep it; make lora_A an nn.Linear from "
            "in_features to r and lora_B one from r to out_features, both without bias; leave A as nn.Linear draws "
            "it and fill B's weight with zeros; keep alpha divided by r. In forward, add the base's output and "
            "lora_B of lora_A of x times that scaling. merged() deep-copies the base and, under torch.no_grad(), "
            "adds the scaling times B's weight matrix-multiplied by A's to the copy's weight.",
            "The classic traps: B not at zero (the model no longer starts as the pretrained one), A at zero as well "
            "(nothing learns), the scaling forgotten or upside down, the base left trainable, and a merge that "
            "forgets the scaling or changes the layer's own base.",
        ),
        "add_lora": (
            "Freeze everything first, then replace the chosen layers: a layer is chosen when it is an nn.Linear "
            "and the last part of its name (qkv, proj, fc) is one of targets. The new adapters are trainable.",
            "Call requires_grad_ with False on the model; collect the names from model.named_modules() whose module "
            "is an nn.Linear and whose name split on dots ends with one of targets; for each, split the name at its "
            "last dot into the parent's name and the child's, get the parent with model.get_submodule, and setattr "
            "the child to a LoRALinear of the old layer with r and alpha. Return the model.",
            "Collect the names before you replace anything (replacing while named_modules() walks the model changes "
            "what it walks), and freeze before you wrap, not after.",
        ),
        "merge_lora": (
            "Walk every module of the model; each LoRALinear is replaced, on its parent, by the plain Linear its "
            "merged() returns.",
            "Loop over a list made of model.named_modules() (a list, since you replace as you go); for each "
            "LoRALinear, split its name at the last dot, get the parent with model.get_submodule, and setattr the "
            "child name to the module's merged(). Return the model.",
        ),
    }
)
