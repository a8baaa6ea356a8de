"""Verdicts: each fitted exponent against the theory's prediction.

PASS when the fit's 95% interval overlaps [predicted - tol, predicted + tol]; FAIL when it
does not; INCONCLUSIVE when the local slopes between neighbouring widths have not settled
(the asymptotic regime was not reached at these widths) or too few widths survived
divergence. A prediction of "exactly zero" (-inf) passes only if every measurement is 0.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scaling.gamma import DEFAULT_SETTLE_TOL, fit_power_law
from scaling.rules import parse_scheme
from scaling.theory import NEG_INF, PREDICTED_METRICS, fmt, predict

DEFAULT_TOLERANCE = 0.15
EXPONENT_COLUMNS = ["model", "optimizer", "init", "scheme", "metric", "layer", "step", "slope",
                    "ci_low", "ci_high", "predicted", "verdict", "reason", "r2", "local_slopes",
                    "n_widths", "n_seeds", "n_diverged", "classification"]


def verdict(fit, predicted: float, all_zero: bool, tol: float) -> tuple[str, str]:
    """(verdict, reason) for one fit (a PowerLawFit or None) against one predicted exponent."""
    if predicted == NEG_INF:
        return ("PASS", "exactly zero, as predicted") if all_zero else ("FAIL", "predicted exactly zero, measured non-zero")
    if all_zero:
        return "FAIL", "measured exactly zero, predicted a power law"
    if fit is None:
        return "INCONCLUSIVE", "fewer than two widths with finite values (divergence)"
    if not fit.settled:
        return "INCONCLUSIVE", "local slopes not settled: " + " ".join(f"{s:+.2f}" for s in fit.local_slopes)
    if fit.ci_high >= predicted - tol and fit.ci_low <= predicted + tol:
        return "PASS", f"interval overlaps {fmt(predicted)} +- {tol:g}"
    return "FAIL", f"interval [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}] misses {fmt(predicted)} +- {tol:g}"


def compare(results: pd.DataFrame, steps, tol: float = DEFAULT_TOLERANCE,
            settle_tol: float = DEFAULT_SETTLE_TOL, predictor=predict) -> pd.DataFrame:
    """Fit and judge every (model, optimizer, init, scheme, metric, layer) at each of ``steps``.

    results: the tidy table of one or more coord checks. ``predictor`` has predict's signature
    (tests pass a deliberately wrong one to see a verdict fail).
    """
    rows = []
    div = results[results.metric == "diverged"]
    keys = ["model", "optimizer", "init", "scheme"]
    for (model, opt, init, scheme), g in results[results.metric.isin(PREDICTED_METRICS)].groupby(keys, sort=False):
        sch = parse_scheme(scheme)
        d = div[(div.model == model) & (div.optimizer == opt) & (div.init == init) & (div.scheme == scheme)]
        for step in steps:
            pred = predictor(model, opt, init, sch.gA, sch.gB, int(step))
            at = g[g.step == step]
            layers = list(dict.fromkeys(at.layer))
            for (metric, layer), m in at.groupby(["metric", "layer"], sort=False):
                fit = fit_power_law(m.width, m.value, m.seed, settle_tol=settle_tol)
                expected = pred.exponents[metric]
                v, why = verdict(fit, expected, bool((m.value == 0).all()), tol)
                if layer != layers[0] and pred.classification == "unstable":
                    # The derivation assumes Theta(1) layer inputs; an unstable earlier layer
                    # breaks that (scaling.theory.ASSUMPTIONS["mlp"]).
                    v, why = "INCONCLUSIVE", "no sharp prediction: an unstable earlier layer makes this layer's input grow"
                rows.append({"model": model, "optimizer": opt, "init": init, "scheme": scheme,
                             "metric": metric, "layer": layer, "step": int(step),
                             "slope": fit.slope if fit else np.nan, "ci_low": fit.ci_low if fit else np.nan,
                             "ci_high": fit.ci_high if fit else np.nan,
                             "predicted": expected if expected != NEG_INF else -math.inf,
                             "verdict": v, "reason": why, "r2": fit.r2 if fit else np.nan,
                             "local_slopes": " ".join(f"{s:+.2f}" for s in fit.local_slopes) if fit else "",
                             "n_widths": fit.n_widths if fit else 0, "n_seeds": fit.n_seeds if fit else 0,
                             "n_diverged": int((d.step <= step).sum()), "classification": pred.classification})
    return pd.DataFrame(rows, columns=EXPONENT_COLUMNS)
