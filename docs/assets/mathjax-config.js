// MathJax 3 settings, read before MathJax itself loads (mkdocs.yml, extra_javascript). The pages'
// formulas (pymdownx.arithmatex) arrive as \( .. \) and \[ .. \] inside elements of class
// "arithmatex"; nothing else on a page is searched for TeX. MathJax is served from the site itself
// (docs/hooks.py copies it there), and SVG output needs no web font: nothing comes from the network.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
