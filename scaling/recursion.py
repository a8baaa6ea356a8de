"""The optimiser followed one step at a time on the exponent algebra: the one recursion behind
both the per-step predictions (``scaling.theory``) and the learning-rate laws (``scaling.laws``).

Every quantity of a LoRA layer's training is a ``Quantity``: its size, a max-plus polynomial in
the rate being varied (``scaling.exponents.Poly``, exponents in n and r, ``Poly.ZERO`` for an
exact zero), and, when both rates are held at fixed powers of n, its two largest named terms in
n. The second of those is what a sum's max() drops: the runner-up that the corrections to
scaling (``scaling.theory.corrections``) are read from. A per-step prediction at (gA, gB) is a
run at the constant rates ``Poly.const(Exponent(gA))``, ``Poly.const(Exponent(gB))``; a law
is a run with one rate varied (``Poly.rate()``).

A run records three things per step t = 1..T:
- ``states``: the derivation in the order a step computes it: the layer's quantities (dA z, dB,
  Z_A, B's updates; GD also the error U) and the deltas (role "metric"), each with its parts;
- ``terms``: every term that changes the output, with its kind (descent along the error, random
  noise, GD's bilinear feedback) and whether the loss sees it: the laws solve these for the edge;
- ``metrics``: the measured quantities delta1..3, z_a, dz_a (Z_A(t) - Z_A(0)) and dz_b (the
  step's change of Z_B), per output coordinate; for GD also the output f itself.
The terms are the metrics' parts with their rank structure: delta1 = s B dA z is B0's part (r
random signs per output coordinate, r aligned ones for one output) and B's learned part (r
aligned), and the B0 path (B0's part along the error, n^-1/2 smaller) is a term that no metric
shows. Only the rank and scale factors tell them apart; in n they are one derivation.

Optimisers (the physics of each is in its docstring): ``adam`` (sign-like steps; toy, linear,
every hidden layer of the mlp) and ``gd`` (one scalar output: the paper's toy model and the
paper-mlp).

Stacked LoRA layers (``run_stack``, Adam on the mlp): L LoRA layers in series, each one's output
the next one's input. Each layer is the same ``adam`` recursion, fed per step by the layer below
(``Feed``: how far its output has moved). Two links join them (docs/investigations/stacked_lora.md):
- forward: a layer's input has coordinates max(1, c_below), so A's aligned steps give
  dA z = eta_A n max(1, c_below), and the input's move itself reaches Z_A through A0 (a random sum);
- backward: once the route back through this layer's B A is open, the error reaching the layer below
  has a part along this layer's A rows, rho = |A| (n^1/2 |B0| + n |B_upd|) times the part through the
  frozen weight. Adam's step follows whichever is larger, so a fraction min(1, rho) of the lower
  layer's B steps lies along A's rows, and A adds that move up coherently: n |A| per coordinate
  (n^1/2 for A0's entries) instead of a random sum.
min(1, rho) is not a max-plus polynomial, so a law runs the stack twice (``LINKS``: "aligned", the
whole step along A's rows, and "partial", a fraction rho): every quantity grows with the fraction,
so its true size is the smaller of the two, and a law's edge the larger of the two edges. At fixed
rates ("min") the fraction is read off directly. "cut" is the stacking control (no gradient
through B A reaches the layer below: no backward link; the forward one stays). Only the exponents
in n are derived for the stack: the links carry no rank factors.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from scaling.exponents import N, ONE, R, SQRT_N, SQRT_R, Exponent, Poly

LATE_STEP = 6  # every recursion here has reached its pattern by then
INV_SQRT_N = ONE / SQRT_N
ASSUMPTIONS = {  # what the recursion takes for granted (theory and laws add their own)
    "adam": ["each LoRA layer's input z has Theta(1) coordinates (a stable base network)",
             "Adam's update is sign-like: entries of dA, dB are Theta(eta) once their gradient is non-zero",
             "dA z = Theta(eta_A n): the update of A is aligned with the input (needs n >> batch size)",
             "no cancellation while the output is O(1)"],
    "sgd": ["one scalar output f (the toy: f(x) = (W* + s b a^T) x, x with Theta(1) coordinates, W* x = Theta(1); "
            "the paper-mlp), loss 0.5 * mean over the batch of (f - y)^2 (mean = sum over one output)",
            "the input's squared norm is Theta(n) and dominates the cross terms x_i^T x_j = Theta(sqrt n) (toy: n >> "
            "batch size; paper-mlp: ReLU features have a mean, so cross-sample products are Theta(n) too)",
            "no cancellation while the output is O(1)"],
    "stack": ["LoRA layers in series: the first reads the frozen base's Theta(1) features, each further one the output "
              "of the layer below, whose move the recursion follows",
              "the sign of a sum follows its larger part: a fraction min(1, rho) of a lower layer's B step lies along the "
              "upper layer's A rows",
              "the links are derived in n only (no rank factors)"],
}
Terms = tuple[tuple[Exponent, str], ...]


@dataclass
class Step:
    """One line of a derivation: quantity ~ expression, its exponent, and why."""

    quantity: str
    expression: str
    exponent: float
    reason: str


# -- quantities: a size, and at fixed rates the two largest named terms ----------------------------
@dataclass(frozen=True, eq=False)
class Quantity:
    """size: the quantity as a max-plus polynomial in the varied rate. terms (read only at fixed
    rates, else None): its two largest terms in n, largest first with distinct exponents, each
    named by what it is; () for an exact zero."""

    size: Poly
    terms: Terms | None = None

    def __bool__(self) -> bool:
        return not self.size.is_zero


def _top_two(candidates) -> Terms:
    """The two largest distinct exponents among named terms; terms of one order merge (the first
    named keeps its name)."""
    out: list = []
    for e, what in sorted(candidates, key=lambda p: p[0], reverse=True):  # stable: the first of a tie
        if not out or e < out[-1][0]:
            out.append((e, what))
    return tuple(out[:2])


def _in_n(p: Poly) -> Exponent:
    return p.project("n").at(ONE)  # at fixed rates the polynomial is a constant


class _Algebra:
    """Builds quantities; ``read``: also read their named terms (fixed rates only)."""

    def __init__(self, read: bool):
        self.read = read

    def leaf(self, name: str, size: Poly) -> Quantity:
        if not self.read:
            return Quantity(size)
        return Quantity(size, () if size.is_zero else ((_in_n(size), name),))

    def sum(self, *qs: Quantity) -> Quantity:
        size = Poly.ZERO
        for q in qs:
            size = size | q.size
        return Quantity(size, _top_two([t for q in qs for t in q.terms]) if self.read else None)

    def times(self, q: Quantity, coef: Exponent) -> Quantity:
        """q times a fixed factor (a rank or scale factor, a power of n): every term scales."""
        if not self.read:
            return Quantity(q.size * coef)
        c = coef.project("n")
        return Quantity(q.size * coef, tuple((e * c, what) for e, what in q.terms))

    def product(self, name: str, *qs: Quantity, coef: Exponent = ONE, size: Poly | None = None) -> Quantity:
        """A product called ``name``: the leading terms multiply, and each factor's runner-up
        times the others' leading terms competes for second place. ``size``: the product's exact
        size where the rank sum inside it is not a plain product of the factors' sizes (which
        terms are aligned over r and which random); it must agree in n."""
        if size is None:
            size = functools.reduce(lambda a, b: a * b.size, qs[1:], qs[0].size) * coef
        if not self.read:
            return Quantity(size)
        if any(not q.terms for q in qs):
            terms: Terms = ()
        else:
            lead = functools.reduce(lambda a, b: a * b, (q.terms[0][0] for q in qs), coef.project("n"))
            terms = _top_two([(lead, name)] + [(lead / q.terms[0][0] * q.terms[1][0], q.terms[1][1])
                                               for q in qs if len(q.terms) > 1])
        if (terms[0][0] if terms else None) != (None if size.is_zero else _in_n(size)):
            raise AssertionError(f"{name}: its terms {terms} disagree with its size {size.text()} in n")
        return Quantity(size, terms)


# -- the record of a run -------------------------------------------------------------------------
@dataclass(frozen=True)
class State:
    """One quantity of the layer at one step (0: the initialisation), in the order the step
    computes it. role: "state" (the layer's own quantities) or "metric" (a measured delta);
    parts: what it was computed from, (label, quantity), as a product (op "+": exponents add),
    a sum (op "max") or the smaller of two (op "min": a fraction, at most the whole)."""

    step: int
    quantity: str
    expression: str
    value: Quantity
    reason: str
    role: str = "state"
    parts: tuple[tuple[str, Quantity], ...] = ()
    op: str = ""


@dataclass(frozen=True)
class Term:
    """One output-changing term at one step: its size as a polynomial in the varied rate."""

    name: str
    step: int
    expression: str
    poly: Poly
    kind: str      # "descent" (along -G: lowers the loss), "noise" (random), "feedback" (GD growth)
    visible: bool  # the loss sees it at this size


@dataclass(frozen=True)
class Feed:
    """What a LoRA layer passes to the one above it, per step t = 1..T (index t - 1), as seen by
    that layer's forward pass at step t + 1: ``moved``, the coordinate size of the change of its
    output since the start (any direction: c = |B(t)| |Z_A(t)|, B(0) Z_A(0) = 0 under both
    inits); ``learned``, the part of it carried by B's learned steps (the one that lines up with
    the upper layer's A rows once the route back through that layer is open)."""

    moved: tuple[Quantity, ...]
    learned: tuple[Quantity, ...]


@dataclass
class Run:
    states: list[State]
    terms: list[Term]
    metrics: list[dict[str, Quantity]]  # per step 1..T: delta1..3, z_a, dz_a, dz_b (GD: and output)
    feed: Feed | None = None            # Adam: what this layer passes to a LoRA layer above it


# -- Adam --------------------------------------------------------------------------------------
def adam(model: str, init: str, eta_a: Poly, eta_b: Poly, s: Exponent, sigma_b: Exponent, steps: int,
         read: bool = False, feed: Feed | None = None, link: str = "cut") -> Run:
    """Adam on one LoRA layer (toy, linear; every hidden layer of the mlp).

    Sign-like steps: the entries of dA, dB are eta_A, eta_B once their gradient is non-zero
    (grad_A = s B^T G z^T vanishes while B = 0, grad_B = s G Z_A^T while Z_A = 0), and
    dA z = eta_A n (aligned with the input). dB = -eta_B sign(G) sign(Z_A)^T, so delta2 = s dB Z_A
    and delta3 = s dB dA z are r aligned terms, and so is B's learned part in delta1 = s B dA z.
    B0's part is not: per output coordinate sum_k B0_ik sign((B0^T G)_k) has r random signs, and
    only its component along the error (the "B0 path", n^-1/2 per coordinate) is aligned; with
    ONE output (``toy``) B0^T G is B0 itself and the sum is aligned. B0's part and B's learned
    part are therefore tracked apart.

    feed: what the LoRA layer below passes up (None: the layer reads the base's own features,
    Theta(1) coordinates); link: how much of that layer's B steps lies along this layer's A rows
    (``LINKS``; see the module docstring)."""
    q = _Algebra(read)
    z_a = q.leaf("Z_A(0) = A0 z, the initial features", Poly.ONE if init == "1" else Poly.ZERO)
    b0 = q.leaf("B0, the initial B", Poly.const(sigma_b) if init == "2" else Poly.ZERO)
    z_upd = b_upd = q.leaf("", Poly.ZERO)
    one_output = model == "toy"
    b0_sum = q.times(b0, R if one_output else SQRT_R)  # B0's part of B dA z per output coordinate
    states = [State(0, "Z_A(0)", "A0 z", z_a, "A0 ~ N(0, 1/n): n random terms of size n^-1/2" if z_a else "A0 = 0"),
              State(0, "B0", "entries of B0", b0, f"Init[2]: entries ~ {sigma_b}" if b0 else "B0 = 0")]
    terms, metrics = [], []
    moved, learned = [], []   # what this layer passes up, per step
    # per k = 0, 1, ...: the part of the lower layer's B step k + 1 along A's rows, set by this layer
    # after step k (None: none); the input at step t has moved by the lower layer's steps up to t - 1
    fracs = [_fraction(q, init, link, z_upd, b0, b_upd, eta_a, states, 0)] if feed is not None else []
    for t in range(1, steps + 1):
        size = None           # the input's coordinates, when a LoRA layer below moves them
        if feed is not None and t > 1:
            below, below_learned = feed.moved[t - 2], feed.learned[t - 2]
            size = q.sum(q.leaf("the input's initial coordinates", Poly.ONE), below)
            a_entries = _a_entries(q, init, z_upd, eta_a)
            parts = [("Z_A(t-1)", z_a)]
            if init == "1":  # A0 (entries n^-1/2) sums the input's random move to its own size
                parts.append(("A0 dz, random", below))
            frac = fracs[t - 2]
            if frac is not None:  # A sums the part along its rows coherently: n |A| per coordinate
                parts.append(("A dz along A's rows", q.product("the input's move along A's rows", a_entries, frac,
                                                               below_learned, coef=N)))
            z_a = q.sum(*(p for _, p in parts))
            states += [State(t, "input", "max(1, c_below)", size, "the layer below has moved this layer's input",
                             parts=(("1", q.leaf("", Poly.ONE)), ("c_below", below)), op="max"),
                       State(t, "Z_A at the new input", "Z_A(t-1) + A dz", z_a,
                             "the input's move: a random sum through A0, coherent along A's rows (backward link)",
                             parts=tuple(parts), op="max")]
        d_az = q.leaf("the updates dA z", eta_a * N if (b0 or b_upd) else Poly.ZERO)
        if size is not None and d_az:  # A's steps follow the input: their sum covers its moved coordinates
            d_az = q.product("the updates dA z", d_az, size)
        d_b = q.leaf("the learned part of B, sum of dB", eta_b if z_a else Poly.ZERO)
        states += [State(t, "dA z", "eta_A sum_j |z_j|", d_az,
                         "n aligned terms of size eta_A" if d_az else "grad_A = s B^T G z^T is zero while B = 0"),
                   State(t, "dB", "eta_B sign(G Z_A^T)", d_b,
                         "entries eta_B" if d_b else "grad_B = s G Z_A^T is zero while Z_A = 0")]
        if one_output:
            terms.append(Term("delta1 (B0 path)", t, "s B0 dA z: one output, r aligned terms", s * R * b0.size * d_az.size,
                              "descent", True))
        else:
            terms.append(Term("delta1 (B0 noise)", t, "s B0 dA z per output: r random signs",
                              s * SQRT_R * b0.size * d_az.size, "noise", model == "linear"))
            terms.append(Term("delta1 (B0 path)", t, "its part along G: r aligned, n^-1/2 each",
                              s * R * INV_SQRT_N * b0.size * d_az.size, "descent", True))
        terms += [Term("delta1", t, "s B_upd dA z: r aligned terms", s * R * b_upd.size * d_az.size, "descent", True),
                  Term("delta2", t, "s dB Z_A(t-1): r aligned terms", s * R * d_b.size * z_a.size, "descent", True),
                  Term("delta3", t, "s dB dA z: r aligned terms", s * R * d_b.size * d_az.size, "descent", True)]
        b = q.sum(b0_sum, q.times(b_upd, R))
        delta1 = q.product("delta1", b, d_az, coef=s)
        delta2 = q.product("delta2", d_b, z_a, coef=s * R)
        delta3 = q.product("delta3", d_b, d_az, coef=s * R)
        states += [State(t, "delta1", "s B(t-1) dA z", delta1, "B0's part and B's learned part, each times dA z",
                         "metric", (("B(t-1)", b), ("dA z", d_az)), "+"),
                   State(t, "delta2", "s dB Z_A(t-1)", delta2, "r aligned terms", "metric",
                         (("dB", d_b), ("Z_A(t-1)", z_a)), "+"),
                   State(t, "delta3", "s dB dA z", delta3, "r aligned terms", "metric", (("dB", d_b), ("dA z", d_az)), "+")]
        before = z_a, b_upd
        z_upd, b_upd = q.sum(z_upd, d_az), q.sum(b_upd, d_b)
        z_a = q.sum(z_a, d_az)
        states += [State(t, "Z_A", "Z_A(t-1) + dA z", z_a, "internal: not an output term",
                         parts=(("Z_A(t-1)", before[0]), ("dA z", d_az)), op="max"),
                   State(t, "B_upd", "sum of dB", b_upd, "B's own updates",
                         parts=(("B_upd(t-1)", before[1]), ("dB", d_b)), op="max")]
        metrics.append({"delta1": delta1, "delta2": delta2, "delta3": delta3, "z_a": z_a, "dz_a": z_upd,
                        "dz_b": q.sum(delta1, delta2, delta3)})
        moved.append(q.product("the output's change |B| Z_A", q.sum(b0, b_upd), z_a))
        learned.append(q.product("B's learned part times Z_A", b_upd, z_a))
        if feed is not None:
            fracs.append(_fraction(q, init, link, z_upd, b0, b_upd, eta_a, states, t))
    return Run(states, terms, metrics, Feed(tuple(moved), tuple(learned)))


LINKS = ("min", "aligned", "partial", "cut")


def _a_entries(q: _Algebra, init: str, z_upd: Quantity, eta_a: Poly) -> Quantity:
    """The size of A's entries: A0's n^-1/2 (Init[1]) and its learned part's eta_A (once it has stepped)."""
    a0 = q.leaf("A0's entries", Poly.const(INV_SQRT_N) if init == "1" else Poly.ZERO)
    return q.sum(a0, q.leaf("A's learned entries", eta_a if z_upd else Poly.ZERO))


def _fraction(q: _Algebra, init: str, link: str, z_upd: Quantity, b0: Quantity, b_upd: Quantity, eta_a: Poly,
              states: list, t: int) -> Quantity | None:
    """The part of the lower layer's B step at step t + 1 that lies along this layer's A rows:
    min(1, rho), rho = |A| (n^1/2 |B0| + n |B_upd|), the error reaching the lower layer through
    this layer's B A over the error through the frozen weight (both after step t). None while the
    route is closed (B = 0 or A = 0) or cut (the control)."""
    a_entries = _a_entries(q, init, z_upd, eta_a)
    through = q.sum(q.times(b0, SQRT_N), q.times(b_upd, N))
    if link == "cut" or not a_entries or not through:
        return None
    rho = q.product("rho = error through B A / through W*", a_entries, through)
    if link == "aligned":
        frac = q.leaf("the whole step", Poly.ONE)
    elif link == "partial":
        frac = rho
    elif link == "min":  # fixed rates: both are constants
        frac = rho if rho.size.at(ONE) <= ONE else q.leaf("the whole step", Poly.ONE)
    else:
        raise ValueError(f"unknown link {link!r}; choose from {', '.join(LINKS)}")
    states.append(State(t, "route back", "min(1, rho)", frac,
                        "the part of the lower layer's next B step along A's rows (Adam follows the larger error)",
                        parts=(("1", q.leaf("", Poly.ONE)), ("rho", rho)), op="min"))
    return frac


# -- gradient descent --------------------------------------------------------------------------
def gd(model: str, init: str, eta_a: Poly, eta_b: Poly, s: Exponent, sigma_b: Exponent, steps: int,
       read: bool = False) -> Run:
    """Gradient descent on a LoRA model with one scalar output f (toy; paper-mlp), loss
    0.5 * mean over the batch of (f - y)^2 (with one output, mean and sum over outputs agree).

    The toy is f(x) = (W* + s b a^T) x: Z_A = a^T x, and beta = b. For the paper-mlp beta is the
    r-vector the A-gradient sees, B^T G' (G' = W_out * relu', ||G'||^2 = Theta(1)), whose B0 part
    is a random sum over n of size sigma_B and whose update part is the toy's. The error
    U = f - y = Theta(1) + the learned output s beta . Z_A feeds back into both gradients:
    dA z = -eta_A s U ||z||^2 beta (||z||^2 = n, aligned), d beta = -eta_B s U Z_A; one step
    multiplies (Z_A, beta) by 1 + sqrt(eta_A eta_B s^2 U^2 n), the bilinear feedback."""
    q = _Algebra(read)
    z0 = q.leaf("a0^T x, the initial features", Poly.ONE if init in ("1", "paper") else Poly.ZERO)
    b0 = q.leaf("b0, the initial b", Poly.const(sigma_b) if init in ("2", "paper") else Poly.ZERO)
    z_a, beta = z0, b0
    z_upd = b_upd = q.leaf("", Poly.ZERO)
    out = s * SQRT_R * z0.size * b0.size  # the LoRA branch at init: s Z_A(0) . beta0, r random signs
    learned = q.product("the learned output b a^T x", beta, z_a, size=out)
    error = q.leaf("the initial error W* x - y", Poly.ONE)
    states = [State(0, "Z_A(0)", "A0 z", z0, "A0 ~ N(0, 1/n)" if z0 else "A0 = 0"),
              State(0, "beta(0)", "B0^T (toy) / B0^T G' (paper-mlp)", b0, f"entries ~ {sigma_b}" if b0 else "B0 = 0")]
    terms, metrics = [], []
    for t in range(1, steps + 1):
        u = q.sum(error, learned)
        rate_a, rate_b = q.leaf("eta_a ||x||^2", eta_a * N), q.leaf("eta_b", eta_b)
        d_az = q.product("the updates da^T x", rate_a, u, beta, coef=s)
        d_beta = q.product("db", rate_b, u, z_a, coef=s)
        # Z_A . beta: Z_A(0) . beta(0) has r random signs, every part holding an update is aligned
        cross = SQRT_R * z0.size * b0.size | R * (z_upd.size * beta.size | z0.size * b_upd.size)
        states += [State(t, "U", "f - y", u, "Theta(1) while the output is",
                         parts=(("W* x - y", error), ("s beta . Z_A", learned)), op="max"),
                   State(t, "dA z", "eta_A s U ||z||^2 beta", d_az, "||z||^2 = n" if d_az else "zero while beta = 0",
                         parts=(("eta_A ||z||^2", rate_a), ("U", u), ("beta", beta)), op="+"),
                   State(t, "d beta", "eta_B s U Z_A", d_beta, "" if d_beta else "zero while Z_A = 0",
                         parts=(("eta_B", rate_b), ("U", u), ("Z_A", z_a)), op="+")]
        delta1 = q.product("delta1", beta, d_az, coef=s * R)
        delta2 = q.product("delta2", d_beta, z_a, coef=s * R)
        feedback = eta_a * eta_b * s * s * (u.size * u.size) * N  # one step's growth factor of (Z_A, beta), squared
        delta3 = q.product("delta3", d_beta, d_az, size=feedback * s * cross)
        states += [State(t, "delta1", "s beta(t-1) . dA z", delta1, "r aligned terms", "metric",
                         (("beta(t-1)", beta), ("dA z", d_az)), "+"),
                   State(t, "delta2", "s d beta . Z_A(t-1)", delta2, "r aligned terms", "metric",
                         (("d beta", d_beta), ("Z_A(t-1)", z_a)), "+"),
                   State(t, "delta3", "s d beta . dA z", delta3, "aligned, but Z_A(0) . beta(0) is a random sum", "metric",
                         (("d beta", d_beta), ("dA z", d_az)), "+")]
        deltas = [Term("delta1", t, "eta_A s^2 U ||z||^2 ||beta||^2", delta1.size, "descent", True),
                  Term("delta2", t, "eta_B s^2 U ||Z_A||^2", delta2.size, "descent", True),
                  Term("delta3", t, "eta_A eta_B s^3 U^2 n Z_A.beta", delta3.size, "descent", True)]
        terms += deltas
        if d_az and d_beta:
            terms.append(Term("feedback", t, "eta_A eta_B s^2 U^2 n", feedback, "feedback", True))
        if model == "paper-mlp":
            terms.append(Term("delta1 (features)", t, "s B0 dA z per hidden unit: r random signs",
                              s * SQRT_R * b0.size * d_az.size, "noise", True))
        for d in deltas:  # the output accumulates its changes (U = f - y grows with it)
            out = out | d.poly
        before = z_a, beta
        z_upd, b_upd = q.sum(z_upd, d_az), q.sum(b_upd, d_beta)
        z_a, beta = q.sum(z_a, d_az), q.sum(beta, d_beta)
        learned = q.product("the learned output b a^T x", beta, z_a, size=out)
        states += [State(t, "Z_A", "Z_A(0) + sum dA z", z_a, "internal", parts=(("Z_A(t-1)", before[0]), ("dA z", d_az)),
                         op="max"),
                   State(t, "beta", "beta(0) + sum d beta", beta, "", parts=(("beta(t-1)", before[1]), ("d beta", d_beta)),
                         op="max")]
        metrics.append({"delta1": delta1, "delta2": delta2, "delta3": delta3, "z_a": z_a, "dz_a": z_upd,
                        "dz_b": q.sum(delta1, delta2, delta3), "output": q.sum(error, learned)})
    return Run(states, terms, metrics)


@functools.lru_cache(maxsize=256)
def run_stack(model: str, init: str, eta_a: Poly, eta_b: Poly, depth: int, link: str, s: Exponent = ONE,
              sigma_b: Exponent = ONE, steps: int = LATE_STEP) -> tuple[Run, ...]:
    """Adam on ``depth`` LoRA layers in series (the mlp), one run per layer, bottom first: each
    layer's recursion is ``adam`` fed by the one below. link: "min" (both rates fixed), "aligned" or
    "partial" (a varied rate: the two sides of min(1, rho)), or "cut" (the stacking control)."""
    if model != "mlp":
        raise ValueError(f"LoRA layers in series are derived for the mlp, not {model!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; choose from {', '.join(LINKS)}")
    read = not (eta_a.depends_on_rate() or eta_b.depends_on_rate())
    if link == "min" and not read:
        raise ValueError("link 'min' needs both rates fixed; a varied rate runs 'aligned' and 'partial'")
    runs, feed = [], None
    for _ in range(depth):
        runs.append(adam(model, init, eta_a, eta_b, s, sigma_b, steps, read, feed, link))
        feed = runs[-1].feed
    return tuple(runs)


@functools.lru_cache(maxsize=1024)
def run(optimizer: str, model: str, init: str, eta_a: Poly, eta_b: Poly, s: Exponent = ONE,
        sigma_b: Exponent = ONE, steps: int = LATE_STEP) -> Run:
    """The recursion for one setting (cached: corners, optima and neighbouring steps reuse runs).
    optimizer: "adam" (AdamW: decoupled decay changes no exponent) or "sgd"; s: the LoRA scale;
    sigma_b: the size of B0's entries. Terms are read where both rates are fixed."""
    read = not (eta_a.depends_on_rate() or eta_b.depends_on_rate())
    fn = gd if optimizer == "sgd" else adam
    return fn(model, init, eta_a, eta_b, s, sigma_b, steps, read)
