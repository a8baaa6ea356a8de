"""A population: R runs of one model at one width and seed, trained as one tensor program.

LoRA factors are stacked on a leading run axis (A_l: (R, r, n_in), B_l: (R, n_out, r)) and
start from the model's shared initialisation; run i trains with rates eta_a[i], eta_b[i].
A run whose loss or parameters stop being finite (or whose loss exceeds
``divergence_factor`` x its initial loss) is marked diverged at that step, frozen (zero
parameters, rates and optimiser state), and contributes no further measurements; the others
go on. Diverged runs are dropped from the run axis, so they cost nothing afterwards.

Storage: all factors of a run live side by side in one flat (R, K) buffer, K = the number
of LoRA parameters per run, as [A_1 .. A_L, B_1^T .. B_L^T] (B stored transposed, r x n_out,
because the fast paths produce dB^T contiguously); ``A`` / ``B`` are views into it. The
optimiser, the divergence check and the compaction are then a handful of tensor ops
whatever the depth.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch

from scaling.measure import METRICS, layer_metrics, rms
from toy_models.base import LoraModel
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


class _Recorder:
    """Per-step values of the runs still training, scattered into (T + 1, R, L) float64 CPU
    tables at the end: one stack and one transfer per table segment, not one per step."""

    def __init__(self, names: list[str], shape: tuple[int, int, int]):
        self.shape = shape
        self.entries: dict[str, list] = {k: [] for k in names}

    def add(self, name: str, t: int, idx: torch.Tensor, values: torch.Tensor, layer: int = 0) -> None:
        """values (len(idx),) for runs ``idx`` (CPU int64) at step t."""
        self.entries[name].append((t, idx, layer, values))

    def tables(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, entries in self.entries.items():
            table = torch.full(self.shape, float("nan"), dtype=torch.float64)
            groups: dict[tuple[int, int], tuple[torch.Tensor, list, list]] = {}
            for t, idx, layer, v in entries:  # idx objects change only when runs drop out
                _, ts, vs = groups.setdefault((id(idx), layer), (idx, [], []))
                ts.append(t)
                vs.append(v)
            for (_, layer), (idx, ts, vs) in groups.items():
                values = torch.stack(vs).double().cpu()             # (steps, len(idx))
                table[torch.tensor(ts)[:, None], idx[None, :], layer] = values
            out[name] = table
        return out


class Population:
    """Train R runs of ``model`` with per-run rates and measure every step.

    eta_a, eta_b: sequences or tensors of length R (learning rates of A and B).
    optimizer: "sgd" | "adam" | "adamw"; optimizer_kwargs go to BatchedOptimizer.
    fast_path: use the model's hand-written ``loss_and_grads`` (False: autograd through
      ``forward``, the reference; both give the same numbers to rounding).
    """

    def __init__(self, model: LoraModel, eta_a, eta_b, optimizer: str = "adam",
                 divergence_factor: float = 1e8, fast_path: bool = True, **optimizer_kwargs):
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
        L = len(self.init)
        factors = [a for a, _ in self.init] + [b.T for _, b in self.init]    # B stored as B^T
        self._shapes = [tuple(f.shape) for f in factors]
        flat = torch.cat([f.flatten() for f in factors]).expand(R, -1).clone()    # (R, K)
        rates = torch.cat([(self.eta_a if i < L else self.eta_b)[:, None].expand(R, f.numel())
                           for i, f in enumerate(factors)], dim=1)                # (R, K)
        self.optimizer = BatchedOptimizer(optimizer, [flat], [rates], **optimizer_kwargs)
        self.fast_path = fast_path
        self.divergence_factor = divergence_factor
        self.diverged_step = torch.full((R,), -1, dtype=torch.int64)
        self.step_count = 0
        self._threshold: torch.Tensor | None = None  # (R,) divergence_factor x initial loss

    # -- parameters ------------------------------------------------------------------------
    def _views(self, flat: torch.Tensor, cache: bool = True
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """[A_l (R', r, n_in)], [B_l (R', n_out, r)] as views of a flat (R', K) buffer
        (each B_l a transposed view of its stored B_l^T). The parameter buffer's views are
        cached: it is replaced only when runs drop out."""
        hit = self.__dict__.get("_view_cache")
        if hit is not None and hit[0] is flat:
            return hit[1]
        views, off = [], 0
        for shape in self._shapes:
            size = prod(shape)
            views.append(flat[:, off:off + size].view(flat.shape[0], *shape))
            off += size
        L = len(views) // 2
        out = views[:L], [v.mT for v in views[L:]]
        if cache:
            self._view_cache = (flat, out)
        return out

    @property
    def A(self) -> list[torch.Tensor]:
        """A_l, (R, r, n_in) per layer (zero for diverged runs)."""
        return self._views(self.optimizer.params[0])[0]

    @property
    def B(self) -> list[torch.Tensor]:
        """B_l, (R, n_out, r) per layer (zero for diverged runs)."""
        return self._views(self.optimizer.params[0])[1]

    # -- training ---------------------------------------------------------------------------
    def run(self, steps: int, measure: bool = True, test_size: int = 0) -> Trajectory:
        """Take ``steps`` optimiser steps; return the measured trajectory.

        Optimiser step k (counted over all calls, 1-based) trains on ``train_batch(k)``;
        the loss recorded after t updates is on the batch the next step trains on. Calls
        continue one another: the divergence threshold stays divergence_factor x the loss
        of the very first evaluation, and diverged runs stay dropped.
        """
        if steps < 0:
            raise ValueError(f"steps must be non-negative, got {steps}")
        m, R, L = self.model, self.runs, len(self.init)
        names = (list(METRICS) if measure else []) + ["loss"] + (["test_loss"] if test_size else [])
        rec = _Recorder(names, (steps + 1, R, L))
        test = m.test_batch(test_size) if test_size else None
        lag = m.loss_and_grads if self.fast_path else m.autograd_loss_and_grads
        opt, dev = self.optimizer, m.device
        idx = (self.diverged_step < 0).nonzero().squeeze(1)         # runs still training (CPU)
        if len(idx) < R:
            opt.keep(idx.to(dev))
        thr = None if self._threshold is None else self._threshold[idx.to(dev)]
        try:
            for t in range(steps + 1):
                if len(idx) == 0:  # every run has diverged: the remaining steps are no-ops
                    self.step_count += steps - t
                    opt.t += steps - t
                    break
                x, y = m.train_batch(self.step_count + 1)
                flat = opt.params[0]
                As, Bs = self._views(flat)
                loss, grads, zs = lag(x, y, As, Bs, grads=t < steps)
                if thr is None:  # first evaluation ever; clamped so that inf never passes
                    thr = self._threshold = (self.divergence_factor * loss.clamp_min(1e-30)
                                             ).clamp_max(torch.finfo(loss.dtype).max)
                # A NaN loss fails the comparison; so does a run with a non-finite
                # parameter, since 0 * (its non-finite sum) is NaN (one cheap reduction
                # instead of an elementwise isfinite; a finite sum that overflows counts
                # as non-finite, at |parameters| ~ 1e38 in float32).
                ok = (loss + 0.0 * flat.sum(1)) <= thr
                # The loop's one host-device synchronisation per step, at the point where the
                # step's loss is recorded anyway: whether any run diverged (to drop it).
                all_ok = bool(ok.all())
                if not all_ok:
                    self.diverged_step[idx[~ok.cpu()]] = self.step_count

                def record(name, values, layer=0):
                    rec.add(name, t, idx, values if all_ok else
                            torch.where(ok, values, float("nan")), layer)

                record("loss", loss)
                if test is not None:
                    record("test_loss", lag(test[0], test[1], As, Bs, grads=False)[0])
                zp = self._probe_inputs(zs, As, Bs) if measure else None   # pre-step
                if measure and t == 0:
                    for l, (z, A) in enumerate(zip(zp, As)):
                        record("z_a", rms(z @ A.mT), l)
                        record("dz_a", torch.zeros_like(loss), l)
                if not all_ok:  # drop the diverged runs: frozen at zero, never computed again
                    keep = ok.nonzero().squeeze(1)
                    opt.keep(keep)
                    idx, thr = idx[keep.cpu()], thr[keep]
                    if grads is not None:
                        grads = [g[keep] for g in grads]
                    if zp is not None:
                        zp = [z[keep] if z.dim() == 3 else z for z in zp]
                    if len(idx) == 0:
                        self.step_count += steps - t
                        opt.t += steps - t
                        break
                if t == steps:
                    break
                G = self._flat_grads(grads, len(idx))
                before = opt.params[0].clone() if measure else None
                opt.step([G])
                self.step_count += 1
                if measure:
                    self._measure(rec, t + 1, idx, zp, before, opt.params[0], G)
        finally:
            if len(idx) < R:  # back to all R runs; the dropped ones are zero
                opt.expand(idx.to(dev), R)
        return Trajectory(rec.tables(), self.diverged_step.clone(), list(m.layer_names))

    def _flat_grads(self, grads: list[torch.Tensor], runs: int) -> torch.Tensor:
        """[dA_l], [dB_l] -> (R', K) in the flat layout (dB_l^T; free when dB_l is already a
        transposed view of a contiguous dB_l^T, as the fast paths return it)."""
        L = len(grads) // 2
        parts = [g.reshape(runs, -1) for g in grads[:L]] + [g.mT.reshape(runs, -1) for g in grads[L:]]
        return torch.cat(parts, dim=1)

    # -- measurement ------------------------------------------------------------------------
    def _probe_inputs(self, zs, As, Bs) -> list[torch.Tensor]:
        """Each LoRA layer's input on the probe batch at the current (pre-step) parameters,
        (N_probe, n_in) or (R', N_probe, n_in)."""
        m = self.model
        if m.probe_is_train_prefix:
            n = m.probe[0].shape[0]
            return [z[..., :n, :] for z in zs]
        return m.layer_inputs(m.probe[0], As, Bs)

    @torch.no_grad()
    def _measure(self, rec: _Recorder, t: int, idx, zp, before, after, grads) -> None:
        (A0, B0), (A1, B1), (gA, gB) = (self._views(f, cache=f is after)
                                        for f in (before, after, grads))
        for l in range(len(A0)):
            values = layer_metrics(zp[l], A0[l], B0[l], A1[l], B1[l], gA[l], gB[l],
                                   self.init[l][0], self.init[l][1], self.model.scale)
            for k, v in values.items():
                rec.add(k, t, idx, v, l)
