"""Measure the delta decomposition on a real model while it fine-tunes.

``FeatureLearningMonitor(model, every=10)`` finds every LoRA layer with a linear structure
(PEFT's Linear and GPT-2 Conv1D LoRA layers, ``scaling.lora_layers.LoRALinear``). On the steps
it measures, a forward pre-hook keeps (a sample of) each layer's input and a copy of its A and
B; after the optimiser step, ``monitor.step()`` reads the new A and B and computes, with
``scaling.measure.layer_metrics``, delta1 (B dA z, A's side), delta2 (dB A z, B's side),
delta3, dz_b, z_a, dz_a, ||dW|| (since the monitor was created) and the A/B shares of the
first-order loss decrease (when gradients are still there). LoRA embeddings and convolutions
have no n-wide input sum; they are listed in ``skipped``.

Plain loop: ``loss.backward(); optimizer.step(); monitor.step(); optimizer.zero_grad()``.
HF Trainer: ``callbacks=[monitor.callback()]`` (it runs at ``on_optimizer_step``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from scaling.lora_layers import LoRALinear
from scaling.measure import layer_metrics

LAZY_FACTOR = 10.0  # a side is lazy when its delta is this many times below the other's


def _lora_factors(layer: nn.Module):
    """(A (r, n_in), B (n_out, r), scale, name of the adapter) of a LoRA layer, or None when
    the layer is not a linear LoRA layer."""
    if isinstance(layer, LoRALinear):
        return layer.lora_A, layer.lora_B, layer.scale, "lora"
    lora_a, lora_b = getattr(layer, "lora_A", None), getattr(layer, "lora_B", None)
    if not isinstance(lora_a, nn.ModuleDict) or not isinstance(lora_b, nn.ModuleDict):
        return None
    adapters = [a for a in (getattr(layer, "active_adapters", None) or list(lora_a.keys())) if a in lora_a]
    if not adapters or not isinstance(lora_a[adapters[0]], nn.Linear):
        return None
    name = adapters[0]
    return lora_a[name].weight, lora_b[name].weight, float(layer.scaling[name]), name


def lora_weights(layer: nn.Module):
    """(A's weight, B's weight) of any LoRA layer whose factors are modules with a weight (PEFT's
    Linear, Conv1D and Conv2d LoRA, or LoRALinear), measurable or not; None otherwise (PEFT's
    embedding LoRA keeps its factors elsewhere)."""
    if isinstance(layer, LoRALinear):
        return layer.lora_A, layer.lora_B
    lora_a, lora_b = getattr(layer, "lora_A", None), getattr(layer, "lora_B", None)
    if not isinstance(lora_a, nn.ModuleDict) or not isinstance(lora_b, nn.ModuleDict) or not len(lora_a):
        return None
    name = next(a for a in (getattr(layer, "active_adapters", None) or list(lora_a.keys())) if a in lora_a)
    return lora_a[name].weight, lora_b[name].weight


def all_lora_weights(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{name: (A's weight, B's weight)} of every LoRA layer with module factors (``lora_weights``),
    measurable or not, in model order."""
    found, skipped = find_lora_layers(model)
    modules = dict(model.named_modules())
    return {n: w for n in modules if n in found or n in skipped for w in [lora_weights(modules[n])] if w is not None}


def update_metrics(z, A0, B0, A1, B1, gA, gB, A_init, B_init, scale: float) -> dict[str, torch.Tensor]:
    """``scaling.measure.layer_metrics`` in float64, the monitor's arithmetic: one step of one
    LoRA layer for R runs at once. z (N, n_in) or (R, N, n_in); A* (R, r, n_in); B* (R, n_out, r);
    returns {metric: (R,)}. ``toy_models.module_population`` measures its batched runs with it."""
    f = torch.float64
    return layer_metrics(*(t.to(f) for t in (z, A0, B0, A1, B1, gA, gB, A_init, B_init)), scale)


def initial_z_a(z: torch.Tensor, A_init: torch.Tensor) -> torch.Tensor:
    """Z_A(0) = A_init z as a coordinate RMS per run, float64: z (N, n_in) or (R, N, n_in),
    A_init (R, r, n_in) -> (R,)."""
    f = torch.float64
    return (z.to(f) @ A_init.to(f).mT).pow(2).mean(dim=(-2, -1)).sqrt()


def find_lora_layers(model: nn.Module) -> tuple[dict[str, nn.Module], list[str]]:
    """({name: linear LoRA layer}, [names of LoRA layers the monitor cannot measure])."""
    found, skipped = {}, []
    for name, module in model.named_modules():
        is_lora = isinstance(module, LoRALinear) or (isinstance(getattr(module, "lora_A", None), nn.ModuleDict)
                                                     and hasattr(module, "scaling"))
        if not is_lora:
            continue
        if _lora_factors(module) is None:
            skipped.append(name)
        else:
            found[name] = module
    return found, skipped


def short_layer_names(names: list[str]) -> dict[str, str]:
    """{full module name: short, unambiguous name} for a model's LoRA layers.

    PEFT's ``base_model.model.`` goes, and so does every path component that all the names
    share, except block indices; a name's first component, when it is a block index i, becomes
    ``Li``. So "base_model.model.bert.encoder.layer.0.attention.self.query" and its value twin
    read "L0.query" and "L0.value"; names of different depths keep all they do not share at
    the front; a single layer keeps its last component. Should shortening ever make two names
    equal, every name stays whole (only PEFT's prefix removed): short names never merge layers.
    """
    parts = [n.removeprefix("base_model.model.").split(".") for n in names]
    if len(parts) == 1:
        short = [parts[0][-1:]]
    elif len({len(p) for p in parts}) == 1:  # one depth: keep the components that vary, and indices
        keep = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1 or parts[0][i].isdigit()]
        short = [[p[i] for i in keep] or p[-1:] for p in parts]
    else:  # depths differ: drop the components every name shares at the front
        lead = 0
        while all(len(p) > lead + 1 and p[lead] == parts[0][lead] for p in parts):
            lead += 1
        short = [p[lead:] for p in parts]
    short = [[f"L{p[0]}"] + p[1:] if p[0].isdigit() else p for p in short]
    out = dict(zip(names, (".".join(p) for p in short)))
    if len(set(out.values())) < len(names):
        out = dict(zip(names, (".".join(p) for p in parts)))
    return out


class FeatureLearningMonitor:
    """Per-layer feature-update measurement every ``every`` optimiser steps.

    max_inputs: rows of a layer's input (tokens) kept per measured step; the deltas are
    coordinate RMS over those rows, so a few hundred tokens are plenty.
    """

    def __init__(self, model: nn.Module, every: int = 10, max_inputs: int = 256):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.model, self.every, self.max_inputs = model, int(every), int(max_inputs)
        self.layers, self.skipped = find_lora_layers(model)
        if not self.layers:
            raise ValueError("no linear LoRA layer found in the model (PEFT LoRA or scaling.lora_layers)")
        self.steps_seen = 0
        self.records: list[dict] = []
        self._init = {n: tuple(t.detach().clone() for t in _lora_factors(m)[:2]) for n, m in self.layers.items()}
        self._cache: dict[str, tuple] = {}
        self._initial_recorded: set[str] = set()
        self._handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in self.layers.items()]

    # -- hooks ---------------------------------------------------------------------------
    @property
    def armed(self) -> bool:
        """Whether the coming optimiser step is measured."""
        return self.steps_seen % self.every == 0

    def _hook(self, name: str):
        def keep_input(module, args):
            if not self.armed or name in self._cache or not args:
                return
            A, B, scale = _lora_factors(module)[:3]
            x = args[0].detach()  # (..., n_in) for Linear and Conv1D (fan_in_fan_out) alike
            z = x.reshape(-1, x.shape[-1])[: self.max_inputs]
            self._cache[name] = (z.clone(), A.detach().clone(), B.detach().clone(), scale)
        return keep_input

    # -- measurement ---------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> None:
        """Call once after each ``optimizer.step()``: measures if this step was armed."""
        if self.armed and self._cache:
            for name, (z, A0, B0, scale) in self._cache.items():
                A, B = _lora_factors(self.layers[name])[:2]
                gA = A.grad if A.grad is not None else torch.zeros_like(A)
                gB = B.grad if B.grad is not None else torch.zeros_like(B)
                Ai, Bi = self._init[name]
                values = update_metrics(z, A0[None], B0[None], A.detach()[None], B.detach()[None], gA[None],
                                        gB[None], Ai[None], Bi[None], scale)
                if name not in self._initial_recorded:  # Z_A(0): what the updates are measured against
                    self._initial_recorded.add(name)
                    za0 = float(initial_z_a(z, Ai[None])[0])
                    self.records += [{"step": 0, "layer": name, "metric": "z_a", "value": za0},
                                     {"step": 0, "layer": name, "metric": "dz_a", "value": 0.0}]
                has_grads = A.grad is not None and B.grad is not None
                for metric, value in values.items():
                    if metric.startswith("share") and not has_grads:
                        continue
                    self.records.append({"step": self.steps_seen + 1, "layer": name, "metric": metric,
                                         "value": float(value[0])})
        self._cache.clear()
        self.steps_seen += 1

    def frame(self) -> pd.DataFrame:
        """Tidy table: step (1-based optimiser step; step 0 holds z_a at the initial A on the
        first measured input, as a population records it), layer, metric, value."""
        return pd.DataFrame(self.records, columns=["step", "layer", "metric", "value"])

    def summary(self, skip_first: int = 1) -> pd.DataFrame:
        """Per layer (named by ``short_layer_names``, in the model's order; ``frame()`` keeps the
        full module names) and 'overall': median delta1 (A side) and delta2 (B side) over the
        measured steps after the first ``skip_first`` optimiser steps, which side is lazy
        (LAZY_FACTOR below the other), and ``ratio_multiplier`` = delta1 / delta2: the factor by
        which eta_B / eta_A should grow to balance the two sides, **through eta_A** (eta_A ->
        eta_A / multiplier, eta_B kept).

        Why through eta_A: with Adam, delta2 = dB A z grows like eta_B, and delta1 = B dA z like
        eta_A times B's size. Under Init[1] (B0 = 0, stock PEFT) B itself has grown like eta_B, so
        delta1 / delta2 does not depend on eta_B at all: raising the LoRA+ ratio with A's rate
        fixed leaves the balance where it was (measured in the course's Lesson 6). Under Init[2]
        (B0 = Theta(1)) either rate moves it. Step 1 is skipped because under Init[1]
        delta1 = 0 there exactly.
        """
        f = self.frame()
        f = f[(f.step > skip_first) & f.metric.isin(["delta1", "delta2"])]
        if f.empty:
            return pd.DataFrame(columns=["layer", "delta1", "delta2", "lazy", "ratio_multiplier"])
        per_layer = f.pivot_table(index="layer", columns="metric", values="value", aggfunc="median")
        names = short_layer_names(list(self.layers))
        rows = [self._verdict(names[layer], per_layer.delta1[layer], per_layer.delta2[layer])
                for layer in self.layers if layer in per_layer.index]
        logs = np.log(per_layer[["delta1", "delta2"]].clip(lower=1e-300))
        overall = np.exp(logs.mean())
        rows.append(self._verdict("overall", overall.delta1, overall.delta2))
        return pd.DataFrame(rows)

    @staticmethod
    def _verdict(layer: str, d1: float, d2: float) -> dict:
        if not (d1 > 0 and d2 > 0):
            lazy = "A side frozen" if not d1 > 0 else "B side frozen"
            return {"layer": layer, "delta1": d1, "delta2": d2, "lazy": lazy, "ratio_multiplier": math.nan}
        ratio = d1 / d2
        lazy = "B side" if ratio > LAZY_FACTOR else "A side" if ratio < 1 / LAZY_FACTOR else "balanced"
        return {"layer": layer, "delta1": d1, "delta2": d2, "lazy": lazy, "ratio_multiplier": ratio}

    def close(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def callback(self):
        """A transformers.TrainerCallback that calls ``step()`` after every optimiser step."""
        from transformers import TrainerCallback  # lazy: transformers is an optional dependency (extra "real")

        monitor = self

        class FeatureLearningCallback(TrainerCallback):
            def on_optimizer_step(self, args, state, control, **kwargs):
                monitor.step()

        return FeatureLearningCallback()
