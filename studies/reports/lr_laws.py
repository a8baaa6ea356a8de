"""Everything lr-laws computes after training: edges, fitted laws with verdicts, optima and the
ratio profile, the criterion sensitivity, figures and report.md.

Works from the stored runs table alone (runs.csv + meta.json), so ``figures --from`` can
redraw a saved run. Predictions (``scaling.laws.LawPrediction``) come from ``scaling.laws``
through ``law_prediction``; every function that judges takes a ``predictor`` so that tests can
pass hand-derived exponents (``LawPrediction.given``).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from scaling.edges import corner_frame, fit_edge_law, width_summary
from scaling.laws import LawPrediction, edge_difference, predict_corner, predict_edge, predict_optimum
from scaling.profile import ratio_profile, seed_mean_log, slice_optimum
from scaling.verdicts import DEFAULT_TOLERANCE, verdict
from studies.lr_laws import LawsConfig, edge_table

LAW_COLUMNS = ["law", "model", "optimizer", "init", "alpha_scaling", "variable", "predicted", "slope", "lo", "hi",
               "verdict", "reason", "kind", "config", "slice", "slice_name", "held_n", "criterion", "claim", "n_points", "n_seeds", "left_out",
               "local_slopes", "prediction_note"]
SLICE_NAMES = {"b-edge": "B edge", "a-edge": "A edge", "one-rate": "one-rate edge", "ratio": "ratio edge"}


def law_prediction(kind: str, config: LawsConfig, slice_spec=None) -> LawPrediction:
    """The theory's prediction for a law from ``scaling.laws`` (cached). kind: edge | corner |
    optimum | profile (the optimal ratio over the plane). The theory is asked about the
    configuration's own held exponents, LoRA scale and B0 variance, at its default step (its
    exponents settle within a few steps and do not move with T; asking for T = 50
    gradient-descent steps costs minutes for the same answer)."""
    held = (slice_spec.held_n, slice_spec.held_r) if slice_spec is not None else None
    corner = None
    if kind == "corner":
        b = next(s for s in config.slices if s.name == "b-edge" and s.role == "edge")
        a = next(s for s in config.slices if s.name == "a-edge" and s.role == "edge")
        corner = ((a.held_n, a.held_r), (b.held_n, b.held_r))
    return _cached_prediction(kind, config.predict_as, config.optimizer, config.init_name, config.alpha_scaling,
                              config.variable, config.b0_variance, slice_spec.name if slice_spec else None, held, corner)


@functools.lru_cache(maxsize=None)
def _cached_prediction(kind, model, optimizer, init, alpha_scaling, variable, b0_variance, slice_name, held,
                       corner) -> LawPrediction:
    common = dict(alpha_scaling=alpha_scaling, variable=variable, b0_variance=b0_variance)
    args = (model, optimizer, init)
    try:
        if kind == "edge":
            p = predict_edge(*args, slice_name, held, **common)
        elif kind == "corner":
            p = predict_corner(*args, held_a_edge=corner[0], held_b_edge=corner[1], **common)
        elif kind == "optimum":
            p = predict_optimum(*args, slice_name, held, **common)
        elif kind == "profile":
            p = predict_optimum(*args, "plane", None, **common)
        else:
            raise ValueError(f"unknown law kind {kind!r}")
    except (KeyError, ValueError, NotImplementedError) as err:
        return LawPrediction.given(None, "none", f"scaling.laws gives no prediction here ({err})")
    return p


def judge(fit, pred: LawPrediction, tol: float) -> tuple[str, str]:
    """The existing verdict rule (scaling.verdicts.verdict) for one fitted law."""
    if pred.exponent is None:
        bounds = ""
        if pred.lower is not None or pred.upper is not None:
            lo = "-inf" if pred.lower is None else f"{pred.lower:+g}"
            hi = "+inf" if pred.upper is None else f"{pred.upper:+g}"
            bounds = f" (derived bounds [{lo}, {hi}])"
        return "INCONCLUSIVE", f"no prediction{bounds}: {pred.note or 'the theory predicts no exponent here'}"
    return verdict(fit, pred.exponent, False, tol, pred.claim)


def _law_row(kind: str, law: str, config: LawsConfig, fit, left_out, pred: LawPrediction, tol: float,
             slice_key: str = "", criterion: str = "", verdict_override: tuple[str, str] | None = None,
             slice_spec=None) -> dict:
    v, why = verdict_override or judge(fit, pred, tol)
    if left_out and why.startswith("fewer than two widths"):  # not a divergence: the edges were censored
        why = (f"fewer than two widths left: the edge was censored (never crossed inside the search range) at "
               f"{' '.join(str(x) for x in left_out)}")
    return {"law": law, "kind": kind, "slice_name": slice_spec.name if slice_spec is not None else "",
            "held_n": slice_spec.held_n if slice_spec is not None else np.nan, "model": config.model, "optimizer": config.optimizer, "init": config.init_name,
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
        star, _, interior = slice_optimum(np.log(g.rate.to_numpy(float)), log_loss)
        # at the grid's end the optimum is censored; next to a diverged rate (gradient descent's
        # loss falls until the run diverges) it is the last stable rate, at the grid's resolution
        i = int(np.nanargmin(np.where(np.isfinite(log_loss), log_loss, np.nan))) if np.isfinite(log_loss).any() else -1
        at_end = i in (-1, 0, len(log_loss) - 1)
        rows.append({x_of(config): x, "seed": seed, "slice": key, "slice_name": g.slice_name.iloc[0],
                     "edge": float(np.exp(star)) if np.isfinite(star) else np.nan,
                     "censored": "at the range's end" if at_end else "",
                     "where": "interior" if bool(interior) else "at the range's end" if at_end else "next to divergence",
                     "best_loss": float(np.nanmin(loss)) if np.isfinite(loss).any() else np.nan})
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


# The best loss along the flat part of a profile varies irregularly by about +-20% between
# neighbouring ratios at these widths and T = 20 (measured on linear / Adam, Init[1], n = 64 and
# 512, with eta_A resolved at 6 per decade: 0.052 .. 0.081), while leaving the ridge raises it
# 3 to 15 times. A 1% set is then a single ratio whatever the landscape; the ridge / identified
# call uses 25%, and the report gives the 1% span beside it.
PROFILE_REL_TOL = 0.25


def profile_tables(runs: pd.DataFrame, config: LawsConfig, rel_tol: float = PROFILE_REL_TOL):
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
        strict = ratio_profile(losses, np.log(lam), np.log(etas), 0.01)
        mean = seed_mean_log(np.moveaxis(losses, 0, -2))
        best = np.unravel_index(np.argmin(np.where(np.isfinite(mean), mean, np.inf)), mean.shape)
        rows.append({"width": w, "identified": prof["identified"], "reason": prof["reason"],
                     "ratio_star": float(np.exp(prof["log_ratio_star"])), "span_decades": prof["span"],
                     "span_decades_1pct": strict["span"],
                     "best_ratio": lam[best[0]], "best_eta_a": etas[best[1]],
                     "best_loss": float(np.exp(mean[best])),
                     "profile": " ".join(f"{v:.5g}" for v in np.exp(prof["profile"])),
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


def paired_configs(configs: list[LawsConfig]) -> list[tuple[str, LawsConfig, LawsConfig]]:
    """(name, c1, c2) for configurations that differ in one choice only: Init[1] against Init[2]
    (the initialisation paper's n^1/2), and, in rank studies, alpha/sqrt(r) or alpha against
    alpha/r (the scale's own r-exponent, free of what the two share)."""
    out = []
    keys = ("model", "optimizer", "alpha_scaling", "variable", "widths", "ranks", "teacher", "b0_variance", "b0_scale",
            "init")
    for c1 in configs:
        for c2 in configs:
            differ = [k for k in keys if getattr(c1, k) != getattr(c2, k)]
            if differ == ["init"] and (c1.init_name, c2.init_name) == ("1", "2"):
                out.append(("one-rate edge, Init[1] / Init[2]", c1, c2))
            elif differ == ["alpha_scaling"] and c2.alpha_scaling == "r" and c1.variable == "r":
                scale = {"sqrt-r": "alpha/sqrt(r)", "none": "alpha"}[c1.alpha_scaling]
                out.append((f"one-rate edge, s = {scale} / s = alpha/r", c1, c2))
    return out


def analyse(runs: pd.DataFrame, configs: list[LawsConfig], tol: float = DEFAULT_TOLERANCE,
            predictor=law_prediction, kinds=("edge", "corner", "optimum", "profile")) -> dict[str, pd.DataFrame]:
    """Every table the report needs: edges (per seed), edge_summary (per x with CI), laws (the
    primary criterion's verdicts, of the law ``kinds`` asked for), criteria (every criterion's
    slopes), optima, profiles."""
    edges = edge_table(runs, configs)
    laws, sens, summaries, optima, profiles = [], [], [], [], []
    for c in configs:
        x = x_of(c)
        e = edges[edges.config == c.label]
        if len(e):
            summaries.append(width_summary(e, ["config", "slice", "criterion"], x))
        for crit in (c.criteria if len(e) else ()):
            ec = e[e.criterion == crit.name]
            for s in [s for s in c.slices if s.role == "edge"]:
                es = ec[ec.slice == s.key]
                if es.empty:
                    continue
                fit, left = fit_edge_law(es, x)
                pred = predictor("edge", c, s)
                row = _law_row("edge", f"{SLICE_NAMES[s.name]}", c, fit, left, pred, tol, s.key, crit.name,
                               slice_spec=s)
                sens.append(row)
                if crit == c.primary:
                    laws.append(row)
            names = {s.name for s in c.slices if s.role == "edge"}
            if {"b-edge", "a-edge"} <= names:
                corner = corner_frame(ec, ["config", x])
                fit, left = fit_edge_law(corner, x)
                row = _law_row("corner", "corner lambda_c", c, fit, left, predictor("corner", c), tol, "b-edge / a-edge",
                               crit.name)
                sens.append(row)
                if crit == c.primary:
                    laws.append(row)
                    corner = corner.assign(slice="corner", criterion=crit.name)
                    summaries.append(width_summary(corner, ["config", "slice", "criterion"], x))
        opt = slice_optima(runs, c).assign(config=c.label)
        optima.append(opt)
        for s in [s for s in c.slices if s.role == "edge" and len(opt)]:
            o = opt[opt.slice == s.key]
            if len(o):
                fit, left = fit_edge_law(o, x)
                laws.append(_law_row("optimum", f"optimum along the {s.name} slice", c, fit, left, predictor("optimum", c, s), tol,
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
            laws.append(_law_row("profile", "lambda* (profile)", c, fit, left, pred, tol, "profile", c.primary.name, override))
    for name, c1, c2 in paired_configs(configs):
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
        pred = edge_difference(p1, p2)
        row = _law_row("edge", name, c1, fit, left, pred, tol, "one-rate", c1.primary.name)
        if name.startswith("one-rate edge, Init"):
            row["init"] = "1 / 2"
        else:
            row["alpha_scaling"] = f"{c1.alpha_scaling} / {c2.alpha_scaling}"
        laws.append(row)
    laws = pd.DataFrame(laws, columns=LAW_COLUMNS)
    return {"edges": edges,
            "edge_summary": pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(),
            "laws": laws[laws.kind.isin(kinds)].reset_index(drop=True),
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


def fig2_table(grid: pd.DataFrame) -> pd.DataFrame:
    """One row per (reading, step): where the best pair of the Fig. 2 grid lies and why.

    lambda* is scaling.optimum's centroid of the pairs within 1% of the best seed-mean train loss,
    with its bootstrap interval over seeds; the A edge is the largest eta_A at which every seed
    trains (loss at t not above its start, not diverged) at the smallest eta_B, the B edge the
    largest such eta_B at the smallest eta_A, and their ratio the region's corner."""
    from scaling.optimum import optimum_table
    rows = []
    for (reading, step), g in grid[grid.split == "train"].groupby(["reading", "step"], sort=False):
        g = g.sort_values(["seed", "eta_a", "eta_b"])
        seeds = sorted(g.seed.unique())
        first = g[g.seed == seeds[0]]
        eta_a, eta_b = first.eta_a.to_numpy(float), first.eta_b.to_numpy(float)
        cube = np.stack([g[g.seed == s].loss.to_numpy(float) for s in seeds])[None]    # (1, seeds, pairs)
        table, _ = optimum_table(cube, eta_a, eta_b, [100])
        r = table.iloc[0]
        ok = np.stack([((g[g.seed == s].loss <= g[g.seed == s].loss_0) & ~g[g.seed == s].diverged).to_numpy()
                       for s in seeds]).all(0)
        a_ok, b_ok = eta_a[(eta_b == eta_b.min()) & ok], eta_b[(eta_a == eta_a.min()) & ok]
        a_edge = a_ok.max() if len(a_ok) else np.nan
        b_edge = b_ok.max() if len(b_ok) else np.nan
        mean = seed_mean_log(cube[0])
        best = int(np.argmin(np.where(np.isfinite(mean), mean, np.inf)))
        lam, lo, hi = r.lambda_star, r.lambda_star_low, r.lambda_star_high
        shape = ("eta_B* >> eta_A* (lambda* interval above 10)" if lo > 10 else
                 "eta_B* > eta_A* (lambda* interval above 1)" if lo > 1 else
                 "eta_B* < eta_A* (lambda* interval below 1)" if hi < 1 else "lambda* interval contains 1")
        opt, model, init = reading.split("/")
        rows.append({"reading": reading, "optimizer": opt, "model": model, "init": init.replace("init", ""),
                     "step": int(step), "best_eta_a": eta_a[best], "best_eta_b": eta_b[best],
                     "best_loss": float(np.exp(mean[best])), "lambda_star": lam, "lambda_low": lo,
                     "lambda_high": hi, "finding": shape, "n_near": int(r.n_near), "ridge_slope": r.ridge_slope,
                     "touches_grid_edge": bool(r.touches_edge), "a_edge": a_edge, "b_edge": b_edge,
                     "corner_ratio": b_edge / a_edge if np.isfinite(a_edge) and np.isfinite(b_edge) else np.nan})
    return pd.DataFrame(rows)


# -- report ------------------------------------------------------------------------------------
def _md(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) if len(df) else "(none)"


def _law_line(r) -> str:
    pred = fmt_pred(r.predicted)
    return (f"{r.law} ({r.config}): {fmt_ci(r.slope, r.lo, r.hi)} against {pred} -> **{r.verdict}**")


def plain_words(tables: dict[str, pd.DataFrame], fig2: pd.DataFrame | None) -> list[str]:
    """The report's first paragraph: what the run says, in sentences built from its own tables."""
    laws = tables["laws"]

    def get(law, config):
        r = laws[(laws.law == law) & (laws.config == config)]
        return r.iloc[0] if len(r) and np.isfinite(r.iloc[0].slope) else None

    def ci(r, var="n"):
        return f"{var}^{r.slope:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}]"

    out = []
    for model in ("linear", "mlp"):
        c = f"{model}/adam/init1/r"
        b, a, corner, one = (get(k, c) for k in ("B edge", "A edge", "corner lambda_c", "one-rate edge"))
        if b is None or a is None or corner is None:
            continue
        holds = all(r.verdict == "PASS" for r in (b, a, corner))
        out.append(f"{model}, Adam, Init[1] (stock PEFT): the largest eta_B that trains does not move with width "
                   f"({ci(b)}), the largest eta_A falls like 1/n ({ci(a)}), so the region's corner, LoRA+'s ratio "
                   f"eta_B / eta_A, grows like {ci(corner)}: "
                   + ("LoRA+'s Theta(n) holds for the corner." if holds else "not the Theta(n) LoRA+ predicts.")
                   + (f" One shared rate must fall like {ci(one)} (theory n^-1/2)." if one is not None else ""))
    one2, ctl = get("one-rate edge", "linear/adam/init2/r"), get("one-rate edge", "linear/adam/init2/r/teacher b0-aligned")
    if one2 is not None:
        out.append(f"Under Init[2] (A = 0, B random) one shared rate must fall faster: {ci(one2)} on linear"
                   + (f", where A's first step overshoots its own small target; with the teacher inside span(B0) it is "
                      f"{ci(ctl)}, the theory's n^-1." if ctl is not None else "."))
    prof = tables["profiles"]
    if len(prof):
        ridge = prof.groupby("config").identified.apply(lambda v: (~v).mean())
        flat = [c for c, f in ridge.items() if f == 1]
        if flat:
            out.append("The loss-optimal ratio lambda* is not identified (a ridge at every width measured) for "
                       + ", ".join(flat) + ": the best loss over eta_A is flat over decades of ratio, so a grid argmin "
                       "says nothing about lambda*, while the corner is sharp.")
    gd = [get("corner lambda_c", c) for c in ("toy/sgd/init1/r", "toy/sgd/init2/r", "paper-mlp/sgd/initpaper/r")]
    gd = [r for r in gd if r is not None]
    if gd:
        out.append("Under gradient descent the edges are divergences; the corner grows like "
                   + ", ".join(f"{ci(r)} ({r.config.split('/')[0]}, init {r.init})" for r in gd) + ".")
    paired = laws[laws.law.str.startswith("one-rate edge, s =")]
    ok = paired[(paired.init == "1") & np.isfinite(paired.slope)]
    if len(ok):
        out.append("Rank (muA): under Init[1], how the LoRA scale moves the one-rate edge's rank exponent ("
                   + "; ".join(f"{r.law.replace('one-rate edge, ', '')}: {ci(r, 'r')} vs {r.predicted:+g}, {r.verdict}"
                               for _, r in ok.iterrows()) + ").")
    out += factory_words(laws, get, ci)
    if fig2 is not None and len(fig2):
        last = fig2[fig2.step == fig2.step.max()]
        big = last[last.finding.str.startswith("eta_B* >> eta_A*")]
        out.append(f"Fig. 2 (n = 100, t = {int(last.step.iloc[0])}): eta_B* >> eta_A* appears in "
                   + (", ".join(big.reading) if len(big) else "no reading") + f" of the {len(last)} readings (table below).")
    return out


def factory_words(laws: pd.DataFrame, get, ci) -> list[str]:
    """One sentence per factory (a real architecture): its B edge, corner and one-rate edges."""
    from toy_models.models import MODELS
    out = []
    for model in [m for m in dict.fromkeys(laws.model) if m not in MODELS]:
        parts = []
        for init in ("1", "2"):
            c = f"{model}/adam/init{init}/r"
            named = [(k, get(k, c)) for k in ("B edge", "corner lambda_c", "one-rate edge")]
            if any(r is not None for _, r in named):
                parts.append(f"Init[{init}]: " + ", ".join(
                    f"{k.replace(' lambda_c', '')} {ci(r)} ({'theory ' + format(r.predicted, '+g') if np.isfinite(r.predicted) else 'no prediction'}, {r.verdict})"
                    for k, r in named if r is not None))
        if parts:
            out.append(f"On {model} (Adam, against width): " + "; ".join(parts) + ".")
    return out


def findings(tables: dict[str, pd.DataFrame], fig2: pd.DataFrame | None) -> list[str]:
    """The opening paragraph's sentences, from the tables."""
    laws = tables["laws"]
    counts = laws.verdict.value_counts()
    out = [f"{len(laws)} laws judged by the existing rule (95% interval against prediction +- tolerance): "
           f"{counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, {counts.get('INCONCLUSIVE', 0)} INCONCLUSIVE."]
    key = laws[laws.law.isin(["B edge", "corner lambda_c", "one-rate edge", "A edge"])]
    for _, r in key.iterrows():
        width = r.hi - r.lo if np.isfinite(r.slope) else np.nan
        out.append(_law_line(r) + (f"; interval width {width:.2f}" if np.isfinite(width) else ""))
    pair = laws[laws.law == "one-rate edge, Init[1] / Init[2]"]
    for _, r in pair.iterrows():
        out.append(f"One shared rate, Init[1] against Init[2] ({r.model}, {r.optimizer}): the ratio of their edges grows "
                   f"like {r.variable}^{r.slope:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}] (predicted {fmt_pred(r.predicted)}): "
                   f"**{r.verdict}**.")
    prof = tables["profiles"]
    for config, p in (prof.groupby("config", sort=False) if len(prof) else []):
        kinds = ", ".join(f"n = {w}: {'identified' if i else 'ridge'} ({s:.1f} decades)"
                          for w, i, s in zip(p.width, p.identified, p.span_decades))
        out.append(f"lambda* for {config}: {kinds}.")
    if fig2 is not None and len(fig2):
        last = fig2[fig2.step == fig2.step.max()]
        big = last[last.finding.str.startswith("eta_B* >> eta_A*")]
        out.append("Fig. 2 question (t = {}): {} of {} readings show eta_B* >> eta_A*{}.".format(
            int(last.step.iloc[0]), len(big), len(last),
            (": " + ", ".join(big.reading)) if len(big) else ""))
    return out


def found_paragraph(report: str) -> str:
    """The plain-words paragraph under the report's "What it found", for the terminal."""
    part = report.split("## What it found", 1)[-1].strip()
    return part.split("\n\n", 1)[0]


def report_text(meta: dict, tables: dict[str, pd.DataFrame], figures: dict[str, str],
                fig2: pd.DataFrame | None, dead: pd.DataFrame | None, cost: pd.DataFrame,
                known: list[str]) -> str:
    laws, crit = tables["laws"], tables["criteria"]
    summary = tables["edge_summary"]
    lines = ["# lr-laws: edges of the trainable region, the corner and the optimum, against theory", "",
             "## What it found", ""]
    lines += [" ".join(plain_words(tables, fig2)), "", "In numbers:", ""]
    lines += [f"- {s}" for s in findings(tables, fig2)]
    if known:
        lines += ["", "Where measurement and theory disagree, and why:", ""] + [f"- {k}" for k in known]
    lines += ["", f"Studies: {', '.join(meta.get('studies', []))}{' (quick)' if meta.get('quick') else ''}; "
                  f"CPU time {meta.get('cpu_s', float('nan')):.0f} s summed over the edge-search shards (the Fig. 2 "
                  f"grid not counted), wall time "
                  f"{meta.get('wall_time_s', float('nan')):.0f} s ({meta.get('executor', '?')} executor, "
                  f"{meta.get('workers', '?')} workers).", "",
              "How it is measured. A slice is a line in (eta_A, eta_B): the B edge varies eta_B at eta_A = 0.01 (n/64)^-1, "
              "the A edge eta_A at eta_B = 0.03, the one-rate edge eta_A = eta_B, the ratio edge eta_A at "
              "eta_B / eta_A = 16 n/64 (LoRA+). The edge is the largest rate that still trains: under Adam the loss "
              "at step T is at most f times its start (primary: f = 1, T = 20, the output-stability edge), under "
              "gradient descent the run has not diverged by step T. Each (width, rank, seed) is one shard whose "
              "candidate rates train as ONE population per round: a grid of 3 rates per decade, then two rounds of "
              "3 rates inside each edge's bracket (final bracket 10^(1/48), 4.9%). Edges get 95% bootstrap "
              "intervals over seeds, slopes the same bootstrap (scaling.gamma); the corner lambda_c = eta_B at the B "
              "edge / eta_A at the A edge, per seed. A width where any seed's edge is censored (the range never "
              "crosses the edge) is left out of the fit and listed below.", "",
              "## Laws (primary criterion)", "",
              _md(laws[["law", "model", "optimizer", "init", "alpha_scaling", "variable", "predicted", "slope", "lo",
                        "hi", "verdict", "reason", "left_out", "local_slopes"]], ".2f"), ""]
    cens = summary[summary.censored != ""] if len(summary) else summary
    lines += ["## Censored edges", "",
              "Widths (or ranks) where some seed's edge was not crossed inside the search range ('below': nothing "
              "trained; 'above': everything trained); these points are left out of the fits, never invented.", "",
              _md(cens[[c for c in cens.columns if c in ("config", "slice", "criterion", "width", "rank", "seeds",
                                                         "censored_seeds", "censored")]]) if len(cens) else "(none)", ""]
    lines += ["## How the slopes move with the criterion (f, T)", "",
              "Same edges under every criterion the configuration measured (the primary one first). A law whose "
              "slope moves less than its interval when f or T change does not depend on the criterion.", ""]
    if len(crit):
        piv = crit.assign(value=[fmt_ci(s, lo, hi) for s, lo, hi in zip(crit.slope, crit.lo, crit.hi)])
        piv = piv.pivot_table(index=["config", "law", "slice"], columns="criterion", values="value",
                              aggfunc="first", sort=False).reset_index()
        lines += [_md(piv), ""]
    opt = laws[laws.law.str.startswith("optimum") | (laws.law == "lambda* (profile)")]
    lines += ["## Optima", "",
              "The loss-optimal rate along each slice (parabola through the grid argmin and its neighbours, per seed) "
              "and the optimal ratio from the profile: the best loss over eta_A at each width-free ratio lambda. "
              "lambda* is identified when the near-optimal ratios are bounded by worse ones on both sides, "
              "and lies on a ridge when that set reaches the end of the measured ratios (0.1 .. 1e5).", "",
              _md(opt[["law", "config", "predicted", "slope", "lo", "hi", "verdict", "reason"]], ".2f"), ""]
    prof = tables["profiles"]
    if len(prof):
        lines += [f"Near-optimal ratios: within {100 * PROFILE_REL_TOL:g}% of the best profile value (`span_decades`; "
                  "the 1% span beside it). Why 25%: along the flat part of a profile the best loss varies irregularly "
                  "by about +-20% between neighbouring ratios at these widths (see profiles.csv, column profile), while "
                  "leaving the ridge raises it 3 to 15 times; a 1% set is a single ratio whatever the landscape.", "",
                  _md(prof[["config", "width", "identified", "span_decades", "span_decades_1pct", "ratio_star",
                            "best_ratio", "best_eta_a", "best_loss", "reason"]]), ""]
    if fig2 is not None and len(fig2):
        lines += ["## The Fig. 2 question", "",
                  "The paper's grid (paper-mlp, n = 100, 2e-4 .. 10, 3 seeds) under the readings its text leaves "
                  "open. `paper-mlp` is the model as printed (A, B both random, nothing between them); "
                  "`paper-mlp-base` adds a frozen W ~ N(0, 2/n) so that LoRA's Init[1] (B = 0) and Init[2] (A = 0) "
                  "can train at all. A edge: largest eta_A at which every seed trains at the smallest eta_B; B edge: "
                  "largest eta_B at the smallest eta_A; corner = B edge / A edge.", "",
                  _md(fig2[["reading", "step", "best_eta_a", "best_eta_b", "best_loss", "lambda_star", "lambda_low",
                            "lambda_high", "finding", "ridge_slope", "touches_grid_edge", "a_edge", "b_edge",
                            "corner_ratio"]]), ""]
        if dead is not None and len(dead):
            lines += ["Init[1] and Init[2] on the printed model (no W): B A h_0 = 0 at the start and relu'(0) = 0, "
                      "so every LoRA gradient is exactly zero and no rate trains:", "", _md(dead), ""]
    lines += ["## Search cost", "",
              "Runs per shard (all slices and criteria of one configuration at one width / rank and seed), runs per "
              "edge slice, rounds and CPU seconds per shard (process time: this machine may be shared).", "",
              _md(cost), ""]
    lines += ["## Figures", ""] + [f"![{c}]({p})" for c, p in figures.items()]
    lines += ["", "## Appendix: edges per width (geometric mean over seeds, 95% interval)", "",
              _md(summary) if len(summary) else "(none)", ""]
    return "\n".join(lines) + "\n"


def render(out, runs: pd.DataFrame, configs: list[LawsConfig], meta: dict, fig2_grid: pd.DataFrame | None = None,
           dead: pd.DataFrame | None = None, tol: float = DEFAULT_TOLERANCE, predictor=law_prediction,
           kinds=("edge", "corner", "optimum", "profile")) -> dict:
    """Write laws.csv, edges.csv, criteria.csv, optima.csv, profiles.csv, fig2.csv, figures/ and
    report.md into ``out`` from the runs table; returns the tables."""
    import matplotlib.pyplot as plt

    from figures.lr_grid import plot_heatmap
    from figures.lr_laws import plain_log_ticks, plot_edges, plot_profile, plot_rank, plot_transfer
    from studies.run.store import write_csv, write_text

    tables = analyse(runs, configs, tol, predictor, kinds) if len(runs) else {
        k: pd.DataFrame() for k in ("edges", "edge_summary", "laws", "criteria", "optima", "profiles")}
    if "laws" in tables and tables["laws"].empty:
        tables["laws"] = pd.DataFrame(columns=LAW_COLUMNS)
    fig2 = fig2_table(fig2_grid) if fig2_grid is not None and len(fig2_grid) else None
    for name in ("laws", "edges", "criteria", "optima", "profiles"):
        write_csv(tables[name], out / f"{name}.csv")
    write_csv(tables["edge_summary"], out / "edge_summary.csv")
    if fig2 is not None:
        write_csv(fig2, out / "fig2.csv")
    (out / "figures").mkdir(exist_ok=True)
    figures = {}

    def save(fig, name, caption):  # PNG only: a PDF of every figure doubled the drawing time
        plain_log_ticks(fig)
        fig.savefig(out / "figures" / f"{name}.png", dpi=110)
        plt.close(fig)
        figures[caption] = f"figures/{name}.png"

    laws = tables["laws"]
    summ = tables["edge_summary"]
    rank = [c for c in configs if c.variable == "r"]
    if rank and len(summ):
        s = summ[summ.config.isin([c.label for c in rank]) & (summ.slice == "one-rate")
                 & (summ.criterion == rank[0].primary.name)]
        if len(s):
            save(plot_rank(s, laws, f"rank study: linear, Adam, n = {rank[0].widths[0]}, alpha = 1"), "edges_rank",
                 "the one-rate edge against the rank (muA's rows)")
    for c in configs:
        slug = "_".join(c.label.replace("/", " ").split()).replace(".", "")
        s = summ[(summ.config == c.label) & ((summ.criterion == c.primary.name))] if len(summ) else summ
        if len(s) and c.variable == "n":
            save(plot_edges(s, laws[laws.config == c.label], x_of(c), c.label), f"edges_{slug}",
                 f"edges and corner against {c.variable}: {c.label}")
        curves = transfer_curves(runs, c)
        panels = [(k, lab, n0) for k, lab, n0 in (
            ("one-rate", "log2 eta (one shared rate)", 0),
            (next((sl.key for sl in c.slices if sl.name == "ratio" and sl.role == "edge"), ""),
             "log2 (eta_A n / 64): LoRA+'s base rate (eta_B = 16 n/64 eta_A)", c.n0 if c.variable == "n" else 0))
            if len(curves) and k in set(curves.slice)]
        if panels:
            save(plot_transfer(curves, x_of(c), panels, c.primary.fraction, f"{c.label}: loss at T = {c.primary.steps}"),
                 f"transfer_{slug}", f"transfer plot: {c.label}")
        prof = tables["profiles"]
        p = prof[prof.config == c.label] if len(prof) else prof
        if len(p):
            save(plot_profile(p, c.label, PROFILE_REL_TOL), f"profile_{slug}", f"ratio profile: {c.label}")
        measured = laws[(laws.config == c.label) & (laws.kind == "edge") & (laws.slice_name != "")] if len(laws) else laws
        if c.variable == "n" and c.teacher == "independent" and c.factory is None and len(measured):
            from figures.phase import measured_slices, plot_phase_edges
            from scaling.phase import phase_edges
            m = measured.rename(columns={"slice": "key"}).rename(columns={"slice_name": "slice", "held_n": "held"})
            m = m[np.isfinite(m.slope)]
            fig = plot_phase_edges(phase_edges(c.optimizer, c.init_name, c.model, slices=measured_slices(m)), m)
            save(fig, f"phase_{slug}", f"phase diagram with the measured edges: {c.label}")
    if fig2_grid is not None and len(fig2_grid):
        last = fig2_grid.step.max()
        for reading, g in fig2_grid.groupby("reading", sort=False):
            fig = plot_heatmap(g, 100, last, "train")
            fig.axes[0].set_title(f"{reading}, n = 100, t = {last}", fontsize=8)
            save(fig, "fig2_" + "_".join(reading.replace("/", " ").split()), f"Fig. 2 grid: {reading}")
    cost = search_cost(runs) if len(runs) else pd.DataFrame()
    from studies.reports.lr_laws_known import known_reasons
    write_text(report_text(meta, tables, figures, fig2, dead, cost, known_reasons(tables, fig2)), out / "report.md")
    tables["fig2"] = fig2
    return tables


def rerender(run) -> dict[str, str]:
    """Redraw a stored lr-laws run (runs.csv, fig2_grid.csv, meta.json) and return its figures."""
    import json
    from pathlib import Path

    from studies.lr_laws import dead_start
    from studies.run.store import read_table
    run = Path(run)
    meta = json.loads((run / "meta.json").read_text())
    configs = [LawsConfig.from_dict(d) for d in meta["spec"]["configs"]]
    runs = read_table(run / "runs.csv") if (run / "runs.csv").stat().st_size > 1 else pd.DataFrame()
    fig2 = read_table(run / "fig2_grid.csv") if (run / "fig2_grid.csv").is_file() else None
    dead = dead_start() if fig2 is not None else None
    render(run, runs, configs, meta, fig2, dead, meta.get("tolerance", DEFAULT_TOLERANCE))
    text = (run / "report.md").read_text()
    return {line[2:line.index("]")]: line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")}
