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
