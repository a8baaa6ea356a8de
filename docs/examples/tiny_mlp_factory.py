"""A complete model factory for the width studies (the documentation's page "Study your own model", docs/own-model.md).

    loraplus-scaling coord-check --factory docs/examples/tiny_mlp_factory.py:make \
        --widths 64,128,256,512 --seeds 4 --schemes loraplus,lora-const --out runs/my-mlp

``make(width, rank, seed)`` returns a ``scaling.factory.Task``: a model with LoRA layers, the
batches it trains on and its loss. Here: an MLP x (16) -> relu(W_in x) -> two hidden layers of
width n, each a frozen n x n base matrix with a LoRA adapter (``scaling.lora_layers``, stock
PEFT initialisation: B = 0) -> a mean-field readout (entries 1/n, so that Theta(1) feature
updates move the output by Theta(1) at every width) -> 1 output, regressing y = sin(sum(x) / 4)
on one fixed batch of 16 samples. The seed fixes the base, the LoRA initialisation and the data.
"""
from __future__ import annotations

import torch
from torch import nn

from scaling.factory import Task
from scaling.lora_layers import add_lora

INPUTS, SAMPLES = 16, 16


class TinyMLP(nn.Module):
    def __init__(self, width: int, dtype=torch.float32):
        super().__init__()
        self.embed = nn.Linear(INPUTS, width, bias=False, dtype=dtype)
        self.hidden1 = nn.Linear(width, width, bias=False, dtype=dtype)
        self.hidden2 = nn.Linear(width, width, bias=False, dtype=dtype)
        self.readout = nn.Linear(width, 1, bias=False, dtype=dtype)
        with torch.no_grad():  # He init keeps hidden coordinates Theta(1) at every width
            self.embed.weight.normal_(0.0, (2.0 / INPUTS) ** 0.5)
            for layer in (self.hidden1, self.hidden2):
                layer.weight.normal_(0.0, (2.0 / width) ** 0.5)
            self.readout.weight.normal_(0.0, 1.0 / width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 16) -> (N, 1)."""
        h = torch.relu(self.embed(x))
        h = torch.relu(self.hidden1(h))
        h = torch.relu(self.hidden2(h))
        return self.readout(h)


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return 0.5 * (model(x) - y).pow(2).mean()


def make(width: int, rank: int, seed: int, dtype=torch.float32) -> Task:
    if width < rank:
        raise ValueError(f"width {width} is below the LoRA rank {rank}")
    torch.manual_seed(seed)
    model = add_lora(TinyMLP(width, dtype), ("hidden1", "hidden2"), rank=rank)  # base frozen, B = 0
    gen = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(SAMPLES, INPUTS, generator=gen, dtype=dtype)
    y = torch.sin(x.sum(-1, keepdim=True) / INPUTS ** 0.5)
    return Task(model, (x, y), mse, readout="mean-field")  # the readout's entries are 1/n
