"""The course: every lesson executes top to bottom (jupytext + nbclient) with COURSE_QUICK=1.

A failing cell, including a lesson's own check that its claim holds, fails the test."""
from __future__ import annotations

import os
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

COURSE = Path(__file__).resolve().parents[1] / "docs" / "course"
LESSONS = sorted(COURSE.glob("lesson*.py"))


def test_seven_lessons_with_solutions():
    assert len(LESSONS) == 7
    for lesson in LESSONS:
        number = lesson.name.split("_")[0].removeprefix("lesson")
        assert (COURSE / "solutions" / f"lesson{number}.md").is_file()


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_executes(lesson, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_QUICK", "1")
    monkeypatch.setenv("COURSE_FIGURES", str(tmp_path))  # the gallery keeps the full settings' figures
    notebook = jupytext.read(lesson)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(COURSE)}}).execute()
    number = lesson.name.split("_")[0]
    assert list(tmp_path.glob(f"{number}_*.png")), f"{lesson.name} saved no figure"
