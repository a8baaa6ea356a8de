"""Phase diagram over (gA, gB): theory's classes as regions, measured verdicts as markers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from scaling.theory import CLASSES, phase_diagram  # noqa: E402

MARKERS = {"PASS": ("o", "black"), "FAIL": ("X", "red"), "INCONCLUSIVE": ("s", "grey")}


def plot_phase_diagram(optimizer: str, init: str, model: str = "linear",
                       measured: pd.DataFrame | None = None, ax=None):
    """measured: rows with gA, gB, verdict (one marker per scheme, the scheme's worst verdict)."""
    gAs, gBs, grid = phase_diagram(optimizer, init, model)
    colours = sns.color_palette("pastel", len(CLASSES))
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.2))
    step = gAs[1] - gAs[0]
    extent = [gAs[0] - step / 2, gAs[-1] + step / 2, gBs[0] - step / 2, gBs[-1] + step / 2]
    ax.imshow(grid, origin="lower", extent=extent, cmap=ListedColormap(colours),
              vmin=-0.5, vmax=len(CLASSES) - 0.5, aspect="auto", interpolation="nearest")
    ax.plot([-1], [0], marker="*", ms=14, color="gold", mec="black", ls="none", label="LoRA+ (-1, 0)")
    xs = np.array([gAs[0], gAs[-1]])
    ax.plot(xs, xs, "k:", lw=0.8, label="eta_A = eta_B")
    if measured is not None:
        for verdict, (marker, colour) in MARKERS.items():
            m = measured[measured.verdict == verdict]
            if len(m):
                ax.scatter(m.gA, m.gB, marker=marker, c=colour, s=60, label=f"measured: {verdict}", zorder=3)
    present = sorted(set(np.unique(grid)))
    handles = [Patch(color=colours[i], label=CLASSES[i]) for i in present]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=6, loc="lower left")
    ax.set(xlabel="gA (eta_A ~ n^gA)", ylabel="gB (eta_B ~ n^gB)",
           title=f"{optimizer}, init {init}, model {model}")
    return ax.figure


# -- the trainable region's edges: theory's boundary, the slices, measured edges on them -----------
def _held_n(value) -> float:
    """The n-exponent of a held quantity given as a number, a (h_n, h_r) pair or its text."""
    if isinstance(value, str):
        value = [float(v) for v in value.strip("()[] ").split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return float(value[0])
    return float(value)


def _on_slice(slice_: str, held: float, g: float) -> tuple[float, float]:
    """(gA, gB) of the point with varied exponent g on a slice whose held quantity is n^held."""
    return {"b-edge": (held, g), "a-edge": (g, held), "one-rate": (g, g), "ratio": (g, g + held)}[slice_]


def plot_phase_edges(optimizer: str, init: str, model: str = "linear", measured: pd.DataFrame | None = None,
                     alpha_scaling: str = "r", slices=None, ax=None, gA_range=(-2.0, 1.0), gB_range=(-2.0, 1.0)):
    """The phase diagram with the trainable region's edges (exponents in n, r fixed).

    Draws theory's classes (where ``scaling.theory`` covers the setting), the boundary of OUTPUT
    stability from ``scaling.laws`` (solid: the B edge at every gA; dashed where the hidden
    features leave O(1) earlier than the loss sees), every slice as a line in (gA, gB) with the theory's edge on
    it (open diamond), and, from ``measured`` (columns slice, held, slope, lo, hi: the fitted
    n-slope of each slice's edge, its CI and the held exponent), the measured edge as a point on
    its line with the CI drawn along the line.
    """
    from figures.style import series_colours
    from scaling.laws import DEFAULT_HELD, SLICES, predict_edge

    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 4.6))
    try:
        plot_phase_diagram(optimizer, init, model, ax=ax)
    except ValueError:  # scaling.theory has no classes here (e.g. GD on the paper-mlp): edges only
        ax.set(xlabel="gA (eta_A ~ n^gA)", ylabel="gB (eta_B ~ n^gB)", title=f"{optimizer}, init {init}, model {model}")
    # The boundary: for each gA, the B edge of the b-edge slice held at eta_A = n^gA (the
    # largest gB whose output stays O(1); stability is monotone in gB). Edges settle by step 3.
    gAs = np.round(np.arange(gA_range[0], gA_range[1] + 1e-9, 0.02), 6)
    edges = [predict_edge(model, optimizer, init, "b-edge", (a, 0), alpha_scaling, "n", steps=3) for a in gAs]
    loss = np.array([np.nan if e.exponent is None and e.upper is None else e.exponent if e.exponent is not None
                     else e.upper for e in edges], dtype=float)
    feature = np.array([v if e.exponent is not None or e.upper is None else
                        (np.nan if e.lower is None else e.lower) for e, v in zip(edges, loss)], dtype=float)
    floor = gB_range[0] - 1.0  # where no gB is stable at this gA: the boundary drops off the chart
    for curve, style, label in ((loss, "-", "output edge (theory)"), (feature, "--", "feature edge (theory)")):
        if np.isnan(curve).all() or (style == "--" and np.array_equal(curve, loss, equal_nan=True)):
            continue
        ax.plot(gAs, np.where(np.isnan(curve), floor, curve), color="black", ls=style, lw=1.6, label=label)
    if slices is None:
        slices = list(dict.fromkeys(measured.slice)) if measured is not None and len(measured) else list(SLICES)
    colours = dict(zip(SLICES, series_colours(len(SLICES))))
    for s in slices:
        helds = ([_held_n(h) for h in dict.fromkeys(measured[measured.slice == s].held.map(str))]
                 if measured is not None and "held" in measured and (measured.slice == s).any()
                 else [DEFAULT_HELD[s][0] if DEFAULT_HELD[s] else 0.0])
        for h in helds:
            ends = [_on_slice(s, h, g) for g in (min(gA_range[0], gB_range[0]) - 1, max(gA_range[1], gB_range[1]) + 1)]
            ax.plot(*zip(*ends), color=colours[s], lw=0.9, alpha=0.8, label=f"slice {s}" + (f" (held n^{h:g})" if s != "one-rate" else ""))
            pred = predict_edge(model, optimizer, init, s, (h, 0), alpha_scaling, "n", steps=3)
            if pred.exponent is not None:
                ax.plot(*_on_slice(s, h, pred.exponent), marker="D", ms=8, mfc="none", mec=colours[s], mew=1.6, ls="none")
            if measured is None:
                continue
            rows = measured[(measured.slice == s) & (measured.held.map(_held_n) == h)] if "held" in measured else \
                measured[measured.slice == s]
            for _, row in rows.iterrows():
                lo, hi = _on_slice(s, h, row.lo), _on_slice(s, h, row.hi)
                ax.plot([lo[0], hi[0]], [lo[1], hi[1]], color=colours[s], lw=3, alpha=0.6, solid_capstyle="butt")
                ax.plot(*_on_slice(s, h, row.slope), marker="o", ms=6, color=colours[s], mec="black", ls="none", zorder=4)
    ax.plot([], [], marker="D", mfc="none", mec="grey", ls="none", label="predicted edge")
    if measured is not None:
        ax.plot([], [], marker="o", color="grey", mec="black", ls="none", label="measured edge (95% CI along the slice)")
    ax.set_xlim(gA_range)
    ax.set_ylim(gB_range)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.figure.tight_layout()
    return ax.figure
