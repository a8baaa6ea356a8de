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

    # -- rendering ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {k: (None if v == NEG_INF else v) for k, v in self.exponents.items()}
        d.update(classification=self.classification, model=self.model, optimizer=self.optimizer,
                 init=self.init, gA=self.gA, gB=self.gB, step=self.step, claim=self.claim,
                 blowup_step=self.blowup_step, notes=self.notes,
                 assumptions=self.assumptions,
                 derivation=[{**asdict(s), "exponent": None if s.exponent == NEG_INF else s.exponent}
                             for s in self.derivation])
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
def _plus(*gs: float) -> float:
    """Exponent of a product: the sum, exactly zero if any factor is."""
    return NEG_INF if any(g == NEG_INF for g in gs) else float(sum(gs))


def _adam(init: str, gA: float, gB: float, steps: int):
    """Adam on a LoRA layer. State: zA = gamma[Z_A], b = gamma[entries of B]."""
    zA = {"1": 0.0, "2": NEG_INF, "zero": NEG_INF}[init]
    b = {"1": NEG_INF, "2": 0.0, "zero": NEG_INF}[init]
    history, derivation, cum = [], [], NEG_INF  # cum: gamma[Z_A(t) - Z_A(0)]
    derivation.append(Step("Z_A(0)", "A0 z", zA, "sum of n independent N(0,1/n) x Theta(1) terms" if zA == 0 else "A0 = 0"))
    derivation.append(Step("B(0)", "entries of B0", b, "Init[2]: B0 entries Theta(1)" if b == 0 else "B0 = 0"))
    for t in range(1, steps + 1):
        # grad_A = B^T G z^T vanishes iff B = 0; grad_B = G Z_A^T vanishes iff Z_A = 0.
        dAz = _plus(gA, 1) if b != NEG_INF else NEG_INF
        dB = gB if zA != NEG_INF else NEG_INF
        d1, d2, d3 = _plus(b, dAz), _plus(dB, zA), _plus(dB, dAz)
        new_zA, new_b = max(zA, dAz), max(b, dB)
        if t <= 2 or t == steps:
            derivation += [
                Step(f"dA z ({t})", "eta_A * sum_j |z_j|", dAz,
                     "grad_A is zero while B = 0" if dAz == NEG_INF else "sign-like Adam step aligned with z: n terms of size eta_A"),
                Step(f"dB ({t})", "eta_B * sign(G Z_A^T)", dB,
                     "grad_B is zero while Z_A = 0" if dB == NEG_INF else "sign-like Adam step: entries eta_B"),
                Step(f"delta1 ({t})", "B(t-1) dA z", d1, f"gamma[B(t-1)] + gamma[dA z] = {fmt(b)} + {fmt(dAz)}"),
                Step(f"delta2 ({t})", "dB Z_A(t-1)", d2, f"gamma[dB] + gamma[Z_A(t-1)] = {fmt(dB)} + {fmt(zA)} (r terms)"),
                Step(f"delta3 ({t})", "dB dA z", d3, f"gamma[dB] + gamma[dA z] = {fmt(dB)} + {fmt(dAz)}"),
                Step(f"Z_A ({t})", "Z_A(t-1) + dA z", new_zA, f"max({fmt(zA)}, {fmt(dAz)}): updates accumulate"),
                Step(f"B ({t})", "B(t-1) + dB", new_b, f"max({fmt(b)}, {fmt(dB)})"),
            ]
        zA, b, cum = new_zA, new_b, max(cum, dAz)
        history.append({"delta1": d1, "delta2": d2, "delta3": d3, "z_a": zA, "dz_a": cum, "dz_b": max(d1, d2, d3)})
    return history, derivation


def _sgd_toy(init: str, gA: float, gB: float, steps: int):
    """Gradient descent on f(x) = (W* + b a^T) x. State: ax = gamma[a^T x], b = gamma[b]."""
    ax = {"1": 0.0, "2": NEG_INF, "zero": NEG_INF}[init]
    b = {"1": NEG_INF, "2": 0.0, "zero": NEG_INF}[init]
    history, cum = [], NEG_INF  # cum: gamma[a(t)^T x - a(0)^T x]
    derivation = [Step("a^T x (0)", "a0^T x", ax, "n terms of size 1/sqrt(n), independent" if ax == 0 else "a0 = 0"),
                  Step("b (0)", "b0", b, "Init[2]: b0 = Theta(1)" if b == 0 else "b0 = 0")]
    for t in range(1, steps + 1):
        u = max(0.0, _plus(b, ax))  # U = W* x + b a^T x - y
        db = _plus(gB, u, ax)       # grad_b = U a^T x
        dax = _plus(gA, u, b, 1)    # da^T x = -eta_a U b ||x||^2, ||x||^2 = n
        d1, d2, d3 = _plus(b, dax), _plus(db, ax), _plus(db, dax)
        new_ax, new_b = max(ax, dax), max(b, db)
        if t <= 2 or t == steps:
            derivation += [
                Step(f"U ({t})", "W* x + b a^T x - y", u, f"max(0, gamma[b] + gamma[a^T x]) = max(0, {fmt(b)} + {fmt(ax)})"),
                Step(f"db ({t})", "-eta_b U a^T x", db, f"gB + gamma[U] + gamma[a^T x]"),
                Step(f"da^T x ({t})", "-eta_a U b ||x||^2", dax, "gA + gamma[U] + gamma[b] + 1 (||x||^2 = n, aligned)"),
                Step(f"delta1 ({t})", "-eta_a b^2 U ||x||^2", d1, f"gamma[b] + gamma[da^T x] = {fmt(b)} + {fmt(dax)}"),
                Step(f"delta2 ({t})", "-eta_b (a^T x)^2 U", d2, f"gamma[db] + gamma[a^T x] = {fmt(db)} + {fmt(ax)}"),
                Step(f"delta3 ({t})", "eta_a eta_b U^2 b (a^T x) ||x||^2", d3, f"gamma[db] + gamma[da^T x]"),
                Step(f"a^T x ({t})", "a(t-1)^T x + da^T x", new_ax, f"max({fmt(ax)}, {fmt(dax)})"),
                Step(f"b ({t})", "b(t-1) + db", new_b, f"max({fmt(b)}, {fmt(db)})"),
            ]
        ax, b, cum = new_ax, new_b, max(cum, dax)
        history.append({"delta1": d1, "delta2": d2, "delta3": d3, "z_a": ax, "dz_a": cum, "dz_b": max(d1, d2, d3),
                        "output": max(0.0, _plus(b, ax))})
    return history, derivation


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
                      classify(history[-1]), derivation, notes, assumptions, claim, blowup)


@dataclass
class FirstStepPrediction:
    """Predicted exponent of one LoRA layer's first-step loss decrease (``loss_drop`` at t = 1)."""

    exponent: float
    derivation: list[Step]


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
    return FirstStepPrediction(g, steps)


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
