"""Linear LoRA models: f(x) = (W* + scale * B A) x over a frozen random W*, teacher-student.

- ``toy``: the paper's Sec. 3.1 model, one output: W* is (1, n), B (1, r), A (r, n); r = 1
  gives f(x) = (W* + b a^T) x.
- ``linear``: a square n x n LoRA layer.
Inputs x ~ N(0, I_n) (coordinates Theta(1)); W* ~ N(0, 1/n) so W* x = Theta(1); the teacher
is W* + U V^T with U ~ N(0, 1), V ~ N(0, 1/n) of the LoRA rank, so targets are Theta(1).
"""
from __future__ import annotations

import torch

from toy_models.models import LoraModel, register


class _LinearLora(LoraModel):
    n_out_is_width = True

    def _build(self, gen: torch.Generator) -> None:
        n = self.width
        n_out = n if self.n_out_is_width else 1
        w_star = torch.randn(n_out, n, generator=gen, dtype=torch.float64) / n ** 0.5
        tgen = self.generator("teacher")
        u = torch.randn(n_out, self.rank, generator=tgen, dtype=torch.float64)
        v = torch.randn(n, self.rank, generator=tgen, dtype=torch.float64) / n ** 0.5
        self.w_star = self.to_device(w_star)
        self.w_teacher = self.to_device(w_star + u @ v.T)
        self.layer_names, self.layer_shapes = ["lora"], [(n_out, n)]
        self._base_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _sample(self, gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.to_device(torch.randn(size, self.width, generator=gen, dtype=torch.float64))
        return x, x @ self.w_teacher.T

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """W* x, (N, n_out); cached for the fixed batch since W* is frozen."""
        if self._base_cache is not None and self._base_cache[0] is x:
            return self._base_cache[1]
        out = x @ self.w_star.T
        self._base_cache = (x, out)
        return out

    def forward(self, x, As, Bs):
        return self.base(x) + self.lora(x, As[0], Bs[0]), [x]


@register
class ToyModel(_LinearLora):
    name = "toy"
    n_out_is_width = False
    default_batch = 8


@register
class LinearModel(_LinearLora):
    name = "linear"
