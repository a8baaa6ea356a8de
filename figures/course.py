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

QUICK = os.environ.get("COURSE_QUICK") == "1"
FIGURES = Path(os.environ.get("COURSE_FIGURES")
               or Path(tempfile.gettempdir()) / "loraplus-scaling-course" / ("quick" if QUICK else "full"))


def save(fig, name: str) -> Path:
    """Save a lesson's figure as FIGURES/name.png and .pdf, say where, and return the PNG path."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    # no creation date in the PDF: rerunning a lesson at the same settings gives the same file
    fig.savefig(FIGURES / f"{name}.png", dpi=110, bbox_inches="tight")
    fig.savefig(FIGURES / f"{name}.pdf", bbox_inches="tight", metadata={"CreationDate": None})
    print(f"saved {FIGURES / name}.png and .pdf")
    return FIGURES / f"{name}.png"
