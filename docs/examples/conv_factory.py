"""An example factory: a small convolutional net with LoRA from PEFT on its convolutions.

    loraplus-scaling lr-laws --factory docs/examples/conv_factory.py:make \
        --widths 64,128,256,512 --seeds 4 --out runs/conv-laws

The model, at width n (channels): 3 x 6 x 6 images -> a 3 x 3 convolution to n channels ->
GELU -> two 3 x 3 convolutions n -> n, each followed by GELU -> the mean over positions -> a
mean-field readout (entries 1/n) -> 1 output, regressing a fixed nonlinear function of the
image on one batch of 16. Frozen kernels are drawn with variance 2 / fan-in (He), so each
layer's activations are Theta(1) at every width. LoRA (PEFT, rank r, alpha = r, stock init:
B = 0) on both n -> n convolutions: a stack of two LoRA layers, one feeding the other. The
monitor measures linear LoRA layers only, so this model serves ``lr-laws --factory`` (which
needs losses), not ``coord-check --factory``.
"""
from __future__ import annotations

import torch
from torch import nn

from scaling.factory import Task

CHANNELS, SIDE, SAMPLES = 3, 6, 16


class SmallConvNet(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.stem = nn.Conv2d(CHANNELS, width, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.readout = nn.Linear(width, 1, bias=False)
        with torch.no_grad():  # He: variance 2 / fan-in keeps GELU activations Theta(1)
            for conv in (self.stem, self.conv1, self.conv2):
                fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
                conv.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            self.readout.weight.normal_(0.0, 1.0 / width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 6, 6) -> (N, 1)."""
        gelu = torch.nn.functional.gelu
        h = gelu(self.conv2(gelu(self.conv1(gelu(self.stem(x))))))
        return self.readout(h.mean(dim=(2, 3)))


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return 0.5 * (model(x) - y).pow(2).mean()


def check(width: int, rank: int) -> None:
    """The widths this model takes (cheap: the studies call it before building anything)."""
    if width < rank:
        raise ValueError(f"width {width} is below the LoRA rank {rank}")


def make(width: int, rank: int, seed: int) -> Task:
    from peft import LoraConfig, get_peft_model  # an optional dependency (pip install 'loraplus-scaling[real]')

    check(width, rank)
    torch.manual_seed(seed)
    model = get_peft_model(SmallConvNet(width), LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                                           target_modules=["conv1", "conv2"]))
    gen = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(SAMPLES, CHANNELS, SIDE, SIDE, generator=gen)
    y = torch.sin(x[:, 0].mean((1, 2)) * 4).unsqueeze(1) + x[:, 1, :4, :4].mean((1, 2)).unsqueeze(1)
    return Task(model, (x, y), mse)


make.check = check
