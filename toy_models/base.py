"""Model configuration and the base class every toy LoRA model derives from.

Every model owns its frozen base, its data and its LoRA initialisation for ONE width and
ONE seed; the LoRA factors themselves are passed in stacked over runs:
A_l is (R, r, n_in_l), B_l is (R, n_out_l, r). Randomness comes from generators seeded by
(seed, width, stream), never from run order, so a run is reproducible on its own. A model with
``nested_draws`` (the toy) draws every width-indexed tensor from ``NestedNormals`` instead: common
random numbers, the draws at width n being the first n of those at any wider width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from toy_models.init import INITS, init_lora_factors

DTYPES = {"float32": torch.float32, "float64": torch.float64}
TEACHERS = ("independent", "b0-aligned")
ALPHA_SCALINGS = ("r", "sqrt-r", "none")  # scale = alpha / r, alpha / sqrt(r), alpha
_STREAMS = {"base": 0, "data": 1, "probe": 2, "test": 3, "lora": 4, "teacher": 5}


def _generator(entropy: list[int]) -> torch.Generator:
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class NestedNormals:
    """Standard normals of one (seed, stream, step) shared across widths: common random numbers.

    ``columns(rows, n)`` is (rows, n), built from column blocks [0, 256), [256, 512), [512, 1024), ...,
    each from its own generator seeded without the width, so the draw at width n is the first n
    columns of the draw at any wider width. Each width's draw has the distribution of an
    independent one; what changes is that a seed's measurements at neighbouring widths share
    their first coordinates. The width exponents are fitted per seed and their intervals
    bootstrap whole seeds (``scaling.gamma``), so the shared noise largely cancels in the slope
    and the interval accounts for it. ``fixed(*shape)``: a draw that does not depend on the width.
    Float64 on the CPU."""

    FIRST_BLOCK = 256

    def __init__(self, seed: int, stream: str, step: int = 0):
        self.entropy = [int(seed), _STREAMS[stream], int(step)]

    def _block(self, index: int) -> torch.Generator:
        return _generator([*self.entropy, 1, index + 1])  # [.., 1, ..]: never a width-seeded entropy

    def columns(self, rows: int, n: int) -> torch.Tensor:
        blocks, lo, hi = [], 0, self.FIRST_BLOCK
        while lo < n:
            block = torch.randn(rows, hi - lo, generator=self._block(len(blocks)), dtype=torch.float64)
            blocks.append(block[:, :min(hi, n) - lo])  # a whole block is drawn, then cut: the same prefix at every n
            lo, hi = hi, 2 * hi
        return torch.cat(blocks, dim=1)

    def fixed(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=_generator([*self.entropy, 2]), dtype=torch.float64)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a toy model at one width (learning rates are per run, not here).

    width: n, the hidden width the theory takes to infinity.
    rank, alpha: LoRA rank r and alpha. The update is scale * B A with scale = alpha / r
      (``alpha_scaling="r"``), alpha / sqrt(r) (``"sqrt-r"``, rsLoRA) or alpha itself
      (``"none"``: a rank-free scale, PEFT's lora_alpha = alpha * r). alpha None means alpha = r
      under "r" and "sqrt-r" (scale 1 and sqrt(r)) and alpha = 1 under "none" (scale 1), so
      a rank study that wants s = alpha / r with alpha FIXED must pass alpha.
    init: LoRA init, one of toy_models.init.INITS (None: the model's own default).
    batch_size: samples per step (None: the model's default); data "fixed" reuses one batch,
      "fresh" draws a new batch every step.
    probe_size: measurement batch (a prefix of the fixed batch, or a separate fixed draw).
    loss_reduction: per-run loss is 0.5 * mean over the batch of the "mean" or "sum" over
      output coordinates of (f - y)^2. It matters for SGD exponents only.
    depth, input_dim: MLP depth (hidden n x n LoRA layers) and input dimension d.
    teacher: linear models only. "independent": the teacher's low-rank output directions U are
      drawn independently of the LoRA init; "b0-aligned": U = B0 (Init[2]'s random B), so the
      target lies in the span A alone can reach, a control for the Init[2] overshoot
      (scaling.theory, "Overshoot").
    b0_scale: multiplies the initial B (Init[2] and "paper"; Init[1]'s B0 = 0 stays 0). An
      intervention knob: it scales the "B0 path" (scaling.theory.first_step_loss_drop) without
      changing any predicted exponent.
    teacher_rank: linear models only: the rank of the teacher's low-rank part (None: the LoRA
      rank). Fixing it keeps the target the same at every LoRA rank (a rank study).
    detach_lora_input: mlp only, the stacking control: every LoRA layer but the first reads a
      detached copy of its input in its LoRA branch, so no gradient reaches the layers below
      through B_l A_l (the frozen W*_l path still carries it). Forward values are unchanged.
    """

    width: int
    rank: int = 4
    alpha: float | None = None
    alpha_scaling: str = "r"
    init: str | None = None
    batch_size: int | None = None
    data: str = "fixed"
    probe_size: int = 64
    loss_reduction: str = "mean"
    depth: int = 2
    input_dim: int | None = None
    dtype: str = "float32"
    teacher: str = "independent"
    b0_scale: float = 1.0
    teacher_rank: int | None = None
    detach_lora_input: bool = False

    @property
    def lora_scale(self) -> float:
        if self.alpha_scaling == "none":
            return 1.0 if self.alpha is None else float(self.alpha)
        alpha = float(self.rank) if self.alpha is None else float(self.alpha)
        return alpha / self.rank if self.alpha_scaling == "r" else alpha / self.rank ** 0.5

    def check(self) -> None:
        """Raise ValueError with a one-line message for an impossible configuration."""
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.rank <= 0:
            raise ValueError(f"rank must be positive, got {self.rank}")
        if self.rank > self.width:
            raise ValueError(f"rank {self.rank} is larger than width {self.width}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be a finite positive number, got {self.alpha}")
        if self.alpha_scaling not in ALPHA_SCALINGS:
            raise ValueError(f"alpha scaling must be one of {', '.join(ALPHA_SCALINGS)}, got {self.alpha_scaling!r}")
        if self.init is not None and self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {', '.join(INITS)}")
        if self.batch_size is not None and self.batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")
        if self.data not in ("fixed", "fresh"):
            raise ValueError(f"data must be 'fixed' or 'fresh', got {self.data!r}")
        if self.loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss reduction must be 'mean' or 'sum', got {self.loss_reduction!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.teacher_rank is not None and not 0 < self.teacher_rank <= self.width:
            raise ValueError(f"teacher rank must be in 1..width, got {self.teacher_rank}")
        if self.teacher == "b0-aligned" and self.teacher_rank not in (None, self.rank):
            raise ValueError("a b0-aligned teacher has the LoRA rank (its directions are B0's columns)")
        if not (math.isfinite(self.b0_scale) and self.b0_scale > 0):
            raise ValueError(f"b0 scale must be a finite positive number, got {self.b0_scale}")


class LoraModel:
    """Frozen base + data for one width and seed. Subclasses set the class defaults and
    implement ``_build``, ``_sample`` and ``forward``."""

    name = ""
    default_init = "1"
    default_batch = 32
    default_input_dim: int | None = None
    nested_draws = False  # True: width-indexed draws come from NestedNormals (common across widths)

    def __init__(self, cfg: ModelConfig, seed: int, device: str | torch.device = "cpu",
                 bases: dict | None = None):
        """bases: a dict the caller keeps across models (see ``base_key``): a model whose
        frozen base is already in it takes that draw instead of drawing it again, and a new
        one is added. At n = 4096 the mlp's two n x n float64 draws cost more CPU than the
        6 training steps of a 4-run population, so a study that trains several inits of one
        (width, seed) draws the base once."""
        cfg.check()
        cfg = replace(cfg, init=cfg.init or self.default_init,
                      batch_size=cfg.batch_size or self.default_batch,
                      input_dim=cfg.input_dim or self.default_input_dim)
        self.cfg, self.seed = cfg, seed
        self.width, self.rank, self.scale = cfg.width, cfg.rank, cfg.lora_scale
        self.device, self.dtype = torch.device(device), DTYPES[cfg.dtype]
        self.layer_names: list[str] = []
        self.layer_shapes: list[tuple[int, int]] = []  # (n_out, n_in) per LoRA layer
        key = self.base_key()
        if bases is not None and key in bases:
            self.__dict__.update(bases[key])  # the frozen base is read-only: shared, not copied
        else:
            before = dict(self.__dict__)
            self._build(self.generator("base"))
            if bases is not None:  # what _build set or replaced
                bases[key] = {k: v for k, v in self.__dict__.items() if k not in before or before[k] is not v}
        self._fixed = self._draw_batch("data", cfg.batch_size)
        if cfg.data == "fixed":
            self.probe_is_train_prefix = True  # the probe is a prefix of the fixed batch (all of it if smaller)
            n_probe = min(cfg.probe_size, cfg.batch_size)
            self.probe = tuple(t[:n_probe] for t in self._fixed)
        else:
            self.probe_is_train_prefix = False
            self.probe = self._draw_batch("probe", cfg.probe_size)

    def base_key(self) -> tuple:
        """What the frozen base (everything ``_build`` sets) depends on: the model, seed, device
        and configuration, except the LoRA init and B0's scale, which enter only ``lora_init``
        (Init[2]'s B0 that the "b0-aligned" teacher copies is drawn from its own stream), and the
        stacking control, which changes only the backward pass."""
        return type(self), self.seed, self.device, replace(self.cfg, init=None, b0_scale=1.0,
                                                           detach_lora_input=False)

    # -- randomness ----------------------------------------------------------------------
    def generator(self, stream: str, step: int = 0) -> torch.Generator:
        """A CPU generator seeded by (seed, width, stream, step): independent of run order."""
        return _generator([int(self.seed), int(self.width), _STREAMS[stream], int(step)])

    def nested(self, stream: str, step: int = 0) -> NestedNormals:
        """The (seed, stream, step) draws shared across widths (models with ``nested_draws``)."""
        return NestedNormals(self.seed, stream, step)

    def _draw_batch(self, stream: str, size: int, step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` samples (x, y) of the stream: data (one per step), probe or test."""
        return self._sample(self.nested(stream, step) if self.nested_draws else self.generator(stream, step), size)

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """Draws happen in float64 on the CPU (identical on every device), then move."""
        return t.to(device=self.device, dtype=self.dtype)

    # -- data ----------------------------------------------------------------------------
    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch (x, y) for optimiser step ``step`` (1-based)."""
        if self.cfg.data == "fixed":
            return self._fixed
        return self._draw_batch("data", self.cfg.batch_size, step)

    def test_batch(self, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        return self._draw_batch("test", size)

    # -- LoRA ----------------------------------------------------------------------------
    def lora_init(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Unbatched initial factors [(A (r, n_in), B (n_out, r))] for every LoRA layer
        (fresh copies of one draw: the draw is deterministic and not free at large n)."""
        if "_lora_init" not in self.__dict__:
            factors = self._lora_factors()
            self._lora_init = [(self.to_device(a), self.to_device(b * self.cfg.b0_scale)) for a, b in factors]
        return [(a.clone(), b.clone()) for a, b in self._lora_init]

    def _lora_factors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The init's [(A, B)] per LoRA layer, float64 on the CPU, before B0's scale."""
        gen = self.generator("lora")
        return [init_lora_factors(self.cfg.init, n_out, n_in, self.rank, gen) for n_out, n_in in self.layer_shapes]

    def lora(self, z: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """LoRA branch scale * B A z. z: (N, n_in) or (R, N, n_in) -> (R, N, n_out)."""
        return self.scale * (z @ A.mT) @ B.mT

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-run loss (R,) from pred (R, N, d_out) and y (N, d_out)."""
        sq = (pred - y) ** 2
        per_sample = sq.mean(-1) if self.cfg.loss_reduction == "mean" else sq.sum(-1)
        return 0.5 * per_sample.mean(-1)

    def loss_weight(self, y: torch.Tensor) -> float:
        """k such that loss = 0.5 * k * sum of squared residuals; the gradient at the output
        is then k * (pred - y). y: (N, d_out)."""
        n_samples, d_out = y.shape
        return 1.0 / (n_samples * d_out) if self.cfg.loss_reduction == "mean" else 1.0 / n_samples

    # -- loss and gradients ----------------------------------------------------------------
    def autograd_loss_and_grads(self, x, y, As, Bs, grads: bool = True):
        """The reference path: ``forward`` + ``loss`` differentiated by autograd.

        x (N, d_in), y (N, d_out); As[l] (R, r, n_in), Bs[l] (R, n_out, r). Returns the loss
        (R,), the gradients [dA_1..dA_L, dB_1..dB_L] of loss.sum() (None if not ``grads``)
        and each LoRA layer's input, (N, n_in) when shared by all runs or (R, N, n_in).
        """
        with torch.enable_grad():
            As = [a.detach().requires_grad_(grads) for a in As]
            Bs = [b.detach().requires_grad_(grads) for b in Bs]
            pred, zs = self.forward(x, As, Bs)
            loss = self.loss(pred, y)
            g = list(torch.autograd.grad(loss.sum(), As + Bs)) if grads else None
        return loss.detach(), g, [z.detach() for z in zs]

    def loss_and_grads(self, x, y, As, Bs, grads: bool = True):
        """Same contract as ``autograd_loss_and_grads``; models override it with a
        hand-written pass that uses the rank-r structure (the autograd path stays the
        reference the tests compare against)."""
        return self.autograd_loss_and_grads(x, y, As, Bs, grads)

    def layer_inputs(self, x, As, Bs) -> list[torch.Tensor]:
        """Each LoRA layer's input for x at the given factors, (N, n_in) or (R, N, n_in)."""
        with torch.no_grad():
            return self.forward(x, As, Bs)[1]

    @property
    def has_fast_path(self) -> bool:
        return type(self).loss_and_grads is not LoraModel.loss_and_grads

    def cached(self, key: str, fn, *inputs: torch.Tensor) -> torch.Tensor:
        """fn(*inputs), remembered for the last few input tuples (by identity): frozen-base
        features of the fixed training, probe and test batches are computed once."""
        cache = self.__dict__.setdefault("_cache", {}).setdefault(key, [])
        for ins, out in cache:
            if len(ins) == len(inputs) and all(a is b for a, b in zip(ins, inputs)):
                return out
        out = fn(*inputs)
        cache.insert(0, (inputs, out))
        del cache[4:]
        return out

    def workspace(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A scratch tensor reused across calls (no fresh multi-MB allocation every step).
        Only for intermediates: nothing returned to the caller may alias it."""
        ws = self.__dict__.setdefault("_workspace", {})
        size = math.prod(shape)
        buf = ws.get(name)
        if buf is None or buf.numel() < size or buf.dtype != like.dtype or buf.device != like.device:
            buf = ws[name] = torch.empty(size, dtype=like.dtype, device=like.device)
        return buf[:size].view(shape)  # a prefix: fewer runs (or samples) reuse the buffer

    # -- to implement --------------------------------------------------------------------
    def _build(self, gen: torch.Generator) -> None:
        raise NotImplementedError

    def _sample(self, gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, As: list[torch.Tensor], Bs: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return predictions (R, N, d_out) and each LoRA layer's input z, (N, n) or (R, N, n)."""
        raise NotImplementedError


def lora_down(z: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Z_A = z A^T per run: z (N, n_in) shared or (R, N, n_in), A (R, r, n_in) -> (R, N, r)
    (a transposed view when z is shared: A z^T is the faster product)."""
    if z.dim() == 2:
        return torch.matmul(A, z.T).mT
    return z @ A.mT


def lora_down_grad(dza: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """dA = dZ_A^T z per run: dza (R, N, r), z (N, n_in) or (R, N, n_in) -> (R, r, n_in)."""
    return torch.matmul(dza.mT, z)
