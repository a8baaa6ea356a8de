"""Optima that survive flat directions: the best rate along a slice, and the ratio profile.

Along a slice (``scaling.edges``) the loss at step T is a function of one rate. Its optimum is
the grid argmin refined by a parabola through the argmin and its two neighbours in log-rate,
when the argmin is interior (both neighbours finite); at the grid's end, or next to a
diverged rate, the argmin itself is kept and flagged as not interior.

Over two rates the optimum can slide along a ridge: where only the product eta_A eta_B matters
(Adam, Init[1], once A0 is negligible: docs, concepts, "The trainable region"), every ratio lambda = eta_B / eta_A has the
same best loss. The *profile* P(lambda) = min over eta_A of the seed-mean log-loss shows it:
lambda* is *identified* when the ratios within ``rel_tol`` of the best profile value form a set
bounded on both sides by ratios that are measurably worse (and whose own minimum over eta_A
is interior, so that "worse" is not an artefact of the eta_A range); it lies on a *ridge* when
that set reaches the end of the measured ratios. Seed means follow ``scaling.optimum``: a
rate where any seed diverged is not a trainable rate.
"""
from __future__ import annotations

import warnings

import numpy as np

from scaling.optimum import DEFAULT_REL_TOL, near_optimal


def seed_mean_log(losses: np.ndarray) -> np.ndarray:
    """Mean over seeds (axis -2) of log-loss; +inf where any seed diverged (NaN, inf or <= 0).
    losses (..., seeds, k) -> (..., k)."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.log(np.where(np.isfinite(losses) & (losses > 0), losses, np.inf)).mean(axis=-2)


def slice_optimum(log_rates: np.ndarray, log_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log rate*, log loss at it, interior) along the last axis: log_rates (k,) increasing,
    log_loss (..., k) with +inf (or NaN) where a run diverged. The loss at the optimum is the
    parabola's vertex value where interior (never above the grid minimum), else the grid
    minimum. NaN where nothing is finite."""
    x = np.asarray(log_rates, float)
    f = np.where(np.isfinite(log_loss), log_loss, np.inf)
    k = x.size
    i = np.argmin(f, axis=-1)
    best = np.take_along_axis(f, i[..., None], -1)[..., 0]
    left, right = np.clip(i - 1, 0, k - 1), np.clip(i + 1, 0, k - 1)
    fl = np.take_along_axis(f, left[..., None], -1)[..., 0]
    fr = np.take_along_axis(f, right[..., None], -1)[..., 0]
    interior = (i > 0) & (i < k - 1) & np.isfinite(fl) & np.isfinite(fr) & np.isfinite(best)
    x0, xl, xr = x[i], x[left], x[right]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        num = (x0 - xl) ** 2 * (best - fr) - (x0 - xr) ** 2 * (best - fl)
        den = (x0 - xl) * (best - fr) - (x0 - xr) * (best - fl)
        vertex = np.clip(x0 - 0.5 * num / den, xl, xr)
        # the parabola through the three points, evaluated at its vertex
        a = ((fr - best) / (xr - x0) - (best - fl) / (x0 - xl)) / (xr - xl)
        b = (best - fl) / (x0 - xl) - a * (x0 + xl)
        value = np.minimum(a * vertex ** 2 + b * vertex + (best - a * x0 ** 2 - b * x0), best)
    ok = interior & np.isfinite(vertex) & (den != 0) & np.isfinite(value)
    vertex, value = np.where(ok, vertex, x0), np.where(ok, value, best)
    finite = np.isfinite(best)
    return np.where(finite, vertex, np.nan), np.where(finite, value, np.nan), interior


def ratio_profile(losses: np.ndarray, log_ratios: np.ndarray, log_etas: np.ndarray,
                  rel_tol: float = DEFAULT_REL_TOL) -> dict:
    """The profile over ratios at one width.

    losses: (seeds, ratios, etas) loss at step T (NaN / inf = diverged), eta_A on a log grid
    log_etas for every ratio. Returns profile (ratios,) = best seed-mean log-loss over eta_A
    (the parabola's vertex value where the grid minimum is interior),
    valid (ratios,) = that best is interior in eta_A, near (ratios,) = within rel_tol of the
    best, identified (bool), span (decades of ratio in the near set), log_ratio_star (the
    near set's centroid) and a reason.
    """
    mean = seed_mean_log(np.moveaxis(losses, 0, -2))                # (ratios, etas)
    _, profile, interior = slice_optimum(log_etas, mean)
    profile = np.where(np.isfinite(profile), profile, np.inf)
    finite = np.isfinite(profile)
    if not finite.any():
        return {"profile": profile, "valid": interior, "near": np.zeros_like(finite), "identified": False,
                "span": np.nan, "log_ratio_star": np.nan, "reason": "no ratio trains"}
    near = near_optimal(np.where(finite, profile, np.inf), rel_tol) & finite
    idx = np.flatnonzero(near)
    lo, hi = idx.min(), idx.max()
    span = float((log_ratios[hi] - log_ratios[lo]) / np.log(10))
    star = float(np.mean(log_ratios[near]))
    if lo == 0 or hi == len(profile) - 1:
        end = "smallest" if lo == 0 else "largest"
        reason = f"ridge: the near-optimal ratios ({span:.1f} decades) reach the {end} ratio measured"
        return {"profile": profile, "valid": interior, "near": near, "identified": False, "span": span,
                "log_ratio_star": star, "reason": reason}
    bounded = bool(interior[lo - 1] and interior[hi + 1])
    reason = (f"identified: {span:.1f} decades of ratio within {100 * rel_tol:g}% of the best, worse ratios on both sides"
              if bounded else "not identified: a neighbouring ratio's best eta_A lies at the end of the eta_A range")
    return {"profile": profile, "valid": interior, "near": near, "identified": bounded, "span": span,
            "log_ratio_star": star, "reason": reason}
