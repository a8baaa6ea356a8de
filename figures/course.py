"""The course's lessons (docs/course): their quick setting and where their figures go.

``COURSE_QUICK=1`` is the quick setting (the tests'). A lesson saves its figures in
``$COURSE_FIGURES`` when set, else outside the repository, in
``<temp dir>/loraplus-scaling-course/quick`` (or ``/full``): running a lesson never rewrites
the gallery's tracked copies. Those are the full settings' figures, refreshed on purpose with
``COURSE_FIGURES=figures/gallery/course python docs/course/lessonN_....py``.
"""
import os
import tempfile
from pathlib import Path

from figures.save import save_figure

QUICK = os.environ.get("COURSE_QUICK") == "1"
FIGURES = Path(os.environ.get("COURSE_FIGURES")
               or Path(tempfile.gettempdir()) / "loraplus-scaling-course" / ("quick" if QUICK else "full"))


def save(fig, name: str) -> Path:
    """Save a lesson's figure as FIGURES/name.png and .pdf (laid out once, as every figure of the package:
    ``figures.save.save_figure``), say where, and return the PNG path. The figure stays open: the notebook
    shows it below the cell."""
    png = save_figure(fig, FIGURES / name, close=False)
    print(f"saved {FIGURES / name}.png and .pdf")
    return png
