"""A minimal LoRA layer for plain PyTorch models (no PEFT needed).

``LoRALinear(base)`` wraps a frozen ``nn.Linear``: y = base(x) + scale * B (A x), with
A = ``lora_A`` (r, in_features) on the input side and B = ``lora_B`` (out_features, r) on the
output side, the shapes and names PEFT uses. ``scaling.loraplus`` and ``scaling.monitor``
recognise it the same way they recognise PEFT's layers.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """Frozen ``base`` plus a trainable rank-``rank`` update.

    init: "1" (B = 0, A ~ N(0, 1/in_features), stock PEFT) or "2" (A = 0, B ~ N(0, 1), the
    LoRA+ paper's code). scale = alpha / rank ("r") or alpha / sqrt(rank) ("sqrt-r", rsLoRA).
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float | None = None, init: str = "1",
                 alpha_scaling: str = "r"):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if rank <= 0 or rank > min(base.in_features, base.out_features):
            raise ValueError(f"rank must be in 1..{min(base.in_features, base.out_features)}, got {rank}")
        if init not in ("1", "2"):
            raise ValueError(f"init must be '1' or '2', got {init!r}")
        self.base = base.requires_grad_(False)
        self.detach_input = False  # the stacking control (``detach_lora_inputs``)
        alpha = float(rank if alpha is None else alpha)
        self.scale = alpha / rank if alpha_scaling == "r" else alpha / math.sqrt(rank)
        dev, dt = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.zeros(rank, base.in_features, device=dev, dtype=dt))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=dev, dtype=dt))
        with torch.no_grad():
            if init == "1":
                self.lora_A.normal_(0.0, base.in_features ** -0.5)
            else:
                self.lora_B.normal_(0.0, 1.0)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> (..., out_features)."""
        z = x.detach() if self.detach_input else x
        return self.base(x) + self.scale * (z @ self.lora_A.T) @ self.lora_B.T


def add_lora(model: nn.Module, targets: tuple[str, ...], **lora_kwargs) -> nn.Module:
    """Replace every nn.Linear whose attribute name is in ``targets`` by a LoRALinear
    (in place); every other parameter of the model is frozen. Returns the model."""
    model.requires_grad_(False)
    found = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, **lora_kwargs))
                found += 1
    if not found:
        raise ValueError(f"no nn.Linear named one of {', '.join(targets)} in the model")
    return model


def _detach_first_input(module, args):
    return (args[0].detach(),) + tuple(args[1:])


def detach_lora_inputs(model: nn.Module, names) -> list:
    """The stacking control: the LoRA layers ``names`` (module names, e.g. those with another LoRA
    layer upstream) read a detached copy of their input in their LoRA branch only, so no gradient
    reaches the layers below through their B A; their frozen base still passes it. Forward values
    do not change. Works on ``LoRALinear`` (a flag) and on PEFT's LoRA layers (a forward pre-hook on
    the active adapter's ``lora_A``). Returns the hook handles (empty for LoRALinear)."""
    modules = dict(model.named_modules())
    handles = []
    for name in names:
        layer = modules[name]
        if isinstance(layer, LoRALinear):
            layer.detach_input = True
            continue
        lora_a = getattr(layer, "lora_A", None)
        if not isinstance(lora_a, nn.ModuleDict) or not len(lora_a):
            raise ValueError(f"{name} is not a LoRA layer (LoRALinear or PEFT)")
        for adapter in (getattr(layer, "active_adapters", None) or list(lora_a.keys())):
            if adapter in lora_a:
                handles.append(lora_a[adapter].register_forward_pre_hook(_detach_first_input))
    return handles
