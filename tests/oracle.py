"""The per-run oracle: each toy model as a plain ``nn.Module`` trained with ``torch.optim``.

The batched engine (toy_models.Population) must reproduce this run by run and step by step.
Everything frozen (base weights, data, LoRA initialisation, scale) is read from a built engine
model object; the forward pass and the loss are written here again from the model
definitions (plain matmuls and ReLUs), never by calling the engine's ``forward`` or ``loss``.

Conventions (the engine's documented contract):
- optimiser step k (1-based) trains on ``model.train_batch(k)``;
- ``losses[t]`` is the training loss at the parameters after t updates, on the batch the
  next step trains on, ``model.train_batch(t + 1)`` (for fixed data every batch is the same);
- loss = 0.5 * mean over the batch of (mean or sum, per ``cfg.loss_reduction``, over output
  coordinates) of (f - y)^2.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["OracleLora", "OracleResult", "oracle_loss", "train_oracle", "make_optimizer"]


class OracleLora(nn.Module):
    """One run of one toy model: trainable A_l (r, n_in), B_l (n_out, r) per LoRA layer."""

    def __init__(self, model, init: list[tuple[torch.Tensor, torch.Tensor]] | None = None):
        super().__init__()
        self.kind = model.name
        self.scale = float(model.scale)
        self.reduction = model.cfg.loss_reduction
        init = model.lora_init() if init is None else init
        self.A = nn.ParameterList([nn.Parameter(a.detach().clone()) for a, _ in init])
        self.B = nn.ParameterList([nn.Parameter(b.detach().clone()) for _, b in init])
        if self.kind in ("toy", "linear"):
            self.w_star = model.w_star.detach().clone()
        elif self.kind in ("mlp", "paper-mlp"):
            self.w_in = model.w_in.detach().clone()
            self.w_hidden = [None if w is None else w.detach().clone() for w in model.w_hidden]
            self.w_out = model.w_out.detach().clone()
            if self.kind == "paper-mlp":
                assert len(self.w_hidden) == 1 and self.w_hidden[0] is None
        else:
            raise ValueError(f"no oracle for model {self.kind!r}")
        assert len(self.A) == len(model.layer_names)

    def delta_w(self, l: int) -> torch.Tensor:
        """The dense LoRA update scale * B_l A_l, (n_out, n_in)."""
        return self.scale * self.B[l] @ self.A[l]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, d_in) -> predictions (N, d_out)."""
        return self._run(x)[0]

    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each LoRA layer's input z_l (N, n_in) at the current parameters (detached)."""
        with torch.no_grad():
            return self._run(x)[1]

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.kind in ("toy", "linear"):
            return x @ (self.w_star + self.delta_w(0)).T, [x]
        h, inputs = torch.relu(x @ self.w_in.T), []
        for l, w in enumerate(self.w_hidden):
            inputs.append(h)
            weight = self.delta_w(l) if w is None else w + self.delta_w(l)
            h = torch.relu(h @ weight.T)
        return h @ self.w_out.T, inputs

    def load(self, params: list[tuple[torch.Tensor, torch.Tensor]]) -> "OracleLora":
        """Set every (A_l, B_l) (unbatched) in place; returns self."""
        with torch.no_grad():
            for l, (a, b) in enumerate(params):
                self.A[l].copy_(a)
                self.B[l].copy_(b)
        return self

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return oracle_loss(self(x), y, self.reduction)

    def snapshot(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(a.detach().clone(), b.detach().clone()) for a, b in zip(self.A, self.B)]


def oracle_loss(pred: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    sq = (pred - y) ** 2
    per_sample = sq.mean(dim=1) if reduction == "mean" else sq.sum(dim=1)
    return 0.5 * per_sample.mean()


def make_optimizer(module: OracleLora, eta_a: float, eta_b: float, optimizer: str,
                   weight_decay: float | None = None) -> torch.optim.Optimizer:
    """torch.optim with two groups: every A at eta_a, every B at eta_b (torch's defaults
    otherwise: AdamW decays by 0.01, Adam and SGD by 0)."""
    groups = [{"params": list(module.A), "lr": float(eta_a)},
              {"params": list(module.B), "lr": float(eta_b)}]
    kw = {} if weight_decay is None else {"weight_decay": float(weight_decay)}
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=float(eta_a), **kw)
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=float(eta_a), **kw)
    if optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=float(eta_a), **kw)
    raise ValueError(f"unknown optimizer {optimizer!r}")


@dataclass
class OracleResult:
    """params[t]: [(A_l, B_l)] after t updates (t = 0..steps); losses: (steps + 1,) float64,
    losses[t] the training loss after t updates (on ``train_batch(t + 1)``)."""

    params: list[list[tuple[torch.Tensor, torch.Tensor]]]
    losses: torch.Tensor


def train_oracle(model, eta_a: float, eta_b: float, optimizer: str, steps: int,
                 weight_decay: float | None = None) -> OracleResult:
    """Train one run of ``model`` for ``steps`` steps with torch.optim; snapshot every step."""
    net = OracleLora(model)
    opt = make_optimizer(net, eta_a, eta_b, optimizer, weight_decay)
    params, losses = [net.snapshot()], []
    for t in range(steps + 1):
        x, y = model.train_batch(t + 1)
        loss = net.loss(x, y)
        losses.append(float(loss.detach()))
        if t == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        params.append(net.snapshot())
    return OracleResult(params, torch.tensor(losses, dtype=torch.float64))
