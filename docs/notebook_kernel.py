"""The kernel settings under which the docs run the course's notebooks (docs/hooks.py, make_notebooks.py).

Matplotlib's inline backend shows a cell's figures in the notebook. Some of the package's plotting modules switch
matplotlib to the non-interactive Agg backend when they are imported (so that studies can draw without a display),
and from then on a lesson's figures are saved but no longer shown. ``ipython_dir()`` makes an IPython profile whose
start-up script shows, after every cell, the figures that are still open (a lesson's ``save`` keeps them open).
Where the inline backend is still active it has already shown and closed them, so nothing appears twice.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

STARTUP = '''\
# Show the figures a cell left open, whatever backend is active (docs/notebook_kernel.py).
def _show_open_figures(*_):
    import sys
    if "matplotlib.pyplot" not in sys.modules:
        return
    import io
    import matplotlib.pyplot as plt
    from IPython.display import Image, display
    for number in plt.get_fignums():
        png = io.BytesIO()
        plt.figure(number).savefig(png, format="png", dpi=90, bbox_inches="tight")
        display(Image(data=png.getvalue(), format="png"))
        plt.close(number)


get_ipython().events.register("post_run_cell", _show_open_figures)
'''


def ipython_dir() -> str:
    """A fresh IPython directory whose default profile shows open figures after every cell; for IPYTHONDIR."""
    root = Path(tempfile.mkdtemp(prefix="loraplus-docs-ipython-"))
    startup = root / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-show-open-figures.py").write_text(STARTUP)
    return str(root)
