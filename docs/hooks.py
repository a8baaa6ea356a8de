"""MkDocs hooks (mkdocs.yml, ``hooks:``): what the build adds to the pages written by hand.

- The options of every command, taken from the parser that ``loraplus-scaling CMD --help``
  prints: a page marks the place with ``<!-- cli-options: CMD -->`` (``gen_pages.cli_help``).
- The results page and its figures, from the gallery ``figures/gallery`` (``gen_pages.results_page``).
- MathJax, copied from the installed ``django-static-mathjax`` package into the built site, so the
  formulas render in a browser with no network (nothing third-party is kept in the repository).
- The course's lessons run while the site builds (mkdocs-jupyter, ``execute: true``) in the quick
  setting, ``COURSE_QUICK=1``, unless the environment already sets it; their figures go to a
  temporary directory, never into the repository. Each lesson page ends with a link to the
  solutions of its exercises. What nbconvert's template would fetch from a CDN is removed. A lesson that
  the build does not run (mkdocs.yml's ``execute_ignore``: lesson 6, which fine-tunes a transformer) shows its
  stored full-settings figure from ``figures/gallery/course`` instead, and says so.

``DOCS_RUN_LESSONS=0`` renders the lessons without running them (no figures): a fast build while
writing pages. The default, and CI, run them.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path, PurePath

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
log = logging.getLogger("mkdocs.hooks.loraplus_docs")   # a warning here fails `mkdocs build --strict`
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
    _check_coverage(files)
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
    if not _lesson_runs(page, config):
        html += _stored_figures(lesson.group(1).split("_")[0], page, files)
    solutions = f"course/solutions/lesson{lesson.group(2)}.md"
    target = files.get_file_from_path(solutions)
    if target is None:
        return html
    href = get_relative_url(target.url, page.url)
    return html + (f'\n<p class="lesson-solutions">The solutions of this lesson\'s exercises: '
                   f'<a href="{href}">Lesson {lesson.group(2)}: solutions</a>. '
                   f'Back to the <a href="{get_relative_url("course/", page.url)}">course overview</a>.</p>\n')


def _lesson_runs(page, config) -> bool:
    """Whether mkdocs-jupyter executed this lesson during the build."""
    plugin = config.plugins["mkdocs-jupyter"].config
    ignored = any(PurePath(page.file.abs_src_path).match(p) for p in plugin["execute_ignore"] or ())
    return bool(plugin["execute"]) and not ignored


def _stored_figures(prefix: str, page, files) -> str:
    """The gallery's full-settings figures of one lesson (``lesson6`` -> results/course/lesson6_*.png)."""
    stored = sorted((f for f in files if f.src_uri.startswith(f"results/course/{prefix}_") and f.src_uri.endswith(".png")),
                    key=lambda f: f.src_uri)
    if not stored:
        return ""
    images = "".join(f'<p><img src="{get_relative_url(f.url, page.url)}" alt="{PurePath(f.src_uri).stem}" '
                     f'style="max-width:100%"></p>' for f in stored)
    return ('<div class="admonition note"><p class="admonition-title">Not run while the site was built</p>'
            "<p>This lesson's cells are shown without their outputs: running it takes minutes even in the quick "
            "setting, too long for every build of the site. Its figure below comes from the full settings, stored "
            "in the repository's gallery (<code>figures/gallery/course</code>); run the lesson yourself "
            '(<a href="' + get_relative_url("course/", page.url) + '">how</a>) to see every output.</p></div>'
            + images)


def _check_coverage(files: Files) -> None:
    """Warn (a strict build fails) when a command has no page or no generated options, or a lesson no solutions."""
    for command in gen_pages.cli_commands():
        page = files.get_file_from_path(f"commands/{command}.md")
        if page is None:
            log.warning(f"the command `{command}` has no page docs/commands/{command}.md")
        elif f"<!-- cli-options: {command} -->" not in Path(page.abs_src_path).read_text(encoding="utf-8"):
            log.warning(f"docs/commands/{command}.md does not show its options (<!-- cli-options: {command} -->)")
    for lesson in sorted((DOCS / "course").glob("lesson*.py")):
        number = LESSON.match(f"course/{lesson.name}").group(2)
        if files.get_file_from_path(f"course/solutions/lesson{number}.md") is None:
            log.warning(f"{lesson.name} has no solutions page docs/course/solutions/lesson{number}.md")
