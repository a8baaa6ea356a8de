"""The Fig. 2 question: the paper's one-width grid of (eta_A, eta_B) under every reading its text
leaves open, and where each reading's best pair and trainable region lie.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from scaling.optimum import optimum_table
from scaling.profile import seed_mean_log
from studies.lr_grid import LrGridSpec, lr_grid_shard, train_pairs
from studies.run.shards import Shard
from toy_models.models import ModelConfig, build_model

# The paper's Fig. 2 grid (paper-mlp, n = 100, eta in 2e-4 .. 10, 3 seeds, t = 10 and 200) under
# the readings its text leaves open: gradient descent or Adam; its printed init (A and B both
# random, no frozen W between them) or LoRA's Init[1] / Init[2], which need a frozen W to train
# at all (paper-mlp-base; "paper" init on that model isolates the effect of adding W).
FIG2_READINGS = tuple((opt, model, init) for opt in ("sgd", "adam")
                      for model, init in (("paper-mlp", "paper"), ("paper-mlp-base", "paper"),
                                          ("paper-mlp-base", "1"), ("paper-mlp-base", "2")))


def fig2_specs(quick: bool = False) -> list[tuple[str, LrGridSpec]]:
    """(label, LrGridSpec) per reading; quick: 3 rates per decade and 100 steps."""
    steps = 100 if quick else 200
    return [(f"{opt}/{model}/init{init}",
             LrGridSpec(model=model, widths=(100,), per_decade=3 if quick else 6, steps=steps, eval_at=(10, steps),
                        seeds=(0, 1, 2), optimizer=opt, init=init, test_size=100))
            for opt, model, init in FIG2_READINGS]


def run_fig2(ctx, quick: bool = False) -> pd.DataFrame:
    """The Fig. 2 grid under every reading (lr-grid shards in the run's store, through ``ctx``,
    a studies.run.context.RunContext); the tidy grid table with a ``reading`` column."""
    store = ctx.store
    specs = fig2_specs(quick)
    shards = [Shard(f"fig2_{re.sub(r'[^A-Za-z0-9.-]+', '_', label)}_s{s}", lr_grid_shard, (spec, 100, s, ctx.device))
              for label, spec in specs for s in spec.seeds]
    ctx.run(shards, bar="lr-laws fig2")
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


def fig2_table(grid: pd.DataFrame) -> pd.DataFrame:
    """One row per (reading, step): where the best pair of the Fig. 2 grid lies and why.

    lambda* is scaling.optimum's centroid of the pairs within 1% of the best seed-mean train loss,
    with its bootstrap interval over seeds; the A edge is the largest eta_A at which every seed
    trains (loss at t not above its start, not diverged) at the smallest eta_B, the B edge the
    largest such eta_B at the smallest eta_A, and their ratio the region's corner."""
    rows = []
    for (reading, step), g in grid[grid.split == "train"].groupby(["reading", "step"], sort=False):
        g = g.sort_values(["seed", "eta_a", "eta_b"])
        seeds = sorted(g.seed.unique())
        first = g[g.seed == seeds[0]]
        eta_a, eta_b = first.eta_a.to_numpy(float), first.eta_b.to_numpy(float)
        cube = np.stack([g[g.seed == s].loss.to_numpy(float) for s in seeds])[None]    # (1, seeds, pairs)
        table, _ = optimum_table(cube, eta_a, eta_b, [100])
        r = table.iloc[0]
        ok = np.stack([((g[g.seed == s].loss <= g[g.seed == s].loss_0) & ~g[g.seed == s].diverged).to_numpy()
                       for s in seeds]).all(0)
        a_ok, b_ok = eta_a[(eta_b == eta_b.min()) & ok], eta_b[(eta_a == eta_a.min()) & ok]
        a_edge = a_ok.max() if len(a_ok) else np.nan
        b_edge = b_ok.max() if len(b_ok) else np.nan
        mean = seed_mean_log(cube[0])
        best = int(np.argmin(np.where(np.isfinite(mean), mean, np.inf)))
        lam, lo, hi = r.lambda_star, r.lambda_star_low, r.lambda_star_high
        shape = ("eta_B* >> eta_A* (lambda* interval above 10)" if lo > 10 else
                 "eta_B* > eta_A* (lambda* interval above 1)" if lo > 1 else
                 "eta_B* < eta_A* (lambda* interval below 1)" if hi < 1 else "lambda* interval contains 1")
        opt, model, init = reading.split("/")
        rows.append({"reading": reading, "optimizer": opt, "model": model, "init": init.replace("init", ""),
                     "step": int(step), "best_eta_a": eta_a[best], "best_eta_b": eta_b[best],
                     "best_loss": float(np.exp(mean[best])), "lambda_star": lam, "lambda_low": lo,
                     "lambda_high": hi, "finding": shape, "n_near": int(r.n_near), "ridge_slope": r.ridge_slope,
                     "touches_grid_edge": bool(r.touches_edge), "a_edge": a_edge, "b_edge": b_edge,
                     "corner_ratio": b_edge / a_edge if np.isfinite(a_edge) and np.isfinite(b_edge) else np.nan})
    return pd.DataFrame(rows)
