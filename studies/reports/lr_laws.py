"""Everything lr-laws computes after training: edges, fitted laws with verdicts, optima and the
ratio profile, the criterion sensitivity, figures and report.md.

Works from the stored runs table alone (runs.csv + meta.json), so ``figures --from`` can
redraw a saved run. Predictions come from ``scaling.laws`` through ``law_prediction``; every
function that judges takes a ``predictor`` so that tests can pass hand-derived exponents.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.edges import corner_frame, fit_edge_law, width_summary
from scaling.profile import ratio_profile, seed_mean_log, slice_optimum
from scaling.verdicts import DEFAULT_TOLERANCE, verdict
from studies.lr_laws import LawsConfig, edge_table

LAW_COLUMNS = ["law", "model", "optimizer", "init", "alpha_scaling", "variable", "predicted", "slope", "lo", "hi",
               "verdict", "reason", "config", "slice", "criterion", "claim", "n_points", "n_seeds", "left_out",
               "local_slopes", "prediction_note"]
SLICE_NAMES = {"b-edge": "B edge", "a-edge": "A edge", "one-rate": "one-rate edge", "ratio": "ratio edge"}


@dataclass(frozen=True)
class LawPrediction:
    """What the theory says about one law: exponent None when it predicts none (note says why)."""

    exponent: float | None
    claim: str = "exact"
    note: str = ""


def law_prediction(kind: str, config: LawsConfig, slice_spec=None) -> LawPrediction:
    """The theory's exponent for a law from ``scaling.laws`` (imported lazily: the measurement
    half does not depend on it). kind: edge | corner | optimum | profile."""
    try:
        from scaling import laws
    except ImportError:
        return LawPrediction(None, "none", "scaling.laws is not available in this copy")
    common = dict(alpha_scaling=config.alpha_scaling, variable=config.variable)
    init = config.init_name
    try:
        if kind == "edge":
            p = laws.predict_edge(config.model, config.optimizer, init, slice_spec.name,
                                  held=(slice_spec.held_n, slice_spec.held_r), **common)
        elif kind == "corner":
            b = next(s for s in config.slices if s.name == "b-edge" and s.role == "edge")
            a = next(s for s in config.slices if s.name == "a-edge" and s.role == "edge")
            p = laws.predict_corner(config.model, config.optimizer, init, held_a_edge=(a.held_n, a.held_r),
                                    held_b_edge=(b.held_n, b.held_r), **common)
        elif kind == "optimum":
            p = laws.predict_optimum(config.model, config.optimizer, init, slice_spec.name,
                                     held=(slice_spec.held_n, slice_spec.held_r), **common)
        elif kind == "profile":
            p = laws.predict_optimum(config.model, config.optimizer, init, "ratio-profile", held=(0.0, 0.0), **common)
        else:
            raise ValueError(f"unknown law kind {kind!r}")
    except (KeyError, ValueError, NotImplementedError, AttributeError, TypeError) as err:
        return LawPrediction(None, "none", f"scaling.laws gives no prediction here ({err})")
    note = "; ".join(str(n) for n in (getattr(p, "notes", None) or []))
    return LawPrediction(p.exponent, p.claim, note)


def judge(fit, pred: LawPrediction, tol: float) -> tuple[str, str]:
    """The existing verdict rule (scaling.verdicts.verdict) for one fitted law."""
    if pred.exponent is None:
        return "INCONCLUSIVE", f"no prediction: {pred.note or 'the theory predicts no exponent here'}"
    return verdict(fit, pred.exponent, False, tol, pred.claim)


def _law_row(law: str, config: LawsConfig, fit, left_out, pred: LawPrediction, tol: float, slice_key: str = "",
             criterion: str = "", verdict_override: tuple[str, str] | None = None) -> dict:
    v, why = verdict_override or judge(fit, pred, tol)
    return {"law": law, "model": config.model, "optimizer": config.optimizer, "init": config.init_name,
            "alpha_scaling": config.alpha_scaling, "variable": config.variable, "predicted": pred.exponent,
            "slope": fit.slope if fit else np.nan, "lo": fit.ci_low if fit else np.nan,
            "hi": fit.ci_high if fit else np.nan, "verdict": v, "reason": why, "config": config.label,
            "slice": slice_key, "criterion": criterion, "claim": pred.claim,
            "n_points": fit.n_widths if fit else 0, "n_seeds": fit.n_seeds if fit else 0,
            "left_out": " ".join(str(x) for x in left_out),
            "local_slopes": " ".join(f"{s:+.2f}" for s in fit.local_slopes) if fit else "",
            "prediction_note": pred.note}


def x_of(config: LawsConfig) -> str:
    return "width" if config.variable == "n" else "rank"


def slice_optima(runs: pd.DataFrame, config: LawsConfig) -> pd.DataFrame:
    """Per (x, seed, edge slice): the optimum along the slice's round-0 grid at the primary T
    (``scaling.profile.slice_optimum``), censored when it is not interior."""
    T = config.primary.steps
    g0 = runs[(runs.config == config.label) & (runs.role == "edge") & (runs["round"] == 0)]
    rows = []
    for (x, seed, key), g in g0.groupby([x_of(config), "seed", "slice"], sort=True):
        g = g.sort_values("rate")
        loss = g[f"loss_t{T}"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_loss = np.log(np.where(np.isfinite(loss) & (loss > 0), loss, np.inf))
        star, interior = slice_optimum(np.log(g.rate.to_numpy(float)), log_loss)
        rows.append({x_of(config): x, "seed": seed, "slice": key, "slice_name": g.slice_name.iloc[0],
                     "edge": float(np.exp(star)) if np.isfinite(star) else np.nan,
                     "censored": "" if bool(interior) else "not interior", "best_loss": float(np.nanmin(loss))})
    return pd.DataFrame(rows)


def transfer_curves(runs: pd.DataFrame, config: LawsConfig) -> pd.DataFrame:
    """Seed-mean L(T) / L(0) (geometric; +inf where any seed diverged) on every slice's round-0
    grid at the primary T, one row per (x, slice, rate): the muP-style transfer plot's data."""
    T = config.primary.steps
    g0 = runs[(runs.config == config.label) & (runs["round"] == 0)]
    rows = []
    for (x, key), g in g0.groupby([x_of(config), "slice"], sort=True):
        cube = g.pivot_table(index="seed", columns="rate", values=f"loss_t{T}", aggfunc="first", dropna=False)
        start = g.pivot_table(index="seed", columns="rate", values="loss_0", aggfunc="first")
        ratio = seed_mean_log((cube / start).to_numpy(float))
        rows.append(pd.DataFrame({x_of(config): x, "slice": key, "slice_name": g.slice_name.iloc[0],
                                  "role": g.role.iloc[0], "held": g.held.iloc[0], "rate": cube.columns.to_numpy(float),
                                  "loss_ratio": np.exp(ratio)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def profile_tables(runs: pd.DataFrame, config: LawsConfig, rel_tol: float = 0.01):
    """The ratio profile at each profile width: (per-width table, per-(width, seed) lambda*).
    lambda* per seed is the log-centroid of that seed's pairs within rel_tol of its best loss."""
    T = config.primary.steps
    p = runs[(runs.config == config.label) & (runs.role == "profile")]
    if p.empty:
        return pd.DataFrame(), pd.DataFrame()
    rows, seeds = [], []
    for w, g in p.groupby("width", sort=True):
        cube = g.pivot_table(index=["seed", "held"], columns="rate", values=f"loss_t{T}", aggfunc="first",
                             dropna=False)
        lam = np.sort(g.held.unique())
        etas = cube.columns.to_numpy(float)
        S = g.seed.nunique()
        losses = cube.to_numpy(float).reshape(S, len(lam), len(etas))
        prof = ratio_profile(losses, np.log(lam), np.log(etas), rel_tol)
        mean = seed_mean_log(np.moveaxis(losses, 0, -2))
        best = np.unravel_index(np.argmin(np.where(np.isfinite(mean), mean, np.inf)), mean.shape)
        rows.append({"width": w, "identified": prof["identified"], "reason": prof["reason"],
                     "ratio_star": float(np.exp(prof["log_ratio_star"])), "span_decades": prof["span"],
                     "best_ratio": lam[best[0]], "best_eta_a": etas[best[1]],
                     "best_loss": float(np.exp(mean[best])),
                     "profile": " ".join(f"{v:.3f}" for v in np.exp(prof["profile"])),
                     "ratios": " ".join(f"{v:g}" for v in lam)})
        for s, seed in enumerate(sorted(g.seed.unique())):
            with np.errstate(divide="ignore", invalid="ignore"):
                ll = np.log(np.where(np.isfinite(losses[s]) & (losses[s] > 0), losses[s], np.inf))
            near = ll <= ll.min() + np.log1p(rel_tol)
            la = np.log(np.broadcast_to(etas, near.shape))[near]
            lr = np.log(np.broadcast_to(lam[:, None], near.shape))[near]
            seeds.append({"width": w, "seed": seed, "edge": float(np.exp(lr.mean())),
                          "product": float(np.exp((2 * la + lr).mean())), "censored": ""})
    return pd.DataFrame(rows), pd.DataFrame(seeds)


def init_pairs(configs: list[LawsConfig]) -> list[tuple[LawsConfig, LawsConfig]]:
    """(Init[1], Init[2]) configurations that differ only in init (for the one-rate comparison)."""
    out = []
    for c1 in configs:
        for c2 in configs:
            if c1.init_name == "1" and c2.init_name == "2" and (c1.model, c1.optimizer, c1.alpha_scaling, c1.variable,
                                                                 c1.widths, c1.ranks) == (
                    c2.model, c2.optimizer, c2.alpha_scaling, c2.variable, c2.widths, c2.ranks):
                out.append((c1, c2))
    return out


def analyse(runs: pd.DataFrame, configs: list[LawsConfig], tol: float = DEFAULT_TOLERANCE,
            predictor=law_prediction) -> dict[str, pd.DataFrame]:
    """Every table the report needs: edges (per seed), edge_summary (per x with CI), laws (the
    primary criterion's verdicts), criteria (every criterion's slopes), optima, profiles."""
    edges = edge_table(runs, configs)
    laws, sens, summaries, optima, profiles = [], [], [], [], []
    for c in configs:
        x = x_of(c)
        e = edges[edges.config == c.label]
        if e.empty:
            continue
        summaries.append(width_summary(e, ["config", "slice", "criterion"], x))
        for crit in c.criteria:
            ec = e[e.criterion == crit.name]
            for s in [s for s in c.slices if s.role == "edge"]:
                es = ec[ec.slice == s.key]
                if es.empty:
                    continue
                fit, left = fit_edge_law(es, x)
                pred = predictor("edge", c, s)
                row = _law_row(f"{SLICE_NAMES[s.name]}", c, fit, left, pred, tol, s.key, crit.name)
                sens.append(row)
                if crit == c.primary:
                    laws.append(row)
            names = {s.name for s in c.slices if s.role == "edge"}
            if {"b-edge", "a-edge"} <= names:
                corner = corner_frame(ec, ["config", x])
                fit, left = fit_edge_law(corner, x)
                row = _law_row("corner lambda_c", c, fit, left, predictor("corner", c), tol, "b-edge / a-edge",
                               crit.name)
                sens.append(row)
                if crit == c.primary:
                    laws.append(row)
                    corner = corner.assign(slice="corner", criterion=crit.name)
                    summaries.append(width_summary(corner, ["config", "slice", "criterion"], x))
        opt = slice_optima(runs, c).assign(config=c.label)
        optima.append(opt)
        for s in [s for s in c.slices if s.role == "edge"]:
            o = opt[opt.slice == s.key]
            if len(o):
                fit, left = fit_edge_law(o, x)
                laws.append(_law_row(f"optimum along the {s.name} slice", c, fit, left, predictor("optimum", c, s), tol,
                                     s.key, c.primary.name))
        table, per_seed = profile_tables(runs, c)
        if len(table):
            profiles.append(table.assign(config=c.label))
            fit, left = fit_edge_law(per_seed, "width")
            pred = predictor("profile", c)
            ridge = table[~table.identified]
            override = None
            if len(ridge) and fit is not None:
                override = ("INCONCLUSIVE", "lambda* not identified at n = " + ", ".join(str(w) for w in ridge.width)
                            + ": " + ridge.reason.iloc[0])
            laws.append(_law_row("lambda* (profile)", c, fit, left, pred, tol, "profile", c.primary.name, override))
    for c1, c2 in init_pairs(configs):
        x = x_of(c1)
        e1 = edges[(edges.config == c1.label) & (edges.slice == "one-rate") & edges.primary]
        e2 = edges[(edges.config == c2.label) & (edges.slice == "one-rate") & edges.primary]
        if e1.empty or e2.empty:
            continue
        both = e1.merge(e2, on=[x, "seed"], suffixes=("_1", "_2"))
        ratio = pd.DataFrame({x: both[x], "seed": both.seed, "edge": both.edge_1 / both.edge_2,
                              "censored": (both.censored_1.fillna("") + both.censored_2.fillna(""))})
        fit, left = fit_edge_law(ratio, x)
        s = next(s for s in c1.slices if s.name == "one-rate")
        p1, p2 = predictor("edge", c1, s), predictor("edge", c2, s)
        pred = (LawPrediction(p1.exponent - p2.exponent, "exact" if p1.claim == p2.claim == "exact" else "none",
                              "Init[1]'s exponent minus Init[2]'s")
                if p1.exponent is not None and p2.exponent is not None else
                LawPrediction(None, "none", "no prediction for one of the inits"))
        row = _law_row("one-rate edge, Init[1] / Init[2]", c1, fit, left, pred, tol, "one-rate", c1.primary.name)
        row["init"] = "1 / 2"
        laws.append(row)
    return {"edges": edges,
            "edge_summary": pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(),
            "laws": pd.DataFrame(laws, columns=LAW_COLUMNS),
            "criteria": pd.DataFrame(sens, columns=LAW_COLUMNS),
            "optima": pd.concat(optima, ignore_index=True) if optima else pd.DataFrame(),
            "profiles": pd.concat(profiles, ignore_index=True) if profiles else pd.DataFrame()}


def search_cost(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs per edge and CPU time per shard, per configuration and x: how the search scales."""
    x = "width" if runs.groupby("config").width.nunique().max() > 1 else "rank"
    per_shard = runs.groupby(["config", "width", "rank", "seed"]).agg(
        runs=("rate", "size"), rounds=("round", "max"), cpu_s=("cpu_s", "first") if "cpu_s" in runs else ("rate", "size"))
    edge_runs = runs[runs.role == "edge"].groupby(["config", "width", "rank", "seed", "slice"]).size()
    per_edge = edge_runs.groupby(["config", "width", "rank"]).mean().rename("runs_per_edge_slice")
    out = per_shard.groupby(["config", "width", "rank"]).agg(runs=("runs", "mean"), rounds=("rounds", "max"),
                                                             cpu_s=("cpu_s", "mean")).join(per_edge)
    out["rounds"] += 1
    return out.reset_index()


def fmt_ci(slope, lo, hi) -> str:
    if slope is None or not np.isfinite(slope):
        return "n/a"
    return f"{slope:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def fmt_pred(p) -> str:
    return "none" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:+.3g}"
