"""From measured learning-rate laws to learning rates at another width.

A law is measured as one value per (width, seed): an edge or an optimum rate along a slice
(``studies.lr_laws``). ``extrapolate`` fits log(value) = a + g log(n) to the seed-mean curve
and predicts the value at a target width, with a 95% interval from the same bootstrap over
seeds that gives the exponents their intervals (``scaling.gamma``): each resample refits the
line and predicts, so the interval carries both the intercept's and the exponent's
uncertainty, and it widens with the distance (in log width) from the widths measured. With a
given exponent (the theory's, where the measured law agrees with it) only the intercept is
fitted, and the interval is the intercept's.

``TransferRule`` is a rule for moving rates tuned at width n0 to width n: eta_A ~ (n/n0)^gA,
eta_B ~ (n/n0)^gB, or one shared rate. The rules the transfer test compares (``RULES`` and
``measured_shared_rule``): LoRA+'s (eta_A ~ 1/n, eta_B held), one shared rate held (the
practitioners' "no width dependence"), one shared rate scaled by its measured law, and muA's
single rate (n^-1/2 under Init[A] = Init[1], n^-1 under Init[B] = Init[2], for the scale
alpha/r at a fixed rank).

``recommend`` turns a stored ``lr-laws`` run (its optima.csv, laws.csv and meta.json) into
recommended rates at a target width; ``create_loraplus_optimizer(..., transfer=rule,
base_width=n0, width=n)`` applies a rule in a training loop.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.edges import mean_interval
from scaling.gamma import _log_table, seed_bootstrap, seed_center

# Beyond this many octaves (doublings) past the widest width measured, a recommendation is flagged.
FAR_OCTAVES = 2.0


@dataclass(frozen=True)
class Extrapolation:
    """A law's value at ``target``: value with its 95% interval [low, high]; the exponent used
    (fitted, with its interval, or given); the widths it rests on and how many octaves the
    target lies beyond the widest of them (negative: inside the measured range)."""

    target: float
    value: float
    low: float
    high: float
    exponent: float
    exponent_low: float
    exponent_high: float
    fitted: bool
    widths: tuple[int, ...]
    n_seeds: int

    @property
    def octaves_beyond(self) -> float:
        return math.log2(self.target / max(self.widths))

    def warning(self) -> str:
        """A plain warning when the target lies far beyond the widths measured, else ''."""
        octaves = self.octaves_beyond
        if octaves <= FAR_OCTAVES:
            return ""
        return (f"width {self.target:g} is {octaves:.1f} octaves beyond the widest width measured "
                f"({max(self.widths)}): the law is extrapolated far past its data, and a crossover the widths "
                "measured cannot show would move it")


def extrapolate(widths, values, seeds, target: float, exponent: float | None = None, confidence: float = 0.95,
                n_resamples: int = 1000, random_state: int = 0) -> Extrapolation | None:
    """The law through (width, seed, value) rows, evaluated at width ``target``; None when
    fewer than two widths have finite positive values. ``exponent`` fixes the slope (only the
    intercept is fitted); None fits it."""
    table = _log_table(widths, values, seeds)
    if table is None:
        return None
    log_table, log_w = table
    log_n = math.log(target)
    centre = log_w - log_w.mean()

    def stats(tables: np.ndarray) -> np.ndarray:
        """(prediction at target, slope) of (..., seeds, widths) log tables."""
        curve = seed_center(tables)
        if exponent is None:
            slope = curve @ (centre / (centre ** 2).sum())
        else:
            slope = np.full(curve.shape[:-1], float(exponent))
        intercept = curve.mean(-1) - slope * log_w.mean()
        return np.stack([intercept + slope * log_n, slope])

    est = stats(log_table)
    n_seeds = log_table.shape[0]
    if n_seeds >= 2:
        lows, highs = seed_bootstrap(lambda idx, axis=-1: stats(log_table[idx.astype(int)]), n_seeds, confidence,
                                     n_resamples, random_state)
        lows, highs = np.where(np.isfinite(lows), lows, est), np.where(np.isfinite(highs), highs, est)
    else:
        lows, highs = est, est
    return Extrapolation(float(target), math.exp(est[0]), math.exp(min(lows[0], est[0])),
                         math.exp(max(highs[0], est[0])), float(est[1]), float(min(lows[1], est[1])),
                         float(max(highs[1], est[1])), exponent is None,
                         tuple(int(round(w)) for w in np.exp(log_w)), n_seeds)


# -- transfer rules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransferRule:
    """Rates tuned at width n0 moved to width n: eta_A (n/n0)^gA and eta_B (n/n0)^gB; with
    ``shared`` one rate eta (n/n0)^gA serves both factors."""

    name: str
    gA: float
    gB: float
    shared: bool = False

    def rates(self, eta_a0: float, eta_b0: float, n0: float, n: float) -> tuple[float, float]:
        """(eta_A, eta_B) at width n from the pair tuned at n0 (a shared rule uses eta_a0)."""
        a = eta_a0 * (n / n0) ** self.gA
        return (a, a) if self.shared else (a, eta_b0 * (n / n0) ** self.gB)


LORAPLUS = TransferRule("LoRA+ (eta_A ~ 1/n, eta_B held)", -1.0, 0.0)
SHARED_HELD = TransferRule("one rate held", 0.0, 0.0, shared=True)


def mua_rule(init: str) -> TransferRule | None:
    """muA's optimal single rate for a fixed rank and the scale alpha/r: n^-1/2 from Init[A]
    (our Init[1]: B = 0), n^-1 from Init[B] (our Init[2]: A = 0); None for another init."""
    g = {"1": -0.5, "2": -1.0}.get(str(init))
    return None if g is None else TransferRule(f"muA (one rate ~ n^{g:g})", g, g, shared=True)


def measured_shared_rule(exponent: float) -> TransferRule:
    """One shared rate scaled by the exponent measured for it (the one-rate optimum's law)."""
    return TransferRule(f"one rate ~ n^{exponent:+.2f} (measured)", exponent, exponent, shared=True)


# -- recommendations from a stored lr-laws run ------------------------------------------------------
# What is recommended, from which table and law: (quantity, per-seed table, slice, law name).
RECOMMENDED = (("eta_A of the LoRA+ pair", "optima", "ratio", "optimum along the ratio slice"),
               ("one shared rate", "optima", "one-rate", "optimum along the one-rate slice"),
               ("largest stable eta_A of the LoRA+ pair", "edges", "ratio", "ratio edge"),
               ("largest stable shared rate", "edges", "one-rate", "one-rate edge"))
ETA_B_OF = {"eta_A of the LoRA+ pair": "eta_B of the LoRA+ pair",
            "largest stable eta_A of the LoRA+ pair": "largest stable eta_B of the LoRA+ pair"}


def _law_choice(laws: pd.DataFrame, config: str, law: str) -> tuple[float | None, str]:
    """(exponent to impose or None to fit, why): the theory's exponent when the measured law
    PASSes against it, the measured one otherwise."""
    row = laws[(laws.config == config) & (laws.law == law)]
    if row.empty:
        return None, "measured exponent (the law was not judged in this run)"
    r = row.iloc[0]
    if r.verdict == "PASS" and pd.notna(r.predicted):
        return float(r.predicted), f"the theory's exponent {r.predicted:+g} (the measured law PASSes against it)"
    if pd.isna(r.predicted):
        return None, "measured exponent (the theory predicts none here)"
    return None, f"measured exponent (against the theory's {r.predicted:+g}: {r.verdict})"


def _held_ratio(edges: pd.DataFrame, config: str, width: float) -> tuple[float, float] | None:
    """(lambda = eta_B / eta_A of a configuration's ratio slice at ``width``, its exponent in n),
    from edges.csv (each row holds the slice's held value at its own width and its exponent)."""
    r = edges[(edges.config == config) & (edges.slice_name == "ratio")]
    if r.empty:
        return None
    first = r.iloc[0]
    return float(first.held * (width / first.width) ** first.held_n), float(first.held_n)


RECOMMEND_COLUMNS = ["config", "model", "init", "target_width", "quantity", "value", "low", "high", "exponent",
                     "exponent_low", "exponent_high", "rule", "widths", "seeds", "warning"]


def per_seed(optima: pd.DataFrame, edges: pd.DataFrame, config: str, table: str, slice_name: str) -> pd.DataFrame:
    """(width, seed, value) of one configuration's optimum or edge along a slice, uncensored
    (edges: the primary criterion's)."""
    if table == "optima":
        t = optima[(optima.config == config) & (optima.slice_name == slice_name)]
    else:
        t = edges[(edges.config == config) & (edges.slice_name == slice_name) & edges.primary.astype(bool)]
    t = t[t.censored.fillna("") == ""]
    return pd.DataFrame({"width": t.width, "seed": t.seed, "value": t.edge})


def recommend(optima: pd.DataFrame, laws: pd.DataFrame, edges: pd.DataFrame, target: float) -> pd.DataFrame:
    """Recommended rates at width ``target`` for every configuration measured at two or more
    widths (``RECOMMENDED``): the LoRA+ pair (eta_A from the ratio slice's optimum law, eta_B =
    lambda(target) eta_A), one shared rate (the one-rate slice's optimum law) and, as the limits
    not to pass, the two slices' edges; each with its 95% interval, the exponent used and why
    (``_law_choice``), and a warning far beyond the widths measured.

    optima, laws, edges: a stored lr-laws run's optima.csv (per width, seed and slice: the
    optimum rate ``edge``, ``censored``), laws.csv and edges.csv. One row per (config, quantity)."""
    rows = []
    for label in (dict.fromkeys(edges.config) if len(edges) else ()):
        info = edges[edges.config == label].iloc[0]
        for quantity, table, slice_name, law in RECOMMENDED:
            t = per_seed(optima, edges, label, table, slice_name)
            exponent, why = _law_choice(laws, label, law)
            e = extrapolate(t.width, t.value, t.seed, target, exponent) if len(t) else None
            if e is None:
                continue
            base = {"config": label, "model": info.model, "init": str(info.init), "target_width": target, "rule": why,
                    "exponent": e.exponent, "exponent_low": e.exponent_low, "exponent_high": e.exponent_high,
                    "widths": " ".join(map(str, e.widths)), "seeds": e.n_seeds, "warning": e.warning()}
            rows.append({**base, "quantity": quantity, "value": e.value, "low": e.low, "high": e.high})
            held = _held_ratio(edges, label, target) if quantity in ETA_B_OF else None
            if held is not None:  # eta_B = lambda eta_A: its exponent is eta_A's plus lambda's
                lam, lam_n = held
                rows.append({**base, "quantity": ETA_B_OF[quantity], "value": lam * e.value, "low": lam * e.low,
                             "high": lam * e.high, "exponent": e.exponent + lam_n,
                             "exponent_low": e.exponent_low + lam_n, "exponent_high": e.exponent_high + lam_n,
                             "rule": why + f"; eta_B = lambda eta_A with the slice's lambda = {lam:.4g} "
                                           f"(~ n^{lam_n:+g}) at this width"})
    return pd.DataFrame(rows, columns=RECOMMEND_COLUMNS)


def check_against(recommended: pd.DataFrame, optima: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """Recommendations (from narrower widths) against the same quantities measured at their
    target widths (a run that measured those widths): per row, the measured geometric mean over
    seeds with its 95% bootstrap interval, recommended / measured, whether the measured value
    lies in the recommended interval (``inside``) and whether the two intervals overlap
    (``consistent``: they cannot be told apart with these seeds)."""
    rows = []
    source = {q: (table, slice_name) for q, table, slice_name, _ in RECOMMENDED}
    for r in recommended.itertuples():
        if r.quantity not in source:
            continue
        t = per_seed(optima, edges, r.config, *source[r.quantity])
        t = t[t.width == r.target_width]
        if t.empty:
            continue
        logs = np.log(t.groupby("seed").value.first().to_numpy(float))
        point, lo, hi = mean_interval(logs)
        rows.append({"config": r.config, "quantity": r.quantity, "target_width": r.target_width,
                     "recommended": r.value, "recommended_low": r.low, "recommended_high": r.high,
                     "measured": point, "measured_low": lo, "measured_high": hi, "ratio": r.value / point,
                     "inside": bool(r.low <= point <= r.high), "consistent": bool(r.low <= hi and lo <= r.high),
                     "seeds": logs.size})
    return pd.DataFrame(rows)


def read_run(run: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(optima, laws, edges) of a stored lr-laws run directory (ValueError if it is not one)."""
    run = Path(run)
    try:
        meta = json.loads((run / "meta.json").read_text())
        tables = [pd.read_csv(run / f"{name}.csv", dtype={"init": str}) for name in ("optima", "laws", "edges")]
    except (OSError, ValueError) as err:
        raise ValueError(f"{run} is not a complete lr-laws run ({err})") from None
    if meta.get("study") != "lr-laws":
        raise ValueError(f"{run} holds a {meta.get('study')!r} run, not lr-laws")
    return tuple(tables)


def recommend_from_run(run: str | Path, target: float) -> pd.DataFrame:
    """``recommend`` on a stored lr-laws run directory."""
    return recommend(*read_run(run), target)
