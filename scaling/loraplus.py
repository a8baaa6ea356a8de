"""The LoRA+ optimiser for real models: B trains ``loraplus_lr_ratio`` times faster than A.

``create_loraplus_optimizer`` has PEFT's signature (``peft.optimizers.create_loraplus_optimizer``)
and fixes the faults that PEFT 0.21.2 and the paper's code share (THEORY.md, last section):

======================================  ====================================  ==============================
parameter                               PEFT 0.21.2 / paper's code            here
======================================  ====================================  ==============================
lora_A (Linear, Conv)                   lr                                    lr (group ``lora_A``)
lora_B weight                           lr x ratio                            lr x ratio (``lora_B``)
lora_B bias (``lora_bias=True``)        lr x ratio                            lr x ratio, no decay
LoRA embedding A and B                  loraplus_lr_embedding                 the same (``lora_embedding``)
biases, norms of the base model         lr x ratio (every 1-D parameter)      lr, no decay (``other_no_decay``)
``modules_to_save`` head                weight lr, bias lr x ratio (split)    both lr (``other*``)
``weight_decay=``                       ignored (only loraplus_weight_decay)  honoured (either name)
empty groups                            always 4 groups                       never
group names                             none                                  every group has ``name``
======================================  ====================================  ==============================

Roles. Every trainable parameter gets one role: ``lora_A``, ``lora_B``, ``lora_embedding``
or ``other``; LoRA factors are found by the name PEFT (and ``scaling.lora_layers``) give their
containers. A ``classify(name, param, module)`` callable overrides the rule for any model (it
returns a role, or None to fall back). Biases, 1-D tensors and the parameters of norm layers
get no weight decay.

Why embeddings share one rate: a LoRA embedding's input is one-hot, so A's update reaches the
output through a single column (dA z = Theta(eta_A), no sum over n coordinates) and the width
argument that makes eta_B / eta_A = Theta(n) for a Linear layer gives Theta(1) here: both
factors train at ``loraplus_lr_embedding`` (default 1e-6, as in PEFT and the paper's code).

Per-layer ratios. ``loraplus_lr_ratio="auto"`` applies the theory layer by layer: efficient
feature learning needs eta_A * n_in = Theta(1) and eta_B = Theta(1) (Adam; n_in is the layer's
fan-in, the sum that dA z runs over). So B keeps ``lr x 16`` everywhere and A's rate becomes
``lr x n_ref / n_in``: lambda = 16 n_in / n_ref, proportional to the layer's width. ``lr`` is
A's rate at the reference fan-in n_ref (``loraplus_reference_width``, default the most common
fan-in among the LoRA layers, so most layers keep exactly lr and 16 lr). ``ratio_fn(module)``
instead gives each LoRA layer's lambda (B at lr x lambda, A at lr).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import torch
from torch import nn

ROLES = ("lora_A", "lora_B", "lora_embedding", "other")
DEFAULT_RATIO = 16.0
EIGHT_BIT_NAMES = ("Adam8bit", "AdamW8bit", "PagedAdam8bit", "PagedAdamW8bit", "Lion8bit", "PagedLion8bit")
_CONTAINERS = {"lora_A": "lora_A", "lora_B": "lora_B", "lora_embedding_A": "lora_embedding",
               "lora_embedding_B": "lora_embedding"}


def default_role(name: str, param: nn.Parameter, module: nn.Module) -> str:
    """LoRA role from the parameter's path: PEFT keeps factors in ``lora_A`` / ``lora_B``
    (Linear, Conv) and ``lora_embedding_A`` / ``_B`` containers, ``scaling.lora_layers``
    names them ``lora_A`` / ``lora_B``; everything else is ``other``."""
    for part in name.split("."):
        if part in _CONTAINERS:
            return _CONTAINERS[part]
    return "other"


def no_decay(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """Biases, other 1-D tensors and the parameters of norm layers are not decayed."""
    return param.ndim < 2 or name.endswith("bias") or "norm" in type(module).__name__.lower()


def _owned_parameters(model: nn.Module):
    """(full name, parameter, owning module) for every trainable parameter, once (a tied
    parameter is listed under its first name)."""
    seen: set[int] = set()
    for mname, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                yield (f"{mname}.{pname}" if mname else pname), param, module


def _lora_layer_of(model: nn.Module, name: str) -> nn.Module | None:
    """The module that owns the LoRA container holding parameter ``name`` (the PEFT LoraLayer
    or a LoRALinear), or None."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in _CONTAINERS:
            return model.get_submodule(".".join(parts[:i])) if i else model
    return None


def _fan_in(layer: nn.Module) -> int | None:
    for attr in ("in_features", "in_channels"):
        if isinstance(getattr(layer, attr, None), int):
            return getattr(layer, attr)
    base = getattr(layer, "base_layer", None)
    if isinstance(base, nn.Module):
        weight = getattr(base, "weight", None)
        if weight is not None and weight.ndim >= 2:
            return int(math.prod(weight.shape[1:]))
    return None


def loraplus_param_groups(model: nn.Module, *, lr: float, loraplus_lr_ratio: float | str = DEFAULT_RATIO,
                          loraplus_lr_embedding: float = 1e-6, weight_decay: float = 0.0,
                          loraplus_lr_other: float | None = None, loraplus_reference_width: int | None = None,
                          classify: Callable | None = None, ratio_fn: Callable | None = None) -> list[dict]:
    """The parameter groups of the LoRA+ optimiser (see the module docstring); each group is a
    dict with ``name``, ``params``, ``lr``, ``weight_decay`` and never empty."""
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    auto = loraplus_lr_ratio == "auto"
    if not auto and not (isinstance(loraplus_lr_ratio, (int, float)) and loraplus_lr_ratio > 0):
        raise ValueError(f"loraplus_lr_ratio must be a positive number or 'auto', got {loraplus_lr_ratio!r}")
    if auto and ratio_fn is not None:
        raise ValueError("give loraplus_lr_ratio='auto' or ratio_fn, not both")
    other_lr = lr if loraplus_lr_other is None else loraplus_lr_other

    entries = []
    for name, param, module in _owned_parameters(model):
        role = classify(name, param, module) if classify is not None else None
        role = role or default_role(name, param, module)
        if role not in ROLES:
            raise ValueError(f"classify returned {role!r} for {name}; expected one of {', '.join(ROLES)}")
        entries.append((name, param, module, role))
    if not entries:
        raise ValueError("the model has no trainable parameters")

    layers = {name: _lora_layer_of(model, name) for name, _, _, role in entries if role in ("lora_A", "lora_B")}
    n_ref = None
    if auto:
        fan_ins = {name: _fan_in(layer) if layer is not None else None for name, layer in layers.items()}
        missing = [n for n, f in fan_ins.items() if f is None]
        if missing:
            raise ValueError(f"loraplus_lr_ratio='auto' needs each LoRA layer's fan-in; none found for {missing[0]}")
        n_ref = loraplus_reference_width or Counter(fan_ins.values()).most_common(1)[0][0]

    groups: dict[tuple, dict] = {}
    for name, param, module, role in entries:
        decay = not no_decay(name, param, module)
        suffix, a_mult, b_ratio = "", 1.0, (DEFAULT_RATIO if auto else float(loraplus_lr_ratio))
        if role in ("lora_A", "lora_B") and auto:
            n_in = _fan_in(layers[name])
            a_mult = n_ref / n_in
            suffix = f"[n_in={n_in}]" if n_in != n_ref else ""
        elif role in ("lora_A", "lora_B") and ratio_fn is not None:
            b_ratio = float(ratio_fn(layers[name]))
            if not b_ratio > 0:
                raise ValueError(f"ratio_fn returned {b_ratio} for {name}; ratios must be positive")
            suffix = f"[ratio={b_ratio:g}]"
        if role == "lora_A":
            group_lr = lr * a_mult
        elif role == "lora_B":
            group_lr = lr * b_ratio
        elif role == "lora_embedding":
            group_lr = loraplus_lr_embedding
        else:
            group_lr = other_lr
        gname = role + ("" if decay else "_no_decay") + suffix
        group = groups.setdefault(gname, {"name": gname, "params": [], "lr": group_lr,
                                          "weight_decay": weight_decay if decay else 0.0})
        group["params"].append(param)
    return list(groups.values())


def create_loraplus_optimizer(model: nn.Module, optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW, *,
                              lr: float, loraplus_lr_ratio: float | str = DEFAULT_RATIO,
                              loraplus_lr_embedding: float = 1e-6, weight_decay: float | None = None,
                              classify: Callable | None = None, ratio_fn: Callable | None = None,
                              loraplus_lr_other: float | None = None, loraplus_reference_width: int | None = None,
                              **optimizer_kwargs) -> torch.optim.Optimizer:
    """A ``optimizer_cls`` over the LoRA+ parameter groups of ``model``.

    Drop-in for ``peft.optimizers.create_loraplus_optimizer``: ``loraplus_weight_decay`` is
    accepted as another name for ``weight_decay`` (default 0). Any remaining keyword goes to the
    optimiser (betas, eps, ...). With a bitsandbytes 8-bit optimiser, nn.Embedding weights are
    registered for 32-bit state, as bitsandbytes requires.
    """
    alias = optimizer_kwargs.pop("loraplus_weight_decay", None)
    if weight_decay is not None and alias is not None and weight_decay != alias:
        raise ValueError(f"weight_decay={weight_decay} and loraplus_weight_decay={alias} disagree; give one")
    decay = weight_decay if weight_decay is not None else (alias if alias is not None else 0.0)
    groups = loraplus_param_groups(model, lr=lr, loraplus_lr_ratio=loraplus_lr_ratio,
                                   loraplus_lr_embedding=loraplus_lr_embedding, weight_decay=decay,
                                   loraplus_lr_other=loraplus_lr_other, classify=classify, ratio_fn=ratio_fn,
                                   loraplus_reference_width=loraplus_reference_width)
    optimizer = optimizer_cls(groups, lr=lr, **optimizer_kwargs)
    if _is_eight_bit(optimizer_cls, optimizer_kwargs):
        import bitsandbytes

        manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                manager.register_module_override(module, "weight", {"optim_bits": 32})
    return optimizer


def _is_eight_bit(optimizer_cls, kwargs) -> bool:
    from_bnb = getattr(optimizer_cls, "__module__", "").startswith("bitsandbytes")
    return optimizer_cls.__name__ in EIGHT_BIT_NAMES or (from_bnb and kwargs.get("optim_bits") == 8)


def group_learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{group name: current lr}; unnamed groups are called group<i>."""
    return {g.get("name", f"group{i}"): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
