"""Learning-rate scaling laws: the edges of the trainable region and the optimum at every width
and rank, measured on the shard store and judged against ``scaling.laws``.

A *configuration* (model, optimizer, init, LoRA scale) is measured along *slices* of
(eta_A, eta_B) (``SLICES``; the held quantity scales as held * (n / n0)^held_n * (r / r0)^held_r):

- ``b-edge``: eta_B varied at a held eta_A;     - ``a-edge``: eta_A varied at a held eta_B;
- ``one-rate``: eta_A = eta_B varied;            - ``ratio``: eta_A varied at eta_B = lambda eta_A.

One shard is one (configuration, width, rank, seed). Its search runs in rounds, each round ONE
population holding every candidate of every slice: round 0 is a log grid of ``per_decade``
rates over each slice's range; every later round puts ``refine_points`` rates inside each
(slice, criterion)'s current edge bracket (``scaling.edges``), so the bracket shrinks by a
factor ``refine_points + 1`` in log per round. Default: 4 per decade, then 2 rounds of 3: a
bracket of 10^(1/64) (3.7%) for about 8 runs per decade of range plus 6 per edge and criterion,
where a fine log grid of that resolution would cost 64 runs per decade. ``profile`` slices
(ratio slices at width-free lambdas) are grid-only: they give the best loss at each ratio
(``scaling.profile``).

Each shard returns one row per run: rates, diverged step, loss at step 0 and at every
criterion's T. Edges, fits, corner, optima and verdicts are computed from those rows
(``edge_table``, ``judge``), so a stored run can be re-analysed.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from scaling.edges import Criterion, locate_edge, refine
from studies.lr_grid import log_grid, train_pairs
from studies.run.shards import Shard, ShardStore, run_shards
from studies.run.spec import SpecError, _positive_ints, check_choices
from toy_models.models import MODELS, ModelConfig, build_model

SLICES = ("b-edge", "a-edge", "one-rate", "ratio")
ALPHA_SCALINGS = ("r", "sqrt-r", "none")
LAWS = ("edge", "corner", "optimum", "profile")
# The value of each setting that every catalogue configuration of a width ("n") or rank ("r")
# study uses, which its label therefore leaves unsaid (batch: under Adam; gradient descent runs
# at the model's own batch). alpha None: alpha = r; teacher rank None: the LoRA rank.
HOUSE = {"n": {"batch": 8, "alpha": None, "teacher_rank": None},
         "r": {"batch": 8, "alpha": 1.0, "teacher_rank": 4}}


def _or(value, default: str) -> str:
    return default if value is None else f"{value:g}"
ROLES = ("edge", "profile")
VARIED = {"b-edge": "eta_b", "a-edge": "eta_a", "one-rate": "eta", "ratio": "eta_a"}
HELD = {"b-edge": "eta_a", "a-edge": "eta_b", "one-rate": None, "ratio": "lambda"}


def check_range(name: str, lo: float, hi: float) -> None:
    """SpecError for a rate range that is empty, inverted or not positive and finite."""
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float))):
        raise SpecError(f"{name} must be two numbers LOW:HIGH, got {lo!r}:{hi!r}")
    if not (0 < lo and math.isfinite(hi)):
        raise SpecError(f"{name} must be LOW:HIGH with 0 < LOW < HIGH, got {lo:g}:{hi:g}")
    if not lo < hi:
        raise SpecError(f"{name} {lo:g}:{hi:g} is {'empty' if lo == hi else 'inverted'}; give LOW:HIGH with LOW < HIGH")


@dataclass(frozen=True)
class SliceSpec:
    """One slice of (eta_A, eta_B). held: the held quantity at (n0, r0) (b-edge: eta_A, a-edge:
    eta_B, ratio: lambda = eta_B / eta_A; unused for one-rate); held_n, held_r: its exponents in
    n and r; rate_range: the varied rate's search range (absolute, the same at every width);
    role: "edge" (searched in rounds) or "profile" (round-0 grid only)."""

    name: str
    held: float = 0.0
    held_n: float = 0.0
    held_r: float = 0.0
    rate_range: tuple[float, float] = (1e-6, 1e2)
    role: str = "edge"
    per_decade: int | None = None  # the round-0 grid's density (None: the configuration's)

    def __post_init__(self):
        if self.name not in SLICES:
            raise SpecError(f"unknown slice {self.name!r}; choose from {', '.join(SLICES)}")
        if self.role not in ROLES:
            raise SpecError(f"unknown slice role {self.role!r}; choose from {', '.join(ROLES)}")
        object.__setattr__(self, "rate_range", tuple(float(v) for v in self.rate_range))
        check_range(f"{self.name} rate range", *self.rate_range)
        if self.name != "one-rate" and not (math.isfinite(self.held) and self.held > 0):
            raise SpecError(f"slice {self.name}: the held {HELD[self.name]} must be positive, got {self.held}")

    @property
    def key(self) -> str:
        """A label unique within a configuration, e.g. ``b-edge`` or ``ratio 16 n^1``."""
        if self.name == "one-rate":
            return "one-rate"
        scale = "".join(f" {v}^{e:g}" for v, e in (("n", self.held_n), ("r", self.held_r)) if e)
        label = "ratio" if self.role == "edge" else "profile"
        return self.name if self.name != "ratio" else f"{label} {self.held:g}{scale}"

    def held_at(self, n: int, r: int, n0: int, r0: int) -> float:
        return self.held * (n / n0) ** self.held_n * (r / r0) ** self.held_r

    def rates(self, values, n: int, r: int, n0: int, r0: int) -> tuple[np.ndarray, np.ndarray]:
        """(eta_A, eta_B) of the runs whose varied rate is ``values``."""
        v = np.asarray(values, float)
        h = self.held_at(n, r, n0, r0)
        if self.name == "b-edge":
            return np.full_like(v, h), v
        if self.name == "a-edge":
            return v, np.full_like(v, h)
        if self.name == "one-rate":
            return v, v.copy()
        return v, h * v


@dataclass(frozen=True)
class LawsConfig:
    """One configuration measured along its slices at every (width, rank) and seed.

    variable: "n" (widths vary, one rank) or "r" (ranks vary, one width). criteria: the first is
    the primary one (laws.csv); the others give the sensitivity table. n0, r0: where the slices'
    held values are given. profile_widths: the widths at which profile slices run (None: all).
    """

    model: str
    optimizer: str
    init: str | None
    widths: tuple[int, ...]
    ranks: tuple[int, ...] = (4,)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    slices: tuple[SliceSpec, ...] = ()
    criteria: tuple[Criterion, ...] = (Criterion(20, 0.5),)
    alpha: float | None = None
    alpha_scaling: str = "r"
    variable: str = "n"
    per_decade: int = 4
    refine_points: int = 3
    refine_rounds: int = 2
    n0: int = 64
    r0: int = 4
    depth: int = 1
    batch_size: int | None = None
    data: str = "fixed"
    dtype: str = "float32"
    profile_widths: tuple[int, ...] | None = None
    teacher: str = "independent"
    teacher_rank: int | None = None
    b0_variance: str = "1"
    b0_scale: float = 1.0
    factory: str | None = None  # a factory reference (``studies.factory_laws``); model is then its name
    # The stacking control: every LoRA layer with a LoRA layer upstream reads a detached copy of its
    # input in its LoRA branch (no gradient reaches the layers below through B A; the frozen path stays)
    detach_lora_input: bool = False

    def __post_init__(self):
        if self.factory is not None:
            self._check_factory_config()
        else:
            check_choices(self.model, self.optimizer, self.init)
        if self.alpha_scaling not in ALPHA_SCALINGS:
            raise SpecError(f"unknown LoRA scale {self.alpha_scaling!r}; choose from {', '.join(ALPHA_SCALINGS)}")
        if self.b0_variance not in ("1", "1/r"):
            raise SpecError(f"b0 variance must be '1' or '1/r', got {self.b0_variance!r}")
        if self.variable not in ("n", "r"):
            raise SpecError(f"variable must be 'n' (width) or 'r' (rank), got {self.variable!r}")
        for name in ("widths", "ranks"):
            object.__setattr__(self, name, _positive_ints(name, getattr(self, name)))
        if self.variable == "r" and len(self.widths) != 1:
            raise SpecError("a rank study holds the width fixed: give exactly one width")
        if self.variable == "n" and len(self.ranks) != 1:
            raise SpecError("a width study holds the rank fixed: give exactly one rank")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise SpecError(f"seeds must be non-negative integers, got {list(self.seeds)}")
        if not self.slices:
            raise SpecError("give at least one slice")
        keys = [s.key for s in self.slices]
        if len(set(keys)) != len(keys):
            raise SpecError(f"slices must differ, got {keys}")
        if not self.criteria:
            raise SpecError("give at least one edge criterion")
        for name in ("per_decade", "refine_points"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise SpecError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.refine_rounds, int) or self.refine_rounds < 0:
            raise SpecError(f"refine-rounds must be a non-negative integer, got {self.refine_rounds!r}")
        if self.optimizer == "sgd" and any(c.fraction is not None for c in self.criteria):
            raise SpecError("under gradient descent the edge is a divergence: give criteria without a fraction")
        if self.factory is None:  # a factory checks its own widths (studies.factory_check.check_factory)
            for w, r in self.points():
                try:
                    self.model_config(w, r).check()
                except ValueError as err:
                    raise SpecError(str(err)) from None
        if self.detach_lora_input and self.factory is None and not (self.model == "mlp" and self.depth >= 2):
            raise SpecError("the stacking control (detached LoRA inputs) needs stacked LoRA layers: "
                            "the mlp at depth 2 or more, or a factory")
        if self.model == "paper-mlp" and self.init not in (None, "paper"):
            raise SpecError(f"paper-mlp has no base matrix between A and B, so init {self.init!r} never trains; "
                            "use init paper")

    def _check_factory_config(self) -> None:
        """A factory's model trains under Adam from Init[1] or Init[2], with PEFT's scale."""
        if self.optimizer != "adam":
            raise SpecError(f"a factory's model trains under Adam only, got optimizer {self.optimizer!r}")
        if self.init not in ("1", "2"):
            raise SpecError(f"a factory's model starts from init 1 or 2, got {self.init!r}")
        if self.variable != "n" or self.alpha_scaling != "r":
            raise SpecError("a factory's laws are width laws at the factory's own LoRA scale (alpha/r)")

    @property
    def init_name(self) -> str:
        return self.init or MODELS[self.model].default_init

    @property
    def predict_as(self) -> str:
        """The model whose derivation predicts this one: a factory's LoRA layers are predicted as
        the mlp's (Adam LoRA layers with Theta(1) inputs whose outputs the loss does not read
        directly; ``studies.factory_check``)."""
        return "mlp" if self.factory is not None else self.model

    @property
    def effective_batch(self) -> int | None:
        """Samples per step: the given batch or the toy model's own (None for a factory, whose
        batches are its own)."""
        if self.factory is not None:
            return None
        return self.batch_size or MODELS[self.model].default_batch

    @property
    def label(self) -> str:
        """model/optimizer/init/scale, then every other setting of the model or its training that
        differs from the catalogue's house value (``HOUSE``): two configurations that train
        differently never share a label (``check_labels``), and the catalogue's own labels stay short."""
        house = HOUSE[self.variable]
        extra = ("/B0 var 1/r" if self.b0_variance != "1" else "") + (
            f"/B0 x {self.b0_scale:g}" if self.b0_scale != 1.0 else "") + (
            f"/teacher {self.teacher}" if self.teacher != "independent" else "") + (
            f"/n={self.widths[0]} vs r" if self.variable == "r" else "")
        batch = self.effective_batch
        if batch is not None and batch != (house["batch"] if self.optimizer != "sgd" else MODELS[self.model].default_batch):
            extra += f"/batch {batch}"
        extra += (f"/depth {self.depth}" if self.depth != 1 else "") + (
            f"/data {self.data}" if self.data != "fixed" else "") + (
            f"/{self.dtype}" if self.dtype != "float32" else "") + (
            f"/alpha {_or(self.alpha, 'r')}" if self.alpha != house["alpha"] else "") + (
            f"/teacher rank {_or(self.teacher_rank, 'r')}" if self.teacher_rank != house["teacher_rank"] else "") + (
            f"/n0={self.n0}" if self.n0 != 64 else "") + (
            "/LoRA inputs detached" if self.detach_lora_input else "")
        return f"{self.model}/{self.optimizer}/init{self.init_name}/{self.alpha_scaling}{extra}"

    @property
    def steps(self) -> int:
        return max(c.steps for c in self.criteria)

    @property
    def primary(self) -> Criterion:
        return self.criteria[0]

    def model_config(self, width: int, rank: int) -> ModelConfig:
        return ModelConfig(width=width, rank=rank, alpha=self.alpha, alpha_scaling=self.alpha_scaling,
                           init=self.init, batch_size=self.batch_size, data=self.data, depth=self.depth,
                           dtype=self.dtype, teacher=self.teacher, teacher_rank=self.teacher_rank,
                           b0_scale=self.b0_scale * (1.0 if self.b0_variance == "1" else rank ** -0.5),
                           detach_lora_input=self.detach_lora_input)

    def points(self) -> list[tuple[int, int]]:
        """Every (width, rank) measured."""
        return [(w, r) for w in self.widths for r in self.ranks]

    def slices_at(self, width: int) -> list[SliceSpec]:
        return [s for s in self.slices if s.role == "edge" or self.profile_widths is None
                or width in self.profile_widths]

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["detach_lora_input"]:  # added later: left out at its default so older stores still resume
            del d["detach_lora_input"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LawsConfig":
        """Inverse of to_dict (a stored run's meta.json)."""
        d = dict(d)
        d["slices"] = tuple(SliceSpec(**{**s, "rate_range": tuple(s["rate_range"])}) for s in d["slices"])
        d["criteria"] = tuple(Criterion(**c) for c in d["criteria"])
        for k in ("widths", "ranks", "seeds"):
            d[k] = tuple(d[k])
        if d.get("profile_widths") is not None:
            d["profile_widths"] = tuple(d["profile_widths"])
        return cls(**d)


RUN_COLUMNS = ["config", "model", "optimizer", "init", "alpha_scaling", "scale", "width", "rank", "seed", "slice",
               "slice_name", "role", "held", "held_n", "held_r", "round", "rate", "eta_a", "eta_b",
               "diverged_step", "loss_0", "cpu_s"]


def laws_shard(config: LawsConfig, width: int, rank: int, seed: int, device: torch.device) -> pd.DataFrame:
    """Search every slice of ``config`` at one (width, rank, seed) in rounds, each round one
    population. Returns one row per run (RUN_COLUMNS + loss_t<T> for every criterion's T)."""
    start = time.process_time()
    model = build_model(config.model, config.model_config(width, rank), seed, device)
    runs = search_slices(config, width, rank, seed, model.scale,
                         lambda a, b: train_pairs(model, a, b, config.optimizer, config.steps))
    # CPU seconds of this shard (the machine may be shared: wall time would mislead)
    return runs.assign(cpu_s=time.process_time() - start)


def search_slices(config: LawsConfig, width: int, rank: int, seed: int, scale: float, train) -> pd.DataFrame:
    """The edge search of one (width, rank, seed): round 0 a log grid of every slice, then
    ``refine_rounds`` rounds inside each edge's bracket. ``train(eta_a, eta_b)`` trains the
    runs (arrays of K rates) as one population and returns {'train': (T+1, K) losses, NaN after
    divergence; 'diverged_step': (K,), -1 = never}. Returns RUN_COLUMNS (but cpu_s) + loss_t<T>."""
    slices = config.slices_at(width)
    eval_steps = sorted({c.steps for c in config.criteria})
    frames: list[pd.DataFrame] = []
    tried: dict[str, np.ndarray] = {s.key: np.empty(0) for s in slices}

    def run_round(new: dict[str, np.ndarray], round_: int) -> None:
        parts = [(s, new[s.key]) for s in slices if len(new.get(s.key, ()))]
        rates = [s.rates(v, width, rank, config.n0, config.r0) for s, v in parts]
        c = train(np.concatenate([a for a, _ in rates]), np.concatenate([b for _, b in rates]))
        first = 0
        for (s, v), (a, b) in zip(parts, rates):
            sl = slice(first, first + len(v))
            first += len(v)
            frame = pd.DataFrame({
                "config": config.label, "model": config.model, "optimizer": config.optimizer,
                "init": config.init_name, "alpha_scaling": config.alpha_scaling, "scale": scale,
                "width": width, "rank": rank, "seed": seed, "slice": s.key, "slice_name": s.name, "role": s.role,
                "held": s.held_at(width, rank, config.n0, config.r0), "held_n": s.held_n, "held_r": s.held_r,
                "round": round_, "rate": v, "eta_a": a, "eta_b": b,
                "diverged_step": c["diverged_step"][sl], "loss_0": c["train"][0, sl]})
            for t in eval_steps:
                frame[f"loss_t{t}"] = c["train"][t, sl]
            frames.append(frame)
            tried[s.key] = np.concatenate([tried[s.key], v])

    run_round({s.key: log_grid(*s.rate_range, s.per_decade or config.per_decade) for s in slices}, 0)
    for round_ in range(1, config.refine_rounds + 1):
        runs = pd.concat(frames, ignore_index=True)
        new = {}
        for s in slices:
            if s.role != "edge":
                continue
            mine = runs[runs.slice == s.key]
            points = [refine(b.lo, b.hi, config.refine_points) for crit in config.criteria
                      for b in [locate_edge(mine.rate, trainable(mine, crit))] if not b.censored]
            if points:
                cand = np.unique(np.concatenate(points))
                seen = tried[s.key]
                cand = cand[~np.isclose(cand[:, None], seen[None, :], rtol=1e-9).any(1)]
                if len(cand):
                    new[s.key] = cand
        if not new:
            break
        run_round(new, round_)
    return pd.concat(frames, ignore_index=True)


def trainable(runs: pd.DataFrame, crit: Criterion) -> np.ndarray:
    """Whether each run (rows of a laws shard) meets ``crit``."""
    return crit.trainable(runs.loss_0.to_numpy(float), runs[f"loss_t{crit.steps}"].to_numpy(float),
                          runs.diverged_step.to_numpy())


EDGE_COLUMNS = ["config", "model", "optimizer", "init", "alpha_scaling", "scale", "width", "rank", "seed", "slice",
                "slice_name", "held", "held_n", "held_r", "criterion", "fraction", "T", "primary", "varied", "edge",
                "edge_eta_a", "edge_eta_b", "lo", "hi", "censored", "reentries", "candidates"]


def check_labels(configs: list[LawsConfig]) -> None:
    """SpecError when two different configurations share a label: their runs would be merged
    into one configuration's edges (the label is the runs' ``config`` column)."""
    seen: dict[str, LawsConfig] = {}
    for c in configs:
        other = seen.setdefault(c.label, c)
        if other != c:
            a, b = other.to_dict(), c.to_dict()
            differ = [k for k in a if a[k] != b[k]]
            raise SpecError(f"two configurations share the label {c.label!r} but differ in {', '.join(differ)}")


def edge_table(runs: pd.DataFrame, configs: list[LawsConfig]) -> pd.DataFrame:
    """One row per (configuration, width, rank, seed, edge slice, criterion): the bracket, the
    edge in the varied rate and as (eta_A, eta_B), censoring."""
    check_labels(configs)
    rows = []
    by_label = {c.label: c for c in configs}
    edges = runs[runs.role == "edge"]
    keys = ["config", "width", "rank", "seed", "slice"]
    for key, g in edges.groupby(keys, sort=False):
        config = by_label[key[0]]
        first = g.iloc[0]
        for crit in config.criteria:
            b = locate_edge(g.rate, trainable(g, crit))
            e = b.edge
            name = first.slice_name
            eta_a = e if name != "b-edge" else first.held
            eta_b = {"b-edge": e, "a-edge": first.held, "one-rate": e, "ratio": first.held * e}[name]
            rows.append({**{k: first[k] for k in EDGE_COLUMNS[:14]}, "criterion": crit.name,
                         "fraction": crit.fraction, "T": crit.steps, "primary": crit == config.primary,
                         "varied": VARIED[name], "edge": e, "edge_eta_a": eta_a, "edge_eta_b": eta_b,
                         "lo": b.lo, "hi": b.hi, "censored": b.censored, "reentries": b.reentries,
                         "candidates": len(g)})
    return pd.DataFrame(rows, columns=EDGE_COLUMNS)


def laws_shards(configs: list[LawsConfig], device, prefix: str = "") -> list[Shard]:
    """One shard per (configuration, width, rank, seed); widest first within a configuration
    is not needed (shards are independent), so narrowest first keeps the progress bar honest."""
    shards = []
    for i, c in enumerate(configs):
        slug = re.sub(r"[^A-Za-z0-9.-]+", "_", c.label)
        for w, r in c.points():
            if not c.slices_at(w):  # profile-only configurations skip the non-profile widths
                continue
            for s in c.seeds:
                shards.append(Shard(f"{prefix}c{i}_{slug}_n{w}_r{r}_s{s}", laws_shard, (c, w, r, s, device)))
    return shards


def run_laws(configs: list[LawsConfig], device, store: ShardStore, executor: str = "inline", workers: int = 2,
             scheduler: str | None = None, progress: bool = True, prefix: str = "") -> pd.DataFrame:
    """Every shard the store does not hold yet; returns the runs of all configurations."""
    check_labels(configs)
    shards = laws_shards(configs, device, prefix)
    run_shards(shards, store, executor, workers, scheduler, bar="lr-laws" if progress else None)
    runs = store.load([sh.key for sh in shards])
    runs["init"] = runs["init"].astype(str)
    return runs


# -- the catalogue -------------------------------------------------------------------------------
STUDIES = ("width", "gd", "rank", "fig2")
ADAM_CRITERIA = (Criterion(20, 1.0), Criterion(20, 0.5), Criterion(20, 0.9))
ADAM_T_CRITERIA = (Criterion(10, 1.0), Criterion(40, 1.0))
GD_CRITERIA = (Criterion(50), Criterion(25), Criterion(100))
PROFILE_RATIOS = tuple(10.0 ** (k / 2) for k in range(-2, 11))  # 0.1 .. 1e5, two per decade


def adam_slices(profile: bool) -> tuple[SliceSpec, ...]:
    """The Adam slices. Held values at n0 = 64: eta_A = 1e-2 (n/64)^-1 on the B edge, eta_B = 3e-2
    on the A edge (inside the trainable region of both inits at every width measured), and
    LoRA+'s ratio 16 (n/64) on the ratio slice, whose rates then move only with the scheme's
    base rate (the muP-style transfer plot). Profile: width-free ratios 0.1 .. 1e5, each with
    eta_A on a 6-per-decade grid (the profile's minimum over eta_A must be resolved finely)."""
    s = (SliceSpec("b-edge", held=1e-2, held_n=-1.0, rate_range=(1e-3, 1e4)),
         SliceSpec("a-edge", held=3e-2, held_n=0.0, rate_range=(1e-6, 1e2)),
         SliceSpec("one-rate", rate_range=(1e-6, 1e2)),
         SliceSpec("ratio", held=16.0, held_n=1.0, rate_range=(1e-7, 1e1)))
    if profile:
        s += tuple(SliceSpec("ratio", held=lam, rate_range=(1e-5, 1e1), role="profile", per_decade=6)
                   for lam in PROFILE_RATIOS)
    return s


def gd_slices(ratio: bool, top: float = 1e4) -> tuple[SliceSpec, ...]:
    """Gradient descent's slices; rates up to ``top`` (1e7 on the toy model, where a few seeds in 32
    have a tiny (a^T x)^2 or b and their B or A edge lies beyond 1e4: censored there, they cost
    whole widths)."""
    s = (SliceSpec("b-edge", held=1e-2, held_n=-1.0, rate_range=(1e-4, top)),
         SliceSpec("a-edge", held=5e-2, held_n=0.0, rate_range=(1e-6, top)),
         SliceSpec("one-rate", rate_range=(1e-6, min(top, 1e6))))
    return s + ((SliceSpec("ratio", held=16.0, held_n=1.0, rate_range=(1e-6, min(top, 1e6))),) if ratio else ())


def catalogue(study: str, quick: bool = False) -> list[LawsConfig]:
    """The configurations of a named study (quick: fewer widths, ranks and seeds)."""
    pd3 = dict(per_decade=3)
    if study == "width":
        out = []
        for model in ("linear", "mlp"):
            if quick and model == "mlp":
                continue
            widths = (64, 128, 256, 512, 1024, 2048) if quick else (64, 128, 256, 512, 1024, 2048, 4096, 8192)
            profile_widths = (64, 512) if quick else (64, 512, 4096) if model == "linear" else (64, 256, 1024)
            for init in ("1", "2"):
                crit = ADAM_CRITERIA[:1] if quick else ADAM_CRITERIA + (
                    ADAM_T_CRITERIA if (model, init) == ("linear", "1") else ())
                out.append(LawsConfig(model=model, optimizer="adam", init=init, widths=widths,
                                      seeds=tuple(range(4 if quick else 8)), slices=adam_slices(True),
                                      criteria=crit, batch_size=8, profile_widths=profile_widths, **pd3))
        if not quick:
            # controls: Init[2]'s overshoot on linear (the teacher's output directions in span(B0),
            # so A's own target is Theta(1)) and the B0 path on the mlp (B0 x 1/4, which shrinks
            # what B0's random columns carry and changes no predicted exponent)
            control = dict(optimizer="adam", init="2", widths=out[0].widths, seeds=tuple(range(8)),
                           slices=adam_slices(False)[:3], criteria=ADAM_CRITERIA[:1], batch_size=8, **pd3)
            out += [LawsConfig(model="linear", teacher="b0-aligned", **control),
                    LawsConfig(model="mlp", b0_scale=0.25, **control)]
        return out
    if study == "gd":
        toy_widths = (256, 1024, 4096, 16384) if quick else (256, 512, 1024, 2048, 4096, 8192, 16384)
        out = [LawsConfig(model="toy", optimizer="sgd", init=init, widths=toy_widths, ranks=(1,), r0=1,
                          seeds=tuple(range(8 if quick else 32)), slices=gd_slices(True, 1e7),
                          criteria=GD_CRITERIA[:1] if quick else GD_CRITERIA, **pd3) for init in ("1", "2")]
        if not quick:
            out.append(LawsConfig(model="paper-mlp", optimizer="sgd", init="paper",
                                  widths=(64, 128, 256, 512, 1024, 2048), seeds=tuple(range(16)),
                                  slices=gd_slices(False), criteria=GD_CRITERIA[:2], **pd3))
        return out
    if study == "rank":
        # muA's rows: Init[A] = Init[1] at every scale; Init[B] = Init[2] with B0 of variance 1/r
        # (their fan-in convention). The linear model with a rank-4 teacher keeps the target the
        # same at every LoRA rank; Init[2] also runs on the toy model (one output), where A's first
        # step cannot overshoot a small target of its own, so the calculus is tested there too.
        ranks = (1, 4, 16, 64) if quick else (1, 2, 4, 8, 16, 32, 64, 128, 256)
        width = 512 if quick else 1024
        rows = ([("linear", "1", s) for s in ALPHA_SCALINGS] + [("linear", "2", s) for s in ALPHA_SCALINGS]
                + ([] if quick else [("toy", "2", s) for s in ALPHA_SCALINGS]))
        return [LawsConfig(model=model, optimizer="adam", init=init, widths=(width,), ranks=ranks, variable="r",
                           r0=1, alpha=1.0, alpha_scaling=scaling, b0_variance="1/r" if init == "2" else "1",
                           teacher_rank=4, seeds=tuple(range(4 if quick else 8)),
                           slices=(SliceSpec("one-rate", rate_range=(1e-6, 1e1)),), criteria=ADAM_CRITERIA[:1],
                           batch_size=8, **pd3)
                for model, init, scaling in rows]
    raise SpecError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")


# -- the Fig. 2 question --------------------------------------------------------------------------
# The paper's Fig. 2 grid (paper-mlp, n = 100, eta in 2e-4 .. 10, 3 seeds, t = 10 and 200) under
# the readings its text leaves open: gradient descent or Adam; its printed init (A and B both
# random, no frozen W between them) or LoRA's Init[1] / Init[2], which need a frozen W to train
# at all (paper-mlp-base; "paper" init on that model isolates the effect of adding W).
FIG2_READINGS = tuple((opt, model, init) for opt in ("sgd", "adam")
                      for model, init in (("paper-mlp", "paper"), ("paper-mlp-base", "paper"),
                                          ("paper-mlp-base", "1"), ("paper-mlp-base", "2")))


def fig2_specs(quick: bool = False) -> list[tuple[str, "LrGridSpec"]]:
    """(label, LrGridSpec) per reading; quick: 3 rates per decade and 100 steps."""
    from studies.lr_grid import LrGridSpec
    steps = 100 if quick else 200
    return [(f"{opt}/{model}/init{init}",
             LrGridSpec(model=model, widths=(100,), per_decade=3 if quick else 6, steps=steps, eval_at=(10, steps),
                        seeds=(0, 1, 2), optimizer=opt, init=init, test_size=100))
            for opt, model, init in FIG2_READINGS]


def run_fig2(device, store: ShardStore, executor: str = "inline", workers: int = 2, scheduler: str | None = None,
             quick: bool = False, progress: bool = True) -> pd.DataFrame:
    """The Fig. 2 grid under every reading (lr-grid shards in this study's store); the tidy grid
    table with a ``reading`` column."""
    from studies.lr_grid import lr_grid_shard
    specs = fig2_specs(quick)
    shards = [Shard(f"fig2_{re.sub(r'[^A-Za-z0-9.-]+', '_', label)}_s{s}", lr_grid_shard, (spec, 100, s, device))
              for label, spec in specs for s in spec.seeds]
    run_shards(shards, store, executor, workers, scheduler, bar="lr-laws fig2" if progress else None)
    frames = []
    for (label, spec), i in zip(specs, range(0, len(shards), len(specs[0][1].seeds))):
        eta_a, eta_b = spec.pairs()
        for sh in shards[i:i + len(spec.seeds)]:
            start = store.load_arrays(sh.key)["train"][0]               # loss at step 0, per pair
            part = store.load([sh.key])
            pair = pd.DataFrame({"eta_a": eta_a, "eta_b": eta_b, "loss_0": start})
            frames.append(part.merge(pair, on=["eta_a", "eta_b"], how="left").assign(reading=label))
    table = pd.concat(frames, ignore_index=True)
    table["init"] = table["init"].astype(str)
    return table


def dead_start(device="cpu") -> pd.DataFrame:
    """The printed Fig. 2 model under Init[1] and Init[2]: B A h_0 = 0 at the start, relu'(0) = 0,
    so every LoRA gradient is exactly zero and no rate trains. One row per (optimizer, init):
    the largest |gradient| at the start and the loss change over 20 steps at eta = 1."""
    rows = []
    for init in ("1", "2"):
        model = build_model("paper-mlp", ModelConfig(width=100, init=init), 0, device)
        (a, b), = model.lora_init()
        x, y = model.train_batch(1)
        _, grads, _ = model.loss_and_grads(x, y, [a[None]], [b[None]])
        for opt in ("sgd", "adam"):
            c = train_pairs(model, [1.0], [1.0], opt, 20)
            rows.append({"optimizer": opt, "init": init, "max_abs_grad": float(max(g.abs().max() for g in grads)),
                         "loss_0": float(c["train"][0, 0]), "loss_20": float(c["train"][20, 0])})
    return pd.DataFrame(rows)


# -- the command ----------------------------------------------------------------------------------
def _choose(name: str, given: list[str] | None, allowed) -> list[str] | None:
    """The listed names (None: all), each checked against ``allowed``."""
    if given is None:
        return None
    for v in given:
        if v not in allowed:
            raise SpecError(f"unknown {name} {v!r}; choose from {', '.join(allowed)}")
    if not given:
        raise SpecError(f"--{name}s: give at least one value")
    return given


def select_configs(studies: list[str], quick: bool = False, models=None, inits=None, scales=None, slices=None,
                   laws=None, widths=None, ranks=None, seeds: int | None = None, fraction: float | None = None,
                   steps: int | None = None, rate_range: tuple[float, float] | None = None, depth: int | None = None,
                   detach: bool = False) -> list[LawsConfig]:
    """The configurations to run: the named studies' catalogue, narrowed by the filters and
    changed by the overrides (all validated; SpecError with one line otherwise). depth and detach
    (the stacking control) apply to the mlp, and only the mlp's configurations may be selected then."""
    _choose("studie", studies, STUDIES)
    _choose("model", models, tuple(MODELS))
    _choose("init", inits, ("1", "2", "paper"))
    _choose("scale", scales, ALPHA_SCALINGS)
    _choose("slice", slices, SLICES)
    laws = _choose("law", laws, LAWS) or list(LAWS)
    if rate_range is not None:
        check_range("--range", *rate_range)
    if seeds is not None and seeds <= 0:
        raise SpecError(f"--seeds must be a positive integer, got {seeds}")
    if fraction is not None and not 0 < fraction <= 1:
        raise SpecError(f"--fraction must be in (0, 1], got {fraction}")
    if steps is not None and steps <= 0:
        raise SpecError(f"--steps must be a positive integer, got {steps}")
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise SpecError(f"--depth must be a positive integer, got {depth}")
    if detach and (depth or 1) < 2:
        raise SpecError("--detach-lora-inputs needs stacked LoRA layers: give --depth 2 or more")
    out = []
    for study in (s for s in studies if s != "fig2"):
        for c in catalogue(study, quick):
            if (models and c.model not in models) or (inits and c.init_name not in inits) or (
                    scales and c.alpha_scaling not in scales):
                continue
            keep = [s for s in c.slices if (s.role == "edge" and (not slices or s.name in slices)
                                             and ({"edge", "corner", "optimum"} & set(laws)))
                    or (s.role == "profile" and "profile" in laws)]
            if not keep:
                continue
            changes = {"slices": tuple(replace(s, rate_range=tuple(rate_range)) if rate_range else s for s in keep)}
            if widths and c.variable == "n":
                changes["widths"] = tuple(widths)
                if c.profile_widths is not None:
                    changes["profile_widths"] = tuple(w for w in c.profile_widths if w in widths) or tuple(widths[:1])
            if ranks and c.variable == "r":
                changes["ranks"] = tuple(ranks)
            if seeds:
                changes["seeds"] = tuple(range(seeds))
            if depth is not None or detach:
                if c.model != "mlp":
                    raise SpecError(f"--depth and --detach-lora-inputs apply to the mlp only; the selection holds "
                                    f"{c.label} (add --models mlp)")
                changes.update(depth=depth or c.depth, detach_lora_input=detach)
            if fraction is not None or steps is not None:
                first = c.primary
                if c.optimizer == "sgd":
                    changes["criteria"] = (Criterion(steps or first.steps),)
                else:
                    changes["criteria"] = (Criterion(steps or first.steps, fraction or first.fraction),)
            out.append(replace(c, **changes))
    check_labels(out)
    if not out and "fig2" not in studies:
        raise SpecError("nothing to run: the filters leave no configuration of " + ", ".join(studies))
    return out


# -- one law for validate --------------------------------------------------------------------------
def corner_config() -> LawsConfig:
    """The LoRA+ corner on ``linear`` under Adam and Init[1], small enough for ``validate --quick``
    (about 5 s of CPU here): the B edge and the A edge at five widths, 8 seeds, primary criterion."""
    return LawsConfig(model="linear", optimizer="adam", init="1", widths=(128, 256, 512, 1024, 2048),
                      seeds=tuple(range(8)), slices=adam_slices(False)[:2], criteria=ADAM_CRITERIA[:1], batch_size=8,
                      per_decade=3)


def validate_corner(device, out, executor: str = "inline", workers: int = 2, scheduler: str | None = None,
                    tol: float = 0.15) -> tuple[pd.DataFrame, str]:
    """validate's learning-rate law: the corner lambda_c(n) = eta_B,edge / eta_A,edge against
    scaling.laws' +1. Shards in their own store under ``out``/lr_corner (resumable). Returns (its
    rows of laws.csv: the corner and the two edges, a markdown section for validate's report)."""
    from studies.reports.lr_laws import analyse
    config = corner_config()
    store = ShardStore(out / "lr_corner", {"study": "validate lr-laws corner", "config": config.to_dict(),
                                           "device": str(device)})
    runs = run_laws([config], device, store, executor, workers, scheduler, progress=False)
    laws = analyse(runs, [config], tol, kinds=("edge", "corner"))["laws"]
    laws = laws[laws.law.isin(["corner lambda_c", "B edge", "A edge"])].reset_index(drop=True)
    cpu = float(runs.groupby(["width", "seed"]).cpu_s.first().sum())
    corner = laws[laws.law == "corner lambda_c"].iloc[0]
    lines = ["## A learning-rate law: the LoRA+ corner", "",
             f"The edges of the trainable region (`lr-laws`: linear, Adam, Init[1], widths {list(config.widths)}, "
             f"{len(config.seeds)} seeds; an edge is the largest rate at which the loss after "
             f"{config.primary.steps} steps is not above its start). The corner lambda_c = eta_B at the B edge / "
             f"eta_A at the A edge grows like n^{corner.slope:+.2f} [{corner.lo:+.2f}, {corner.hi:+.2f}] against "
             f"LoRA+'s n^+1: **{corner.verdict}** ({cpu:.0f} s of CPU).", "",
             laws[["law", "predicted", "slope", "lo", "hi", "verdict", "reason"]].to_markdown(index=False, floatfmt=".2f"),
             ""]
    return laws, "\n".join(lines)
