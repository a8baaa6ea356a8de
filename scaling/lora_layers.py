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
        return self.base(x) + self.scale * (x @ self.lora_A.T) @ self.lora_B.T


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
