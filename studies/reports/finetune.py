"""What a finetune run writes: summary tables, the four figures, report.md (from the tables)."""
from __future__ import annotations

from pathlib import Path

from figures.finetune import plot_accuracy_vs_ratio, plot_best_curves, plot_monitor, plot_steps_to_target
from figures.save import save_figure
from studies.finetune import TARGET_FRACTION, FinetuneTables
from studies.run.study import Report

def render(out: Path, tables: FinetuneTables, meta: dict) -> Report:
    """The four figures into ``out``/figures; report.md's text and the console's lines."""
    cmp, steps = tables.comparison, meta["spec"]["steps"]
    figures = {}

    def save(fig, name, caption):
        save_figure(fig, out / "figures" / name)
        figures[caption] = f"figures/{name}.png"

    save(plot_accuracy_vs_ratio(cmp["best"], steps), "accuracy_vs_ratio", "best dev accuracy against the ratio")
    runs = [(label, row.ratio, row.best_lr) for label, row in (("LoRA", cmp["lora"]), ("LoRA+", cmp["plus"]))
            if row is not None]
    save(plot_best_curves(tables.evals, runs, cmp["target"], f"target: {100 * TARGET_FRACTION:g}% of the lower best"),
         "curves", "accuracy curves, best against best")
    save(plot_steps_to_target(tables.reach, cmp["target"], meta["spec"].get("eval_every")), "steps_to_target",
         "steps to reach the target accuracy")
    if not tables.monitor_summary.empty:
        save(plot_monitor(tables.monitor_summary), "monitor", "feature updates per layer, ratio 1 against the best ratio")
    text = report_text(meta, cmp, tables.reach, figures, tables.notes)
    return Report(text, figures, text.split("## Figures")[0])


def report_text(meta: dict, cmp: dict, reach, figures: dict[str, str],
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
