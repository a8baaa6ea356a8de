"""Shared by the lessons: quick settings for CI and where figures go."""
import os
from pathlib import Path

QUICK = os.environ.get("COURSE_QUICK") == "1"
FIGURES = Path(__file__).resolve().parents[2] / "figures" / "gallery" / "course"
FIGURES.mkdir(parents=True, exist_ok=True)


def save(fig, name: str) -> Path:
    """Save a lesson's figure (PNG and PDF) in the gallery; return the PNG path."""
    for ext in ("png", "pdf"):
        fig.savefig(FIGURES / f"{name}.{ext}", dpi=110, bbox_inches="tight")
    return FIGURES / f"{name}.png"
