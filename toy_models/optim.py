"""Optimisers over parameters stacked on a leading run axis, each run with its own rate.

Each parameter tensor P has shape (R, ...) and a rate tensor of shape (R,) (one rate per run)
or broadcastable to P (e.g. (R, K) for a flat (R, K) buffer that holds several LoRA factors
with different rates). The update of run i uses only slice i, so runs never mix. The
arithmetic follows torch.optim.SGD, Adam and AdamW (bias-corrected moments, eps added after
the square root, decoupled weight decay), which the tests check step by step.
"""
from __future__ import annotations

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")


class BatchedOptimizer:
    """SGD / Adam / AdamW on stacked parameters.

    params: list of tensors (R, ...); lrs: list of rate tensors, (R,) or (R, ...)
    broadcastable to the matching parameter. ``keep`` / ``expand`` drop runs from (and restore them to) the
    run axis, so that finished runs cost nothing.
    """

    def __init__(self, kind: str, params: list[torch.Tensor], lrs: list[torch.Tensor], *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float | None = None, momentum: float = 0.0):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; choose from {', '.join(OPTIMIZERS)}")
        self.kind, self.params, self.betas, self.eps, self.momentum = kind, params, betas, eps, momentum
        # torch's defaults: AdamW decays by 0.01, SGD and Adam do not decay.
        self.weight_decay = (0.01 if kind == "adamw" else 0.0) if weight_decay is None else weight_decay
        self.lrs = [(lr.reshape(-1, *([1] * (p.dim() - 1))) if lr.dim() == 1 else lr).clone()
                    for lr, p in zip(lrs, params)]
        self.t = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params] if kind != "sgd" else []

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        self.t += 1
        if self.kind == "sgd":
            for p, g, lr, buf in zip(self.params, grads, self.lrs, self.m):
                if self.weight_decay:
                    g = g.add(p, alpha=self.weight_decay)
                if self.momentum:
                    buf.mul_(self.momentum).add_(g) if self.t > 1 else buf.copy_(g)
                    g = buf
                p.addcmul_(g, lr, value=-1)
            return
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, g, lr, m, v in zip(self.params, grads, self.lrs, self.m, self.v):
            if self.kind == "adamw":
                p.mul_(1 - lr * self.weight_decay)
            elif self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            if not self._fused_step(p, g, lr, m, v):
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = v.sqrt().div_(bc2 ** 0.5).add_(self.eps)
                p.addcdiv_(m * lr, denom, value=-1 / bc1)

    # torch's fused Adam kernel (torch.optim.Adam(fused=True)) takes one scalar rate; with
    # per-run rates it steps a zero scratch tensor at lr = 1, which then holds
    # -m_hat / (sqrt(v_hat) + eps), and p += lr * scratch: 3 ops instead of 8.
    _fused_ok: bool | None = None  # probed on first use: needs torch >= 2.4 on CPU

    def _fused_step(self, p, g, lr, m, v) -> bool:
        if BatchedOptimizer._fused_ok is False or not (g.is_contiguous() and p.is_contiguous()):
            return False
        key = (tuple(p.shape), p.dtype, p.device)  # reused: no fresh pages every step
        cache = self.__dict__.setdefault("_scratch", {})
        if key not in cache:
            if len(cache) >= len(self.params):  # runs dropped out: old shapes are dead
                cache.clear()
            cache[key] = torch.empty_like(p)
        scratch = cache[key]
        scratch.zero_()
        try:
            step = torch.tensor(float(self.t), device=p.device)
            torch._fused_adam_([scratch], [g], [m], [v], [], [step],
                               lr=1.0, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0,
                               eps=self.eps, amsgrad=False, maximize=False)
        except (AttributeError, RuntimeError, NotImplementedError, TypeError):
            BatchedOptimizer._fused_ok = False  # m and v untouched: the kernel checks first
            return False
        BatchedOptimizer._fused_ok = True
        p.addcmul_(scratch, lr)
        return True

    # -- the run axis ----------------------------------------------------------------------
    def _state(self) -> list[list[torch.Tensor]]:
        return [self.params, self.lrs, self.m] + ([self.v] if self.v else [])

    @torch.no_grad()
    def keep(self, idx: torch.Tensor) -> None:
        """Keep only the runs ``idx`` (int64 indices into the current run axis), in that order.

        Parameters, rates and state become new, smaller tensors: read ``params`` again.
        """
        for group in self._state():
            for i, t in enumerate(group):
                group[i] = t.index_select(0, idx)

    @torch.no_grad()
    def expand(self, idx: torch.Tensor, runs: int) -> None:
        """Inverse of ``keep``: back to ``runs`` runs; the current runs go to rows ``idx``,
        every other run gets zero parameters, zero rates and zero state (frozen)."""
        for group in self._state():
            for i, t in enumerate(group):
                full = t.new_zeros(runs, *t.shape[1:])
                full[idx] = t
                group[i] = full

    @torch.no_grad()
    def freeze_runs(self, mask: torch.Tensor) -> None:
        """Stop runs (mask (R,) bool): zero their rates, parameters and optimiser state."""
        for p, lr, *state in zip(self.params, self.lrs, self.m, *([self.v] if self.v else [])):
            lr[mask] = 0.0
            for t in (p, *state):
                t[mask] = 0.0
