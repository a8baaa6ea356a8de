"""LoRA initialisation schemes.

Shapes: A is (r, n_in) (input side, PEFT ``lora_A``), B is (n_out, r) (output side, ``lora_B``).

- ``1``     Init[1]: B = 0, A ~ N(0, 1/n_in)  (Hu et al., stock PEFT)
- ``2``     Init[2]: A = 0, B ~ N(0, 1)       (the LoRA+ paper's code default)
- ``zero``  both zero: every LoRA gradient is zero, training never leaves the saddle
- ``paper`` both random, A ~ N(0, 1/n_in), B ~ N(0, 1): the paper's Fig. 2 toy model as printed
"""
from __future__ import annotations

import torch

INITS = ("1", "2", "zero", "paper")


def init_lora_factors(init: str, n_out: int, n_in: int, rank: int,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return float64 CPU tensors A (rank, n_in) and B (n_out, rank) for one LoRA layer."""
    a_random = torch.randn(rank, n_in, generator=gen, dtype=torch.float64) / n_in ** 0.5
    b_random = torch.randn(n_out, rank, generator=gen, dtype=torch.float64)
    # Both draws happen for every init so that the random stream (and therefore the base,
    # the data and the other layers) is the same whichever init is chosen.
    return choose_factors(init, a_random, b_random)


def choose_factors(init: str, a_random: torch.Tensor, b_random: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of ``init`` from the random draws A ~ N(0, 1/n_in) (rank, n_in) and B ~ N(0, 1) (n_out, rank)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    zeros_a = torch.zeros_like(a_random)
    zeros_b = torch.zeros_like(b_random)
    if init == "1":
        return a_random, zeros_b
    if init == "2":
        return zeros_a, b_random
    if init == "zero":
        return zeros_a, zeros_b
    return a_random, b_random
