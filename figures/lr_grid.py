"""Learning-rate grid figures: the paper's Fig. 2 heatmaps, best-pair loss curves, lambda*(n).

Every figure follows ``scaling.optimum.DIVERGENCE_RULE``: a pair where any seed diverged is
drawn as diverged (grey), never coloured by the mean of its surviving seeds.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.patches import Patch

from figures.style import label_log_axis, series_colours
from scaling.optimum import DEFAULT_REL_TOL, diverged_seeds, near_optimal, seed_mean_log_loss

ETA_A_LABEL, ETA_B_LABEL = "eta_A (learning rate of A)", "eta_B (learning rate of B)"
PARTLY_DIVERGED, ALL_DIVERGED = "#8c8c8c", "#d9d9d9"  # mid grey: some seeds; near-blank: every seed


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges of a log-spaced axis."""
    lv = np.log10(values)
    step = lv[1] - lv[0] if len(lv) > 1 else 1.0
    return 10 ** np.concatenate([lv - step / 2, [lv[-1] + step / 2]])


def heatmap_cube(grid: pd.DataFrame, width: int, step: int, split: str):
    """(eta_a (na,), eta_b (nb,), losses (seeds, nb, na)) of one width, step and split of the
    lr-grid table; a run diverged by ``step`` is NaN."""
    g = grid[(grid.width == width) & (grid.step == step) & (grid.split == split)]
    if "diverged" in g:
        g = g.assign(loss=g.loss.where(~g.diverged.astype(bool)))
    per_seed = [g[g.seed == s].pivot(index="eta_b", columns="eta_a", values="loss") for s in sorted(g.seed.unique())]
    a, b = per_seed[0].columns.to_numpy(float), per_seed[0].index.to_numpy(float)
    return a, b, np.stack([p.reindex(index=b, columns=a).to_numpy(float) for p in per_seed])


def plot_heatmap(grid: pd.DataFrame, width: int, step: int, split: str, rel_tol: float = DEFAULT_REL_TOL, ax=None):
    """Seed-mean loss over (eta_A, eta_B) at one width, step and split (rows of the lr-grid
    table), as in the paper's Fig. 2. Pairs within ``rel_tol`` of the best and their centroid
    (the optimum of ``scaling.optimum``) are marked and the eta_A = eta_B diagonal drawn; pairs
    where some or every seed diverged are grey."""
    a, b, cube = heatmap_cube(grid, width, step, split)
    n_seeds = cube.shape[0]
    mean = seed_mean_log_loss(cube, seed_axis=0)                       # (nb, na), +inf: not trainable
    n_div = diverged_seeds(cube, seed_axis=0)
    trainable = np.isfinite(mean)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 6.0), layout="constrained")
    ea, eb = _edges(a), _edges(b)
    handles = []
    if trainable.any():
        loss = np.exp(np.where(trainable, mean, np.nan))
        lo = np.nanmin(loss)
        mesh = ax.pcolormesh(ea, eb, np.ma.masked_invalid(loss), cmap="viridis_r",
                             norm=LogNorm(vmin=lo, vmax=min(np.nanmax(loss), lo * 1e3)))
        ax.figure.colorbar(mesh, ax=ax, label=f"{split} loss (geometric mean over {n_seeds} seeds)")
    diverged = np.where(n_div == n_seeds, 1.0, np.where(n_div > 0, 0.0, np.nan))
    ax.pcolormesh(ea, eb, np.ma.masked_invalid(diverged), cmap=ListedColormap([PARTLY_DIVERGED, ALL_DIVERGED]),
                  vmin=-0.5, vmax=1.5)
    if ((n_div > 0) & (n_div < n_seeds)).any():
        handles.append(Patch(color=PARTLY_DIVERGED, label=f"diverged on 1 to {n_seeds - 1} of {n_seeds} seeds "
                                                          "(not trainable)"))
    if (n_div == n_seeds).any():
        handles.append(Patch(color=ALL_DIVERGED, label=f"diverged on all {n_seeds} seeds"))
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    handles += ax.plot([lo, hi], [lo, hi], color="red", lw=1, ls="--", label="eta_A = eta_B")
    if trainable.any():
        near = near_optimal(np.where(trainable, mean, np.inf).ravel(), rel_tol).reshape(mean.shape) & trainable
        bb, aa = np.meshgrid(b, a, indexing="ij")
        handles.append(ax.scatter(aa[near], bb[near], marker="o", s=16, facecolor="white", edgecolor="black",
                                  zorder=3, label=f"pairs within {100 * rel_tol:g}% of the best loss: {near.sum()}"))
        ca, cb = np.exp(np.log(aa[near]).mean()), np.exp(np.log(bb[near]).mean())
        handles.append(ax.scatter([ca], [cb], marker="*", s=150, facecolor="white", edgecolor="black", zorder=4,
                                  label=f"optimum: their centroid ({ca:.2g}, {cb:.2g})"))
    ax.set(xscale="log", yscale="log", xlabel=ETA_A_LABEL, ylabel=ETA_B_LABEL,
           xlim=(ea[0], ea[-1]), ylim=(eb[0], eb[-1]), title=f"n = {width}, step {step}: {split} loss")
    if ax.figure.get_layout_engine() is not None:  # below the axes, never over a cell
        ax.figure.legend(handles=handles, loc="outside lower center", fontsize=7, ncol=2, frameon=False)
    else:
        ax.legend(handles=handles, fontsize=7, loc="best")
    return ax.figure


def plot_best_curves(curves: pd.DataFrame, width: int, ax=None):
    """Loss against step of the best pair and the best equal-rate pair (geometric mean over
    seeds; both chosen among the trainable pairs by the train loss at the last evaluated step)."""
    c = curves[curves.width == width]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    looks = dict(zip(["best", "best equal-rate"], zip(series_colours(2), ("o", "s"))))
    n_steps = int(c.step.max())
    for (pair, split), g in c.groupby(["pair", "split"], sort=False):
        mean = g.groupby("step").loss.apply(lambda v: float(np.exp(np.log(v).mean())))
        colour, marker = looks[pair]
        ax.plot(mean.index, mean.values, color=colour, ls="-" if split == "train" else "--", marker=marker,
                markevery=max(1, n_steps // 10), ms=4, mfc=colour if split == "train" else "white",
                label=f"{pair} pair (eta_A {g.eta_a.iloc[0]:.2g}, eta_B {g.eta_b.iloc[0]:.2g}): {split} loss")
    ax.set(yscale="log", xlabel="step (full-batch gradient steps)" if n_steps else "step",
           ylabel=f"loss (geometric mean over {c.seed.nunique()} seeds)",
           title=f"n = {width}: best pair against best equal-rate pair")
    ax.legend(fontsize=7, loc="upper right")
    return ax.figure


def plot_lambda_sweep(optima: pd.DataFrame, fit: dict, gaps: pd.DataFrame | None = None, title: str = ""):
    """lambda*(n), eta_A*(n), eta_B*(n) with intervals against the Theta(n) prediction, and the
    loss gap of the best equal-rate pair against n."""
    fig, axes = plt.subplots(1, 2 if gaps is not None else 1, figsize=(11 if gaps is not None else 5.6, 4.6),
                             layout="constrained", squeeze=False)
    ax = axes[0, 0]
    n = optima.width.to_numpy(float)
    series = [("lambda_star", "lambda* = eta_B* / eta_A* (ratio)", "o"), ("eta_a_star", "eta_A* (learning rate)", "s"),
              ("eta_b_star", "eta_B* (learning rate)", "^")]
    for k, ((name, label, marker), colour) in enumerate(zip(series, series_colours(3))):
        y = optima[name].to_numpy()
        err = np.abs(np.vstack([y - optima[f"{name}_low"], optima[f"{name}_high"] - y]))
        shift = 10 ** (0.012 * (k - 1))  # side by side, so no interval hides another
        ax.errorbar(n * shift, y, yerr=err, marker=marker, capsize=3, color=colour, label=f"{label}, 95% interval")
    lam = optima.lambda_star.to_numpy()
    finite = np.isfinite(lam) & (lam > 0)
    if finite.any():  # slope 1 through the geometric centre of the measured points
        centre = np.exp(np.mean(np.log(lam[finite])) - np.mean(np.log(n[finite])))
        ax.plot(n, centre * n, color="grey", ls=":", label="theory for lambda*: Theta(n) (slope 1, through its points)")
    if fit.get("slope") is not None and np.isfinite(fit["slope"]):
        title += (f"; log-log slopes: lambda* {fit['slope']:+.2f} [{fit['ci_low']:+.2f}, {fit['ci_high']:+.2f}] "
                  f"(theory +1), eta_A* {fit['slope_eta_a']:+.2f} [{fit['slope_eta_a_low']:+.2f}, "
                  f"{fit['slope_eta_a_high']:+.2f}] (-1), eta_B* {fit['slope_eta_b']:+.2f} (0)")
    fig.suptitle(title, fontsize=9)  # over both panels: a long line would be clipped over one
    ax.set_title("optima against width", fontsize=10)
    label_log_axis(ax, n)
    ax.set(yscale="log", xlabel="width n", ylabel="optimal learning rate, or their ratio")
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "fontsize": 7, "frameon": False}
    ax.legend(ncol=2, **below)
    if gaps is not None:
        gx = axes[0, 1]
        gx.plot(gaps.width, gaps.gap, marker="o", color=series_colours(1)[0], label="best equal-rate pair / best pair")
        gx.axhline(1.0, color="grey", ls=":", lw=1, label="1: one shared rate costs nothing")
        label_log_axis(gx, gaps.width)
        gx.set(xlabel="width n", ylabel="loss ratio (best equal-rate / best)", title="what one shared rate costs")
        gx.legend(ncol=2, **below)
    return fig
