"""The phase diagram over (gA, gB) as tables: the theory's class at every point of a grid, and the
trainable region's edges (the boundary of output stability and each slice's predicted edge).
``figures.phase`` draws them; nothing there computes theory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.laws import DEFAULT_HELD, SLICES, predict_edge
from scaling.theory import CLASSES, classes_along_gB


@dataclass(frozen=True)
class PhaseDiagram:
    """classes[i, j]: index into ``CLASSES`` of the class at (gA[j], gB[i]); shape (len gB, len gA)."""

    optimizer: str
    init: str
    model: str
    gA: np.ndarray
    gB: np.ndarray
    classes: np.ndarray


def _grid(lo_hi, resolution: float) -> np.ndarray:
    return np.round(np.arange(lo_hi[0], lo_hi[1] + 1e-9, resolution), 6)


def phase_diagram(optimizer: str, init: str, model: str = "linear", gA_range=(-2.0, 1.0), gB_range=(-2.0, 1.0),
                  resolution: float = 0.05) -> PhaseDiagram:
    """The class (``scaling.theory.classify``, at LATE_STEP) at every (gA, gB) of a grid;
    ValueError where the theory has no derivation for the setting."""
    gAs, gBs = _grid(gA_range, resolution), _grid(gB_range, resolution)
    columns = [[CLASSES.index(c) for c in classes_along_gB(model, optimizer, init, a, gBs)] for a in gAs]
    grid = np.array(columns).T
    return PhaseDiagram(optimizer, init, model, gAs, gBs, grid)


@dataclass(frozen=True)
class PhaseEdges:
    """The trainable region's edges in (gA, gB), exponents in n with r fixed.

    diagram: the classes underneath (None where the theory has none, e.g. GD on the paper-mlp).
    boundary: one row per gA: output_edge, the largest gB whose output stays O(1) (the B edge of
    the b-edge slice held at eta_A = n^gA; where only bounds are derived, the upper one), and
    feature_edge, where the hidden features already leave O(1) (the lower bound there; equal to
    output_edge where the edge is exact); NaN where no gB is stable. slices: one row per
    (slice, held): the held n-exponent and the predicted n-exponent of the varied rate at the
    edge (NaN where not predicted)."""

    optimizer: str
    init: str
    model: str
    alpha_scaling: str
    gA_range: tuple[float, float]
    gB_range: tuple[float, float]
    diagram: PhaseDiagram | None
    boundary: pd.DataFrame
    slices: pd.DataFrame


def phase_edges(optimizer: str, init: str, model: str = "linear", alpha_scaling: str = "r",
                slices: dict[str, list[float]] | None = None, gA_range=(-2.0, 1.0),
                gB_range=(-2.0, 1.0)) -> PhaseEdges:
    """The edges for ``plot_phase_edges``. slices: slice name -> held n-exponents (None: every
    slice at its default held rate). Edges settle by step 3 (tests/test_laws.py), so T = 3."""
    try:
        diagram = phase_diagram(optimizer, init, model, gA_range, gB_range)
    except ValueError:
        diagram = None
    gAs = _grid(gA_range, 0.02)
    edges = [predict_edge(model, optimizer, init, "b-edge", (a, 0), alpha_scaling, "n", steps=3) for a in gAs]
    loss = np.array([np.nan if e.exponent is None and e.upper is None else e.exponent if e.exponent is not None
                     else e.upper for e in edges], dtype=float)
    feature = np.array([v if e.exponent is not None or e.upper is None else
                        (np.nan if e.lower is None else e.lower) for e, v in zip(edges, loss)], dtype=float)
    boundary = pd.DataFrame({"gA": gAs, "output_edge": loss, "feature_edge": feature})
    if slices is None:
        slices = {s: [DEFAULT_HELD[s][0] if DEFAULT_HELD[s] else 0.0] for s in SLICES}
    rows = []
    for s, helds in slices.items():
        for h in helds:
            p = predict_edge(model, optimizer, init, s, (h, 0), alpha_scaling, "n", steps=3)
            rows.append({"slice": s, "held": h, "edge": np.nan if p.exponent is None else p.exponent})
    return PhaseEdges(optimizer, init, model, alpha_scaling, tuple(gA_range), tuple(gB_range), diagram, boundary,
                      pd.DataFrame(rows, columns=["slice", "held", "edge"]))
