"""Stacked LoRA layers under Adam: how one layer's update reaches the next layer's LoRA factors,
and the learning-rate edges that follow, as a closed-form recursion of exponents. ``scaling.laws``
derives the same rule term by term in its calculus (``predict_edge(..., depth=, detached=)``);
this closed form stays as an independent check of that derivation (tests/test_stacked.py: the
two agree at depth 1..4, both inits, with and without the control) and for the standard
readout, which the calculus does not cover.

Setting: L LoRA layers h_l = relu((W*_l + B_l A_l) h_{l-1}), h_0 frozen Theta(1) features,
mean-field readout f = W_out h_L (entries 1/n). Rates eta_A = n^a, eta_B = n^b; every size
below is an exponent in n at a fixed step t = O(1).

The mechanism (our derivation; docs/investigations/stacked_lora.md):
1. Backward. The error reaching h_{l-1} has two parts: through the frozen W*_l (a random sum:
   coordinates of the size of dpre_l) and through the trained B_l A_l: B_l^T dpre_l sums n
   ALIGNED terms (B_l's columns were built from sign(dpre_l), entries eta_B), then A_l^T spreads it
   over n coordinates with entries n^-1/2. Their coordinate ratio is rho = eta_B n^1/2.
2. Adam. B_{l-1}'s step is sign-like: whatever the size of its gradient, its entries are eta_B,
   and once rho >> 1 their signs follow the LoRA part, so span(B_{l-1}) -- the direction in which
   layer l-1's update moves h_{l-1} -- lies along the r rows of A_l. (For rho << 1 a fraction
   ~ rho of the step does.)
3. Forward. A change of h_{l-1} of coordinate size c that lies along A_l's rows moves
   Z_A,l = A_l h_{l-1} by c n^1/2 (n aligned terms of size n^-1/2), not by c (a random sum).
   The link gain is g = n^1/2 min(1, rho). B_l (entries eta_B) carries it on to h_l: a change
   of size eta_B g c, itself along span(B_l), i.e. along A_{l+1}'s rows.
So the output change of layer l (its coordinates c_l, along span(B_l)) obeys
    Z_l = max(1, eta_A n, g c_{l-1}),   c_l = eta_B Z_l,   c_0 = 0,
and output stability (every c_l = O(1); c_L moves a mean-field output by c_L, a standard one by
c_L n^1/2) gives the edges. Under a standard readout the B edge is n^-1/2 at every depth: there
rho = O(1), the chain is marginal, and depth changes only the constant.
Under Init[2] (A0 = 0, B0 = Theta(1)) A_l has entries eta_A instead of n^-1/2: the backward
ratio is rho2 = eta_A (n^1/2 + n eta_B) and the link gain eta_A n min(1, rho2), which is O(1)
wherever eta_A = O(1/n). A second, forward link matters there instead: B0 (Theta(1), random)
turns layer l's aligned A step into a hidden change c_l = eta_A n Z-sized per coordinate, in a
random direction the mean-field readout barely sees (n^-1/2) -- but layer l+1's A steps are
aligned with their input, so once c_l > 1 its Z_A sums the moved coordinates coherently:
Z_{l+1} = eta_A n max(1, c_l). With one shared rate this compounds, c_L = (eta n)^L, and the
output condition c_L n^-1/2 <= 1 gives the one-rate edge n^(-1 + 1/(2L)). The stacking control
(no gradient through B A into lower layers) does not touch this forward link.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

HELD = {"b-edge": -1.0, "a-edge": 0.0, "ratio": 1.0, "one-rate": None}  # the catalogue's held exponents
# How much an aligned change of h_L's coordinates moves the output: mean-field W_out (entries 1/n)
# by as much, a standard W_out (entries n^-1/2) by n^1/2 times more.
READOUT_GAIN = {"mean-field": 0.0, "standard": 0.5}


def layer_changes(depth: int, a: float, b: float, init: str = "1", detached: bool = False) -> list[float]:
    """Exponents of c_1..c_L, each LoRA layer's output change (coordinate size, any direction), at
    eta_A = n^a, eta_B = n^b. ``detached``: the stacking control (no backward link)."""
    return [c for _, c in _layers(depth, a, b, init, detached)]


def _layers(depth: int, a: float, b: float, init: str, detached: bool) -> list[tuple[float, float]]:
    """(Z_l, c_l) per layer. Both inits share the forward link: A_l's own steps are aligned with
    its input, so once the input has moved by more than Theta(1) (c_{l-1} > 0) Z_A sums those moved
    coordinates coherently: eta_A n c_{l-1}."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if init not in ("1", "2"):
        raise ValueError(f"init must be '1' or '2', got {init!r}")
    c_prev, out = -math.inf, []
    for layer in range(depth):
        if init == "1":  # A_l = A0 (entries n^-1/2): backward ratio rho = eta_B n^1/2
            gain = 0.5 + min(0.0, b + 0.5)
            own = 0.0
        else:            # A_l = its own steps (entries eta_A): rho2 = eta_A (n^1/2 + n eta_B)
            gain = a + 1 + min(0.0, a + max(0.5, 1 + b))
            own = -math.inf
        if detached and layer > 0:
            gain = -math.inf
        z = max(own, a + 1 + max(0.0, c_prev), gain + c_prev)
        # Init[1]: B = its updates (eta_B); Init[2]: B0 (Theta(1), random signs) and its updates
        c = b + z if init == "1" else max(0.0, b) + z
        out.append((z, c))
        c_prev = c
    return out


def output_change(depth: int, a: float, b: float, init: str = "1", detached: bool = False,
                  readout: str = "mean-field") -> float:
    """Exponent of the output's change. Init[1]: h_L moves along span(B_L), aligned with the
    readout (B_L's columns follow its error signal). Init[2]: B_L's updates and B0's part along the
    error are aligned (b + Z_L; Z_L - 1/2, the "B0 path"); B0's random part moves h_L by c_L in a
    random direction, which a readout sums to n^-1/2 of an aligned change: c_L - 1/2 (+ the gain)."""
    z, c = _layers(depth, a, b, init, detached)[-1]
    gain = READOUT_GAIN[readout]
    if init == "1":
        return c + gain
    return max(b + z, c - 0.5) + gain


def _rates(slice_name: str, x: float, held: float | None) -> tuple[float, float]:
    if slice_name == "b-edge":
        return held, x
    if slice_name == "a-edge":
        return x, held
    if slice_name == "one-rate":
        return x, x
    if slice_name == "ratio":
        return x, x + held
    raise ValueError(f"unknown slice {slice_name!r}")


@dataclass(frozen=True)
class StackedEdge:
    """exponent: the edge's exponent in n; None when censored ("below": the held rate alone is
    beyond the region at large n, no varied rate trains; "above": every rate is stable)."""

    exponent: float | None
    censored: str = ""


def stacked_edge(slice_name: str, depth: int, init: str = "1", held: float | None = None,
                 readout: str = "mean-field", detached: bool = False,
                 lo: float = -10.0, hi: float = 10.0) -> StackedEdge:
    """The largest varied-rate exponent at which the output's change stays O(1) over the first
    steps (``output_change`` <= 0; the hidden layers may move more, as the one-layer derivation
    allows Z_A to)."""
    held = HELD[slice_name] if held is None and slice_name != "one-rate" else held

    def worst(x):
        return output_change(depth, *_rates(slice_name, x, held), init, detached, readout)
    if worst(lo) > 0:
        return StackedEdge(None, "below")
    if worst(hi) <= 0:
        return StackedEdge(None, "above")
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if worst(mid) <= 0 else (lo, mid)
    return StackedEdge(round(lo, 6))


def stacked_corner(depth: int, init: str = "1", held_a: float | None = None, held_b: float | None = None,
                   readout: str = "mean-field", detached: bool = False):
    """Exponent of lambda_c = eta_B at the B edge / eta_A at the A edge (None if either is censored)."""
    b = stacked_edge("b-edge", depth, init, held_b if held_b is not None else HELD["b-edge"], readout, detached)
    a = stacked_edge("a-edge", depth, init, held_a if held_a is not None else HELD["a-edge"], readout, detached)
    if b.exponent is None or a.exponent is None:
        return None
    return round(b.exponent - a.exponent, 6)
