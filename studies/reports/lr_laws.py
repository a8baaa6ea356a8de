"""The lr-laws report: what the run found in plain words, the laws with verdicts, the settings the
run actually used, the criterion sensitivity, optima, the Fig. 2 question, figures.

Everything here formats ``studies.lr_laws.analysis.LawsTables``; configurations are found by
their typed ``ConfigKey``, never by a label typed out here.
"""
from __future__ import annotations

import math
import re
import textwrap
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from figures.lr_grid import plot_heatmap
from figures.lr_laws import plain_log_ticks, plot_edges, plot_profile, plot_rank, plot_transfer, plot_transfer_gaps
from figures.phase import measured_slices, plot_phase_edges
from scaling.phase import phase_edges
from scaling.exponents import fmt
from studies.lr_laws.analysis import (CORNER, INIT_PAIR, PROFILE, PROFILE_REL_TOL, SLICE_NAMES, LawsTables,
                                      law_prediction, x_of)
from studies.lr_laws.config import ConfigKey, LawsConfig
from studies.reports.lr_laws_known import known_reasons
from studies.run.study import Report, exit_code

B_EDGE, A_EDGE, ONE_RATE = SLICE_NAMES["b-edge"], SLICE_NAMES["a-edge"], SLICE_NAMES["one-rate"]
RATIO_EDGE = SLICE_NAMES["ratio"]


def fmt_ci(slope, lo, hi) -> str:
    if slope is None or not np.isfinite(slope):
        return "n/a"
    return f"{slope:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def fmt_pred(p) -> str:
    return "none" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:+.3g}"


def _md(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) if len(df) else "(none)"


def _ci(r, var: str = "n") -> str:
    return f"{var}^{r.slope:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}]"


def _law_line(r) -> str:
    return f"{r.law} ({r.config}): {fmt_ci(r.slope, r.lo, r.hi)} against {fmt_pred(r.predicted)} -> **{r.verdict}**"


def figure_slug(label: str) -> str:
    """A file-name stem from a configuration's label: path separators and spaces become '_',
    dots go, anything else outside letters, digits, '_', '-' and '=' becomes '_' (a factory's
    'file.py:make' holds a colon, which some file systems and URLs refuse)."""
    slug = "_".join(label.replace("/", " ").split()).replace(".", "")
    return re.sub(r"[^A-Za-z0-9_=-]", "_", slug)


# -- the opening, in plain words -------------------------------------------------------------------------
def plain_words(tables: LawsTables) -> list[str]:
    """The report's first paragraph: what the run says, in sentences built from its own tables."""
    laws, get = tables.laws, tables.law
    out = []
    for model in ("linear", "mlp"):
        key = ConfigKey(model, "adam", "1")
        b, a, corner, one = (get(k, key) for k in (B_EDGE, A_EDGE, CORNER, ONE_RATE))
        if b is None or a is None or corner is None:
            continue
        holds = all(r.verdict == "PASS" for r in (b, a, corner))
        out.append(f"{model}, Adam, Init[1] (stock PEFT): the largest eta_B that trains does not move with width "
                   f"({_ci(b)}), the largest eta_A falls like 1/n ({_ci(a)}), so the region's corner, LoRA+'s ratio "
                   f"eta_B / eta_A, grows like {_ci(corner)}: "
                   + ("LoRA+'s Theta(n) holds for the corner." if holds else "not the Theta(n) LoRA+ predicts.")
                   + (f" One shared rate must fall like {_ci(one)} (theory n^-1/2)." if one is not None else ""))
    one2 = get(ONE_RATE, ConfigKey("linear", "adam", "2"))
    ctl = get(ONE_RATE, ConfigKey("linear", "adam", "2", teacher="b0-aligned"))
    if one2 is not None:
        out.append(f"Under Init[2] (A = 0, B random) one shared rate must fall faster: {_ci(one2)} on linear"
                   + (f", where A's first step overshoots its own small target; with the teacher inside span(B0) it is "
                      f"{_ci(ctl)}, the theory's n^-1." if ctl is not None else "."))
    out += stacked_words(tables)
    prof = tables.profiles
    if len(prof):
        ridge = prof.groupby("config").identified.apply(lambda v: (~v).mean())
        flat = [c for c, f in ridge.items() if f == 1]
        if flat:
            out.append("The loss-optimal ratio lambda* is not identified (a ridge at every width measured) for "
                       + ", ".join(flat) + ": the best loss over eta_A is flat over decades of ratio, so a grid argmin "
                       "says nothing about lambda*, while the corner is sharp.")
    gd = [(key, get(CORNER, key)) for key in (ConfigKey("toy", "sgd", "1"), ConfigKey("toy", "sgd", "2"),
                                              ConfigKey("paper-mlp", "sgd", "paper"))]
    gd = [(key, r) for key, r in gd if r is not None]
    if gd:
        out.append("Under gradient descent the edges are divergences; the corner grows like "
                   + ", ".join(f"{_ci(r)} ({key.model}, init {key.init})" for key, r in gd) + ".")
    paired = laws[laws.law.str.startswith("one-rate edge, s =")]
    ok = paired[(paired.init == "1") & np.isfinite(paired.slope.astype(float))]
    if len(ok):
        out.append("Rank (muA): under Init[1], how the LoRA scale moves the one-rate edge's rank exponent ("
                   + "; ".join(f"{r.law.replace('one-rate edge, ', '')}: {_ci(r, 'r')} vs {r.predicted:+g}, {r.verdict}"
                               for _, r in ok.iterrows()) + ").")
    out += factory_words(tables) + transfer_words(tables)
    fig2 = tables.fig2
    if fig2 is not None and len(fig2):
        last = fig2[fig2.step == fig2.step.max()]
        big = last[last.finding.str.startswith("eta_B* >> eta_A*")]
        out.append(f"Fig. 2 (n = 100, t = {int(last.step.iloc[0])}): eta_B* >> eta_A* appears in "
                   + (", ".join(big.reading) if len(big) else "no reading") + f" of the {len(last)} readings (table below).")
    return out


def _one_layer(law: str, config: LawsConfig) -> float | None:
    """The one-layer exponent of ``law`` (a table's law name) for a stacked configuration: its
    prediction at depth 1, without the control."""
    one = replace(config, depth=1, detach_lora_input=False)
    if law == CORNER:
        return law_prediction("corner", one).exponent
    name = next(k for k, v in SLICE_NAMES.items() if v == law)
    return law_prediction("edge", one, next(s for s in config.slices if s.name == name and s.role == "edge")).exponent


def _against(r, law: str, config: LawsConfig) -> str:
    """A stacked law's slope against the stack's prediction (with the verdict) and the one layer's."""
    one = _one_layer(law, config)
    stack = f"stack theory {fmt_pred(r.predicted)}" if np.isfinite(r.predicted) else "stack theory: none"
    if one is None:
        return f"{law} {_ci(r)} ({stack}, {r.verdict}; no one-layer exponent)"
    if np.isfinite(r.predicted) and abs(r.predicted - one) < 1e-9:
        return f"{law} {_ci(r)} ({stack}, as for one layer, {r.verdict})"
    inside = "inside" if r.lo <= one <= r.hi else "outside"
    return f"{law} {_ci(r)} ({stack}, {r.verdict}; one layer's {fmt_pred(one)} lies {inside} the interval)"


def stacked_words(tables: LawsTables) -> list[str]:
    """Per stacked toy mlp (LoRA layers in series) and its stacking control: which laws move with
    the stack and which keep their one-layer exponents, each against both predictions."""
    out = []
    for c in tables.configs:
        if c.factory is not None or c.depth < 2 or c.detach_lora_input:
            continue
        laws = (B_EDGE, RATIO_EDGE, ONE_RATE, A_EDGE, CORNER)
        found = [(k, tables.law(k, c.key)) for k in laws]
        found = [(k, r) for k, r in found if r is not None]
        if not found:
            continue
        L = c.depth
        text = (f"{c.model}, Adam, Init[{c.init_name}], {L} LoRA layers in series: "
                + "; ".join(_against(r, k, c) for k, r in found) + ".")
        if c.init_name == "1":
            text += (f" Theory: for one LoRA layer the B edge holds still (n^0); for the stack it falls like "
                     f"n^-(L-1)/(2L) = n^{Fraction(-(L - 1), 2 * L)} (the backward link: Adam moves the lower layer along "
                     "the upper layer's A rows), the ratio edge with it, while the one-rate edge keeps the one layer's "
                     "n^-1/2.")
        else:
            text += (f" Theory: under Init[2] the stack keeps the one layer's B, A and ratio edges, and its one-rate edge "
                     f"steepens to n^(-1 + 1/(2L)) = n^{Fraction(-2 * L + 1, 2 * L)} (the forward link).")
        control = replace(c.key, detached=True)
        ctl = [(k, tables.law(k, control)) for k in laws]
        ctl = [(k, r) for k, r in ctl if r is not None]
        if ctl:
            text += (" Its stacking control (each upper LoRA layer reads a detached copy of its input): "
                     + "; ".join(f"{k} {_ci(r)} (theory {fmt_pred(r.predicted)}, {r.verdict})" for k, r in ctl) + "."
                     + (" (Theory: the control cuts the backward link and gives back the one layer's laws.)"
                        if c.init_name == "1" else " (Theory: the control keeps the forward link and the one-rate "
                                                   "edge with it.)"))
        out.append(text)
    return out


def factory_words(tables: LawsTables) -> list[str]:
    """One sentence per factory (a user's model or a family): its B edge, corner and one-rate edges."""
    out = []
    for model in dict.fromkeys(c.model for c in tables.configs if c.factory is not None):
        parts = []
        for c in [c for c in tables.configs if c.model == model]:
            named = [(k, tables.law(k, c.key)) for k in (B_EDGE, CORNER, ONE_RATE)]
            if any(r is not None for _, r in named):
                parts.append(f"Init[{c.init_name}]: " + ", ".join(
                    f"{k.replace(' lambda_c', '')} {_ci(r)} ("
                    f"{'theory ' + format(r.predicted, '+g') if np.isfinite(r.predicted) else 'no prediction'}, {r.verdict})"
                    for k, r in named if r is not None))
        if parts:
            out.append(f"On {model} (Adam, against width): " + "; ".join(parts) + ".")
        out += shape_words(tables, model)
    return out


def shape_words(tables: LawsTables, model: str) -> list[str]:
    """What the predictions of a factory's model assume: its chain of LoRA layers in series and
    its readout, as its shards recorded them (studies.lr_laws.analysis.law_prediction)."""
    label = next(c.label for c in tables.configs if c.model == model)
    if label not in tables.shapes:
        return [f"The runs of {model} do not record its LoRA chain and readout (stored before they did): it is "
                "predicted as one mlp LoRA layer under a mean-field readout."]
    chain, readout = tables.shapes[label]
    stack = (f"{chain} LoRA layers in series (its longest chain), so the stacked laws: under Init[1] the B edge "
             f"n^{fmt(-(chain - 1) / (2 * chain))}, the A edge and corner only bounded" if chain > 1 else "one LoRA layer deep")
    if readout == "standard":
        return [f"Its predictions: {stack.split(',')[0]} under a standard readout (declared), which lowers every "
                "edge by n^-1/2 and makes depth marginal; Init[2] under a standard readout is not derived."]
    said = "declared" if readout else "not declared, taken as mean-field"
    return [f"Its predictions: {stack}; readout {said}."]


def transfer_words(tables: LawsTables) -> list[str]:
    """One sentence per configuration of the transfer test: which rule keeps the rates best."""
    out = []
    for r in tables.transfer_best.itertuples():
        gaps = tables.transfer_gaps[(tables.transfer_gaps.config == r.config) & (tables.transfer_gaps.width == r.width)]
        others = "; ".join(f"{g.rule} {_gap(g.gap)}" for g in gaps.itertuples() if g.rule != r.best_rule)
        tie = f" (not told apart from {r.tied_with})" if r.tied_with else ""
        out.append(f"Transfer test, {r.config} (tuned at n = {int(gaps.n0.iloc[0])}, moved to n = {r.width}): "
                   f"{r.best_rule} transfers best{tie}, its loss {_gap(r.gap)} [{r.gap_low:.2f}, {r.gap_high:.2f}] "
                   f"times the retuned one; {others}.")
    return out


def _gap(value: float) -> str:
    return "diverged" if not np.isfinite(value) else f"x{value:.2f}"


def findings(tables: LawsTables) -> list[str]:
    """The opening's numbers: verdict counts, the key laws with their intervals."""
    laws = tables.laws
    counts = laws.verdict.value_counts()
    out = [f"{len(laws)} laws judged by the existing rule (95% interval against prediction +- tolerance): "
           f"{counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, {counts.get('INCONCLUSIVE', 0)} INCONCLUSIVE."]
    key = laws[laws.law.isin([B_EDGE, CORNER, ONE_RATE, A_EDGE])]
    for _, r in key.iterrows():
        width = r.hi - r.lo if np.isfinite(r.slope) else np.nan
        out.append(_law_line(r) + (f"; interval width {width:.2f}" if np.isfinite(width) else ""))
    for _, r in laws[laws.law == INIT_PAIR].iterrows():
        out.append(f"One shared rate, Init[1] against Init[2] ({r.model}, {r.optimizer}): the ratio of their edges grows "
                   f"like {r.variable}^{r.slope:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}] (predicted {fmt_pred(r.predicted)}): "
                   f"**{r.verdict}**.")
    prof = tables.profiles
    for config, p in (prof.groupby("config", sort=False) if len(prof) else []):
        kinds = ", ".join(f"n = {w}: {'identified' if i else 'ridge'} ({s:.1f} decades)"
                          for w, i, s in zip(p.width, p.identified, p.span_decades))
        out.append(f"lambda* for {config}: {kinds}.")
    fig2 = tables.fig2
    if fig2 is not None and len(fig2):
        last = fig2[fig2.step == fig2.step.max()]
        big = last[last.finding.str.startswith("eta_B* >> eta_A*")]
        out.append("Fig. 2 question (t = {}): {} of {} readings show eta_B* >> eta_A*{}.".format(
            int(last.step.iloc[0]), len(big), len(last), (": " + ", ".join(big.reading)) if len(big) else ""))
    return out


# -- the settings the run used ----------------------------------------------------------------------------
def _held_text(s, n0: int, r0: int) -> str:
    scale = "".join(f" ({v}/{v0})^{e:g}" for v, v0, e in (("n", n0, s.held_n), ("r", r0, s.held_r)) if e)
    return f"{s.held:g}{scale}"


def slice_text(s, n0: int, r0: int) -> str:
    """What one slice varies and holds, with the run's own numbers."""
    lo, hi = s.rate_range
    searched = f"searched over {lo:g} .. {hi:g}"
    if s.name == "b-edge":
        return f"the B edge varies eta_B at eta_A = {_held_text(s, n0, r0)}, {searched}"
    if s.name == "a-edge":
        return f"the A edge varies eta_A at eta_B = {_held_text(s, n0, r0)}, {searched}"
    if s.name == "one-rate":
        return f"the one-rate edge varies eta_A = eta_B, {searched}"
    return f"the ratio edge varies eta_A at eta_B / eta_A = {_held_text(s, n0, r0)}, {searched}"


CENTER_TEXT = {"mean": "the mean over seeds of the log edges",
               "median": "the median over seeds of the log edges",
               "trimmed": "the trimmed mean over seeds of the log edges (the lowest and the highest 20% of the seeds, "
                          "rounded down, dropped at each width)"}


def center_text(c: LawsConfig) -> str:
    return f"each width's edge and the slopes' curve: {CENTER_TEXT[c.center]}, bootstrapped over seeds"


def search_text(c: LawsConfig) -> str:
    per = c.per_decade
    final = per * (c.refine_points + 1) ** c.refine_rounds
    return (f"a grid of {per} rates per decade, then {c.refine_rounds} rounds of {c.refine_points} rates inside each "
            f"edge's bracket (final bracket 10^(1/{final}), {100 * (10 ** (1 / final) - 1):.1f}%)")


def settings_lines(configs: list[LawsConfig]) -> list[str]:
    """One bullet per group of configurations that share their slices, criterion and search."""
    groups: dict[str, list[str]] = {}
    for c in configs:
        slices = [s for s in c.slices if s.role == "edge"]
        text = ("; ".join(slice_text(s, c.n0, c.r0) for s in slices) + f". Trains: {c.primary.describe()}"
                + (f" (also measured: {', '.join(k.name for k in c.criteria[1:])})" if len(c.criteria) > 1 else "")
                + f". Search: {search_text(c)}. Fits: {center_text(c)}.")
        groups.setdefault(text, []).append(c.label)
    return [f"- {', '.join(labels)}: {text}" for text, labels in groups.items()]


# -- the report ----------------------------------------------------------------------------------------
def report_text(meta: dict, tables: LawsTables, figures: dict[str, str]) -> str:
    laws, crit, summary = tables.laws, tables.criteria, tables.edge_summary
    known = known_reasons(tables)
    fig2, dead = tables.fig2, tables.dead
    lines = ["# lr-laws: edges of the trainable region, the corner and the optimum, against theory", "",
             "## What it found", ""]
    lines += [" ".join(plain_words(tables)), "", "In numbers:", ""]
    lines += [f"- {s}" for s in findings(tables)]
    if known:
        lines += ["", "Where measurement and theory disagree, and why:", ""] + [f"- {k}" for k in known]
    lines += ["", f"Studies: {', '.join(meta.get('studies', []))}{' (quick)' if meta.get('quick') else ''}; "
                  f"CPU time {meta.get('cpu_s', float('nan')):.0f} s summed over the edge-search shards (the Fig. 2 "
                  f"grid not counted), wall time "
                  f"{meta.get('wall_time_s', float('nan')):.0f} s ({meta.get('executor', '?')} executor, "
                  f"{meta.get('workers', '?')} workers).", "",
              "## How it is measured", "",
              "A slice is a line in (eta_A, eta_B); its edge is the largest rate on it that still trains. Each "
              "(width, rank, seed) is one shard whose candidate rates train as ONE population per round. Edges get 95% "
              "bootstrap intervals over seeds, slopes the same bootstrap (scaling.gamma); the corner lambda_c = eta_B "
              "at the B edge / eta_A at the A edge, per seed. A width where any seed's edge is censored (the range "
              "never crosses the edge) is left out of the fit and listed below. This run's settings:", ""]
    lines += settings_lines(tables.configs)
    lines += ["", "## Laws (primary criterion)", "",
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
    opt = laws[laws.law.str.startswith("optimum") | (laws.law == PROFILE)]
    lines += ["## Optima", "",
              "The loss-optimal rate along each slice (parabola through the grid argmin and its neighbours, per seed) "
              "and the optimal ratio from the profile: the best loss over eta_A at each width-free ratio lambda. "
              "lambda* is identified when the near-optimal ratios are bounded by worse ones on both sides, "
              "and lies on a ridge when that set reaches the end of the measured ratios.", "",
              _md(opt[["law", "config", "predicted", "slope", "lo", "hi", "verdict", "reason"]], ".2f"), ""]
    prof = tables.profiles
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
    if len(tables.transfer_gaps):
        lines += ["## Transfer: rates tuned at the narrowest width, moved by each rule", "",
                  "At every width a grid of (eta_A, eta_B) (the same values on both axes) trains; the loss after T "
                  "steps is the score. The best pair and the best shared rate at the narrowest width are moved to "
                  "each wider width by each rule, and their loss is set against the loss at the pair retuned on "
                  "that width's grid: gap 1 is as good as retuning (geometric mean over seeds, 95% interval; "
                  "'inf' where the rule's rates diverged). The measured one-rate law is fitted on these widths "
                  "(in-sample).", "",
                  _md(tables.transfer_best, ".3g"), "", _md(tables.transfer_gaps, ".3g"), ""]
    if len(tables.recommended):
        lines += ["## Recommended rates at the target widths", "",
                  "From the optimum laws (the ratio slice's eta_A for the LoRA+ pair, eta_B = lambda eta_A; the "
                  "one-rate slice for one shared rate): the law's value at the target width with a 95% interval "
                  "from the bootstrap over seeds (it carries the intercept's and the exponent's uncertainty). The "
                  "exponent is the theory's where the measured law PASSes against it, the measured one otherwise.",
                  "", _md(tables.recommended[["config", "target_width", "quantity", "value", "low", "high",
                                              "exponent", "rule", "warning"]], ".3g"), ""]
    if len(tables.extrapolation_check):
        lines += ["## The recommendations against measurements at the target widths", "",
                  "Each recommended rate beside the same quantity measured at its target width by the run given "
                  "with --check-against (geometric mean over seeds, 95% interval): `inside`, the measured value "
                  "lies in the recommended interval; `consistent`, the two intervals overlap.", "",
                  _md(tables.extrapolation_check, ".3g"), ""]
    lines += ["## Search cost", "",
              "Runs per shard (all slices and criteria of one configuration at one width / rank and seed), runs per "
              "edge slice, rounds and CPU seconds per shard (process time: this machine may be shared). A factory's "
              "shard holds every init of one (width, seed): its cpu_s and build_cpu_s (pretraining the base, or "
              "loading it from the cache) are the shard's, train_cpu_s this configuration's populations.", "",
              _md(tables.cost), ""]
    lines += ["## Figures", ""] + [f"![{c}]({p})" for c, p in figures.items()]
    lines += ["", "## Appendix: edges per width (geometric mean over seeds, 95% interval)", "",
              _md(summary) if len(summary) else "(none)", ""]
    return "\n".join(lines) + "\n"


# -- figures and the whole render ----------------------------------------------------------------------------
def draw_figures(out: Path, tables: LawsTables) -> dict[str, str]:
    """Every figure into ``out``/figures; {caption: path relative to ``out``}."""
    figures = {}

    def save(fig, name, caption):  # PNG only: a PDF of every figure doubled the drawing time
        plain_log_ticks(fig)
        fig.savefig(out / "figures" / f"{name}.png", dpi=110)
        plt.close(fig)
        figures[caption] = f"figures/{name}.png"

    laws, summ, configs = tables.laws, tables.edge_summary, tables.configs
    rank = [c for c in configs if c.variable == "r"]
    if rank and len(summ):
        s = summ[summ.config.isin([c.label for c in rank]) & (summ.slice == "one-rate")
                 & (summ.criterion == rank[0].primary.name)]
        if len(s):
            save(plot_rank(s, laws, f"rank study: linear, Adam, n = {rank[0].widths[0]}, alpha = 1"), "edges_rank",
                 "the one-rate edge against the rank (muA's rows)")
    for c in configs:
        slug = figure_slug(c.label)
        s = summ[(summ.config == c.label) & (summ.criterion == c.primary.name)] if len(summ) else summ
        if len(s) and c.variable == "n":
            save(plot_edges(s, laws[laws.config == c.label], x_of(c), c.label), f"edges_{slug}",
                 f"edges and corner against {c.variable}: {c.label}")
        curves = tables.transfer[tables.transfer.config == c.label] if len(tables.transfer) else tables.transfer
        ratio_key = next((sl.key for sl in c.slices if sl.name == "ratio" and sl.role == "edge"), "")
        ratio = next((sl for sl in c.slices if sl.name == "ratio" and sl.role == "edge"), None)
        ratio_label = (f"log2 (eta_A n / {c.n0}): LoRA+'s base rate (eta_B = {ratio.held:g} n/{c.n0} eta_A)"
                       if ratio is not None else "")
        panels = [(k, lab, n0) for k, lab, n0 in (
            ("one-rate", "log2 eta (one shared rate)", 0),
            (ratio_key, ratio_label, c.n0 if c.variable == "n" else 0))
            if len(curves) and k in set(curves.slice)]
        if panels:
            save(plot_transfer(curves, x_of(c), panels, c.primary.fraction if c.primary.kind == "start" else None, f"{c.label}: loss at T = {c.primary.steps}"),
                 f"transfer_{slug}", f"transfer plot: {c.label}")
        p = tables.profiles[tables.profiles.config == c.label] if len(tables.profiles) else tables.profiles
        if len(p):
            save(plot_profile(p, c.label, PROFILE_REL_TOL), f"profile_{slug}", f"ratio profile: {c.label}")
        measured = laws[(laws.config == c.label) & (laws.kind == "edge") & (laws.slice_name != "")] if len(laws) else laws
        if c.variable == "n" and c.teacher == "independent" and c.factory is None and len(measured):
            m = measured.rename(columns={"slice": "key"}).rename(columns={"slice_name": "slice", "held_n": "held"})
            m = m[np.isfinite(m.slope)]
            save(plot_phase_edges(phase_edges(c.optimizer, c.init_name, c.model, slices=measured_slices(m)), m),
                 f"phase_{slug}", f"phase diagram with the measured edges: {c.label}")
    for config, t in (tables.transfer_gaps.groupby("config", sort=False) if len(tables.transfer_gaps) else ()):
        save(plot_transfer_gaps(t, f"transfer test: {config}"), f"transfer_gaps_{figure_slug(config)}",
             f"transfer test, loss gap against width: {config}")
    grid = tables.fig2_grid
    if grid is not None and len(grid):
        last = grid.step.max()
        for reading, g in grid.groupby("reading", sort=False):
            fig = plot_heatmap(g, 100, last, "train")
            fig.axes[0].set_title(f"{reading}, n = 100, t = {last}", fontsize=8)
            save(fig, "fig2_" + "_".join(reading.replace("/", " ").split()), f"Fig. 2 grid: {reading}")
    return figures


def console(text: str, tables: LawsTables, meta: dict, out: Path) -> str:
    """The terminal's lines: the plain-words paragraph, a titled law table, the counts."""
    found = text.split("## What it found", 1)[-1].strip().split("\n\n", 1)[0]
    laws = tables.laws
    lines = [textwrap.fill(found, 100), ""]
    if len(laws):
        lines += ["The laws measured (exponent of each edge, corner or optimum against width or rank; predicted by "
                  "scaling.laws; 95% interval):",
                  laws[["law", "config", "predicted", "slope", "lo", "hi", "verdict"]].to_string(
                      index=False, float_format=lambda v: f"{v:+.2f}")]
    if len(tables.recommended):
        rec = tables.recommended
        lines += ["", "Recommended rates at the target widths (from the optimum laws; 95% interval):",
                  rec[["config", "target_width", "quantity", "value", "low", "high", "exponent"]].to_string(
                      index=False, float_format=lambda v: f"{v:.3g}")]
        lines += [f"warning: {w}" for w in dict.fromkeys(rec.warning) if w]
    counts = laws.verdict.value_counts() if len(laws) else pd.Series(dtype=int)
    lines.append(f"{counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, {counts.get('INCONCLUSIVE', 0)} "
                 f"INCONCLUSIVE in {meta.get('wall_time_s', float('nan')):.0f}s ({meta.get('resumed_shards', 0)} shards "
                 f"already done); report: {out / 'report.md'}")
    return "\n".join(lines)


def render(out: Path, tables: LawsTables, meta: dict) -> Report:
    figures = draw_figures(out, tables)
    text = report_text(meta, tables, figures)
    return Report(text, figures, console(text, tables, meta, out), exit_code(tables.laws.verdict))
