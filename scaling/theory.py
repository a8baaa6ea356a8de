"""Predicted width exponents of a LoRA layer's feature updates, with their derivations.

The prediction is a small "gamma calculus": every quantity is Theta(n^gamma) and tracked by
its exponent gamma alone, -inf meaning "exactly zero". Products add exponents, sums take
the max (no cancellation assumed), and the optimiser step is followed step by step from
the initialisation, so crossovers in t (a term that is zero or subleading at t = 1 and
dominates later) come out of the recursion rather than being guessed. Exponents are the
n -> infinity limit at a FIXED step t.

Quantities (THEORY.md): Z_A = A z, Z_B = B Z_A for a LoRA layer with input z (coordinates
Theta(1)); one step changes Z_B by delta1 = B dA z, delta2 = dB A z, delta3 = dB dA z.
Rates eta_A = Theta(n^gA), eta_B = Theta(n^gB); rank r and alpha/r are Theta(1).

Covered:
- Adam / AdamW, Init[1] (B0 = 0, A0 ~ N(0, 1/n)) and Init[2] (A0 = 0, B0 = Theta(1)), and
  both-zero: models ``linear`` and ``toy`` (one LoRA layer) and every hidden layer of ``mlp``
  (assumptions listed in ``ASSUMPTIONS``). Adam's step is sign-like, so entries of dA are
  Theta(eta_A) and dA z = Theta(eta_A n) (the update is aligned with the input; the paper's
  Assumption 1), whatever the loss normalisation.
- SGD (gradient descent) on the paper's toy model f(x) = (W* + b a^T) x with loss
  0.5 * mean over the batch of (f - y)^2. With one output, "mean" and "sum" over output
  coordinates coincide; a batch of N samples changes no exponent as long as n >> N. The error
  U = f - y is Theta(n^max(0, gamma[b a^T x])).

Past the blow-up (unstable schemes only): "no cancellation" is justified while the state
that produces the gradient is Theta(1). Once a feature or the output has grown like a
positive power of n (the blow-up step), the output overshoots its target, the error flips
sign and later updates undo earlier ones. From the step after the blow-up on, the recursion's
exponents are therefore claimed only as an UPPER BOUND for Adam (its steps are bounded,
|m_hat / sqrt(v_hat)| = O(1) per entry, so no quantity can grow faster than with every update
aligned), and not at all for SGD (the error feeds back into the gradient: the run diverges and
no finite exponent is predicted). ``Prediction.claim`` says which applies.

Overshoot (Adam, Init[2], a LoRA layer whose n outputs the loss sees directly: ``linear``):
the error that reaches A is B0^T E. For an error direction independent of the random B0 that
is Theta(sqrt n), while B0^T B0 = Theta(n), so the value of Z_A that A alone should reach is
only Theta(n^-1/2). A first step dA z = Theta(n^(1 + gA)) larger than that (1 + gA > -1/2:
every scheme of interest) overshoots it by a power of n; from step 2 on the gradient is
dominated by the overshoot itself, its sign flips and updates cancel, so past step 1 the
exponents are upper bounds here too. (Measured: with the teacher's output directions set to
span(B0), the optimum is Theta(1) and z_a is flat in n at every step; with an independent
teacher it falls with n from step 2 on.) Not in ``toy`` (a scalar b0) and not in ``mlp``:
there the hidden layers reach the loss through a mean-field readout w (entries 1/n), the
output moves by w^T B0 dZ_A = Theta(n^-1/2) dZ_A, so A's target is Theta(n^1/2), far beyond
Theta(1) steps: nothing to overshoot, the exponents stay exact.

The B0 path (Init[2], finite width): that same random sum is a term the fixed-t exponents
drop. A's steps move the features along B0's random columns, and the loss sees that only as
Theta(n^(gA + 1/2)) per step (``first_step_loss_drop``; for LoRA+ and lora-inv n^-1/2). At
n = 128 it is most of the mlp's early loss decrease, so narrow widths train faster at a given
step than the limit says, and the late-step slopes of Z_A and the deltas carry the excess until
n is large enough for the path to be negligible by that step (the validate report's "Known
reasons"; measurements in docs/investigations/init2_b0_path.md).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

NEG_INF = -math.inf
PREDICTED_METRICS = ("delta1", "delta2", "delta3", "z_a", "dz_a", "dz_b")
CLASSES = ("unstable", "efficient", "A-side lazy", "B-side lazy", "both lazy", "frozen")
SUPPORTED = {("adam", "toy"), ("adam", "linear"), ("adam", "mlp"), ("adamw", "toy"),
             ("adamw", "linear"), ("adamw", "mlp"), ("sgd", "toy")}
INIT_NAMES = {"1": "Init[1] (B0 = 0, A0 ~ N(0, 1/n))", "2": "Init[2] (A0 = 0, B0 = Theta(1))",
              "zero": "both zero"}
LATE_STEP = 6  # every recursion here has reached its pattern by then: used to classify
CLAIMS = ("exact", "upper bound", "none")
OVERSHOOT_MODELS = ("linear",)  # Init[2]'s first A-step overshoots A's target (see "Overshoot")

ASSUMPTIONS = {
    "adam": ["each LoRA layer's input z has Theta(1) coordinates (a stable base network)",
             "Adam's update is sign-like: entries of dA, dB are Theta(eta) once their gradient is non-zero",
             "dA z = Theta(eta_A n): the update of A is aligned with the input (needs n >> batch size)",
             "rank r, alpha and the output-side gradient are Theta(1) and non-zero; no cancellations"],
    "sgd": ["the paper's toy model f(x) = (W* + b a^T) x, x with Theta(1) coordinates, W* x = Theta(1)",
            "loss 0.5 * mean over the batch of (f - y)^2 (one output: mean = sum over outputs)",
            "||x||^2 = Theta(n) dominates the cross terms x_i^T x_j = Theta(sqrt n) (needs n >> batch size)",
            "no cancellations between terms"],
    "mlp": ["every hidden layer is a LoRA layer with the Adam derivation; deeper layers' inputs stay "
            "Theta(1) only while the scheme is stable, so for unstable schemes only the first layer's "
            "prediction is sharp"],
}


def fmt(g: float) -> str:
    """An exponent as text: 'zero' for -inf, otherwise a short signed number."""
    if g == NEG_INF:
        return "zero"
    if math.isinf(g):
        return "+inf"
    return f"{g:+.3g}".replace("+0", "0") if g != 0 else "0"


@dataclass
class Step:
    """One line of a derivation: quantity ~ expression, its exponent, and why."""

    quantity: str
    expression: str
    exponent: float
    reason: str


@dataclass
class Correction:
    """The term next in size after a predicted exponent's leading one, at finite width.

    y = c n^leading (1 + d n^-omega + ...), omega = leading - runner_up; None where no
    correction is derived (an exact zero, or an exponent claimed only as a bound)."""

    leading: float
    runner_up: float | None
    term: str
    omega: float | None
    derivation: str

    def to_dict(self) -> dict:
        return {"leading": None if self.leading == NEG_INF else self.leading, "runner_up": self.runner_up,
                "term": self.term, "omega": self.omega, "derivation": self.derivation}


@dataclass
class Prediction:
    model: str
    optimizer: str
    init: str
    gA: float
    gB: float
    step: int
    exponents: dict[str, float]
    classification: str
    derivation: list[Step]
    notes: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    claim: str = "exact"            # one of CLAIMS: how the exponents are to be read
    blowup_step: int | None = None  # first step after which a feature has exploded
    corrections: dict[str, Correction] = field(default_factory=dict)  # per metric: the runner-up term

    # -- rendering ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {k: (None if v == NEG_INF else v) for k, v in self.exponents.items()}
        d.update(classification=self.classification, model=self.model, optimizer=self.optimizer,
                 init=self.init, gA=self.gA, gB=self.gB, step=self.step, claim=self.claim,
                 blowup_step=self.blowup_step, notes=self.notes,
                 assumptions=self.assumptions,
                 derivation=[{**asdict(s), "exponent": None if s.exponent == NEG_INF else s.exponent}
                             for s in self.derivation],
                 corrections={k: c.to_dict() for k, c in self.corrections.items()})
        return d

    def header(self) -> str:
        return (f"{self.optimizer} / {INIT_NAMES.get(self.init, self.init)} / model {self.model}: "
                f"gA = {self.gA:g}, gB = {self.gB:g} (eta_B/eta_A = Theta(n^{self.gB - self.gA:g})), step {self.step}")

    def to_text(self, explain: bool = False) -> str:
        lines = [self.header()]
        rel = {"exact": "=", "upper bound": "<=", "none": "(not predicted; no-cancellation value)"}[self.claim]
        lines += [f"  gamma[{k}] {rel} {fmt(v)}" for k, v in self.exponents.items()]
        lines.append(f"  classification: {self.classification}")
        if self.claim != "exact":
            lines.append(f"  claim: {self.claim} (step {self.step} is past the blow-up at step {self.blowup_step})")
        lines += [f"  note: {n}" for n in self.notes]
        if explain:
            lines.append("derivation (exponent of each quantity; 'zero' = exactly zero):")
            lines += [f"  {s.quantity:<16} = {s.expression:<34} gamma = {fmt(s.exponent):<6} {s.reason}"
                      for s in self.derivation]
            lines.append("corrections to scaling (y = c n^gamma (1 + d n^-omega)):")
            lines += [f"  {k:<7} omega = {'none' if c.omega is None else f'{c.omega:g}':<5} {c.term}"
                      for k, c in self.corrections.items()]
            lines += [f"  - {d}" for d in dict.fromkeys(c.derivation for c in self.corrections.values())]
            lines.append("assumptions:")
            lines += [f"  - {a}" for a in self.assumptions]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        lines = [f"**{self.header()}**", "", "| quantity | expression | exponent | reason |",
                 "| --- | --- | --- | --- |"]
        lines += [f"| {s.quantity} | `{s.expression}` | {fmt(s.exponent)} | {s.reason} |" for s in self.derivation]
        lines += ["", "Predicted: " + ", ".join(f"gamma[{k}] = {fmt(v)}" for k, v in self.exponents.items())
                  + f"; classification **{self.classification}**; claim: {self.claim}."]
        lines += [f"- note: {n}" for n in self.notes]
        lines += ["", "Assumptions:"] + [f"- {a}" for a in self.assumptions]
        return "\n".join(lines)

    def to_latex(self) -> str:
        def tex(g):
            return r"-\infty" if g == NEG_INF else f"{g:g}"
        rows = [rf"\texttt{{{s.quantity.replace('_', chr(92) + '_')}}} & "
                rf"\texttt{{{s.expression.replace('_', chr(92) + '_').replace('^', chr(92) + '^{}')}}} & "
                rf"${tex(s.exponent)}$ & {s.reason.replace('_', chr(92) + '_')} \\" for s in self.derivation]
        return "\n".join([r"\begin{tabular}{llll}", r"\hline",
                          r"quantity & expression & $\gamma$ & reason \\", r"\hline", *rows,
                          r"\hline", r"\end{tabular}",
                          rf"% classification: {self.classification}; claim: {self.claim}"])


# -- the recursions -------------------------------------------------------------------------
# Each quantity is kept as its two largest terms, Terms = ((exponent, what), ...) largest first
# with distinct exponents; () is exactly zero. The leading exponent is the prediction; the second
# is the runner-up that a plain max() would drop (scaling.gamma.fit_corrected uses it).
def _plus(*gs: float) -> float:
    """Exponent of a product: the sum, exactly zero if any factor is."""
    return NEG_INF if any(g == NEG_INF for g in gs) else float(sum(gs))


def _term(g: float, what: str) -> tuple:
    return () if g == NEG_INF else ((float(g), what),)


def _add(*xs: tuple) -> tuple:
    """Terms of a sum: the two largest distinct exponents (terms of the same order merge)."""
    out: list = []
    for g, what in sorted((p for x in xs for p in x), key=lambda p: -p[0]):
        if not out or g < out[-1][0] - 1e-12:
            out.append((g, what))
    return tuple(out[:2])


def _mul(what: str, *xs: tuple) -> tuple:
    """Terms of a product called ``what``: the sum of the leading exponents, and each factor's
    runner-up times the other factors' leading terms."""
    if any(not x for x in xs):
        return ()
    lead = sum(x[0][0] for x in xs)
    return _add(((lead, what),), *[((lead - x[0][0] + x[1][0], x[1][1]),) for x in xs if len(x) > 1])


def _lead(x: tuple) -> float:
    return x[0][0] if x else NEG_INF


def _adam(init: str, gA: float, gB: float, steps: int):
    """Adam on a LoRA layer. State: zA = Z_A's terms, b = the terms of B's entries."""
    zA = _term({"1": 0.0}.get(init, NEG_INF), "Z_A(0) = A0 z, the initial features")
    b = _term({"2": 0.0}.get(init, NEG_INF), "B0, the initial B")
    history, derivation, cum = [], [], ()  # cum: Z_A(t) - Z_A(0)
    derivation.append(Step("Z_A(0)", "A0 z", _lead(zA), "sum of n independent N(0,1/n) x Theta(1) terms" if zA else "A0 = 0"))
    derivation.append(Step("B(0)", "entries of B0", _lead(b), "Init[2]: B0 entries Theta(1)" if b else "B0 = 0"))
    for t in range(1, steps + 1):
        # grad_A = B^T G z^T vanishes iff B = 0; grad_B = G Z_A^T vanishes iff Z_A = 0.
        dAz = _term(_plus(gA, 1), "the updates dA z") if b else ()
        dB = _term(gB, "the learned part of B, sum of dB") if zA else ()
        d1, d2, d3 = _mul("delta1", b, dAz), _mul("delta2", dB, zA), _mul("delta3", dB, dAz)
        new_zA, new_b = _add(zA, dAz), _add(b, dB)
        if t <= 2 or t == steps:
            derivation += [
                Step(f"dA z ({t})", "eta_A * sum_j |z_j|", _lead(dAz),
                     "grad_A is zero while B = 0" if not dAz else "sign-like Adam step aligned with z: n terms of size eta_A"),
                Step(f"dB ({t})", "eta_B * sign(G Z_A^T)", _lead(dB),
                     "grad_B is zero while Z_A = 0" if not dB else "sign-like Adam step: entries eta_B"),
                Step(f"delta1 ({t})", "B(t-1) dA z", _lead(d1), f"gamma[B(t-1)] + gamma[dA z] = {fmt(_lead(b))} + {fmt(_lead(dAz))}"),
                Step(f"delta2 ({t})", "dB Z_A(t-1)", _lead(d2), f"gamma[dB] + gamma[Z_A(t-1)] = {fmt(_lead(dB))} + {fmt(_lead(zA))} (r terms)"),
                Step(f"delta3 ({t})", "dB dA z", _lead(d3), f"gamma[dB] + gamma[dA z] = {fmt(_lead(dB))} + {fmt(_lead(dAz))}"),
                Step(f"Z_A ({t})", "Z_A(t-1) + dA z", _lead(new_zA), f"max({fmt(_lead(zA))}, {fmt(_lead(dAz))}): updates accumulate"),
                Step(f"B ({t})", "B(t-1) + dB", _lead(new_b), f"max({fmt(_lead(b))}, {fmt(_lead(dB))})"),
            ]
        zA, b, cum = new_zA, new_b, _add(cum, dAz)
        terms = {"delta1": d1, "delta2": d2, "delta3": d3, "z_a": zA, "dz_a": cum, "dz_b": _add(d1, d2, d3)}
        history.append({**{k: _lead(v) for k, v in terms.items()}, "terms": terms})
    return history, derivation


def _sgd_toy(init: str, gA: float, gB: float, steps: int):
    """Gradient descent on f(x) = (W* + b a^T) x. State: ax = a^T x's terms, b = b's terms."""
    ax = _term({"1": 0.0}.get(init, NEG_INF), "a0^T x, the initial features")
    b = _term({"2": 0.0}.get(init, NEG_INF), "b0, the initial b")
    history, cum = [], ()  # cum: a(t)^T x - a(0)^T x
    derivation = [Step("a^T x (0)", "a0^T x", _lead(ax), "n terms of size 1/sqrt(n), independent" if ax else "a0 = 0"),
                  Step("b (0)", "b0", _lead(b), "Init[2]: b0 = Theta(1)" if b else "b0 = 0")]
    for t in range(1, steps + 1):
        # U = W* x + b a^T x - y: the initial error W* x - y is Theta(1)
        u = _add(_term(0.0, "the initial error W* x - y"), _mul("the learned output b a^T x", b, ax))
        db = _mul("db", _term(gB, "eta_b"), u, ax)                  # grad_b = U a^T x
        dax = _mul("the updates da^T x", _term(_plus(gA, 1), "eta_a ||x||^2"), u, b)  # -eta_a U b ||x||^2
        d1, d2, d3 = _mul("delta1", b, dax), _mul("delta2", db, ax), _mul("delta3", db, dax)
        new_ax, new_b = _add(ax, dax), _add(b, db)
        if t <= 2 or t == steps:
            derivation += [
                Step(f"U ({t})", "W* x + b a^T x - y", _lead(u), f"max(0, gamma[b] + gamma[a^T x]) = max(0, {fmt(_lead(b))} + {fmt(_lead(ax))})"),
                Step(f"db ({t})", "-eta_b U a^T x", _lead(db), f"gB + gamma[U] + gamma[a^T x]"),
                Step(f"da^T x ({t})", "-eta_a U b ||x||^2", _lead(dax), "gA + gamma[U] + gamma[b] + 1 (||x||^2 = n, aligned)"),
                Step(f"delta1 ({t})", "-eta_a b^2 U ||x||^2", _lead(d1), f"gamma[b] + gamma[da^T x] = {fmt(_lead(b))} + {fmt(_lead(dax))}"),
                Step(f"delta2 ({t})", "-eta_b (a^T x)^2 U", _lead(d2), f"gamma[db] + gamma[a^T x] = {fmt(_lead(db))} + {fmt(_lead(ax))}"),
                Step(f"delta3 ({t})", "eta_a eta_b U^2 b (a^T x) ||x||^2", _lead(d3), f"gamma[db] + gamma[da^T x]"),
                Step(f"a^T x ({t})", "a(t-1)^T x + da^T x", _lead(new_ax), f"max({fmt(_lead(ax))}, {fmt(_lead(dax))})"),
                Step(f"b ({t})", "b(t-1) + db", _lead(new_b), f"max({fmt(_lead(b))}, {fmt(_lead(db))})"),
            ]
        ax, b, cum = new_ax, new_b, _add(cum, dax)
        terms = {"delta1": d1, "delta2": d2, "delta3": d3, "z_a": ax, "dz_a": cum, "dz_b": _add(d1, d2, d3)}
        history.append({**{k: _lead(v) for k, v in terms.items()}, "terms": terms,
                        "output": max(0.0, _plus(_lead(b), _lead(ax)))})
    return history, derivation


# -- corrections to scaling ----------------------------------------------------------------
FLUCTUATION_OMEGA = 1.0
_FLUCTUATIONS = ("finite-width fluctuations: zero-mean random parts of relative size n^-1/2 (the batch's cross "
                 "terms x_i^T x_j against ||x||^2 = n, the random part of an aligned sum) move the seed mean of "
                 "log y only at their square, n^-1, with an amplitude that grows with the batch size")
_B0_PATH = ("the B0 path: A's steps move the features along B0's random columns, which the readout sees as a "
            "random sum; Adam's step follows that sum's sign, so the loss falls by a systematic Theta(n^{g}) per "
            "step beside the limit's dynamics, and every quantity after step 1 carries it at relative n^{g} "
            "(first_step_loss_drop; docs/investigations/init2_b0_path.md)")
_TOY_LINE = ("the batch's cross terms where the error vanishes: with one output and x_i^T x_j = n delta_ij + "
             "Theta(n^1/2), every sample's error moves by one common factor at leading order, U(t) = alpha_t U(0), "
             "and once the output has moved by Theta(1) alpha_t passes through 0 with a positive density over seeds. "
             "The cross terms add a part of U(t) off that line, of relative size n^-1/2, which dominates where "
             "alpha_t ~ 0; a per-sample vector built from U(t) (dA z: delta1, delta3, dz_b, z_a, dz_a; delta2 "
             "through Z_A(t-1) from step 3) then has a seed mean of log y off by Theta(n^-1/2) (the integral of "
             "log|alpha + i eps| - log|alpha| over alpha is pi eps), not the n^-1 of a zero-mean fluctuation")
_TOY_LINE_METRICS = ("delta1", "delta3", "dz_b", "z_a", "dz_a")


def corrections(model: str, optimizer: str, init: str, gA: float, step: int, history: list[dict],
                claim: str) -> dict[str, Correction]:
    """Per predicted metric at ``step``: the largest term competing with the leading one.

    Sources (the smallest omega wins; every one is derived, none is fitted):
    - the recursion's own sums, where max() drops a smaller term (Z_A(0) against the updates,
      B0 against the learned B, the terms of dz_b, the initial error against the learned output);
    - finite-width fluctuations: omega = 1 wherever an exponent is predicted;
    - the B0 path (mlp, Adam, Init[2], gA < -1/2, steps >= 2): omega = -(gA + 1/2);
    - the toy model's one-dimensional error (one output, Init[2], steps >= 2 once the output has
      moved by Theta(1)): omega = 1/2 for per-sample vectors built from the error (_TOY_LINE).
    Under Init[1] the toy's error moves along two directions (U(0) and a0^T x) and vanishes
    nowhere on a line, so the fluctuations' n^-1 stays the largest there.
    """
    at = history[step - 1]
    moved = any(h["dz_b"] >= -1e-12 for h in history[:step - 1])  # the output moved by Theta(1) before t
    out = {}
    for k in PREDICTED_METRICS:
        lead = at[k]
        if lead == NEG_INF:
            out[k] = Correction(lead, None, "none", None, "predicted exactly zero: nothing to correct")
            continue
        if claim != "exact":
            out[k] = Correction(lead, None, "none", None, f"claimed as {'an upper bound' if claim == 'upper bound' else 'nothing'}"
                                " past a blow-up or overshoot: no correction is derived")
            continue
        found = [(FLUCTUATION_OMEGA, "finite-width fluctuations", _FLUCTUATIONS)]
        terms = at["terms"][k]
        if len(terms) > 1:
            found.append((lead - terms[1][0], terms[1][1],
                          f"the recursion's sum keeps n^{fmt(lead)} and drops {terms[1][1]}, n^{fmt(terms[1][0])}"))
        if model == "mlp" and optimizer == "adam" and init == "2" and gA + 0.5 < 0 and step >= 2:
            found.append((-(gA + 0.5), "the B0 path", _B0_PATH.format(g=fmt(gA + 0.5))))
        if (model == "toy" and init == "2" and moved
                and (k in _TOY_LINE_METRICS or (k == "delta2" and step >= 3))):
            found.append((0.5, "the batch's cross terms where the error vanishes", _TOY_LINE))
        omega = min(f[0] for f in found)
        chosen = [f for f in found if abs(f[0] - omega) < 1e-12]
        out[k] = Correction(lead, lead - omega, " and ".join(f[1] for f in chosen), omega,
                            "; ".join(f[2] for f in chosen))
    return out


def classify(late: dict[str, float]) -> str:
    """Class from the exponents at a late step: unstable / efficient / lazy sides / frozen."""
    if all(late[k] == NEG_INF for k in ("delta1", "delta2", "delta3")):
        return "frozen"
    if late["z_a"] > 1e-12 or late["dz_b"] > 1e-12 or late.get("output", 0.0) > 1e-12:
        return "unstable"
    lazy_a, lazy_b = late["delta1"] < -1e-12, late["delta2"] < -1e-12
    if not lazy_a and not lazy_b:
        return "efficient"
    if lazy_a and lazy_b:
        return "both lazy"
    return "A-side lazy" if lazy_a else "B-side lazy"


def _history(model: str, optimizer: str, init: str, gA: float, gB: float, steps: int):
    if (optimizer, model) not in SUPPORTED:
        raise ValueError(f"no derivation for {optimizer} on model {model!r}: SGD exponents depend on the "
                         "loss normalisation and readout, and are derived for the toy model only")
    if init not in INIT_NAMES:
        raise ValueError(f"no derivation for init {init!r}; choose from {', '.join(INIT_NAMES)}")
    return (_sgd_toy if optimizer == "sgd" else _adam)(init, float(gA), float(gB), steps)


def predict(model: str, optimizer: str, init: str, gA: float, gB: float, step: int) -> Prediction:
    """Predicted exponents of delta1..3, z_a and dz_b after ``step`` (>= 1) optimiser steps."""
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    optimizer = "adam" if optimizer == "adamw" else optimizer  # decoupled decay: no exponent change
    steps = max(step, LATE_STEP)
    history, derivation = _history(model, optimizer, init, gA, gB, steps)
    at = history[step - 1]
    exps = {k: at[k] for k in PREDICTED_METRICS}
    notes = []
    for k in PREDICTED_METRICS:
        late = history[-1][k]
        if late != exps[k]:
            notes.append(f"{k} is step-dependent: gamma = {fmt(exps[k])} at t = {step}, {fmt(late)} by t = {steps}")
    if optimizer == "adam" and init == "1" and 1 + gA > 0:
        notes.append("Z_A = Z_A(0) + sum of updates: the Theta(1) initial part competes with the growing "
                     "updates, so at finite width the slopes of z_a and delta2 approach their limit from below")
    if optimizer == "adam" and init == "2" and gB > 0 and history[-1]["delta1"] == 0 and history[-1]["delta2"] == 0:
        notes.append("Init[2] has a rescaling family of efficient points gA = -1 - gB, gB >= 0 (A -> A/c, B -> cB); "
                     "only gB = 0 keeps B's entries Theta(1)")
    if optimizer == "adam" and init == "2" and model == "mlp" and gA + 0.5 < 0:
        notes.append(f"finite width: the B0 path moves the output by Theta(n^{fmt(gA + 0.5)}) per step, zero in this "
                     "limit but not small at n ~ 10^2 .. 10^4, where it lifts late-step slopes "
                     "(first_step_loss_drop; docs/investigations/init2_b0_path.md)")
    blowup = blowup_step(history)
    claim = "exact"
    if optimizer == "adam" and init == "2" and model in OVERSHOOT_MODELS and 1 + gA > -0.5 and step > 1:
        claim = "upper bound"
        derivation.append(Step(f"claim ({step})", "past the overshoot", exps["dz_b"],
                               "Init[2], loss on the n outputs: B0^T E = Theta(sqrt n) makes A's target Z_A Theta(n^-1/2); "
                               f"the first step (gamma {fmt(1 + gA)}) overshoots it, later steps cancel: upper bounds"))
        notes.append("Init[2] with the loss on the layer's n outputs: the first A-step overshoots A's Theta(n^-1/2) target, "
                     "so past step 1 the exponents are upper bounds")
    if blowup is not None and step > blowup and claim == "exact":
        claim = "none" if optimizer == "sgd" else "upper bound"
        derivation.append(Step(f"claim ({step})", "past the blow-up", NEG_INF if claim == "none" else exps["dz_b"],
                               f"a feature exploded at step {blowup}: the output overshoots and later updates "
                               + ("cancel earlier ones; Adam's bounded steps make these exponents upper bounds"
                                  if claim == "upper bound" else "feed back through the error: SGD diverges, "
                                  "no finite exponent is predicted")))
        notes.append(f"past the blow-up at step {blowup}: exponents are "
                     + ("upper bounds (cancellation allowed)" if claim == "upper bound" else "not predicted (divergence)"))
    assumptions = ASSUMPTIONS["sgd" if optimizer == "sgd" else "adam"] + (ASSUMPTIONS["mlp"] if model == "mlp" else [])
    return Prediction(model, optimizer, init, float(gA), float(gB), step, exps,
                      classify(history[-1]), derivation, notes, assumptions, claim, blowup,
                      corrections(model, optimizer, init, float(gA), step, history, claim))


@dataclass
class FirstStepPrediction:
    """Predicted exponent of one LoRA layer's first-step loss decrease (``loss_drop`` at t = 1)."""

    exponent: float
    derivation: list[Step]
    correction: Correction | None = None  # the runner-up term (None: exactly zero)


def first_step_loss_drop(model: str, optimizer: str, init: str, gA: float, gB: float,
                         loss_reduction: str = "mean") -> FirstStepPrediction | None:
    """The first-order loss decrease of the first Adam step through one LoRA layer,
    -<grad_A, dA> - <grad_B, dB> = eta_A sum |grad_A| + eta_B sum |grad_B| (Adam's first step
    is sign(grad) times the rate); None where not derived (SGD, unknown init).

    The layer reaches the loss through a vector v of n coordinates, each Theta(1/n): the
    back-propagated readout W_out (entries 1/n) in the ``mlp``, the error E / n of the mean
    loss over the n outputs in ``linear`` (with ``loss_reduction="sum"`` it is E, and every
    exponent there is one larger: the loss itself is then Theta(n)). The ``toy`` model has one
    output and a scalar b.
    - Init[1] (B0 = 0): grad_A = 0; grad_B = v Z_A(0)^T has n r entries Theta(1/n): gamma = gB.
    - Init[2] (A0 = 0): grad_B = 0; grad_A = (B0^T v) z^T, and B0^T v is a sum of n terms of
      size 1/n with random signs (B0's columns are independent of v): Theta(n^-1/2) per entry
      over n r entries, gamma = gA + 1/2 (toy: grad_a = b0 U x, entries Theta(1): gamma = 1 + gA).
    The Init[2] decrease is the "B0 path": the feature change B0 dA z = Theta(n^(1 + gA)) lies
    along random directions that the readout sees only as a random sum. The fixed-t exponents
    of the recursion leave it out (for LoRA+ and lora-inv it vanishes like n^-1/2), but at
    n = 128 it is most of the early loss decrease, and it is what the mlp's Init[2] transient
    (report, "Known reasons") is made of. Exact at any (gA, gB): at step 1 every quantity is at
    its initial value, and a sum of absolute values cannot cancel.
    """
    if optimizer not in ("adam", "adamw") or init not in INIT_NAMES or (optimizer, model) not in SUPPORTED:
        return None
    if init == "zero":
        return FirstStepPrediction(NEG_INF, [Step("loss_drop (1)", "no gradient at the saddle", NEG_INF,
                                                  "A = B = 0: every LoRA gradient is zero")])
    toy = model == "toy"  # one output and a scalar b: no sum over the output coordinates
    if init == "1":
        g = float(gB)
        grad = (Step("grad_b (1)", "U a0^T x", 0.0, "one Theta(1) entry") if toy else
                Step("grad_B (1)", "v Z_A(0)^T", -1.0, "aligned with v: n r entries of size 1/n"))
        drop = Step("loss_drop (1)", "eta_B sum |grad_B|", g, "gB + gamma[grad_B] + gamma[number of entries]")
    else:
        g = float(gA) + (1.0 if toy else 0.5)
        grad = (Step("grad_a (1)", "b0 U x", 0.0, "b0 = Theta(1): n entries Theta(1)") if toy else
                Step("grad_A (1)", "(B0^T v) z^T", -0.5, "B0^T v: n terms of size 1/n with random signs (B0 independent of v)"))
        drop = Step("loss_drop (1)", "eta_A sum |grad_A|", g, "gA + gamma[grad_A] + 1 (n r entries)")
    steps = [grad, drop]
    if model == "linear" and loss_reduction == "sum":
        g += 1.0
        steps.append(Step("loss_drop (1)", "sum over outputs", g, "v = E instead of E / n: one power of n more"))
    # A sum of absolute values at the initial state: nothing cancels and nothing has moved yet,
    # so only the fluctuations of its n terms compete.
    return FirstStepPrediction(g, steps, Correction(g, g - FLUCTUATION_OMEGA, "finite-width fluctuations",
                                                    FLUCTUATION_OMEGA, _FLUCTUATIONS))


def blowup_step(history: list[dict[str, float]]) -> int | None:
    """First step (1-based) after which Z_A, the output or the cumulative change of Z_B has
    a positive exponent; None if the recursion never explodes."""
    for t, h in enumerate(history, start=1):
        if max(h["z_a"], h["dz_b"], h.get("output", NEG_INF)) > 1e-12:
            return t
    return None


def phase_diagram(optimizer: str, init: str, model: str = "linear",
                  gA_range=(-2.0, 1.0), gB_range=(-2.0, 1.0), resolution: float = 0.05):
    """Classification over a (gA, gB) grid: (gA values, gB values, class index array (len gB, len gA))."""
    gAs = np.round(np.arange(gA_range[0], gA_range[1] + 1e-9, resolution), 6)
    gBs = np.round(np.arange(gB_range[0], gB_range[1] + 1e-9, resolution), 6)
    grid = np.array([[CLASSES.index(predict(model, optimizer, init, a, b, LATE_STEP).classification)
                      for a in gAs] for b in gBs])
    return gAs, gBs, grid
