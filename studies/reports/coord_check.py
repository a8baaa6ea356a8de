"""The report of a toy model's coordinate check: what it found, the slopes, the verdicts, the figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from figures.coord_check import plot_coord_check
from studies.coord_check import CoordCheckTables
from studies.reports.validate import verdict_summary
from studies.run.spec import CoordCheckSpec
from studies.run.study import Report, exit_code

FIGURE = "figures/coord_check.png"


def found(spec: CoordCheckSpec, tables: CoordCheckTables, meta: dict) -> str:
    """The opening line: what ran, how long it took, and what the verdicts say."""
    init = tables.results.init.iloc[0] if len(tables.results) else spec.init
    ran = (f"coord-check {spec.model} / {spec.optimizer} / init {init}: {len(spec.widths)} widths x "
           f"{len(spec.seeds)} seeds x {len(spec.schemes)} schemes, {spec.steps} steps in "
           f"{meta.get('wall_time_s', float('nan')):.1f}s ({meta.get('resumed_shards', 0)} shards already done); "
           f"{tables.n_diverged} diverged runs.")
    if not tables.judged:
        return ran + (f" The theory derives no exponents for {spec.optimizer} on {spec.model}, so nothing is judged; "
                      "the slopes below are measurements only.")
    counts = tables.exponents.verdict.value_counts()
    return ran + (f" Against the theory: {counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, "
                  f"{counts.get('INCONCLUSIVE', 0)} INCONCLUSIVE (tolerance {meta['spec'].get('tolerance'):g}).")


def render(out: Path, spec: CoordCheckSpec, tables: CoordCheckTables, meta: dict) -> Report:
    slopes = tables.slopes.round(2).to_string() if not tables.slopes.empty else "  (not enough widths to fit)"
    figures = {}
    if len(tables.results):
        exps = tables.exponents if tables.judged else None
        fig = plot_coord_check(tables.results, spec.steps, exps,
                               title=f"{spec.model}, {spec.optimizer}: coordinate check at step {spec.steps}")
        fig.savefig(out / FIGURE, dpi=110)
        plt.close(fig)
        figures["coordinate check"] = FIGURE
    opening = found(spec, tables, meta)
    lines = [f"# coord-check: {spec.model}, {spec.optimizer}", "", "## What it found", "", opening, "",
             f"## Log-log slope against width at step {spec.steps}", "", "```", slopes, "```", ""]
    if tables.judged:
        lines += ["## Verdicts", "",
                  "Each check fits one measured quantity's slope against width (95% bootstrap interval over seeds) "
                  "and sets it against the theory's exponent, by the rules of `validate`; every check is in "
                  "exponents.csv.", "", verdict_summary(tables.exponents).to_markdown(index=False), ""]
    lines += [f"![{c}]({p})" for c, p in figures.items()]
    console = "\n".join([opening, f"log-log slope against width at step {spec.steps}:", slopes,
                         f"report: {out / 'report.md'} (every measurement in results.csv)"])
    code = exit_code(tables.exponents.verdict) if tables.judged else 0
    return Report("\n".join(lines) + "\n", figures, console, code)
