"""The toy ``mlp`` as a factory (``scaling.factory``): the same network, data and batch as the
toy engine builds, as an ``nn.Module`` with ``scaling.lora_layers.LoRALinear`` layers.

The factory path (``toy_models.module_population``, ``studies.lr_laws.factory``) trains it with the
same Adam as the toy engine (``toy_models.population``), so the two engines must find the same
losses and edges; the tests hold them together. It is also how the factory path's options (the
stacking control) are checked on a model whose theory is known.

    make = MlpFactory(depth=2, batch_size=8)
    task = make(width=256, rank=4, seed=0)       # toy mlp at n = 256, Init[1], seed 0
    lr-laws --factory toy_models.as_factory:mlp_depth2 ...
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from scaling.factory import Task
from scaling.lora_layers import LoRALinear
from toy_models.models import DTYPES, ModelConfig, build_model


class MlpModule(nn.Module):
    """x (N, d) -> h_0 = relu(W_in x) -> h_l = relu(W*_l h_{l-1} + scale B_l A_l h_{l-1}) -> W_out h_L,
    every weight but the LoRA factors frozen."""

    def __init__(self, w_in: torch.Tensor, w_hidden: list[torch.Tensor], w_out: torch.Tensor,
                 factors: list[tuple[torch.Tensor, torch.Tensor]], rank: int, alpha: float | None,
                 alpha_scaling: str):
        super().__init__()
        n, d = w_in.shape
        self.embed = nn.Linear(d, n, bias=False, dtype=w_in.dtype, device=w_in.device)
        self.readout = nn.Linear(n, w_out.shape[0], bias=False, dtype=w_out.dtype, device=w_out.device)
        layers = []
        for w, (a, b) in zip(w_hidden, factors):
            base = nn.Linear(n, n, bias=False, dtype=w.dtype, device=w.device)
            with torch.no_grad():
                base.weight.copy_(w)
            layer = LoRALinear(base, rank=rank, alpha=alpha, alpha_scaling=alpha_scaling)
            with torch.no_grad():
                layer.lora_A.copy_(a)
                layer.lora_B.copy_(b)
            layers.append(layer)
        self.hidden = nn.ModuleList(layers)
        with torch.no_grad():
            self.embed.weight.copy_(w_in)
            self.readout.weight.copy_(w_out)
        self.embed.requires_grad_(False)
        self.readout.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.embed(x))
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.readout(h)


def half_mse(model: nn.Module, batch) -> torch.Tensor:
    """The toy's loss: 0.5 * mean over the batch of (f - y)^2 (one output)."""
    x, y = batch
    return 0.5 * (model(x) - y).pow(2).mean()


@dataclass(frozen=True)
class MlpFactory:
    """``make(width, rank, seed)`` of the toy mlp at this depth, batch and dtype, under Init[1]
    (the factory path starts from Init[1]; Init[2] it makes itself). A picklable callable, so a
    process pool can carry it."""

    depth: int = 2
    batch_size: int | None = 8
    dtype: str = "float32"
    alpha: float | None = None
    alpha_scaling: str = "r"

    def model_config(self, width: int, rank: int) -> ModelConfig:
        return ModelConfig(width=width, rank=rank, alpha=self.alpha, alpha_scaling=self.alpha_scaling, init="1",
                           batch_size=self.batch_size, depth=self.depth, dtype=self.dtype)

    def __call__(self, width: int, rank: int, seed: int, device: torch.device | str | None = None) -> Task:
        try:
            toy = build_model("mlp", self.model_config(width, rank), seed, device or "cpu")
        except ValueError as err:
            raise ValueError(f"toy mlp at width {width}, rank {rank}: {err}") from None
        module = MlpModule(toy.w_in, toy.w_hidden, toy.w_out, toy.lora_init(), rank, self.alpha, self.alpha_scaling)
        assert module.embed.weight.dtype == DTYPES[self.dtype]
        return Task(module, toy.train_batch(1), half_mse)


# References for the command line and for other processes: ``toy_models.as_factory:mlp_depth2``
# is the toy mlp at depth 2 with the width study's batch of 8, float32.
mlp_depth1, mlp_depth2, mlp_depth3, mlp_depth4 = (MlpFactory(depth=d) for d in (1, 2, 3, 4))
mlp_depth2_float64 = MlpFactory(depth=2, dtype="float64")  # the engines' consistency test
