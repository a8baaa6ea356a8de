"""A headless-browser check of the built site: ``python docs/check_site.py SITE_DIR [--shots DIR]``.

Not part of the test suite: it needs a built site (``mkdocs build --strict -d SITE_DIR``) and Debian's chromium
(``apt-get install -y chromium``). It serves SITE_DIR on localhost, opens a few pages headless and, for each:

- takes a screenshot (``DIR/<page>.png``; a second one scrolled to the page's first figure when it has one);
- checks that every image loaded (``naturalWidth > 0``, lazy images included);
- checks that formulas rendered: MathJax made its elements (``mjx-container``) and no raw TeX is left in the
  text (``\\(``, ``\\[``, ``$...$``) outside code;
- checks that nothing was requested from anywhere but the local server (the site must work offline).

How: the server adds a small script to every HTML page it serves. Once the page and MathJax are done, the
script writes what it found into the page as JSON, and chromium's ``--dump-dom`` prints the page, so nothing
beyond the Python standard library and the browser is needed. Exit code 0 when every page passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PAGES = {   # name -> path in the site: the front page, a command page, a lesson, the API page, the results
    "front": "",
    "command": "commands/lr-laws/",
    "lesson": "course/lesson1_gamma/",
    "api": "reference/scaling/",
    "results": "results/",
}
# The flags that work on this kind of machine (no sandbox as root, no background connections to a closed network).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1280,1400", "--virtual-time-budget=30000"]
REPORT_ID = "site-check-report"

# Runs in the page: make lazy images load, wait for them and for MathJax, then report as JSON in a <pre>.
PROBE = """
<script>
(function () {
  function report() {
    var imgs = Array.prototype.slice.call(document.images);
    var text = "";
    var walker = document.createTreeWalker(document.querySelector("article") || document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      var p = walker.currentNode.parentElement;
      if (p && !p.closest("pre, code, script, style, mjx-container, .highlight")) { text += walker.currentNode.data + " "; }
    }
    var raw = text.match(/\\\\\\(|\\\\\\[|\\$[^$\\s][^$]*\\$/g) || [];
    var origin = location.origin;
    var foreign = performance.getEntriesByType("resource").map(function (e) { return e.name; })
      .filter(function (u) { return u.indexOf(origin) !== 0 && u.indexOf("data:") !== 0; });
    var out = {
      images: imgs.map(function (i) { return {src: i.currentSrc.slice(0, 120), width: i.naturalWidth}; }),
      math: document.querySelectorAll("mjx-container").length,
      arithmatex: document.querySelectorAll(".arithmatex").length,
      raw_tex: raw.slice(0, 10),
      foreign: foreign,
      mathjax: typeof window.MathJax === "object" && !!window.MathJax.startup,
      title: document.title
    };
    var pre = document.createElement("pre");
    pre.id = "%s";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
    pre.style.display = "none";
    if (location.search.indexOf("scroll=figure") >= 0) {
      // A headless screenshot shows the top of the page: move the content up to the first figure instead
      // of scrolling (scrolled headless captures come out blank above the fold).
      var first = document.querySelector("article img");
      var main = document.querySelector(".md-main") || document.body;
      if (first) {
        var y = first.getBoundingClientRect().top + window.scrollY - 90;
        main.style.transform = "translateY(-" + Math.max(0, y) + "px)";
      }
    }
  }
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    imgs.forEach(function (i) { i.loading = "eager"; });
    var loaded = imgs.map(function (i) {
      return i.complete ? Promise.resolve() : new Promise(function (ok) { i.onload = ok; i.onerror = ok; });
    });
    var typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
    Promise.all(loaded.concat([typeset])).then(report, report);
  });
})();
</script>
""" % REPORT_ID


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site; adds PROBE to HTML pages; remembers every path asked for."""

    requested: list[str] = []

    def do_GET(self):
        Handler.requested.append(self.path)
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix == ".html" and path.is_file():
            body = path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>").encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise SystemExit("error: no chromium found; install Debian's: apt-get install -y chromium")


def browse(browser: str, url: str, *extra: str, timeout: int = 120) -> str:
    with tempfile.TemporaryDirectory(prefix="check-site-profile-") as profile:
        done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=timeout)
    return done.stdout


def check_page(browser: str, base: str, name: str, path: str, shots: Path) -> tuple[bool, list[str]]:
    """(passed, lines to print) for one page."""
    url = base + path
    dom = browse(browser, url, "--dump-dom")
    match = re.search(rf'<pre id="{REPORT_ID}"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    if not match:
        return False, [f"{name}: {url}: the page never reported (did it load? did MathJax finish?)"]
    report = json.loads(match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                        .replace("&amp;", "&"))
    browse(browser, url, f"--screenshot={shots / (name + '.png')}")
    lines, ok = [], True
    broken = [i["src"] for i in report["images"] if i["width"] == 0]
    lines.append(f"{name}: {url} ({report['title']})")
    lines.append(f"  images: {len(report['images'])} loaded {len(report['images']) - len(broken)}"
                 + (f"; NOT LOADED: {broken[:5]}" if broken else ""))
    if report["images"] and any("/assets/" not in i["src"] for i in report["images"]):
        browse(browser, url + "?scroll=figure", f"--screenshot={shots / (name + '_figure.png')}")
    lines.append(f"  formulas: {report['math']} rendered by MathJax, {report['arithmatex']} marked in the page, "
                 f"raw TeX left: {report['raw_tex'] or 'none'}")
    lines.append(f"  requests outside the local server: {report['foreign'] or 'none'}")
    if broken or report["raw_tex"] or report["foreign"]:
        ok = False
    if report["arithmatex"] and report["math"] == 0:
        ok = False
        lines.append("  MathJax rendered nothing although the page has formulas")
    lines.append("  " + ("PASS" if ok else "FAIL"))
    return ok, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs build -d SITE)")
    parser.add_argument("--shots", type=Path, default=None, help="where the screenshots go (default: a temp dir)")
    parser.add_argument("--page", action="append", default=[], metavar="PATH",
                        help="check this page too (a path in the site, e.g. concepts/feature-updates/); repeatable")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"error: {args.site} has no index.html: build the site first (mkdocs build --strict -d {args.site})")
        return 2
    shots = args.shots or Path(tempfile.mkdtemp(prefix="check-site-"))
    shots.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(args.site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        pages = {**PAGES, **{path.strip("/").replace("/", "_") or "index": path for path in args.page}}
        results = [check_page(browser, base, name, path, shots) for name, path in pages.items()]
    finally:
        server.shutdown()
    for _, lines in results:
        print("\n".join(lines))
    passed = sum(ok for ok, _ in results)
    print(f"{passed} passed, {len(results) - passed} failed; screenshots in {shots}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
