"""The validate report: what was found in plain words first, then one compact table per setting,
the controls and figures; every check in full in the appendices (and in exponents.csv)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from figures.coord_check import plot_coord_check
from figures.phase import phase_points, plot_phase_diagram
from scaling.exponents import fmt
from scaling.verdicts import FAIL_KIND, kind_meaning
from scaling.phase import phase_diagram
from studies.reports.corrections import corrections_section, judged_measurement
from studies.run.study import Report, exit_code
from studies.lr_laws.analysis import CORNER
from studies.validate import (NOT_PREDICTED_KINDS, ValidateTables, corner_config, has_prediction, reason_counts,
                              verdict_counts)

EXPLANATIONS = [
    "Unstable schemes (lora-const, lora-sqrt), past the blow-up step: the output overshoots its "
    "target and later updates undo earlier ones, so the no-cancellation exponents become upper bounds "
    "for Adam (cells marked <=) and SGD has no finite exponent (cells marked n/p, not predicted; the runs "
    "diverge).",
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
    "derivation makes no sharp prediction there (not predicted: counted apart from the checks, INCONCLUSIVE "
    "in exponents.csv).",
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
    "Stacked LoRA layers (the mlp's hidden2 reads hidden1's output, itself moved by hidden1's LoRA update): "
    "under Init[1] the backward link through hidden1's B A lines hidden1's B steps up with hidden2's A rows, "
    "so hidden2's input moves coherently and adds to Z_A a part that starts at zero and grows with the step. "
    "It overtakes Z_A's Theta(1) initial part only beyond a crossover width the exponents do not give, so "
    "from step 3 on z_a, delta2 and dz_b of hidden2 get bounds, not an exponent: between the one-layer "
    "exponent (without the link) and the stacked one (LoRA+: [0, +1/2]); a slope inside them is INCONCLUSIVE "
    "(stacked-layer crossover), one outside them a FAIL. The stacking control cuts the link (hidden2 reads a "
    "detached copy of its input) and the one-layer exponent should then hold, see [its control]"
    "(#control-the-stacked-layer-mlp-adam-init1). Measured in docs/investigations/stacked_lora.md.",
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
    if getattr(row, "reason_kind", "") in NOT_PREDICTED_KINDS:
        return f"n/p / {measured} / not predicted"
    predicted = {"upper bound": "<= "}.get(getattr(row, "claim", "exact"), "") + fmt(row.predicted)
    return f"{predicted} / {measured} / {row.verdict}"


def prediction_table(exponents: pd.DataFrame) -> pd.DataFrame:
    """(config, scheme, layer, step) x metric cells 'predicted / measured [CI] / verdict'."""
    e = exponents.assign(cell=exponents.apply(_cell, axis=1))
    return e.pivot_table(index=["scheme", "layer", "step"], columns="metric", values="cell",
                         aggfunc="first").reset_index()


SETTING_COLUMNS = ["model", "optimizer", "init"]
OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
VERDICT_MARKS = {"PASS": "✓", "FAIL": "✗", "INCONCLUSIVE": "?"}
# What each predicted class says about the feature updates (scaling.theory.classify).
CLASS_MEANINGS = {
    "efficient": "delta1 and delta2 both Theta(1): both factors move the features",
    "unstable": "some update grows with n: the features blow up",
    "A-side lazy": "delta1 (A's part) vanishes as n grows",
    "B-side lazy": "delta2 (B's part) vanishes as n grows",
    "both lazy": "delta1 and delta2 both vanish as n grows",
    "frozen": "nothing moves",
}
# Why a check is not a PASS: (start of scaling.verdicts' reason, short label, the one-line why).
# Settings whose unsettled or failed checks have a measured mechanism (EXPLANATIONS), named in the summary.
KNOWN_MECHANISMS = {
    ("linear", "adam", "2"): "the Init[2] overshoot of A's first step, see [its control](#control-the-init2-overshoot)",
    ("mlp", "adam", "2"): "at late steps the B0 path, see [its section](#the-b0-path-mlp-adam)",
}
# Reason kinds whose mechanism has a control of its own in the report, named wherever they occur.
KIND_MECHANISMS = {
    "stacked-layer crossover": "hidden2's backward link to hidden1 (stacked LoRA layers), see "
                               "[the stacking control](#control-the-stacked-layer-mlp-adam-init1)",
}


def setting_name(model: str, optimizer: str, init: str) -> str:
    """'mlp, Adam, Init[2]'."""
    return f"{model}, {OPTIMIZER_NAMES.get(optimizer, optimizer)}, Init[{init}]"


def _counts(verdicts: pd.Series) -> tuple[int, int, int]:
    c = verdicts.value_counts()
    return int(c.get("PASS", 0)), int(c.get("FAIL", 0)), int(c.get("INCONCLUSIVE", 0))


def split_checks(exponents: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the checks of a prediction, the rows without one: studies.validate.NOT_PREDICTED_KINDS)."""
    predicted = has_prediction(exponents)
    return exponents[predicted], exponents[~predicted]


def class_table(exponents: pd.DataFrame, style: str = "markdown") -> pd.DataFrame:
    """setting x scheme: 'class: N of M' (checks that PASS of the checks with a prediction),
    ', k FAIL' where any, ', j not predicted' where rows have no prediction."""
    rows = []
    for key, e in exponents.groupby(SETTING_COLUMNS, sort=False):
        row = {"setting": setting_name(*key)}
        for scheme, g in e.groupby("scheme", sort=False):
            checks, unpredicted = split_checks(g)
            n_pass, n_fail, _ = _counts(checks.verdict)
            of = f"{n_pass} of {len(checks)}" if style == "markdown" else f"{n_pass}/{len(checks)}"
            row[scheme] = (f"{g.classification.iloc[0]}: {of}" + (f", {n_fail} FAIL" if n_fail else "")
                           + (f", {len(unpredicted)} n/p" if len(unpredicted) else ""))
        rows.append(row)
    return pd.DataFrame(rows)


def _where(rows: pd.DataFrame) -> str:
    """Where a group of checks sits: its schemes (with counts) and steps, and the layer if one."""
    schemes = ", ".join(f"{s} {n}" for s, n in rows.scheme.value_counts().items())
    steps = ", ".join(str(s) for s in sorted(rows.step.unique()))
    layers = rows.layer.unique()
    layer = f", layer {layers[0]}" if len(layers) == 1 and layers[0] not in ("lora", "all") else ""
    return f"{schemes}; step{'s' if rows.step.nunique() > 1 else ''} {steps}{layer}"


def _by_kind(rows: pd.DataFrame) -> str:
    """'kind count (where); ...' over rows that did not PASS, FAILs first, then the largest kinds."""
    return "; ".join(f"{kind} {len(g)} ({_where(g)})" for kind, g in
                     sorted(rows.groupby("reason_kind"), key=lambda kv: (kv[0] != FAIL_KIND[0], -len(kv[1]))))


def not_confirmed_lines(exponents: pd.DataFrame) -> list[str]:
    """One line per setting: its checks that did not PASS (how many, of which kind, and where),
    then its rows without a prediction, counted apart."""
    lines = []
    for key, e in exponents.groupby(SETTING_COLUMNS, sort=False):
        checks, unpredicted = split_checks(e)
        bad = checks[checks.verdict != "PASS"]
        apart = f" Not predicted: {len(unpredicted)} ({_by_kind(unpredicted)})." if len(unpredicted) else ""
        if bad.empty:
            lines.append(f"- **{setting_name(*key)}**: every check PASSes.{apart}")
            continue
        _, n_fail, n_inc = _counts(bad.verdict)
        what = ", ".join(x for x in (f"{n_fail} FAIL" if n_fail else "", f"{n_inc} INCONCLUSIVE" if n_inc else "") if x)
        known = KNOWN_MECHANISMS.get(key) if {"slopes still moving", "contradicted"} & set(bad.reason_kind) else None
        known = "; ".join([known] * bool(known) + [KIND_MECHANISMS[k] for k in dict.fromkeys(bad.reason_kind)
                                                   if k in KIND_MECHANISMS])
        lines.append(f"- **{setting_name(*key)}**: {what}: {_by_kind(bad)}."
                     + (f" Known mechanism: {known}." if known else "") + apart)
    return lines


def headline(exponents: pd.DataFrame) -> list[str]:
    """A few plain sentences: how many rows are checks with a prediction and how many have none,
    the verdict counts over the checks (and the INCONCLUSIVE share over every row beside it),
    and what the verdicts mean for LoRA+."""
    checks, unpredicted = split_checks(exponents)
    c = verdict_counts(exponents)
    text = [f"{c['PASS']} of {c['checks']} predicted width exponents were confirmed (PASS), {c['FAIL']} "
            f"contradicted (FAIL) and {c['INCONCLUSIVE']} could not be judged at these widths (INCONCLUSIVE, "
            f"{c['inconclusive_share']:.0%} of the checks)."]
    if len(unpredicted):
        kinds = unpredicted.reason_kind.value_counts()
        text = [f"Of {c['rows']} rows, {c['checks']} are checks with a prediction and {c['not_predicted']} rows "
                "have none (not predicted: the theory gives no exponent there, "
                + ", ".join(f"{k} {n}" for k, n in kinds.items()) + ")."] + text
        text.append(f"Counting the rows not predicted as INCONCLUSIVE too, as exponents.csv does: "
                    f"{c['inconclusive_rows']} of {c['rows']} rows "
                    f"({c['inconclusive_share_rows']:.0%}).")
    text.append("No measurement contradicted the theory." if not c["FAIL"] else
                "Where each FAIL sits, and why, is in the lines per setting.")
    lp = checks[checks.scheme == "loraplus"]
    if len(lp):
        lp_pass, lp_fail, _ = _counts(lp.verdict)
        classes = set(lp.classification)
        said = (f"LoRA+ is predicted {classes.pop()} in every setting "
                f"({CLASS_MEANINGS.get(lp.classification.iloc[0], '')})" if len(classes) == 1
                else "LoRA+'s predictions")
        text.append(f"{said}; its {len(lp)} checks over {lp.groupby(SETTING_COLUMNS).ngroups} settings "
                    f"confirm this in {lp_pass} and contradict it in {lp_fail}.")
    return text


def plain_summary(exponents: pd.DataFrame) -> list[str]:
    """The report's opening: headline, the class table, why the rest was not confirmed."""
    present = list(dict.fromkeys(exponents.classification))
    lines = ["## What it found", "", " ".join(headline(exponents)), "",
             "Each scheme's predicted class in each setting, and how many of its checks (every measured "
             "quantity, layer and step with a predicted exponent) PASS; `n/p`: its rows not predicted:", "",
             class_table(exponents).to_markdown(index=False), "",
             "Classes: " + "; ".join(f"*{c}*: {CLASS_MEANINGS.get(c, c)}" for c in present) + ".", "",
             "Not confirmed, and why:", ""]
    lines += not_confirmed_lines(exponents)
    used = list(dict.fromkeys(exponents.reason_kind[exponents.verdict != "PASS"]))
    kinds = [(label, kind_meaning(label)) for label in used]
    if kinds:
        lines += ["", "The kinds: " + "; ".join(f"*{label}*: {why}" for label, why in kinds)
                  + ". The mechanisms behind them are in [Why predictions did not show](#why-predictions-did-not-show)."]
    return lines


def summary_text(exponents: pd.DataFrame) -> str:
    """The same summary for a terminal: counts, the class table, the kinds of checks not confirmed."""
    table = class_table(exponents, style="text")
    kinds = reason_counts(exponents)
    lines = [textwrap.fill(" ".join(headline(exponents)), 100),
             "Predicted class of each scheme, checks that PASS / checks with a prediction (n/p: rows not predicted):",
             table.to_string(index=False)]
    for predicted, label in ((True, "Not confirmed"), (False, "Not predicted")):
        these = kinds[kinds.predicted == predicted]
        if len(these):
            lines.append(textwrap.fill(f"{label}: " + ", ".join(f"{r.reason_kind} {r.rows}" for r in these.itertuples())
                                       + ".", 100))
    return "\n".join(lines)


def _compact_cell(row) -> str:
    """'measured (theory) mark', e.g. '+0.99 (+1) ✓', '= 0 (zero) ✓', '+0.17 (<= +1) ?', '-0.02c (0) ✓'
    (c: the corrected exponent was judged), '+1.40 (n/p) -' for a row without a prediction."""
    if pd.isna(row.slope):
        measured = "= 0" if row.verdict == "PASS" and row.predicted == float("-inf") else "-"
    elif getattr(row, "judged", "straight") == "corrected" and pd.notna(getattr(row, "gamma_corrected", None)):
        measured = f"{row.gamma_corrected:+.2f}c"
    else:
        measured = f"{row.slope:+.2f}"
    if getattr(row, "reason_kind", "") in NOT_PREDICTED_KINDS:
        return f"{measured} (n/p) -"
    claim = getattr(row, "claim", "exact")
    theory = {"upper bound": "<= "}.get(claim, "") + fmt(row.predicted)
    return f"{measured} ({theory}) {VERDICT_MARKS[row.verdict]}"


def compact_table(exponents: pd.DataFrame) -> pd.DataFrame:
    """(scheme, layer, step) x metric cells 'measured slope (theory) mark' of one setting."""
    e = exponents.assign(cell=[_compact_cell(r) for r in exponents.itertuples()])
    return e.pivot_table(index=["scheme", "layer", "step"], columns="metric", values="cell",
                         aggfunc="first").fillna("").reset_index()


def write_report(exponents: pd.DataFrame, meta: dict, figures: dict[str, str], tolerance: float,
                 overshoot: pd.DataFrame | None = None, progress: pd.DataFrame | None = None,
                 b0_control: pd.DataFrame | None = None, b0_scale: float = 0.25,
                 stack_control: pd.DataFrame | None = None) -> str:
    """Markdown text of DIR/report.md; figures maps a caption to a relative file name;
    overshoot: studies.validate.overshoot_table (the Init[2] control), if it was run;
    progress: studies.validate.progress_table (the mlp's training progress per width);
    b0_control: studies.validate.b0_control_table (the B0-path control); stack_control:
    studies.validate.stack_control_table (the stacking control)."""
    settings = list(exponents.groupby(SETTING_COLUMNS, sort=False).groups)
    lines = ["# loraplus-scaling validate", "",
             f"Suite: {meta['spec']['suite']}. Device {meta['device']}, wall time {meta['wall_time_s']:.0f} s, "
             f"git {meta['git_revision'][:10]}. Every check is in `exponents.csv`.", ""]
    lines += plain_summary(exponents)
    lines += ["", "Contents: [how to read the verdicts](#how-to-read-the-verdicts) · results per setting ("
              + ", ".join(f"[{setting_name(*k)}](#{_anchor(setting_name(*k))})" for k in settings)
              + ") · [why predictions did not show](#why-predictions-did-not-show)"
              + (" · [control: the Init[2] overshoot](#control-the-init2-overshoot)"
                 if overshoot is not None and not overshoot.empty else "")
              + (" · [the B0 path](#the-b0-path-mlp-adam)" if progress is not None and not progress.empty else "")
              + (" · [control: the stacked layer](#control-the-stacked-layer-mlp-adam-init1)"
                 if stack_control is not None else "")
              + " · [corrections to scaling](#corrections-to-scaling)"
              + " · [phase diagrams](#phase-diagrams) · [appendix A: every check in full]"
              "(#appendix-a-every-check-in-full) · [appendix B: every check that did not pass]"
              "(#appendix-b-every-check-that-did-not-pass)", ""]
    lines += ["## How to read the verdicts", "",
              f"Each check fits the log-log slope of one measured quantity (one layer, one step) against width, "
              f"with a 95% bootstrap interval over seeds, and sets it against the exponent the theory predicts. "
              f"PASS: the interval overlaps the prediction +-{tolerance:g}; an upper bound (`<=`, past a blow-up "
              "or an Init[2] overshoot) passes when the interval reaches below bound + tolerance. FAIL: it "
              "does not. INCONCLUSIVE: the local slopes have not settled, a sum's dominant term has not taken "
              "over yet, or the corrected fit cannot separate the exponent from its correction. Not predicted: "
              "rows where the theory gives no exponent (" + ", ".join(NOT_PREDICTED_KINDS) + "); they are "
              "no checks of a prediction, so the counts and the INCONCLUSIVE share are taken over the other "
              "rows, and they are counted apart (verdict INCONCLUSIVE in `exponents.csv`).", "",
              "In the tables per setting each cell reads `measured slope (theory's exponent) mark`, with ✓ PASS, "
              "✗ FAIL, ? INCONCLUSIVE; `zero` is an exactly zero quantity (measured `= 0`), `(n/p) -` a row "
              "not predicted, a `c` after the slope: the corrected exponent was judged "
              "(see [corrections to scaling](#corrections-to-scaling)). Intervals and reasons: appendices A and B, "
              "`exponents.csv`.", ""]
    lines += ["## Results per setting", ""]
    for key, e in exponents.groupby(SETTING_COLUMNS, sort=False):
        checks, unpredicted = split_checks(e)
        n_pass, n_fail, n_inc = _counts(checks.verdict)
        lines += [f"### {setting_name(*key)}", "",
                  f"{n_pass} PASS, {n_fail} FAIL, {n_inc} INCONCLUSIVE"
                  + (f"; {len(unpredicted)} not predicted." if len(unpredicted) else "."), "",
                  compact_table(e).to_markdown(index=False), ""]
        lines += [f"![{c}]({p})\n" for c, p in figures.items() if c.startswith("{}/{}/{}".format(*key))]
    lines += ["## Why predictions did not show", "", "Known reasons, in the order they matter here:", ""]
    lines += [f"- {x}" for x in EXPLANATIONS]
    lines += _controls(exponents, figures, overshoot, progress, b0_control, b0_scale)
    if stack_control is not None:
        lines += stack_control_section(stack_control)
    lines += [""] + corrections_section(exponents, tolerance)
    lines += ["", "## Phase diagrams", "",
              "The theory's class at every (gA, gB) (eta_A ~ n^gA, eta_B ~ n^gB); each measured scheme is a point "
              "coloured by the share of its checks that PASS (over every model run with that optimizer and init; "
              "rows not predicted left out), labelled with the count.", ""]
    lines += [f"![{c}]({p})" for c, p in figures.items() if c.startswith("phase")]
    lines += ["", "## Appendix A: every check in full", "",
              "Each cell reads `predicted / measured slope [95% CI] / verdict`.", ""]
    for key, e in exponents.groupby(SETTING_COLUMNS, sort=False):
        lines += [f"### {setting_name(*key)}, in full", "", prediction_table(e).to_markdown(index=False), ""]
    lines += ["## Appendix B: every check that did not PASS", ""]
    bad = exponents[exponents.verdict != "PASS"]
    if bad.empty:
        lines.append("Every prediction held.")
    else:
        # FAILs first, then the INCONCLUSIVE checks, then the rows not predicted (shown as such)
        predicted = has_prediction(bad)
        bad = bad.assign(shown=bad.verdict.where(predicted, "not predicted"),
                         order=(bad.verdict != "FAIL").astype(int) + (~predicted).astype(int))
        lines += ["| model | optimizer | init | scheme | metric | layer | step | predicted | slope | verdict | reason |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r.model} | {r.optimizer} | {r.init} | {r.scheme} | {r.metric} | {r.layer} | {r.step} | "
                  f"{_cell(r).split(' / ')[0]} | {r.slope:+.2f} | {r.shown} | {r.reason} |"
                  for r in bad.sort_values("order", kind="stable").itertuples()]
    return "\n".join(lines) + "\n"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def _controls(exponents: pd.DataFrame, figures: dict[str, str], overshoot, progress, b0_control,
              b0_scale: float) -> list[str]:
    """The sections of the two controls and the B0 path."""
    lines = []
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
        lines += ["", f"### Control: B0 scaled by {b0_scale:g}", "",
                  "The same mlp runs (Adam, Init[2], LoRA+ and lora-inv; same widths, seeds, base and data) "
                  f"with B0 multiplied by {b0_scale:g}. No predicted exponent changes; the B0 path shrinks. If the "
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
                         .rename(columns={"b0_scaled": f"B0 x {b0_scale:g}"}).to_markdown(index=False))
    return lines


def _slope(row, suffix: str = "", prediction: str = "") -> str:
    """'+0.31 [+0.22, +0.40] (predicted 0: PASS)' of one side of a stack_control_table row: its
    slope, interval, verdict and reason kind carry ``suffix``, the prediction ``prediction``."""
    get = lambda name, end=suffix: getattr(row, name + end)  # noqa: E731
    claim = get("claim", prediction)
    predicted = (f"bounds [{fmt(get('lower', prediction))}, {fmt(get('upper', prediction))}]" if claim == "bounds"
                 else ("<= " if claim == "upper bound" else "") + fmt(get("predicted", prediction)))
    kind = f", {get('reason_kind')}" if get("verdict") == "INCONCLUSIVE" and get("reason_kind") else ""
    if pd.isna(get("slope")):
        return f"no slope (predicted {predicted}: {get('verdict')}{kind})"
    return (f"{get('slope'):+.2f} [{get('ci_low'):+.2f}, {get('ci_high'):+.2f}] "
            f"(predicted {predicted}: {get('verdict')}{kind})")


def stack_control_sentences(table: pd.DataFrame) -> list[str]:
    """The plain words of the stacking control: at the last step, hidden2's z_a and delta2 slope
    with the control against without it (on all the suite's seeds and on the control's), and
    whether the one-layer prediction holds under the control."""
    last = table[table.step == table.step.max()]
    n_control, n_suite = int(table.n_seeds_detached.max()), int(table.n_seeds.max())
    text = []
    for r in last[last.metric.isin(("z_a", "delta2"))].itertuples():
        text.append(f"At step {r.step}, hidden2's {r.metric} slope is {_slope(r, '_detached', '_detached')} with the "
                    f"control ({n_control} seeds) against {_slope(r, '_same_seeds')} without it on the same "
                    f"{n_control} seeds and {_slope(r)} on the suite's {n_suite}.")
    for r in last[last.metric.isin(("z_a", "delta2"))].itertuples():
        text.append(f"Straight log-log slopes of {r.metric} at step {r.step} on the same {n_control} seeds: "
                    f"{r.straight_detached:+.2f} [{r.straight_lo_detached:+.2f}, {r.straight_hi_detached:+.2f}] with "
                    f"the control, {r.straight_same_seeds:+.2f} [{r.straight_lo_same_seeds:+.2f}, "
                    f"{r.straight_hi_same_seeds:+.2f}] without.")
    control = table.verdict_detached
    n_pass, n_fail = int((control == "PASS").sum()), int((control == "FAIL").sum())
    held = ("holds under the control" if n_fail == 0 and n_pass == len(table) else
            "is contradicted under the control" if n_fail else "is not contradicted under the control")
    text.append(f"The one-layer prediction {held}: of hidden2's {len(table)} checks of "
                f"{', '.join(dict.fromkeys(table.metric))} at steps {', '.join(map(str, dict.fromkeys(table.step)))}, "
                f"{n_pass} PASS, {n_fail} FAIL and {len(table) - n_pass - n_fail} INCONCLUSIVE with the link cut; "
                f"without the control (the suite) {int((table.verdict == 'PASS').sum())} PASS and "
                f"{int((table.reason_kind == 'stacked-layer crossover').sum())} are stacked-layer crossovers.")
    return text


def stack_control_section(table: pd.DataFrame) -> list[str]:
    """The report's section on the stacking control (studies.validate.stack_control_table)."""
    lines = ["", "## Control: the stacked layer (mlp, Adam, Init[1])", "",
             "The same mlp runs under LoRA+ (same widths, base and data, the suite's first seeds) with hidden2 "
             "reading a detached copy of its input: hidden1's output still moves, but no gradient flows back from "
             "hidden2 through hidden1's LoRA factors, so the stacked link is cut and hidden2 is predicted as a "
             "first layer (z_a, delta2 and dz_b Theta(1), exponent 0). Without the control the theory gives these "
             "metrics only bounds from step 3 on (a stacked-layer crossover). Slopes judged (corrected where the "
             "theory names a correction), 95% intervals:", ""]
    if table.empty:
        return lines + ["(no rows: the control measured nothing)"]
    lines += [" ".join(stack_control_sentences(table)), ""]
    t = table.assign(suite=[_slope(r) for r in table.itertuples()],
                     same=[_slope(r, "_same_seeds") for r in table.itertuples()],
                     detached=[_slope(r, "_detached", "_detached") for r in table.itertuples()])
    n_control, n_suite = int(table.n_seeds_detached.max()), int(table.n_seeds.max())
    lines.append(t[["metric", "step", "suite", "same", "detached"]]
                 .rename(columns={"suite": f"suite, stacked ({n_suite} seeds)",
                                  "same": f"suite, stacked ({n_control} seeds)",
                                  "detached": f"control, input detached ({n_control} seeds)"})
                 .to_markdown(index=False))
    return lines


def draw_figures(results: pd.DataFrame, exponents: pd.DataFrame, steps: int, fig_dir) -> dict[str, str]:
    """validate's figures into ``fig_dir``: per setting the coordinate check of its first layer at
    the last step, the mlp's first-step loss decrease per init (the B0 path), and a phase
    diagram per (optimizer, init). Returns caption -> 'figures/<name>' (write_report's figures)."""
    figures = {}

    def save(fig, name: str, caption: str) -> None:
        fig.savefig(fig_dir / name, dpi=110)
        plt.close(fig)
        figures[caption] = f"figures/{name}"

    for (model, opt, init), r in results.groupby(SETTING_COLUMNS, sort=False):
        e = exponents[(exponents.model == model) & (exponents.optimizer == opt) & (exponents.init == init)]
        for layer in list(dict.fromkeys(r.layer[r.layer != "all"]))[:1]:
            save(plot_coord_check(r, steps, e, layer=layer, title=f"{setting_name(model, opt, init)}, layer {layer}"),
                 f"coord_{model}_{opt}_init{init}.png", f"{model}/{opt}/{init}: coordinate check at step {steps}")
        if model == "mlp" and opt == "adam":  # the B0 path: first-step loss decrease against width
            save(plot_coord_check(r, 1, e, layer="hidden2", metrics=("loss_drop",),
                                  title=f"{setting_name(model, opt, init)}, layer hidden2: first step's loss decrease"),
                 f"loss_drop_{model}_init{init}.png", f"b0 path: {model}, init {init}")
    checks, _ = split_checks(exponents)  # the points' PASS shares are over checks with a prediction
    for opt, init in dict.fromkeys(zip(checks.optimizer, checks.init)):
        e = checks[(checks.optimizer == opt) & (checks.init == init)]
        model = "toy" if opt == "sgd" else "linear"
        save(plot_phase_diagram(phase_diagram(opt, init, model), phase_points(e),
                                measured_on=", ".join(dict.fromkeys(e.model))),
             f"phase_{opt}_init{init}.png", f"phase: {opt}, init {init}")
    return figures


def corner_section(tables: ValidateTables) -> str:
    """The report's section on the learning-rate law (the LoRA+ corner)."""
    config, laws = corner_config(), tables.corner
    corner = laws[laws.law == CORNER].iloc[0]
    lines = ["## A learning-rate law: the LoRA+ corner", "",
             f"The edges of the trainable region (`lr-laws`: linear, Adam, Init[1], widths {list(config.widths)}, "
             f"{len(config.seeds)} seeds; an edge is the largest rate at which the loss after "
             f"{config.primary.steps} steps is not above its start). The corner lambda_c = eta_B at the B edge / "
             f"eta_A at the A edge grows like n^{corner.slope:+.2f} [{corner.lo:+.2f}, {corner.hi:+.2f}] against "
             f"LoRA+'s n^+1: **{corner.verdict}** ({tables.corner_cpu_s:.0f} s of CPU).", "",
             laws[["law", "predicted", "slope", "lo", "hi", "verdict", "reason"]].to_markdown(index=False, floatfmt=".2f"),
             ""]
    return "\n".join(lines)


def console(tables: ValidateTables, meta: dict, out: Path) -> str:
    """The terminal's lines: the summary, the straight-slope counts, the corner law, the report's path."""
    exponents = tables.exponents
    lines = [f"validate, {meta['spec']['suite']} suite, {meta.get('wall_time_s', float('nan')):.0f} s:",
             summary_text(exponents)]
    if "verdict_straight" in exponents:  # before the corrections to scaling, over the same checks
        straight = split_checks(exponents)[0].verdict_straight.value_counts()
        lines.append(f"(straight log-log slopes alone: {straight.get('PASS', 0)} PASS, {straight.get('FAIL', 0)} FAIL, "
                     f"{straight.get('INCONCLUSIVE', 0)} INCONCLUSIVE)")
    lines += ["The learning-rate law validate judges (the LoRA+ corner on linear under Adam, Init[1]; exponents "
              "against width, 95% interval):",
              tables.corner[["law", "predicted", "slope", "lo", "hi", "verdict"]].to_string(
                  index=False, float_format="{:+.2f}".format),
              f"report: {out / 'report.md'} (tables per setting, controls, figures; every check in exponents.csv)"]
    return "\n".join(lines)


def render(out: Path, tables: ValidateTables, meta: dict) -> Report:
    figures = draw_figures(tables.results, tables.exponents, tables.settings.steps, out / "figures")
    report = write_report(tables.exponents, meta, figures, tables.tolerance, tables.overshoot, tables.progress,
                          tables.b0_control, tables.b0_scale, tables.stack_control)
    head, sep, appendices = report.partition("## Appendix A")  # the law before the long listings
    text = head + corner_section(tables) + "\n" + sep + appendices
    verdicts = pd.concat([tables.exponents.verdict, tables.corner.verdict])
    return Report(text, figures, console(tables, meta, out), exit_code(verdicts))
