"""Exponent fits: the slope gamma of log(value) against log(width).

value(n) ~ n^gamma. Each seed gives its own least-squares slope over the widths it has; the
point estimate is their mean (equal to the slope of the seed-averaged log curve when every
seed has every width), and its 95% interval is a bootstrap over seeds
(scipy.stats.bootstrap). Local slopes between neighbouring widths (of the seed-averaged
log values) show whether the asymptotic regime was reached: a fit whose last two local
slopes differ by more than ``settle_tol`` is flagged as not settled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

DEFAULT_SETTLE_TOL = 0.2


@dataclass
class PowerLawFit:
    slope: float
    ci_low: float
    ci_high: float
    r2: float
    local_slopes: list[float] = field(default_factory=list)
    settled: bool = True
    n_widths: int = 0
    n_seeds: int = 0


def _ols_slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def fit_power_law(widths, values, seeds=None, settle_tol: float = DEFAULT_SETTLE_TOL,
                  confidence: float = 0.95, n_resamples: int = 2000, random_state: int = 0) -> PowerLawFit | None:
    """Fit value ~ width^slope from parallel arrays (one entry per (width, seed) measurement).

    Non-positive or non-finite values are dropped (log undefined). Returns None when fewer
    than two widths remain.
    """
    df = pd.DataFrame({"w": np.asarray(widths, float), "v": np.asarray(values, float),
                       "s": np.zeros(len(widths)) if seeds is None else np.asarray(seeds)})
    df = df[np.isfinite(df.v) & (df.v > 0)]
    if df.w.nunique() < 2:
        return None
    df = df.assign(lw=np.log(df.w), lv=np.log(df.v))
    mean_curve = df.groupby("lw").lv.mean()
    lw, lv = mean_curve.index.to_numpy(), mean_curve.to_numpy()
    per_seed = np.array([_ols_slope(g.lw.to_numpy(), g.lv.to_numpy())
                         for _, g in df.groupby("s") if g.w.nunique() >= 2])
    if per_seed.size == 0:
        per_seed = np.array([_ols_slope(lw, lv)])
    slope = float(per_seed.mean())
    if per_seed.size >= 2 and np.ptp(per_seed) > 0:
        res = stats.bootstrap((per_seed,), np.mean, confidence_level=confidence, method="percentile",
                              n_resamples=n_resamples, rng=np.random.default_rng(random_state))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    elif lw.size >= 3:  # one seed: the regression's own t-interval
        reg = stats.linregress(lw, lv)
        half = stats.t.ppf(0.5 + confidence / 2, lw.size - 2) * reg.stderr
        lo, hi = slope - half, slope + half
    else:
        lo = hi = slope
    fitted = np.polyval(np.polyfit(lw, lv, 1), lw)
    ss_tot = float(((lv - lv.mean()) ** 2).sum())
    r2 = 1.0 - float(((lv - fitted) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    local = list(np.diff(lv) / np.diff(lw))
    settled = len(local) < 2 or abs(local[-1] - local[-2]) <= settle_tol
    return PowerLawFit(slope, lo, hi, r2, [float(s) for s in local], settled,
                       int(lw.size), int(df.s.nunique()))


def fit_table(results: pd.DataFrame, by=("model", "optimizer", "init", "scheme", "metric", "layer", "step"),
              settle_tol: float = DEFAULT_SETTLE_TOL) -> pd.DataFrame:
    """Fit every group of a tidy results table. Runs that diverged (a ``diverged`` row at or
    before the group's step) are excluded and counted in ``n_diverged``."""
    by = [c for c in by if c in results.columns]
    div = results[results.metric == "diverged"]
    values = results[results.metric != "diverged"]
    rows = []
    for key, g in values.groupby(by, sort=False):
        row = dict(zip(by, key))
        n_div = 0
        if not div.empty and "scheme" in row:
            d = div[(div.scheme == row["scheme"]) & (div.step <= row.get("step", np.inf))]
            for c in ("model", "optimizer", "init"):
                if c in row:
                    d = d[d[c] == row[c]]
            n_div = len(d)
        fit = fit_power_law(g.width, g.value, g.seed, settle_tol=settle_tol)
        row.update(n_diverged=n_div, n_points=len(g))
        if fit is not None:
            row.update(slope=fit.slope, ci_low=fit.ci_low, ci_high=fit.ci_high, r2=fit.r2,
                       settled=fit.settled, local_slopes=" ".join(f"{s:+.2f}" for s in fit.local_slopes))
        rows.append(row)
    return pd.DataFrame(rows)
