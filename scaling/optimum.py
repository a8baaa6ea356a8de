"""Where is the best (eta_A, eta_B)? Robust optima of a learning-rate grid, and lambda*(n).

A raw argmin over a log grid jumps between neighbouring cells when the landscape is flat
and noisy. Instead, for one (width, step, split):
  1. average log-loss over seeds per pair, under the divergence rule (``DIVERGENCE_RULE``):
     a pair where any seed diverged is not trainable (+inf), never the mean of its survivors;
  2. the near-optimal set: pairs whose seed-mean loss is within ``rel_tol`` (1%) of the best,
     the set the paper's Fig. 2 marks;
  3. the optimum is the set's centroid in log space: log eta_A*, log eta_B* and
     log lambda* = log eta_B* - log eta_A* are the means over the set.
A bootstrap over seeds (seeds resampled as whole rows, every pair together) gives intervals
for each and, jointly over widths, for the log-log slopes of eta_A*(n), eta_B*(n) and
lambda*(n) against n (the theory: -1, 0 and +1). Where the loss hardly depends on one rate
(a flat direction), that rate's optimum, and lambda* with it, is poorly identified: the
intervals say so, and eta_A*'s and eta_B*'s own slopes show which one is pinned down.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from scaling.gamma import seed_bootstrap

DEFAULT_REL_TOL = 0.01
DIVERGENCE_RULE = ("A pair (eta_A, eta_B) where any seed diverged by the step shown (its loss turned NaN/inf or "
                   "grew 1e8-fold) is not a trainable pair: its loss is not the mean over the surviving seeds, "
                   "and it is never near-optimal, never the best pair, and excluded from every bootstrap "
                   "resample's optimum.")


def trainable_log_losses(losses: np.ndarray, seed_axis: int = -2) -> np.ndarray:
    """Log-losses under ``DIVERGENCE_RULE``: every seed of a pair where any seed diverged
    (loss NaN, inf or not positive) becomes +inf. (..., seeds, ...) -> same shape."""
    ok = np.isfinite(losses) & (losses > 0)
    trainable = ok.all(axis=seed_axis, keepdims=True)
    return np.where(trainable, np.log(np.where(ok, losses, 1.0)), np.inf)


def seed_mean_log_loss(losses: np.ndarray, seed_axis: int = -2) -> np.ndarray:
    """Mean log-loss over seeds of each pair, +inf for a pair that is not trainable
    (``DIVERGENCE_RULE``); ``seed_axis`` is removed."""
    return trainable_log_losses(losses, seed_axis).mean(axis=seed_axis)


def diverged_seeds(losses: np.ndarray, seed_axis: int = -2) -> np.ndarray:
    """How many seeds of each pair diverged; ``seed_axis`` is removed."""
    return (~(np.isfinite(losses) & (losses > 0))).sum(axis=seed_axis)


def near_optimal(mean_log_loss: np.ndarray, rel_tol: float = DEFAULT_REL_TOL) -> np.ndarray:
    """Boolean mask of pairs within ``rel_tol`` of the best loss; (..., pairs) -> same shape."""
    best = np.min(mean_log_loss, axis=-1, keepdims=True)
    return mean_log_loss <= best + np.log1p(rel_tol)


def _centroids(log_loss: np.ndarray, log_a: np.ndarray, log_b: np.ndarray, rel_tol: float) -> np.ndarray:
    """log_loss (..., seeds, pairs) -> (..., 4): centroid log eta_A, log eta_B, log lambda and
    the size of the near-optimal set (NaN where every pair diverged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = log_loss.mean(axis=-2)                                    # (..., pairs)
    finite = np.isfinite(mean).any(axis=-1)
    mask = near_optimal(np.where(np.isfinite(mean), mean, np.inf), rel_tol) & np.isfinite(mean)
    count = mask.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ca = (mask * log_a).sum(-1) / count
        cb = (mask * log_b).sum(-1) / count
    out = np.stack([ca, cb, cb - ca, count.astype(float)], axis=-1)
    out[~finite] = np.nan
    return out


def optimum_table(losses: np.ndarray, eta_a: np.ndarray, eta_b: np.ndarray, widths,
                  rel_tol: float = DEFAULT_REL_TOL, confidence: float = 0.95, n_resamples: int = 1000,
                  random_state: int = 0) -> tuple[pd.DataFrame, dict]:
    """Optima per width and the fitted slope of lambda*(n).

    losses: (widths, seeds, pairs) final losses (NaN/inf = diverged); eta_a, eta_b: (pairs,).
    The divergence rule is applied before resampling: a pair that diverged on any measured seed
    stays excluded in every resample, even one that happens to draw only its surviving seeds.
    Returns (one row per width: eta_a_star, eta_b_star, lambda_star with low/high interval
    bounds, n_near, n_not_trainable (pairs with a diverged seed) and n_partly_diverged (of those,
    the ones with surviving seeds)), and the log-log slopes against n: {slope, ci_low, ci_high} for lambda*
    and {slope_eta_a, ..._low, ..._high}, {slope_eta_b, ...} for eta_A* and eta_B* (None with
    fewer than 2 widths).
    """
    L = trainable_log_losses(losses)
    n_div = diverged_seeds(losses)                                        # (W, pairs)
    la, lb = np.log(np.asarray(eta_a, float)), np.log(np.asarray(eta_b, float))
    lw = np.log(np.asarray(widths, float))
    est = _centroids(L, la, lb, rel_tol)                                  # (W, 4)
    n_seeds = L.shape[1]

    def slope_of(log_lambda):                                             # (..., W) -> (...)
        c = lw - lw.mean()
        return ((log_lambda - log_lambda.mean(-1, keepdims=True)) * c).sum(-1) / (c ** 2).sum()

    def statistic(idx, axis=-1):
        cent = _centroids(L[:, idx.astype(int)], la, lb, rel_tol)         # (W, B?, 4) or (W, 4)
        cent = np.moveaxis(cent, 0, -2)                                   # (..., W, 4)
        flat = np.concatenate([cent[..., 0], cent[..., 1], cent[..., 2]], axis=-1)  # (..., 3W)
        if len(lw) >= 2:  # slopes of log eta_A*, log eta_B*, log lambda* against log n
            slopes = np.stack([slope_of(cent[..., k]) for k in range(3)], axis=-1)
            flat = np.concatenate([flat, slopes], axis=-1)
        return np.moveaxis(flat, -1, 0)

    point = statistic(np.arange(n_seeds))
    lo = hi = point
    if n_seeds >= 2:
        lo, hi = seed_bootstrap(statistic, n_seeds, confidence, n_resamples, random_state)
        lo, hi = np.fmin(lo, point), np.fmax(hi, point)
    W = len(lw)
    shape = _near_set_shape(L, la, lb, rel_tol)
    rows = []
    for i, w in enumerate(widths):
        row = {"width": int(w), "n_near": int(est[i, 3]) if np.isfinite(est[i, 3]) else 0, **shape[i],
               "n_not_trainable": int((n_div[i] > 0).sum()),
               "n_partly_diverged": int(((n_div[i] > 0) & (n_div[i] < n_seeds)).sum())}
        for k, name in enumerate(("eta_a_star", "eta_b_star", "lambda_star")):
            j = k * W + i
            row[name] = float(np.exp(point[j]))
            row[f"{name}_low"], row[f"{name}_high"] = float(np.exp(lo[j])), float(np.exp(hi[j]))
        rows.append(row)
    fit = {"slope": None, "ci_low": None, "ci_high": None, "slope_eta_a": None, "slope_eta_a_low": None,
           "slope_eta_a_high": None, "slope_eta_b": None, "slope_eta_b_low": None, "slope_eta_b_high": None,
           "n_widths": W, "n_seeds": n_seeds, "rel_tol": rel_tol}
    if W >= 2:
        fit.update(slope=float(point[-1]), ci_low=float(lo[-1]), ci_high=float(hi[-1]),
                   slope_eta_a=float(point[-3]), slope_eta_a_low=float(lo[-3]), slope_eta_a_high=float(hi[-3]),
                   slope_eta_b=float(point[-2]), slope_eta_b_low=float(lo[-2]), slope_eta_b_high=float(hi[-2]))
    return pd.DataFrame(rows), fit


def _near_set_shape(L: np.ndarray, la: np.ndarray, lb: np.ndarray, rel_tol: float) -> list[dict]:
    """Per width: does the near-optimal set touch the edge of the grid (then the optimum is
    not bracketed and its centroid follows the edge), and its ridge slope d log eta_B /
    d log eta_A (least squares over the set; about -1 when only the product eta_A eta_B is
    pinned down, as A <-> B rescaling makes it in a linear model; inf when eta_A is pinned
    and eta_B free). NaN with < 3 pairs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = L.mean(axis=-2)
    out = []
    for m in mean:
        finite = np.isfinite(m)
        if not finite.any():
            out.append({"touches_edge": False, "ridge_slope": np.nan})
            continue
        mask = near_optimal(np.where(finite, m, np.inf)[None], rel_tol)[0] & finite
        edge = ((la[mask] <= la.min() + 1e-12) | (la[mask] >= la.max() - 1e-12)
                | (lb[mask] <= lb.min() + 1e-12) | (lb[mask] >= lb.max() - 1e-12)).any()
        slope = np.nan
        if mask.sum() >= 3 and np.ptp(la[mask]) > 0:
            slope = float(np.polyfit(la[mask], lb[mask], 1)[0])
        elif mask.sum() >= 3 and np.ptp(lb[mask]) > 0:
            slope = np.inf  # a vertical ridge: eta_A pinned, eta_B free
        out.append({"touches_edge": bool(edge), "ridge_slope": slope})
    return out


def equal_rate_gap(losses: np.ndarray, eta_a: np.ndarray, eta_b: np.ndarray) -> np.ndarray:
    """Per width: best seed-mean loss over equal-rate pairs / best over all pairs (>= 1).
    losses (widths, seeds, pairs). Pairs count as equal-rate when eta_a == eta_b up to 1e-9."""
    mean = np.exp(seed_mean_log_loss(losses))
    equal = np.isclose(np.asarray(eta_a), np.asarray(eta_b), rtol=1e-9)
    if not equal.any():
        raise ValueError("the grid has no equal-rate pairs: give eta_A and eta_B the same range and density")
    return np.min(mean[:, equal], axis=-1) / np.min(mean, axis=-1)
