"""Learning-rate grids: train and test loss for every (eta_A, eta_B) pair, at several widths.

One shard per (width, seed): every pair of the grid is a run, trained together as one
population (blocks of runs when the (runs x samples x n) activations would not fit the memory
budget). Shards are stored as they finish, so an interrupted grid resumes (studies.run.shards). The tidy
table has one row per (width, eta_a, eta_b, seed, step, split); the optima and lambda*(n)
come from ``scaling.optimum``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from scaling.optimum import equal_rate_gap, optimum_table, seed_mean_log_loss
from studies.run.shards import Shard
from studies.run.spec import SpecError, _positive_ints, check_choices
from toy_models.models import MODELS, ModelConfig, build_model
from toy_models.population import Population

GRID_COLUMNS = ["model", "optimizer", "init", "width", "eta_a", "eta_b", "seed", "step", "split", "loss",
                "diverged", "diverged_step"]
# per block of runs, for the (runs x samples x n) activations: each tensor stays below glibc's
# 32 MB mmap ceiling (studies.run.malloc), and smaller blocks stay in cache. On a Fig. 2 shard
# 24 MB took 63 s against 72 s at 96 MB and 161 s at 2 GB (then half of it page faults).
MEMORY_BUDGET_BYTES = 24 * 2 ** 20
MAX_PAIRS = 10 ** 6  # grid points per width: the default grid has 43 x 43 = 1849


def log_grid(low: float, high: float, per_decade: int) -> np.ndarray:
    """low, low * 10^(1/per_decade), ... up to high (inclusive up to rounding)."""
    k = np.arange(int(math.floor(math.log10(high / low) * per_decade + 1e-9)) + 1)
    return low * 10.0 ** (k / per_decade)


@dataclass(frozen=True)
class LrGridSpec:
    """A grid of (eta_A, eta_B) at each width. Defaults: the paper's Fig. 2 (paper-mlp,
    n = 100, full-batch gradient descent, 3 seeds, t = 10 and 200)."""

    model: str = "paper-mlp"
    widths: tuple[int, ...] = (100,)
    eta_a_range: tuple[float, float] = (2e-4, 10.0)
    eta_b_range: tuple[float, float] = (2e-4, 10.0)
    per_decade: int = 9
    steps: int = 200
    eval_at: tuple[int, ...] = (10, 200)
    seeds: tuple[int, ...] = (0, 1, 2)
    optimizer: str = "sgd"
    init: str | None = None
    rank: int | None = None
    batch_size: int | None = None
    data: str = "fixed"
    test_size: int = 100
    dtype: str = "float32"

    def __post_init__(self):
        check_choices(self.model, self.optimizer, self.init)
        object.__setattr__(self, "widths", _positive_ints("widths", self.widths))
        object.__setattr__(self, "eval_at", tuple(sorted(set(_positive_ints("eval-at", self.eval_at)))))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise SpecError(f"seeds must be non-negative integers, got {list(self.seeds)}")
        if not isinstance(self.steps, int) or self.steps <= 0:
            raise SpecError(f"steps must be a positive integer, got {self.steps!r}")
        if max(self.eval_at) > self.steps:
            raise SpecError(f"eval-at step {max(self.eval_at)} is beyond --steps {self.steps}")
        if not isinstance(self.per_decade, int) or self.per_decade <= 0:
            raise SpecError(f"per-decade must be a positive integer, got {self.per_decade!r}")
        for name, (lo, hi) in (("eta-a-range", self.eta_a_range), ("eta-b-range", self.eta_b_range)):
            if not (0 < lo <= hi < math.inf):
                raise SpecError(f"{name} must be LOW:HIGH with 0 < LOW <= HIGH, got {lo}:{hi}")
        pairs = math.prod(math.floor(math.log10(hi / lo) * self.per_decade + 1e-9) + 1
                          for lo, hi in (self.eta_a_range, self.eta_b_range))
        if pairs > MAX_PAIRS:
            raise SpecError(f"per-decade {self.per_decade} makes {pairs:.3g} (eta_A, eta_B) pairs; at most {MAX_PAIRS:g}")
        if self.test_size < 0:
            raise SpecError(f"test size must be non-negative, got {self.test_size}")
        for w in self.widths:
            try:
                self.model_config(w).check()
            except ValueError as err:
                raise SpecError(str(err)) from None
        if self.model == "paper-mlp" and self.init not in (None, "paper"):
            raise SpecError(f"paper-mlp has no base matrix between A and B, so init {self.init!r} never trains; "
                            "use --init paper")

    def model_config(self, width: int) -> ModelConfig:
        rank = self.rank if self.rank is not None else (1 if self.model == "toy" else 4)
        return ModelConfig(width=width, rank=rank, init=self.init, batch_size=self.batch_size, data=self.data,
                           dtype=self.dtype)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(eta_a, eta_b) of every run, each (pairs,): eta_A major, eta_B minor."""
        a, b = np.meshgrid(log_grid(*self.eta_a_range, self.per_decade),
                           log_grid(*self.eta_b_range, self.per_decade), indexing="ij")
        return a.ravel(), b.ravel()

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "LrGridSpec":
        """Inverse of to_dict (a stored run's meta.json)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _block_size(model, runs: int) -> int:
    n_samples = model.cfg.batch_size
    per_run = 4 * n_samples * model.width * torch.finfo(model.dtype).bits // 8
    return max(1, min(runs, MEMORY_BUDGET_BYTES // max(per_run, 1)))


def train_pairs(model, eta_a, eta_b, optimizer: str, steps: int, test_size: int = 0) -> dict[str, np.ndarray]:
    """Loss curves of runs with rates (eta_a[i], eta_b[i]) of one model (one width and seed),
    trained as one population (blocks of runs when the activations would not fit the memory
    budget): {'train': (T+1, runs), 'test': ... (if test_size), 'diverged_step': (runs,)}
    (NaN after divergence, -1 = never diverged)."""
    eta_a, eta_b = np.asarray(eta_a, float), np.asarray(eta_b, float)
    block = _block_size(model, len(eta_a))
    train, test, div = [], [], []
    for start in range(0, len(eta_a), block):
        sl = slice(start, start + block)
        pop = Population(model, eta_a[sl].tolist(), eta_b[sl].tolist(), optimizer)
        traj = pop.run(steps, measure=False, test_size=test_size)
        train.append(traj.metrics["loss"][:, :, 0].numpy())
        if test_size:
            test.append(traj.metrics["test_loss"][:, :, 0].numpy())
        div.append(traj.diverged_step.numpy())
    out = {"train": np.concatenate(train, axis=1), "diverged_step": np.concatenate(div)}
    if test:
        out["test"] = np.concatenate(test, axis=1)
    return out


def train_grid(spec: LrGridSpec, width: int, seed: int, device: torch.device) -> dict[str, np.ndarray]:
    """Loss curves of every pair at one (width, seed): {'train': (T+1, pairs), 'test': ...,
    'diverged_step': (pairs,)} (NaN after divergence, -1 = never diverged)."""
    eta_a, eta_b = spec.pairs()
    model = build_model(spec.model, spec.model_config(width), seed, device)
    return train_pairs(model, eta_a, eta_b, spec.optimizer, spec.steps, spec.test_size)


def lr_grid_shard(spec: LrGridSpec, width: int, seed: int, device: torch.device):
    """One shard: the grid at one (width, seed). Returns (tidy rows at the eval steps, the
    curves of train_grid)."""
    eta_a, eta_b = spec.pairs()
    init = spec.init or MODELS[spec.model].default_init
    c = train_grid(spec, width, seed, device)
    frames = [pd.DataFrame({
        "model": spec.model, "optimizer": spec.optimizer, "init": init, "width": width,
        "eta_a": eta_a, "eta_b": eta_b, "seed": seed, "step": step, "split": split,
        "loss": c[split][step], "diverged": (c["diverged_step"] >= 0) & (c["diverged_step"] <= step),
        "diverged_step": c["diverged_step"]})
        for split in ("train", "test") if split in c for step in spec.eval_at]
    return pd.concat(frames, ignore_index=True)[GRID_COLUMNS], c


def run_lr_grid(spec: LrGridSpec, ctx):
    """Train every shard of the grid the run's store does not hold yet (``ctx``: a
    studies.run.context.RunContext). Returns (tidy table at the eval steps, curves) where curves
    maps (width, seed) to train_grid's dict."""
    jobs = [(w, s) for w in spec.widths for s in spec.seeds]
    shards = [Shard(f"w{w}_s{s}", lr_grid_shard, (spec, w, s, ctx.device)) for w, s in jobs]
    ctx.run(shards, bar="lr-grid")
    table = ctx.load(shards)
    curves = {job: ctx.store.load_arrays(sh.key) for job, sh in zip(jobs, shards)}
    return table, curves


def loss_cube(table: pd.DataFrame, widths, seeds, step: int, split: str) -> np.ndarray:
    """(widths, seeds, pairs) losses at one step and split, pairs in LrGridSpec.pairs order;
    runs diverged by ``step`` are NaN."""
    t = table[(table.step == step) & (table.split == split)]
    loss = t.loss.where(~t.diverged.astype(bool)) if "diverged" in t else t.loss
    t = t.assign(loss=loss)
    cube = []
    for w in widths:
        tw = t[t.width == w]
        cube.append([tw[tw.seed == s].loss.to_numpy() for s in seeds])
    return np.asarray(cube, dtype=float)


def best_pairs(cube_w: np.ndarray, eta_a: np.ndarray, eta_b: np.ndarray) -> dict[str, int]:
    """Indices of the best pair and of the best equal-rate pair by seed-mean log-loss, among
    the trainable pairs (``scaling.optimum.DIVERGENCE_RULE``); cube_w (seeds, pairs). A pair
    kind with no trainable pair is absent."""
    mean = seed_mean_log_loss(cube_w, seed_axis=0)
    equal = np.isclose(eta_a, eta_b, rtol=1e-9)
    masked = np.where(equal, mean, np.inf)
    # a label without any trainable pair is left out
    return {label: int(np.argmin(m)) for label, m in (("best", mean), ("best equal-rate", masked)) if np.isfinite(m).any()}


def curve_frame(spec: LrGridSpec, curves: dict, table: pd.DataFrame, select_split: str = "train") -> pd.DataFrame:
    """Loss at every step of the best pair and the best equal-rate pair of each width (chosen
    at the last eval step on ``select_split``), for every seed and split."""
    eta_a, eta_b = spec.pairs()
    last = max(spec.eval_at)
    rows = []
    for i, w in enumerate(spec.widths):
        cube = loss_cube(table, [w], spec.seeds, last, select_split)[0]
        for label, j in best_pairs(cube, eta_a, eta_b).items():
            for seed in spec.seeds:
                c = curves[(w, seed)]
                for split in [k for k in ("train", "test") if k in c]:
                    rows.append(pd.DataFrame({"width": w, "pair": label, "eta_a": eta_a[j], "eta_b": eta_b[j],
                                              "seed": seed, "split": split, "step": np.arange(spec.steps + 1),
                                              "loss": c[split][:, j]}))
    if not rows:  # every pair of every width diverged
        return pd.DataFrame(columns=["width", "pair", "eta_a", "eta_b", "seed", "split", "step", "loss"])
    return pd.concat(rows, ignore_index=True)


# -- the analysis -------------------------------------------------------------------------------------
def optima_tables(grid: pd.DataFrame, widths, seeds, eta_a, eta_b, steps, splits):
    """(optima table: one row per (step, split, width); fits: one row per (step, split))."""
    optima, fits = [], []
    for step in steps:
        for split in splits:
            cube = loss_cube(grid, widths, seeds, step, split)
            table, fit = optimum_table(cube, eta_a, eta_b, widths)
            table.insert(0, "split", split)
            table.insert(0, "step", step)
            try:
                table["equal_rate_gap"] = equal_rate_gap(cube, eta_a, eta_b)
            except ValueError:
                table["equal_rate_gap"] = np.nan
            means = seed_mean_log_loss(cube)  # a pair that diverged on any seed is never the best
            best = np.argmin(means, axis=1)
            table["argmin_eta_a"], table["argmin_eta_b"] = eta_a[best], eta_b[best]
            table["best_loss"] = np.exp(np.min(means, axis=1))
            optima.append(table)
            fits.append({"step": step, "split": split, **fit})
    return pd.concat(optima, ignore_index=True), pd.DataFrame(fits)


@dataclass
class LrGridTables:
    """What an lr-grid run found. grid, curves: the raw tables (the figures' data); optima: one
    row per (step, split, width); fits: lambda*(n) per (step, split); splits: train and/or test."""

    spec: LrGridSpec
    grid: pd.DataFrame
    curves: pd.DataFrame
    optima: pd.DataFrame
    fits: pd.DataFrame
    splits: list[str]
    n_diverged: int

    def files(self) -> dict[str, pd.DataFrame]:
        return {"optima": self.optima, "lambda_fit": self.fits}


def analyse(spec: LrGridSpec, grid: pd.DataFrame, curves: pd.DataFrame) -> LrGridTables:
    """Optima and lambda*(n) at every evaluated step and split."""
    splits = [s for s in ("train", "test") if s in set(grid.split)]
    pairs = grid[(grid.width == spec.widths[0]) & (grid.seed == spec.seeds[0]) & (grid.step == spec.eval_at[0])
                 & (grid.split == splits[0])]
    optima, fits = optima_tables(grid, list(spec.widths), list(spec.seeds), pairs.eta_a.to_numpy(),
                                 pairs.eta_b.to_numpy(), list(spec.eval_at), splits)
    last = grid[grid.step == max(spec.eval_at)]
    n_div = int(last.groupby(["width", "eta_a", "eta_b", "seed"]).diverged.any().sum())
    return LrGridTables(spec, grid, curves, optima, fits, splits, n_div)
