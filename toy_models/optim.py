"""Optimisers over parameters stacked on a leading run axis, each run with its own rate.

Each parameter tensor P has shape (R, ...) and a rate vector lr of shape (R,). The update of
run i uses only slice i, so runs never mix. The arithmetic follows torch.optim.SGD, Adam and
AdamW (bias-corrected moments, eps added after the square root, decoupled weight decay), which
the tests check step by step.
"""
from __future__ import annotations

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")


class BatchedOptimizer:
    """SGD / Adam / AdamW on stacked parameters.

    params: list of tensors (R, ...); lrs: list of (R,) rate tensors, one per parameter.
    """

    def __init__(self, kind: str, params: list[torch.Tensor], lrs: list[torch.Tensor], *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float | None = None, momentum: float = 0.0):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; choose from {', '.join(OPTIMIZERS)}")
        self.kind, self.params, self.betas, self.eps, self.momentum = kind, params, betas, eps, momentum
        # torch's defaults: AdamW decays by 0.01, SGD and Adam do not decay.
        self.weight_decay = (0.01 if kind == "adamw" else 0.0) if weight_decay is None else weight_decay
        self.lrs = [lr.reshape(-1, *([1] * (p.dim() - 1))) for lr, p in zip(lrs, params)]
        self.t = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params] if kind != "sgd" else []

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        self.t += 1
        if self.kind == "sgd":
            for p, g, lr, buf in zip(self.params, grads, self.lrs, self.m):
                if self.weight_decay:
                    g = g + self.weight_decay * p
                if self.momentum:
                    buf.mul_(self.momentum).add_(g) if self.t > 1 else buf.copy_(g)
                    g = buf
                p.sub_(lr * g)
            return
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, g, lr, m, v in zip(self.params, grads, self.lrs, self.m, self.v):
            if self.kind == "adamw":
                p.mul_(1 - lr * self.weight_decay)
            elif self.weight_decay:
                g = g + self.weight_decay * p
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2 ** 0.5).add_(self.eps)
            p.sub_((lr / bc1) * m / denom)

    @torch.no_grad()
    def freeze_runs(self, mask: torch.Tensor) -> None:
        """Stop runs (mask (R,) bool): zero their rates, parameters and optimiser state."""
        for p, lr, *state in zip(self.params, self.lrs, self.m, *([self.v] if self.v else [])):
            lr[mask] = 0.0
            for t in (p, *state):
                t[mask] = 0.0
