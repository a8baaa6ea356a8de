"""lr-laws' shards: the edge search of one (configuration, width, rank, seed).

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
criterion's T (``RUN_COLUMNS``). Everything else is computed from those rows
(``studies.lr_laws.analysis``), so a stored run can be re-analysed.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import torch

from scaling.edges import Criterion, locate_edge, refine
from studies.lr_grid import log_grid, train_pairs
from studies.lr_laws.config import LawsConfig
from studies.run.shards import Shard
from toy_models.models import build_model

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


def run_laws(configs: list[LawsConfig], ctx, store=None, bar: str | None = "lr-laws", prefix: str = "") -> pd.DataFrame:
    """Every shard ``store`` (default: the context's) does not hold yet, run through ``ctx``
    (a studies.run.context.RunContext); returns the runs of all configurations."""
    shards = laws_shards(configs, ctx.device, prefix)
    ctx.run(shards, bar=bar, store=store)
    runs = ctx.load(shards, store)
    runs["init"] = runs["init"].astype(str)
    return runs
