"""The report of a companion study (init, rank, contribution): its figure and summary table."""
from __future__ import annotations

from pathlib import Path

from figures.companions import plot_contribution, plot_init, plot_rank
from figures.save import save_figure
from studies.companions import CompanionTables
from studies.run.study import Report


def render(out: Path, tables: CompanionTables, meta: dict) -> Report:
    study = tables.study
    if study == "init":
        fig = plot_init(tables.results)
    else:
        fig = (plot_rank if study == "rank" else plot_contribution)(tables.summary)
    save_figure(fig, out / "figures" / study)
    text = (f"# study {study}\n\n{tables.summary.to_markdown(index=False, floatfmt='.4g')}\n\n"
            f"![{study}](figures/{study}.png)\n")
    spec = meta.get("spec", {})
    console = (f"study {study}: {len(spec.get('variants', []))} coordinate checks in "
               f"{meta.get('wall_time_s', float('nan')):.1f}s ({meta.get('resumed_shards', 0)} shards already done)\n"
               + text.split("![")[0])
    return Report(text, {study: f"figures/{study}.png"}, console)
