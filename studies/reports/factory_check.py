"""The report of a coordinate check on a factory's model (coord-check --factory, study
bert-width / gpt2-width): findings first, the layers and their predictions, verdicts, figure."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from scaling.exponents import fmt

SHARP_EVERYWHERE = "reads the base model's own features (no LoRA layer upstream): Theta(1) inputs under every scheme"
SHARP_IF_STABLE = ("behind {k} LoRA layer(s): its input stays Theta(1) only under a stable scheme; under an unstable one "
                   "it grows with n (no sharp prediction there, INCONCLUSIVE)")


def _input_check(fit, tol: float) -> str:
    """Whether a layer's input is width-stable, from the fit of z_a(0) = A_0 z against width."""
    if fit is None:
        return "-"
    if fit.ci_high >= -tol and fit.ci_low <= tol:
        return "width-stable"
    return (f"{'grows' if fit.slope > 0 else 'shrinks'} like n^{fit.slope:+.2f}: the Theta(1)-input assumption "
            "fails, and every exponent of this layer shifts by that much")


def layer_table(results: pd.DataFrame, tol: float = 0.15) -> pd.DataFrame:
    """One row per LoRA layer: LoRA layers upstream, where its prediction is sharp and why, and
    the slope of z_a at step 0 against width: Z_A(0) = A_0 z with A_0's entries ~ n^-1/2 has the
    size of the layer's input z, so the slope is about 0 when the frozen base feeds the layer
    Theta(1) coordinates at every width (the derivation's first assumption); ``input`` says
    whether it does (the slope's interval within +-tol of 0)."""
    from scaling.gamma import fit_power_law
    from studies.factory_check import upstream_counts
    upstream = upstream_counts(results)
    rows = []
    at0 = results[(results.metric == "z_a") & (results.step == 0)]
    at0 = at0[at0.scheme == at0.scheme.iloc[0]] if len(at0) else at0  # every scheme starts alike
    layers = [n for n in dict.fromkeys(results.layer) if n != "all"]
    for layer in layers:
        up = upstream[layer]
        fit = fit_power_law(*(at0[at0.layer == layer][c] for c in ("width", "value", "seed")))
        rows.append({"layer": layer, "LoRA layers upstream": up,
                     "sharp prediction": "every scheme" if up == 0 else "stable schemes only",
                     "why": SHARP_EVERYWHERE if up == 0 else SHARP_IF_STABLE.format(k=up),
                     "z_a(0) slope": "-" if fit is None else f"{fit.slope:+.2f} [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}]",
                     "input": _input_check(fit, tol)})
    return pd.DataFrame(rows)


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


def render(out: Path, results: pd.DataFrame, meta: dict, figure: str = "coord_check", title: str = "",
           tol: float | None = None) -> dict[str, str]:
    """exponents.csv (fits and verdicts), the coordinate-check figure of the first sharp layer,
    report.md; returns {caption: figure path}."""
    import matplotlib.pyplot as plt

    from figures.coord_check import plot_coord_check
    from scaling.verdicts import DEFAULT_TOLERANCE
    from studies.factory_check import judge
    from studies.reports.validate import verdict_summary
    from studies.run.store import write_csv, write_text

    tol = DEFAULT_TOLERANCE if tol is None else tol
    results = results.assign(init=results["init"].astype(str))
    exponents = judge(results, tol)
    write_csv(exponents, out / "exponents.csv")
    layers = layer_table(results, tol)
    sharp = layers[layers["sharp prediction"] == "every scheme"].layer
    first = sharp.iloc[0] if len(sharp) else layers.layer.iloc[0]
    model = str(results.model.iloc[0])
    steps = int(results.step.max())
    (out / "figures").mkdir(exist_ok=True)
    fig = plot_coord_check(results, steps, exponents, layer=first, title=f"{title or model}: LoRA on {first}, step {steps}")
    for ext in ("png", "pdf"):
        fig.savefig(out / "figures" / f"{figure}.{ext}", dpi=110)
    plt.close(fig)
    cols = ["scheme", "metric", "step", "slope", "ci_low", "ci_high", "predicted", "claim", "verdict", "reason"]
    widths = sorted(results.width.unique())
    text = [f"# {title or 'coord-check --factory ' + model}: hidden {', '.join(map(str, widths))}, "
            f"{results.seed.nunique()} seeds", "",
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
    write_text("\n".join(text) + "\n", out / "report.md")
    return {f"{model} coordinate check": f"figures/{figure}.png"}
