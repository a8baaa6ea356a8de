"""Phase diagram over (gA, gB): theory's classes as regions, measured schemes as points coloured
by the share of their checks that PASS."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from scaling.rules import parse_scheme  # noqa: E402
from scaling.theory import CLASSES, phase_diagram  # noqa: E402

PASS_CMAP = "cividis"  # colour-blind safe, and dark to light reads as little to much


def phase_points(exponents: pd.DataFrame) -> pd.DataFrame:
    """One row per scheme of an exponents table (scaling.verdicts.compare): scheme, gA, gB and
    its checks counted: n_checks, n_pass, n_fail, share_pass."""
    counts = exponents.groupby("scheme", sort=False).verdict.agg(
        n_checks="size", n_pass=lambda v: int((v == "PASS").sum()), n_fail=lambda v: int((v == "FAIL").sum()))
    rows = [{"scheme": s, "gA": parse_scheme(s).gA, "gB": parse_scheme(s).gB, **c}
            for s, c in counts.to_dict("index").items()]
    return pd.DataFrame(rows).assign(share_pass=lambda d: d.n_pass / d.n_checks)


def plot_phase_diagram(optimizer: str, init: str, model: str = "linear",
                       measured: pd.DataFrame | None = None, ax=None, measured_on: str | None = None):
    """The theory's class at every (gA, gB) for ``model``; measured: ``phase_points`` rows,
    drawn as circles coloured by their share of PASS (colour bar), labelled with the scheme and
    PASS count N/M, ringed in red where any check FAILed. measured_on: what the points were
    measured on, for the title (default: ``model``)."""
    gAs, gBs, grid = phase_diagram(optimizer, init, model)
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
