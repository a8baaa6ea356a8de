"""Learning-rate scaling laws: where the trainable region of (eta_A, eta_B) ends, where its
corner is, and where the loss optimum sits, as exponents in width n and rank r.

A *slice* is a one-parameter family of rate pairs at width n and rank r:
- ``b-edge``: eta_A held, eta_B varied;   ``a-edge``: eta_B held, eta_A varied;
- ``one-rate``: eta_A = eta_B varied;     ``ratio``: eta_B = lambda eta_A, lambda held, the scale varied.
The held quantity is Theta(n^h_n r^h_r) (``held``). The **edge** of a slice is the largest
rate on it that still trains, defined as the boundary of OUTPUT stability over the first T
steps: every change of the model's output (of Z_B = s B A z, what the loss sees) stays O(1).
The internal bound Z_A = O(1) is not an edge: under Init[1] Z_A grows inside the layer (up to
n^1/2 for one shared rate: the "internal instability" of the initialisation paper) while the
output stays O(1), and the loss at a fixed step does not see it.

Derivation. The recursion of ``scaling.recursion`` (the one behind the per-step predictions of
``scaling.theory`` too) follows one optimiser step at a time, with every quantity a max-plus
polynomial in the varied rate (``scaling.exponents``: exponents in n and r, the regime
n -> inf first, then r); this module solves its output-changing terms for the edge. For a
LoRA layer W = W* + s B A (scale s = alpha r^-sigma), input z with Theta(1) coordinates,
Z_A = A z, the output changes per step by
  delta1 = s B dA z,  delta2 = s dB Z_A,  delta3 = s dB dA z.
What decides the rank exponents is which sums over the r rank directions are ALIGNED (r terms
of one sign) and which are RANDOM (sqrt(r)); ``scaling.recursion.adam`` and ``.gd`` state it
per term. In short: under Adam every part of the deltas built from updates is aligned, while
B0's part of delta1 has r random signs per output coordinate and only its component along the
error (the "B0 path", n^-1/2 per coordinate) is aligned, unless there is one output (``toy``).
Under GD (one scalar output f) the deltas are sums of squares over r, always aligned, and a
bilinear feedback multiplies (Z_A, B^T G) by 1 + sqrt(eta_A eta_B s^2 U^2 n) per step, so
eta_A eta_B s^2 n = O(1) is needed for the run not to diverge as steps accumulate.

Initial sizes are OUR models' (toy_models/init.py): A0 ~ N(0, 1/n) so Z_A(0) entries are
Theta(1), whatever r; B0 ~ N(0, 1), entries Theta(1) (``b0_variance="1"``). muA (Chen,
Villar, Hayou 2026) take B0 with variance 1/r (fan-in r, ``b0_variance="1/r"``); with that
convention the one-rate edge reproduces their table (tests/test_laws.py).

Stacked layers (``depth`` L >= 2, the mlp under Adam): L LoRA layers in series, each one's output
the next one's input (``scaling.recursion.run_stack``). Two links join them: forward, a layer's
input has moved, and A's aligned steps add the moved coordinates up; backward, once the error
through an upper layer's B A outweighs the frozen weight's (rho = eta_B n^1/2 under Init[1]),
Adam's step moves the lower layer along the upper layer's A rows, which A0 sums coherently
(n^1/2). Under Init[1] the backward link gives the B edge n^-(L-1)/(2L) and the ratio edge
-1 - (L-1)/(2L), and leaves the one-rate edge at n^-1/2; under Init[2] the forward link gives the
one-rate edge n^(-1 + 1/(2L)). ``detached``: the stacking control (every LoRA layer above the
first reads a detached copy of its input in its LoRA branch), which cuts the backward link only:
under Init[1] it gives back the one-layer laws. Gradient descent on a stack: only an upper bound
on the B edge (``_gd_stack``). docs/investigations/stacked_lora.md has the derivation and the
measurements.

Corner: lambda_c = eta_B,edge (b-edge, eta_A held) / eta_A,edge (a-edge, eta_B held), the point
where the B edge and the product edge meet; its exponent is the difference. Optimum: the
loss-optimal rate at a fixed step. Where some descent term depending on the varied rate is
Theta(1) at the edge, the limit loss is a function of the rescaled rate u = rate / edge with
a small step lowering it, so its minimum sits at a finite u: the optimum scales like the edge
(the muP transfer argument). Where only noise is Theta(1) there, the optimum can sit below
the edge (an upper bound). Over the whole plane the optimal ratio is a different question
(``slice="plane"``): under Adam and Init[1] the rescaling symmetry leaves only eta_A eta_B
identified.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction

import pandas as pd

from scaling.exponents import NEG_INF, ONE, Exponent, Poly, fmt, fmt_fraction, regime_condition
from scaling.recursion import ASSUMPTIONS as RECURSION_ASSUMPTIONS
from scaling.recursion import LATE_STEP, Run, Step, Term, run, run_stack

SLICES = ("b-edge", "a-edge", "one-rate", "ratio")
OPTIMUM_SLICES = SLICES + ("plane",)
LAWS = ("edge", "corner", "optimum")
MODELS = ("toy", "linear", "mlp", "paper-mlp")
OPTIMIZERS = ("adam", "adamw", "sgd")
INITS = ("1", "2", "paper", "zero")
VARIABLES = ("n", "r")
# s = alpha r^-sigma: alpha / r, alpha / sqrt(r), alpha (PEFT's lora_alpha = alpha * r)
ALPHA_SCALINGS = {"r": Fraction(1), "sqrt-r": Fraction(1, 2), "none": Fraction(0)}
SCALE_TEXT = {"r": "s = alpha/r", "sqrt-r": "s = alpha/sqrt(r)", "none": "s = alpha"}
# size of B0's entries under Init[2]: ours N(0, 1); muA's fan-in convention N(0, 1/r)
B0_VARIANCES = {"1": Exponent(0, 0), "1/r": Exponent(0, Fraction(-1, 2))}
DEFAULT_HELD = {"b-edge": (-1, 0), "a-edge": (0, 0), "ratio": (1, 0), "one-rate": None}
HELD_NAME = {"b-edge": "eta_A", "a-edge": "eta_B", "ratio": "lambda"}
VARIED_NAME = {"b-edge": "eta_B", "a-edge": "eta_A", "one-rate": "eta", "ratio": "eta_A"}

ASSUMPTIONS = {  # the recursion's (scaling.recursion.ASSUMPTIONS) and, for a law, these
    "adam": ["sums over the rank are aligned (r) or random (sqrt r) as stated per term; an aligned sum "
             "over r needs r >> batch size to beat its own random part (below that it grows like sqrt r)"],
    "sgd": ["the edge is where gradient descent diverges as steps accumulate"],
}


@dataclass
class LawPrediction:
    """A predicted exponent of a learning-rate law, with its derivation.

    exponent: the power of ``variable`` ("n" or "r") in the law (None: not predicted, see
    ``reason``); claim: "exact", "upper bound" (the measured exponent should not exceed it) or
    "none"; binding: the term(s) that decide it; lower/upper: bounds derived when it is not
    exact; law_nr: the whole law in n and r (joint regime), where derived.
    """

    law: str
    slice: str
    model: str
    optimizer: str
    init: str
    alpha_scaling: str
    variable: str
    exponent: float | None
    claim: str
    binding: str
    derivation: list[Step]
    notes: list[str] = field(default_factory=list)
    held: tuple[float, float] | None = None
    steps: int = LATE_STEP
    b0_variance: str = "1"
    reason: str = ""
    lower: float | None = None
    upper: float | None = None
    law_nr: str = ""
    assumptions: list[str] = field(default_factory=list)
    depth: int = 1          # LoRA layers in series (the mlp's stack)
    detached: bool = False  # the stacking control

    @classmethod
    def given(cls, exponent: float | None, claim: str = "exact", reason: str = "", lower: float | None = None,
              upper: float | None = None) -> LawPrediction:
        """A law stated rather than derived here (law "given"): a hand derivation, or one
        combined from derived ones (``edge_difference``); reason says what it is."""
        return cls("given", "", "", "", "", "", "", exponent, claim, "", [], reason=reason, lower=lower, upper=upper)

    @property
    def note(self) -> str:
        """What a report prints beside the exponent: why it is not predicted or only bounded,
        or what a given law is; empty for an exact derived law (its binding term says why)."""
        return self.reason if self.exponent is None or self.claim != "exact" or self.law == "given" else ""

    # -- rendering ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["derivation"] = [{**asdict(s), "exponent": None if s.exponent == NEG_INF or math.isnan(s.exponent)
                            else s.exponent} for s in self.derivation]
        d["held"] = None if self.held is None else list(self.held)
        return d

    def quantity(self) -> str:
        if self.law == "corner":
            return "lambda_c = eta_B,edge / eta_A,edge"
        if self.law == "optimum":
            return "lambda* = eta_B* / eta_A*" if self.slice == "plane" else f"{VARIED_NAME[self.slice]}*"
        return f"{VARIED_NAME[self.slice]},edge"

    def header(self) -> str:
        held = ""
        if self.held is not None and self.slice in HELD_NAME:
            held = f", {HELD_NAME[self.slice]} ~ {Exponent(*self.held)} held"
        if self.law == "corner":
            held = " (b-edge over a-edge)"
        stack = (f" / {self.depth} LoRA layers in series" if self.depth > 1 else "") + (
            ", LoRA inputs detached" if self.detached else "")
        return (f"{self.law} on {self.slice}{held} | {self.optimizer} / Init[{self.init}] / {self.model}{stack} / "
                f"{SCALE_TEXT.get(self.alpha_scaling, self.alpha_scaling)}")

    def result(self) -> str:
        rel = {"exact": "~", "upper bound": "<~", "none": "?"}[self.claim]
        if self.exponent is None:
            value = "not predicted"
            if self.lower is not None or self.upper is not None:
                lo = "-inf" if self.lower is None else fmt(self.lower)
                hi = "+inf" if self.upper is None else fmt(self.upper)
                value += f" (exponent in [{lo}, {hi}])"
        else:
            value = f"{self.variable}^{fmt(self.exponent)}"
        return f"{self.quantity()} {rel} {value}" + (f"   [{self.law_nr}]" if self.law_nr else "")

    def to_text(self, explain: bool = False) -> str:
        lines = [self.header(), f"  {self.result()}  (claim: {self.claim})"]
        if self.binding:
            lines.append(f"  binding: {self.binding}")
        if self.reason:
            lines.append(f"  why: {self.reason}")
        lines += [f"  note: {n}" for n in self.notes]
        if explain:
            lines.append("derivation (exponent at the edge of each quantity, in "
                         f"{self.variable}; 'zero' = exactly zero):")
            lines += [f"  {s.quantity:<22} = {s.expression:<42} {fmt(s.exponent):<6} {s.reason}"
                      for s in self.derivation]
            if self.assumptions:
                lines.append("assumptions:")
                lines += [f"  - {a}" for a in self.assumptions]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        lines = [f"**{self.header()}**", "", f"{self.result()} (claim: {self.claim}).", ""]
        if self.binding:
            lines.append(f"Binding: {self.binding}.")
        if self.reason:
            lines.append(f"Why: {self.reason}")
        lines += ["", "| quantity | expression | exponent | reason |", "| --- | --- | --- | --- |"]
        lines += [f"| {s.quantity} | `{s.expression}` | "
                  f"{fmt(s.exponent)} | {s.reason} |" for s in self.derivation]
        lines += [f"- note: {n}" for n in self.notes]
        if self.assumptions:
            lines += ["", "Assumptions:"] + [f"- {a}" for a in self.assumptions]
        return "\n".join(lines)


# -- solving for the edge ----------------------------------------------------------------------
def _order(x) -> tuple:
    """Sort key for roots: -inf < any Exponent < +inf."""
    if isinstance(x, Exponent):
        return (1, x.n, x.r)
    return (0,) if x < 0 else (2,)


@dataclass
class _Edge:
    value: Exponent | float          # the edge (as an exponent), or +-inf
    binding: list[Term]              # earliest term of each kind that attains it
    roots: list[tuple[Term, Exponent | float]]


def _solve(terms: list[Term], variable: str) -> _Edge:
    """The edge: the smallest root over the terms; binding: the earliest term of each name
    that attains it (none when every term is O(1) whatever the rate)."""
    roots = [(t, t.poly.project(variable).root()) for t in terms]
    edge = min((r for _, r in roots), key=_order, default=math.inf)
    first: dict[str, Term] = {}
    if edge != math.inf:
        for t, r in roots:
            if _order(r) == _order(edge):
                first.setdefault(t.name, t)
    return _Edge(edge, list(first.values()), roots)


def _rates(slice_: str, held: Exponent | None) -> tuple[Poly, Poly]:
    x = Poly.rate()
    if slice_ == "b-edge":
        return Poly.const(held), x
    if slice_ == "a-edge":
        return x, Poly.const(held)
    if slice_ == "one-rate":
        return x, x
    return x, x * held  # ratio: eta_B = lambda eta_A


def _check(model, optimizer, init, slice_, alpha_scaling, variable, b0_variance, steps, slices=SLICES):
    for name, value, allowed in (("model", model, MODELS), ("optimizer", optimizer, OPTIMIZERS),
                                 ("init", init, INITS), ("slice", slice_, slices),
                                 ("alpha scaling", alpha_scaling, tuple(ALPHA_SCALINGS)),
                                 ("variable", variable, VARIABLES), ("b0 variance", b0_variance, tuple(B0_VARIANCES))):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def _held(slice_: str, held) -> Exponent | None:
    if slice_ == "one-rate":
        return None
    h = DEFAULT_HELD[slice_] if held is None else held
    if isinstance(h, (int, float, Fraction)):
        h = (h, 0)
    if len(h) != 2:
        raise ValueError(f"held must be (h_n, h_r), got {held!r}")
    return Exponent(*h)


def _unsupported(model: str, optimizer: str, init: str) -> str | None:
    """Why there is no derivation for this combination (None: there is one)."""
    if optimizer in ("adam", "adamw"):
        if model == "paper-mlp":
            return ("not derived for Adam: the paper-mlp's readout W_out ~ N(0, 1/n) is standard-parametrised, so an "
                    "aligned feature update moves its output n^1/2 times more than in the mean-field mlp")
        if init == "paper":
            return "not derived for Adam with both factors random (the LoRA branch does not start at zero)"
        return None
    if model in ("linear", "mlp"):
        return ("SGD exponents depend on the loss normalisation and the readout; derived for the one-output "
                "models (toy, paper-mlp) only")
    if model == "paper-mlp" and init in ("1", "2"):
        return ("frozen: the paper-mlp has no base matrix, so the pre-activation is the LoRA branch alone and starts "
                "at exactly 0, where relu' = 0: every gradient is zero and training never starts (use init 'paper')")
    return None


def _sigma(alpha_scaling: str) -> Exponent:
    return Exponent(0, -ALPHA_SCALINGS[alpha_scaling])


def _run(model, optimizer, init, eta_a, eta_b, alpha_scaling, steps, b0_variance) -> Run:
    """The recursion for one setting (``scaling.recursion.run``, cached there)."""
    return run(optimizer, model, init, eta_a, eta_b, _sigma(alpha_scaling), B0_VARIANCES[b0_variance], steps)


def _exp_at(p: Poly, edge, variable: str) -> float:
    """A term's exponent (in ``variable``) at the edge; NEG_INF for an exact zero."""
    if p.is_zero:
        return NEG_INF
    if not isinstance(edge, Exponent):
        return math.nan
    return float(p.project(variable).at(edge.project(variable)).of(variable))


def _root_text(root, var: str) -> str:
    if isinstance(root, Exponent):
        return f"O(1) while {var} <~ {root}"
    return "O(1) whatever the rate" if root == math.inf else "never O(1): grows without the varied rate"


def _derivation(run: Run, edge: _Edge, variable: str, var: str, setting_steps: list[Step]) -> list[Step]:
    """The recursion step by step, steps 0..3 and the last: each state and term where it changes
    (a term that is an exact zero throughout, e.g. B0's under Init[1], is left out), with its
    exponent at the edge and the largest rate at which it is still O(1)."""
    steps = list(setting_steps)
    shown: dict[str, Poly | None] = {}
    last_step = max((t.step for t in run.terms), default=0)
    for step in range(0, last_step + 1):
        if 3 < step < last_step:  # the pattern is set by step 3; the last step shows where it went
            continue
        for state in run.states:
            p, q = state.value.size, state.quantity
            if state.step == step and state.role == "state" and shown.get(q, None) != p:
                steps.append(Step(f"{q} ({step})", f"{state.expression} = {p.text(var)}", _exp_at(p, edge.value, variable),
                                  state.reason))
                shown[q] = p
        for term in run.terms:
            if term.step != step:
                continue
            before = shown.get(term.name, Poly.ZERO if ("B0" in term.name or "(" in term.name) else None)
            if before == term.poly:
                continue
            shown[term.name] = term.poly
            vis = "" if term.visible else ", not seen by the loss"
            steps.append(Step(f"{term.name} ({term.step})", f"{term.expression} = {term.poly.text(var)}",
                              _exp_at(term.poly, edge.value, variable),
                              f"[{term.kind}{vis}] {_root_text(term.poly.project(variable).root(), var)}"))
    return steps


def _binding_text(terms: list[Term]) -> str:
    """e.g. 'delta2 (step 1), delta1 (step 2)': each binding term and the step it first binds at."""
    return ", ".join(f"{t.name} (step {t.step})" for t in terms)


def _regime_notes(edge: _Edge, variable: str) -> list[str]:
    if variable != "r" or not isinstance(edge.value, Exponent):
        return []
    qs = [regime_condition(edge.value, r) for _, r in edge.roots if isinstance(r, Exponent)]
    qs = [q for q in qs if q is not None]
    if not qs:
        return []
    return [f"the rank order holds only while n >> r^{fmt_fraction(max(qs))} (a term that binds later in n "
            "would bind first at larger r)"]


# -- public API -------------------------------------------------------------------------------
def predict_edge(model: str, optimizer: str, init: str, slice: str, held=None, alpha_scaling: str = "r",
                 variable: str = "n", *, steps: int = LATE_STEP, b0_variance: str = "1", depth: int = 1,
                 detached: bool = False) -> LawPrediction:
    """Exponent (in ``variable``) of the largest rate on ``slice`` whose output stays O(1).

    held: (h_n, h_r) exponents of the held quantity (eta_A for b-edge, eta_B for a-edge,
    lambda for ratio; ignored for one-rate); None: DEFAULT_HELD. steps: T, the steps over
    which the output must stay O(1) (Adam's exponents settle by step 3; GD's edge is where
    the run diverges as steps accumulate). b0_variance: "1" (ours) or "1/r" (muA's Init[B]).
    depth: LoRA layers in series (the mlp; 1: one layer); detached: the stacking control."""
    _check(model, optimizer, init, slice, alpha_scaling, variable, b0_variance, steps)
    _check_stack(model, depth, detached)
    optimizer_key = key = "adam" if optimizer == "adamw" else optimizer
    h = _held(slice, held)
    base = dict(law="edge", slice=slice, model=model, optimizer=optimizer, init=init, alpha_scaling=alpha_scaling,
                variable=variable, held=None if h is None else (float(h.n), float(h.r)), steps=steps,
                b0_variance=b0_variance, assumptions=RECURSION_ASSUMPTIONS[key] + ASSUMPTIONS[key])
    if depth > 1:
        return _stacked_edge(model, optimizer_key, init, slice, h, alpha_scaling, variable, steps, b0_variance,
                             depth, detached, base)
    why_not = _unsupported(model, optimizer_key, init)
    if why_not:
        return LawPrediction(exponent=None, claim="none", binding="", derivation=[], reason=why_not, **base)
    eta_a, eta_b = _rates(slice, h)
    run = _run(model, optimizer_key, init, eta_a, eta_b, alpha_scaling, steps, b0_variance)
    var = VARIED_NAME[slice]
    edge_all = _solve(run.terms, variable)
    edge = _solve([t for t in run.terms if t.visible], variable)
    setting = [Step("s", SCALE_TEXT[alpha_scaling], float(_sigma(alpha_scaling).of(variable)), "the LoRA scale"),
               Step("rates", _slice_text(slice, h), math.nan, "the varied rate is " + var)]
    derivation = _derivation(run, edge, variable, var, setting)
    notes = _regime_notes(edge, variable) + _notes(model, optimizer_key, init, slice, alpha_scaling, variable)
    if isinstance(edge.value, Exponent) and _order(edge_all.value) != _order(edge.value):
        lo, hi = _bounds(edge_all.value, edge.value, variable)
        derivation.append(Step("edge", "between the feature and the loss edges", math.nan,
                               f"features leave O(1) at {edge_all.value}, the loss-visible terms at {edge.value}"))
        return LawPrediction(exponent=None, claim="none", binding=_binding_text(edge_all.binding), derivation=derivation,
                             notes=notes, lower=lo, upper=hi,
                             reason=("the hidden features leave O(1) first, through B0's random columns, which the "
                                     "mean-field readout sees only as a random sum (n^-1/2); the loss-visible edge lies "
                                     "between the feature edge and the aligned terms' edge, and grows into deeper layers"),
                             **base)
    if not isinstance(edge.value, Exponent):
        never = edge.value == -math.inf
        blocker = [t for t, r in edge.roots if r == -math.inf][:1]
        reason = (f"the held rate is itself beyond an edge: {blocker[0].name} = {blocker[0].poly.text(var)} "
                  "grows whatever the varied rate" if never and blocker else
                  "the varied rate never moves the output (every LoRA gradient is zero, or the rate enters no "
                  "output term)")
        return LawPrediction(exponent=None, claim="none", binding=_binding_text(blocker), derivation=derivation,
                             notes=notes, reason=reason, **base)
    binding = edge.binding
    claim, reason = "exact", _edge_reason(binding)
    if (optimizer_key == "adam" and init == "2" and model == "linear" and min(t.step for t in binding) >= 3):
        claim, reason = "none", ("Init[2] with the loss on the n outputs: A's first step overshoots its target, and the "
                                 "binding term appears only after step 2, where cancellation can make it smaller")
    derivation.append(Step("edge", f"{var},edge ~ {edge.value}", float(edge.value.of(variable)),
                           "the smallest root: " + ", ".join(t.name for t in binding)))
    exponent = float(edge.value.of(variable)) if claim == "exact" else None
    return LawPrediction(exponent=exponent, claim=claim, binding=_binding_text(binding), derivation=derivation,
                         notes=notes, reason=reason, lower=None if claim == "exact" else float(edge.value.of(variable)),
                         law_nr=f"{var},edge ~ {edge.value}" if variable == "r" else "", **base)


# -- stacked layers ------------------------------------------------------------------------------
def _check_stack(model: str, depth: int, detached: bool) -> None:
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    if depth > 1 and model != "mlp":
        raise ValueError(f"LoRA layers in series (depth {depth}) are derived for the mlp, not {model!r}")
    if detached and depth < 2:
        raise ValueError("the stacking control (detached LoRA inputs) needs depth 2 or more")


def _stack_terms(runs: tuple[Run, ...]) -> list[Term]:
    """Every layer's output-changing terms, named by layer: each layer's aligned change reaches the
    loss through the frozen layers above it, as one layer's does in the mlp."""
    return [replace(t, name=f"{t.name}, layer {i}") for i, r in enumerate(runs, start=1) for t in r.terms]


def _stack_solve(model, init, eta_a, eta_b, alpha_scaling, steps, b0_variance, depth, links, variable):
    """(edge, runs, link) of the link side with the largest edge: every quantity grows with the
    part of a lower layer's step along the upper layer's A rows, min(1, rho), so its true size is
    the smaller of the two sides' and the edge the larger of their edges (scaling.recursion)."""
    best = None
    for link in links:
        runs = run_stack(model, init, eta_a, eta_b, depth, link, _sigma(alpha_scaling), B0_VARIANCES[b0_variance],
                         steps)
        edge = _solve([t for t in _stack_terms(runs) if t.visible], variable)
        if best is None or _order(edge.value) > _order(best[0].value):
            best = (edge, runs, link)
    return best


BACKWARD_LINK = ("the backward link: once the error through an upper layer's B A outweighs the frozen weight's "
                 "(rho = eta_B n^1/2 > 1 under Init[1]), Adam's step moves the layer below along that layer's A rows, "
                 "and A0 adds the move up coherently (n^1/2, not a random sum): each of the {k} links multiplies the "
                 "output's change by eta_B n^1/2")
FORWARD_LINK = ("the forward link: a layer's input has moved, and A's steps, aligned with their input, add the moved "
                "coordinates up (dA z = eta_A n max(1, c_below)): the change compounds over the {L} layers (the control "
                "keeps this link: it cuts the backward route only)")


def _stacked_edge(model, optimizer, init, slice_, h, alpha_scaling, variable, steps, b0_variance, depth, detached,
                  base) -> LawPrediction:
    """The edge of ``slice_`` for ``depth`` stacked LoRA layers (the mlp), or under the stacking
    control (``detached``)."""
    base = {**base, "depth": depth, "detached": detached,
            "assumptions": base["assumptions"] + RECURSION_ASSUMPTIONS.get("stack", [])}
    if optimizer == "sgd":
        return _gd_stack(slice_, detached, base)
    if variable == "r":
        return LawPrediction(exponent=None, claim="none", binding="", derivation=[], **base,
                             reason="stacked LoRA layers are derived in n only (the links carry no rank factors)")
    why_not = _unsupported(model, optimizer, init)
    if why_not:
        return LawPrediction(exponent=None, claim="none", binding="", derivation=[], reason=why_not, **base)
    eta_a, eta_b = _rates(slice_, h)
    solve = functools.partial(_stack_solve, model, init, eta_a, eta_b, alpha_scaling, steps, b0_variance, depth,
                              variable=variable)
    edge, runs, link = solve(("cut",) if detached else ("aligned", "partial"))
    var = VARIED_NAME[slice_]
    setting = [Step("s", SCALE_TEXT[alpha_scaling], float(_sigma(alpha_scaling).of(variable)), "the LoRA scale"),
               Step("rates", _slice_text(slice_, h), math.nan, "the varied rate is " + var),
               Step("stack", f"{depth} LoRA layers in series", math.nan,
                    "the control: no backward link" if detached else
                    f"route back through B A: the {'whole step' if link == 'aligned' else 'part rho'} of a lower "
                    "layer's B step lies along the upper layer's A rows (the side with the larger edge)")]
    setting += [Step(f"c_{i} ({steps})", f"layer {i}'s output change", _exp_at(r.feed.moved[-1].size, edge.value, variable),
                     "coordinate size, any direction") for i, r in enumerate(runs, start=1)]
    derivation = _derivation(Run(runs[-1].states, [t for t in _stack_terms(runs) if t.name.endswith(f"layer {depth}")],
                                 runs[-1].metrics), edge, variable, var, setting)
    notes = [n for n in _notes(model, optimizer, init, slice_, alpha_scaling, variable)
             if not n.startswith("every hidden layer")]
    notes.append(f"{depth} LoRA layers in series; the loss sees each layer's aligned change through the frozen layers "
                 "above it and a mean-field readout")
    control = edge if detached else solve(("cut",))[0]
    one = predict_edge(model, optimizer, init, slice_, (h.n, h.r) if h is not None else None, alpha_scaling, variable,
                       steps=steps, b0_variance=b0_variance)
    if not isinstance(edge.value, Exponent):
        if edge.value == math.inf:
            return LawPrediction(exponent=None, claim="none", binding="", derivation=derivation, notes=notes, **base,
                                 reason="the varied rate never moves the output (every LoRA gradient is zero, or "
                                        "the rate enters no output term)")
        return _held_beyond(edge, runs, control, depth, variable, derivation, notes, base)
    value = float(edge.value.of(variable))
    if _order(control.value) != _order(edge.value):
        why = BACKWARD_LINK.format(k=depth - 1)
    elif one.exponent is None or abs(one.exponent - value) > 1e-9:
        why = FORWARD_LINK.format(L=depth)
    else:
        why = f"as for one layer: neither link between the {depth} layers moves this edge"
    edge_all = _solve(_stack_terms(runs), variable)
    if _order(edge_all.value) < _order(edge.value):
        notes.append(f"the last layer's hidden features leave O(1) first, at {var} ~ {edge_all.value}, through B0's "
                     "random columns; the one-layer law leaves its edge open between the two for that reason, while in "
                     "a stack the forward link follows such features into the next layer, and the readout sees the "
                     "last layer's only through the B0 path (a loss-visible term): the edge is the loss-visible one")
    derivation.append(Step("edge", f"{var},edge ~ {edge.value}", value,
                           "the smallest root: " + ", ".join(t.name for t in edge.binding)))
    return LawPrediction(exponent=value, claim="exact", binding=_binding_text(edge.binding), derivation=derivation,
                         notes=notes, reason=f"{_edge_reason(edge.binding)}; {why}", **base)


def _held_beyond(edge: _Edge, runs, control: _Edge, depth: int, variable: str, derivation, notes, base) -> LawPrediction:
    """The held rate alone moves the output through the stack at large n: no varied rate trains
    there. Bounds for the widths one can run: the varied rate's own terms with every link at full
    strength (lower), and the edge without the backward link (upper), which holds while rho < 1."""
    rate_roots = [Poly(tuple(m for m in t.poly.project(variable).monomials if m.power > 0)).root()
                  for t in _stack_terms(runs) if t.visible]
    rate_roots = [r for r in rate_roots if isinstance(r, Exponent)]
    lower = float(min(rate_roots).of(variable)) if rate_roots else None
    upper = float(control.value.of(variable)) if isinstance(control.value, Exponent) else None
    blocker = [t for t, r in edge.roots if r == -math.inf][:1]
    held = HELD_NAME.get(base["slice"], "the held rate")
    reason = (f"the held {held} lies beyond the stacked edge: through the {depth} layers it alone moves the output "
              f"({blocker[0].name} grows whatever the varied rate), so at large n no rate trains. At widths where "
              "rho = eta_B n^1/2 < 1 the links do not amplify yet and the edge is the one without the backward link "
              "(the upper bound); with every link at full strength the varied rate's own terms bind at the lower "
              "bound" if blocker else "the held rate alone moves the output through the stack")
    return LawPrediction(exponent=None, claim="none", binding=_binding_text(blocker), derivation=derivation,
                         notes=notes, lower=lower, upper=upper, reason=reason, **base)


def _gd_stack(slice_: str, detached: bool, base) -> LawPrediction:
    """Gradient descent on stacked LoRA layers of the mlp: no exact law; an upper bound on the B edge."""
    if slice_ == "b-edge" and not detached:
        return LawPrediction(exponent=None, claim="none", binding="", derivation=[], upper=0.5, **base, reason=(
            "gradient descent on LoRA layers in series: the output's curvature across two layers' B factors, "
            "d2f/dB_l dB_l+1 ~ U n^-1/2, exceeds the Gauss-Newton n^-1 that sets one layer's B edge, and GD diverges "
            "once eta_B times the curvature passes 2, so the B edge is at most n^+1/2; what sets it below that bound "
            "is not derived"))
    why = ("the mlp's one-layer law under gradient descent is not derived (it depends on the loss normalisation and "
           "the readout)")
    if detached:
        why += "; under the control the cross-layer coupling runs one way only and the n^+1/2 bound goes"
    return LawPrediction(exponent=None, claim="none", binding="", derivation=[], reason=why, **base)


def _bounds(low, high: Exponent, variable: str) -> tuple[float | None, float | None]:
    """Bounds on the exponent in ``variable`` of an edge known to lie between ``low`` (an
    Exponent, or -inf) and ``high`` in the regime's order. In n: their n-parts. In r: their
    r-parts, but only when the n-parts agree (otherwise the n-part itself is open and the rank
    part is not bounded at all)."""
    if variable == "n":
        return (float(low.n) if isinstance(low, Exponent) else None), float(high.n)
    if isinstance(low, Exponent) and low.n == high.n:
        return float(low.r), float(high.r)
    return None, None


def _slice_text(slice_: str, h: Exponent | None) -> str:
    return {"b-edge": f"eta_A = {h} held, eta_B varied", "a-edge": f"eta_B = {h} held, eta_A varied",
            "one-rate": "eta_A = eta_B = eta varied",
            "ratio": f"eta_B = lambda eta_A, lambda = {h} held, eta_A varied"}[slice_]


def _edge_reason(binding: list[Term]) -> str:
    kinds = {t.kind for t in binding}
    if kinds == {"feedback"}:
        return "gradient descent's bilinear feedback between Z_A and B diverges first (the deltas' roots approach it as T grows)"
    if kinds == {"noise"}:
        return "B0's random columns move every output coordinate by Theta(1) first"
    if "noise" in kinds:
        return "B0's random columns and the aligned update reach Theta(1) together"
    return "the output's aligned update reaches Theta(1) first"


def _notes(model, optimizer, init, slice_, alpha_scaling, variable) -> list[str]:
    notes = []
    if optimizer == "adam" and init == "1" and slice_ in ("one-rate", "ratio"):
        notes.append("Z_A grows inside the layer beyond eta_A ~ 1/n without reaching the output (internal instability)")
    if variable == "r":
        if alpha_scaling in ("r", "sqrt-r"):
            notes.append(f"{SCALE_TEXT[alpha_scaling]} with alpha held fixed as r grows (the toy models' default alpha = r "
                         "would make the scale 1 or sqrt(r): pass --alpha)")
        if optimizer == "adam":
            notes.append("aligned sums over r grow like r only for r >> batch size; below it like sqrt(r)")
    if model == "mlp":
        notes.append("every hidden layer by the same derivation; the loss sees the features through a mean-field readout")
    return notes


def predict_corner(model: str, optimizer: str, init: str, held_a_edge=(0, 0), held_b_edge=(-1, 0),
                   alpha_scaling: str = "r", variable: str = "n", *, steps: int = LATE_STEP,
                   b0_variance: str = "1", depth: int = 1, detached: bool = False) -> LawPrediction:
    """lambda_c = eta_B,edge (b-edge, eta_A held at ``held_b_edge``) / eta_A,edge (a-edge, eta_B
    held at ``held_a_edge``): the exponent is the difference of the two edges' exponents. With an
    exact B edge and a bounded A edge (a stack whose held eta_B lies beyond its B edge) the
    corner is bounded by the difference."""
    stack = dict(depth=depth, detached=detached)
    b = predict_edge(model, optimizer, init, "b-edge", held_b_edge, alpha_scaling, variable, steps=steps,
                     b0_variance=b0_variance, **stack)
    a = predict_edge(model, optimizer, init, "a-edge", held_a_edge, alpha_scaling, variable, steps=steps,
                     b0_variance=b0_variance, **stack)
    exact = b.claim == a.claim == "exact"
    exponent = b.exponent - a.exponent if exact else None
    lower = upper = None
    if depth > 1 and b.claim == "exact" and a.exponent is None:
        lower = None if a.upper is None else b.exponent - a.upper
        upper = None if a.lower is None else b.exponent - a.lower
    derivation = ([Step("B edge", "eta_B,edge (b-edge)", b.exponent if b.exponent is not None else math.nan, b.binding)]
                  + b.derivation
                  + [Step("A edge", "eta_A,edge (a-edge)", a.exponent if a.exponent is not None else math.nan, a.binding)]
                  + a.derivation
                  + [Step("corner", "eta_B,edge / eta_A,edge", exponent if exponent is not None else math.nan,
                          "difference of the two edge exponents")])
    reason = ("where the B edge meets the product edge" if exact else
              "; ".join(f"{name}: {p.reason}" for name, p in (("B edge", b), ("A edge", a)) if p.claim != "exact"))
    law_nr = ""
    if exact and variable == "r" and b.law_nr and a.law_nr:
        law_nr = f"B edge {b.law_nr.split('~')[1].strip()}, A edge {a.law_nr.split('~')[1].strip()}"
    return LawPrediction("corner", "corner", model, optimizer, init, alpha_scaling, variable, exponent,
                         "exact" if exact else "none", f"B edge: {b.binding or '-'} | A edge: {a.binding or '-'}",
                         derivation, sorted(set(a.notes + b.notes)), held=None, steps=steps, b0_variance=b0_variance, reason=reason, law_nr=law_nr,
                         assumptions=a.assumptions, lower=lower, upper=upper, **stack)


def predict_optimum(model: str, optimizer: str, init: str, slice: str, held=None, alpha_scaling: str = "r",
                    variable: str = "n", *, steps: int = LATE_STEP, b0_variance: str = "1", depth: int = 1,
                    detached: bool = False) -> LawPrediction:
    """Exponent of the loss-optimal rate along ``slice`` at a fixed step, or (slice="plane") of
    the loss-optimal ratio lambda* over the whole (eta_A, eta_B) plane; exponent None with the
    reason where the optimum is not identified by the scaling."""
    _check(model, optimizer, init, slice, alpha_scaling, variable, b0_variance, steps, OPTIMUM_SLICES)
    if slice == "plane":
        return _plane_optimum(model, optimizer, init, alpha_scaling, variable, steps, b0_variance, depth, detached)
    stack = dict(depth=depth, detached=detached)
    edge = predict_edge(model, optimizer, init, slice, held, alpha_scaling, variable, steps=steps, b0_variance=b0_variance,
                        **stack)
    base = dict(law="optimum", slice=slice, model=model, optimizer=optimizer, init=init, alpha_scaling=alpha_scaling,
                variable=variable, held=edge.held, steps=steps, b0_variance=b0_variance, assumptions=edge.assumptions,
                **stack)
    if edge.claim != "exact":
        return LawPrediction(exponent=None, claim="none", binding="", derivation=edge.derivation, notes=edge.notes,
                             reason=f"the edge is not predicted ({edge.reason})", upper=edge.upper, **base)
    if depth > 1 and not detached:
        one = predict_optimum(model, optimizer, init, slice, held, alpha_scaling, variable, steps=steps,
                              b0_variance=b0_variance)
        if one.exponent is not None and abs(one.exponent - edge.exponent) > 1e-9:
            # The backward link moves the edge; its change follows the upper layer's A rows, not the
            # error, so it need not lower the loss: the optimum keeps the one-layer descent terms'
            # exponent until the stacked edge catches up with it (at large n it must lie below it).
            lo, hi = sorted((edge.exponent, one.exponent))
            return LawPrediction(exponent=None, claim="none", binding="", derivation=edge.derivation,
                                 notes=edge.notes, lower=lo, upper=hi, reason=(
                                     "stacked-layer crossover: the backward link sets the edge "
                                     f"(n^{fmt(edge.exponent)}) but need not lower the loss, so at finite width the "
                                     f"optimum may still follow the one-layer descent terms (n^{fmt(one.exponent)})"),
                                 **base)
    optimizer_key = "adam" if optimizer == "adamw" else optimizer
    eta_a, eta_b = _rates(slice, _held(slice, held))
    if depth > 1:  # the side of the route back that sets the edge
        solved, runs, _ = _stack_solve(model, init, eta_a, eta_b, alpha_scaling, steps, b0_variance, depth,
                                       ("cut",) if detached else ("aligned", "partial"), variable)
        run = Run([], _stack_terms(runs), [])
    else:
        run = _run(model, optimizer_key, init, eta_a, eta_b, alpha_scaling, steps, b0_variance)
        solved = _solve([t for t in run.terms if t.visible], variable)
    g = solved.value.project(variable)
    active = [t for t in run.terms if t.visible and any(m.power > 0 and m.at(g) == ONE
                                                         for m in t.poly.project(variable).dominant(g))]
    kinds = {t.kind for t in active}
    first = {}
    for t in active:
        first.setdefault(t.name, t)
    derivation = edge.derivation + [Step("active at the edge", ", ".join(first), edge.exponent,
                                         "terms that depend on the varied rate and are Theta(1) there")]
    if "descent" in kinds:
        claim, reason = "exact", ("a descent term that depends on the rate is Theta(1) at the edge: the limit loss is a "
                                  "function of rate / edge whose minimum sits at a finite ratio (a small step lowers it)")
    elif kinds == {"feedback"}:
        claim, reason = "exact", ("at the edge only GD's feedback is Theta(1); every progress term grows with the rate "
                                  "(though it vanishes with n there), so the loss falls with the rate up to the "
                                  "divergence and the optimum sits just below the edge")
    else:
        claim, reason = "upper bound", ("only noise is Theta(1) at the edge (B0's random columns, not along the error): "
                                        "it raises the loss, so the optimum can sit below the edge")
        path = [t for t in run.terms if t.name == "delta1 (B0 path)" and t.poly]
        if path and slice in ("one-rate", "a-edge", "ratio"):
            edge.notes = edge.notes + [
                "heuristic, not derived: balancing the B0 path's first-order decrease (n^-1/2 below the noise per "
                "coordinate) against the noise's quadratic increase puts the optimum near n^-3/2 along this slice, "
                "with a gain that vanishes with n"]
    return LawPrediction(exponent=edge.exponent, claim=claim, binding=_binding_text(list(first.values())),
                         derivation=derivation, notes=edge.notes, reason=reason, law_nr=edge.law_nr.replace(",edge", "*"),
                         **base)


def _plane_optimum(model, optimizer, init, alpha_scaling, variable, steps, b0_variance, depth=1,
                   detached=False) -> LawPrediction:
    """The loss-optimal ratio over the plane: the corner, a ridge, or pushed past the corner."""
    corner = predict_corner(model, optimizer, init, alpha_scaling=alpha_scaling, variable=variable, steps=steps,
                            b0_variance=b0_variance, depth=depth, detached=detached)
    base = dict(law="optimum", slice="plane", model=model, optimizer=optimizer, init=init,
                alpha_scaling=alpha_scaling, variable=variable, steps=steps, b0_variance=b0_variance,
                assumptions=corner.assumptions, depth=depth, detached=detached)
    deriv = corner.derivation
    if corner.claim != "exact":
        return LawPrediction(exponent=None, claim="none", binding="", derivation=deriv, reason=corner.reason, **base)
    c = corner.exponent
    optimizer_key = "adam" if optimizer == "adamw" else optimizer
    symmetry = Step("symmetry", "(A, B, eta_A, eta_B) -> (kA, B/k, k eta_A, eta_B/k)", math.nan,
                    "leaves Adam's sign-like dynamics unchanged, except through A0 and B0")
    if optimizer_key == "sgd":
        return LawPrediction(exponent=c, claim="exact", binding=corner.binding, derivation=deriv + [Step(
            "GD", "(kA, B/k, k^2 eta_A, eta_B/k^2)", math.nan,
            "GD's rescaling needs k^2; the feedback bound eta_A eta_B s^2 n = O(1) caps A's movement at Theta(Z_A(0)), "
            "so A0 always breaks it: no ridge")], reason=(
            "no ridge under GD: the limit loss is a function of (eta_A n, eta_B) with its minimum at a finite point, "
            "so lambda* scales like the corner"), **base)
    if init == "1":
        return LawPrediction(exponent=None, claim="none", binding="", derivation=deriv + [symmetry], upper=c, reason=(
            "Init[1]'s rescaling ridge: once A0 is negligible (eta_A n >> 1) the loss depends on eta_A eta_B alone, "
            "along a ridge of slope -1 that runs from the corner towards small lambda: lambda* is not identified "
            f"(any exponent <= {c:g}); only the product is"), **base)
    if model == "toy":
        return LawPrediction(exponent=c, claim="exact", binding="delta1 (B0 path)", derivation=deriv + [symmetry], reason=(
            "B0 breaks the symmetry: moving along the product ridge changes the B0 path s B0 dA z, a descent term "
            "here (one output), which is largest at the A edge: the optimum sits at the corner"), **base)
    if model == "linear":
        return LawPrediction(exponent=None, claim="none", binding="delta1 (B0 noise)", derivation=deriv + [symmetry],
                             lower=c, reason=(
            "B0 breaks the symmetry only through s B0 dA z, which on the n outputs is noise (the teacher is independent "
            "of B0): it shrinks as eta_A falls at a fixed product, so the loss keeps improving past the corner "
            f"towards larger lambda: lambda* is at least the corner (exponent >= {c:g}), not identified above it"), **base)
    return LawPrediction(exponent=None, claim="none", binding="", derivation=deriv + [symmetry], reason=(
        "B0's random columns move the hidden features, but the mean-field readout sees that only as a random sum "
        "(n^-1/2): in the limit the symmetry holds and lambda* lies on a ridge, not identified"), **base)


def predict(law: str, model: str, optimizer: str, init: str, slice: str | None = None, held=None,
            alpha_scaling: str = "r", variable: str = "n", **kw) -> LawPrediction:
    """One law by name: "edge" and "optimum" need a slice; "corner" ignores it."""
    if law == "edge":
        return predict_edge(model, optimizer, init, slice, held, alpha_scaling, variable, **kw)
    if law == "optimum":
        return predict_optimum(model, optimizer, init, slice, held, alpha_scaling, variable, **kw)
    if law == "corner":
        return predict_corner(model, optimizer, init, alpha_scaling=alpha_scaling, variable=variable, **kw)
    raise ValueError(f"unknown law {law!r}; choose from {', '.join(LAWS)}")


def edge_difference(first: LawPrediction, second: LawPrediction) -> LawPrediction:
    """The law of the ratio of two edges (one slice, two settings): the difference of their
    exponents, exact where both are."""
    if first.exponent is None or second.exponent is None:
        return LawPrediction.given(None, "none", "no prediction for one of the two")
    return LawPrediction.given(first.exponent - second.exponent,
                               "exact" if first.claim == second.claim == "exact" else "none",
                               "the difference of the two predicted exponents")


TABLE_COLUMNS = ("law", "slice", "model", "optimizer", "init", "alpha_scaling", "variable", "predicted", "claim",
                 "binding", "reason", "held", "lower", "upper", "law_nr")


def all_predictions(models=("toy", "linear", "mlp", "paper-mlp"), optimizers=("adam", "sgd"), inits=("1", "2"),
                    alpha_scalings=("r",), variable: str = "n", **kw) -> list[LawPrediction]:
    """Every edge (four slices, default held rates), corner and optimum (four slices and the plane)."""
    out = []
    for model in models:
        for optimizer in optimizers:
            for init in inits:
                for scaling in alpha_scalings:
                    args = (model, optimizer, init)
                    out += [predict_edge(*args, s, None, scaling, variable, **kw) for s in SLICES]
                    out.append(predict_corner(*args, alpha_scaling=scaling, variable=variable, **kw))
                    out += [predict_optimum(*args, s, None, scaling, variable, **kw) for s in OPTIMUM_SLICES]
    return out


def law_frame(predictions: list[LawPrediction], short: bool = False) -> pd.DataFrame:
    """Predictions as rows (TABLE_COLUMNS); ``short``: a readable subset for printing, the law
    written out (e.g. n^-1/2, or the bounds when it is not predicted)."""
    rows = [{"law": p.law, "slice": p.slice, "model": p.model, "optimizer": p.optimizer, "init": p.init,
             "alpha_scaling": p.alpha_scaling, "variable": p.variable, "predicted": p.exponent, "claim": p.claim,
             "binding": p.binding, "reason": p.reason, "held": p.held, "lower": p.lower, "upper": p.upper,
             "law_nr": p.law_nr} for p in predictions]
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    if not short:
        return df
    def law(p: LawPrediction) -> str:
        if p.exponent is not None:
            return f"{p.variable}^{fmt(p.exponent)}" + (" (max)" if p.claim == "upper bound" else "")
        if p.lower is not None or p.upper is not None:
            return f"in [{'-inf' if p.lower is None else fmt(p.lower)}, {'+inf' if p.upper is None else fmt(p.upper)}]"
        return "-"
    held = [("" if p.held is None or p.slice not in HELD_NAME else f"{HELD_NAME[p.slice]}~{Exponent(*p.held)}")
            for p in predictions]
    return pd.DataFrame({"law": df.law, "slice": df.slice, "held": held, "model": df.model, "optimizer": df.optimizer,
                         "init": df.init, "scale": [SCALE_TEXT[p.alpha_scaling] for p in predictions],
                         "predicted": [law(p) for p in predictions], "claim": df.claim,
                         "binding / why": [p.binding if p.exponent is not None else p.reason[:70] for p in predictions]})
