"""Exponent fits: the slope gamma of log(value) against log(width).

value(n) ~ n^gamma. Measurements form a seeds x widths table of log values; the curve is
its seed mean per width, the slope is the least-squares slope of that curve against
log(width), and the local slopes are its differences between neighbouring widths. A 95%
interval for the slope AND for every local slope comes from one bootstrap over seeds
(scipy.stats.bootstrap, percentile; seeds are resampled as whole rows). With a single seed
the slope's interval is the regression's t-interval and local slopes have none.

Settled: the asymptotic regime counts as reached when (1) the last local slope agrees with
the fitted slope (their intervals, widened by ``settle_tol``, overlap) and (2) the local
slopes show no trend: their drift, the least-squares change of the local slope across the
measured range of log widths (a curvature), is not both significant (its interval excludes
0) and larger than ``settle_tol``. (2) catches slow crossovers such as c0 + c1 n^g, whose
local slopes climb steadily towards g without any single one standing out. A curve still
bending is flagged instead of being reported as a clean exponent.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

DEFAULT_SETTLE_TOL = 0.1


@dataclass
class PowerLawFit:
    slope: float
    ci_low: float
    ci_high: float
    r2: float
    local_slopes: list[float] = field(default_factory=list)
    local_ci: list[tuple[float, float]] = field(default_factory=list)
    settled: bool = True
    drift: float = 0.0
    drift_ci: tuple[float, float] = (0.0, 0.0)
    n_widths: int = 0
    n_seeds: int = 0


def _curve_stats(log_table: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """(slope, drift, local slopes...) of the seed-mean curve; log_table (..., seeds, widths).

    drift: the least-squares slope of the local slopes against the midpoints of their
    log-width intervals, times the span of those midpoints (0 with fewer than 3 widths).
    """
    with warnings.catch_warnings():  # a resample may miss every seed of a width: NaN, not noise
        warnings.simplefilter("ignore", RuntimeWarning)
        curve = np.nanmean(log_table, axis=-2)
    centred = log_w - log_w.mean()
    slope = (curve * centred).sum(-1) / (centred ** 2).sum()
    local = np.diff(curve, axis=-1) / np.diff(log_w)
    mid = (log_w[1:] + log_w[:-1]) / 2
    if mid.size >= 2:
        mc = mid - mid.mean()
        drift = (local * mc).sum(-1) / (mc ** 2).sum() * (mid[-1] - mid[0])
    else:
        drift = np.zeros_like(slope)
    return np.concatenate([slope[..., None], drift[..., None], local], axis=-1)


def _seed_width_table(seeds: np.ndarray, widths: np.ndarray, log_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log of the sorted distinct widths, seeds x widths table of mean log values, NaN where
    a seed has no value at a width); rows in sorted seed order. A numpy group mean: at the
    suite's hundreds of fits a pandas pivot per fit cost more than the bootstrap."""
    seed_values, row = np.unique(seeds, return_inverse=True)
    width_values, col = np.unique(widths, return_inverse=True)
    total = np.zeros((seed_values.size, width_values.size))
    count = np.zeros_like(total)
    np.add.at(total, (row, col), log_values)
    np.add.at(count, (row, col), 1)
    with np.errstate(invalid="ignore"):
        return np.log(width_values), np.where(count > 0, total / count, np.nan)


def seed_bootstrap(statistic, n_seeds: int, confidence: float = 0.95, n_resamples: int = 1000,
                   random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over seeds (scipy.stats.bootstrap, seeds resampled as whole rows):
    ``statistic(idx)`` gets seed indices (..., n_seeds) and returns (k, ...) estimates; returns
    the (low, high) interval bounds, each (k,)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((np.arange(n_seeds, dtype=float),), statistic, vectorized=True,
                              confidence_level=confidence, method="percentile",
                              n_resamples=n_resamples, rng=np.random.default_rng(random_state))
    return np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)


def fit_power_law(widths, values, seeds=None, settle_tol: float = DEFAULT_SETTLE_TOL,
                  confidence: float = 0.95, n_resamples: int = 1000, random_state: int = 0) -> PowerLawFit | None:
    """Fit value ~ width^slope from parallel arrays (one entry per (width, seed) measurement).

    Non-positive or non-finite values are dropped (log undefined). Returns None when fewer
    than two widths remain.
    """
    w, v = np.asarray(widths, float), np.asarray(values, float)
    s = np.zeros(len(w)) if seeds is None else np.asarray(seeds)
    keep = np.isfinite(v) & (v > 0)
    w, v, s = w[keep], v[keep], s[keep]
    if np.unique(w).size < 2:
        return None
    log_w, M = _seed_width_table(s, w, np.log(v))
    est = _curve_stats(M, log_w)
    slope, drift, local = float(est[0]), float(est[1]), est[2:]
    n_seeds = M.shape[0]
    lows = highs = None
    if n_seeds >= 2:
        def stat(idx, axis=-1):
            return np.moveaxis(_curve_stats(M[idx.astype(int)], log_w), -1, 0)
        lows, highs = seed_bootstrap(stat, n_seeds, confidence, n_resamples, random_state)
        lows, highs = np.where(np.isfinite(lows), lows, est), np.where(np.isfinite(highs), highs, est)
        lo, hi = float(lows[0]), float(highs[0])
    elif log_w.size >= 3:
        reg = stats.linregress(log_w, M[0])
        half = stats.t.ppf(0.5 + confidence / 2, log_w.size - 2) * reg.stderr
        lo, hi = slope - half, slope + half
    else:
        lo = hi = slope
    lo, hi = min(lo, slope), max(hi, slope)
    curve = np.nanmean(M, axis=0)
    fitted = curve.mean() + slope * (log_w - log_w.mean())
    ss_tot = float(((curve - curve.mean()) ** 2).sum())
    r2 = 1.0 - float(((curve - fitted) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    if lows is not None:
        local_ci = [(float(a), float(b)) for a, b in zip(lows[2:], highs[2:])]
        drift_ci = (min(float(lows[1]), drift), max(float(highs[1]), drift))
    else:  # one seed: no interval, the point estimate stands for it
        local_ci = [(float(s), float(s)) for s in local]
        drift_ci = (drift, drift)
    settled = True
    if local.size >= 2:  # the last local slope must agree with the fit
        last_lo, last_hi = local_ci[-1]
        settled = bool(last_hi + settle_tol >= lo and last_lo - settle_tol <= hi)
    trending = (drift_ci[0] > 0 or drift_ci[1] < 0) and abs(drift) > settle_tol
    settled = settled and not trending
    return PowerLawFit(slope, lo, hi, r2, [float(s) for s in local], local_ci, settled, drift, drift_ci,
                       int(log_w.size), int(n_seeds))


def fit_table(results: pd.DataFrame, by=("model", "optimizer", "init", "scheme", "metric", "layer", "step"),
              settle_tol: float = DEFAULT_SETTLE_TOL) -> pd.DataFrame:
    """Fit every group of a tidy results table (rows: width, seed, value). Values of runs that
    diverged are absent from the table already, so they are excluded by construction."""
    by = [c for c in by if c in results.columns]
    rows = []
    for key, g in results[results.metric != "diverged"].groupby(by, sort=False):
        fit = fit_power_law(g.width, g.value, g.seed, settle_tol=settle_tol)
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)), n_points=len(g))
        if fit is not None:
            row.update(slope=fit.slope, ci_low=fit.ci_low, ci_high=fit.ci_high, r2=fit.r2,
                       settled=fit.settled, local_slopes=" ".join(f"{s:+.2f}" for s in fit.local_slopes))
        rows.append(row)
    return pd.DataFrame(rows)
