"""scaling.exponents and scaling.laws: the two-variable calculus, muA's table, hand-checked edges."""
from __future__ import annotations

import itertools
import json
import math
import random
from fractions import Fraction

import pytest

from scaling.exponents import N, ONE, R, Exponent, Monomial, Poly, regime_condition
from scaling.laws import (OPTIMUM_SLICES, SLICES, TABLE_COLUMNS, all_predictions, law_frame, predict,
                          predict_corner, predict_edge, predict_optimum)
from scaling.theory import predict as predict_deltas


# -- the exponent algebra -------------------------------------------------------------------
def test_exponents_multiply_by_adding_and_order_n_before_r():
    assert Exponent(1, -2) * Exponent(-0.5, 3) == Exponent(0.5, 1)
    assert Exponent(1, 1) ** Fraction(1, 2) == Exponent(0.5, 0.5)
    assert Exponent(1, -5) > Exponent(0, 100)          # n -> inf first
    assert Exponent(0, 1) > ONE and Exponent(-1, 7).bounded() and not Exponent(0, 1).bounded()
    assert (Exponent(0, 1) | Exponent(-1, 3)) == Exponent(0, 1)
    assert Exponent(0.5, -0.25).project("n") == Exponent(0.5, 0)
    assert str(Exponent(-0.5, 1)) == "n^-1/2 r" and str(ONE) == "1"
    # n^-1 r^1 < n^0 r^-1 holds at finite (n, r) only while n >> r^2
    assert regime_condition(Exponent(-1, 1), Exponent(0, -1)) == 2
    assert regime_condition(Exponent(-1, -1), Exponent(0, 0)) is None


def _brute(monomials, g):
    return max(m.coef * g ** m.power for m in monomials)


def test_poly_envelope_keeps_the_max_and_its_root():
    """Pruning to the upper envelope must not change the polynomial anywhere, nor its root."""
    rng = random.Random(0)
    for _ in range(200):
        monos = [Monomial(Exponent(Fraction(rng.randint(-6, 6), rng.choice((1, 2, 3))), Fraction(rng.randint(-3, 3), 2)),
                          Fraction(rng.randint(0, 4))) for _ in range(rng.randint(1, 6))]
        p = Poly.ZERO
        for m in monos:
            p = p | Poly((m,))
        for _ in range(10):
            g = Exponent(Fraction(rng.randint(-12, 12), 4), Fraction(rng.randint(-8, 8), 4))
            assert p.at(g) == _brute(monos, g)
        root = p.root()
        if isinstance(root, Exponent):  # O(1) exactly up to the root, not beyond
            assert p.at(root) == ONE
            assert not p.at(root * Exponent(Fraction(1, 1000), 0)).bounded()


def test_poly_products_zeros_and_roots():
    x = Poly.rate()
    delta2 = (Poly.ONE | x * N) * x * R       # s r eta max(1, n eta) with s r = r here
    assert delta2.root() == Exponent(-0.5, -0.5)
    assert delta2.project("n").root() == Exponent(-0.5, 0)
    assert (Poly.ZERO * x).is_zero and (Poly.ZERO | x) == x
    assert Poly.const(Exponent(0, 1)).root() == -math.inf     # grows without the rate: never O(1)
    assert Poly.const(Exponent(-1, 0)).root() == math.inf     # O(1) whatever the rate
    assert delta2.text("eta") == "max(r eta, n r eta^2)"


# -- muA's table (Chen, Villar, Hayou 2026): one shared rate, Adam --------------------------------
@pytest.mark.parametrize("init,scaling,b0,n_exp,r_exp", [
    ("1", "none", "1", -0.5, -0.5),    # Init[A], s = 1
    ("1", "r", "1", -0.5, 0.0),        # Init[A], s = 1/r
    ("2", "none", "1/r", -1.0, 0.0),   # Init[B], s = 1, with THEIR B0 (variance 1/r)
    ("1", "sqrt-r", "1", -0.5, -0.25), # rsLoRA under Init[A]: the secondhand n^-1/2 r^-1/4
])
def test_one_rate_edge_reproduces_muA(init, scaling, b0, n_exp, r_exp):
    """muA's eta* is the maximal stable shared rate, our one-rate edge.

    Init[A] (B0 = 0): delta2 at step 1 is s r eta (r aligned terms), and from step 2 on
    delta1 = s B dA z = s r eta (eta n) (B's rows and dA z are both along sign(Z_A): r aligned
    terms), so eta^2 <= 1/(s r n): with s = r^-sigma, eta ~ n^-1/2 r^-(1-sigma)/2.
    Init[B] (A0 = 0): delta1 = s B0 dA z has, per output coordinate, r RANDOM signs:
    s sigma_B sqrt(r) eta n; with sigma_B^2 = 1/r (fan-in r) that is s eta n: eta ~ n^-1 r^0."""
    p = predict_edge("linear", "adam", init, "one-rate", None, scaling, "r", b0_variance=b0)
    assert p.claim == "exact" and p.exponent == r_exp
    assert predict_edge("linear", "adam", init, "one-rate", None, scaling, "n", b0_variance=b0).exponent == n_exp
    assert p.law_nr.endswith(str(Exponent(n_exp, r_exp)))


def test_our_b0_convention_moves_the_init2_rank_exponent():
    """Our B0 ~ N(0, 1) (variance r^0, not 1/r): the random sum over r is sqrt(r) larger, so the
    Init[2] shared-rate edge falls like r^-1/2 where muA's convention gives r^0; an ALIGNED sum
    (the toy's one output) would have given r^-1: the test fails if the alignment is miscounted."""
    ours = predict_edge("linear", "adam", "2", "one-rate", None, "none", "r")
    toy = predict_edge("toy", "adam", "2", "one-rate", None, "none", "r")
    assert ours.exponent == -0.5 and toy.exponent == -1.0
    assert ours.binding == "delta1 (B0 noise) (step 1)" and toy.binding == "delta1 (B0 path) (step 1)"


# -- hand-checked width laws ---------------------------------------------------------------------
def test_adam_init1_edges_by_hand():
    """Adam, Init[1] (B0 = 0, Z_A(0) = Theta(1)), r and s fixed. B(t) ~ eta_B after step 1,
    dA z ~ eta_A n, Z_A ~ max(1, eta_A n):
      delta1 ~ delta3 ~ eta_B eta_A n,  delta2 ~ eta_B max(1, eta_A n).
    b-edge (eta_A = 1/n held): delta2 ~ eta_B, delta1 ~ eta_B -> eta_B <= n^0.
    a-edge (eta_B = 1 held): delta1 ~ eta_A n -> eta_A <= n^-1.   corner: 0 - (-1) = +1.
    one-rate: delta1 ~ eta^2 n -> eta <= n^-1/2 (Z_A ~ n^1/2 inside: not an output term)."""
    e = {s: predict_edge("linear", "adam", "1", s).exponent for s in SLICES}
    assert (e["b-edge"], e["a-edge"], e["one-rate"], e["ratio"]) == (0.0, -1.0, -0.5, -1.0)
    assert predict_corner("linear", "adam", "1").exponent == 1.0
    assert "delta2" in predict_edge("linear", "adam", "1", "b-edge").binding
    # held eta_A at n^0 instead: the product bound eta_A eta_B n <= 1 puts the B edge at n^-1
    assert predict_edge("linear", "adam", "1", "b-edge", (0, 0)).exponent == -1.0


def test_adam_init2_edges_by_hand():
    """Adam, Init[2] (A0 = 0, B0 = Theta(1)): delta1 = s B0 dA z ~ eta_A n from step 1 (per
    output coordinate, whatever eta_B), delta2 ~ eta_B eta_A n from step 2. a-edge: n^-1;
    one-rate: delta1 -> n^-1 (Init[1] tolerates n^1/2 larger shared rates, the initialisation
    paper's point); b-edge (eta_A = 1/n): delta2 ~ eta_B -> n^0; corner +1."""
    e = {s: predict_edge("linear", "adam", "2", s).exponent for s in SLICES}
    assert (e["b-edge"], e["a-edge"], e["one-rate"]) == (0.0, -1.0, -1.0)
    assert predict_corner("linear", "adam", "2").exponent == 1.0
    gap = predict_edge("linear", "adam", "1", "one-rate").exponent - e["one-rate"]
    assert gap == 0.5


def test_a_wrong_model_gives_a_different_answer():
    """The same slice under a different model or init must not give the same numbers: the mlp's
    mean-field readout does not see B0's random columns at full size, so its Init[2] shared-rate
    edge is not predicted (bounded in [-1, -1/2]), unlike the linear model's n^-1."""
    mlp = predict_edge("mlp", "adam", "2", "one-rate")
    assert mlp.exponent is None and (mlp.lower, mlp.upper) == (-1.0, -0.5)
    assert predict_edge("linear", "adam", "2", "one-rate").exponent != predict_edge("linear", "adam", "1", "one-rate").exponent
    assert predict_edge("mlp", "adam", "2", "a-edge").exponent == -1.0   # the aligned delta2 binds there


def test_gd_toy_edges_by_hand():
    """GD on f = (W* + s b a^T) x, one output. The output moves by -U (eta_A s^2 n ||b||^2 +
    eta_B s^2 ||a^T x||^2) and (a^T x, b) grow by 1 + sqrt(eta_A eta_B s^2 U^2 n) per step.
    Init[1] (b0 = 0, b ~ eta_B after step 1): b-edge (eta_A = 1/n): eta_B <= n^0; a-edge
    (eta_B = 1): eta_A n <= 1 -> n^-1; corner +1 (Prop. 2); one-rate: eta^2 n <= 1, the
    feedback, binds before eta^3 n (delta1): n^-1/2 (Prop. 1: updates vanish there).
    Init[2] (b0 = 1): delta1 = eta_A s^2 n b0^2 from step 1 -> one-rate n^-1 (the output
    explodes at n^-1/2, Prop. 1)."""
    e1 = {s: predict_edge("toy", "sgd", "1", s).exponent for s in SLICES}
    e2 = {s: predict_edge("toy", "sgd", "2", s).exponent for s in SLICES}
    assert (e1["b-edge"], e1["a-edge"], e1["one-rate"]) == (0.0, -1.0, -0.5)
    assert (e2["b-edge"], e2["a-edge"], e2["one-rate"]) == (0.0, -1.0, -1.0)
    assert predict_corner("toy", "sgd", "1").exponent == predict_corner("toy", "sgd", "2").exponent == 1.0
    one = predict_edge("toy", "sgd", "1", "one-rate")
    assert one.binding.startswith("feedback")
    # without the feedback term the fixed-T roots only approach -1/2 from above (T = 6: -5/11)
    assert any("n^-5/11" in s.reason for s in one.derivation)


def test_gd_paper_mlp_needs_both_factors_random():
    """The paper-mlp has no base matrix: under Init[1]/[2] the pre-activation is exactly 0, where
    relu' = 0, so nothing trains; with its printed init it follows the toy's GD laws."""
    assert predict_edge("paper-mlp", "sgd", "1", "b-edge").exponent is None
    assert "frozen" in predict_edge("paper-mlp", "sgd", "2", "a-edge").reason
    e = {s: predict_edge("paper-mlp", "sgd", "paper", s).exponent for s in SLICES}
    assert (e["b-edge"], e["a-edge"], e["one-rate"]) == (0.0, -1.0, -1.0)
    assert predict_corner("paper-mlp", "sgd", "paper").exponent == 1.0


def test_b_edges_agree_with_the_per_step_predictions():
    """On a (gA, gB) grid, 'the output stays O(1)' read two ways off the one recursion: from the
    laws (the B edge of the b-edge slice held at eta_A = n^gA, solved over the loss-visible terms
    as polynomials in eta_B: stable iff gB <= edge) and from scaling.theory's per-step exponents at
    fixed rates (every step's dz_b <= 0). Init[2]'s B0 noise and B0 path have delta1's n-exponent."""
    grid = [x / 4 for x in range(-8, 3)]
    for model, init in itertools.product(("toy", "linear"), ("1", "2")):
        for gA in grid:
            p = predict_edge(model, "adam", init, "b-edge", (gA, 0))
            edge = p.exponent if p.exponent is not None else p.lower  # past the overshoot: the solved root
            for gB in grid:
                laws_say = edge is not None and gB <= edge
                theory_says = all(predict_deltas(model, "adam", init, gA, gB, t).exponents["dz_b"] <= 1e-12
                                  for t in range(1, 7))
                assert laws_say == theory_says, (model, init, gA, gB)


# -- optima -------------------------------------------------------------------------------------
def test_optimum_is_the_edge_where_a_descent_term_is_theta_1_there():
    p = predict_optimum("linear", "adam", "1", "one-rate")
    assert p.exponent == -0.5 and p.claim == "exact"
    noisy = predict_optimum("linear", "adam", "2", "one-rate")  # only B0's noise is Theta(1) at n^-1
    assert noisy.claim == "upper bound" and noisy.exponent == -1.0


def test_plane_optimum_ridge_under_adam_init1_not_under_gd():
    """Adam Init[1]: (A, B, eta_A, eta_B) -> (kA, B/k, k eta_A, eta_B/k) leaves the dynamics
    unchanged once A0 is negligible, so lambda* is not identified (<= the corner's +1). GD needs
    k^2 and its feedback bound keeps A's movement at Theta(A0): no ridge, lambda* ~ n."""
    adam = predict_optimum("linear", "adam", "1", "plane")
    assert adam.exponent is None and adam.upper == 1.0 and "ridge" in adam.reason
    assert predict_optimum("toy", "sgd", "1", "plane").exponent == 1.0
    assert predict_optimum("toy", "adam", "2", "plane").exponent == 1.0     # B0 path is descent there
    lin = predict_optimum("linear", "adam", "2", "plane")
    assert lin.exponent is None and lin.lower == 1.0                       # B0 noise pushes lambda up


# -- bad or unsupported input ---------------------------------------------------------------------
def test_unsupported_and_impossible_settings_say_why():
    sgd = predict_edge("linear", "sgd", "1", "b-edge")
    assert sgd.exponent is None and sgd.claim == "none" and "SGD" in sgd.reason
    held = predict_edge("linear", "adam", "1", "a-edge", (0, 0), "none", "r")  # eta_B = r^0 > the B edge r^-1
    assert held.exponent is None and "held rate is itself beyond an edge" in held.reason
    at_edge = predict_edge("linear", "adam", "1", "a-edge", (0, -1), "none", "r")  # eta_B at its edge: s r eta_B = 1
    assert at_edge.exponent == 0.0 and at_edge.law_nr.endswith("n^-1")
    frozen = predict_edge("linear", "adam", "zero", "one-rate")
    assert frozen.exponent is None and "never moves" in frozen.reason
    for bad in ({"slice": "c-edge"}, {"model": "cnn"}, {"init": "3"}):
        kw = {"model": "linear", "optimizer": "adam", "init": "1", "slice": "b-edge", **bad}
        with pytest.raises(ValueError, match="unknown"):
            predict_edge(**kw)
    with pytest.raises(ValueError, match="alpha scaling"):
        predict_edge("linear", "adam", "1", "b-edge", alpha_scaling="rank")
    with pytest.raises(ValueError, match="unknown law"):
        predict("ridge", "linear", "adam", "1")


def test_law_frame_and_renderings():
    df = law_frame(all_predictions(models=("toy", "linear"), optimizers=("adam", "sgd"), inits=("1", "2")))
    assert list(df.columns) == list(TABLE_COLUMNS)
    assert len(df) == 2 * 2 * 2 * (len(SLICES) + 1 + len(OPTIMUM_SLICES))
    corner = df[(df.law == "corner") & (df.model == "linear") & (df.optimizer == "adam")]
    assert set(corner.predicted) == {1.0}
    assert df[(df.model == "linear") & (df.optimizer == "sgd")].predicted.isna().all()
    p = predict_edge("linear", "adam", "1", "one-rate", variable="r", alpha_scaling="sqrt-r")
    d = json.loads(json.dumps(p.to_dict()))
    assert d["exponent"] == -0.25 and d["claim"] == "exact" and d["derivation"]
    assert "derivation" in p.to_text(explain=True) and "| quantity |" in p.to_markdown()
    assert "r^-1/4" in p.to_text()


def test_edges_settle_by_step_3():
    """The default T = 6 is past every crossover: T = 3 gives the same edges (the phase figure
    uses 3 for speed); T = 1 does not (Init[1]'s delta1 only exists from step 2)."""
    for model, opt, init in (("linear", "adam", "1"), ("mlp", "adam", "2"), ("toy", "sgd", "1"), ("paper-mlp", "sgd", "paper")):
        for s in SLICES:
            a, b = predict_edge(model, opt, init, s, steps=3), predict_edge(model, opt, init, s)
            assert (a.exponent, a.lower, a.upper) == (b.exponent, b.lower, b.upper)
    assert predict_edge("linear", "adam", "1", "one-rate", steps=1).exponent == 0.0   # only delta2 = s r eta


def test_cli_theory_laws(capsys):
    from studies.cli import main
    assert main(["theory", "--laws", "--init", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "n^+1" in out and "n^-1/2" in out and "corner" in out
    assert main(["theory", "--laws", "--model", "toy", "--optimizer", "sgd", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["law"] for r in rows} == {"edge", "corner", "optimum"}
    assert main(["theory", "--laws", "--variable", "r", "--alpha-scaling", "none", "--b0-variance", "1/r",
                 "--init", "2", "--markdown"]) == 0
    assert "| edge " in capsys.readouterr().out
    assert main(["theory", "--laws", "--variable", "q"]) == 2
    assert "error: unknown variable 'q'" in capsys.readouterr().err
    assert main(["theory", "--laws", "--latex"]) == 2


def test_phase_edges_figure_draws_slices_and_measured_points():
    import matplotlib.pyplot as plt
    import pandas as pd

    from figures.phase import measured_slices, plot_phase_edges
    from scaling.phase import phase_edges
    measured = pd.DataFrame({"slice": ["b-edge", "one-rate"], "held": [-1.0, "(0, 0)"], "slope": [0.05, -0.55],
                             "lo": [-0.1, -0.7], "hi": [0.2, -0.4]})
    fig = plot_phase_edges(phase_edges("adam", "1", "linear", slices=measured_slices(measured)), measured)
    ax = fig.axes[0]
    xy = {tuple(round(float(v), 3) for v in l.get_xydata()[0]) for l in ax.lines if len(l.get_xydata()) == 1}
    assert (-1.0, 0.0) in xy and (-0.5, -0.5) in xy           # predicted edges on their slices
    assert (-1.0, 0.05) in xy and (-0.55, -0.55) in xy        # measured ones
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "output edge (theory)" in labels and "slice b-edge (held n^-1)" in labels
    plt.close(fig)
