"""Many LoRA fine-tuning runs of real models: one program with torch.func, or one by one.

A population is M members x K rate pairs. A member is one ``scaling.factory.Task`` (one model
of one width, e.g. one per seed); run (m, k) starts from member m (its frozen base, its LoRA
initialisation, its batches) and trains member m's trainable parameters with Adam at
(eta_A[m, k], eta_B[m, k]): LoRA A factors at eta_A, B factors at eta_B, LoRA embeddings at
1e-6 and any other trainable parameter at eta_A (the roles of ``scaling.loraplus``).

Two paths, the same numbers (to rounding; the tests hold them to float64 precision):
- ``torch.func``, when every member has the same architecture: every member's parameters and
  buffers are stacked on a member axis, the trainable ones and the batches on (member, rate)
  axes, and one ``vmap(vmap(grad(functional_call)))`` gives every run's loss, gradient and
  LoRA-layer inputs; ``toy_models.optim.BatchedOptimizer`` takes every run's Adam step at once.
  A member's K runs read the same batch, yet the batch carries the rate axis too (as a view, no
  copy): torch's batching rules for ``mse_loss``, ``huber_loss`` and ``smooth_l1_loss`` flatten
  each input before they broadcast, so a target with the member axis only, against a prediction
  with both, fails ("the size of tensor a (K x N) must match the size of tensor b (N)"). The
  price: each run computes the frozen layers in front of the first LoRA layer's update itself.
  A model torch.func cannot run falls back to the loop, with ``explain_vmap_failure``'s reason.
- ``loop``: each run trains member m's own module with ``torch.optim.Adam`` over
  ``scaling.loraplus.create_loraplus_optimizer``'s groups, measured by
  ``scaling.monitor.FeatureLearningMonitor``; the trainable parameters are reset between runs.
``path="auto"`` takes torch.func when it applies and falls back to the loop, saying why.

Both record, per run: the loss at steps 0..T (after t updates, on the batch of step t + 1;
layer ``all``) and, with ``measure=True``, every step's delta1..3, z_a, dz_a, dz_b, ||dW||, A/B
shares and loss_drop of each LoRA layer the monitor can measure (``scaling.monitor.update_metrics``
on the first ``max_inputs`` rows of the layer's input in that step's forward pass), plus z_a and
dz_a at step 0. A run whose loss is not finite or exceeds ``divergence_factor`` x its initial
loss at step t (or whose parameters are no longer finite) is diverged at t: it stops, its rows
from step t on are dropped and one row ``diverged`` (value 1) marks step t.
"""
from __future__ import annotations

import os
import traceback
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from scaling.factory import Task
from scaling.loraplus import create_loraplus_optimizer, default_role
from scaling.monitor import FeatureLearningMonitor, _lora_factors, find_lora_layers, initial_z_a, update_metrics
from toy_models.optim import BatchedOptimizer

PATHS = ("auto", "torch.func", "loop")
EMBEDDING_LR = 1e-6  # create_loraplus_optimizer's default for LoRA embeddings
FRAME_COLUMNS = ["member", "run", "step", "layer", "metric", "value"]


@dataclass
class PopulationResult:
    """frame: tidy rows (member, run = index into the K rate pairs, step, layer, metric, value);
    path: "torch.func" or "loop"; note: why the loop ran, or what torch.func could not batch."""

    frame: pd.DataFrame
    path: str
    note: str = ""


def _rates(values, members: int, name: str) -> np.ndarray:
    """(K,) or (M, K) rates -> (M, K) float64; finite and positive."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        a = np.broadcast_to(a, (members, a.size))
    if a.ndim != 2 or a.shape[0] != members or a.shape[1] == 0:
        raise ValueError(f"{name}: expected K rates or an (M={members}, K) array, got shape {np.shape(values)}")
    if not (np.isfinite(a).all() and (a > 0).all()):
        raise ValueError(f"{name}: learning rates must be finite and positive")
    return np.array(a)


def train_population(tasks: list[Task], eta_a, eta_b, steps: int, *, measure: bool = True, path: str = "auto",
                     max_inputs: int = 256, divergence_factor: float = 1e8, chunk_size: int | None = None,
                     device: torch.device | str | None = None) -> PopulationResult:
    """Train every (member, rate pair) for ``steps`` Adam steps; see the module docstring.

    tasks: M members; eta_a, eta_b: (K,) for every member or (M, K); chunk_size: runs of the
    rate axis computed at once by torch.func (None: all K; smaller saves memory)."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; choose from {', '.join(PATHS)}")
    if not tasks:
        raise ValueError("no tasks")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    eta_a, eta_b = _rates(eta_a, len(tasks), "eta_a"), _rates(eta_b, len(tasks), "eta_b")
    if eta_a.shape != eta_b.shape:
        raise ValueError(f"eta_a {eta_a.shape} and eta_b {eta_b.shape} differ in shape")
    device = torch.device(device) if device is not None else next(tasks[0].model.parameters()).device
    args = (tasks, eta_a, eta_b, steps, measure, max_inputs, divergence_factor, device)
    if path == "loop":
        return _loop(*args, note="asked for")
    reason = _batching_obstacle(tasks)
    if reason is None:
        try:
            return _Batched(*args, chunk_size=chunk_size).run()
        except _Unbatchable as err:
            reason = str(err)
    if path == "torch.func":
        raise ValueError(f"torch.func cannot train this population: {reason}")
    return _loop(*args, note=reason)


class _Unbatchable(Exception):
    """torch.func cannot run this population (raised before any state changed)."""


# What vmap's errors mean for a model, by a phrase of torch's message (torch 2.x wording).
_VMAP_FAILURES = (
    (("data-dependent control flow", ".item()"),  # under grad, torch cannot tell the two apart
     "the forward reads a tensor's value in Python (.item(), float(), or an if, while or assert "
     "on a tensor), a number or branch that could differ between runs"),
    (("random operation",),
     "the forward draws random numbers (dropout above 0, noise), so runs would differ by more "
     "than their rates; set dropout to 0"),
    (("dynamic shape", "boolean mask"),
     "the forward makes a tensor whose size depends on values (boolean-mask indexing, nonzero, "
     "unique), which can differ between runs"),
    (("data pointer", "doesn't have storage"),
     "the forward hands a tensor to code outside torch (.numpy(), .tolist(), a compiled extension), "
     "which cannot see the runs' stacked tensors"),
    (("inplace arithmetic", "doesn't match the broadcast shape"),
     "the forward writes a result that differs between runs in place into a tensor all runs share "
     "(x += ... on a buffer or a batch tensor); write it out of place (x = x + ...)"),
    (("Batching rule not implemented", "not supported with vmap", "vmap: We do not support"),
     "an operation in the forward has no batched version in torch"),
    (("must match the size of tensor", "shapes cannot be multiplied", "expanded size"),
     "a batching rule of torch could not line up two of the forward's tensors over the runs "
     "(e.g. mse_loss of a per-run output against a target made from frozen weights only)"),
    (("can't allocate memory", "out of memory", "not enough memory"),
     "all runs at once need more memory than there is (a smaller chunk_size computes fewer at once)"),
)


def explain_vmap_failure(err: BaseException) -> str:
    """One line saying in plain words why torch.func could not run a model, from the exception
    its first batched call raised, with where it was raised (the innermost frame outside torch
    and this module: usually the model's or the loss's own line). An error of a kind not known
    here is named by its type and first sentence."""
    text = " ".join(str(err).split())
    where = _raised_at(err)
    at = f" (at {where})" if where else ""
    for phrases, meaning in _VMAP_FAILURES:
        if any(p in text for p in phrases):
            return f"torch.func cannot batch this model: {meaning}{at}"
    first = text.split(". ")[0].rstrip(".")
    return f"torch.func cannot batch this model: {type(err).__name__}{at}: {first}"


def _raised_at(err: BaseException) -> str:
    """file:line of the innermost traceback frame outside torch and this module, or ''."""
    skip = (os.path.dirname(torch.__file__) + os.sep, __file__)
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(skip)]
    return f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""


def _signature(model: nn.Module) -> list:
    """What must agree between members for one functional program: module types, parameter
    and buffer names, shapes, dtypes and trainability, LoRA scales."""
    sig = [(name, type(m).__name__) for name, m in model.named_modules()]
    sig += [(name, tuple(p.shape), p.dtype, p.requires_grad) for name, p in model.named_parameters()]
    sig += [(name, tuple(b.shape), b.dtype) for name, b in model.named_buffers()]
    sig += [(name, _lora_factors(m)[2]) for name, m in find_lora_layers(model)[0].items()]
    return sig


def _plain_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Tensors a module keeps as plain attributes (neither parameter nor buffer): functional_call
    cannot swap them, so every member would compute with member 0's."""
    return {f"{name}.{attr}": value for name, m in model.named_modules() for attr, value in vars(m).items()
            if isinstance(value, torch.Tensor)}


def _batching_obstacle(tasks: list[Task]) -> str | None:
    """Why the members cannot be one torch.func program, or None."""
    first = _signature(tasks[0].model)
    plain = _plain_tensors(tasks[0].model)
    for i, task in enumerate(tasks[1:], start=1):
        if _signature(task.model) != first:
            return f"member {i} has a different architecture from member 0"
        for name, value in _plain_tensors(task.model).items():
            if name not in plain or value.shape != plain[name].shape or not torch.equal(value, plain[name]):
                return (f"member {i}'s tensor attribute {name} differs from member 0's and is not a parameter or "
                        "buffer (register_buffer would let torch.func swap it)")
    if any(t.fixed_batch != tasks[0].fixed_batch for t in tasks):
        return "some members have a fixed batch and others a batch per step"
    return None


# -- shared bookkeeping ------------------------------------------------------------------------
class _Recorder:
    """Rows for R = M x K runs. ``add`` keeps the runs not yet diverged; ``frame`` drops every
    row of a run from its diverged step on (the update that led there included)."""

    def __init__(self, members: int, rates: int):
        self.M, self.K = members, rates
        self.diverged = np.full(members * rates, -1)
        self.parts: list[pd.DataFrame] = []

    @property
    def alive(self) -> np.ndarray:
        return self.diverged < 0

    def add(self, step: int, layer: str, metric: str, values, runs: np.ndarray | None = None) -> None:
        """values (len(runs),) for ``runs`` (flat indices m * K + k; default every run)."""
        runs = np.arange(self.M * self.K) if runs is None else np.asarray(runs)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        keep = self.alive[runs]
        if keep.any():
            self.parts.append((runs[keep], step, layer, metric, values[keep]))

    def diverge(self, runs, step: int) -> None:
        runs = np.asarray(runs)
        self.diverged[runs[self.alive[runs]]] = step

    def frame(self) -> pd.DataFrame:
        gone = np.nonzero(self.diverged >= 0)[0]
        parts = self.parts + [(gone, self.diverged[gone], "all", "diverged", np.ones(len(gone)))]
        runs = np.concatenate([p[0] for p in parts])
        sizes = [len(p[0]) for p in parts]
        step = np.concatenate([np.broadcast_to(np.asarray(p[1], dtype=np.int64), (n,)) for p, n in zip(parts, sizes)])
        rows = pd.DataFrame({"member": runs // self.K, "run": runs % self.K, "step": step,
                             "layer": np.repeat([p[2] for p in parts], sizes),
                             "metric": np.repeat([p[3] for p in parts], sizes),
                             "value": np.concatenate([p[4] for p in parts])})
        cut = np.where(self.diverged >= 0, self.diverged, np.iinfo(np.int64).max)[runs]
        keep = (step < cut) | (rows.metric.to_numpy() == "diverged")
        return rows[keep].reset_index(drop=True)


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _stack(batches: list):
    """Stack members' batches on a new leading axis (tensors inside tuples, lists, dicts)."""
    first = batches[0]
    if isinstance(first, torch.Tensor):
        if any(not isinstance(b, torch.Tensor) or b.shape != first.shape for b in batches):
            raise _Unbatchable("the members' batches differ in shape")
        return torch.stack(batches)
    if isinstance(first, dict):
        if any(not isinstance(b, dict) or b.keys() != first.keys() for b in batches):
            raise _Unbatchable("the members' batches differ in structure")
        return {k: _stack([b[k] for b in batches]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(not isinstance(b, (tuple, list)) or len(b) != len(first) for b in batches):
            raise _Unbatchable("the members' batches differ in structure")
        return type(first)(_stack([b[i] for b in batches]) for i in range(len(first)))
    raise _Unbatchable(f"a batch holds a {type(first).__name__}; torch.func stacks tensors only")


def _per_rate(batch, rates: int):
    """(M, ...) -> (M, K, ...) views (no copy) of every tensor in a stacked batch: every tensor
    the model and loss compute from data then carries both run axes (module docstring)."""
    if isinstance(batch, torch.Tensor):
        return batch[:, None].expand(batch.shape[0], rates, *batch.shape[1:])
    if isinstance(batch, dict):
        return {k: _per_rate(v, rates) for k, v in batch.items()}
    return type(batch)(_per_rate(v, rates) for v in batch)


# -- the per-run loop --------------------------------------------------------------------------
def _loop(tasks, eta_a, eta_b, steps, measure, max_inputs, divergence_factor, device, note="") -> PopulationResult:
    M, K = eta_a.shape
    rec = _Recorder(M, K)
    for m, task in enumerate(tasks):
        model = task.model.to(device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        initial = [p.detach().clone() for p in trainable]
        for k in range(K):
            r = np.array([m * K + k])
            with torch.no_grad():
                for p, p0 in zip(trainable, initial):
                    p.copy_(p0)
                    p.grad = None
            opt = create_loraplus_optimizer(model, torch.optim.Adam, lr=float(eta_a[m, k]),
                                            loraplus_lr_ratio=float(eta_b[m, k] / eta_a[m, k]))
            monitor = FeatureLearningMonitor(model, every=1, max_inputs=max_inputs) if measure else None
            threshold, diverged_at = None, None
            for t in range(steps + 1):
                batch = _to(task.batch(t + 1), device)
                with torch.set_grad_enabled(t < steps):
                    loss = task.loss(model, batch)
                value = loss.detach()
                if threshold is None:
                    threshold = divergence_factor * value.clamp_min(1e-30)
                finite = all(bool(torch.isfinite(p).all()) for p in trainable)
                if not (finite and bool(value <= threshold)):
                    diverged_at = t
                    break
                rec.add(t, "all", "loss", [float(value)], r)
                if t == steps:
                    break
                loss.backward()
                opt.step()
                if monitor is not None:
                    monitor.step()
                opt.zero_grad()
            if monitor is not None:
                monitor.close()
                for (step, layer, metric), v in monitor.frame().groupby(["step", "layer", "metric"], sort=False):
                    rec.add(int(step), layer, metric, v.value.to_numpy(), r)
            if diverged_at is not None:
                rec.diverge(r, diverged_at)
        with torch.no_grad():
            for p, p0 in zip(trainable, initial):
                p.copy_(p0)
    return PopulationResult(rec.frame(), "loop", note)


# -- torch.func ----------------------------------------------------------------------------------
class _LossModule(nn.Module):
    """The model and its loss as one module, so functional_call can swap every tensor."""

    def __init__(self, task: Task):
        super().__init__()
        self.model = task.model
        self._loss = task.loss_fn

    def forward(self, batch):
        if self._loss is not None:
            return self._loss(self.model, batch)
        return self.model(**batch).loss


class _Batched:
    def __init__(self, tasks, eta_a, eta_b, steps, measure, max_inputs, divergence_factor, device,
                 chunk_size=None):
        self.tasks, self.steps, self.measure, self.max_inputs = tasks, steps, measure, max_inputs
        self.divergence_factor, self.device, self.chunk_size = divergence_factor, device, chunk_size
        self.M, self.K = eta_a.shape
        R = self.M * self.K
        # Member 0's module runs every member's forward: functional_call swaps in the stacked
        # parameters and buffers for the call and puts its own back afterwards.
        template = tasks[0].model
        self.wrapper = _LossModule(tasks[0])
        params = [dict(_LossModule(t).named_parameters()) for t in tasks]
        buffers = [dict(_LossModule(t).named_buffers()) for t in tasks]
        self.trainable = [n for n, p in params[0].items() if p.requires_grad]
        if not self.trainable:
            raise _Unbatchable("the model has no trainable parameters")
        frozen = [n for n, p in params[0].items() if not p.requires_grad]
        with torch.no_grad():
            self.frozen = {n: torch.stack([p[n].detach() for p in params]).to(device) for n in frozen}
            self.frozen.update({n: torch.stack([b[n] for b in buffers]).to(device) for n in buffers[0]})
            self.init = {n: torch.stack([p[n].detach() for p in params]).to(device) for n in self.trainable}
        dtype = self.init[self.trainable[0]].dtype
        a = torch.as_tensor(eta_a.reshape(-1), dtype=dtype, device=device)
        b = torch.as_tensor(eta_b.reshape(-1), dtype=dtype, device=device)
        lrs, flat = [], []
        for n in self.trainable:
            role = default_role(n, None, None)
            lrs.append(b if role == "lora_B" else torch.full_like(a, EMBEDDING_LR) if role == "lora_embedding" else a)
            p0 = self.init[n]
            flat.append(p0[:, None].expand(self.M, self.K, *p0.shape[1:]).reshape(R, *p0.shape[1:]).clone())
        self.opt = BatchedOptimizer("adam", flat, lrs)
        # The LoRA layers the monitor measures, with their factors' names in the wrapper.
        names = {id(p): n for n, p in self.wrapper.named_parameters()}
        self.layers = []  # (layer name, A name, B name, scale)
        self._capture: dict | None = None
        self._hooks = []
        for lname, module in find_lora_layers(template)[0].items():
            A, B, scale, _ = _lora_factors(module)
            if names.get(id(A)) in self.trainable and names.get(id(B)) in self.trainable:
                self.layers.append((lname, names[id(A)], names[id(B)], scale))
                self._hooks.append(module.register_forward_pre_hook(self._keep_input(lname)))

    def _keep_input(self, name: str):
        def keep(module, args):
            if self._capture is not None and args:
                x = args[0]
                self._capture[name] = x.reshape(-1, x.shape[-1])[: self.max_inputs]
        return keep

    def _views(self, tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: t.view(self.M, self.K, *t.shape[1:]) for n, t in zip(self.trainable, tensors)}

    def _programs(self):
        def forward(lora, frozen, batch):
            self._capture = {} if self.measure else None
            try:
                loss = functional_call(self.wrapper, (lora, frozen), (batch,), tie_weights=True, strict=False)
                zs = dict(self._capture or {})  # layer -> input rows (a layer the forward skips is absent)
            finally:
                self._capture = None
            return loss, zs

        def loss_only(lora, frozen, batch):
            return forward(lora, frozen, batch)[0]

        step = vmap(vmap(grad_and_value(forward, has_aux=True), in_dims=(0, None, 0), chunk_size=self.chunk_size),
                    in_dims=(0, 0, 0))
        last = vmap(vmap(loss_only, in_dims=(0, None, 0), chunk_size=self.chunk_size), in_dims=(0, 0, 0))
        return step, last

    def _batch(self, step: int):
        if self.tasks[0].fixed_batch:
            if not hasattr(self, "_fixed"):
                self._fixed = _per_rate(_to(_stack([t.batch(1) for t in self.tasks]), self.device), self.K)
            return self._fixed
        return _per_rate(_to(_stack([t.batch(step) for t in self.tasks]), self.device), self.K)

    def run(self) -> PopulationResult:
        try:
            return self._run()
        finally:
            for h in self._hooks:
                h.remove()

    def _run(self) -> PopulationResult:
        step_fn, last_fn = self._programs()
        M, K, R = self.M, self.K, self.M * self.K
        rec = _Recorder(M, K)
        opt = self.opt
        threshold = None
        fallbacks: set[str] = set()
        for t in range(self.steps + 1):
            batch = self._batch(t + 1)
            params = self._views(opt.params)
            if t == 0:  # the first call shows whether the model batches at all
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        out = step_fn(params, self.frozen, batch) if t < self.steps else last_fn(params, self.frozen, batch)
                    except _Unbatchable:
                        raise
                    except Exception as err:  # vmap's limits (data-dependent control flow, randomness, ...)
                        raise _Unbatchable(explain_vmap_failure(err)) from None
                for w in caught:
                    text = str(w.message)
                    if "batching rule" in text:
                        fallbacks.add(text.split("batching rule for ")[-1].split(".")[0])
            else:
                out = step_fn(params, self.frozen, batch) if t < self.steps else last_fn(params, self.frozen, batch)
            if t < self.steps:
                grads, (loss, zs) = out
            else:
                loss, grads, zs = out, None, None
            loss = loss.detach().reshape(R)
            if threshold is None:
                threshold = self.divergence_factor * loss.clamp_min(1e-30)
            finite = torch.stack([torch.isfinite(p).flatten(1).all(1) for p in opt.params]).all(0)
            ok = ((loss <= threshold) & finite).cpu().numpy()
            rec.add(t, "all", "loss", loss.cpu().numpy())  # dropped again below if the run diverged here
            bad = np.nonzero(~ok & rec.alive)[0]
            if len(bad):
                rec.diverge(bad, t)
                opt.freeze_runs(torch.as_tensor(~ok, device=self.device))
            if t == self.steps:
                break
            flat_grads = [grads[n].reshape(R, *grads[n].shape[2:]) for n in self.trainable]
            zs = {n: z.reshape(R, *z.shape[2:]) for n, z in zs.items()}
            if self.measure and t == 0:
                for lname, a_name, _, _ in self.layers:
                    if lname in zs:
                        rec.add(0, lname, "z_a", initial_z_a(zs[lname], self._per_run(self.init[a_name])).cpu().numpy())
                        rec.add(0, lname, "dz_a", np.zeros(R))
            before = [p.clone() for p in opt.params] if self.measure else None
            opt.step(flat_grads)
            if self.measure:
                self._measure(rec, t + 1, zs, before, flat_grads)
        note = ("per-run fallback inside vmap for " + ", ".join(sorted(fallbacks))) if fallbacks else ""
        return PopulationResult(rec.frame(), "torch.func", note)

    def _per_run(self, per_member: torch.Tensor) -> torch.Tensor:
        """(M, ...) -> (R, ...): member m's tensor for each of its K runs."""
        return per_member[:, None].expand(self.M, self.K, *per_member.shape[1:]).reshape(-1, *per_member.shape[1:])

    @torch.no_grad()
    def _measure(self, rec: _Recorder, step: int, zs, before, grads) -> None:
        index = {n: i for i, n in enumerate(self.trainable)}
        after = self.opt.params
        for lname, a_name, b_name, scale in self.layers:
            if lname not in zs:
                continue
            ia, ib = index[a_name], index[b_name]
            values = update_metrics(zs[lname], before[ia], before[ib], after[ia], after[ib], grads[ia], grads[ib],
                                    self._per_run(self.init[a_name]), self._per_run(self.init[b_name]), scale)
            for metric, v in values.items():
                rec.add(step, lname, metric, v.cpu().numpy())
