"""Shared by the lessons: quick settings for CI and where figures go."""
import os
from pathlib import Path

QUICK = os.environ.get("COURSE_QUICK") == "1"
# the gallery holds the full settings' figures; the tests send their quick ones elsewhere
FIGURES = Path(os.environ.get("COURSE_FIGURES") or Path(__file__).resolve().parents[2] / "figures" / "gallery" / "course")
FIGURES.mkdir(parents=True, exist_ok=True)


def save(fig, name: str) -> Path:
    """Save a lesson's figure (PNG and PDF) in the gallery; return the PNG path."""
    # no creation date in the PDF: rerunning a lesson leaves the gallery's files unchanged
    fig.savefig(FIGURES / f"{name}.png", dpi=110, bbox_inches="tight")
    fig.savefig(FIGURES / f"{name}.pdf", bbox_inches="tight", metadata={"CreationDate": None})
    return FIGURES / f"{name}.png"
