"""Phase diagram over (gA, gB): theory's classes as regions, measured schemes as points coloured
by the share of their checks that PASS; and the trainable region's edges with measured edges.
The theory comes computed (``scaling.phase``): these functions only draw it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from scaling.laws import DEFAULT_HELD, SLICES
from scaling.phase import PhaseDiagram, PhaseEdges
from scaling.rules import parse_scheme
from scaling.theory import CLASSES

PASS_CMAP = "cividis"  # colour-blind safe, and dark to light reads as little to much


def phase_points(exponents: pd.DataFrame) -> pd.DataFrame:
    """One row per scheme of an exponents table (scaling.verdicts.compare): scheme, gA, gB and
    its checks counted: n_checks, n_pass, n_fail, share_pass."""
    counts = exponents.groupby("scheme", sort=False).verdict.agg(
        n_checks="size", n_pass=lambda v: int((v == "PASS").sum()), n_fail=lambda v: int((v == "FAIL").sum()))
    rows = [{"scheme": s, "gA": parse_scheme(s).gA, "gB": parse_scheme(s).gB, **c}
            for s, c in counts.to_dict("index").items()]
    return pd.DataFrame(rows).assign(share_pass=lambda d: d.n_pass / d.n_checks)


def plot_phase_diagram(diagram: PhaseDiagram, measured: pd.DataFrame | None = None, ax=None,
                       measured_on: str | None = None):
    """The theory's class at every (gA, gB) (``scaling.phase.phase_diagram``); measured:
    ``phase_points`` rows, drawn as circles coloured by their share of PASS (colour bar),
    labelled with the scheme and PASS count N/M, ringed in red where any check FAILed.
    measured_on: what the points were measured on, for the title (default: the diagram's model)."""
    optimizer, init, model = diagram.optimizer, diagram.init, diagram.model
    gAs, gBs, grid = diagram.gA, diagram.gB, diagram.classes
    colours = sns.color_palette("pastel", len(CLASSES))
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 6.0))
    step = gAs[1] - gAs[0]
    extent = [gAs[0] - step / 2, gAs[-1] + step / 2, gBs[0] - step / 2, gBs[-1] + step / 2]
    ax.imshow(grid, origin="lower", extent=extent, cmap=ListedColormap(colours),
              vmin=-0.5, vmax=len(CLASSES) - 0.5, aspect="auto", interpolation="nearest")
    xs = np.array([gAs[0], gAs[-1]])
    ax.plot(xs, xs, "k:", lw=0.8)
    handles = [Patch(color=colours[i], label=_class_label(i, gAs, gBs, grid)) for i in sorted(set(np.unique(grid)))]
    handles.append(Line2D([], [], ls=":", color="black", lw=0.8, label="eta_A = eta_B (gA = gB)"))
    if measured is None or measured.empty:
        ax.plot([-1], [0], marker="*", ms=14, color="gold", mec="black", ls="none")
        handles.append(Line2D([], [], marker="*", ms=10, color="gold", mec="black", ls="none", label="LoRA+ (-1, 0)"))
    else:
        points = ax.scatter(measured.gA, measured.gB, c=measured.share_pass, cmap=PASS_CMAP, vmin=0, vmax=1,
                            s=110, edgecolors=np.where(measured.n_fail > 0, "red", "black"),
                            linewidths=np.where(measured.n_fail > 0, 2.2, 0.8), zorder=3)
        for r in measured.itertuples():
            fails = f", {r.n_fail} FAIL" if r.n_fail else ""
            ax.annotate(f"{r.scheme}\n{r.n_pass}/{r.n_checks} PASS{fails}", (r.gA, r.gB), xytext=(8, -4),
                        textcoords="offset points", fontsize=7, va="top", zorder=4,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
        plt.colorbar(points, ax=ax, pad=0.02, label="share of the scheme's checks that PASS")
        if (measured.n_fail > 0).any():
            handles.append(Line2D([], [], marker="o", ms=8, mfc="white", mec="red", mew=2, ls="none",
                                  label="a check FAILed"))
    ax.legend(handles=handles, fontsize=7, title=f"theory's class ({model} model)", title_fontsize=7,
              loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    ax.set(xlabel="gA (eta_A ~ n^gA)", ylabel="gB (eta_B ~ n^gB)", xlim=extent[:2], ylim=extent[2:])
    where = f"; points measured on {measured_on}" if measured is not None and measured_on else ""
    ax.set_title(f"{optimizer}, init {init}: classes of the {model} model{where}", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def _class_label(index: int, gAs, gBs, grid) -> str:
    """The class's name, with its only point where the class is a single grid cell (easily hidden)."""
    rows, cols = np.nonzero(grid == index)
    if rows.size == 1:
        return f"{CLASSES[index]}: only at ({gAs[cols[0]]:g}, {gBs[rows[0]]:g})"
    return CLASSES[index]


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


def measured_slices(measured: pd.DataFrame | None) -> dict[str, list[float]] | None:
    """The slices and held n-exponents a measured edge table (columns slice, held) was taken on,
    for ``scaling.phase.phase_edges``; None (every slice at its default) when there is none."""
    if measured is None or not len(measured):
        return None
    return {s: ([_held_n(h) for h in dict.fromkeys(measured[measured.slice == s].held.map(str))] if "held" in measured
                else [DEFAULT_HELD[s][0] if DEFAULT_HELD[s] else 0.0]) for s in dict.fromkeys(measured.slice)}


def plot_phase_edges(edges: PhaseEdges, measured: pd.DataFrame | None = None, ax=None):
    """The phase diagram with the trainable region's edges (exponents in n, r fixed;
    ``scaling.phase.phase_edges``).

    Draws theory's classes (where the theory has them), the boundary of OUTPUT stability (solid:
    the B edge at every gA; dashed where the hidden features leave O(1) earlier than the loss
    sees), every slice as a line in (gA, gB) with the theory's edge on it (open diamond), and,
    from ``measured`` (columns slice, held, slope, lo, hi: the fitted n-slope of each slice's
    edge, its CI and the held exponent), the measured edge as a point on its line with the CI
    drawn along the line.
    """
    from figures.style import series_colours

    optimizer, init, model = edges.optimizer, edges.init, edges.model
    gA_range, gB_range = edges.gA_range, edges.gB_range
    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 4.6))
    if edges.diagram is not None:
        plot_phase_diagram(edges.diagram, ax=ax)
    else:  # the theory has no classes here (e.g. GD on the paper-mlp): edges only
        ax.set(xlabel="gA (eta_A ~ n^gA)", ylabel="gB (eta_B ~ n^gB)", title=f"{optimizer}, init {init}, model {model}")
    gAs, loss, feature = (edges.boundary[c].to_numpy() for c in ("gA", "output_edge", "feature_edge"))
    floor = gB_range[0] - 1.0  # where no gB is stable at this gA: the boundary drops off the chart
    for curve, style, label in ((loss, "-", "output edge (theory)"), (feature, "--", "feature edge (theory)")):
        if np.isnan(curve).all() or (style == "--" and np.array_equal(curve, loss, equal_nan=True)):
            continue
        ax.plot(gAs, np.where(np.isnan(curve), floor, curve), color="black", ls=style, lw=1.6, label=label)
    colours = dict(zip(SLICES, series_colours(len(SLICES))))
    for s, h, pred in edges.slices.itertuples(index=False):
        ends = [_on_slice(s, h, g) for g in (min(gA_range[0], gB_range[0]) - 1, max(gA_range[1], gB_range[1]) + 1)]
        ax.plot(*zip(*ends), color=colours[s], lw=0.9, alpha=0.8, label=f"slice {s}" + (f" (held n^{h:g})" if s != "one-rate" else ""))
        if not np.isnan(pred):
            ax.plot(*_on_slice(s, h, pred), marker="D", ms=8, mfc="none", mec=colours[s], mew=1.6, ls="none")
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
