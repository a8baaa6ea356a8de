"""An example factory: one pre-LayerNorm transformer block with residuals and GELU, LoRA from PEFT.

    loraplus-scaling lr-laws --factory docs/examples/prenorm_block_factory.py:make \
        --widths 64,128,256,512 --seeds 4 --out runs/prenorm-laws

The model, at width n (the residual stream): a sequence of 8 vectors x (8 x 16) -> a linear
embedding to n -> h + attention(LayerNorm(h)) (query, key, value and output n x n, n/32 heads)
-> h + MLP(LayerNorm(h)) (fc1: n -> 2n, GELU, fc2: 2n -> n) -> LayerNorm -> the mean over the
sequence -> a standard readout (PyTorch's default nn.Linear init, entries ~ n^-1/2) -> 1 output,
regressing a fixed nonlinear function of x on one batch of 16 sequences. Every frozen matrix is
drawn with variance 1/fan-in, so every LoRA layer reads Theta(1) coordinates at every width.
LoRA (PEFT, rank r, alpha = r, stock init: B = 0) on query, value and fc1: value and fc1 sit one
behind the other (the attention's output reaches fc1's input), a stack of two LoRA layers.
"""
from __future__ import annotations

import torch
from torch import nn

from scaling.factory import Task

SEQ, INPUTS, SAMPLES, HEAD = 8, 16, 16, 32


class PreNormBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.heads = width // HEAD
        self.embed = nn.Linear(INPUTS, width)
        self.ln1, self.ln2, self.ln_out = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.query, self.key = nn.Linear(width, width), nn.Linear(width, width)
        self.value, self.out = nn.Linear(width, width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)
        self.readout = nn.Linear(width, 1)
        with torch.no_grad():  # variance 1 / fan-in: Theta(1) coordinates at every width
            for layer in (self.embed, self.query, self.key, self.value, self.out, self.fc1, self.fc2):
                layer.weight.normal_(0.0, layer.in_features ** -0.5)
                layer.bias.zero_()

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """h (N, T, n) -> (N, T, n), multi-head softmax attention."""
        N, T, n = h.shape
        q, k, v = (proj(h).view(N, T, self.heads, HEAD).transpose(1, 2) for proj in (self.query, self.key, self.value))
        weights = torch.softmax(q @ k.transpose(-2, -1) / HEAD ** 0.5, dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(N, T, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, T, 16) -> (N, 1)."""
        h = self.embed(x)
        h = h + self.attention(self.ln1(h))
        h = h + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(h))))
        return self.readout(self.ln_out(h).mean(dim=1))


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return 0.5 * (model(x) - y).pow(2).mean()


def check(width: int, rank: int) -> None:
    """The widths this model takes (cheap: the studies call it before building anything)."""
    if width % HEAD or width < rank:
        raise ValueError(f"width {width} must be a multiple of {HEAD} (the head size) and at least the rank {rank}")


def make(width: int, rank: int, seed: int) -> Task:
    from peft import LoraConfig, get_peft_model  # an optional dependency (pip install 'loraplus-scaling[real]')

    check(width, rank)
    torch.manual_seed(seed)
    model = get_peft_model(PreNormBlock(width), LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                                           target_modules=["query", "value", "fc1"]))
    gen = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(SAMPLES, SEQ, INPUTS, generator=gen)
    y = torch.tanh(x[:, :, :4].sum(-1).mean(-1, keepdim=True)) + 0.5 * torch.sin(x[:, 0, :1])
    return Task(model, (x, y), mse, readout="standard")  # nn.Linear's default init: entries ~ n^-1/2


make.check = check
