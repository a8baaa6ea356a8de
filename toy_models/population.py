"""A population: R runs of one model at one width and seed, trained as one tensor program.

LoRA factors are stacked on a leading run axis (A_l: (R, r, n_in), B_l: (R, n_out, r)) and
start from the model's shared initialisation; run i trains with rates eta_a[i], eta_b[i].
A run whose loss or parameters stop being finite (or whose loss exceeds
``divergence_factor`` x its initial loss) is marked diverged at that step, frozen, and
contributes no further measurements; the others go on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scaling.measure import METRICS, layer_metrics
from toy_models.models import LoraModel
from toy_models.optim import BatchedOptimizer


@dataclass
class Trajectory:
    """What a population run measured.

    metrics: name -> tensor (T + 1, R, L) on the CPU, float64; step 0 holds the initial
      state (loss, z_a), steps 1..T the update of that step. NaN where not measured or
      after divergence. ``loss`` is the training loss at the parameters after ``step``
      updates; ``test_loss`` (if requested) likewise on the model's test batch.
    diverged_step: (R,) int64, the step at which each run diverged, -1 if it never did.
    """

    metrics: dict[str, torch.Tensor]
    diverged_step: torch.Tensor
    layer_names: list[str]


class Population:
    """Train R runs of ``model`` with per-run rates and measure every step.

    eta_a, eta_b: sequences or tensors of length R (learning rates of A and B).
    optimizer: "sgd" | "adam" | "adamw"; optimizer_kwargs go to BatchedOptimizer.
    """

    def __init__(self, model: LoraModel, eta_a, eta_b, optimizer: str = "adam",
                 divergence_factor: float = 1e8, **optimizer_kwargs):
        self.model = model
        dev, dt = model.device, model.dtype
        self.eta_a = torch.as_tensor(eta_a, dtype=dt).to(dev).flatten().clone()
        self.eta_b = torch.as_tensor(eta_b, dtype=dt).to(dev).flatten().clone()
        if self.eta_a.shape != self.eta_b.shape:
            raise ValueError("eta_a and eta_b must have the same number of runs")
        if not (torch.isfinite(self.eta_a).all() and torch.isfinite(self.eta_b).all()
                and (self.eta_a >= 0).all() and (self.eta_b >= 0).all()):
            raise ValueError("learning rates must be finite and non-negative")
        self.runs = R = self.eta_a.numel()
        self.init = model.lora_init()
        self.A = [a.expand(R, *a.shape).clone().requires_grad_() for a, _ in self.init]
        self.B = [b.expand(R, *b.shape).clone().requires_grad_() for _, b in self.init]
        n_layers = len(self.A)
        self.optimizer = BatchedOptimizer(optimizer, self.A + self.B,
                                          [self.eta_a] * n_layers + [self.eta_b] * n_layers,
                                          **optimizer_kwargs)
        self.divergence_factor = divergence_factor
        self.diverged_step = torch.full((R,), -1, dtype=torch.int64)
        self.step_count = 0

    # ------------------------------------------------------------------------------------
    def _mark_divergence(self, loss: torch.Tensor, loss0: torch.Tensor) -> torch.Tensor:
        """Flag runs whose loss or parameters stopped being finite; return the alive mask."""
        with torch.no_grad():
            finite = torch.isfinite(loss)
            for p in self.A + self.B:
                finite &= torch.isfinite(p).flatten(1).all(1)
            bad = ~finite | (loss > self.divergence_factor * loss0)
            new = bad.cpu() & (self.diverged_step < 0)
            if new.any():
                self.diverged_step[new] = self.step_count
                self.optimizer.freeze_runs(new.to(loss.device))
        return (self.diverged_step < 0).to(loss.device)

    def run(self, steps: int, measure: bool = True, test_size: int = 0) -> Trajectory:
        """Take ``steps`` optimiser steps; return the measured trajectory."""
        if steps < 0:
            raise ValueError(f"steps must be non-negative, got {steps}")
        m, R, L = self.model, self.runs, len(self.A)
        names = list(METRICS) if measure else []
        out = {k: torch.full((steps + 1, R, L), float("nan"), dtype=torch.float64)
               for k in names + ["loss"] + (["test_loss"] if test_size else [])}
        test = m.test_batch(test_size) if test_size else None
        loss0 = None
        for t in range(steps + 1):
            x, y = m.train_batch(max(t, 1))
            pred, zs = m.forward(x, self.A, self.B)
            loss = m.loss(pred, y)
            loss0 = loss.detach().clamp_min(1e-30) if loss0 is None else loss0
            grads = None
            if t < steps:  # gradients before any in-place freeze of diverged runs
                grads = torch.autograd.grad(loss.sum(), self.A + self.B)
            alive = self._mark_divergence(loss.detach(), loss0)
            keep = alive.cpu()
            out["loss"][t, :, 0] = torch.where(keep, loss.detach().double().cpu(), float("nan"))
            if test is not None:
                with torch.no_grad():
                    tl = m.loss(m.forward(test[0], self.A, self.B)[0], test[1])
                out["test_loss"][t, :, 0] = torch.where(keep, tl.double().cpu(), float("nan"))
            if measure and t == 0:
                with torch.no_grad():
                    zp = self._probe_inputs(zs)
                    for l, (z, A) in enumerate(zip(zp, self.A)):
                        za = (z @ A.mT).pow(2).mean(dim=(-2, -1)).sqrt()
                        out["z_a"][0, :, l] = torch.where(keep, za.double().cpu(), float("nan"))
            if t == steps:
                break
            # A diverged run's gradient may be NaN; its rate is zero, but 0 * NaN is NaN.
            grads = [torch.where(alive.view(-1, *[1] * (g.dim() - 1)), g, 0.0) for g in grads]
            before = [p.detach().clone() for p in self.A + self.B] if measure else None
            self.optimizer.step(list(grads))
            self.step_count += 1
            if measure:
                self._measure(out, t + 1, zs, before, grads, keep)
        return Trajectory(out, self.diverged_step.clone(), list(m.layer_names))

    # ------------------------------------------------------------------------------------
    def _probe_inputs(self, zs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each LoRA layer's input on the probe batch at the current (pre-step) parameters."""
        m = self.model
        if m.probe_is_train_prefix:
            n = m.probe[0].shape[0]
            return [z.detach()[..., :n, :] for z in zs]
        with torch.no_grad():
            return m.forward(m.probe[0], self.A, self.B)[1]

    @torch.no_grad()
    def _measure(self, out, t, zs, before, grads, keep) -> None:
        L = len(self.A)
        zp = self._probe_inputs(zs)
        for l in range(L):
            values = layer_metrics(zp[l], before[l], before[L + l], self.A[l], self.B[l],
                                   grads[l], grads[L + l], self.init[l][0], self.init[l][1],
                                   self.model.scale)
            for k, v in values.items():
                out[k][t, :, l] = torch.where(keep, v.double().cpu(), float("nan"))
