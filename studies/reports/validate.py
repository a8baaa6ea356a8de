"""The validate report: verdict tables, each prediction beside its measurement, figures."""
from __future__ import annotations

import pandas as pd

from scaling.theory import fmt
from studies.reports.corrections import corrections_section, judged_measurement
from studies.validate import B0_CONTROL_SCALE

EXPLANATIONS = [
    "Unstable schemes (lora-const, lora-sqrt), past the blow-up step: the output overshoots its "
    "target and later updates undo earlier ones, so the no-cancellation exponents become upper bounds "
    "for Adam (cells marked <=) and SGD has no finite exponent (cells marked n/p; the runs diverge).",
    "Init[2] in the linear model (the loss sees the layer's n outputs): the error reaching A is B0^T E = "
    "Theta(sqrt n) for a target independent of the random B0, so A's own target Z_A is Theta(n^-1/2) and the first Adam step "
    "overshoots it; from step 2 on the exponents are upper bounds. The mechanism was checked directly: "
    "with the teacher's output directions set to span(B0), z_a is flat in n at every step.",
    "Sums whose dominant term has not yet taken over (z_a = Z_A(0) + dz_a; dz_b = delta1 + delta2 + "
    "delta3): reported INCONCLUSIVE (crossover) with the measured ratio of the two parts at the widest "
    "width; dz_a and the deltas are judged on their own.",
    "Local slopes still trending (a curvature across the widths, or a last local slope that disagrees "
    "with the fit): the asymptotic regime is not reached, INCONCLUSIVE.",
    "Alignment needs n >> batch size: with a batch of N samples, dA z has an aligned part ~ eta_A n / "
    "sqrt(N) and cross terms ~ eta_A sqrt(n), so slopes at n ~ 4N-64N are biased toward the "
    "cross-term exponent.",
    "MLP layers after the first under an unstable scheme have inputs that grow with n: the "
    "derivation makes no sharp prediction there (reported INCONCLUSIVE).",
    "MLP hidden layers under Init[2], late steps (the B0 path): A's first steps move the features along "
    "B0's random columns, which the Theta(1/n) readout sees only as a random sum, so the output moves by "
    "Theta(n^(gA + 1/2)) per step (the loss_drop rows at step 1 test this exponent). For LoRA+ and "
    "lora-inv that is n^-1/2, absent from the fixed-t limit, yet at n = 128 it is most of the early "
    "loss decrease; see 'The B0 path' below. Narrow runs move so fast per step that A's gradient "
    "turns within a few steps and Adam's normalised steps shrink, so dz_a per step, "
    "and with it z_a, delta1 = B dA z, delta2 and delta3, grow with n at late steps until n is large "
    "enough for the path to be negligible by that step. Under LoRA+ the learned B takes over "
    "(the step-8 local slopes reach about 0 by n = 8192); under lora-inv the output learns only "
    "through this path, so its progress by step t stays width-dependent to far larger n (the full "
    "suite's step-8 FAILs). Measured in docs/investigations/init2_b0_path.md.",
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
        measured = judged_measurement(row)
    predicted = {"upper bound": "<= ", "none": "n/p "}.get(getattr(row, "claim", "exact"), "") + fmt(row.predicted)
    return f"{predicted} / {measured} / {row.verdict}"


def prediction_table(exponents: pd.DataFrame) -> pd.DataFrame:
    """(config, scheme, layer, step) x metric cells 'predicted / measured [CI] / verdict'."""
    e = exponents.assign(cell=exponents.apply(_cell, axis=1))
    return e.pivot_table(index=["scheme", "layer", "step"], columns="metric", values="cell",
                         aggfunc="first").reset_index()


def write_report(exponents: pd.DataFrame, meta: dict, figures: dict[str, str], tolerance: float,
                 overshoot: pd.DataFrame | None = None, progress: pd.DataFrame | None = None,
                 b0_control: pd.DataFrame | None = None) -> str:
    """Markdown text of DIR/report.md; figures maps a caption to a relative file name;
    overshoot: studies.validate.overshoot_table (the Init[2] control), if it was run;
    progress: studies.validate.progress_table (the mlp's training progress per width);
    b0_control: studies.validate.b0_control_table (the B0-path control)."""
    counts = exponents.verdict.value_counts()
    lines = ["# loraplus-scaling validate", "",
             f"Settings: {meta['settings']}. Device {meta['device']}, wall time {meta['wall_time_s']:.0f} s, "
             f"git {meta['git_revision'][:10]}.", "",
             f"Verdicts: {counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, "
             f"{counts.get('INCONCLUSIVE', 0)} INCONCLUSIVE (tolerance +-{tolerance:g} on the exponent; "
             "a 95% bootstrap interval over seeds must overlap the prediction +- tolerance; an upper bound "
             "passes when the interval reaches below bound + tolerance; INCONCLUSIVE when the local slopes "
             "have not settled, when a sum's dominant term has not taken over yet, or where the theory "
             "predicts no exponent).", "",
             "Each cell below reads `predicted / measured slope [95% CI] / verdict` (`c`: the corrected "
             "exponent, see 'Corrections to scaling'); `zero` means the "
             "theory predicts an exactly zero quantity, `<=` an upper bound (past a blow-up or an "
             "Init[2] overshoot), `n/p` no prediction (SGD past its blow-up).", "",
             "## Summary", "", verdict_summary(exponents).to_markdown(index=False), ""]
    for (model, opt, init), e in exponents.groupby(["model", "optimizer", "init"], sort=False):
        lines += [f"## {model}, {opt}, init {init}", "", prediction_table(e).to_markdown(index=False), ""]
        for caption, path in figures.items():
            if caption.startswith(f"{model}/{opt}/{init}"):
                lines += [f"![{caption}]({path})", ""]
    bad = exponents[exponents.verdict != "PASS"]
    lines += corrections_section(exponents, tolerance)
    lines += ["## Where the prediction did not show", ""]
    if bad.empty:
        lines.append("Every prediction held.")
    else:
        lines += ["| model | optimizer | init | scheme | metric | layer | step | predicted | slope | verdict | reason |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r.model} | {r.optimizer} | {r.init} | {r.scheme} | {r.metric} | {r.layer} | {r.step} | "
                  f"{_cell(r).split(' / ')[0]} | {r.slope:+.2f} | {r.verdict} | {r.reason} |"
                  for r in bad.sort_values("verdict", key=lambda v: v != "FAIL").itertuples()]
        lines += ["", "Known reasons, in the order they matter here:", ""] + [f"- {x}" for x in EXPLANATIONS]
    if overshoot is not None and not overshoot.empty:
        table = overshoot.assign(slope=[f"{r.slope:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
                                        for r in overshoot.itertuples()])
        lines += ["", "## Control: the Init[2] overshoot", "",
                  "linear, Adam, Init[2], LoRA+ (predicted Theta(1), slope 0, before the overshoot). With an "
                  "independent teacher, A's own target Z_A is Theta(n^-1/2); with the teacher's output "
                  "directions inside span(B0) it is Theta(1). If the overshoot is what bends the Init[2] "
                  "slopes, only the independent teacher's slopes fall below 0 after step 1.", "",
                  table[["teacher", "metric", "step", "slope", "local_slopes"]].to_markdown(index=False)]
    if progress is not None and not progress.empty:
        drops = exponents[(exponents.metric == "loss_drop") & (exponents.model == "mlp")]
        lines += ["", "## The B0 path (mlp, Adam)", "",
                  "Under Init[2] the first steps move the loss through B0's random columns, which the readout "
                  "sees as a random sum: the first-step loss decrease scales like n^(gA + 1/2) (n^gB under "
                  "Init[1], where B's own aligned step moves it). Measured slopes:", "",
                  drops[["init", "scheme", "layer", "predicted", "slope", "ci_low", "ci_high", "verdict"]]
                  .round(2).to_markdown(index=False), "",
                  "Training progress 1 - L(t)/L(0), mean over seeds, per width. In the fixed-t limit the "
                  "Init[2] progress of LoRA+ would be width-independent and that of lora-inv zero; at these "
                  "widths the B0 path puts narrow runs ahead. Its per-step motion is what shrinks Adam's "
                  "late steps at narrow widths and lifts the Init[2] late-step slopes (measured, with an "
                  "intervention, in docs/investigations/init2_b0_path.md).", "",
                  progress.round(3).to_markdown(index=False), ""]
        lines += [f"![{c}]({p})" for c, p in figures.items() if c.startswith("b0 path")]
    if b0_control is not None:
        lines += ["", f"### Control: B0 scaled by {B0_CONTROL_SCALE:g}", "",
                  "The same mlp runs (Adam, Init[2], LoRA+ and lora-inv; same widths, seeds, base and data) "
                  f"with B0 multiplied by {B0_CONTROL_SCALE:g}. No predicted exponent changes; the B0 path shrinks. If the "
                  "B0 path is what lifts the late-step slopes, the slopes here should sit at their "
                  "predictions (verdicts can still be INCONCLUSIVE where the local slopes scatter). Every "
                  "row that is not a PASS in either:", ""]
        if b0_control.empty:
            lines.append("All PASS in both.")
        else:
            t = b0_control.assign(
                suite=[f"{r.slope:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] {r.verdict}" for r in b0_control.itertuples()],
                b0_scaled=[f"{r.slope_b0_scaled:+.2f} [{r.ci_low_b0_scaled:+.2f}, {r.ci_high_b0_scaled:+.2f}] "
                            f"{r.verdict_b0_scaled}" for r in b0_control.itertuples()])
            lines.append(t[["scheme", "metric", "layer", "step", "predicted", "suite", "b0_scaled"]]
                         .rename(columns={"b0_scaled": f"B0 x {B0_CONTROL_SCALE:g}"}).to_markdown(index=False))
    lines += ["", "## Phase diagrams", ""]
    lines += [f"![{c}]({p})" for c, p in figures.items() if c.startswith("phase")]
    return "\n".join(lines) + "\n"
