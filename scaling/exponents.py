"""The gamma calculus in two variables: exponents in width n and rank r, exact and ordered.

A quantity of size Theta(n^a r^b) is tracked by its exponent ``Exponent(a, b)`` (exact
fractions), and the operators act on the quantities: ``x * y`` (a product) adds exponents,
``x / y`` subtracts them, ``x ** k`` scales them, ``x | y`` (a sum, no cancellation) takes the
larger. An exactly-zero quantity is tracked separately (``Poly.ZERO``), never as an exponent.

"Larger" needs a regime, because n^1 r^-5 and n^0 r^3 are not ordered by their exponents
alone. The regime here is **n -> infinity first, then r -> infinity**: exponents compare
lexicographically, n first, so n^a r^b beats n^a' r^b' when a > a', whatever b and b' are.
That is the order muA's joint limit needs (r large, but r << n); ``regime_condition`` states,
for every comparison the order decided against the rank, how much larger n has to be
(``n >> r^q``) for the order to hold at a finite (n, r). With r fixed (``project("n")``) only
the n-parts count.

A learning-rate *law* needs one more step: the size of a feature update as a function of a
learning rate x = n^g_n r^g_r that is being varied. Every quantity of the recursions in
``scaling.laws`` is a max over monomials ``n^a r^b x^k`` (k >= 0): a max-plus ("tropical")
polynomial, ``Poly``. Products of polynomials add monomials pairwise, sums take the union,
and the largest x at which a polynomial is still O(1) is exact: ``Poly.root``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

Number = int | float | Fraction
NEG_INF = -math.inf  # an exactly-zero quantity, where exponents are read as floats


def as_fraction(x: Number) -> Fraction:
    """An exact fraction; floats are read as the short decimal they were typed as (-0.5, 1/3 ~ 0.3333)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int):
        return Fraction(x)
    if not math.isfinite(x):
        raise ValueError(f"an exponent must be finite, got {x}")
    return Fraction(x).limit_denominator(10_000)


def fmt_fraction(q: Fraction) -> str:
    """-1/2, 0, 1, 3/4."""
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def fmt(x: Number) -> str:
    """An exponent as text, the one way the package prints one: a short signed fraction (+1,
    -1/2, 0), 'zero' for an exact zero (NEG_INF), '+inf', and '' for nan (no exponent)."""
    if x == NEG_INF:
        return "zero"
    if x == math.inf:
        return "+inf"
    if isinstance(x, float) and math.isnan(x):
        return ""
    q = as_fraction(x)
    return ("+" if q > 0 else "") + fmt_fraction(q)


class Exponent:
    """n^n r^r, ordered lexicographically (n first): the regime n -> inf before r -> inf.

    Immutable. ``n`` and ``r`` are exact fractions; inside, both are kept as integers over one
    common denominator in lowest terms, so that the algebra's inner loop is integer arithmetic.
    """

    __slots__ = ("_n", "_r", "_d")

    def __init__(self, n: Number = 0, r: Number = 0):
        qn, qr = as_fraction(n), as_fraction(r)
        d = math.lcm(qn.denominator, qr.denominator)
        _set(self, qn.numerator * (d // qn.denominator), qr.numerator * (d // qr.denominator), d)

    @property
    def n(self) -> Fraction:
        return Fraction(self._n, self._d)

    @property
    def r(self) -> Fraction:
        return Fraction(self._r, self._d)

    # -- the algebra, read on the quantities n^n r^r themselves ----------------------------
    def __mul__(self, other: Exponent) -> Exponent:
        """A product of quantities: exponents add."""
        if not isinstance(other, Exponent):
            return NotImplemented
        if self._d == other._d:
            return _make(self._n + other._n, self._r + other._r, self._d)
        d = math.lcm(self._d, other._d)
        a, b = d // self._d, d // other._d
        return _make(self._n * a + other._n * b, self._r * a + other._r * b, d)

    def __truediv__(self, other: Exponent) -> Exponent:
        """A quotient: exponents subtract."""
        return self * _make(-other._n, -other._r, other._d)

    def __pow__(self, k: Number) -> Exponent:
        """A power of the quantity: exponents scale."""
        k = as_fraction(k)
        return _make(self._n * k.numerator, self._r * k.numerator, self._d * k.denominator)

    def __or__(self, other: Exponent) -> Exponent:
        """A sum of quantities: the larger one (no cancellation)."""
        return max(self, other)

    # -- order (n first, then r) and identity ----------------------------------------------
    def _key(self, other: Exponent) -> tuple[tuple[int, int], tuple[int, int]]:
        """Both exponents over the product of their denominators: their order is the key's."""
        return (self._n * other._d, self._r * other._d), (other._n * self._d, other._r * self._d)

    def __lt__(self, other: Exponent) -> bool:
        a, b = self._key(other)
        return a < b

    def __le__(self, other: Exponent) -> bool:
        a, b = self._key(other)
        return a <= b

    def __gt__(self, other: Exponent) -> bool:
        a, b = self._key(other)
        return a > b

    def __ge__(self, other: Exponent) -> bool:
        a, b = self._key(other)
        return a >= b

    def __eq__(self, other) -> bool:
        if not isinstance(other, Exponent):
            return NotImplemented
        return self._n == other._n and self._r == other._r and self._d == other._d  # lowest terms

    def __hash__(self) -> int:
        return hash((self._n, self._r, self._d))

    # -- reading it ----------------------------------------------------------------------
    def of(self, variable: str) -> Fraction:
        """The exponent in one variable, "n" or "r"."""
        return {"n": self.n, "r": self.r}[variable]

    def project(self, variable: str) -> Exponent:
        """The exponent as seen when only ``variable`` grows: "n" drops the rank part (r fixed),
        "r" keeps both (n -> inf first, then r)."""
        return _make(self._n, 0, self._d) if variable == "n" and self._r else self

    def bounded(self) -> bool:
        """Theta(n^n r^r) = O(1) in the regime: the exponent is at most (0, 0) lexicographically."""
        return (self._n, self._r) <= (0, 0)

    def __str__(self) -> str:
        parts = [v if q == 1 else f"{v}^{fmt_fraction(q)}" for v, q in (("n", self.n), ("r", self.r)) if q != 0]
        return " ".join(parts) if parts else "1"

    def __repr__(self) -> str:
        return f"Exponent(n={fmt_fraction(self.n)}, r={fmt_fraction(self.r)})"


def _set(e: Exponent, n: int, r: int, d: int) -> None:
    """n/d, r/d in lowest terms (d > 0)."""
    g = math.gcd(n, r, d)
    e._n, e._r, e._d = n // g, r // g, d // g


def _make(n: int, r: int, d: int) -> Exponent:
    """The Exponent (n/d, r/d), d > 0 (the algebra's inner loop: no fractions built)."""
    e = object.__new__(Exponent)
    _set(e, n, r, d)
    return e


ONE = Exponent()          # Theta(1)
N = Exponent(1, 0)        # a sum of n aligned Theta(1) terms
R = Exponent(0, 1)        # a sum of r aligned Theta(1) terms
SQRT_N = Exponent(Fraction(1, 2), 0)   # a sum of n random-sign terms
SQRT_R = Exponent(0, Fraction(1, 2))   # a sum of r random-sign terms


def regime_condition(smaller: Exponent, larger: Exponent) -> Fraction | None:
    """How much larger than the rank n must be for ``smaller < larger`` to hold at a finite
    (n, r): the power q in n >> r^q when the lexicographic order was decided by n against
    the rank part (smaller.n < larger.n but smaller.r > larger.r); None when no condition is
    needed (the rank part agrees, or the n-parts tie)."""
    if smaller.n < larger.n and smaller.r > larger.r:
        return (smaller.r - larger.r) / (larger.n - smaller.n)
    return None


@dataclass(frozen=True)
class Monomial:
    """n^coef.n r^coef.r x^power, with x the learning rate being varied (power >= 0)."""

    coef: Exponent
    power: Fraction = Fraction(0)

    def at(self, g: Exponent) -> Exponent:
        """Its exponent when x = n^g.n r^g.r."""
        return self.coef if self.power == 0 else self.coef * g ** self.power

    def root(self) -> Exponent | None:
        """The x at which it is Theta(1) (None if it does not depend on x)."""
        return None if self.power == 0 else self.coef ** (-1 / self.power)


@dataclass(frozen=True)
class Poly:
    """A max-plus polynomial: the max over its monomials; no monomials = exactly zero.

    Kept as the upper envelope: a monomial that no x makes the largest is dropped (it could
    never bind), so repeated products stay small.
    """

    monomials: tuple[Monomial, ...] = ()

    @staticmethod
    def const(e: Exponent = ONE) -> Poly:
        return Poly((Monomial(e, Fraction(0)),))

    @staticmethod
    def rate(coef: Exponent = ONE, power: Number = 1) -> Poly:
        return Poly((Monomial(coef, as_fraction(power)),))

    @property
    def is_zero(self) -> bool:
        return not self.monomials

    def __bool__(self) -> bool:
        return not self.is_zero

    def __or__(self, other: Poly) -> Poly:
        """A sum of quantities: the larger one (no cancellation)."""
        if not other.monomials or self == other:
            return self
        if not self.monomials:
            return other
        return _envelope(self.monomials + other.monomials)

    def __mul__(self, other: Poly | Exponent) -> Poly:
        """A product: exponents add (anything times an exact zero is an exact zero)."""
        if isinstance(other, Exponent):  # every line moves by the same amount: still the envelope
            return Poly(tuple(Monomial(m.coef * other, m.power) for m in self.monomials))
        if len(self.monomials) == 1:
            self, other = other, self
        if len(other.monomials) == 1:  # one monomial: every line gains the same line, still the envelope
            (c, k), = ((m.coef, m.power) for m in other.monomials)
            return Poly(tuple(Monomial(m.coef * c, m.power + k) for m in self.monomials))
        return _envelope(tuple(Monomial(a.coef * b.coef, a.power + b.power)
                               for a in self.monomials for b in other.monomials))

    __rmul__ = __mul__

    def project(self, variable: str) -> Poly:
        if variable != "n" or not any(m.coef.r for m in self.monomials):
            return self
        return _envelope(tuple(Monomial(m.coef.project(variable), m.power) for m in self.monomials))

    def at(self, g: Exponent) -> Exponent | None:
        """Its exponent at x = n^g.n r^g.r (None: exactly zero)."""
        return max((m.at(g) for m in self.monomials), default=None)

    def dominant(self, g: Exponent) -> list[Monomial]:
        """The monomials that are the largest at x = g."""
        top = self.at(g)
        return [m for m in self.monomials if m.at(g) == top]

    def depends_on_rate(self) -> bool:
        return any(m.power > 0 for m in self.monomials)

    def root(self) -> Exponent | float:
        """The largest x (as an exponent) at which the polynomial is still O(1).

        math.inf: O(1) for every x (exactly zero, or free of x and bounded); -math.inf: never
        O(1) (a part free of x already grows). Otherwise an Exponent: the smallest root over
        the monomials that depend on x (each is increasing in x, so the max is O(1) exactly
        up to the first of them).
        """
        if any(m.power == 0 and not m.coef.bounded() for m in self.monomials):
            return -math.inf
        roots = [m.root() for m in self.monomials if m.power > 0]
        return min(roots) if roots else math.inf

    def text(self, var: str = "x") -> str:
        """e.g. 'max(r, n r eta_A)'; '0' for an exact zero."""
        if self.is_zero:
            return "0"
        terms = []
        for m in sorted(self.monomials, key=lambda m: m.power):
            rate = "" if m.power == 0 else var if m.power == 1 else f"{var}^{fmt_fraction(m.power)}"
            coef = "" if m.coef == ONE and rate else str(m.coef)
            terms.append(" ".join(t for t in (coef, rate) if t))
        return terms[0] if len(terms) == 1 else "max(" + ", ".join(terms) + ")"


def _envelope(monomials: tuple[Monomial, ...]) -> Poly:
    """The upper envelope of the lines coef + power * g (g in the lexicographically ordered
    plane of exponents): per power the largest coef, then the classic hull over the powers."""
    if len(monomials) < 2:
        return Poly(monomials)
    best: dict[Fraction, Exponent] = {}
    for m in monomials:
        if m.power not in best or m.coef > best[m.power]:
            best[m.power] = m.coef
    lines = sorted(best.items())
    hull: list[tuple[Fraction, Exponent]] = []
    for k, c in lines:
        while len(hull) >= 2:
            (k1, c1), (k2, c2) = hull[-2], hull[-1]
            # line 2 is never on top if line 3 overtakes line 1 no later than line 2 does
            # (crossings g13 <= g12, written on exponents: (c1/c3)^(1/(k3-k1)) <= (c1/c2)^(1/(k2-k1)),
            # compared with both sides raised to (k3-k1)(k2-k1) > 0, which keeps the order)
            if (c1 / c) ** (k2 - k1) <= (c1 / c2) ** (k - k1):
                hull.pop()
            else:
                break
        hull.append((k, c))
    return Poly(tuple(Monomial(c, k) for k, c in hull))


Poly.ZERO = Poly()
Poly.ONE = Poly.const(ONE)
