"""The LoRA+ optimiser for real models: B trains ``loraplus_lr_ratio`` times faster than A.

``create_loraplus_optimizer`` has PEFT's signature (``peft.optimizers.create_loraplus_optimizer``)
and fixes the faults that PEFT 0.21.2 and the paper's code share (docs: "LoRA+ in your training loop"):

======================================  ====================================  ==============================
parameter                               PEFT 0.21.2 / paper's code            here
======================================  ====================================  ==============================
lora_A (Linear, Conv)                   lr                                    lr (group ``lora_A``)
lora_B weight                           lr x ratio                            lr x ratio (``lora_B``)
lora_B bias (``lora_bias=True``)        lr x ratio                            lr x ratio, no decay
LoRA embedding A and B                  loraplus_lr_embedding                 the same (``lora_embedding``)
biases, norms of the base model         lr x ratio (every 1-D parameter)      lr, no decay (``other_no_decay``)
``modules_to_save`` head                weight lr, bias lr x ratio (split)    both lr (``other*``)
``weight_decay=``                       ignored (only loraplus_weight_decay)  honoured (either name)
empty groups                            always 4 groups                       never (unless ``group_layout="peft"``)
group names                             none                                  every group has ``name``
group order                             A, embedding, B, B without decay      the same, then ours (below)
======================================  ====================================  ==============================

Group order. PEFT's groups come in a fixed order: A (lr), embedding (loraplus_lr_embedding),
B (lr x ratio), B without decay (lr x ratio, weight decay 0). Ours follow it, then add the
groups PEFT does not have, for parameters that are not LoRA factors:

    lora_A, lora_embedding, lora_B, lora_B_no_decay, other, other_no_decay

Per-layer groups (``lora_A[n_in=64]``, ``lora_B[ratio=8]``) sit after the plain group of
their role, in model order. Two layouts (``group_layout``):

* ``"compact"`` (default): only the groups that have parameters, in the order above. Empty
  groups are left out on purpose: DeepSpeed and strict LR schedulers reject them. Code that
  picks a group should use its ``name`` (``group_learning_rates`` gives {name: lr}).
* ``"peft"``: PEFT's four groups always sit at positions 0..3, empty or not, with PEFT's
  settings: 0 ``lora_A`` (lr, weight_decay), 1 ``lora_embedding`` (loraplus_lr_embedding,
  weight_decay), 2 ``lora_B`` (lr x ratio, weight_decay), 3 ``lora_B_no_decay`` (lr x ratio,
  0). For code that indexes groups by position. Our fixes stay: a parameter joins the group
  of its role (A and non-LoRA parameters: 0, as in PEFT, where a head's weight sits in group
  A; embedding factors: 1; B: 2 or 3) when that group's rate and weight decay are its own,
  and otherwise goes to one of our extra groups, appended at position 4 onwards in the order
  above. With the default ``weight_decay=0`` biases and norms (lr, no decay) therefore share
  group 0 and there are exactly four groups; with a weight decay they go to
  ``other_no_decay`` at position 4 rather than to PEFT's boosted group 3. What the layout
  gives up: the empty groups are back (so not for DeepSpeed or strict schedulers), group 0
  mixes LoRA A with the non-LoRA parameters (a hook that changes group 0 changes both, as in
  PEFT), and code that assumes *exactly* four groups sees a fifth whenever our fixes need
  settings none of the four has (weight decay with biases or norms, ``loraplus_lr_other``,
  per-layer ratios).

Switching in the middle of a run. ``optimizer.load_state_dict`` accepts a state dict saved
from PEFT's ``create_loraplus_optimizer`` for the same model, from our other layout, or from
an older version of this module (groups in another order): the saved groups are matched to
parameters (PEFT's by PEFT's own grouping of the model, ours by group name) and each
parameter's state (Adam moments, step) moves to it. A group with the name and exactly the
parameters of a saved group takes its settings, as torch's own load does (a scheduler's
current rates carry over); every other group, and every group when the state is PEFT's,
keeps the settings this optimiser was built with, so PEFT's boosted rate for a head's bias
never comes back with its state. A scheduler's state is per group: build a new scheduler for
the new optimiser (``last_epoch`` to continue the schedule) rather than loading PEFT's. The
reverse, our checkpoint into PEFT's optimiser: load it into ours over the same model, then
``peft_opt.load_state_dict(state_dict_for(peft_opt, ours))``.

Roles. Every trainable parameter gets one role: ``lora_A``, ``lora_B``, ``lora_embedding``
or ``other``; LoRA factors are found by the name PEFT (and ``scaling.lora_layers``) give their
containers. A ``classify(name, param, module)`` callable overrides the rule for any model (it
returns a role, or None to fall back). Biases, 1-D tensors and the parameters of norm layers
get no weight decay.

Why embeddings share one rate: a LoRA embedding's input is one-hot, so A's update reaches the
output through a single column (dA z = Theta(eta_A), no sum over n coordinates) and the width
argument that makes eta_B / eta_A = Theta(n) for a Linear layer gives Theta(1) here: both
factors train at ``loraplus_lr_embedding`` (default 1e-6, as in PEFT and the paper's code).

Per-layer ratios. ``loraplus_lr_ratio="auto"`` applies the theory layer by layer: efficient
feature learning needs eta_A * n_in = Theta(1) and eta_B = Theta(1) (Adam; n_in is the layer's
fan-in, the sum that dA z runs over). So B keeps ``lr x 16`` everywhere and A's rate becomes
``lr x n_ref / n_in``: lambda = 16 n_in / n_ref, proportional to the layer's width. ``lr`` is
A's rate at the reference fan-in n_ref (``loraplus_reference_width``, default the most common
fan-in among the LoRA layers, so most layers keep exactly lr and 16 lr). ``ratio_fn(module)``
instead gives each LoRA layer's lambda (B at lr x lambda, A at lr).
"""
from __future__ import annotations

import math
import weakref
from collections import Counter
from typing import Callable

import torch
from torch import nn

from scaling.transfer import LORAPLUS, TransferRule

ROLES = ("lora_A", "lora_B", "lora_embedding", "other")
_ROLE_ORDER = ("lora_A", "lora_embedding", "lora_B", "other")  # PEFT's group order, then ours
GROUP_LAYOUTS = ("compact", "peft")
DEFAULT_RATIO = 16.0
EIGHT_BIT_NAMES = ("Adam8bit", "AdamW8bit", "PagedAdam8bit", "PagedAdamW8bit", "Lion8bit", "PagedLion8bit")
_CONTAINERS = {"lora_A": "lora_A", "lora_B": "lora_B", "lora_embedding_A": "lora_embedding",
               "lora_embedding_B": "lora_embedding"}


def default_role(name: str, param: nn.Parameter, module: nn.Module) -> str:
    """LoRA role from the parameter's path: PEFT keeps factors in ``lora_A`` / ``lora_B``
    (Linear, Conv) and ``lora_embedding_A`` / ``_B`` containers, ``scaling.lora_layers``
    names them ``lora_A`` / ``lora_B``; everything else is ``other``."""
    for part in name.split("."):
        if part in _CONTAINERS:
            return _CONTAINERS[part]
    return "other"


def no_decay(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """Biases, other 1-D tensors and the parameters of norm layers are not decayed."""
    return param.ndim < 2 or name.endswith("bias") or "norm" in type(module).__name__.lower()


def _owned_parameters(model: nn.Module):
    """(full name, parameter, owning module) for every trainable parameter, once (a tied
    parameter is listed under its first name)."""
    seen: set[int] = set()
    for mname, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                yield (f"{mname}.{pname}" if mname else pname), param, module


def _lora_layer_of(model: nn.Module, name: str) -> nn.Module | None:
    """The module that owns the LoRA container holding parameter ``name`` (the PEFT LoraLayer
    or a LoRALinear), or None."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in _CONTAINERS:
            return model.get_submodule(".".join(parts[:i])) if i else model
    return None


def _fan_in(layer: nn.Module) -> int | None:
    for attr in ("in_features", "in_channels"):
        if isinstance(getattr(layer, attr, None), int):
            return getattr(layer, attr)
    base = getattr(layer, "base_layer", None)
    if isinstance(base, nn.Module):
        weight = getattr(base, "weight", None)
        if weight is not None and weight.ndim >= 2:
            return int(math.prod(weight.shape[1:]))
    return None


def loraplus_param_groups(model: nn.Module, *, lr: float, loraplus_lr_ratio: float | str = DEFAULT_RATIO,
                          loraplus_lr_embedding: float = 1e-6, weight_decay: float = 0.0,
                          loraplus_lr_other: float | None = None, loraplus_reference_width: int | None = None,
                          classify: Callable | None = None, ratio_fn: Callable | None = None,
                          group_layout: str = "compact") -> list[dict]:
    """The parameter groups of the LoRA+ optimiser (see the module docstring): dicts with
    ``name``, ``params``, ``lr`` and ``weight_decay``, in PEFT's order; with the default
    ``group_layout="compact"`` never empty, with ``"peft"`` PEFT's four groups first, always."""
    if group_layout not in GROUP_LAYOUTS:
        raise ValueError(f"group_layout must be {' or '.join(map(repr, GROUP_LAYOUTS))}, got {group_layout!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    auto = loraplus_lr_ratio == "auto"
    if not auto and not (isinstance(loraplus_lr_ratio, (int, float)) and loraplus_lr_ratio > 0):
        raise ValueError(f"loraplus_lr_ratio must be a positive number or 'auto', got {loraplus_lr_ratio!r}")
    if auto and ratio_fn is not None:
        raise ValueError("give loraplus_lr_ratio='auto' or ratio_fn, not both")
    other_lr = lr if loraplus_lr_other is None else loraplus_lr_other
    ratio = DEFAULT_RATIO if auto else float(loraplus_lr_ratio)

    entries = []
    for name, param, module in _owned_parameters(model):
        role = classify(name, param, module) if classify is not None else None
        role = role or default_role(name, param, module)
        if role not in ROLES:
            raise ValueError(f"classify returned {role!r} for {name}; expected one of {', '.join(ROLES)}")
        entries.append((name, param, module, role))
    if not entries:
        raise ValueError("the model has no trainable parameters")

    layers = {name: _lora_layer_of(model, name) for name, _, _, role in entries if role in ("lora_A", "lora_B")}
    n_ref = None
    if auto:
        fan_ins = {name: _fan_in(layer) if layer is not None else None for name, layer in layers.items()}
        missing = [n for n, f in fan_ins.items() if f is None]
        if missing:
            raise ValueError(f"loraplus_lr_ratio='auto' needs each LoRA layer's fan-in; none found for {missing[0]}")
        n_ref = loraplus_reference_width or Counter(fan_ins.values()).most_common(1)[0][0]

    placed = []  # (group name, role, decayed, lr, weight decay, param), in model order
    for name, param, module, role in entries:
        decay = not no_decay(name, param, module)
        suffix, a_mult, b_ratio = "", 1.0, ratio
        if role in ("lora_A", "lora_B") and auto:
            n_in = _fan_in(layers[name])
            a_mult = n_ref / n_in
            suffix = f"[n_in={n_in}]" if n_in != n_ref else ""
        elif role in ("lora_A", "lora_B") and ratio_fn is not None:
            b_ratio = float(ratio_fn(layers[name]))
            if not b_ratio > 0:
                raise ValueError(f"ratio_fn returned {b_ratio} for {name}; ratios must be positive")
            suffix = f"[ratio={b_ratio:g}]"
        group_lr = {"lora_A": lr * a_mult, "lora_B": lr * b_ratio, "lora_embedding": loraplus_lr_embedding}.get(
            role, other_lr)
        gname = role + ("" if decay else "_no_decay") + suffix
        placed.append((gname, role, decay, group_lr, weight_decay if decay else 0.0, param))

    rank = {}  # group name -> sort key: role in PEFT's order, decayed first, then first appearance
    for i, (gname, role, decay, *_) in enumerate(placed):
        rank.setdefault(gname, (_ROLE_ORDER.index(role), not decay, i))
    groups: dict[str, dict] = {}
    if group_layout == "peft":
        slots = [("lora_A", lr, weight_decay), ("lora_embedding", loraplus_lr_embedding, weight_decay),
                 ("lora_B", lr * ratio, weight_decay), ("lora_B_no_decay", lr * ratio, 0.0)]
        for slot_name, slot_lr, slot_wd in slots:
            groups[slot_name] = {"name": slot_name, "params": [], "lr": slot_lr, "weight_decay": slot_wd}
        for i, (gname, role, decay, group_lr, group_wd, param) in enumerate(placed):
            slot_name, slot_lr, slot_wd = slots[_peft_slot(role, decay)]
            if (group_lr, group_wd) == (slot_lr, slot_wd):
                placed[i] = (slot_name, role, decay, group_lr, group_wd, param)
    for gname, role, decay, group_lr, group_wd, param in placed:
        groups.setdefault(gname, {"name": gname, "params": [], "lr": group_lr, "weight_decay": group_wd})
        groups[gname]["params"].append(param)
    ordered = list(groups.values())
    if group_layout == "peft":  # PEFT's four where PEFT has them, ours after
        return ordered[:4] + sorted(ordered[4:], key=lambda g: rank[g["name"]])
    return sorted(ordered, key=lambda g: rank[g["name"]])


def _peft_slot(role: str, decay: bool) -> int:
    """Position of the PEFT group a parameter of this role belongs to: A 0 (PEFT puts every
    non-LoRA matrix there too), embedding 1, B 2 or, without decay, 3."""
    if role == "lora_B":
        return 2 if decay else 3
    return 1 if role == "lora_embedding" else 0


def create_loraplus_optimizer(model: nn.Module, optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW, *,
                              lr: float, loraplus_lr_ratio: float | str = DEFAULT_RATIO,
                              loraplus_lr_embedding: float = 1e-6, weight_decay: float | None = None,
                              classify: Callable | None = None, ratio_fn: Callable | None = None,
                              loraplus_lr_other: float | None = None, loraplus_reference_width: int | None = None,
                              group_layout: str = "compact", base_width: int | None = None, width: int | None = None,
                              transfer: TransferRule | None = None, **optimizer_kwargs) -> torch.optim.Optimizer:
    """A ``optimizer_cls`` over the LoRA+ parameter groups of ``model``.

    Drop-in for ``peft.optimizers.create_loraplus_optimizer``: ``loraplus_weight_decay`` is
    accepted as another name for ``weight_decay`` (default 0); ``group_layout="peft"`` keeps
    PEFT's four groups at positions 0..3 (module docstring). Any remaining keyword goes to the
    optimiser (betas, eps, ...). ``load_state_dict`` also takes the state of PEFT's optimiser,
    or of our other layout, for the same model. With a bitsandbytes 8-bit optimiser,
    nn.Embedding weights are registered for 32-bit state, as bitsandbytes requires.

    Rates tuned at another width (mup's base shapes): with ``base_width=n0`` and ``width=n``,
    ``lr`` and ``lr x ratio`` are the rates tuned at n0, moved to n by ``transfer`` (a
    ``scaling.transfer.TransferRule``; default LoRA+'s: eta_A ~ 1/n, eta_B held): A trains at
    lr (n/n0)^gA, B at lr x ratio (n/n0)^gB. Only the LoRA factors move; embedding factors
    and non-LoRA parameters keep their rates (loraplus_lr_embedding; lr, or loraplus_lr_other).
    """
    if (base_width is None) != (width is None):
        raise ValueError("give base_width and width together (the width the rates were tuned at, and this one)")
    if base_width is not None:
        lr, loraplus_lr_ratio, loraplus_lr_other = _transferred(lr, loraplus_lr_ratio, loraplus_lr_other,
                                                                base_width, width, transfer or LORAPLUS)
    elif transfer is not None:
        raise ValueError("transfer= needs base_width and width")
    alias = optimizer_kwargs.pop("loraplus_weight_decay", None)
    if weight_decay is not None and alias is not None and weight_decay != alias:
        raise ValueError(f"weight_decay={weight_decay} and loraplus_weight_decay={alias} disagree; give one")
    decay = weight_decay if weight_decay is not None else (alias if alias is not None else 0.0)
    options = dict(lr=lr, loraplus_lr_ratio=loraplus_lr_ratio, loraplus_lr_embedding=loraplus_lr_embedding,
                   weight_decay=decay, loraplus_lr_other=loraplus_lr_other, classify=classify, ratio_fn=ratio_fn,
                   loraplus_reference_width=loraplus_reference_width)
    groups = loraplus_param_groups(model, group_layout=group_layout, **options)
    optimizer = optimizer_cls(groups, lr=lr, **optimizer_kwargs)
    if isinstance(optimizer, torch.optim.Optimizer):
        optimizer.register_load_state_dict_pre_hook(_ForeignStateAdapter(model, options))
    if _is_eight_bit(optimizer_cls, optimizer_kwargs):
        import bitsandbytes  # lazy: optional, and only an 8-bit optimiser class brings us here

        manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                manager.register_module_override(module, "weight", {"optim_bits": 32})
    return optimizer


def _transferred(lr: float, ratio, other: float | None, base_width: int, width: int,
                 rule: TransferRule) -> tuple[float, float, float]:
    """(lr, ratio, lr of the other parameters) at ``width`` for rates tuned at ``base_width``."""
    if not (isinstance(base_width, int) and isinstance(width, int) and base_width > 0 and width > 0):
        raise ValueError(f"base_width and width must be positive integers, got {base_width!r} and {width!r}")
    if isinstance(ratio, str):
        raise ValueError("loraplus_lr_ratio='auto' already sets each layer's ratio from its width; give a number "
                         "with base_width and width")
    eta_a, eta_b = rule.rates(lr, lr * ratio, base_width, width)
    return eta_a, eta_b / eta_a, lr if other is None else other


class _ForeignStateAdapter:
    """``load_state_dict`` pre-hook: a state dict whose groups are not this optimiser's (PEFT's
    four, our other layout, our groups in an older order) is rewritten into this optimiser's
    groups, each parameter's state following the parameter. Holds the model weakly."""

    def __init__(self, model: nn.Module, options: dict):
        self.model = weakref.ref(model)
        self.options = options

    def __call__(self, optimizer: torch.optim.Optimizer, state_dict: dict) -> dict | None:
        saved = state_dict["param_groups"]
        ours = [(g.get("name"), g["params"]) for g in optimizer.param_groups]
        if [(g.get("name"), len(g["params"])) for g in saved] == [(n, len(p)) for n, p in ours]:
            return None  # our own layout: torch loads it as it is
        for source in self._candidates(optimizer, named=all("name" in g for g in saved)):
            params = _match_groups(saved, source)
            if params is not None:
                return remap_state_dict(state_dict, params, optimizer.param_groups)
        sizes = [len(g["params"]) for g in saved]
        if not any("name" in g for g in saved) and _peft_factory() is None:
            raise ValueError(f"optimizer state dict: its {len(saved)} groups have no names, as PEFT's optimizer "
                             "writes them; reading them needs PEFT's grouping, so install peft")
        raise ValueError(f"optimizer state dict: its {len(saved)} groups (sizes {sizes}) match neither this "
                         f"optimizer's groups (sizes {[len(p) for _, p in ours]}) nor PEFT's "
                         "create_loraplus_optimizer for this model; was it saved for another model?")

    def _candidates(self, optimizer, named: bool):
        """Layouts the saved groups may come from, as lists of (group name or None, params)."""
        model = self.model()
        if named:
            yield [(g.get("name"), g["params"]) for g in optimizer.param_groups]
            for layout in GROUP_LAYOUTS if model is not None else ():
                yield [(g["name"], g["params"]) for g in
                       loraplus_param_groups(model, group_layout=layout, **self.options)]
        elif model is not None:
            peft = peft_param_groups(model)
            if peft is not None:
                yield [(None, params) for params in peft]


def _match_groups(saved: list[dict], source: list[tuple]) -> list[list] | None:
    """The parameters of each saved group, taken from ``source`` by group name (saved groups
    with names) or by position (without); None unless every group's size agrees."""
    if all("name" in g for g in saved):
        by_name = dict(source)
        params = [by_name.get(g["name"]) for g in saved]
    else:
        params = [p for _, p in source] if len(source) == len(saved) else None
    if params is None or any(p is None or len(p) != len(g["params"]) for p, g in zip(params, saved)):
        return None
    return params


def peft_param_groups(model: nn.Module) -> list[list[nn.Parameter]] | None:
    """The parameters of the four groups PEFT's ``create_loraplus_optimizer`` builds for
    ``model`` (A, embedding, B, B without decay), read from PEFT itself so that the grouping
    is the installed PEFT's; None if PEFT is not installed or refuses the model."""
    peft_create = _peft_factory()
    if peft_create is None:
        return None

    class GroupRecorder:  # stands in for the optimiser class: keeps the groups PEFT built
        def __init__(self, param_groups, **kwargs):
            self.param_groups = param_groups

    try:
        recorded = peft_create(model, GroupRecorder, lr=1.0, loraplus_lr_ratio=1.0)
    except Exception:  # PEFT's own rule failed on this model: no PEFT layout to map from
        return None
    return [list(g["params"]) for g in recorded.param_groups]


def _peft_factory() -> Callable | None:
    try:
        from peft.optimizers import create_loraplus_optimizer  # lazy: peft is an optional dependency
    except ImportError:
        return None
    return create_loraplus_optimizer


def remap_state_dict(state_dict: dict, saved_params: list[list], groups: list[dict]) -> dict:
    """``state_dict`` (an optimiser's, whose i-th group held the parameters ``saved_params[i]``)
    rewritten for an optimiser with parameter groups ``groups`` over the same parameters. Each
    parameter's state moves to it. A group with the name and exactly the parameters of a saved
    group takes that group's settings, as torch's own load does (a scheduler's current rates
    carry over); every other group keeps its own, so state from another rule (PEFT's) never
    brings that rule's rates with it."""
    position = {id(p): i for i, p in enumerate(p for g in groups for p in g["params"])}
    state, saved_settings = {}, {}
    for saved_group, params in zip(state_dict["param_groups"], saved_params, strict=True):
        for index, param in zip(saved_group["params"], params, strict=True):
            if id(param) not in position:
                raise ValueError("optimizer state dict: it holds a parameter this optimizer does not train")
            if index in state_dict["state"]:
                state[position[id(param)]] = state_dict["state"][index]
        if params:
            saved_settings[saved_group.get("name"), frozenset(map(id, params))] = saved_group
    new_groups = []
    for g in groups:
        settings = {**g, **saved_settings.get((g.get("name"), frozenset(map(id, g["params"]))), {})}
        settings.pop("param_names", None)
        new_groups.append({**settings, "params": [position[id(p)] for p in g["params"]]})
    return {"state": state, "param_groups": new_groups}


def state_dict_for(target: torch.optim.Optimizer, source: torch.optim.Optimizer) -> dict:
    """``source``'s state dict in ``target``'s groups (both over the same parameters), e.g.
    ``peft_opt.load_state_dict(state_dict_for(peft_opt, ours))`` to hand a run to PEFT's
    optimiser. Parameters ``target`` has but ``source`` never stepped start fresh."""
    return remap_state_dict(source.state_dict(), [g["params"] for g in source.param_groups], target.param_groups)


def _is_eight_bit(optimizer_cls, kwargs) -> bool:
    from_bnb = getattr(optimizer_cls, "__module__", "").startswith("bitsandbytes")
    return optimizer_cls.__name__ in EIGHT_BIT_NAMES or (from_bnb and kwargs.get("optim_bits") == 8)


def group_learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{group name: current lr}; unnamed groups are called group<i>."""
    return {g.get("name", f"group{i}"): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
