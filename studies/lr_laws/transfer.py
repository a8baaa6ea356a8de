"""The transfer test: tune at the narrowest width, move the rates to wider widths by each rule,
and measure how much worse each rule's rates train than rates retuned at that width.

At every width and seed a 2-D log grid of (eta_A, eta_B) (the same values on both axes, so its
diagonal holds the shared rates) trains as one population; the loss after T steps (the
configuration's criterion step) is the score. Phase one runs the grids. From them: at the
narrowest width n0, the best pair (eta_A*, eta_B*) and the best shared rate eta* (seed-mean log
loss, a pair diverged on any seed never being the best); at every width, the retuned best pair;
and the measured law of the best shared rate (its exponent over the measured widths). Phase two
trains, at every wider width, the pairs the rules give (``scaling.transfer``):

- LoRA+: (eta_A* n0/n, eta_B*);      - one rate held: (eta*, eta*);
- one rate by its measured law: eta* (n/n0)^g, g measured on these widths (in-sample);
- muA's single rate: eta* (n/n0)^-1/2 from Init[1], eta* (n/n0)^-1 from Init[2].

On a factory's model (``lr-laws --factory REF --transfer``) the same two phases run on the
factory's model at each (width, seed), Init[2] made from its Init[1] as the laws' shards do,
every pair one member of a ``toy_models.module_population`` population.

The loss gap of a rule at width n is L_T(rule's pair) / L_T(retuned best pair), per seed, its
geometric mean over seeds with a 95% bootstrap interval; a rule's pair that diverges scores an
infinite gap. ``transfer_table`` builds the table (transfer.csv), ``best_rules`` names the rule
that transfers best per configuration.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from scaling.edges import mean_interval
from scaling.profile import seed_mean_log
from scaling.transfer import LORAPLUS, SHARED_HELD, TransferRule, extrapolate, measured_shared_rule, mua_rule
from studies.lr_grid import log_grid, train_pairs
from studies.lr_laws.config import ConfigKey
from studies.lr_laws.factory import laws_factory, prepare_task, start_from, train_losses
from studies.run.shards import Shard
from studies.run.spec import SpecError, _positive_ints, check_choices
from toy_models.models import ModelConfig, build_model

TRANSFER_COLUMNS = ["config", "width", "seed", "kind", "rule", "eta_a", "eta_b", "loss_0", "loss_t", "diverged_step",
                    "cpu_s"]


@dataclass(frozen=True)
class TransferConfig:
    """One model's transfer test: the grid (eta_range, per_decade: the same values for eta_A
    and eta_B), the score (loss after ``steps`` steps), the widths (the first is n0) and seeds."""

    model: str
    optimizer: str
    init: str
    widths: tuple[int, ...]
    seeds: tuple[int, ...] = tuple(range(4))
    eta_range: tuple[float, float] = (1e-5, 10.0)
    per_decade: int = 3
    steps: int = 20
    rank: int = 4
    batch_size: int | None = 8
    depth: int = 1
    factory: str | None = None     # a factory reference (model is then its name); None: a toy
    detach_lora_input: bool = False  # the stacking control (factories)

    def __post_init__(self):
        if self.factory is None:
            check_choices(self.model, self.optimizer, self.init)
        elif self.optimizer != "adam" or self.init not in ("1", "2"):
            raise SpecError(f"a factory's transfer test trains with Adam from init 1 or 2, got "
                            f"{self.optimizer} / init {self.init}")
        object.__setattr__(self, "widths", tuple(sorted(_positive_ints("widths", self.widths))))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "eta_range", tuple(float(v) for v in self.eta_range))
        if len(self.widths) < 2:
            raise SpecError("the transfer test needs at least two widths (it tunes at the narrowest)")
        if not (0 < self.eta_range[0] < self.eta_range[1] < math.inf):
            raise SpecError(f"transfer grid range must be LOW:HIGH with 0 < LOW < HIGH, got {self.eta_range}")

    @property
    def key(self) -> ConfigKey:
        return ConfigKey(self.model, self.optimizer, self.init, depth=self.depth, detached=self.detach_lora_input)

    @property
    def label(self) -> str:
        return self.key.label

    @property
    def n0(self) -> int:
        return self.widths[0]

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(eta_a, eta_b) of every grid pair, eta_A major."""
        values = log_grid(*self.eta_range, self.per_decade)
        a, b = np.meshgrid(values, values, indexing="ij")
        return a.ravel(), b.ravel()

    def model_config(self, width: int) -> ModelConfig:
        return ModelConfig(width=width, rank=self.rank, init=self.init, batch_size=self.batch_size, depth=self.depth)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransferConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def factory_transfers(configs) -> list[TransferConfig]:
    """The transfer test of each factory configuration (studies.lr_laws.config.LawsConfig with a
    factory): its widths, seeds, rank and stacking control; the score is the loss at its primary
    criterion's step; the grid 1e-5 .. 10 at 2 values per decade (13 x 13 pairs)."""
    return [TransferConfig(model=c.model, optimizer=c.optimizer, init=c.init, widths=c.widths, seeds=c.seeds,
                           per_decade=2, steps=c.criteria[0].steps, rank=c.ranks[0], batch_size=None,
                           factory=c.factory, detach_lora_input=c.detach_lora_input) for c in configs]


def transfer_catalogue(quick: bool = False) -> list[TransferConfig]:
    """The toys' transfer tests: linear and the mlp under Adam, Init[1] and Init[2]."""
    widths = (64, 256, 1024) if quick else (64, 128, 256, 512, 1024, 2048)
    seeds = tuple(range(4 if quick else 8))
    models = ("linear",) if quick else ("linear", "mlp")
    return [TransferConfig(model=m, optimizer="adam", init=i, widths=widths, seeds=seeds, per_decade=2 if quick else 3)
            for m in models for i in ("1", "2")]


# -- shards -----------------------------------------------------------------------------------------
def transfer_shard(config: TransferConfig, width: int, seed: int, pairs: tuple, device) -> pd.DataFrame:
    """One (width, seed): the grid (when ``pairs`` is empty) or the rules' pairs ((rule, eta_a,
    eta_b), ...), trained as one population. Rows TRANSFER_COLUMNS."""
    start = time.process_time()
    if pairs:
        rules, eta_a, eta_b = (list(v) for v in zip(*pairs))
        kind = "rule"
    else:
        eta_a, eta_b = config.grid()
        rules, kind = [""] * len(eta_a), "grid"
    eta_a, eta_b = np.asarray(eta_a, float), np.asarray(eta_b, float)
    if config.factory is None:
        model = build_model(config.model, config.model_config(width), seed, device)
        c = train_pairs(model, eta_a, eta_b, config.optimizer, config.steps)
    else:
        c = factory_pairs(config, width, seed, eta_a, eta_b, device)
    return pd.DataFrame({"config": config.label, "width": width, "seed": seed, "kind": kind, "rule": rules,
                         "eta_a": eta_a, "eta_b": eta_b, "loss_0": c["train"][0], "loss_t": c["train"][config.steps],
                         "diverged_step": c["diverged_step"], "cpu_s": time.process_time() - start})[TRANSFER_COLUMNS]


def factory_pairs(config: TransferConfig, width: int, seed: int, eta_a: np.ndarray, eta_b: np.ndarray,
                  device, chunk_size: int = 16) -> dict[str, np.ndarray]:
    """Train the factory's model at (width, seed) under every pair (eta_a, eta_b: (K,)) for
    config.steps Adam steps from its init, as the laws' factory shards do (the same Init[2]
    draw): {'train': (T+1, K) losses, 'diverged_step': (K,)}."""
    dev = torch.device(device)
    factory = laws_factory(config.factory)  # a family with its lr-laws settings
    task = factory(width, config.rank, seed, dev)
    prepare_task(task, factory.name, config.detach_lora_input)
    start_from(task, config.init, seed)
    return train_losses(task, eta_a, eta_b, config.steps, dev, chunk_size)


def _slug(config: TransferConfig) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", config.label)


def run_transfer(configs: list[TransferConfig], ctx) -> pd.DataFrame:
    """Both phases through ``ctx`` (a studies.run.context.RunContext): every grid, then every
    wider width's rule pairs. The rows of every shard."""
    grids = [Shard(f"t_{_slug(c)}_grid_n{w}_s{s}", transfer_shard, (c, w, s, (), ctx.device))
             for c in configs for w in c.widths for s in c.seeds]
    ctx.run(grids, bar="lr-laws transfer (grids)")
    grid_rows = ctx.load(grids)
    rule_shards = []
    for c in configs:
        pairs = rule_pairs(c, grid_rows[grid_rows.config == c.label])
        rule_shards += [Shard(f"t_{_slug(c)}_rules_n{w}_s{s}", transfer_shard, (c, w, s, pairs[w], ctx.device))
                        for w in c.widths[1:] for s in c.seeds]
    ctx.run(rule_shards, bar="lr-laws transfer (rules)")
    return pd.concat([grid_rows, ctx.load(rule_shards)], ignore_index=True)


# -- tuning and the rules ---------------------------------------------------------------------------
def best_pair(grid: pd.DataFrame, shared: bool = False) -> pd.Series | None:
    """The grid pair of least seed-mean log loss at T (one width's grid rows); a pair that did
    not finish T steps on some seed is never the best. ``shared``: among eta_A = eta_B only."""
    g = grid[np.isclose(grid.eta_a, grid.eta_b, rtol=1e-9)] if shared else grid
    cube = g.pivot_table(index="seed", columns=["eta_a", "eta_b"], values="loss_t", aggfunc="first", dropna=False)
    score = seed_mean_log(cube.to_numpy(float))              # (pairs,): +inf where a seed diverged
    if not np.isfinite(score).any():
        return None
    eta_a, eta_b = cube.columns[int(np.argmin(score))]
    return pd.Series({"eta_a": eta_a, "eta_b": eta_b, "log_loss": float(np.min(score))})


def shared_law(config: TransferConfig, grids: pd.DataFrame) -> float | None:
    """The measured exponent of the best shared rate against width (per seed's best on the
    diagonal, fitted over the measured widths)."""
    rows = []
    for (w, seed), g in grids.groupby(["width", "seed"]):
        diag = g[np.isclose(g.eta_a, g.eta_b, rtol=1e-9) & np.isfinite(g.loss_t)]
        if len(diag):
            rows.append({"width": w, "seed": seed, "eta": float(diag.eta_a.iloc[int(np.argmin(diag.loss_t))])})
    if not rows:
        return None
    t = pd.DataFrame(rows)
    e = extrapolate(t.width, t.eta, t.seed, config.n0)
    return None if e is None else e.exponent


def rules_for(config: TransferConfig, grids: pd.DataFrame) -> list[TransferRule]:
    rules = [LORAPLUS, SHARED_HELD]
    g = shared_law(config, grids)
    if g is not None:
        rules.append(measured_shared_rule(g))
    mua = mua_rule(config.init)
    if mua is not None:
        rules.append(mua)
    return rules


def rule_pairs(config: TransferConfig, grids: pd.DataFrame) -> dict[int, tuple]:
    """Per wider width: ((rule name, eta_a, eta_b), ...) from the pairs tuned at n0."""
    base = grids[grids.width == config.n0]
    pair, shared = best_pair(base), best_pair(base, shared=True)
    out = {}
    for w in config.widths[1:]:
        pairs = []
        for rule in rules_for(config, grids):
            tuned = shared if rule.shared else pair
            if tuned is not None:
                pairs.append((rule.name, *rule.rates(tuned.eta_a, tuned.eta_b, config.n0, w)))
        out[w] = tuple(pairs)
    return out


# -- the analysis -----------------------------------------------------------------------------------
def transfer_table(rows: pd.DataFrame, configs: list[TransferConfig]) -> pd.DataFrame:
    """One row per (configuration, wider width, rule): the rule's pair, its loss gap to the
    retuned best pair (geometric mean over seeds, 95% interval; inf where a seed's run did not
    finish T steps), seeds diverged, and the retuned best pair itself."""
    out = []
    for c in configs:
        mine = rows[rows.config == c.label]
        for w in c.widths[1:]:
            grid, rules = mine[(mine.width == w) & (mine.kind == "grid")], mine[(mine.width == w) & (mine.kind == "rule")]
            best = best_pair(grid)
            if best is None or rules.empty:
                continue
            at_best = grid[np.isclose(grid.eta_a, best.eta_a) & np.isclose(grid.eta_b, best.eta_b)].set_index("seed").loss_t
            for rule, r in rules.groupby("rule", sort=False):
                r = r.set_index("seed")
                finished = r.loss_t.notna() & ((r.diverged_step < 0) | (r.diverged_step > c.steps))
                log_gap = np.log(r.loss_t / at_best.reindex(r.index)).where(finished, np.inf)
                if np.isfinite(log_gap).all():
                    gap, lo, hi = mean_interval(log_gap.to_numpy(float))
                else:
                    gap = lo = hi = math.inf
                out.append({"config": c.label, "model": c.model, "init": c.init, "n0": c.n0, "width": w,
                            "rule": rule, "eta_a": r.eta_a.iloc[0], "eta_b": r.eta_b.iloc[0], "gap": gap,
                            "gap_low": lo, "gap_high": hi, "diverged_seeds": int((~finished).sum()),
                            "seeds": len(r), "best_eta_a": best.eta_a, "best_eta_b": best.eta_b})
    return pd.DataFrame(out)


def best_rules(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, at its widest width: the rule with the smallest gap, and the rules
    whose intervals overlap its (not told apart at these widths and seeds)."""
    rows = []
    for config, t in table.groupby("config", sort=False):
        widest = t[t.width == t.width.max()].sort_values("gap")
        top = widest.iloc[0]
        ties = widest[(widest.rule != top.rule) & (widest.gap_low <= top.gap_high)]
        rows.append({"config": config, "width": int(top.width), "best_rule": top.rule, "gap": top.gap,
                     "gap_low": top.gap_low, "gap_high": top.gap_high, "tied_with": "; ".join(ties.rule)})
    return pd.DataFrame(rows)


def select_transfers(studies: list[str], quick: bool = False, models=None, inits=None, widths=None,
                     seeds: int | None = None) -> list[TransferConfig]:
    """The toys' transfer tests when ``studies`` names "transfer", narrowed and overridden like
    the other studies' configurations."""
    if "transfer" not in studies:
        return []
    out = []
    for c in transfer_catalogue(quick):
        if (models and c.model not in models) or (inits and c.init not in inits):
            continue
        changes = {}
        if widths:
            changes["widths"] = tuple(widths)
        if seeds:
            changes["seeds"] = tuple(range(seeds))
        out.append(TransferConfig(**{**asdict(c), **changes}))
    return out
