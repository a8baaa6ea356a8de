"""Verdicts: each fitted exponent against the theory's prediction.

PASS when the fit's 95% interval overlaps [predicted - tol, predicted + tol]; FAIL when it
does not; INCONCLUSIVE when the local slopes between neighbouring widths have not settled
(the asymptotic regime was not reached at these widths) or too few widths survived
divergence. A prediction of "exactly zero" (-inf) passes only if every measurement is 0.

Past an unstable scheme's blow-up step the theory claims less (``Prediction.claim``): for
Adam the exponent is an upper bound, which PASSes when the interval reaches below
predicted + tol and FAILs when the whole interval lies above it; for SGD no exponent is
predicted and the verdict is INCONCLUSIVE whatever was measured.

A sum's exponent is its largest term's, but only once that term dominates. z_a (and delta2,
which carries Z_A(t-1)) is Z_A(0) + dz_a, and dz_b is delta1 + delta2 + delta3; when the term
predicted to dominate is still the smaller one at the widest width measured, or at the narrowest
(more than a correction to scaling can be), the sum's slope is a crossover, not the asymptotic
exponent, and its verdict is INCONCLUSIVE (``crossover``).
The terms themselves (dz_a, the deltas) are judged on their own.

Stacked LoRA layers: a layer behind another one (``chain_position`` > 1) is judged against its
own prediction (``scaling.theory.predict(..., layer=)``). Where that prediction gives a metric
only bounds (a stacked-layer crossover, ``Prediction.bounds``) the check is INCONCLUSIVE when the
fit's interval overlaps [lower - tol, upper + tol] (``bounded_verdict``) and FAILs when it misses it.

``compare_first_step`` judges one more quantity the same way: each layer's first-step loss
decrease (``loss_drop`` at step 1) against ``scaling.theory.first_step_loss_drop``.

Corrections to scaling: where the theory names the term next in size (``Correction.omega``),
the verdict judges the corrected exponent gamma of value ~ c n^gamma (1 + d n^-omega)
(``scaling.gamma.fit_with_correction``) by the same rules (tolerance, settled local slopes of the
corrected curve, crossovers), and keeps the straight slope's verdict beside it
(``verdict_straight``). The corrected fit adds two INCONCLUSIVE reasons (``corrected_verdict``):
the best fit puts the correction on its bound (as large as the leading term at the narrowest
width), or the corrected interval of gamma is wider than the tolerance band (the widths cannot
separate the two terms). A corrected interval that misses the band is a FAIL however wide.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from scaling.gamma import DEFAULT_SETTLE_TOL, MIN_CORRECTED_WIDTHS, fit_with_correction
from scaling.rules import parse_scheme
from scaling.exponents import NEG_INF, fmt
from scaling.theory import PREDICTED_METRICS, first_step_loss_drop, predict

DEFAULT_TOLERANCE = 0.15
# Data a verdict needs: a slope from two widths has no local slope to check, and an interval
# from one seed is no interval at all, so neither can PASS or FAIL anything.
MIN_WIDTHS, MIN_SEEDS = 3, 2


# Why a check is not a PASS, by kind. A FAIL is "contradicted"; an INCONCLUSIVE reason's kind is
# found from how it starts, after any "corrected (omega = x): " tag: (start, label, what it means).
# Every reason these functions write has a kind (tests/test_verdicts.py checks that none is left
# unnamed), so the reports never file a check under "other".
FAIL_KIND = ("contradicted", "the measured interval misses the predicted exponent +- tolerance")
REASON_KINDS = [
    ("local slopes not settled", "slopes still moving",
     "the local slopes between neighbouring widths still change: these widths have not reached the asymptotic regime"),
    ("crossover", "sum not yet dominated",
     "a sum (z_a, delta2 or dz_b) whose predicted leading term is still the smaller one at the widest width, "
     "or at the narrowest, where a correction to scaling may be at most as large as the leading term"),
    ("no sharp prediction", "after an unstable layer",
     "a layer after an unstable one gets inputs that grow with n: the theory makes no sharp prediction"),
    ("past the blow-up", "SGD past its blow-up", "SGD diverges past its blow-up: no exponent is predicted"),
    ("fewer than two widths left", "censored",
     "the edge was not crossed inside the search range at too many widths (censored): too few widths are left to fit"),
    ("fewer than two widths", "diverged", "fewer than two widths kept finite values"),
    ("no prediction", "no prediction", "the theory predicts no exponent for this law (bounds at most)"),
    ("stacked-layer crossover", "stacked-layer crossover",
     "a layer behind another LoRA layer: the part the backward link adds overtakes the Theta(1) part only beyond "
     "these widths, so the theory gives bounds (without and with the link), and the measured slope lies within them"),
    ("lambda* not identified", "ridge",
     "the loss-optimal ratio lies on a ridge (only the product eta_A eta_B is pinned down): it has no exponent"),
    ("too little data", "too little data", "fewer than 3 widths or 2 seeds: no verdict can rest on them"),
    ("the best fit puts the correction on its bound", "correction as large as the leading term",
     "the corrected fit needs a correction as large as the leading term at the narrowest width, where its ansatz "
     "no longer holds: these widths cannot separate the two terms"),
    ("interval", "correction not separated",
     "the corrected exponent's interval is wider than the tolerance band: the widths and seeds cannot yet "
     "separate the exponent from its correction"),
    ("fewer than", "too few widths for a correction", "too few widths with finite values to fit a correction"),
]
_CORRECTED = re.compile(r"^corrected \(omega = [^)]*\): ")


def reason_kind(verdict: str, reason: str) -> str:
    """The short label of why a check is not a PASS: "" for a PASS, FAIL_KIND's for a FAIL, an
    INCONCLUSIVE reason's from REASON_KINDS ("unnamed" where none covers it: a bug)."""
    if verdict == "PASS":
        return ""
    if verdict == "FAIL":
        return FAIL_KIND[0]
    text = _CORRECTED.sub("", reason)
    return next((label for start, label, _ in REASON_KINDS if text.startswith(start)), "unnamed")


def kind_meaning(label: str) -> str:
    """What a reason kind means, in one sentence."""
    if label == FAIL_KIND[0]:
        return FAIL_KIND[1]
    return next(meaning for _, kind, meaning in REASON_KINDS if kind == label)


def too_little_data(n_widths: int, n_seeds: int) -> str | None:
    """Why measurements at ``n_widths`` widths from ``n_seeds`` seeds are too thin to judge, or
    None when they are enough."""
    if n_widths < MIN_WIDTHS or n_seeds < MIN_SEEDS:
        return (f"too little data to judge: {n_widths} widths and {n_seeds} seeds (a verdict needs at "
                f"least {MIN_WIDTHS} widths and {MIN_SEEDS} seeds)")
    return None


EXPONENT_COLUMNS = ["model", "optimizer", "init", "scheme", "metric", "layer", "step", "slope",
                    "ci_low", "ci_high", "predicted", "verdict", "reason", "r2", "local_slopes",
                    "n_widths", "n_seeds", "n_diverged", "classification", "claim", "drift",
                    "omega", "correction", "gamma_corrected", "gamma_corrected_lo", "gamma_corrected_hi", "share",
                    "fit", "judged", "verdict_straight", "reason_kind", "lower", "upper"]


def verdict(fit, predicted: float, all_zero: bool, tol: float, claim: str = "exact") -> tuple[str, str]:
    """(verdict, reason) for one fit (a PowerLawFit or None) against one predicted exponent,
    read as ``claim`` (scaling.theory.CLAIMS)."""
    if claim == "none":
        return "INCONCLUSIVE", "past the blow-up: SGD diverges, no finite exponent is predicted"
    if predicted == NEG_INF:
        return ("PASS", "exactly zero, as predicted") if all_zero else ("FAIL", "predicted exactly zero, measured non-zero")
    if all_zero:
        return "FAIL", "measured exactly zero, predicted a power law"
    if fit is None:
        return "INCONCLUSIVE", "fewer than two widths with finite values (divergence)"
    thin = too_little_data(fit.n_widths, fit.n_seeds)
    if thin:
        return "INCONCLUSIVE", thin
    if not fit.settled:
        return "INCONCLUSIVE", "local slopes not settled: " + " ".join(f"{s:+.2f}" for s in fit.local_slopes)
    if claim == "upper bound":
        if fit.ci_low <= predicted + tol:
            return "PASS", f"interval reaches below the bound {fmt(predicted)} + {tol:g} (past the blow-up)"
        return "FAIL", f"interval [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}] lies above the bound {fmt(predicted)} + {tol:g}"
    if fit.ci_high >= predicted - tol and fit.ci_low <= predicted + tol:
        return "PASS", f"interval overlaps {fmt(predicted)} +- {tol:g}"
    return "FAIL", f"interval [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}] misses {fmt(predicted)} +- {tol:g}"


def bounded_verdict(fit, lower: float, upper: float, tol: float) -> tuple[str, str]:
    """(verdict, reason) for a metric in a stacked-layer crossover, whose slope at finite width
    may lie anywhere in [lower, upper]: INCONCLUSIVE when the fit's interval overlaps that range
    +- tol (settled or not: a crossover's local slopes move), FAIL when it misses it."""
    if fit is None:
        return "INCONCLUSIVE", "fewer than two widths with finite values (divergence)"
    thin = too_little_data(fit.n_widths, fit.n_seeds)
    if thin:
        return "INCONCLUSIVE", thin
    span = f"[{fmt(lower)}, {fmt(upper)}] +- {tol:g}"
    if fit.ci_high >= lower - tol and fit.ci_low <= upper + tol:
        return "INCONCLUSIVE", (f"stacked-layer crossover: the slope lies between the exponents without and with "
                                f"the backward link, {span}, here [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}]")
    return "FAIL", f"interval [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}] misses the crossover's bounds {span}"


def corrected_verdict(cfit, predicted: float, tol: float, omega: float) -> tuple[str, str]:
    """(verdict, reason) for a corrected fit (scaling.gamma.CorrectedFit or None) of an exact,
    finite prediction: ``verdict``'s rules, plus INCONCLUSIVE where the widths cannot separate
    the leading term from its n^-omega correction: the best fit puts the correction on its bound
    (as large as the leading term at the narrowest width, where the ansatz no longer holds), or
    the corrected interval of gamma is wider than the tolerance band 2 tol and overlaps it
    (the band fits inside it: a PASS would say nothing). A corrected interval that misses the
    band FAILs however wide it is."""
    tag = f"corrected (omega = {omega:g})"
    if cfit is None:
        return "INCONCLUSIVE", (f"{tag}: fewer than {MIN_CORRECTED_WIDTHS} widths with finite values, "
                                "too few to fit a correction")
    if cfit.at_bound:  # the best fit is no interior optimum: gamma would be set by the bound
        return "INCONCLUSIVE", (f"{tag}: the best fit puts the correction on its bound, as large as the leading "
                                f"term at the narrowest width (share {cfit.share:+.2f}): the widths cannot "
                                "separate the two terms")
    v, why = verdict(cfit, predicted, False, tol)
    if v == "PASS" and cfit.ci_high - cfit.ci_low > 2 * tol:
        return "INCONCLUSIVE", (f"{tag}: interval [{cfit.ci_low:+.2f}, {cfit.ci_high:+.2f}] is wider than the "
                                f"tolerance band (2 x {tol:g}): the widths cannot separate gamma from its correction")
    return v, f"{tag}: {why}"


def _median_at(frame: pd.DataFrame, metric: str, step: int) -> float:
    v = frame.value[(frame.metric == metric) & (frame.step == step)]
    return float(v.median()) if len(v) else math.nan


def crossover(metric: str, step: int, exponents: dict, previous: dict | None, widest: pd.DataFrame,
              narrowest: pd.DataFrame | None = None) -> str | None:
    """Why the sum ``metric`` cannot show its predicted exponent yet, or None.

    exponents: the prediction at ``step``; previous: at step - 1 (None at step 1); widest,
    narrowest: one layer's measurements at the widest and the narrowest width (all steps).
    dz_b = delta1 + delta2 + delta3 and Z_A(t) = Z_A(0) + dZ_A are sums whose parts are measured,
    so the leading part must lead at the widest width, and at the narrowest too: a fit over the
    widths can absorb a runner-up as a correction to scaling only where it is at most as large as
    the leading term (scaling.gamma.SHARE_BOUNDS). A leading part with a small constant that takes
    over only at the widest widths would otherwise pull the fit towards the runner-up's exponent."""
    ends = [(where, frame) for where, frame in (("widest", widest), ("narrowest", narrowest)) if frame is not None]
    note = {"widest": "", "narrowest": "; a correction to scaling may be at most as large as the leading term there"}

    def z_a_parts(t: int, exps: dict) -> str | None:
        if t < 1 or not exps["dz_a"] > 0 or exps["z_a"] != exps["dz_a"]:
            return None  # Z_A(0) is not predicted to be overtaken
        for where, frame in ends:
            grown, initial = _median_at(frame, "dz_a", t), _median_at(frame, "z_a", 0)
            if grown < initial:
                return (f"crossover: at the {where} width the updates' part of Z_A({t}) is {grown / initial:.2g} "
                        f"of its initial part, so Z_A's predicted growth is not yet visible (dz_a tests it)"
                        + note[where])
        return None
    if metric == "z_a":
        return z_a_parts(step, exponents)
    if metric == "delta2" and previous is not None:
        return z_a_parts(step - 1, previous)
    if metric == "dz_b":
        top = exponents["dz_b"]
        lead = [k for k in ("delta1", "delta2", "delta3") if exponents[k] == top]
        rest = [k for k in ("delta1", "delta2", "delta3") if exponents[k] != top and exponents[k] != NEG_INF]
        for where, frame in ends:
            lead_size = max(_median_at(frame, k, step) for k in lead)
            rest_size = max((_median_at(frame, k, step) for k in rest), default=-math.inf)
            if rest_size > lead_size:
                return (f"crossover: the term(s) predicted to dominate dz_b ({', '.join(lead)}) are still smaller "
                        f"than the others at the {where} width ({lead_size:.2g} < {rest_size:.2g})" + note[where])
    return None


def _row(config: tuple, metric: str, layer: str, step: int, fit, predicted: float, verdict_: str, reason: str,
         n_diverged: int, classification: str, claim: str, correction=None, cfit=None,
         straight: tuple[str, str] | None = None, bounds: tuple[float, float] | None = None) -> dict:
    """One row of EXPONENT_COLUMNS; config = (model, optimizer, init, scheme). correction: the
    theory's Correction (None: none derived); cfit: the corrected fit; straight: the straight
    slope's (verdict, reason) when the corrected one was judged; bounds: the range a stacked-layer
    crossover allows (the row's claim is then "bounds", predicted the exponent beyond it)."""
    omega = correction.omega if correction is not None else None
    return dict(zip(EXPONENT_COLUMNS[:4], config), metric=metric, layer=layer, step=step,
                slope=fit.slope if fit else np.nan, ci_low=fit.ci_low if fit else np.nan,
                ci_high=fit.ci_high if fit else np.nan, predicted=predicted, verdict=verdict_, reason=reason,
                r2=fit.r2 if fit else np.nan,
                local_slopes=" ".join(f"{s:+.2f}" for s in fit.local_slopes) if fit else "",
                n_widths=fit.n_widths if fit else 0, n_seeds=fit.n_seeds if fit else 0,
                n_diverged=n_diverged, classification=classification, claim=claim,
                drift=fit.drift if fit else np.nan,
                omega=np.nan if omega is None else omega, correction=correction.term if omega is not None else "none",
                gamma_corrected=cfit.slope if cfit else np.nan, gamma_corrected_lo=cfit.ci_low if cfit else np.nan,
                gamma_corrected_hi=cfit.ci_high if cfit else np.nan, share=cfit.share if cfit else np.nan,
                fit=cfit.quality if cfit else np.nan, judged="straight" if straight is None else "corrected",
                verdict_straight=verdict_ if straight is None else straight[0],
                reason_kind=reason_kind(verdict_, reason),
                lower=np.nan if bounds is None else bounds[0], upper=np.nan if bounds is None else bounds[1])


def _judge(m: pd.DataFrame, predicted: float, tol: float, settle_tol: float, claim: str, correction,
           override=None, bounds: tuple[float, float] | None = None) -> tuple:
    """Fit one group's measurements and judge them: (fit, cfit, (verdict, reason), straight) where
    straight is the straight slope's (verdict, reason) if the corrected fit was judged, else None.
    override(verdict, reason) -> (verdict, reason) applies the caller's further rules to both.
    bounds: judge the slope against this range instead (a stacked-layer crossover)."""
    omega = correction.omega if correction is not None and claim == "exact" and bounds is None else None
    all_zero = bool((m.value == 0).all())
    fits = fit_with_correction(m.width, m.value, m.seed, omega if not all_zero else None, settle_tol=settle_tol)
    fit, cfit = fits if fits is not None else (None, None)
    override = override or (lambda v, why: (v, why))
    thin = too_little_data(m.width.nunique(), m.seed.nunique())
    if thin and claim != "none":  # not even an exact zero is judged from one seed or two widths
        return fit, None, override("INCONCLUSIVE", thin), None
    if bounds is not None:
        return fit, None, override(*bounded_verdict(fit, *bounds, tol)), None
    straight = override(*verdict(fit, predicted, all_zero, tol, claim))
    if omega is None or all_zero or predicted == NEG_INF:
        return fit, None, straight, None
    return fit, cfit, override(*corrected_verdict(cfit, predicted, tol, omega)), straight


def judged_slopes(exponents: pd.DataFrame) -> pd.DataFrame:
    """A copy of an exponents table whose slope, ci_low and ci_high hold what each verdict judged:
    the corrected gamma and its interval where ``judged`` is "corrected", the straight slope elsewhere."""
    out = exponents.copy()
    if "judged" in out:
        c = out.judged == "corrected"
        out.loc[c, ["slope", "ci_low", "ci_high"]] = out.loc[c, ["gamma_corrected", "gamma_corrected_lo",
                                                                "gamma_corrected_hi"]].to_numpy()
    return out


def toy_chain_position(model: str, layer: str) -> int:
    """A toy layer's place in its chain of LoRA layers in series: the mlp's ``hidden<k>`` is k (its
    hidden LoRA layers feed each other), every other toy layer 1 (it reads the model's input)."""
    found = re.fullmatch(r"hidden(\d+)", str(layer))
    return int(found.group(1)) if model == "mlp" and found else 1


def compare(results: pd.DataFrame, steps, tol: float = DEFAULT_TOLERANCE,
            settle_tol: float = DEFAULT_SETTLE_TOL, predictor=predict, first_layers=None,
            corrected: bool = True, position: Callable[[str, str], int] = toy_chain_position,
            detached: bool = False) -> pd.DataFrame:
    """Fit and judge every (model, optimizer, init, scheme, metric, layer) at each of ``steps``.

    results: the tidy table of one or more coord checks. ``predictor`` has predict's signature
    (tests pass a deliberately wrong one to see a verdict fail); a layer at ``position(model,
    layer)`` > 1 (behind other LoRA layers in series) is predicted with ``layer=`` that position
    and ``detached`` (the runs are the stacking control). ``first_layers(names)`` gives the layers
    that read the model's input (default: the first layer measured); the others get no sharp
    prediction when the first layer's scheme is unstable. ``corrected``: judge the corrected
    exponent where the prediction names a correction (``Prediction.corrections``); False judges
    straight slopes everywhere.
    """
    rows = []
    div = results[results.metric == "diverged"]
    keys = ["model", "optimizer", "init", "scheme"]
    for (model, opt, init, scheme), g in results[results.metric.isin(PREDICTED_METRICS)].groupby(keys, sort=False):
        sch = parse_scheme(scheme)
        d = div[(div.model == model) & (div.optimizer == opt) & (div.init == init) & (div.scheme == scheme)]
        def predicted(step: int, where: int):
            if where > 1:
                return predictor(model, opt, init, sch.gA, sch.gB, step, layer=where, detached=detached)
            return predictor(model, opt, init, sch.gA, sch.gB, step)

        ends = {}  # layer -> its measurements at its widest and narrowest width (all steps), found once

        def widths_at_ends(layer: str) -> tuple[pd.DataFrame, pd.DataFrame]:
            if layer not in ends:
                in_layer = g[g.layer == layer]
                ends[layer] = (in_layer[in_layer.width == in_layer.width.max()],
                               in_layer[in_layer.width == in_layer.width.min()])
            return ends[layer]

        for step in steps:
            first_pred = predicted(int(step), 1)
            at = g[g.step == step]
            layers = list(dict.fromkeys(at.layer))
            firsts = set(first_layers(layers)) if first_layers else set(layers[:1])
            for (metric, layer), m in at.groupby(["metric", "layer"], sort=False):
                where = position(model, layer)
                pred = predicted(int(step), where)
                prev = predicted(int(step) - 1, where).exponents if step > 1 else None
                expected = pred.exponents[metric]

                def rules(v, why, metric=metric, layer=layer, expected=expected):
                    if pred.claim == "exact" and v != "INCONCLUSIVE" and expected != NEG_INF:
                        late = crossover(metric, int(step), pred.exponents, prev, *widths_at_ends(layer))
                        if late:
                            v, why = "INCONCLUSIVE", late
                    if layer not in firsts and first_pred.classification == "unstable":
                        # The derivation assumes Theta(1) layer inputs; an unstable earlier layer
                        # breaks that (scaling.theory.ASSUMPTIONS["mlp"]).
                        v, why = "INCONCLUSIVE", "no sharp prediction: an unstable earlier layer makes this layer's input grow"
                    return v, why

                correction = pred.corrections.get(metric) if corrected else None
                bounds = getattr(pred, "bounds", {}).get(metric)
                fit, cfit, (v, why), straight = _judge(m, expected, tol, settle_tol, pred.claim, correction, rules,
                                                       bounds)
                rows.append(_row((model, opt, init, scheme), metric, layer, int(step), fit, expected, v, why,
                                 int((d.step <= step).sum()), pred.classification,
                                 "bounds" if bounds else pred.claim, correction, cfit, straight, bounds))
    return pd.DataFrame(rows, columns=EXPONENT_COLUMNS)


def compare_first_step(results: pd.DataFrame, tol: float = DEFAULT_TOLERANCE,
                       settle_tol: float = DEFAULT_SETTLE_TOL, predictor=first_step_loss_drop,
                       corrected: bool = True) -> pd.DataFrame:
    """Judge each layer's first-step loss decrease (metric ``loss_drop`` at step 1) against
    ``scaling.theory.first_step_loss_drop``: rows in EXPONENT_COLUMNS for every configuration
    it predicts (the suite's loss is the mean over output coordinates)."""
    rows = []
    div = results[results.metric == "diverged"]
    at = results[(results.metric == "loss_drop") & (results.step == 1)]
    for (model, opt, init, scheme), g in at.groupby(["model", "optimizer", "init", "scheme"], sort=False):
        sch = parse_scheme(scheme)
        pred = predictor(model, opt, init, sch.gA, sch.gB)
        if pred is None:
            continue
        d = div[(div.model == model) & (div.optimizer == opt) & (div.init == init) & (div.scheme == scheme)]
        classification = predict(model, opt, init, sch.gA, sch.gB, 1).classification
        correction = pred.correction if corrected else None
        for layer, m in g.groupby("layer", sort=False):
            fit, cfit, (v, why), straight = _judge(m, pred.exponent, tol, settle_tol, "exact", correction)
            rows.append(_row((model, opt, init, scheme), "loss_drop", layer, 1, fit, pred.exponent, v, why,
                             int((d.step <= 1).sum()), classification, "exact", correction, cfit, straight))
    return pd.DataFrame(rows, columns=EXPONENT_COLUMNS)
