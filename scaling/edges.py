"""The edges of the trainable region along a slice of learning-rate space, and how they scale.

A *slice* is a one-parameter family of (eta_A, eta_B) (``studies.lr_laws``): the B edge varies
eta_B at a held eta_A, the A edge eta_A at a held eta_B, the one-rate edge eta_A = eta_B, a
ratio slice eta_A at a held eta_B / eta_A. A run *trains* when it meets the ``Criterion``:
under gradient descent, it has not diverged by step T; under Adam, which seldom overflows,
its loss at step T is at most a fraction f of its start.

The *edge* is the largest rate of the slice that still trains. Scanning the candidates
upwards, it lies between the last trainable candidate below the first failure above the first
success (``lo``) and that failure (``hi``); its point estimate is their geometric mean. (Small
rates fail too under Adam's criterion: too slow. The first success skips them.) A search in
rounds narrows [lo, hi] with a few new candidates at a time (``refine``). Candidates above
``hi`` that train again are counted (``reentries``), not used.

Censored: no candidate trains ("below": the edge, if there is one, lies under the range, or
the slice misses the region), or every candidate above the first success trains ("above"). A
censored edge is flagged and never replaced by a number: a width where any seed's edge is
censored is left out of the fit and listed.

Scaling: per slice and criterion, a seeds x widths (or ranks) table of log edges gives the
log-log slope with a bootstrap interval over seeds (``scaling.gamma.fit_power_law``); each
width's edge gets its own interval from the same bootstrap of the seed mean.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.gamma import DEFAULT_SETTLE_TOL, fit_power_law, seed_bootstrap, seed_center


CRITERION_KINDS = ("start", "best", "diverged")


@dataclass(frozen=True)
class Criterion:
    """When a run counts as trained at step T (``steps``). kind:

    - "start": its loss at T is at most ``fraction`` f of its start (Adam, whose too-large rates
      stall rather than overflow);
    - "best": its loss fell by at least ``fraction`` q of the largest fall among the runs it is
      judged with, loss(0) - loss(T) >= q max(loss(0) - loss(T)): one slice of one (width, seed),
      whose runs share their start. The learning-rate range test's reading: a rate trains while
      it keeps a stated share of the best progress any rate makes. For a fine-tune that starts
      above what a rate-blind output reaches (a language model confidently wrong on a new task),
      loss(T) <= loss(0) holds at every rate and "start" finds no edge; "best" still does. Where
      the best run reaches about zero it reads as "start" with f = 1 - q;
    - "diverged": has not diverged by T (gradient descent, whose edge is a blow-up; ``fraction``
      is None).

    The kind is inferred when not given: "diverged" without a fraction, "start" with one."""

    steps: int
    fraction: float | None = None
    kind: str = ""

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps <= 0:
            raise ValueError(f"criterion steps must be a positive integer, got {self.steps!r}")
        if not self.kind:
            object.__setattr__(self, "kind", "diverged" if self.fraction is None else "start")
        if self.kind not in CRITERION_KINDS:
            raise ValueError(f"unknown criterion kind {self.kind!r}; choose from {', '.join(CRITERION_KINDS)}")
        if (self.fraction is None) != (self.kind == "diverged"):
            raise ValueError(f"criterion {self.kind!r}: " + ("takes no fraction" if self.kind == "diverged"
                                                            else "needs a fraction in (0, 1]"))
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"criterion fraction must be in (0, 1], got {self.fraction}")

    @classmethod
    def parse(cls, name: str) -> "Criterion":
        """The criterion a name stands for: ``f0.5@T20`` (start), ``best0.8@T10``, ``diverged@T50``
        (ValueError otherwise)."""
        m = re.fullmatch(r"(f|best|diverged)([0-9.eE+-]*)@T([0-9]+)", name.strip())
        if not m or (m.group(1) == "diverged") != (m.group(2) == ""):
            raise ValueError(f"criterion {name!r}: expected f<F>@T<T>, best<Q>@T<T> or diverged@T<T>, e.g. best0.8@T10")
        kind = {"f": "start", "best": "best", "diverged": "diverged"}[m.group(1)]
        try:
            fraction = float(m.group(2)) if m.group(2) else None
        except ValueError:
            raise ValueError(f"criterion {name!r}: {m.group(2)!r} is not a number") from None
        return cls(int(m.group(3)), fraction, kind)

    @property
    def relative(self) -> bool:
        """Whether a run is judged against the other runs of its slice (then pass one slice of
        one (width, seed) at a time to ``trainable``)."""
        return self.kind == "best"

    @property
    def name(self) -> str:
        if self.kind == "diverged":
            return f"diverged@T{self.steps}"
        return f"{'f' if self.kind == 'start' else 'best'}{self.fraction:g}@T{self.steps}"

    def describe(self) -> str:
        """The criterion in words, with its name as tables show it (the lr-laws report's)."""
        if self.kind == "diverged":
            return (f"the run has not diverged by step {self.steps} (gradient descent: an edge is a divergence; "
                    f"{self.name})")
        if self.kind == "best":
            return (f"the loss falls by step {self.steps} by at least {self.fraction:g} of the largest fall any rate "
                    f"on the same slice, width and seed makes, loss(0) - loss(T) >= {self.fraction:g} max over "
                    f"rates, and the run has not diverged ({self.name})")
        return (f"the loss at step {self.steps} is at most {self.fraction:g} times its start (f = {self.fraction:g}, "
                f"T = {self.steps}; {self.name})")

    def trainable(self, loss_0: np.ndarray, loss_t: np.ndarray, diverged_step: np.ndarray) -> np.ndarray:
        """(runs,) bool from each run's initial loss, loss at step T (NaN once diverged) and
        diverged step (-1: never); a relative kind judges the runs passed against each other."""
        loss_0, loss_t = np.asarray(loss_0, float), np.asarray(loss_t, float)
        alive = (np.asarray(diverged_step) < 0) | (np.asarray(diverged_step) > self.steps)
        if self.kind == "diverged":
            return alive
        ok = alive & np.isfinite(loss_t) & np.isfinite(loss_0)
        if self.kind == "start":
            with np.errstate(invalid="ignore"):
                return ok & (loss_t <= self.fraction * loss_0)
        fall = np.where(ok, loss_0 - loss_t, -np.inf)
        best = fall.max() if fall.size else -np.inf
        return ok & (best > 0) & (fall >= self.fraction * best)


@dataclass(frozen=True)
class EdgeBracket:
    """Where the edge lies on one slice: lo trains, hi (> lo) does not; NaN where censored."""

    lo: float
    hi: float
    censored: str = ""      # "", "below" or "above"
    reentries: int = 0      # candidates above hi that train again

    @property
    def edge(self) -> float:
        """The point estimate, sqrt(lo hi); NaN when censored."""
        return math.sqrt(self.lo * self.hi) if not self.censored else math.nan


def locate_edge(rates, trainable) -> EdgeBracket:
    """The edge bracket from candidate rates (any order, positive) and whether each trains."""
    rates, ok = np.asarray(rates, float), np.asarray(trainable, bool)
    if rates.shape != ok.shape or rates.size == 0:
        raise ValueError("locate_edge needs one trainable flag per candidate rate, and at least one")
    order = np.argsort(rates, kind="stable")
    r, o = rates[order], ok[order]
    if not o.any():
        return EdgeBracket(math.nan, float(r[0]), "below")
    first = int(np.argmax(o))
    fails = np.flatnonzero(~o[first:])
    if fails.size == 0:
        return EdgeBracket(float(r[-1]), math.nan, "above")
    j = first + int(fails[0])
    return EdgeBracket(float(r[j - 1]), float(r[j]), "", int(o[j:].sum()))


def refine(lo: float, hi: float, points: int) -> np.ndarray:
    """``points`` rates spaced evenly in log between lo and hi (both excluded)."""
    k = np.arange(1, points + 1) / (points + 1)
    return lo * (hi / lo) ** k


def mean_interval(log_values: np.ndarray, confidence: float = 0.95, n_resamples: int = 1000,
                  random_state: int = 0, center: str = "mean") -> tuple[float, float, float]:
    """exp of the centre (``scaling.gamma.CENTERS``; default the mean) of per-seed log values
    with its bootstrap interval over seeds: (estimate, low, high); low = high = estimate with
    one seed."""
    v = np.asarray(log_values, float)
    point = float(seed_center(v[:, None], center)[0])
    if v.size < 2:
        return math.exp(point), math.exp(point), math.exp(point)

    def stat(idx, axis=-1):
        return seed_center(v[idx.astype(int)][..., None], center)[..., 0][None]
    lo, hi = seed_bootstrap(stat, v.size, confidence, n_resamples, random_state)
    return math.exp(point), math.exp(min(float(lo[0]), point)), math.exp(max(float(hi[0]), point))


def width_summary(edges: pd.DataFrame, by: list[str], x: str, value: str = "edge", center: str = "mean") -> pd.DataFrame:
    """Per group and x (width or rank): the seed count, the censored seeds, and the edge's
    geometric seed centre (``center``: mean, median or trimmed mean of the logs) with its 95%
    bootstrap interval (NaN when any seed is censored)."""
    rows = []
    for key, g in edges.groupby(by + [x], sort=True):
        cens = g[g.censored.fillna("") != ""]
        row = dict(zip(by + [x], key), seeds=len(g), censored_seeds=len(cens),
                   censored=", ".join(sorted(set(cens.censored))) if len(cens) else "")
        est = lo = hi = math.nan
        if not len(cens) and (g[value] > 0).all():
            est, lo, hi = mean_interval(np.log(g[value].to_numpy(float)), center=center)
        rows.append({**row, value: est, f"{value}_low": lo, f"{value}_high": hi})
    return pd.DataFrame(rows)


def fit_edge_law(frame: pd.DataFrame, x: str, value: str = "edge", settle_tol: float = DEFAULT_SETTLE_TOL,
                 center: str = "mean"):
    """Log-log fit of ``value`` against ``x`` over seeds (one row per (x, seed)), leaving out
    every x at which some seed is censored; ``center``: the seeds' centre at each x (mean,
    median or trimmed mean of the logs, ``scaling.gamma.CENTERS``). Returns (PowerLawFit or
    None, the x values left out)."""
    cens = frame.censored.fillna("") != ""
    dropped = sorted(set(frame.loc[cens, x]))
    use = frame[~frame[x].isin(dropped)]
    fit = fit_power_law(use[x], use[value], use.seed, settle_tol=settle_tol, center=center) if len(use) else None
    return fit, [int(v) for v in dropped]


def corner_frame(edges: pd.DataFrame, by: list[str], b_slice: str = "b-edge", a_slice: str = "a-edge") -> pd.DataFrame:
    """lambda_c = eta_B at the B edge / eta_A at the A edge, per group, x and seed (both edges
    of one seed come from the same population's base, data and init). Censored when either is."""
    b = edges[edges.slice == b_slice].set_index(by + ["seed"])
    a = edges[edges.slice == a_slice].set_index(by + ["seed"])
    both = b[["edge_eta_b", "censored"]].join(a[["edge_eta_a", "censored"]].rename(columns={"censored": "censored_a"}),
                                              how="inner")
    cb, ca = both.censored.fillna("").astype(str), both.censored_a.fillna("").astype(str)
    cens = np.where((cb == "") & (ca == ""), "",
                    "B edge " + cb.where(cb != "", "found") + ", A edge " + ca.where(ca != "", "found"))
    out = pd.DataFrame({"edge": both.edge_eta_b / both.edge_eta_a, "censored": cens}, index=both.index)
    return out.reset_index()
