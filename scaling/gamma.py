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

Corrections to scaling (``fit_with_correction``): where the theory names the next term,
value ~ c n^gamma (1 + d n^-omega) with omega given (scaling.theory.Prediction.corrections), the
leading exponent gamma is fitted together with the correction's amplitude d, and judged on the
same bootstrap; the local slopes and drift of the corrected curve go through the same settled test.
"""
from __future__ import annotations

import math
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


CENTERS = ("mean", "median", "trimmed")
TRIM = 0.2  # "trimmed": the share of seeds dropped at EACH end of a width's log values, rounded down


def seed_center(log_table: np.ndarray, center: str = "mean") -> np.ndarray:
    """The curve: the centre over seeds of a (..., seeds, widths) table, ignoring missing values.
    center: "mean"; "median"; "trimmed", the mean of what is left after dropping
    floor(TRIM x count) seeds at each end (the whole mean below 5 seeds)."""
    with warnings.catch_warnings():  # a resample may miss every seed of a width: NaN, not noise
        warnings.simplefilter("ignore", RuntimeWarning)
        if center == "mean":
            return np.nanmean(log_table, axis=-2)
        if center == "median":
            return np.nanmedian(log_table, axis=-2)
        if center != "trimmed":
            raise ValueError(f"unknown centre {center!r}; choose from {', '.join(CENTERS)}")
        ordered = np.sort(log_table, axis=-2)  # NaN sorts last
        count = np.isfinite(ordered).sum(-2, keepdims=True)
        cut = np.floor(TRIM * count)
        rank = np.arange(ordered.shape[-2]).reshape(-1, 1)
        keep = (rank >= cut) & (rank < count - cut)
        return np.where(keep, ordered, 0.0).sum(-2) / np.where(count[..., 0, :] > 0, keep.sum(-2), np.nan)


def _line_stats(curve: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """(slope, drift, local slopes...) of curves (..., widths).

    drift: the least-squares slope of the local slopes against the midpoints of their
    log-width intervals, times the span of those midpoints (0 with fewer than 3 widths).
    (Sums over the short widths axis as matrix-vector products: numpy's own reduction along
    a short last axis is many times slower.)
    """
    centred = log_w - log_w.mean()
    slope = curve @ (centred / (centred ** 2).sum())
    local = np.diff(curve, axis=-1) / np.diff(log_w)
    mid = (log_w[1:] + log_w[:-1]) / 2
    if mid.size >= 2:
        mc = mid - mid.mean()
        drift = local @ (mc / (mc ** 2).sum() * (mid[-1] - mid[0]))
    else:
        drift = np.zeros_like(slope)
    return np.concatenate([slope[..., None], drift[..., None], local], axis=-1)


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


def _log_table(widths, values, seeds) -> tuple[np.ndarray, np.ndarray] | None:
    """Seeds x widths table of mean log values (rows in sorted seed order, NaN where a seed has
    no value at a width) and the log of the sorted distinct widths; None when fewer than two
    widths keep a finite positive value (non-positive or non-finite values are dropped). A numpy
    group mean: at the suite's hundreds of fits a pandas pivot per fit cost more than the bootstrap."""
    w, v = np.asarray(widths, float), np.asarray(values, float)
    s = np.zeros(len(w)) if seeds is None else np.asarray(seeds)
    keep = np.isfinite(v) & (v > 0)
    w, v, s = w[keep], v[keep], s[keep]
    width_values, col = np.unique(w, return_inverse=True)
    if width_values.size < 2:
        return None
    seed_values, row = np.unique(s, return_inverse=True)
    total = np.zeros((seed_values.size, width_values.size))
    count = np.zeros_like(total)
    np.add.at(total, (row, col), np.log(v))
    np.add.at(count, (row, col), 1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / count, np.nan), np.log(width_values)


def _settled(est: np.ndarray, lows, highs, lo: float, hi: float, settle_tol: float) -> tuple:
    """(local_ci, drift_ci, settled) from _curve_stats' estimates and their bootstrap bounds
    (None with one seed: the point estimates stand for their intervals)."""
    drift, local = float(est[1]), est[2:]
    if lows is not None:
        local_ci = [(float(a), float(b)) for a, b in zip(lows[2:], highs[2:])]
        drift_ci = (min(float(lows[1]), drift), max(float(highs[1]), drift))
    else:
        local_ci = [(float(s), float(s)) for s in local]
        drift_ci = (drift, drift)
    settled = True
    if local.size >= 2:  # the last local slope must agree with the fit
        last_lo, last_hi = local_ci[-1]
        settled = bool(last_hi + settle_tol >= lo and last_lo - settle_tol <= hi)
    trending = (drift_ci[0] > 0 or drift_ci[1] < 0) and abs(drift) > settle_tol
    return local_ci, drift_ci, settled and not trending


def _bootstrap_bounds(stat, est: np.ndarray, n_seeds: int, confidence: float, n_resamples: int,
                      random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """seed_bootstrap bounds of ``stat``, with the point estimate standing in where a bound is
    not finite (a resample that missed every seed of a width)."""
    lows, highs = seed_bootstrap(stat, n_seeds, confidence, n_resamples, random_state)
    return np.where(np.isfinite(lows), lows, est), np.where(np.isfinite(highs), highs, est)


def fit_power_law(widths, values, seeds=None, settle_tol: float = DEFAULT_SETTLE_TOL,
                  confidence: float = 0.95, n_resamples: int = 1000, random_state: int = 0,
                  center: str = "mean") -> PowerLawFit | None:
    """Fit value ~ width^slope from parallel arrays (one entry per (width, seed) measurement).

    Non-positive or non-finite values are dropped (log undefined). Returns None when fewer
    than two widths remain. center: how the seeds' log values of a width make the curve
    (``CENTERS``; the bootstrap recomputes that centre on every resample).
    """
    fits = fit_with_correction(widths, values, seeds, None, settle_tol, confidence, n_resamples, random_state,
                               center)
    return None if fits is None else fits[0]


# -- corrections to scaling ----------------------------------------------------------------
# value(n) = c n^gamma (1 + d n^-omega) with omega from scaling.theory (never fitted). The fit is
# parametrised by the correction's share at the narrowest width, s = d n_min^-omega, bounded to
# SHARE_BOUNDS: a correction at most as large as the leading term there, and 1 + s > 0 so that the
# log stays defined. A best fit on a bound says the two terms are not separated at these widths.
SHARE_BOUNDS = (-0.99, 1.0)
MIN_CORRECTED_WIDTHS = 4  # three parameters: at least one degree of freedom to judge the fit


@dataclass
class CorrectedFit(PowerLawFit):
    """A PowerLawFit of the corrected curve log(value) - log(1 + s (n / n_min)^-omega): ``slope``
    is the corrected gamma; its interval, local slopes and settled flag are those of the
    corrected curve (the same bootstrap resamples over seeds as the straight fit)."""

    omega: float = math.nan
    share: float = 0.0                      # s = d n_min^-omega: the correction's size at the narrowest width
    share_ci: tuple[float, float] = (0.0, 0.0)
    at_bound: bool = False                  # the best share sits on one of SHARE_BOUNDS
    quality: float = math.nan               # sqrt(chi^2 / dof) against the seed means' standard errors


# uniform in log(1 + s): fine near s = -1, where log(1 + s ratio) turns steep
_SHARE_GRID = np.expm1(np.linspace(*np.log1p(SHARE_BOUNDS), 33))


def _best_share(curves: np.ndarray, log_w: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Least squares over (log c, gamma, s) with s in SHARE_BOUNDS, for each curve (B, k) at once.

    For a fixed s the model is linear in (log c, gamma), so those are solved exactly and only
    the residual's profile in s is searched (variable projection): with P the projection off
    (1, log n) and L(s) = log(1 + s ratio), RSS(s) = |P curve - P L(s)|^2. A grid of s brackets
    the minimum, Newton steps inside the bracket polish it, and a bound wins where its RSS is
    lower. Returns s (B,); NaN for a curve with a NaN. Arrays are kept widths-first, (k, B):
    sums over the short widths axis are then fast."""
    xc = log_w - log_w.mean()
    xc = (xc / np.sqrt((xc * xc).sum()))[:, None]
    r = ratio[:, None]

    def project(v):  # off the constant and the log width, along axis 0
        v = v - v.mean(0)
        return v - (v * xc).sum(0) * xc

    c = project(np.ascontiguousarray(np.nan_to_num(curves).T))          # (k, B), rows contiguous
    L = project(np.log1p(_SHARE_GRID[None, :] * r))                      # (k, G)
    i = ((L * L).sum(0)[:, None] - 2 * (L[:, :, None] * c[:, None, :]).sum(0)).argmin(0)
    lo, hi = _SHARE_GRID[np.maximum(i - 1, 0)], _SHARE_GRID[np.minimum(i + 1, _SHARE_GRID.size - 1)]

    def rss(s):
        return ((c - project(np.log1p(s * r))) ** 2).sum(0)

    s = _SHARE_GRID[i]
    for _ in range(6):  # Newton on RSS(s) within the bracket
        q = r / (1 + s * r)                                             # dL/ds
        e = c - project(np.log1p(s * r))
        d1, d2 = project(q), project(-q * q)
        grad, curv = -(e * d1).sum(0), (d1 * d1).sum(0) - (e * d2).sum(0)
        with np.errstate(all="ignore"):
            s = np.clip(np.where(curv > 0, s - grad / curv, s), lo, hi)
    for edge in SHARE_BOUNDS:  # a minimum on a bound stays there
        at = np.full_like(s, edge)
        near = (np.abs(lo - edge) < 1e-12) | (np.abs(hi - edge) < 1e-12)
        s = np.where(near & (rss(at) <= rss(s)), at, s)
    return np.where(np.isfinite(curves).all(-1), s, np.nan)


def fit_with_correction(widths, values, seeds=None, omega: float | None = None,
                        settle_tol: float = DEFAULT_SETTLE_TOL, confidence: float = 0.95, n_resamples: int = 1000,
                        random_state: int = 0, center: str = "mean") -> tuple[PowerLawFit, CorrectedFit | None] | None:
    """The straight fit (``fit_power_law``) and, with ``omega``, the corrected fit
    value ~ c n^gamma (1 + d n^-omega), from one seeds x widths table and one bootstrap.

    The corrected fit is bounded least squares on the seed-mean curve of log values (log c and
    gamma solved exactly for each share s = d n_min^-omega, s searched in SHARE_BOUNDS:
    ``_best_share``); the interval of gamma comes from the same percentile bootstrap over seeds
    as the straight slope's (the same resamples; s refitted on each). With one seed it is the
    least-squares t-interval. The corrected fit is None without ``omega`` or with fewer than
    MIN_CORRECTED_WIDTHS widths; the whole result is None with fewer than two widths.
    """
    if omega is not None and not omega > 0:
        raise ValueError(f"omega must be positive, got {omega}")
    if center not in CENTERS:
        raise ValueError(f"unknown centre {center!r}; choose from {', '.join(CENTERS)}")
    prepared = _log_table(widths, values, seeds)
    if prepared is None:
        return None
    M, log_w = prepared
    n_seeds, k = M.shape
    corrected = omega is not None and k >= MIN_CORRECTED_WIDTHS
    ratio = np.exp(-omega * (log_w - log_w[0])) if corrected else None  # (n / n_min)^-omega
    curve = seed_center(M, center)

    def both(curves: np.ndarray) -> np.ndarray:
        """(slope, drift, local..., [gamma, drift, local..., share]) of seed-mean curves (..., k)."""
        straight = _line_stats(curves, log_w)
        if not corrected:
            return straight
        share = _best_share(curves.reshape(-1, k), log_w, ratio).reshape(curves.shape[:-1])
        fixed = curves - np.log1p(share[..., None] * ratio)
        return np.concatenate([straight, _line_stats(fixed, log_w), share[..., None]], axis=-1)

    est = both(curve)
    lows = highs = None
    if n_seeds >= 2:
        def stat(idx, axis=-1):
            return np.moveaxis(both(seed_center(M[idx.astype(int)], center)), -1, 0)
        lows, highs = _bootstrap_bounds(stat, est, n_seeds, confidence, n_resamples, random_state)
    m = k + 1  # rows of the straight part: slope, drift, k - 1 local slopes
    straight = _straight_fit(M, log_w, curve, est[:m], None if lows is None else lows[:m],
                             None if highs is None else highs[:m], confidence, settle_tol)
    if not corrected:
        return straight, None
    return straight, _corrected_fit(M, log_w, curve, ratio, float(omega), est[m:], None if lows is None else lows[m:],
                                    None if highs is None else highs[m:], confidence, settle_tol)


def _r2(curve: np.ndarray, resid: np.ndarray) -> float:
    ss_tot = float(((curve - curve.mean()) ** 2).sum())
    return 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0


def _straight_fit(M, log_w, curve, est, lows, highs, confidence, settle_tol) -> PowerLawFit:
    slope, drift, local = float(est[0]), float(est[1]), est[2:]
    if lows is not None:
        lo, hi = float(lows[0]), float(highs[0])
    elif log_w.size >= 3:
        reg = stats.linregress(log_w, M[0])
        half = stats.t.ppf(0.5 + confidence / 2, log_w.size - 2) * reg.stderr
        lo, hi = slope - half, slope + half
    else:
        lo = hi = slope
    lo, hi = min(lo, slope), max(hi, slope)
    r2 = _r2(curve, curve - curve.mean() - slope * (log_w - log_w.mean()))
    local_ci, drift_ci, settled = _settled(est, lows, highs, lo, hi, settle_tol)
    return PowerLawFit(slope, lo, hi, r2, [float(s) for s in local], local_ci, settled, drift, drift_ci,
                       int(log_w.size), int(M.shape[0]))


def _corrected_fit(M, log_w, curve, ratio, omega, est, lows, highs, confidence, settle_tol) -> CorrectedFit:
    """est, lows, highs: (gamma, drift, local..., share) and their bootstrap bounds (None: one seed)."""
    n_seeds, k = M.shape
    gamma, share = float(est[0]), float(est[-1])
    lo_s, hi_s = SHARE_BOUNDS
    at_bound = bool(min(share - lo_s, hi_s - share) < 1e-3 * (hi_s - lo_s))
    xc = log_w - log_w.mean()
    fixed = curve - np.log1p(share * ratio)
    resid = fixed - fixed.mean() - gamma * xc
    if lows is not None:
        lo, hi = float(lows[0]), float(highs[0])
        share_ci = (min(float(lows[-1]), share), max(float(highs[-1]), share))
    else:  # one seed: the least-squares t-interval from the Jacobian of (log c, gamma, s)
        jac = np.stack([np.ones(k), xc, ratio / (1 + share * ratio)], axis=1)
        cov = np.linalg.pinv(jac.T @ jac) * float((resid ** 2).sum()) / (k - 3)
        half = stats.t.ppf(0.5 + confidence / 2, k - 3) * np.sqrt(np.abs(np.diag(cov)))
        lo, hi, share_ci = gamma - half[1], gamma + half[1], (share - half[2], share + half[2])
    lo, hi = min(lo, gamma), max(hi, gamma)
    quality = math.nan
    if n_seeds >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            se = np.nanstd(M, axis=0, ddof=1) / np.sqrt(np.isfinite(M).sum(0))
        if np.all(se > 0):
            quality = float(np.sqrt(((resid / se) ** 2).sum() / (k - 3)))
    local_ci, drift_ci, settled = _settled(est[:-1], None if lows is None else lows[:-1],
                                           None if highs is None else highs[:-1], lo, hi, settle_tol)
    return CorrectedFit(gamma, lo, hi, _r2(curve, resid), [float(x) for x in est[2:-1]], local_ci, settled,
                        float(est[1]), drift_ci, int(k), int(n_seeds), omega, share, share_ci, at_bound, quality)


def fit_corrected(widths, values, seeds=None, omega: float = 1.0, **kwargs) -> CorrectedFit | None:
    """The corrected fit alone (``fit_with_correction``); None with fewer than
    MIN_CORRECTED_WIDTHS widths."""
    fits = fit_with_correction(widths, values, seeds, omega, **kwargs)
    return None if fits is None else fits[1]


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
