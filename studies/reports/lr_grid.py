"""Everything an lr-grid run writes after training: optima, lambda*(n), figures, report.md.

Works from the stored tables alone (grid.csv, curves.csv, meta.json), so ``figures --from``
can redraw a saved run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from figures.lr_grid import plot_best_curves, plot_heatmap, plot_lambda_sweep
from figures.save import save_figure
from scaling.optimum import DIVERGENCE_RULE
from studies.lr_grid import LrGridTables
from studies.run.study import Report


def render(out: Path, tables: LrGridTables, meta: dict) -> Report:
    """Figures into ``out``/figures; report.md's text and the console's lines."""
    spec, grid, curves, optima, fits = tables.spec, tables.grid, tables.curves, tables.optima, tables.fits
    figures = {}

    def save(fig, name, caption):
        save_figure(fig, out / "figures" / name)
        figures[caption] = f"figures/{name}.png"

    for w in spec.widths:
        for step in spec.eval_at:
            for split in tables.splits:
                save(plot_heatmap(grid, w, step, split), f"heatmap_n{w}_t{step}_{split}",
                     f"{split} loss over (eta_A, eta_B), n = {w}, t = {step}")
        if not curves[curves.width == w].empty:
            save(plot_best_curves(curves, w), f"curves_n{w}", f"best vs best equal-rate pair, n = {w}")
    if len(spec.widths) >= 2:
        for step in spec.eval_at:
            for split in tables.splits:
                o = optima[(optima.step == step) & (optima.split == split)]
                f = fits[(fits.step == step) & (fits.split == split)].iloc[0].to_dict()
                gaps = o[["width"]].assign(gap=o.equal_rate_gap)
                save(plot_lambda_sweep(o, f, gaps, title=f"{spec.model}, {spec.optimizer}, t = {step}, {split}"),
                     f"lambda_t{step}_{split}", f"lambda*(n), t = {step}, {split}")
    text = report_text(meta, optima, fits, figures)
    ran = (f"lr-grid {spec.model} / {spec.optimizer}: {len(spec.pairs()[0])} pairs x {len(spec.seeds)} seeds x "
           f"{len(spec.widths)} widths, {spec.steps} steps in {meta.get('wall_time_s', float('nan')):.1f}s "
           f"({meta.get('resumed_shards', 0)} shards already done); {tables.n_diverged} runs diverged")
    return Report(text, figures, ran + "\n" + text.split("## Figures")[0])


def _ci(row, name: str) -> str:
    return f"{row[name]:.3g} [{row[name + '_low']:.3g}, {row[name + '_high']:.3g}]"


def _interval_verdict(r) -> str:
    return ("eta_B* > eta_A*, the whole interval above 1" if r.lambda_star_low > 1 else
            "eta_B* < eta_A*, the whole interval below 1" if r.lambda_star_high < 1 else
            "the interval contains 1")


def findings(optima: pd.DataFrame, fits: pd.DataFrame, n_pairs: int | None) -> list[str]:
    """The report's opening in plain words: the last evaluated step's train loss (or the one
    split there is), per width when there are few, otherwise the slopes against n."""
    step = optima.step.max()
    split = "train" if "train" in set(optima.split) else optima.split.iloc[0]
    o = optima[(optima.step == step) & (optima.split == split)]
    f = fits[(fits.step == step) & (fits.split == split)].iloc[0]
    lines = [f"What it found (t = {step}, {split} loss):"]
    if len(o) <= 3:
        for _, r in o.iterrows():
            if not np.isfinite(r.lambda_star):
                lines.append(f"- n = {r.width}: every pair diverged on some seed; no optimum.")
                continue
            lines.append(f"- n = {r.width}: the best pair is (eta_A, eta_B) = ({r.argmin_eta_a:.2g}, {r.argmin_eta_b:.2g}), "
                         f"loss {r.best_loss:.3g}; the optimum is eta_A* = {_ci(r, 'eta_a_star')}, eta_B* = "
                         f"{_ci(r, 'eta_b_star')}, so lambda* = {_ci(r, 'lambda_star')} ({_interval_verdict(r)}); "
                         f"the best equal-rate pair's loss is {r.equal_rate_gap:.3g}x the best.")
    if f.slope is not None and np.isfinite(f.slope):
        lines.append(f"- Against n ({int(f.n_widths)} widths): lambda* ~ n^{f.slope:+.2f} [{f.ci_low:+.2f}, {f.ci_high:+.2f}] "
                     f"(theory +1), eta_A* ~ n^{f.slope_eta_a:+.2f} [{f.slope_eta_a_low:+.2f}, {f.slope_eta_a_high:+.2f}] "
                     f"(theory -1), eta_B* ~ n^{f.slope_eta_b:+.2f} [{f.slope_eta_b_low:+.2f}, {f.slope_eta_b_high:+.2f}] "
                     "(theory 0).")
    edge = o[o.touches_edge].width.tolist()
    if edge:
        lines.append(f"- The near-optimal set touches the grid's edge at n = {', '.join(map(str, edge))}: "
                     "those optima are not bracketed.")
    ridge = o[np.isfinite(o.ridge_slope) & (o.ridge_slope + 1).abs().lt(0.3)].width.tolist()
    if ridge:
        lines.append(f"- At n = {', '.join(map(str, ridge))} the near-optimal set is a ridge of slope about -1: only "
                     "the product eta_A eta_B is pinned down, not lambda*.")
    of = f" of {n_pairs}" if n_pairs else ""
    lines.append(f"- Not trainable (a seed diverged): {_counts(o.n_not_trainable)}{of} pairs per width, "
                 f"of which {_counts(o.n_partly_diverged)} diverged on some seeds but not all.")
    return lines + [""]


def _counts(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return f"{lo}" if lo == hi else f"{lo} .. {hi}"


def report_text(meta: dict, optima: pd.DataFrame, fits: pd.DataFrame, figures: dict[str, str]) -> str:
    spec = meta["spec"]
    lines = [f"# lr-grid: {spec['model']}, {spec['optimizer']}, init {meta.get('init', spec.get('init'))}", "",
             *findings(optima, fits, meta.get("pairs")),
             f"Widths {spec['widths']}; eta_A in {spec['eta_a_range']}, eta_B in {spec['eta_b_range']} "
             f"({spec['per_decade']} per decade); {spec['steps']} steps; seeds {spec['seeds']}; wall time "
             f"{meta.get('wall_time_s', float('nan')):.0f} s.", "",
             f"**Divergence rule.** {DIVERGENCE_RULE} The heatmaps draw such pairs grey.", "",
             "The optimum is the centroid (in log space) of the trainable pairs within 1% of the best seed-mean loss "
             "(seed mean of log-losses); intervals are 95% bootstrap intervals over seeds. `best pair` is the argmin. "
             "`ridge slope` is d log eta_B / d log eta_A across "
             "the near-optimal set (about -1: only the product eta_A eta_B is pinned down, lambda* is not); "
             "`at grid edge`: the near-optimal set touches the grid's boundary, so the optimum is not bracketed. "
             "`gap` is the best equal-rate pair's loss over the best loss. `not trainable` counts the pairs "
             "where a seed diverged (in brackets: of them, those where only some seeds did).", ""]
    for (step, split), o in optima.groupby(["step", "split"], sort=False):
        lines += [f"## t = {step}, {split} loss", "",
                  "| n | best loss | best pair (eta_A, eta_B) | eta_A* | eta_B* | lambda* = eta_B*/eta_A* | near-optimal pairs | "
                  "ridge slope | at grid edge | gap | not trainable |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for _, r in o.iterrows():
            lines.append(f"| {r.width} | {r.best_loss:.4g} | ({r.argmin_eta_a:.3g}, {r.argmin_eta_b:.3g}) | "
                         f"{_ci(r, 'eta_a_star')} | {_ci(r, 'eta_b_star')} | {_ci(r, 'lambda_star')} | "
                         f"{r.n_near} | {r.ridge_slope:+.2f} | {'yes' if r.touches_edge else 'no'} | {r.equal_rate_gap:.3g} | "
                         f"{r.n_not_trainable} ({r.n_partly_diverged}) |")
        lines.append("")
        for _, r in o.iterrows():
            if np.isfinite(r.lambda_star):
                lines.append(f"- n = {r.width}: lambda* = {r.lambda_star:.3g} ({_interval_verdict(r)}).")
        f = fits[(fits.step == step) & (fits.split == split)].iloc[0]
        if f.slope is not None and np.isfinite(f.slope):
            lines += ["", f"Fitted slope of log lambda* against log n: **{f.slope:+.2f}** "
                          f"[{f.ci_low:+.2f}, {f.ci_high:+.2f}] over {int(f.n_widths)} widths (theory: +1, "
                          "eta_B/eta_A = Theta(n)); eta_A*: "
                          f"{f.slope_eta_a:+.2f} [{f.slope_eta_a_low:+.2f}, {f.slope_eta_a_high:+.2f}] (theory -1); "
                          f"eta_B*: {f.slope_eta_b:+.2f} [{f.slope_eta_b_low:+.2f}, {f.slope_eta_b_high:+.2f}] "
                          "(theory 0)."]
        lines.append("")
    lines += ["## Figures", ""] + [f"![{c}]({p})" for c, p in figures.items()]
    return "\n".join(lines) + "\n"
