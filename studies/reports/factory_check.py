"""The report of a coordinate check on a factory's model (coord-check --factory, study
bert-width / gpt2-width): findings first, the layers and their predictions, verdicts, figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from figures.coord_check import plot_coord_check
from scaling.exponents import fmt
from studies.factory_check import FactoryCheckTables
from studies.reports.validate import verdict_summary
from studies.run.study import Report, exit_code

def findings(results: pd.DataFrame, exponents: pd.DataFrame, layer: str, tol: float,
             layers: pd.DataFrame | None = None) -> list[str]:
    """The opening lines: verdict counts, then per scheme what the total feature update of the
    first sharp layer does with width at the last step, against the theory, and where the
    FAILs sit (``layers``: layer_table, to name the ones whose input is not width-stable)."""
    counts = exponents.verdict.value_counts()
    steps = int(results.step.max())
    lines = [f"Verdicts: {counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, "
             f"{counts.get('INCONCLUSIVE', 0)} INCONCLUSIVE (tolerance {tol:g} on the exponent; the rules of "
             "`validate`; INCONCLUSIVE where local slopes have not settled, a sum's leading term has not taken "
             "over, or the layer has no sharp prediction).", ""]
    at = exponents[(exponents.layer == layer) & (exponents.step == steps)].set_index(["scheme", "metric"])
    for scheme in dict.fromkeys(exponents.scheme):
        parts = []
        for metric in ("dz_b", "delta1", "delta2"):
            if (scheme, metric) not in at.index:
                continue
            r = at.loc[(scheme, metric)]
            slope = "-" if pd.isna(r.slope) else f"n^{r.slope:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
            bound = {"upper bound": "<= ", "none": "n/p "}.get(r.claim, "")
            parts.append(f"{metric} {slope} (predicted {bound}{fmt(r.predicted)}, {r.verdict})")
        if parts:
            cls = at.loc[scheme].classification.iloc[0]
            lines.append(f"- {scheme} (theory: {cls}): on {layer} at step {steps}, " + "; ".join(parts) + ".")
    fails = exponents[exponents.verdict == "FAIL"]
    if len(fails) and layers is not None:
        unstable = layers[layers["input"].str.contains("assumption fails")]
        on_unstable = fails[fails.layer.isin(unstable.layer)]
        where = ", ".join(f"{r.layer} (input {r['input'].split(':')[0]})" for _, r in unstable.iterrows()
                          if r.layer in set(fails.layer))
        if len(on_unstable):
            lines.append(f"- {len(on_unstable)} of the {len(fails)} FAILs are on layers whose input from the frozen "
                         f"base is not width-stable: {where}. The prediction assumes Theta(1) inputs; an input "
                         "growing like n^a shifts the layer's exponents by a.")
        if len(on_unstable) < len(fails):
            rest = fails[~fails.layer.isin(unstable.layer)]
            lines.append(f"- {len(rest)} FAILs on layers with width-stable inputs: "
                         + ", ".join(sorted({f"{r.scheme} {r.metric} {r.layer} step {r.step}" for r in rest.itertuples()}))
                         + ".")
    n_div = int((results.metric == "diverged").sum())
    if n_div:
        lines.append(f"- {n_div} runs diverged (a result: their rows stop at the step it happened).")
    return lines + [""]


def _training_lines(results: pd.DataFrame, meta: dict) -> list[str]:
    lines = []
    if "path" in results:
        paths = results.drop_duplicates(["width", "seed"]).path.value_counts()
        lines.append("Training path: " + "; ".join(f"{p} ({k} of {paths.sum()} members)" for p, k in paths.items())
                     + ". torch.func trains a shard's runs as one program; the loop trains them one by one "
                     "(the same numbers to rounding).")
    if "pretrain_loss" in results:
        losses = results.groupby("width").pretrain_loss.mean()
        lines.append("Base models: mean pretraining loss over the last 10 steps, per width: "
                     + ", ".join(f"n = {w}: {v:.3f}" for w, v in losses.items()) + ".")
    spec = meta.get("spec", {})
    if "lr_a" in spec:
        base = spec.get("base_width") or min(spec.get("widths", [0]))
        lines.append(f"Rates: eta_A = {spec['lr_a']:g} (n / {base})^gA, eta_B = {spec['lr_b']:g} (n / {base})^gB; "
                     f"rank {spec.get('rank')}; Adam; {spec.get('steps')} steps.")
    return lines + [""] if lines else []


def render(out: Path, tables: FactoryCheckTables, meta: dict, figure: str = "coord_check", title: str = "") -> Report:
    """The coordinate-check figure of the first sharp layer; report.md's text; the console's lines."""
    results, exponents, layers, tol = tables.results, tables.exponents, tables.layers, tables.tolerance
    sharp = layers[layers["sharp prediction"] == "every scheme"].layer
    first = sharp.iloc[0] if len(sharp) else layers.layer.iloc[0]
    model = str(results.model.iloc[0])
    steps = int(results.step.max())
    fig = plot_coord_check(results, steps, exponents, layer=first, title=f"{title or model}: LoRA on {first}, step {steps}")
    for ext in ("png", "pdf"):
        fig.savefig(out / "figures" / f"{figure}.{ext}", dpi=110)
    plt.close(fig)
    cols = ["scheme", "metric", "step", "slope", "ci_low", "ci_high", "predicted", "claim", "verdict", "reason"]
    widths = sorted(results.width.unique())
    heading = f"{title or 'coord-check --factory ' + model}"
    text = [f"# {heading}: hidden {', '.join(map(str, widths))}, {results.seed.nunique()} seeds", "",
            *findings(results, exponents, first, tol, layers),
            "## LoRA layers and their predictions", "",
            "Every LoRA layer is predicted as an Adam LoRA layer with Theta(1) inputs (the `mlp` recursion of "
            "`scaling.theory`, with the base frozen). z_a(0) slope: Z_A at initialisation against width, about 0 "
            "when the frozen base's features are width-stable.", "",
            layers.to_markdown(index=False), "",
            *_training_lines(results, meta),
            "## Verdicts", "", verdict_summary(exponents).to_markdown(index=False), "",
            f"## {first}", "", exponents[exponents.layer == first][cols].to_markdown(index=False, floatfmt="+.2f"), "",
            "Every layer's fits and verdicts: exponents.csv. The first-step loss decrease is not judged: its exponent "
            "depends on how the model reads its features out.", "",
            f"![coordinate check]({'figures/' + figure + '.png'})"]
    text = "\n".join(text) + "\n"
    spec = meta.get("spec", {})
    paths = results.drop_duplicates(["width", "seed"]).path.value_counts().to_dict() if "path" in results else {}
    shards = len(spec.get("widths", [])) * -(-len(spec.get("seeds", [])) // max(1, spec.get("seeds_per_shard", 1)))
    console = "\n".join([
        f"{heading}: {len(spec.get('widths', []))} widths x {len(spec.get('seeds', []))} seeds x "
        f"{len(spec.get('schemes', []))} schemes, {spec.get('steps')} steps in {meta.get('wall_time_s', float('nan')):.1f}s "
        f"wall, {meta.get('cpu_time_s', float('nan')):.0f}s CPU ({meta.get('resumed_shards', 0)} of {shards} shards "
        "already done)",
        "training path: " + "; ".join(f"{p} ({k} members)" for p, k in paths.items()),
        text.split("## LoRA layers")[0],
        f"wrote {out / 'results.csv'}, {out / 'exponents.csv'}, {out / 'report.md'}"])
    return Report(text, {f"{model} coordinate check": f"figures/{figure}.png"}, console, exit_code(exponents.verdict))
