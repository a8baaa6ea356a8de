"""The coordinate-check figure: value against width, log-log, one line per scheme."""
from __future__ import annotations

import textwrap

import matplotlib.ticker
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from figures.style import scheme_looks
from scaling.exponents import fmt

PANEL_METRICS = ("delta1", "delta2", "delta3", "z_a", "dz_b")
# What each metric is and its unit, for the y-axis (scaling.measure).
METRIC_AXES = {
    "delta1": "delta1 = B dA z, coordinate RMS",
    "delta2": "delta2 = dB A z, coordinate RMS",
    "delta3": "delta3 = dB dA z, coordinate RMS",
    "dz_b": "dZ_B (one step's change), coordinate RMS",
    "z_a": "Z_A = A z, coordinate RMS",
    "dz_a": "dZ_A = (A - A_init) z, coordinate RMS",
    "dw_fro": "||dW||_F",
    "dw_op": "||dW||_2 (operator norm)",
    "loss_drop": "loss decrease of the step\n(first order, loss units)",
}
_CLAIM_PREFIX = {"upper bound": "<= ", "none": "none "}


def _legend_label(scheme: str, row) -> str:
    """'scheme: fitted slope (theory: predicted exponent)'."""
    if row is None:
        return scheme
    fitted = "-" if pd.isna(row.slope) else f"{row.slope:+.2f}"
    claim = getattr(row, "claim", "exact")
    theory = "none" if claim == "none" else _CLAIM_PREFIX.get(claim, "") + fmt(row.predicted)
    return f"{scheme}: {fitted} (theory: {theory})"


def plot_coord_check(results: pd.DataFrame, step: int, exponents: pd.DataFrame | None = None,
                     layer: str | None = None, metrics=PANEL_METRICS, title: str = ""):
    """One panel per metric: geometric mean over seeds against width at ``step``.

    results: tidy table of ONE (model, optimizer, init); exponents: the matching rows of
    exponents.csv (fitted slope and predicted exponent go into the legend), optional. Each
    panel's legend sits below it, so no legend covers a point.
    """
    at = results[(results.step == step) & (results.value > 0)]
    layer = layer or (at.layer.iloc[0] if len(at) else "lora")
    at = at[at.layer == layer]
    looks = scheme_looks(results.scheme)
    width = max(3.3 * len(metrics), 5.0)
    title = textwrap.fill((title or f"coordinate check, layer {layer}") + "; geometric mean over seeds",
                          int(width * 13))  # about 13 characters of a 9 pt title per inch
    fig, axes = plt.subplots(1, len(metrics), figsize=(width, 4.3 + 0.15 * title.count("\n")), squeeze=False)
    _fixed_margins(fig, len(metrics), title.count("\n") + 1)
    widths = sorted(at.width.unique())
    for ax, metric in zip(axes[0], metrics):
        for scheme, look in looks.items():
            d = at[(at.metric == metric) & (at.scheme == scheme)]
            if d.empty:
                continue
            curve = d.groupby("width").value.apply(lambda v: float(np.exp(np.log(v).mean())))
            row = None
            if exponents is not None:
                e = exponents[(exponents.scheme == scheme) & (exponents.metric == metric)
                              & (exponents.step == step) & (exponents.layer == layer)]
                row = e.iloc[0] if len(e) else None
            ax.plot(curve.index, curve.values, label=_legend_label(scheme, row), **look.line())
        ax.set(xscale="log", yscale="log", xlabel="width n", title=f"{metric}, step {step}")
        ax.set_ylabel(METRIC_AXES.get(metric, metric), fontsize=8)
        ax.set_xticks(widths, [str(w) for w in widths], fontsize=6, rotation=45)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.tick_params(axis="y", which="both", labelsize=7)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False,
                      title="scheme: fitted slope (theory: exponent)" if exponents is not None else None,
                      title_fontsize=6)
    fig.suptitle(title, fontsize=9)
    return fig


def _fixed_margins(fig, panels: int, title_lines: int = 1) -> None:
    """Margins in inches for panels side by side, each with a y label and a legend below:
    fixed, because tight_layout measured every tick label again and cost more than drawing."""
    width, height = fig.get_size_inches()
    left, right, gap, bottom, top = 0.75, 0.15, 0.95, 1.8, 0.45 + 0.15 * title_lines   # inches
    axis = (width - left - right - gap * (panels - 1)) / panels
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=gap / axis)
