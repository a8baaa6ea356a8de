"""What a finetune run writes: summary tables, the four figures, report.md (from the tables)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from studies.finetune import best_lrs, steps_to_target
from studies.run.store import write_csv, write_json, write_text

TARGET_FRACTION = 0.98


def comparison(evals: pd.DataFrame, steps: int) -> dict:
    """Best LoRA (ratio 1, or the smallest ratio) against the best other ratio, best over lr.
    The target accuracy is 98% of the lower of the two best final accuracies, a level both
    reach; steps-to-target and the speedup (LoRA's steps over LoRA+'s) compare the two."""
    best = best_lrs(evals, steps)
    lora = best.sort_values("ratio").iloc[0]
    others = best[best.ratio != lora.ratio]
    plus = others.loc[others.dev_acc.idxmax()] if len(others) else None
    reached = float(lora.dev_acc) if plus is None else min(float(lora.dev_acc), float(plus.dev_acc))
    out = {"best": best, "lora": lora, "plus": plus, "target": TARGET_FRACTION * reached}
    if plus is not None:
        out["steps_lora"] = steps_to_target(evals, lora.ratio, lora.best_lr, out["target"])
        out["steps_plus"] = steps_to_target(evals, plus.ratio, plus.best_lr, out["target"])
        out["speedup"] = out["steps_lora"] / out["steps_plus"]  # NaN when either never reaches it
    return out


def monitor_summary(monitor: pd.DataFrame, ratio: float, lr: float) -> pd.DataFrame:
    """Median delta1 (A side) and delta2 (B side) per layer over steps > 1 and seeds; no rows
    when the run measured no step after the first (a run shorter than --monitor-every)."""
    m = monitor[(monitor.ratio == ratio) & (monitor.lr == lr) & (monitor.step > 1)
                & monitor.metric.isin(["delta1", "delta2"])]
    table = m.pivot_table(index="layer", columns="metric", values="value", aggfunc="median")
    table = table.reindex(columns=["delta1", "delta2"])
    table["delta1/delta2"] = table.delta1 / table.delta2
    return table.reset_index()


def render(out: Path, evals: pd.DataFrame, monitor: pd.DataFrame, meta: dict) -> dict[str, str]:
    from figures.finetune import plot_accuracy_vs_ratio, plot_best_curves, plot_monitor, plot_steps_to_target
    from figures.save import save_figure

    steps = meta["spec"]["steps"]
    cmp = comparison(evals, steps)
    write_csv(cmp["best"], out / "best_per_ratio.csv")
    figures = {}

    def save(fig, name, caption):
        save_figure(fig, out / "figures" / name)
        figures[caption] = f"figures/{name}.png"

    best = cmp["best"]
    save(plot_accuracy_vs_ratio(best, steps), "accuracy_vs_ratio", "best dev accuracy against the ratio")
    runs = [(label, row.ratio, row.best_lr) for label, row in (("LoRA", cmp["lora"]), ("LoRA+", cmp["plus"]))
            if row is not None]
    save(plot_best_curves(evals, runs, cmp["target"], f"target: {100 * TARGET_FRACTION:g}% of the lower best"),
         "curves", "accuracy curves, best against best")

    rows = [{"ratio": r.ratio, "steps": steps_to_target(evals, r.ratio, r.best_lr, cmp["target"])}
            for r in best.itertuples()]
    reach = pd.DataFrame(rows)
    save(plot_steps_to_target(reach, cmp["target"], meta["spec"].get("eval_every")), "steps_to_target",
         "steps to reach the target accuracy")

    notes, both = [], pd.DataFrame()
    if not monitor.empty and cmp["plus"] is not None:
        a = monitor_summary(monitor, cmp["lora"].ratio, cmp["lora"].best_lr).assign(run=f"ratio {cmp['lora'].ratio:g}")
        b = monitor_summary(monitor, cmp["plus"].ratio, cmp["plus"].best_lr).assign(run=f"ratio {cmp['plus'].ratio:g}")
        both = pd.concat([a, b])
        if both.empty:
            every = meta["spec"]["monitor_every"]
            notes.append(f"No monitor figure: the monitor measures steps 1, {every + 1}, {2 * every + 1}, ... and its "
                         f"deltas are read after step 1 (under Init[1] B is still 0 at step 1); these {steps}-step "
                         f"runs measured no later step (a --monitor-every below {steps} would).")
    if not both.empty:
        both["layer"] = both.layer.str.replace("base_model.model.", "").str.replace(".attention.self", "")
        write_csv(both, out / "monitor_summary.csv")
        save(plot_monitor(both), "monitor", "feature updates per layer, ratio 1 against the best ratio")
    write_text(report_text(meta, cmp, reach, figures, notes), out / "report.md")
    return figures


def report_text(meta: dict, cmp: dict, reach: pd.DataFrame, figures: dict[str, str],
                notes: list[str] = ()) -> str:
    spec = meta["spec"]
    best = cmp["best"]
    lines = [f"# finetune: {spec['model']} on SST-2", "",
             f"PEFT LoRA r = {spec['rank']}, alpha = {spec['alpha']} on {', '.join(spec['targets'])}; AdamW "
             f"(0.9, 0.99), linear decay, {spec['steps']} steps of {spec['batch_size']}; "
             f"{meta.get('train_size', '?')} training sentences; dev accuracy on {meta.get('dev_size', '?')} "
             f"sentences; seeds {spec['seeds']}; wall time {meta.get('wall_time_s', float('nan')) / 60:.1f} min.", "",
             "## Best per ratio (best over lr of the seed-mean final dev accuracy)", "",
             best.to_markdown(index=False, floatfmt=".4g"), ""]
    unbracketed = best[~best.bracketed]
    if len(unbracketed):
        lines += [f"**Not bracketed** (best lr at an edge of its grid, even after extension): ratios "
                  f"{', '.join(f'{r:g}' for r in unbracketed.ratio)}. Their best accuracy may be an underestimate.", ""]
    else:
        lines += ["Every ratio's best lr lies inside its grid: the comparison is best against best.", ""]
    lora, plus = cmp["lora"], cmp["plus"]
    if plus is not None:
        lines += [f"Best LoRA (ratio {lora.ratio:g}, lr {lora.best_lr:.3g}): {lora.dev_acc:.4f}; best LoRA+ (ratio "
                  f"{plus.ratio:g}, lr {plus.best_lr:.3g}): {plus.dev_acc:.4f}; difference "
                  f"{100 * (plus.dev_acc - lora.dev_acc):+.2f} points.",
                  f"Steps to reach {cmp['target']:.4f}: LoRA {cmp['steps_lora']:.0f}, LoRA+ {cmp['steps_plus']:.0f} "
                  f"(speedup {cmp['speedup']:.2f}x).", ""]
    lines += [*notes, ""] if notes else []
    lines += ["## Figures", ""] + [f"![{c}]({p})" for c, p in figures.items()]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, evals: pd.DataFrame, monitor: pd.DataFrame, meta: dict) -> dict[str, str]:
    write_csv(evals, out / "evals.csv")
    write_csv(monitor, out / "monitor.csv")
    write_json(meta, out / "meta.json")
    return render(out, evals, monitor, meta)
