"""The course: every lesson executes top to bottom (jupytext + nbclient) with COURSE_QUICK=1,
from a working directory outside the repository, and keeps its figures out of the repository.

A failing cell, including a lesson's own check that its claim holds, fails the test."""
from __future__ import annotations

import importlib
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "docs" / "course"
LESSONS = sorted(COURSE.glob("lesson*.py"))


def test_seven_lessons_with_solutions():
    assert len(LESSONS) == 7
    for lesson in LESSONS:
        number = lesson.name.split("_")[0].removeprefix("lesson")
        assert (COURSE / "solutions" / f"lesson{number}.md").is_file()


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_executes(lesson, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_QUICK", "1")
    monkeypatch.setenv("COURSE_FIGURES", str(tmp_path / "figures"))
    elsewhere = tmp_path / "cwd"  # not docs/course, not the repository: lessons run from anywhere
    elsewhere.mkdir()
    notebook = jupytext.read(lesson)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(elsewhere)}}).execute()
    number = lesson.name.split("_")[0]
    assert list((tmp_path / "figures").glob(f"{number}_*.png")), f"{lesson.name} saved no figure"


@pytest.mark.parametrize("quick", ["1", ""])
def test_lesson_figures_go_outside_the_repository_by_default(quick, monkeypatch):
    """Without COURSE_FIGURES a lesson never writes into the repository (the gallery's
    course figures are tracked files, refreshed only on purpose)."""
    import figures.course

    monkeypatch.delenv("COURSE_FIGURES", raising=False)
    monkeypatch.setenv("COURSE_QUICK", quick)
    try:
        course = importlib.reload(figures.course)
        assert course.QUICK == (quick == "1")
        assert REPO not in course.FIGURES.resolve().parents
        assert course.FIGURES.name == ("quick" if quick else "full")
    finally:
        monkeypatch.undo()
        importlib.reload(figures.course)
