"""MkDocs hooks (mkdocs.yml, ``hooks:``): what the build adds to the pages written by hand.

- The options of every command, taken from the parser that ``loraplus-scaling CMD --help``
  prints: a page marks the place with ``<!-- cli-options: CMD -->`` (``gen_pages.cli_help``).
- The results page and its figures, from the gallery ``figures/gallery`` (``gen_pages.results_page``).
- MathJax, copied from the installed ``django-static-mathjax`` package into the built site, so the
  formulas render in a browser with no network (nothing third-party is kept in the repository).
- The course's lessons run while the site builds (mkdocs-jupyter, ``execute: true``) in the quick
  setting, ``COURSE_QUICK=1``, unless the environment already sets it; their figures go to a
  temporary directory, never into the repository. Each lesson page ends with a link to the
  solutions of its exercises. What nbconvert's template would fetch from a CDN is removed.

``DOCS_RUN_LESSONS=0`` renders the lessons without running them (no figures): a fast build while
writing pages. The default, and CI, run them.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files
from mkdocs.utils import get_relative_url

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(DOCS))          # gen_pages beside this file
import gen_pages  # noqa: E402

MATHJAX_DEST = "assets/mathjax/tex-svg-full.js"   # mkdocs.yml's extra_javascript names this path
# nbconvert's template: MathJax 2 from a CDN with its configuration, and a loader that would
# import mermaid from a CDN if a notebook had diagrams (none does). Both go; the site's own MathJax
# serves every page.
CDN_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL)
CDN_MODULE = re.compile(r'<script type="module">(?:(?!</script>).)*?https?://(?:(?!</script>).)*</script>', re.DOTALL)
CLI_MARK = re.compile(r"<!-- cli-options: ([a-z-]+) -->")
LESSON = re.compile(r"^course/(lesson(\d+)_\w+)\.py$")


def on_config(config):
    # The lessons' kernel inherits this environment: the checkout being documented comes first on
    # its path, and the quick setting unless the caller chose otherwise.
    os.environ.setdefault("COURSE_QUICK", "1")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if os.environ.get("DOCS_RUN_LESSONS") == "0":
        config.plugins["mkdocs-jupyter"].config["execute"] = False
    return config


def _mathjax_source() -> Path:
    try:
        import mathjax  # django-static-mathjax: a copy of MathJax 3 as package data
    except ImportError as err:
        raise SystemExit("error: the docs need MathJax from PyPI: pip install -e '.[docs]'") from err
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg-full.js"
    if not source.is_file():
        raise SystemExit(f"error: {source} is missing from the installed django-static-mathjax")
    return source


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, MATHJAX_DEST, abs_src_path=str(_mathjax_source())))
    page, images = gen_pages.results_page(REPO / "figures" / "gallery", image_dir="results")
    files.append(File.generated(config, "results.md", content=page))
    for uri, source in images.items():
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return CLI_MARK.sub(lambda match: gen_pages.cli_help(match.group(1)), markdown)


def on_page_content(html: str, page, config, files) -> str:
    lesson = LESSON.match(page.file.src_uri)
    if not lesson:
        return html
    html = CDN_MODULE.sub("", CDN_MATHJAX.sub("", html))
    solutions = f"course/solutions/lesson{lesson.group(2)}.md"
    target = files.get_file_from_path(solutions)
    if target is None:
        return html
    href = get_relative_url(target.url, page.url)
    return html + (f'\n<p class="lesson-solutions">The solutions of this lesson\'s exercises: '
                   f'<a href="{href}">Lesson {lesson.group(2)}: solutions</a>. '
                   f'Back to the <a href="{get_relative_url("course/", page.url)}">course overview</a>.</p>\n')
