"""Stacked LoRA layers under Adam: how one layer's update reaches the next layer's LoRA factors,
and the learning-rate edges that follow (a prototype of the rule; ``scaling.laws`` holds the
one-layer derivation).

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
and output stability (every c_l = O(1); c_L moves the mean-field output by c_L) gives the edges.
Under Init[2] (A0 = 0, B0 = Theta(1)) A_l has entries eta_A instead of n^-1/2: the backward
ratio is rho2 = eta_A (n^1/2 + n eta_B) and the link gain eta_A n min(1, rho2), which is O(1)
wherever eta_A = O(1/n): stacking leaves the one-layer exponents.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

HELD = {"b-edge": -1.0, "a-edge": 0.0, "ratio": 1.0, "one-rate": None}  # the catalogue's held exponents


def layer_changes(depth: int, a: float, b: float, init: str = "1") -> list[float]:
    """Exponents of c_1..c_L (each LoRA layer's output change) at eta_A = n^a, eta_B = n^b."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    c_prev, out = -math.inf, []
    for _ in range(depth):
        if init == "1":
            gain = 0.5 + min(0.0, b + 0.5)
            z = max(0.0, a + 1, gain + c_prev)
            c = b + z
        elif init == "2":
            rho2 = a + max(0.5, 1 + b)
            gain = a + 1 + min(0.0, rho2)
            z = max(a + 1, gain + c_prev)
            # the B0 path (B0's part along the error, n^-1/2 per coordinate) and B's own updates
            c = max(a + 0.5, b + z, b + a + 1)
        else:
            raise ValueError(f"init must be '1' or '2', got {init!r}")
        out.append(c)
        c_prev = c
    return out


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
                 lo: float = -10.0, hi: float = 10.0) -> StackedEdge:
    """The largest varied-rate exponent at which every layer's output change is O(1)."""
    held = HELD[slice_name] if held is None and slice_name != "one-rate" else held

    def worst(x):
        return max(layer_changes(depth, *_rates(slice_name, x, held), init))
    if worst(lo) > 0:
        return StackedEdge(None, "below")
    if worst(hi) <= 0:
        return StackedEdge(None, "above")
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if worst(mid) <= 0 else (lo, mid)
    return StackedEdge(round(lo, 6))


def stacked_corner(depth: int, init: str = "1", held_a: float | None = None, held_b: float | None = None):
    """Exponent of lambda_c = eta_B at the B edge / eta_A at the A edge (None if either is censored)."""
    b = stacked_edge("b-edge", depth, init, held_b if held_b is not None else HELD["b-edge"])
    a = stacked_edge("a-edge", depth, init, held_a if held_a is not None else HELD["a-edge"])
    if b.exponent is None or a.exponent is None:
        return None
    return round(b.exponent - a.exponent, 6)
