"""scaling.recursion: the one recursion behind the per-step predictions and the laws, pinned
against derivations by hand; a per-step prediction is the law engine read at fixed rates."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from scaling.exponents import Exponent, Poly
from scaling.recursion import _Algebra, run
from scaling.theory import CLASSES, classes_along_gB, predict

METRICS = ("delta1", "delta2", "delta3", "z_a", "dz_a", "dz_b")


def at_rates(optimizer, model, init, gA, gB, steps=6):
    """Per step, each metric's exponent in n (-inf: exactly zero) at eta_A = n^gA, eta_B = n^gB."""
    r = run(optimizer, model, init, Poly.const(Exponent(gA)), Poly.const(Exponent(gB)), steps=steps)
    return [{k: float(m[k].terms[0][0].n) if m[k].terms else -math.inf for k in METRICS} for m in r.metrics]


# Adam, Init[1] (B0 = 0, Z_A(0) = Theta(1)), by hand at step 3: dA z = n^(1 + gA) once B != 0
# (from step 2), B = n^gB after step 1, Z_A = max(0, 1 + gA):
#   delta1 = delta3 = gB + 1 + gA,  delta2 = gB + max(0, 1 + gA),  dz_a = 1 + gA.
@pytest.mark.parametrize("model", ["linear", "toy", "mlp"])
@pytest.mark.parametrize("gA,gB", [(-1, 0), (-1, -1), (-0.5, -0.5), (0, 0), (-2, 0), (-0.75, 0.5)])
def test_adam_init1_step3_by_hand(model, gA, gB):
    e = at_rates("adam", model, "1", gA, gB)[2]
    z = max(0, 1 + gA)
    assert (e["delta1"], e["delta2"], e["delta3"], e["z_a"], e["dz_a"]) == (gB + 1 + gA, gB + z, gB + 1 + gA, z, 1 + gA)
    assert e["dz_b"] == max(e["delta1"], e["delta2"], e["delta3"])


# Adam, Init[2] (A0 = 0, B0 = Theta(1)): step 1 moves only A (dB = 0 while Z_A = 0), so delta1 =
# 0 + 1 + gA and delta2 = delta3 = zero; from step 2 on delta1 = max(0, gB) + 1 + gA and
# delta2 = delta3 = gB + 1 + gA (Z_A is the updates alone).
@pytest.mark.parametrize("gA,gB", [(-1, 0), (-1, -1), (-1.25, 0.25), (-2, 1)])
def test_adam_init2_by_hand(gA, gB):
    first, third = at_rates("adam", "linear", "2", gA, gB)[0], at_rates("adam", "linear", "2", gA, gB)[2]
    assert (first["delta1"], first["delta2"], first["delta3"]) == (1 + gA, -math.inf, -math.inf)
    assert (third["delta1"], third["delta2"], third["delta3"]) == (max(0, gB) + 1 + gA, gB + 1 + gA, gB + 1 + gA)


def test_gd_toy_by_hand():
    """GD on f = (W* + b a^T) x, Init[2] (a0 = 0, b0 = 1), LoRA+ (gA, gB) = (-1, 0). Step 1: U = 1,
    da^T x = eta_a U b ||x||^2 = n^0, db = eta_b U a^T x = 0: delta1 = b da^T x = n^0, delta2 =
    delta3 = 0. Step 2: a^T x = n^0, so db = n^0 and every delta is n^0. One shared rate n^-1/2
    under Init[2]: delta1 = n^(1/2) at step 1, the output explodes (Prop. 1)."""
    one, two = at_rates("sgd", "toy", "2", -1, 0)[:2]
    assert (one["delta1"], one["delta2"], one["delta3"]) == (0.0, -math.inf, -math.inf)
    assert (two["delta1"], two["delta2"], two["delta3"]) == (0.0, 0.0, 0.0)
    assert at_rates("sgd", "toy", "2", -0.5, -0.5)[0]["delta1"] == 0.5


def test_the_terms_a_sum_drops_are_named():
    """Adam, Init[1], lora-sqrt (-1/2, -1/2) at step 2: Z_A = Z_A(0) + dA z = max(n^0, n^1/2), so z_a
    keeps the updates and drops Z_A(0); dz_b = delta1 + delta2 + delta3 keeps n^0 and drops
    delta2 = dB Z_A(1) = n^-1/2 (the hand derivation of tests/test_theory.py)."""
    m = run("adam", "linear", "1", Poly.const(Exponent(-0.5)), Poly.const(Exponent(-0.5)), steps=6).metrics[1]
    assert m["z_a"].terms == ((Exponent(0.5), "the updates dA z"), (Exponent(0), "Z_A(0) = A0 z, the initial features"))
    assert m["dz_b"].terms[1] == (Exponent(-0.5), "delta2")


@pytest.mark.parametrize("optimizer,model,init", [("adam", "linear", "1"), ("adam", "mlp", "2"), ("adam", "toy", "2"),
                                                  ("adam", "linear", "zero"), ("sgd", "toy", "1"), ("sgd", "toy", "2")])
def test_a_prediction_is_the_law_engine_at_fixed_rates(optimizer, model, init):
    """The recursion with eta_B varied (a b-edge slice, as the laws run it) read at eta_B = n^gB
    gives every metric's exponent of the run at the fixed rate n^gB, at every step."""
    grid = (-1.5, -1, -0.5, 0.5)
    for gA in grid[1:]:
        varied = run(optimizer, model, init, Poly.const(Exponent(gA)), Poly.rate(), steps=4).metrics
        for gB in grid:
            fixed = at_rates(optimizer, model, init, gA, gB, steps=4)
            read = [{k: -math.inf if m[k].size.is_zero else float(m[k].size.project("n").at(Exponent(gB)).n)
                     for k in METRICS} for m in varied]
            assert read == fixed, (gA, gB)
        assert classes_along_gB(model, optimizer, init, gA, grid) == [
            predict(model, optimizer, init, gA, gB, 6).classification for gB in grid]
    assert set(classes_along_gB(model, optimizer, init, -1, grid)) <= set(CLASSES)


def test_a_product_whose_size_disagrees_with_its_terms_is_refused():
    q = _Algebra(read=True)
    x = q.leaf("x", Poly.const(Exponent(Fraction(1, 2))))
    assert q.product("x^2", x, x).terms[0][0] == Exponent(1)
    with pytest.raises(AssertionError, match="disagree"):
        q.product("x^2", x, x, size=Poly.const(Exponent(2)))
    assert not q.product("x 0", x, q.leaf("zero", Poly.ZERO)).terms


def test_exponent_algebra_is_exact_on_integers_inside():
    """The integer representation keeps the algebra exact and the order lexicographic."""
    a, b = Exponent(Fraction(1, 3), -1), Exponent(Fraction(-1, 6), Fraction(1, 2))
    assert a * b == Exponent(Fraction(1, 6), Fraction(-1, 2)) and (a * b).n == Fraction(1, 6)
    assert a / a == Exponent() and (b ** -2).r == -1 and hash(a * b / b) == hash(a)
    for x, y in itertools.product((a, b, a * b, Exponent(0, 5), Exponent(0, -5)), repeat=2):
        assert (x < y) == ((x.n, x.r) < (y.n, y.r)) and (x == y) == ((x.n, x.r) == (y.n, y.r))
