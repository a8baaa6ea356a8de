"""The coordinate-check figure: value against width, log-log, one line per scheme."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from scaling.theory import fmt  # noqa: E402

PANEL_METRICS = ("delta1", "delta2", "delta3", "z_a", "dz_b")


def plot_coord_check(results: pd.DataFrame, step: int, exponents: pd.DataFrame | None = None,
                     layer: str | None = None, metrics=PANEL_METRICS, title: str = ""):
    """One panel per metric: geometric mean over seeds against width at ``step``.

    results: tidy table of ONE (model, optimizer, init); exponents: the matching rows of
    exponents.csv (slope and predicted go into the legend), optional.
    """
    at = results[(results.step == step) & (results.value > 0)]
    layer = layer or (at.layer.iloc[0] if len(at) else "lora")
    at = at[at.layer == layer]
    schemes = list(dict.fromkeys(results.scheme))
    colours = dict(zip(schemes, sns.color_palette("colorblind", len(schemes))))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for scheme in schemes:
            d = at[(at.metric == metric) & (at.scheme == scheme)]
            if d.empty:
                continue
            curve = d.groupby("width").value.apply(lambda v: float(np.exp(np.log(v).mean())))
            label = scheme
            if exponents is not None:
                e = exponents[(exponents.scheme == scheme) & (exponents.metric == metric)
                              & (exponents.step == step) & (exponents.layer == layer)]
                if len(e):
                    e = e.iloc[0]
                    fitted = "-" if pd.isna(e.slope) else f"{e.slope:+.2f}"
                    label = f"{scheme}: {fitted} (th {fmt(e.predicted)})"
            ax.plot(curve.index, curve.values, "o-", color=colours[scheme], label=label, ms=3)
        ax.set(xscale="log", yscale="log", xlabel="width n", title=f"{metric} (step {step})")
        widths = sorted(at.width.unique())
        ax.set_xticks(widths, [str(w) for w in widths], fontsize=6, rotation=45)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(title or f"coordinate check, layer {layer}", fontsize=9)
    fig.tight_layout()
    return fig
