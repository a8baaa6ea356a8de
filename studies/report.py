"""The validate report: verdict tables, each prediction beside its measurement, figures."""
from __future__ import annotations

import pandas as pd

from scaling.theory import fmt

EXPLANATIONS = [
    "Unstable schemes (lora-const, lora-sqrt): the predicted exponent is the limit in which the "
    "accumulated updates dominate the Theta(1) initial Z_A and Adam's steps stay aligned; at these "
    "widths the two still compete (Z_A = Z_A(0) + sum of updates), so slopes approach their limit "
    "from below and the local slopes keep rising.",
    "Alignment needs n >> batch size: with a batch of N samples, dA z has an aligned part ~ eta_A n / "
    "sqrt(N) and cross terms ~ eta_A sqrt(n), so slopes at n ~ 4N-64N are biased toward the "
    "cross-term exponent.",
    "Later steps: once a run approaches its optimum, successive Adam steps can cancel (the "
    "derivation assumes no cancellation), which lowers the measured size of Z_A and of the deltas "
    "built on it; this shows at the last step, not at steps 1-2.",
    "MLP layers after the first under an unstable scheme have inputs that grow with n: the "
    "derivation makes no sharp prediction there (reported INCONCLUSIVE).",
]


def verdict_summary(exponents: pd.DataFrame) -> pd.DataFrame:
    """Counts of PASS / FAIL / INCONCLUSIVE per (model, optimizer, init, scheme)."""
    counts = (exponents.groupby(["model", "optimizer", "init", "scheme", "classification"]).verdict
              .value_counts().unstack(fill_value=0))
    for v in ("PASS", "FAIL", "INCONCLUSIVE"):
        if v not in counts:
            counts[v] = 0
    return counts[["PASS", "FAIL", "INCONCLUSIVE"]].reset_index()


def _cell(row) -> str:
    if pd.isna(row.slope):
        measured = "all zero" if row.verdict == "PASS" and row.predicted == float("-inf") else "-"
    else:
        measured = f"{row.slope:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}]"
    return f"{fmt(row.predicted)} / {measured} / {row.verdict}"


def prediction_table(exponents: pd.DataFrame) -> pd.DataFrame:
    """(config, scheme, layer, step) x metric cells 'predicted / measured [CI] / verdict'."""
    e = exponents.assign(cell=exponents.apply(_cell, axis=1))
    return e.pivot_table(index=["scheme", "layer", "step"], columns="metric", values="cell",
                         aggfunc="first").reset_index()


def write_report(exponents: pd.DataFrame, meta: dict, figures: dict[str, str], tolerance: float) -> str:
    """Markdown text of DIR/report.md; figures maps a caption to a relative file name."""
    counts = exponents.verdict.value_counts()
    lines = ["# loraplus-scaling validate", "",
             f"Settings: {meta['settings']}. Device {meta['device']}, wall time {meta['wall_time_s']:.0f} s, "
             f"git {meta['git_revision'][:10]}.", "",
             f"Verdicts: {counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, "
             f"{counts.get('INCONCLUSIVE', 0)} INCONCLUSIVE (tolerance +-{tolerance:g} on the exponent; "
             "a 95% bootstrap interval over seeds must overlap the prediction +- tolerance; INCONCLUSIVE "
             "when the last local slope disagrees with the fit).", "",
             "Each cell below reads `predicted / measured slope [95% CI] / verdict`; `zero` means the "
             "theory predicts an exactly zero quantity.", "",
             "## Summary", "", verdict_summary(exponents).to_markdown(index=False), ""]
    for (model, opt, init), e in exponents.groupby(["model", "optimizer", "init"], sort=False):
        lines += [f"## {model}, {opt}, init {init}", "", prediction_table(e).to_markdown(index=False), ""]
        for caption, path in figures.items():
            if caption.startswith(f"{model}/{opt}/{init}"):
                lines += [f"![{caption}]({path})", ""]
    bad = exponents[exponents.verdict != "PASS"]
    lines += ["## Where the prediction did not show", ""]
    if bad.empty:
        lines.append("Every prediction held.")
    else:
        lines += ["| model | optimizer | init | scheme | metric | layer | step | predicted | slope | verdict | reason |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r.model} | {r.optimizer} | {r.init} | {r.scheme} | {r.metric} | {r.layer} | {r.step} | "
                  f"{fmt(r.predicted)} | {r.slope:+.2f} | {r.verdict} | {r.reason} |" for r in bad.itertuples()]
        lines += ["", "Known reasons, in the order they matter here:", ""] + [f"- {x}" for x in EXPLANATIONS]
    lines += ["", "## Phase diagrams", ""]
    lines += [f"![{c}]({p})" for c, p in figures.items() if c.startswith("phase")]
    return "\n".join(lines) + "\n"
