"""Learning-rate grid figures: the paper's Fig. 2 heatmaps, best-pair loss curves, lambda*(n)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from scaling.optimum import DEFAULT_REL_TOL, near_optimal  # noqa: E402


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges of a log-spaced axis."""
    lv = np.log10(values)
    step = lv[1] - lv[0] if len(lv) > 1 else 1.0
    return 10 ** np.concatenate([lv - step / 2, [lv[-1] + step / 2]])


def plot_heatmap(grid: pd.DataFrame, width: int, step: int, split: str, rel_tol: float = DEFAULT_REL_TOL, ax=None):
    """Seed-mean loss over (eta_A, eta_B) at one width, step and split (rows of the lr-grid
    table). Pairs within ``rel_tol`` of the best are marked, the eta_A = eta_B diagonal drawn,
    diverged pairs left blank (as in the paper's Fig. 2)."""
    g = grid[(grid.width == width) & (grid.step == step) & (grid.split == split)].copy()
    g["log_loss"] = np.log(g.loss.where(np.isfinite(g.loss) & (g.loss > 0)))
    mean = g.groupby(["eta_b", "eta_a"]).log_loss.mean().unstack()      # rows eta_B, columns eta_A
    a, b = mean.columns.to_numpy(float), mean.index.to_numpy(float)
    loss = np.exp(mean.to_numpy())
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.4))
    finite = loss[np.isfinite(loss)]
    mesh = ax.pcolormesh(_edges(a), _edges(b), np.ma.masked_invalid(loss), cmap="viridis_r",
                         norm=LogNorm(vmin=finite.min(), vmax=min(finite.max(), finite.min() * 1e3)))
    plt.colorbar(mesh, ax=ax, label=f"{split} loss (mean over seeds)")
    near = near_optimal(np.where(np.isfinite(mean.to_numpy()), mean.to_numpy(), np.inf).ravel(), rel_tol)
    bb, aa = np.meshgrid(b, a, indexing="ij")
    ax.scatter(aa.ravel()[near], bb.ravel()[near], marker="o", s=14, facecolor="white", edgecolor="black",
               label=f"within {100 * rel_tol:g}% of best")
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    ax.plot([lo, hi], [lo, hi], color="red", lw=1, ls="--", label="eta_A = eta_B")
    ax.set(xscale="log", yscale="log", xlabel="eta_A", ylabel="eta_B", title=f"n = {width}, t = {step}, {split}")
    ax.legend(loc="lower right", fontsize=7)
    return ax.figure


def plot_best_curves(curves: pd.DataFrame, width: int, ax=None):
    """Loss against step of the best pair and the best equal-rate pair (mean over seeds)."""
    c = curves[curves.width == width]
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.8))
    palette = dict(zip(["best", "best equal-rate"], sns.color_palette("deep", 2)))
    for (pair, split), g in c.groupby(["pair", "split"], sort=False):
        mean = g.groupby("step").loss.mean()
        label = f"{pair} (eta_A {g.eta_a.iloc[0]:.2g}, eta_B {g.eta_b.iloc[0]:.2g}), {split}"
        ax.plot(mean.index, mean.values, color=palette[pair], ls="-" if split == "train" else ":", label=label)
    ax.set(yscale="log", xlabel="step", ylabel="loss", title=f"n = {width}: best pair vs best equal-rate pair")
    ax.legend(fontsize=7)
    return ax.figure


def plot_lambda_sweep(optima: pd.DataFrame, fit: dict, gaps: pd.DataFrame | None = None, title: str = ""):
    """lambda*(n), eta_A*(n), eta_B*(n) with intervals against the Theta(n) prediction, and the
    loss gap of the best equal-rate pair against n."""
    fig, axes = plt.subplots(1, 2 if gaps is not None else 1, figsize=(10 if gaps is not None else 5.2, 4))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    n = optima.width.to_numpy(float)
    colours = sns.color_palette("deep", 3)
    for (name, label), colour in zip([("lambda_star", "lambda* = eta_B*/eta_A*"), ("eta_a_star", "eta_A*"),
                                      ("eta_b_star", "eta_B*")], colours):
        y = optima[name].to_numpy()
        err = np.abs(np.vstack([y - optima[f"{name}_low"], optima[f"{name}_high"] - y]))
        ax.errorbar(n, y, yerr=err, marker="o", capsize=3, color=colour, label=label)
    lam = optima.lambda_star.to_numpy()
    finite = np.isfinite(lam) & (lam > 0)
    if finite.any():  # slope 1 through the geometric centre of the measured points
        centre = np.exp(np.mean(np.log(lam[finite])) - np.mean(np.log(n[finite])))
        ax.plot(n, centre * n, color="grey", ls="--", label="Theta(n) (theory; slope 1 through the points' centre)")
    if fit.get("slope") is not None and np.isfinite(fit["slope"]):
        ax.set_title(f"{title}\nslopes: lambda* {fit['slope']:+.2f} [{fit['ci_low']:+.2f}, {fit['ci_high']:+.2f}] "
                     f"(theory +1), eta_A* {fit['slope_eta_a']:+.2f} [{fit['slope_eta_a_low']:+.2f}, "
                     f"{fit['slope_eta_a_high']:+.2f}] (-1), eta_B* {fit['slope_eta_b']:+.2f} (0)", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="width n", ylabel="learning rate / ratio")
    ax.legend(fontsize=7)
    if gaps is not None:
        axes[1].plot(gaps.width, gaps.gap, marker="o")
        axes[1].set(xscale="log", xlabel="width n", ylabel="best equal-rate loss / best loss",
                    title="what one shared rate costs")
    fig.tight_layout()
    return fig
