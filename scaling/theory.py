"""Predicted width exponents of a LoRA layer's feature updates, with their derivations.

The prediction is the gamma calculus (``scaling.exponents``) run at fixed rates: every quantity
is Theta(n^gamma), products add exponents, sums take the max (no cancellation assumed), and an
exactly-zero quantity is tracked as such. The optimiser step is followed step by step from the
initialisation (``scaling.recursion``, the same recursion the learning-rate laws solve), so
crossovers in t (a term that is zero or subleading at t = 1 and dominates later) come out of
the recursion rather than being guessed. Exponents are the n -> infinity limit at a FIXED step
t, with r and alpha/r Theta(1); here they are floats, and an exact zero is -inf (``NEG_INF``).

Quantities: Z_A = A z, Z_B = B Z_A for a LoRA layer with input z (coordinates Theta(1)); one
step changes Z_B by delta1 = B dA z, delta2 = dB A z, delta3 = dB dA z.
Rates eta_A = Theta(n^gA), eta_B = Theta(n^gB).

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

Stacked layers (``layer`` >= 2: the mlp's LoRA layers in series, Adam). A layer behind another LoRA
layer is the same recursion fed by the layer below (``scaling.recursion.run_stack``). Under Init[1]
the backward link raises z_a, delta2 and dz_b of every layer above the first from step 3 on: the
lower layer's B steps line up with this layer's A rows, and A0 adds the input's move up
coherently, n^((l-1)/2) for layer l under LoRA+. That part starts at zero and grows with the step
and with rho = eta_B n^1/2, so at a finite width it competes with Z_A's Theta(1) initial part and
overtakes it only beyond a crossover width of order (c_B t)^-2 times constants the exponents do
not give (validate's LoRA+ hidden2: still below it at n = 8192; docs/investigations/stacked_lora.md).
Until then the measured slope lies between the exponent without the link (the stacking
control's, ``detached``) and the stacked one: those metrics carry ``bounds`` and are judged
against them, not against an exponent. The other metrics keep exact exponents, and the blow-up
logic reads the link-free recursion (what holds below the crossover); the classification is the
stacked one, the layer's class beyond it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

from scaling.exponents import NEG_INF, Exponent, Poly, fmt
from scaling.recursion import ASSUMPTIONS as RECURSION_ASSUMPTIONS
from scaling.recursion import LATE_STEP, Step, run, run_stack

PREDICTED_METRICS = ("delta1", "delta2", "delta3", "z_a", "dz_a", "dz_b")
CLASSES = ("unstable", "efficient", "A-side lazy", "B-side lazy", "both lazy", "frozen")
SUPPORTED = {("adam", "toy"), ("adam", "linear"), ("adam", "mlp"), ("adamw", "toy"),
             ("adamw", "linear"), ("adamw", "mlp"), ("sgd", "toy")}
INIT_NAMES = {"1": "Init[1] (B0 = 0, A0 ~ N(0, 1/n))", "2": "Init[2] (A0 = 0, B0 = Theta(1))",
              "zero": "both zero"}
CLAIMS = ("exact", "upper bound", "none")
OVERSHOOT_MODELS = ("linear",)  # Init[2]'s first A-step overshoots A's target (see "Overshoot")

ASSUMPTIONS = {  # the recursion's (scaling.recursion.ASSUMPTIONS) and, per prediction, these
    "adam": ["rank r, alpha and the output-side gradient are Theta(1) and non-zero"],
    "sgd": [],
    "mlp": ["every hidden layer is a LoRA layer with the Adam derivation; deeper layers' inputs stay "
            "Theta(1) only while the scheme is stable, so for unstable schemes only the first layer's "
            "prediction is sharp"],
}


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
    layer: int = 1                  # place in a chain of LoRA layers in series (1: reads the base's features)
    detached: bool = False          # the stacking control
    # per metric in a stacked-layer crossover: (exponent without the backward link, the stacked one),
    # the range a slope measured at finite width may take; such a metric has no exact claim
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    # -- rendering ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {k: (None if v == NEG_INF else v) for k, v in self.exponents.items()}
        d.update(classification=self.classification, model=self.model, optimizer=self.optimizer,
                 init=self.init, gA=self.gA, gB=self.gB, step=self.step, claim=self.claim,
                 blowup_step=self.blowup_step, notes=self.notes, layer=self.layer, detached=self.detached,
                 bounds={k: list(v) for k, v in self.bounds.items()},
                 assumptions=self.assumptions,
                 derivation=[{**asdict(s), "exponent": None if s.exponent == NEG_INF else s.exponent}
                             for s in self.derivation],
                 corrections={k: c.to_dict() for k, c in self.corrections.items()})
        return d

    def header(self) -> str:
        where = (f", LoRA layer {self.layer} in series" if self.layer > 1 else "") + (
            " (LoRA inputs detached)" if self.detached else "")
        return (f"{self.optimizer} / {INIT_NAMES.get(self.init, self.init)} / model {self.model}{where}: "
                f"gA = {self.gA:g}, gB = {self.gB:g} (eta_B/eta_A = Theta(n^{self.gB - self.gA:g})), step {self.step}")

    def to_text(self, explain: bool = False) -> str:
        lines = [self.header()]
        rel = {"exact": "=", "upper bound": "<=", "none": "(not predicted; no-cancellation value)"}[self.claim]
        lines += [f"  gamma[{k}] {rel} {fmt(v)}" if k not in self.bounds else
                  f"  gamma[{k}] in [{fmt(self.bounds[k][0])}, {fmt(self.bounds[k][1])}] at finite width "
                  f"(-> {fmt(v)} beyond the crossover)" for k, v in self.exponents.items()]
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


def _check(model: str, optimizer: str, init: str) -> None:
    if (optimizer, model) not in SUPPORTED:
        raise ValueError(f"no derivation for {optimizer} on model {model!r}: SGD exponents depend on the "
                         "loss normalisation and readout, and are derived for the toy model only")
    if init not in INIT_NAMES:
        raise ValueError(f"no derivation for init {init!r}; choose from {', '.join(INIT_NAMES)}")


def _n(q) -> float:
    """A quantity's exponent in n at fixed rates (NEG_INF: exactly zero)."""
    return float(q.terms[0][0].n) if q.terms else NEG_INF


def _history(model: str, optimizer: str, init: str, gA: float, gB: float, steps: int, layer: int = 1,
             link: str = "min"):
    """``_recursion_history``, with a derivation list of the caller's own (predict appends to it)."""
    history, derivation = _recursion_history(model, optimizer, init, gA, gB, steps, layer, link)
    return history, list(derivation)


@lru_cache(maxsize=4096)  # a judged table asks for the same (scheme, step) once per metric and layer
def _recursion_history(model: str, optimizer: str, init: str, gA: float, gB: float, steps: int, layer: int = 1,
                       link: str = "min"):
    """The recursion at eta_A = n^gA, eta_B = n^gB: per step the metrics' exponents, their two
    largest terms ("terms": metric -> [(exponent, what)]) and, for SGD, the output's exponent;
    and the derivation (steps 0, 1, 2 and the last). layer: the place in a chain of LoRA layers
    (the mlp under Adam), link: "min" or "cut" (the stacking control)."""
    _check(model, optimizer, init)
    rates = Poly.const(Exponent(gA, 0)), Poly.const(Exponent(gB, 0))
    if layer > 1:
        recursion = run_stack(model, init, *rates, layer, link, steps=steps)[-1]
    else:
        recursion = run("sgd" if optimizer == "sgd" else "adam", model, init, *rates, steps=steps)
    history = []
    for m in recursion.metrics:
        h = {k: _n(m[k]) for k in PREDICTED_METRICS}
        h["terms"] = {k: [(float(e.n), what) for e, what in m[k].terms] for k in PREDICTED_METRICS}
        if "output" in m:
            h["output"] = _n(m["output"])
        history.append(h)
    derivation = [_derivation_step(s) for s in recursion.states if s.step <= 2 or s.step == steps]
    return history, derivation


def _derivation_step(s) -> Step:
    """A recorded quantity as a derivation line: its exponent in n, how it follows from its
    parts, and the term its sum drops."""
    why = [s.reason] if s.reason else []
    values = [fmt(_n(q)) for _, q in s.parts]
    if s.op == "+":
        why.insert(0, " + ".join(f"gamma[{label}]" for label, _ in s.parts) + " = " + " + ".join(values))
    elif s.op in ("max", "min"):
        why.insert(0, f"{s.op}({', '.join(values)})")
    if len(s.value.terms) > 1:
        e, what = s.value.terms[1]
        why.append(f"drops {what} (gamma {fmt(float(e.n))})")
    return Step(f"{s.quantity} ({s.step})", s.expression, _n(s.value), "; ".join(why))


def predict(model: str, optimizer: str, init: str, gA: float, gB: float, step: int, layer: int = 1,
            detached: bool = False) -> Prediction:
    """Predicted exponents of delta1..3, z_a and dz_b after ``step`` (>= 1) optimiser steps.

    layer: the LoRA layer's place in a chain of layers in series (the mlp under Adam; 1: it reads
    the base's own features, the one-layer derivation); detached: the stacking control."""
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    if not isinstance(layer, int) or layer < 1:
        raise ValueError(f"layer must be a positive integer, got {layer!r}")
    optimizer = "adam" if optimizer == "adamw" else optimizer  # decoupled decay: no exponent change
    if layer > 1 and (model != "mlp" or optimizer != "adam"):
        raise ValueError(f"LoRA layers in series are derived for the mlp under Adam, not {optimizer} on {model!r}")
    steps = max(step, LATE_STEP)
    history, derivation = _history(model, optimizer, init, gA, gB, steps, layer, "cut" if detached else "min")
    at = history[step - 1]
    exps = {k: at[k] for k in PREDICTED_METRICS}
    link_free, bounds = history, {}
    if layer > 1 and not detached:  # what the backward link adds, against the layer without it
        link_free, _ = _history(model, optimizer, init, gA, gB, steps, layer, "cut")
        bounds = {k: (link_free[step - 1][k], exps[k]) for k in PREDICTED_METRICS if exps[k] > link_free[step - 1][k]}
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
    if bounds:
        notes.append(_crossover_note(layer, bounds, classify(history[-1]), classify(link_free[-1])))
    blowup = blowup_step(link_free)  # the stacked link's growth is a crossover, not an explosion (above)
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
    key = "sgd" if optimizer == "sgd" else "adam"
    assumptions = RECURSION_ASSUMPTIONS[key] + ASSUMPTIONS[key] + (ASSUMPTIONS["mlp"] if model == "mlp" else [])
    if layer > 1:
        assumptions = assumptions + RECURSION_ASSUMPTIONS["stack"]
    found = corrections(model, optimizer, init, float(gA), step, history, claim)
    for k in bounds:
        found[k] = Correction(exps[k], None, "none", None, "a stacked-layer crossover: judged against its bounds, "
                              "no correction is derived")
    return Prediction(model, optimizer, init, float(gA), float(gB), step, exps,
                      classify(history[-1]), derivation, notes, assumptions, claim, blowup, found,
                      layer, detached, bounds)


def _crossover_note(layer: int, bounds: dict, stacked_class: str, link_free_class: str) -> str:
    """What a Prediction with bounds says in words."""
    text = ", ".join(f"{k} in [{fmt(lo)}, {fmt(hi)}]" for k, (lo, hi) in bounds.items())
    beyond = (f"; beyond it the layer is {stacked_class} (without the link: {link_free_class})"
              if stacked_class != link_free_class else "")
    return (f"stacked-layer crossover (docs/investigations/stacked_lora.md): layer {layer}'s input moves along its A "
            "rows once the route back through its B A is open (the backward link), a part of Z_A that starts at "
            "zero and overtakes the Theta(1) initial part only beyond a width of order (c_B t)^-2 times constants "
            f"not derived here; until then the slopes lie between the exponents without and with the link: {text}"
            + beyond)


def classes_along_gB(model: str, optimizer: str, init: str, gA: float, gBs) -> list[str]:
    """``predict(model, optimizer, init, gA, gB, LATE_STEP).classification`` for every gB in gBs,
    from ONE run of the recursion with eta_B varied (the learning-rate laws' b-edge slice at
    eta_A = n^gA), its late-step exponents read at each eta_B = n^gB: a row of the phase diagram
    for the cost of one prediction."""
    _check(model, optimizer, init)
    optimizer = "adam" if optimizer == "adamw" else optimizer
    late = run("sgd" if optimizer == "sgd" else "adam", model, init, Poly.const(Exponent(gA, 0)), Poly.rate(),
               steps=LATE_STEP).metrics[-1]
    sizes = {k: q.size.project("n") for k, q in late.items()}
    points = [Exponent(gB, 0) for gB in gBs]
    return [classify({k: NEG_INF if p.is_zero else float(p.at(g).n) for k, p in sizes.items()}) for g in points]


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
