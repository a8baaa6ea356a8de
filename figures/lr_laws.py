"""Learning-rate law figures: the muP-style transfer plot, edges and corner against n (or r) with
the predicted slopes, and the ratio profile (identified optimum or ridge)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from figures.style import label_log_axis, series_colours, series_looks

SLICE_LABELS = {"b-edge": "B edge: eta_B (eta_A ~ 1/n held)", "a-edge": "A edge: eta_A (eta_B held)",
                "one-rate": "one-rate edge: eta", "ratio": "ratio edge: eta_A (lambda ~ n held)",
                "corner": "corner lambda_c"}


def _predicted_line(ax, x: np.ndarray, y: np.ndarray, slope, colour) -> None:
    """A line of the predicted slope through the geometric centre of the measured points."""
    ok = np.isfinite(y) & (y > 0)
    if slope is None or not np.isfinite(slope) or ok.sum() < 1:
        return
    lx, ly = np.log(x[ok]), np.log(y[ok])
    c = ly.mean() - slope * lx.mean()
    xs = np.array([x[ok].min(), x[ok].max()])
    ax.plot(xs, np.exp(c) * xs ** slope, color=colour, ls=":", lw=1.2)


def plot_transfer(curves: pd.DataFrame, x: str, panels: list[tuple[str, str, float]], fraction: float | None,
                  title: str = ""):
    """Loss at step T over its start (seed mean) against log2 of the rate, one curve per width (or
    rank): the muP-style transfer plot. panels: (slice key, x-axis label, n0) per panel; n0 > 0
    plots the rate times x / n0 (the scheme's base rate: for LoRA+'s ratio slice, eta_A n / n0)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False)
    values = sorted(curves[x].unique())
    colours = dict(zip(values, series_colours(len(values))))
    for ax, (key, label, n0) in zip(axes[0], panels):
        c = curves[curves.slice == key]
        for v, g in c.groupby(x, sort=True):
            rate = g.rate.to_numpy(float) * (v / n0 if n0 else 1.0)
            y = g.loss_ratio.to_numpy(float)
            y = np.where(np.isfinite(y), y, np.nan)
            ax.plot(np.log2(rate), y, color=colours[v], marker=".", ms=4, lw=1.2, label=f"{x[0]} = {v}")
        if fraction is not None:
            ax.axhline(fraction, color="grey", ls="--", lw=0.8, label=f"edge criterion f = {fraction:g}")
        ax.set(yscale="log", xlabel=label, ylabel="loss(T) / loss(0), mean over seeds", title=key)
        top = np.nanmax(np.where(np.isfinite(c.loss_ratio), c.loss_ratio, np.nan)) if len(c) else 10
        ax.set_ylim(top=min(max(top, 2.0), 1e3))
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_edges(summary: pd.DataFrame, laws: pd.DataFrame, x: str, title: str = ""):
    """Each slice's edge (geometric seed mean, 95% interval) against width (or rank) with the
    predicted slope (dotted, through the points' centre); the corner on its own panel."""
    slices = [s for s in summary.slice.unique() if s != "corner"]
    has_corner = "corner" in set(summary.slice)
    fig, axes = plt.subplots(1, 2 if has_corner else 1, figsize=(11 if has_corner else 5.8, 4.2), squeeze=False)
    colours = dict(zip(slices + ["corner"], series_colours(len(slices) + 1)))
    drawn = set()
    for key in slices + (["corner"] if has_corner else []):
        ax = axes[0][1] if key == "corner" else axes[0][0]
        s = summary[summary.slice == key].sort_values(x)
        xs, y = s[x].to_numpy(float), s.edge.to_numpy(float)
        if not np.isfinite(y).any():  # every point censored: the dashed lines below say where
            for v in s[x]:
                ax.axvline(v, color=colours[key], ls="--", lw=0.6, alpha=0.5)
            continue
        err = np.abs(np.vstack([y - s.edge_low.to_numpy(float), s.edge_high.to_numpy(float) - y]))
        law = laws[laws.slice == (key if key != "corner" else "b-edge / a-edge")]
        text = ""
        if len(law):
            r = law.iloc[0]
            pred = "none" if r.predicted is None or not np.isfinite(r.predicted) else f"{r.predicted:+g}"
            text = f": {r.slope:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}] vs {pred} ({r.verdict})" if np.isfinite(r.slope) else ""
            _predicted_line(ax, xs, y, r.predicted if r.predicted is not None else None, colours[key])
        name = key.split(" ")[0] if key.startswith("ratio") else key
        ax.errorbar(xs, y, yerr=err, marker="o", ms=4, capsize=3, color=colours[key],
                    label=SLICE_LABELS.get(name, key) + text)
        drawn.add(id(ax))
        cens = s[s.censored != ""]
        for v in cens[x]:
            ax.axvline(v, color=colours[key], ls="--", lw=0.6, alpha=0.5)
    for ax, ylabel in zip(axes[0], ["edge rate", "lambda_c = eta_B,edge / eta_A,edge"]):
        ax.set(xlabel="width n" if x == "width" else "rank r", ylabel=ylabel)
        if id(ax) in drawn:
            ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
    fig.suptitle(title + "  (dotted: predicted slope; dashed vertical: a censored edge)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_profile(profiles: pd.DataFrame, title: str = "", rel_tol: float = 0.25):
    """The best loss over eta_A at each ratio lambda (seed mean), one curve per width; filled
    markers: ratios within ``rel_tol`` of the best (the near-optimal set)."""
    fig, ax = plt.subplots(figsize=(5.8, 4))
    colours = series_colours(len(profiles))
    for colour, (_, r) in zip(colours, profiles.sort_values("width").iterrows()):
        lam = np.array([float(v) for v in r.ratios.split()])
        prof = np.array([float(v) for v in r.profile.split()])
        prof = np.where(np.isfinite(prof), prof, np.nan)
        near = prof <= np.nanmin(prof) * (1 + rel_tol)
        label = f"n = {r.width}: {'identified' if r.identified else 'ridge'}, {r.span_decades:.1f} decades near-optimal"
        ax.plot(np.log2(lam), prof, color=colour, lw=1.2, label=label)
        ax.plot(np.log2(lam[near]), prof[near], "o", color=colour, ms=5)
        ax.plot(np.log2(lam[~near]), prof[~near], "o", color=colour, mfc="none", ms=4)
    ax.set(yscale="log", xlabel="log2 lambda = log2(eta_B / eta_A)", ylabel="best loss(T) over eta_A",
           title=title + f"\nprofile over the ratio (filled: within {100 * rel_tol:g}% of the best)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plain_log_ticks(fig) -> None:
    """Plain tick labels (0.01, 1e+03) on every log axis of ``fig``: matplotlib's default 10^k
    labels go through mathtext, which made drawing the lr-laws figures cost minutes of CPU."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(plain)
                axis.set_minor_formatter(NullFormatter())


def plot_rank(summary: pd.DataFrame, laws: pd.DataFrame, title: str = ""):
    """The one-rate edge against the rank, one line per configuration (init, LoRA scale, B0
    variance), with each one's predicted slope (dotted) and its measured slope in the legend."""
    configs = list(dict.fromkeys(summary.config))
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    for colour, config in zip(series_colours(len(configs)), configs):
        s = summary[summary.config == config].sort_values("rank")
        xs, y = s["rank"].to_numpy(float), s.edge.to_numpy(float)
        err = np.abs(np.vstack([y - s.edge_low.to_numpy(float), s.edge_high.to_numpy(float) - y]))
        law = laws[(laws.config == config) & (laws.law == "one-rate edge")]
        text = ""
        if len(law):
            r = law.iloc[0]
            pred = None if r.predicted is None or not np.isfinite(r.predicted) else r.predicted
            text = (f": {r.slope:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}] vs {'none' if pred is None else f'{pred:+g}'}"
                    f" ({r.verdict})" if np.isfinite(r.slope) else "")
            _predicted_line(ax, xs, y, pred, colour)
        label = config.split("/n=")[0].replace("linear/adam/", "")
        ax.errorbar(xs, y, yerr=err, marker="o", ms=4, capsize=3, color=colour, label=label + text)
    ax.set(xscale="log", yscale="log", xlabel="rank r", ylabel="one-rate edge eta")
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title + "  (dotted: predicted slope)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_transfer_gaps(table: pd.DataFrame, title: str = ""):
    """The transfer test: each rule's loss gap (loss after T steps at the rule's rates over the
    loss at rates retuned at that width; geometric mean over seeds, 95% interval) against width,
    one line per rule; 1 is as good as retuning. A diverged rule is drawn at the top edge."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    rules = list(dict.fromkeys(table.rule))
    finite = table.gap[np.isfinite(table.gap)]
    top = float(max(finite.max() * 1.5, 2.0)) if len(finite) else 10.0
    for rule, look in zip(rules, series_looks(len(rules))):
        g = table[table.rule == rule].sort_values("width")
        y = np.where(np.isfinite(g.gap), g.gap, top)
        lo = np.where(np.isfinite(g.gap_low), g.gap_low, top)
        hi = np.where(np.isfinite(g.gap_high), g.gap_high, top)
        ax.errorbar(g.width, y, yerr=[y - lo, hi - y], capsize=3, label=rule, **look.line())
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="width n (rates tuned at the narrowest)",
           ylabel="loss(T) at the rule's rates / at retuned rates", title=title)
    label_log_axis(ax, sorted(table.width.unique()))
    ax.set_ylim(0.9, top * 1.1)
    ax.legend(fontsize=7, title="transfer rule", title_fontsize=7)
    fig.tight_layout()
    return fig
