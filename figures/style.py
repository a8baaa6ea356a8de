"""One look for every figure: a colour, marker and line style per scheme, colour-blind safe.

Colours come from seaborn's ``colorblind`` palette, skipping its second orange (index 3 is
hard to tell from index 1). Each built-in scheme also has its own marker and line style, so two
schemes whose curves coincide stay visible (the one drawn later is dashed or hollow, not a
solid line on top of a solid line), and a greyscale print still tells them apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import seaborn as sns

_PALETTE = sns.color_palette("colorblind", 10)
_DISTINCT = [_PALETTE[i] for i in (0, 1, 2, 4, 9, 5, 7, 8)]  # no second orange, no pale pink


@dataclass(frozen=True)
class Look:
    """How one series is drawn: pass ``**look.line()`` to ``ax.plot``."""

    colour: tuple
    marker: str
    linestyle: str
    zorder: float

    def line(self) -> dict:
        hollow = self.linestyle != "-"  # drawn larger, so a filled marker on the same point leaves its rim
        return {"color": self.colour, "marker": self.marker, "ls": self.linestyle, "zorder": self.zorder,
                "mfc": "none" if hollow else self.colour, "ms": 7 if hollow else 5, "lw": 1.4}


_BUILTIN = {
    "loraplus": Look(_DISTINCT[0], "o", "-", 3.0),
    "lora-const": Look(_DISTINCT[1], "s", "-", 2.5),
    "lora-sqrt": Look(_DISTINCT[2], "^", "-.", 2.4),
    "lora-inv": Look(_DISTINCT[3], "D", "--", 2.6),
}
_EXTRA_MARKERS = ("v", "P", "X", "*", "h")


def scheme_look(scheme: str, position: int = 0) -> Look:
    """The look of a scheme: fixed for the built-in ones, by ``position`` (its index among the
    custom schemes of a figure) for the rest."""
    if scheme in _BUILTIN:
        return _BUILTIN[scheme]
    return Look(_DISTINCT[4 + position % 4], _EXTRA_MARKERS[position % len(_EXTRA_MARKERS)], ":", 2.0)


def scheme_looks(schemes) -> dict[str, Look]:
    """``scheme -> Look`` for the schemes of one figure, custom ones numbered in order."""
    custom = [s for s in dict.fromkeys(schemes) if s not in _BUILTIN]
    return {s: scheme_look(s, custom.index(s) if s in custom else 0) for s in dict.fromkeys(schemes)}


def series_colours(n: int) -> list:
    """``n`` distinct colour-blind-safe colours for series that are not schemes (widths, ratios)."""
    return [_DISTINCT[i % len(_DISTINCT)] for i in range(n)] if n <= len(_DISTINCT) else \
        list(sns.color_palette("viridis", n))


_SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
_SERIES_LINESTYLES = ("-", "--", "-.", ":")


def series_looks(n: int) -> list[Look]:
    """``n`` looks (colour, marker, line style) for series that are not schemes (inits, alpha
    scalings, ratios), each differing from the others in all three, so coinciding lines stay
    visible: the later ones are dashed with hollow markers and drawn underneath."""
    colours = series_colours(n)
    return [Look(colours[i], _SERIES_MARKERS[i % len(_SERIES_MARKERS)], _SERIES_LINESTYLES[i % len(_SERIES_LINESTYLES)],
                 3.0 - 0.1 * i) for i in range(n)]


def label_log_axis(ax, values, axis: str = "x") -> None:
    """A log axis ticked at exactly ``values`` (widths, ranks), labelled as plain numbers,
    without the minor ticks whose labels would overlap."""
    import matplotlib.ticker as ticker

    values = sorted(set(values))
    which = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    which.set_major_locator(ticker.FixedLocator(values))
    which.set_major_formatter(ticker.FixedFormatter([f"{v:g}" for v in values]))
    which.set_minor_locator(ticker.NullLocator())
