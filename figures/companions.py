"""Figures of the companion studies (studies.companions): init, rank, contribution.

Each takes the study's tidy results (init) or its summary table (rank, contribution) and
returns one figure with a single legend below the panels, so no legend covers a point.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from figures.style import label_log_axis, scheme_looks, series_looks

RMS = "RMS over coordinates"
INIT_LABELS = {"1": "Init[1]: B = 0, A random", "2": "Init[2]: A = 0, B random", "zero": "both zero"}


def _shared_legend(fig, handles, ncol: int) -> None:
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def plot_init(results: pd.DataFrame):
    """Loss, delta1 and delta2 against step at the widest width, one row per model, one line
    per init (mean over seeds). Under both-zero init every delta is exactly 0, which a log axis
    cannot show: the legend says so."""
    models = list(dict.fromkeys(results.variant.str.split(",").str[0]))
    inits = list(dict.fromkeys(results.init.astype(str)))
    looks = dict(zip(inits, series_looks(len(inits))))
    width = results.width.max()
    n_seeds = results.seed.nunique()
    fig, axes = plt.subplots(len(models), 3, figsize=(12, 3.2 * len(models) + 0.8), squeeze=False,
                             layout="constrained")
    panels = (("loss", f"loss (mean over {n_seeds} seeds)", "training loss"),
              ("delta1", f"delta1 ({RMS})", "delta1 = B dA z (A side)"),
              ("delta2", f"delta2 ({RMS})", "delta2 = dB A z (B side)"))
    steps = int(results.step.max())
    for row, model in zip(axes, models):
        r = results[results.variant.str.startswith(model + ",") & (results.width == width)]
        for ax, (metric, ylabel, title) in zip(row, panels):
            for init in inits:
                d = r[(r.metric == metric) & (r.init.astype(str) == init)].groupby("step").value.mean()
                d = d[d > 0]
                if len(d):
                    ax.plot(d.index, d.values, **{**looks[init].line(), "markevery": max(1, steps // 8)})
            ax.set(yscale="log", xlabel="step (Adam)", ylabel=ylabel, title=f"{model}, n = {width}: {title}")
    handles = [Line2D([], [], **looks[i].line(), label=INIT_LABELS.get(i, f"init {i}")
                      + (" (every delta exactly 0: off the log axes)" if i == "zero" else "")) for i in inits]
    _shared_legend(fig, handles, len(handles))
    fig.suptitle("init: which LoRA matrix starts at zero (LoRA+ rates, Adam)")
    return fig


def plot_rank(summary: pd.DataFrame):
    """The feature update at step 2, ||dW|| and the loss at the last step against the rank,
    under alpha/r and alpha/sqrt(r) (the summary table of ``studies.companions``)."""
    last = next(c for c in summary.columns if c.startswith("loss (step ")).split("step ")[1].rstrip(")")
    scalings = list(dict.fromkeys(summary.alpha_scaling))
    looks = dict(zip(scalings, series_looks(len(scalings))))
    panels = (("dz_b (step 2)", f"dz_b at step 2 ({RMS})", "feature update dz_b"),
              (f"dw_fro (step {last})", f"||B A - B0 A0||_F at step {last}", "weight update ||dW||_F"),
              (f"loss (step {last})", f"loss at step {last} (mean over seeds)", "training loss"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.0), layout="constrained")
    for ax, (col, ylabel, title) in zip(axes, panels):
        for scaling in scalings:
            g = summary[summary.alpha_scaling == scaling].sort_values("rank")
            ax.plot(g["rank"], g[col], **looks[scaling].line())
        label_log_axis(ax, summary["rank"])
        ax.set(yscale="log", xlabel="LoRA rank r", ylabel=ylabel, title=title)
    slopes = summary.groupby("alpha_scaling")["dz_b slope vs rank"].first() if "dz_b slope vs rank" in summary else {}
    handles = [Line2D([], [], **looks[s].line(), label=f"{s}" + (f" (dz_b ~ r^{slopes[s]:+.2f})" if s in slopes else ""))
               for s in scalings]
    _shared_legend(fig, handles, len(handles))
    fig.suptitle("rank: alpha/r against alpha/sqrt(r) at fixed alpha = 8 (mlp, Adam, LoRA+ rates); "
                 "dz_b and ||dW|| are geometric means over seeds")
    return fig


def plot_contribution(summary: pd.DataFrame):
    """A's share of the first-order loss decrease against width, one panel per step, one line
    per scheme (the summary table of ``studies.companions``: median over seeds)."""
    cols = [c for c in summary.columns if c.startswith("share_a")]
    schemes = list(dict.fromkeys(summary.scheme))
    looks = scheme_looks(schemes)
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 4.0), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, col in zip(axes[0], cols):
        for scheme in schemes:
            g = summary[summary.scheme == scheme].sort_values("width")
            ax.plot(g.width, g[col], **looks[scheme].line())
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        label_log_axis(ax, summary.width)
        ax.set(xlabel="width n", ylim=(0, 1), title=col.replace("share_a ", "at "))
    axes[0, 0].set_ylabel("A's share of the loss decrease (median over seeds)")
    handles = [Line2D([], [], **looks[s].line(), label=s) for s in schemes]
    handles.append(Line2D([], [], color="grey", ls=":", lw=1, label="0.5: A and B contribute equally"))
    _shared_legend(fig, handles, len(handles))
    fig.suptitle("contribution: A's share of the first-order loss decrease (linear, Adam, Init[1])")
    return fig
