"""Writing a figure: PNG (for reports and the README) and PDF (for papers), reproducibly."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


def save_figure(fig, stem: Path, formats=("png", "pdf"), dpi: int = 110, close: bool = True) -> Path:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` and close it (``close=False``: keep it open, e.g. for a
    notebook to show); returns the PNG's path.
    (The figures lay themselves out, with constrained layout or tight_layout, so no
    tight-bounding-box pass: it would draw every figure twice.) The PDF carries no creation date, so redrawing the same
    data gives the same bytes and a gallery copy changes only when the figure does."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for ext in formats:
        extra = {"metadata": {"CreationDate": None}} if ext == "pdf" else {}
        fig.savefig(stem.parent / f"{stem.name}.{ext}", dpi=dpi, **extra)
        # Laid out once: a layout engine runs a whole dry drawing before every save, as costly as
        # the drawing itself, so the other formats keep the first one's layout.
        fig.set_layout_engine("none")
    if close:
        plt.close(fig)
    return stem.parent / f"{stem.name}.png"
