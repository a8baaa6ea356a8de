"""The validate report's section on corrections to scaling: the straight slope and the corrected
exponent side by side, for every row whose verdict the correction changed.

The rows come from ``scaling.verdicts.compare`` (columns ``omega``, ``correction``,
``gamma_corrected``, ``gamma_corrected_lo``/``_hi``, ``share``, ``fit``, ``judged``,
``verdict_straight``).
"""
from __future__ import annotations

import pandas as pd

from scaling.exponents import fmt

VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE")
ORDER = {"FAIL": 0, "INCONCLUSIVE": 1, "PASS": 2}


def _counts(verdicts: pd.Series) -> str:
    c = verdicts.value_counts()
    return ", ".join(f"{c.get(v, 0)} {v}" for v in VERDICTS)


def judged_measurement(row) -> str:
    """'slope [lo, hi]' of what the verdict judged: the corrected gamma (marked c) or the straight slope."""
    if getattr(row, "judged", "straight") == "corrected" and pd.notna(row.gamma_corrected):
        return f"{row.gamma_corrected:+.2f} [{row.gamma_corrected_lo:+.2f}, {row.gamma_corrected_hi:+.2f}] c"
    return f"{row.slope:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}]"


def changed_rows(exponents: pd.DataFrame) -> pd.DataFrame:
    """Rows whose judged verdict differs from the straight slope's, FAILs first."""
    if "verdict_straight" not in exponents:
        return exponents.iloc[:0]
    changed = exponents[exponents.verdict != exponents.verdict_straight]
    return changed.sort_values(["verdict", "verdict_straight"], key=lambda v: v.map(ORDER), kind="stable")


def corrections_section(exponents: pd.DataFrame, tolerance: float) -> list[str]:
    """Markdown lines: what the corrections changed, in words first, then the changed rows with
    both fits (exponents: the validate exponents table)."""
    if "judged" not in exponents:
        return []
    corrected = exponents[exponents.judged == "corrected"]
    changed = changed_rows(exponents)
    moves = changed.groupby(["verdict_straight", "verdict"]).size()
    regressions = changed[(changed.verdict_straight == "PASS") & (changed.verdict == "FAIL")]
    rescued = changed[(changed.verdict_straight == "FAIL") & (changed.verdict == "PASS")]
    edge = rescued[(rescued.gamma_corrected - rescued.predicted).abs() > tolerance]
    lines = ["## Corrections to scaling", "",
             "A straight line through log y against log n measures a mixture while a smaller term still weighs "
             "at the widths run. For every predicted exponent the theory names the next term "
             "(`scaling.theory.Prediction.corrections`): y = c n^gamma (1 + d n^-omega), with omega the leading "
             "exponent minus the runner-up's, derived, never fitted. Where it names one, the verdict judges the "
             "corrected gamma (bounded least squares on the seed means, the straight slope's bootstrap over seeds) "
             f"by the same rules and tolerance (+-{tolerance:g}); INCONCLUSIVE where the widths cannot separate the "
             "two terms (the corrected interval is wider than the tolerance band, or the correction would have to "
             "be as large as the leading term at the narrowest width).", "",
             f"Straight slopes alone: {_counts(exponents.verdict_straight)}. Judged (corrected where omega is "
             f"known, {len(corrected)} of {len(exponents)} rows): {_counts(exponents.verdict)}. "
             f"{len(changed)} rows changed: "
             + (", ".join(f"{n} {a} -> {b}" for (a, b), n in moves.items()) if len(changed) else "none")
             + ". " + (f"{len(regressions)} rows that PASSed with the straight slope FAIL when corrected "
                       "(listed first below)." if len(regressions) else "No row that PASSed now FAILs.")
             + (f" Of the {len(rescued)} rows that FAILed with the straight slope and PASS corrected, {len(edge)} keep "
                "a corrected gamma outside prediction +- tolerance: the correction did not move the estimate into "
                "the band, only its wider interval reaches it." if len(edge) else ""), ""]
    if not corrected.empty:
        terms = (corrected.assign(omega=corrected.omega.map(lambda w: f"{w:g}")).groupby(["omega", "correction"]).size()
                 .rename("rows").reset_index())
        lines += ["The correction terms used (rows judged corrected):", "", terms.to_markdown(index=False), ""]
    if not changed.empty:
        table = changed.assign(
            straight=[f"{r.slope:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] {r.verdict_straight}" for r in changed.itertuples()],
            corrected=[f"{r.gamma_corrected:+.2f} [{r.gamma_corrected_lo:+.2f}, {r.gamma_corrected_hi:+.2f}] {r.verdict}"
                       if pd.notna(r.gamma_corrected) else f"- {r.verdict}" for r in changed.itertuples()],
            omega=changed.omega.map(lambda w: f"{w:g}" if pd.notna(w) else "none"), predicted=changed.predicted.map(fmt),
            share=changed.share.map(lambda s: f"{s:+.2f}" if pd.notna(s) else "-"))
        cols = ["model", "optimizer", "init", "scheme", "metric", "layer", "step", "predicted", "straight",
                "omega", "corrected", "share", "reason"]
        lines += ["Every row whose verdict changed (share: d n^-omega at the narrowest width, the correction's "
                  "relative size there):", "", table[cols].to_markdown(index=False), ""]
    return lines
