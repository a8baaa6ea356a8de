"""Width studies on any model: the factory contract.

A factory is a callable ``make(width, rank, seed)`` (optionally also taking ``device``) that
returns a ``Task``: the model at hidden size ``width`` with LoRA layers of rank ``rank``
(PEFT's or ``scaling.lora_layers``), the batches it trains on and its loss. ``seed`` fixes
everything random in it (the base model, the LoRA initialisation, the data), so that the
studies can compare runs that differ only in their learning rates.

    def make(width, rank, seed):
        torch.manual_seed(seed)
        model = add_lora(MyNet(width), ("hidden",), rank=rank)
        x, y = ...                                   # one fixed batch
        return Task(model, (x, y), lambda model, b: F.mse_loss(model(b[0]), b[1]))

Rules the studies rely on:
- Only the model's trainable parameters train (PEFT freezes everything but the adapters);
  LoRA A factors at eta_A, B factors at eta_B, anything else trainable at eta_A (the roles of
  ``scaling.loraplus``).
- ``batches`` is one batch (used at every step) or a callable ``batches(step)`` giving the
  batch of optimiser step ``step`` (1-based). A batch is a tensor or a tuple / list / dict of
  tensors; the same shapes at every step.
- ``loss_fn(model, batch)`` returns the scalar loss; without it the batch must be a dict and
  ``model(**batch).loss`` is used (Hugging Face style).
- The forward pass draws no random numbers (dropout 0): runs must differ only in their rates.
- A factory that cannot build some width raises ``ValueError`` saying why; a factory whose
  ``make`` is expensive (pretraining) may offer ``make.check(width, rank)`` that raises the
  same error cheaply. Everything is checked before a study writes anything.

A factory is named on the command line as ``package.module:make`` or ``path/to/file.py:make``,
or by a built-in family name (``studies.families``).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scaling.monitor import all_lora_weights, find_lora_layers


class FactoryError(ValueError):
    """A factory that cannot be used; the message names the factory and what is wrong."""


@dataclass
class Task:
    """What ``make(width, rank, seed)`` returns.

    model: an nn.Module with LoRA layers; batches: one batch or ``batches(step)`` (step 1-based);
    loss_fn: ``loss_fn(model, batch) -> scalar tensor`` (None: ``model(**batch).loss``);
    info: numbers about this model that the study keeps as columns of its rows (e.g. the
    base's pretraining loss); readout: how the output reads the last features, which moves the
    predicted learning-rate edges (``scaling.laws``): "mean-field" (output weights of size 1/n:
    a Theta(1) change of every feature moves the output by Theta(1)), "standard" (size n^-1/2,
    PyTorch's default nn.Linear init: the same change moves it by n^1/2), None (not declared:
    the laws are predicted as for a mean-field readout, and the report says so).
    """

    model: nn.Module
    batches: Any
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None
    info: dict[str, float] = field(default_factory=dict)  # numbers kept with the runs' rows
    readout: str | None = None

    def batch(self, step: int):
        """The batch of optimiser step ``step`` (1-based); the fixed batch if there is one."""
        return self.batches(step) if callable(self.batches) else self.batches

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(model, batch)
        return model(**batch).loss

    @property
    def fixed_batch(self) -> bool:
        return not callable(self.batches)


READOUTS = ("mean-field", "standard", None)


def as_task(output, name: str = "the factory") -> Task:
    """A Task from what a factory returned: a Task or a tuple (model, batches[, loss_fn])."""
    if isinstance(output, Task):
        task = output
    elif isinstance(output, tuple) and len(output) in (2, 3):
        task = Task(*output)
    else:
        raise FactoryError(f"{name} returned {type(output).__name__}; expected scaling.factory.Task "
                           "or a tuple (model, batches[, loss_fn])")
    if not isinstance(task.model, nn.Module):
        raise FactoryError(f"{name} returned a model of type {type(task.model).__name__}, not an nn.Module")
    if task.loss_fn is not None and not callable(task.loss_fn):
        raise FactoryError(f"{name}: loss_fn must be callable(model, batch)")
    if task.readout not in READOUTS:
        raise FactoryError(f"{name}: readout must be one of {', '.join(map(str, READOUTS))}, got {task.readout!r}")
    return task


@dataclass(frozen=True)
class Factory:
    """A resolved factory: the callable, the name it was given by (``name``), a fingerprint of
    its source file (so that a changed factory file does not resume old shards) and, when it
    was named by a reference, that reference (``ref``: how another process loads it again)."""

    make: Callable
    name: str
    fingerprint: str = ""
    ref: str | None = None

    def __call__(self, width: int, rank: int, seed: int, device: torch.device | None = None) -> Task:
        kwargs = {"device": device} if device is not None and _takes_device(self.make) else {}
        return as_task(self.make(width, rank, seed, **kwargs), f"factory {self.name}")

    def __reduce__(self):
        # A factory loaded from a file lives in a module other processes do not have: they
        # load it again from its reference.
        if self.ref is not None:
            return _reload, (self.ref, self.name)
        return Factory, (self.make, self.name, self.fingerprint, None)


def _reload(ref: str, name: str) -> "Factory":
    factory = load_factory(ref)
    return Factory(factory.make, name, factory.fingerprint, factory.ref)


def _takes_device(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "device" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _fingerprint(path: str | None) -> str:
    if not path:
        return ""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def load_factory(ref, aliases: Mapping[str, str] | None = None) -> Factory:
    """Resolve ``ref``: a callable, a name in ``aliases`` (name -> reference), a reference
    ``package.module:attr`` or ``path/to/file.py:attr``. FactoryError (one line, naming the
    factory) when it cannot be loaded or cannot be called as make(width, rank, seed)."""
    if isinstance(ref, Factory):
        return ref
    if callable(ref):
        name = f"{getattr(ref, '__module__', '?')}:{getattr(ref, '__qualname__', type(ref).__name__)}"
        module = sys.modules.get(getattr(ref, "__module__", "") or "")
        return _checked(Factory(ref, name, _fingerprint(getattr(module, "__file__", None))))
    aliases = aliases or {}
    if not isinstance(ref, str) or not ref.strip():
        raise FactoryError(f"--factory: expected MODULE:NAME, FILE.py:NAME or a family name, got {ref!r}")
    name = ref.strip()
    if name in aliases:
        factory = load_factory(aliases[name])
        return Factory(factory.make, name, factory.fingerprint, factory.ref)
    target, sep, attr = name.rpartition(":")
    if not sep or not target or not attr:
        known = f" (or a family name: {', '.join(aliases)})" if aliases else ""
        raise FactoryError(f"--factory {name}: expected MODULE:NAME or FILE.py:NAME{known}")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise FactoryError(f"--factory {name}: no such file {target}")
        module_name = "loraplus_factory_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the user's file: any error in it is an import failure
            sys.modules.pop(module_name, None)
            raise FactoryError(f"--factory {name}: importing {target} failed ({type(err).__name__}: {err})") from None
        source, canonical = str(path), f"{path.resolve()}:{attr}"
    else:
        try:
            module = importlib.import_module(target)
        except Exception as err:
            raise FactoryError(f"--factory {name}: cannot import {target} ({type(err).__name__}: {err})") from None
        source, canonical = getattr(module, "__file__", None), name
    if not hasattr(module, attr):
        raise FactoryError(f"--factory {name}: {target} has no attribute {attr!r}")
    make = getattr(module, attr)
    if not callable(make):
        raise FactoryError(f"--factory {name}: {attr} is a {type(make).__name__}, not callable")
    return _checked(Factory(make, name, _fingerprint(source), canonical))


def _checked(factory: Factory) -> Factory:
    """Refuse a callable that cannot be called as make(width, rank, seed)."""
    try:
        inspect.signature(factory.make).bind(64, 4, 0)
    except TypeError as err:
        raise FactoryError(f"factory {factory.name}: cannot be called as make(width, rank, seed) ({err})") from None
    except ValueError:
        pass  # no signature to inspect (a builtin): the call itself will tell
    return factory


@dataclass
class TaskShape:
    """What a factory's model looks like to the studies (``inspect_task``).

    layers: the LoRA layers the monitor measures, in forward order; skipped: LoRA layers it
    cannot (embeddings, convolutions); init: "1" (every B = 0), "2" (every A = 0) or "zero";
    upstream: LoRA layer (measured or a convolution) -> the other LoRA layers whose output
    reaches its input; chain: the most LoRA layers on one path through the model (a stack of
    L LoRA layers feeding each other: L).
    """

    layers: list[str]
    skipped: list[str]
    init: str
    upstream: dict[str, list[str]]

    @property
    def chain(self) -> int:
        """The longest chain of LoRA layers feeding each other (1: no LoRA layer feeds another)."""
        depth: dict[str, int] = {}
        for name in self.upstream:  # forward order: every upstream layer comes first
            depth[name] = 1 + max((depth.get(u, 1) for u in self.upstream[name]), default=0)
        return max(depth.values(), default=1)


@torch.no_grad()
def inspect_task(task: Task, name: str = "the factory") -> TaskShape:
    """Check a factory's Task and map its LoRA layers (FactoryError when it is unusable).

    The loss on the first batch must be a finite scalar. Which LoRA layers feed which is
    found by perturbing one layer's factors at a time and seeing whose input changes (a
    forward pass each): a layer with no LoRA layer upstream reads the base model's own
    features, whatever the learning rates do."""
    model = task.model
    layers, skipped = find_lora_layers(model)
    factors = all_lora_weights(model)
    if not factors:
        extra = f" (unusable: {', '.join(skipped[:3])})" if skipped else ""
        raise FactoryError(f"{name}: the model has no LoRA layer (PEFT LoRA on Linear, Conv or GPT-2 Conv1D, "
                           f"or scaling.lora_layers.LoRALinear){extra}")
    modules = dict(model.named_modules())
    trained = {n: modules[n] for n in factors}
    zero_a = {n: not bool(A.any()) for n, (A, B) in factors.items()}
    zero_b = {n: not bool(B.any()) for n, (A, B) in factors.items()}
    if all(zero_b.values()) and not any(zero_a.values()):
        init = "1"
    elif all(zero_a.values()) and not any(zero_b.values()):
        init = "2"
    elif all(zero_a.values()) and all(zero_b.values()):
        init = "zero"
    else:
        raise FactoryError(f"{name}: the LoRA layers start neither all with B = 0 (Init[1]) nor all with A = 0 "
                           "(Init[2]); the theory predicts those two (and both zero)")
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda m, args, n=n: seen.__setitem__(n, args[0].detach().clone()))
             for n, m in trained.items()]
    batch = task.batch(1)
    try:
        try:
            loss = task.loss(model, batch)
        except Exception as err:
            raise FactoryError(f"{name}: the loss on the first batch failed ({type(err).__name__}: {err})") from None
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not bool(torch.isfinite(loss).all()):
            raise FactoryError(f"{name}: the loss must be a finite scalar tensor, got {loss!r:.80}")
        order = list(seen)  # forward order
        base = dict(seen)
        upstream = {n: [] for n in order}
        gen = torch.Generator().manual_seed(0)
        for j in order:
            A, B = factors[j]
            saved = A.clone(), B.clone()
            A.add_(1e-2 * torch.randn(A.shape, generator=gen, dtype=A.dtype).to(A.device))
            B.add_(1e-2 * torch.randn(B.shape, generator=gen, dtype=B.dtype).to(B.device))
            seen.clear()
            task.loss(model, batch)
            A.copy_(saved[0])
            B.copy_(saved[1])
            for i in order:
                if i != j and i in seen and not torch.equal(seen[i], base[i]):
                    upstream[i].append(j)
    finally:
        for h in hooks:
            h.remove()
    return TaskShape([n for n in order if n in layers], skipped, init, upstream)
