"""LoRA MLPs.

``mlp``: x (d) -> h_0 = relu(W_in x) -> h_l = relu((W*_l + scale B_l A_l) h_{l-1}), l = 1..L
-> f = W_out h_L. W_in ~ N(0, 2/d) and W*_l ~ N(0, 2/n) (He: hidden coordinates Theta(1));
W_out ~ N(0, 1/n^2) (mean-field readout, so an efficient Theta(1) feature update moves the
output by Theta(1), not Theta(sqrt n)). Target y = sin(sum(x)/sqrt(d)), independent of n.

``paper-mlp``: the LoRA+ paper's Fig. 2 model f(x) = W_out relu(B A relu(W_in x)) with no
base matrix between A and B; d = 5, X ~ N(0, I_d), Y = sin(mean(X)), 1000 training samples
(full batch), 100 test samples; W_in ~ N(0, 1), W_out ~ N(0, 1/n), A ~ N(0, 1/n),
B ~ N(0, 1) (init "paper", as printed in the paper).
"""
from __future__ import annotations

import torch

from toy_models.models import LoraModel, register


@register
class MlpModel(LoraModel):
    name = "mlp"
    default_input_dim = 16
    has_hidden_base = True

    def _build(self, gen: torch.Generator) -> None:
        n, d, depth = self.width, self.cfg.input_dim, self.cfg.depth
        self.w_in = self.to_device(self._w_in(gen, n, d))
        self.w_hidden = [self.to_device(torch.randn(n, n, generator=gen, dtype=torch.float64)
                                        * (2.0 / n) ** 0.5)
                         for _ in range(depth)] if self.has_hidden_base else [None] * depth
        self.w_out = self.to_device(self._w_out(gen, n))
        self.layer_names = [f"hidden{l + 1}" for l in range(depth)]
        self.layer_shapes = [(n, n)] * depth
        self._h0_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _w_in(self, gen, n, d):
        return torch.randn(n, d, generator=gen, dtype=torch.float64) * (2.0 / d) ** 0.5

    def _w_out(self, gen, n):
        return torch.randn(1, n, generator=gen, dtype=torch.float64) / n

    def _sample(self, gen, size):
        x = torch.randn(size, self.cfg.input_dim, generator=gen, dtype=torch.float64)
        y = torch.sin(x.sum(-1, keepdim=True) / self.cfg.input_dim ** 0.5)
        return self.to_device(x), self.to_device(y)

    def input_features(self, x: torch.Tensor) -> torch.Tensor:
        """relu(W_in x), (N, n); cached for the fixed batch since W_in is frozen."""
        if self._h0_cache is not None and self._h0_cache[0] is x:
            return self._h0_cache[1]
        h0 = torch.relu(x @ self.w_in.T)
        self._h0_cache = (x, h0)
        return h0

    def forward(self, x, As, Bs):
        h = self.input_features(x)
        inputs = []
        for w, A, B in zip(self.w_hidden, As, Bs):
            inputs.append(h)
            pre = self.lora(h, A, B)
            if w is not None:
                pre = pre + h @ w.T
            h = torch.relu(pre)
        return h @ self.w_out.T, inputs


@register
class PaperMlpModel(MlpModel):
    name = "paper-mlp"
    default_init = "paper"
    default_batch = 1000
    default_input_dim = 5
    has_hidden_base = False

    def __init__(self, cfg, seed, device="cpu"):
        from dataclasses import replace
        super().__init__(replace(cfg, depth=1), seed, device)

    def _w_in(self, gen, n, d):
        return torch.randn(n, d, generator=gen, dtype=torch.float64)

    def _w_out(self, gen, n):
        return torch.randn(1, n, generator=gen, dtype=torch.float64) / n ** 0.5

    def _sample(self, gen, size):
        x = torch.randn(size, self.cfg.input_dim, generator=gen, dtype=torch.float64)
        return self.to_device(x), self.to_device(torch.sin(x.mean(-1, keepdim=True)))

    def test_batch(self, size: int = 100):
        return super().test_batch(size)
