"""Figures of a finetune run (studies.reports.finetune): LoRA against LoRA+, best against best.

The accuracies are fractions of the dev sentences classified correctly; the monitor's deltas
are RMS over the coordinates of a layer's output, the median over the measured steps > 1 and
the seeds.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, NullFormatter

from figures.style import label_log_axis, series_colours, series_looks

DEV_ACCURACY = "dev accuracy (fraction correct)"


def plot_accuracy_vs_ratio(best: pd.DataFrame, steps: int):
    """Best-over-lr dev accuracy at the last step against the ratio lambda (mean +- sd over
    seeds), each point labelled with its lr ("edge": the best lr is at the edge of the grid)."""
    fig, ax = plt.subplots(figsize=(5.4, 4.0), layout="constrained")
    look = series_looks(1)[0]
    ax.errorbar(best.ratio, best.dev_acc, yerr=best.dev_acc_std.fillna(0), capsize=3,
                **{k: v for k, v in look.line().items() if k != "zorder"}, label="best over lr: mean +- sd over seeds")
    for r in best.itertuples():
        ax.annotate(f"lr {r.best_lr:.2g}" + ("" if r.bracketed else " (edge)"), (r.ratio, r.dev_acc), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    label_log_axis(ax, best.ratio)
    ax.margins(x=0.2)  # room for the lr labels of the end points
    ax.set(xlabel="LoRA+ ratio lambda = eta_B / eta_A", ylabel=f"{DEV_ACCURACY} at step {steps}",
           title="best dev accuracy against the ratio")
    ax.legend(fontsize=7, loc="lower left")
    return fig


def plot_best_curves(evals: pd.DataFrame, runs: list[tuple[str, float, float]], target: float, target_label: str):
    """Dev accuracy against step of each (label, ratio, lr) in ``runs`` (mean over seeds, band
    +- sd) with the target accuracy as a line."""
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    for (label, ratio, lr), look in zip(runs, series_looks(len(runs))):
        g = evals[(evals.ratio == ratio) & (evals.lr == lr)].groupby("step").dev_acc
        mean, sd = g.mean(), g.std().fillna(0)
        ax.fill_between(mean.index, mean - sd, mean + sd, color=look.colour, alpha=0.15, lw=0)
        ax.plot(mean.index, mean.values, **look.line(), label=f"{label}: ratio {ratio:g}, lr {lr:.2g} (mean +- sd)")
    ax.axhline(target, color="grey", ls=":", lw=1, label=target_label)
    ax.set(xlabel="step (AdamW, batches of sentences)", ylabel=DEV_ACCURACY, title="best LoRA against best LoRA+")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_steps_to_target(reach: pd.DataFrame, target: float, eval_every: int | None):
    """Steps each ratio (at its best lr) takes to reach ``target``; 'never' where it does not."""
    fig, ax = plt.subplots(figsize=(5.4, 3.8), layout="constrained")
    ax.bar([f"{r:g}" for r in reach.ratio], reach.steps.fillna(0), color=series_colours(1)[0])
    for i, s in enumerate(reach.steps):
        ax.annotate("never" if not np.isfinite(s) else f"{s:.0f}", (i, 0 if not np.isfinite(s) else s),
                    ha="center", fontsize=8, textcoords="offset points", xytext=(0, 3))
    every = f" (evaluated every {eval_every})" if eval_every else ""
    ax.set(xlabel="LoRA+ ratio lambda = eta_B / eta_A (each at its best lr)", ylabel=f"steps{every}",
           title=f"steps to reach {target:.3f} dev accuracy")
    ax.margins(y=0.12)
    return fig


def plot_monitor(summary: pd.DataFrame):
    """delta1 (A side) and delta2 (B side) per LoRA layer, one marker per run (``summary``:
    layer, delta1, delta2, run). Points, not bars: a bar on a log axis has no honest base."""
    runs = list(dict.fromkeys(summary.run))
    looks = dict(zip(runs, series_looks(len(runs))))
    layers = list(dict.fromkeys(summary.layer))
    y = {layer: i for i, layer in enumerate(layers)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(layers) + 1.8), sharey=True, layout="constrained")
    for ax, metric, title in zip(axes, ("delta1", "delta2"), ("delta1 = B dA z (A side)", "delta2 = dB A z (B side)")):
        for k, run in enumerate(runs):
            d = summary[summary.run == run]
            offset = (k - (len(runs) - 1) / 2) * 0.18  # side by side within a layer's row, never on top
            look = looks[run]
            ax.scatter(d[metric], [y[layer] + offset for layer in d.layer], marker=look.marker, color=look.colour,
                       s=28, zorder=3)
        ax.set(xscale="log", xlabel=f"{metric} (RMS over coordinates; median over steps > 1 and seeds)", title=title)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # labelled; minor ticks unlabelled
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis="x", which="major", color="0.9", lw=0.6)
    axes[0].set_yticks(range(len(layers)), layers, fontsize=7)
    axes[0].invert_yaxis()
    handles = [Line2D([], [], ls="none", marker=looks[r].marker, color=looks[r].colour, label=r) for r in runs]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(runs), fontsize=8, frameon=False)
    return fig
