"""scaling.theory: predicted exponents against the hand derivations, claims past blow-up and overshoot."""
from __future__ import annotations

import json
import math

import pytest

from scaling.exponents import NEG_INF
from scaling.phase import phase_diagram
from scaling.theory import predict

# The paper's Theorem 1, Adam / Init[1]: gamma[delta1] = gB + 1 + gA, gamma[delta2] = gB + max(0, 1 + gA),
# gamma[delta3] = gB + 1 + gA, gamma[Z_A] = max(0, 1 + gA). Step 3: the first step whose delta2
# sees a Z_A that updates have already changed (B0 = 0 leaves A untouched at step 1).
TABLE_ADAM_INIT1 = {(-1.0, 0.0): (0.0, 0.0, 0.0, 0.0), (-1.0, -1.0): (-1.0, -1.0, -1.0, 0.0),
                    (-0.5, -0.5): (0.0, 0.0, 0.0, 0.5), (0.0, 0.0): (1.0, 1.0, 1.0, 1.0)}


@pytest.mark.parametrize("gA,gB", list(TABLE_ADAM_INIT1))
@pytest.mark.parametrize("model", ["linear", "toy", "mlp"])
def test_adam_init1_matches_the_theory_table(model, gA, gB):
    d1, d2, d3, za = TABLE_ADAM_INIT1[(gA, gB)]
    p = predict(model, "adam", "1", gA, gB, step=3)
    assert (p.exponents["delta1"], p.exponents["delta2"], p.exponents["delta3"], p.exponents["z_a"]) == (d1, d2, d3, za)
    assert p.exponents["dz_b"] == max(d1, d2, d3)


def test_adam_init1_first_step_has_exact_zeros():
    p = predict("linear", "adam", "1", -1, 0, step=1)
    assert p.exponents["delta1"] == NEG_INF and p.exponents["delta3"] == NEG_INF  # B0 = 0: dA = 0
    assert p.exponents["delta2"] == 0.0 and p.exponents["dz_a"] == NEG_INF


@pytest.mark.parametrize("init,gA,gB,cls", [("1", -1, 0, "efficient"), ("1", -1, -1, "both lazy"),
                                            ("1", -0.5, -0.5, "unstable"), ("1", 0, 0, "unstable"),
                                            ("1", -2, 0, "A-side lazy"), ("2", -1, -1, "B-side lazy"),
                                            ("zero", -1, 0, "frozen")])
def test_classification(init, gA, gB, cls):
    """Under Init[1] B is Theta(eta_B) after step 1, so delta1 = gB + 1 + gA: lowering gB alone
    makes both sides lazy; Init[2] (B0 = Theta(1)) separates them."""
    assert predict("linear", "adam", init, gA, gB, 2).classification == cls


def test_sgd_toy_props_1_and_2():
    """Prop. 2: (gA, gB) = (-1, 0) efficient under both inits; Prop. 1: no shared rate is."""
    for init in ("1", "2"):
        assert predict("toy", "sgd", init, -1, 0, 4).classification == "efficient"
        for c in (-1.5, -1.0, -0.75, -0.5, -0.25, 0.0):
            assert predict("toy", "sgd", init, c, c, 6).classification != "efficient"


def test_unstable_scheme_is_exact_up_to_the_blowup_then_an_upper_bound():
    early = predict("linear", "adam", "1", 0, 0, 2)   # Z_A explodes at step 2 (B0 = 0 at step 1)
    late = predict("linear", "adam", "1", 0, 0, 3)
    assert early.blowup_step == 2 and early.claim == "exact"
    assert late.claim == "upper bound" and late.exponents["z_a"] == 1.0
    assert "upper bound" in late.to_text() or "<=" in late.to_text()
    sgd = predict("toy", "sgd", "2", 0, 0, 2)        # output explodes at step 1 under Init[2]
    assert sgd.blowup_step == 1 and sgd.claim == "none"


def test_stable_schemes_stay_exact():
    for gA, gB in ((-1, 0), (-1, -1), (-2, 0)):
        p = predict("linear", "adam", "1", gA, gB, 8)
        assert p.blowup_step is None and p.claim == "exact"


def test_init2_overshoot_only_where_the_loss_sees_the_n_outputs_and_first_steps_are_large():
    assert predict("linear", "adam", "2", -1, 0, 1).claim == "exact"
    assert predict("linear", "adam", "2", -1, 0, 2).claim == "upper bound"
    assert predict("mlp", "adam", "2", -1, 0, 6).claim == "exact"           # readout: A's target is large
    assert predict("toy", "adam", "2", -1, 0, 6).claim == "exact"          # scalar b0
    assert predict("linear", "adam", "2", -2, 0, 6).claim == "exact"       # first step n^-1 < n^-1/2
    assert predict("linear", "adam", "1", -1, 0, 6).claim == "exact"       # Init[1]: B0 = 0


def test_dz_a_is_the_cumulative_update_exponent():
    p = predict("linear", "adam", "1", -0.5, -0.5, 3)
    assert p.exponents["dz_a"] == 0.5 and p.exponents["z_a"] == 0.5
    q = predict("linear", "adam", "1", -2, 0, 3)
    assert q.exponents["dz_a"] == -1.0 and q.exponents["z_a"] == 0.0  # Z_A(0) dominates


def test_renderings_and_json_keys():
    p = predict("linear", "adam", "1", -1, 0, 2)
    d = json.loads(json.dumps(p.to_dict()))
    assert {"delta1", "delta2", "delta3", "z_a", "dz_b", "classification", "claim"} <= set(d)
    assert "\\begin{tabular}" in p.to_latex() and "| quantity |" in p.to_markdown()
    assert "derivation" in p.to_text(explain=True)


def test_unsupported_combinations_raise():
    with pytest.raises(ValueError, match="SGD"):
        predict("linear", "sgd", "1", -1, 0, 2)
    with pytest.raises(ValueError, match="step"):
        predict("linear", "adam", "1", -1, 0, 0)


def test_phase_diagram_marks_the_loraplus_point_efficient():
    d = phase_diagram("adam", "1", resolution=0.5)
    gAs, gBs, grid = d.gA, d.gB, d.classes
    i, j = list(gBs).index(0.0), list(gAs).index(-1.0)
    assert grid[i, j] == 1  # CLASSES.index("efficient")
    assert not math.isnan(grid.sum())


def test_first_step_loss_drop_follows_the_b0_path_under_init2():
    from scaling.theory import first_step_loss_drop
    for gA, gB in ((-1, 0), (-1, -1), (-0.5, -0.5), (0, 0)):
        assert first_step_loss_drop("mlp", "adam", "1", gA, gB).exponent == gB          # B's aligned step
        assert first_step_loss_drop("mlp", "adam", "2", gA, gB).exponent == gA + 0.5    # random sum over B0
        assert first_step_loss_drop("linear", "adamw", "2", gA, gB).exponent == gA + 0.5
        assert first_step_loss_drop("toy", "adam", "2", gA, gB).exponent == gA + 1      # scalar b0: no sum
        assert first_step_loss_drop("linear", "adam", "1", gA, gB, loss_reduction="sum").exponent == gB + 1
    assert first_step_loss_drop("mlp", "adam", "zero", -1, 0).exponent == NEG_INF
    assert first_step_loss_drop("toy", "sgd", "1", -1, 0) is None


# -- corrections to scaling: the runner-up terms, derived by hand ------------------------------
def _omegas(p):
    return {k: c.omega for k, c in p.corrections.items()}


def test_toy_gd_batch_cross_terms():
    """Toy model under GD, batch N, K = X X^T = n I + n^1/2 Xi (the cross terms x_i^T x_j).
    Step 1: da^T x_p = -eta_a b0 (K U0)_p / N; Xi is independent of U0 = -u v^T x at leading
    order (E[U_i U_p Xi_ip] = |w|^2 n^-1/2), so the cross terms move the seed mean of log y only
    at second order: omega = 1. Init[2], step 2: U(1) = alpha U0 + n^-1/2 (Xi part) with
    alpha = 1 - eta_a n b0^2 / N crossing 0 over seeds; near alpha = 0 the part off U0's line
    dominates and E log rms(K U(1)) moves by Theta(n^-1/2): omega = 1/2 for delta1, delta3 (built
    from da^T x) and the sums holding them; delta2 = db a(1)^T x has scalar factors only, whose
    zeros the perturbation cannot fill at first order: omega = 1 (Monte Carlo in
    docs/investigations/corrections_to_scaling.py)."""
    step1 = _omegas(predict("toy", "sgd", "2", -1, 0, 1))
    assert step1 == {"delta1": 1.0, "delta2": None, "delta3": None, "z_a": 1.0, "dz_a": 1.0, "dz_b": 1.0}
    step2 = predict("toy", "sgd", "2", -1, 0, 2)
    assert _omegas(step2) == {"delta1": 0.5, "delta2": 1.0, "delta3": 0.5, "z_a": 0.5, "dz_a": 0.5, "dz_b": 0.5}
    assert "cross terms" in step2.corrections["delta1"].term
    assert step2.corrections["delta1"].runner_up == -0.5 and step2.corrections["delta1"].leading == 0.0
    assert _omegas(predict("toy", "sgd", "2", -1, 0, 3))["delta2"] == 0.5  # Z_A(2): two steps can cancel
    # Init[1]: the error moves along U0 and a0^T x, a plane: no line through 0, so n^-1 stays
    assert set(_omegas(predict("toy", "sgd", "1", -1, 0, 4)).values()) == {1.0}
    assert "fluctuations" in predict("toy", "sgd", "1", -1, 0, 4).corrections["delta1"].term


def test_init2_mlp_b0_path():
    """mlp, Adam, Init[2]: the B0 path lowers the loss by Theta(n^(gA + 1/2)) per step beside the
    limit's Theta(1) dynamics, so from step 2 every quantity carries it at relative n^(gA + 1/2):
    omega = -(gA + 1/2) = 1/2 for LoRA+ and lora-inv. At step 1 nothing has moved yet."""
    for gB in (0, -1):
        for step in (2, 6, 8):
            p = predict("mlp", "adam", "2", -1, gB, step)
            assert set(_omegas(p).values()) == {0.5}, (gB, step)
            assert all(c.term == "the B0 path" for c in p.corrections.values())
            assert all(c.runner_up == c.leading - 0.5 for c in p.corrections.values())
    assert set(v for v in _omegas(predict("mlp", "adam", "2", -1, 0, 1)).values() if v) == {1.0}
    rescaled = predict("mlp", "adam", "2", -1.25, 0.25, 4)  # the Init[2] family gA = -1 - gB: B grows like n^1/4
    assert rescaled.corrections["delta2"].omega == 0.75 and rescaled.corrections["delta2"].term == "the B0 path"
    assert rescaled.corrections["delta1"].omega == 0.25 and rescaled.corrections["delta1"].term.startswith("B0")
    assert set(_omegas(predict("mlp", "adam", "2", -2, 1, 4)).values()) == {1.0}     # n^-3/2: fluctuations first
    assert set(_omegas(predict("linear", "adam", "2", -1, 0, 1)).values()) == {1.0, None}  # no readout: no B0 path
    assert set(_omegas(predict("mlp", "adam", "1", -1, 0, 4)).values()) == {1.0}           # no B0 under Init[1]


def test_runner_up_terms_the_recursion_drops():
    """Adam, Init[1], lora-sqrt at step 2 (before its blow-up): Z_A(2) = Z_A(0) + dA z with
    Z_A(0) = Theta(1) and dA z = Theta(n^1/2), so z_a's runner-up is Z_A(0): omega = 1/2; dz_b =
    delta1 + delta2 + delta3 with delta2 = dB Z_A(1) = Theta(n^-1/2) against Theta(1): omega = 1/2."""
    p = predict("linear", "adam", "1", -0.5, -0.5, 2)
    assert p.claim == "exact"
    assert p.corrections["z_a"].omega == 0.5 and "Z_A(0)" in p.corrections["z_a"].term
    assert p.corrections["dz_b"].omega == 0.5 and p.corrections["dz_b"].term == "delta2"
    assert p.corrections["dz_a"].omega == 1.0  # the updates alone: only fluctuations
    # lora-inv, Init[2]: B = B0 + learned n^-1 in delta1 = B dA z: omega 1, tied with the fluctuations
    q = predict("toy", "adam", "2", -1, -1, 1)
    assert q.corrections["delta1"].omega == 1.0


def test_no_correction_for_zeros_and_bounds():
    zero = predict("linear", "adam", "1", -1, 0, 1).corrections["delta1"]
    assert zero.omega is None and zero.runner_up is None and zero.term == "none"
    bound = predict("linear", "adam", "2", -1, 0, 2)                       # the Init[2] overshoot
    assert bound.claim == "upper bound" and set(_omegas(bound).values()) == {None}
    assert set(_omegas(predict("toy", "sgd", "2", 0, 0, 3)).values()) == {None}  # past an SGD blow-up


def test_corrections_render_and_serialise():
    p = predict("mlp", "adam", "2", -1, 0, 4)
    d = json.loads(json.dumps(p.to_dict()))
    assert d["corrections"]["delta1"]["omega"] == 0.5 and d["corrections"]["delta1"]["term"] == "the B0 path"
    assert "corrections to scaling" in p.to_text(explain=True) and "omega = 0.5" in p.to_text(explain=True)


def test_first_step_loss_drop_has_only_the_fluctuations():
    from scaling.theory import first_step_loss_drop
    c = first_step_loss_drop("mlp", "adam", "2", -1, 0).correction
    assert c.omega == 1.0 and c.runner_up == -1.5
