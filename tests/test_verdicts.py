"""scaling.verdicts: PASS / FAIL / INCONCLUSIVE on fits, claims, crossovers and real runs."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from scaling.gamma import PowerLawFit
from scaling.exponents import NEG_INF
from scaling.theory import predict
from scaling.verdicts import compare, crossover, reason_kind, verdict
from studies.run.runner import run_coord_check
from studies.run.spec import CoordCheckSpec


def fit(slope, lo, hi, settled=True, widths=5, seeds=8):
    return PowerLawFit(slope, lo, hi, r2=1.0, settled=settled, n_widths=widths, n_seeds=seeds)


def test_one_seed_or_two_widths_never_pass_or_fail():
    """An interval from one seed is no interval, a slope from two widths has no local slope to
    check: neither can PASS or FAIL anything, however far from the prediction."""
    for thin in (fit(-0.5, -0.5, -0.5, seeds=1), fit(-0.5, -0.6, -0.4, widths=2), fit(0.0, -0.1, 0.1, widths=2)):
        v, why = verdict(thin, 0.0, False, 0.15)
        assert v == "INCONCLUSIVE" and why.startswith("too little data")


def test_exact_claim_pass_and_fail():
    assert verdict(fit(-0.1, -0.2, 0.0), 0.0, False, 0.15)[0] == "PASS"
    assert verdict(fit(-0.5, -0.6, -0.4), 0.0, False, 0.15)[0] == "FAIL"
    assert verdict(fit(0.3, 0.2, 0.4), 0.0, False, 0.15)[0] == "FAIL"
    assert verdict(fit(0.3, 0.2, 0.4), 0.0, False, 0.25)[0] == "PASS"  # the tolerance is an option


def test_unsettled_and_missing_fits_are_inconclusive():
    assert verdict(fit(0.0, -0.1, 0.1, settled=False), 0.0, False, 0.15)[0] == "INCONCLUSIVE"
    assert verdict(None, 0.0, False, 0.15)[0] == "INCONCLUSIVE"


def test_exact_zero_prediction():
    assert verdict(None, NEG_INF, True, 0.15)[0] == "PASS"
    assert verdict(fit(0.0, -0.1, 0.1), NEG_INF, False, 0.15)[0] == "FAIL"
    assert verdict(None, 0.0, True, 0.15)[0] == "FAIL"  # predicted a power law, measured zeros


def test_upper_bound_claim_is_one_sided():
    assert verdict(fit(-0.6, -0.7, -0.5), 0.0, False, 0.15, "upper bound")[0] == "PASS"
    assert verdict(fit(0.1, 0.05, 0.2), 0.0, False, 0.15, "upper bound")[0] == "PASS"
    v, why = verdict(fit(0.4, 0.3, 0.5), 0.0, False, 0.15, "upper bound")
    assert v == "FAIL" and "above the bound" in why


def test_no_claim_is_always_inconclusive():
    assert verdict(fit(5.0, 4.0, 6.0), 81.0, False, 0.15, "none")[0] == "INCONCLUSIVE"


def _widest(values: dict[tuple[str, int], float]) -> pd.DataFrame:
    return pd.DataFrame([{"metric": m, "step": t, "value": v} for (m, t), v in values.items()])


def test_crossover_of_z_a_when_the_updates_are_still_smaller_than_z_a0():
    exps = predict("linear", "adam", "1", -0.5, -0.5, 2).exponents  # z_a = dz_a = +0.5 at step 2
    small = _widest({("z_a", 0): 1.0, ("dz_a", 2): 0.3})
    large = _widest({("z_a", 0): 1.0, ("dz_a", 2): 3.0})
    assert reason_kind("INCONCLUSIVE", crossover("z_a", 2, exps, None, small)) == "sum not yet dominated"
    assert crossover("z_a", 2, exps, None, large) is None
    stable = predict("linear", "adam", "1", -1, 0, 2).exponents    # Z_A(0) is never overtaken
    assert crossover("z_a", 2, stable, None, small) is None
    # grown past Z_A(0) at the widest width but not at the narrowest (the toy under GD, lora-const, step 2:
    # 1.36 and 0.008 of it): a correction to scaling may be at most as large as the leading term
    why = crossover("z_a", 2, exps, None, large, small)
    assert reason_kind("INCONCLUSIVE", why) == "sum not yet dominated" and "narrowest" in why
    assert crossover("z_a", 2, exps, None, large, large) is None
    assert crossover("delta2", 3, predict("linear", "adam", "1", -0.5, -0.5, 3).exponents, exps, large, small)


def test_crossover_of_dz_b_when_the_leading_delta_is_still_small():
    exps = predict("toy", "sgd", "1", 0, 0, 2).exponents           # delta1 (+1) should win over delta2 (0)
    assert exps["delta1"] > exps["delta2"]
    behind = _widest({("delta1", 2): 0.01, ("delta2", 2): 0.1, ("delta3", 2): 0.001})
    ahead = _widest({("delta1", 2): 1.0, ("delta2", 2): 0.1, ("delta3", 2): 0.001})
    assert reason_kind("INCONCLUSIVE", crossover("dz_b", 2, exps, None, behind)) == "sum not yet dominated"
    assert crossover("dz_b", 2, exps, None, ahead) is None
    # ahead at the widest width but far behind at the narrowest: more than a correction to scaling
    # can be (at most as large as the leading term), so the fit over the widths would be pulled
    why = crossover("dz_b", 2, exps, None, ahead, behind)
    assert reason_kind("INCONCLUSIVE", why) == "sum not yet dominated" and "narrowest" in why
    assert crossover("dz_b", 2, exps, None, ahead, ahead) is None


@pytest.fixture(scope="module")
def lora_plus_run():
    spec = CoordCheckSpec(model="linear", optimizer="adam", init="1", schemes=("loraplus",),
                          widths=(128, 256, 512, 1024), steps=3, seeds=(0, 1, 2))
    return run_coord_check(spec, torch.device("cpu"), progress=False)


def test_real_measurements_pass_the_real_prediction(lora_plus_run):
    e = compare(lora_plus_run, steps=(2,), corrected=False)
    row = e[(e.metric == "delta1") & (e.step == 2)].iloc[0]
    assert row.verdict == "PASS" and row.predicted == 0.0 and abs(row.slope) < 0.15
    assert row.judged == "straight" and row.verdict_straight == "PASS" and row.correction == "none"


def test_four_widths_cannot_separate_a_correction(lora_plus_run):
    """Four widths and three seeds leave one degree of freedom to the corrected fit: its interval
    of gamma is wider than the tolerance band, so a straight PASS becomes INCONCLUSIVE with that
    reason (stricter, never looser), and the straight verdict stays in its own column."""
    e = compare(lora_plus_run, steps=(2,))
    row = e[(e.metric == "delta1") & (e.step == 2)].iloc[0]
    assert row.judged == "corrected" and row.omega == 1.0 and row.verdict_straight == "PASS"
    assert row.gamma_corrected_hi - row.gamma_corrected_lo > 0.3
    assert row.verdict == "INCONCLUSIVE" and reason_kind(row.verdict, row.reason) == "correction not separated"


def test_a_wrong_prediction_against_real_measurements_fails(lora_plus_run):
    def wrong(model, optimizer, init, gA, gB, step):
        p = predict(model, optimizer, init, gA, gB, step)
        return dataclasses.replace(p, exponents={k: 1.0 for k in p.exponents})
    e = compare(lora_plus_run, steps=(2,), predictor=wrong)
    delta1 = e[(e.metric == "delta1") & (e.step == 2)].iloc[0]
    assert delta1.verdict == "FAIL" and delta1.predicted == 1.0
    assert {"model", "optimizer", "init", "scheme", "metric", "layer", "step", "slope", "ci_low", "ci_high",
            "predicted", "verdict"} <= set(e.columns)


def test_first_step_loss_drop_passes_its_prediction_and_the_aligned_exponent_fails():
    """mlp, Init[2], LoRA+: the first step's loss decrease goes like n^-1/2 (the B0 path), not
    like n^0 as it would if B0's columns were aligned with the readout."""
    from scaling.theory import first_step_loss_drop
    from scaling.verdicts import compare_first_step
    spec = CoordCheckSpec(model="mlp", optimizer="adam", init="2", schemes=("loraplus",),
                          widths=(256, 512, 1024, 2048), steps=1, seeds=tuple(range(6)))
    results = run_coord_check(spec, torch.device("cpu"), progress=False)
    e = compare_first_step(results, corrected=False)  # four widths: too few to fit a correction as well
    assert set(e.layer) == {"hidden1", "hidden2"} and (e.metric == "loss_drop").all() and (e.step == 1).all()
    assert (e.verdict == "PASS").all() and (e.predicted == -0.5).all()

    def aligned(model, optimizer, init, gA, gB):
        return dataclasses.replace(first_step_loss_drop(model, optimizer, init, gA, gB), exponent=gA + 1.0)
    wrong = compare_first_step(results, predictor=aligned, corrected=False)
    assert (wrong.verdict == "FAIL").all()


def test_phase_points_count_each_schemes_checks():
    from figures.phase import phase_points
    e = pd.DataFrame({"scheme": ["loraplus"] * 3 + ["lora-const"] * 2,
                      "verdict": ["PASS", "PASS", "INCONCLUSIVE", "FAIL", "PASS"]})
    p = phase_points(e).set_index("scheme")
    assert (p.loc["loraplus", ["gA", "gB", "n_checks", "n_pass", "n_fail"]].tolist() == [-1, 0, 3, 2, 0])
    assert p.loc["lora-const", "n_fail"] == 1 and p.loc["lora-const", "share_pass"] == 0.5


# -- corrected verdicts ----------------------------------------------------------------------
from scaling.gamma import CorrectedFit  # noqa: E402
from scaling.verdicts import corrected_verdict  # noqa: E402


def cfit(slope, lo, hi, share=0.1, share_ci=(-0.2, 0.4), at_bound=False, settled=True):
    return CorrectedFit(slope, lo, hi, r2=1.0, settled=settled, omega=0.5, share=share, share_ci=share_ci,
                        at_bound=at_bound, n_widths=5, n_seeds=8)


def test_corrected_verdict_rules():
    assert corrected_verdict(cfit(0.02, -0.05, 0.1), 0.0, 0.15, 0.5)[0] == "PASS"
    assert corrected_verdict(cfit(0.5, 0.4, 0.6), 0.0, 0.15, 0.5)[0] == "FAIL"
    v, why = corrected_verdict(cfit(0.0, -0.5, 0.5), 0.0, 0.15, 0.5)  # 1.0 wide: the band fits inside
    assert v == "INCONCLUSIVE" and reason_kind(v, why) == "correction not separated"
    assert corrected_verdict(cfit(0.3, 0.1, 0.39), 0.0, 0.15, 0.5)[0] == "PASS"  # 0.29 wide: judged
    assert corrected_verdict(cfit(0.9, 0.5, 1.3), 0.0, 0.15, 0.5)[0] == "FAIL"  # wide, but misses
    for share_ci in ((0.6, 1.0), (-0.5, 1.0)):  # on the bound: gamma is set by the bound, not the data
        v, why = corrected_verdict(cfit(0.1, 0.05, 0.15, share=1.0, share_ci=share_ci, at_bound=True), 0.0, 0.15, 0.5)
        assert v == "INCONCLUSIVE" and reason_kind(v, why) == "correction as large as the leading term"
    assert corrected_verdict(cfit(0.0, -0.1, 0.1, settled=False), 0.0, 0.15, 0.5)[0] == "INCONCLUSIVE"
    assert corrected_verdict(None, 0.0, 0.15, 0.5)[0] == "INCONCLUSIVE"


def test_compare_judges_the_corrected_exponent_and_keeps_the_straight_verdict():
    """Synthetic mlp measurements under Adam, Init[2], LoRA+, with delta1 at step 2 going like
    n^0 (1 - 8 n^-1/2) (the B0 path's omega): the straight slope's interval misses 0 +- 0.15 (and
    its local slopes trend), the corrected gamma PASSes, and the row records both. A metric with no omega (an exact zero) stays judged straight."""
    rng = np.random.default_rng(0)
    rows = []
    for w in 2 ** np.arange(7, 14):
        for seed in range(32):
            v = (1 - 8 * w ** -0.5) * np.exp(0.05 * rng.standard_normal())
            rows.append(dict(model="mlp", optimizer="adam", init="2", scheme="loraplus", metric="delta1",
                             layer="hidden1", step=2, width=int(w), seed=seed, value=v))
            rows.append(dict(rows[-1], metric="delta2", step=1, value=0.0))  # predicted exactly zero
    e = compare(pd.DataFrame(rows), steps=(1, 2))
    row = e[e.metric == "delta1"].iloc[0]
    assert row.verdict_straight != "PASS" and row.verdict == "PASS" and row.judged == "corrected"
    assert row.omega == 0.5 and row.correction == "the B0 path"
    assert row.gamma_corrected_lo <= 0.0 <= row.gamma_corrected_hi and row.ci_low > 0.15
    assert row.share == pytest.approx(-8 * 128 ** -0.5, abs=0.05) and row.fit < 3
    zero = e[e.metric == "delta2"].iloc[0]
    assert zero.judged == "straight" and zero.verdict == "PASS" and np.isnan(zero.omega)
    straight_only = compare(pd.DataFrame(rows), steps=(2,), corrected=False)
    assert (straight_only.verdict != "PASS").all() and (straight_only.judged == "straight").all()


def test_every_reason_a_verdict_gives_has_a_named_kind():
    """No check is filed under an unnamed kind ("other"): every reason the verdict functions and
    the laws' judge write maps to a kind in scaling.verdicts.REASON_KINDS."""
    from scaling.laws import LawPrediction
    from scaling.verdicts import reason_kind
    from studies.lr_laws.analysis import judge
    reasons = [verdict(fit(0.0, -0.1, 0.1, settled=False), 0.0, False, 0.15), verdict(None, 0.0, False, 0.15),
               verdict(fit(0.0, -0.1, 0.1, widths=2), 0.0, False, 0.15), verdict(fit(0, 0, 0), 0.0, False, 0.15, "none"),
               corrected_verdict(cfit(0.0, -0.5, 0.5), 0.0, 0.15, 0.5),
               corrected_verdict(cfit(0.1, 0.05, 0.15, share=1.0, share_ci=(0.6, 1.0), at_bound=True), 0.0, 0.15, 0.5),
               corrected_verdict(cfit(0.0, -0.1, 0.1, settled=False), 0.0, 0.15, 0.5),
               corrected_verdict(None, 0.0, 0.15, 0.5),
               judge(fit(0.0, -0.1, 0.1), LawPrediction.given(None, "none", "a ridge"), 0.15),
               ("INCONCLUSIVE", "crossover: the term(s) predicted to dominate dz_b"),
               ("INCONCLUSIVE", "no sharp prediction: an unstable earlier layer makes this layer's input grow"),
               verdict(fit(0.5, 0.4, 0.6), 0.0, False, 0.15), verdict(fit(0.0, -0.1, 0.1), NEG_INF, False, 0.15)]
    kinds = [reason_kind(v, why) for v, why in reasons]
    assert "unnamed" not in kinds and "" not in kinds, list(zip(kinds, reasons))
    assert len(set(kinds)) >= 9
