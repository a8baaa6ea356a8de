"""The course: every lesson executes top to bottom (jupytext + nbclient) with COURSE_QUICK=1,
from a working directory outside the repository, and keeps its figures out of the repository.

A failing cell, including a lesson's own check that its claim holds, fails the test. The lessons
share one kernel per test process (starting one and importing torch costs seconds per lesson);
each starts in a fresh namespace (``%reset -f``) and its own working directory, so a lesson that
leaned on an earlier one's names fails here as it would alone."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "docs" / "course"
LESSONS = sorted(COURSE.glob("lesson*.py"))


def test_seven_lessons_with_solutions():
    assert len(LESSONS) == 7
    for lesson in LESSONS:
        number = lesson.name.split("_")[0].removeprefix("lesson")
        assert (COURSE / "solutions" / f"lesson{number}.md").is_file()


@pytest.fixture(scope="module")
def course_kernel(tmp_path_factory):
    """(kernel manager, figures directory): one quick-setting kernel for every lesson of this process."""
    figures = tmp_path_factory.mktemp("course-figures")
    saved = {k: os.environ.get(k) for k in ("COURSE_QUICK", "COURSE_FIGURES")}
    os.environ.update(COURSE_QUICK="1", COURSE_FIGURES=str(figures))  # the kernel inherits them at its start
    km = KernelManager(kernel_name="python3")
    try:
        km.start_kernel(cwd=str(tmp_path_factory.mktemp("kernel-cwd")))
        yield km, figures
    finally:
        km.shutdown_kernel(now=True)
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


@pytest.mark.xdist_group("course")  # one worker, one kernel for all the lessons (--dist loadgroup)
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_executes(lesson, course_kernel, tmp_path, request):
    if getattr(request.config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup: the group reached the scheduler
        assert request.node.nodeid.endswith("@course"), "the lessons are not grouped on one worker (pytest-xdist)"
    km, figures = course_kernel
    elsewhere = tmp_path / "cwd"  # not docs/course, not the repository: lessons run from anywhere
    elsewhere.mkdir()
    notebook = jupytext.read(lesson)
    fresh = nbformat.v4.new_code_cell(f"%reset -f\nimport os\nos.chdir({str(elsewhere)!r})\ndel os")
    notebook.cells.insert(0, fresh)
    NotebookClient(notebook, km=km, timeout=600).execute()
    number = lesson.name.split("_")[0]
    assert list(figures.glob(f"{number}_*.png")), f"{lesson.name} saved no figure"


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
