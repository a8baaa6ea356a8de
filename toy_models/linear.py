"""Linear LoRA models: f(x) = (W* + scale * B A) x over a frozen random W*, teacher-student.

- ``toy``: the paper's Sec. 3.1 model, one output: W* is (1, n), B (1, r), A (r, n); r = 1
  gives f(x) = (W* + b a^T) x.
- ``linear``: a square n x n LoRA layer.
Inputs x ~ N(0, I_n) (coordinates Theta(1)); W* ~ N(0, 1/n) so W* x = Theta(1); the teacher
is W* + U V^T with U ~ N(0, 1), V ~ N(0, 1/n) of the LoRA rank (or ``teacher_rank``), so
targets are Theta(1).
With ``teacher="b0-aligned"`` U is Init[2]'s B0 itself (same distribution, but inside the span
that training A alone can reach).
"""
from __future__ import annotations

import torch

from toy_models.base import LoraModel
from toy_models.init import choose_factors, init_lora_factors


class _LinearLora(LoraModel):
    n_out_is_width = True

    @property
    def n_out(self) -> int:
        return self.width if self.n_out_is_width else 1

    def _build(self, gen: torch.Generator) -> None:
        w_star, u, v = self._base_draws(gen, self.cfg.teacher_rank or self.rank)
        if self.cfg.teacher == "b0-aligned":  # the B draw of Init[2], whatever init is trained
            u = self._random_factors()[1]
        self.w_star = self.to_device(w_star)
        self.w_teacher = self.to_device(w_star + u @ v.T)
        self.layer_names, self.layer_shapes = ["lora"], [(self.n_out, self.width)]

    def _base_draws(self, gen: torch.Generator, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """W* (n_out, n) ~ N(0, 1/n) from ``gen``; the teacher's U (n_out, k) ~ N(0, 1) and V (n, k) ~ N(0, 1/n)."""
        n = self.width
        w_star = torch.randn(self.n_out, n, generator=gen, dtype=torch.float64).div_(n ** 0.5)
        tgen = self.generator("teacher")
        u = torch.randn(self.n_out, k, generator=tgen, dtype=torch.float64)
        v = torch.randn(n, k, generator=tgen, dtype=torch.float64) / n ** 0.5
        return w_star, u, v

    def _random_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A ~ N(0, 1/n) (r, n) and B ~ N(0, 1) (n_out, r), both drawn whatever the init."""
        return init_lora_factors("paper", self.n_out, self.width, self.rank, self.generator("lora"))

    def _lora_factors(self):
        return [choose_factors(self.cfg.init, *self._random_factors())]

    def _inputs(self, gen: torch.Generator, size: int) -> torch.Tensor:
        """x (size, n) ~ N(0, I), float64 on the CPU."""
        return torch.randn(size, self.width, generator=gen, dtype=torch.float64)

    def _sample(self, gen, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.to_device(self._inputs(gen, size))
        return x, x @ self.w_teacher.T

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """W* x, (N, n_out); cached for the fixed batches since W* is frozen."""
        return self.cached("base", lambda x: x @ self.w_star.T, x)

    def forward(self, x, As, Bs):
        return self.base(x) + self.lora(x, As[0], Bs[0]), [x]

    def layer_inputs(self, x, As, Bs):
        return [x]  # the input itself: no forward pass needed

    def loss_and_grads(self, x, y, As, Bs, grads: bool = True):
        """Hand-written pass (contract: ``LoraModel.autograd_loss_and_grads``).

        With E = W* x + scale B A x - y (R, N, n_out) and k the loss weight:
        dB = scale k E^T Z_A and dZ_A = scale k E B, dA = dZ_A^T x; W* x - y is cached.
        Products are taken in the layouts MKL is fastest at (r-row outputs), and E lives
        in a reused buffer: at this size every pass and every fresh page counts.
        """
        A, B = As[0], Bs[0]
        R = A.shape[0]
        s, k = self.scale, self.loss_weight(y)
        sBT = B.mT * s                                              # (R, r, n_out)
        zaT = torch.matmul(A, x.T)                                  # Z_A^T, (R, r, N)
        resid0 = self.cached("resid0", lambda x, y: self.base(x) - y, x, y)  # (N, n_out)
        E = torch.baddbmm(resid0, zaT.mT, sBT,
                          out=self.workspace("E", (R, *resid0.shape), A))    # (R, N, n_out)
        loss = torch.linalg.vector_norm(E, dim=(-2, -1)).square_().mul_(0.5 * k)
        if not grads:
            return loss, None, [x]
        dBT = torch.bmm(zaT, E).mul_(s * k)                         # dB^T, (R, r, n_out)
        dzaT = torch.bmm(sBT, E.mT).mul_(k)                         # dZ_A^T, (R, r, N)
        return loss, [torch.matmul(dzaT, x), dBT.mT], [x]


class ToyModel(_LinearLora):
    """The paper's one-output toy. Its width-indexed draws (x's coordinates, W*, V, A's columns) are
    common across widths (``nested_draws``, ``toy_models.base.NestedNormals``): the model is cheap
    enough to run to n = 65536, where its heavy-tailed measurements need many seeds, and shared
    draws narrow the slope intervals as a few times more independent seeds would (validate --quick:
    the toy's INCONCLUSIVE checks 82 -> 54 of 266 at 48 seeds; 192 independent seeds gave 56)."""

    name = "toy"
    n_out_is_width = False
    default_batch = 8
    nested_draws = True

    def _base_draws(self, gen, k: int):
        """As ``_LinearLora._base_draws``, from the nested draws (``gen``, the width-seeded base stream, is unused)."""
        n = self.width
        teacher = self.nested("teacher")
        return (self.nested("base").columns(1, n) / n ** 0.5, teacher.fixed(1, k), teacher.columns(k, n).T / n ** 0.5)

    def _random_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        draws = self.nested("lora")
        return draws.columns(self.rank, self.width) / self.width ** 0.5, draws.fixed(1, self.rank)

    def _inputs(self, draws, size: int) -> torch.Tensor:
        return draws.columns(size, self.width)  # draws: the stream's NestedNormals (``LoraModel._draw_batch``)


class LinearModel(_LinearLora):
    name = "linear"
