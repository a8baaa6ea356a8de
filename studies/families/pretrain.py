"""What the families share: brief synthetic pretraining with Adam's width rule, the width check,
and the LoRA starting point (Init[1] or Init[2]).

Hidden matrices (2-D parameters outside the embeddings) train at ``lr x base_width / width``,
embeddings, biases and norms at ``lr``: Adam's update of an n x n matrix moves its output
like lr x n, so that rule trains the base alike at every width. With one rate for all widths
the BERT base collapses from n = 512 on (pretraining loss stuck at chance, every token mapped
to one hidden state, encoder gradients ~1e-8, below Adam's eps), and a LoRA fine-tune on it
then measures a dead network, not the width.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from scaling.factory import Task
from scaling.monitor import all_lora_weights

# PEFT asks transformers for a deprecated attribute on every get_peft_model: a line per shard of
# noise in every family run's log, about neither the user's code nor ours.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def pretrain(model: nn.Module, batch: Callable[[], dict], steps: int, lr: float, width: int, base_width: int,
             embedding_names: tuple[str, ...] = ("embeddings",)) -> float:
    """Train every parameter of ``model`` for ``steps`` Adam steps on ``batch()`` (a dict for
    ``model(**batch).loss``); returns the mean loss over the last 10 steps."""
    def hidden(name: str, p: torch.Tensor) -> bool:
        return p.ndim == 2 and not any(e in name for e in embedding_names)

    named = list(model.named_parameters())
    opt = torch.optim.Adam([{"params": [p for n, p in named if hidden(n, p)], "lr": lr * base_width / width},
                            {"params": [p for n, p in named if not hidden(n, p)], "lr": lr}])
    losses = []
    for _ in range(steps):
        loss = model(**batch()).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return float(np.mean(losses[-10:])) if losses else float("nan")


def base_settings(family) -> dict:
    """A family's settings that shape its pretrained base (the cache's key): every dataclass
    field but the family's ``FINETUNE_FIELDS``, with the class's name."""
    skip = set(getattr(family, "FINETUNE_FIELDS", ()))
    return {"class": type(family).__name__,
            **{f.name: getattr(family, f.name) for f in dataclasses.fields(family) if f.name not in skip}}


def check_width(width: int, rank: int, head_size: int = 64) -> None:
    """ValueError unless ``width`` is a positive multiple of the head size and ``rank`` fits."""
    if not isinstance(width, int) or width <= 0 or width % head_size:
        raise ValueError(f"hidden size must be a positive multiple of {head_size} (the head size), got {width}")
    if not isinstance(rank, int) or not 0 < rank <= width:
        raise ValueError(f"rank must be in 1..{width}, got {rank}")


@torch.no_grad()
def apply_init(model: nn.Module, init: str) -> None:
    """Set every LoRA layer's starting factors: "1" leaves PEFT's (A random, B = 0); "2" is the
    LoRA+ paper's code (A = 0, B ~ N(0, 1), drawn from the global generator)."""
    if init == "1":
        return
    if init != "2":
        raise ValueError(f"init must be '1' or '2', got {init!r}")
    for A, B in all_lora_weights(model).values():  # convolutions' LoRA too
        A.zero_()
        B.normal_(0.0, 1.0)


def lora_task(base: nn.Module, targets: tuple[str, ...], rank: int, init: str, seed: int, batch: dict,
              pretrain_loss: float, **lora_options) -> Task:
    """The families' fine-tune Task: a copy of the pretrained ``base`` (same class and config,
    eager attention, which torch.func can batch) with PEFT LoRA of rank r = alpha = ``rank`` on
    ``targets`` (dropout 0; ``lora_options`` e.g. fan_in_fan_out for GPT-2's Conv1D), its
    factors drawn from 10000 + seed (the same for every rate) and set to ``init``."""
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(10_000 + seed)
    model = type(base)(base.config).to(next(base.parameters()).device)
    model.load_state_dict(base.state_dict())
    model.set_attn_implementation("eager")
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets),
                                             lora_dropout=0.0, **lora_options))
    apply_init(model, init)
    return Task(model, batch, info={"pretrain_loss": pretrain_loss})
