"""The course's lessons as Jupyter notebooks: ``python docs/course/make_notebooks.py OUTDIR``.

Each lesson ``docs/course/lessonN_*.py`` (jupytext percent format) becomes ``OUTDIR/lessonN_*.ipynb``, and the
solutions ``docs/course/solutions/*.md`` are copied to ``OUTDIR/solutions/`` so the links in the notebooks work.
With ``--execute`` every notebook is also run (nbclient, in OUTDIR) and saved with its outputs and figures;
``COURSE_QUICK=1`` in the environment runs the quick setting. Nothing is written into the repository unless OUTDIR
is inside it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

COURSE = Path(__file__).resolve().parent
REPO = COURSE.parent.parent


def lessons() -> list[Path]:
    return sorted(COURSE.glob("lesson*.py"))


def convert(lesson: Path):
    """Read one lesson with jupytext; return the notebook (not yet written)."""
    import jupytext

    notebook = jupytext.read(lesson)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def execute(notebook, workdir: Path, timeout: int):
    """Run a notebook in ``workdir`` with the repository first on the kernel's path."""
    from nbclient import NotebookClient

    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO) + (os.pathsep + env_path if env_path else "")
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for the notebooks (created if missing)")
    parser.add_argument("--execute", action="store_true", help="run every notebook and save its outputs")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds a cell may take when executing")
    parser.add_argument("--only", default=None, help="lesson numbers to convert, comma-separated (default: all)")
    args = parser.parse_args(argv)
    import nbformat

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(COURSE / "solutions", args.out / "solutions", dirs_exist_ok=True)
    wanted = set(args.only.split(",")) if args.only else None
    for lesson in lessons():
        number = lesson.stem.split("_")[0].removeprefix("lesson")
        if wanted and number not in wanted:
            continue
        notebook = convert(lesson)
        start = time.perf_counter()
        if args.execute:
            execute(notebook, args.out, args.timeout)
        target = args.out / f"{lesson.stem}.ipynb"
        nbformat.write(notebook, target)
        ran = f", ran in {time.perf_counter() - start:.0f} s" if args.execute else ""
        print(f"wrote {target}{ran}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
