"""lr-laws' specification: slices of (eta_A, eta_B), configurations and the catalogue of named studies.

A *configuration* (model, optimizer, init, LoRA scale) is measured along *slices* of
(eta_A, eta_B) (``SLICES``; the held quantity scales as held * (n / n0)^held_n * (r / r0)^held_r):

- ``b-edge``: eta_B varied at a held eta_A;     - ``a-edge``: eta_A varied at a held eta_B;
- ``one-rate``: eta_A = eta_B varied;            - ``ratio``: eta_A varied at eta_B = lambda eta_A.

``ConfigKey`` names a configuration by its typed settings; its ``label`` is the name the
tables carry in their ``config`` column, so that reports look configurations up by key, never
by a label typed out by hand.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from scaling.edges import Criterion
from scaling.gamma import CENTERS
from studies.run.spec import SpecError, _positive_ints, check_choices
from toy_models.models import MODELS, ModelConfig

SLICES = ("b-edge", "a-edge", "one-rate", "ratio")
ALPHA_SCALINGS = ("r", "sqrt-r", "none")
LAWS = ("edge", "corner", "optimum", "profile")
# The value of each setting that every catalogue configuration of a width ("n") or rank ("r")
# study uses, which its label therefore leaves unsaid (batch: under Adam; gradient descent runs
# at the model's own batch). alpha None: alpha = r; teacher rank None: the LoRA rank.
HOUSE = {"n": {"batch": 8, "alpha": None, "teacher_rank": None},
         "r": {"batch": 8, "alpha": 1.0, "teacher_rank": 4}}


def _or(value, default: str) -> str:
    return default if value is None else f"{value:g}"
ROLES = ("edge", "profile")
VARIED = {"b-edge": "eta_b", "a-edge": "eta_a", "one-rate": "eta", "ratio": "eta_a"}
HELD = {"b-edge": "eta_a", "a-edge": "eta_b", "one-rate": None, "ratio": "lambda"}


def check_range(name: str, lo: float, hi: float) -> None:
    """SpecError for a rate range that is empty, inverted or not positive and finite."""
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float))):
        raise SpecError(f"{name} must be two numbers LOW:HIGH, got {lo!r}:{hi!r}")
    if not (0 < lo and math.isfinite(hi)):
        raise SpecError(f"{name} must be LOW:HIGH with 0 < LOW < HIGH, got {lo:g}:{hi:g}")
    if not lo < hi:
        raise SpecError(f"{name} {lo:g}:{hi:g} is {'empty' if lo == hi else 'inverted'}; give LOW:HIGH with LOW < HIGH")


@dataclass(frozen=True)
class SliceSpec:
    """One slice of (eta_A, eta_B). held: the held quantity at (n0, r0) (b-edge: eta_A, a-edge:
    eta_B, ratio: lambda = eta_B / eta_A; unused for one-rate); held_n, held_r: its exponents in
    n and r; rate_range: the varied rate's search range (absolute, the same at every width);
    role: "edge" (searched in rounds) or "profile" (round-0 grid only)."""

    name: str
    held: float = 0.0
    held_n: float = 0.0
    held_r: float = 0.0
    rate_range: tuple[float, float] = (1e-6, 1e2)
    role: str = "edge"
    per_decade: int | None = None  # the round-0 grid's density (None: the configuration's)

    def __post_init__(self):
        if self.name not in SLICES:
            raise SpecError(f"unknown slice {self.name!r}; choose from {', '.join(SLICES)}")
        if self.role not in ROLES:
            raise SpecError(f"unknown slice role {self.role!r}; choose from {', '.join(ROLES)}")
        object.__setattr__(self, "rate_range", tuple(float(v) for v in self.rate_range))
        check_range(f"{self.name} rate range", *self.rate_range)
        if self.name != "one-rate" and not (math.isfinite(self.held) and self.held > 0):
            raise SpecError(f"slice {self.name}: the held {HELD[self.name]} must be positive, got {self.held}")

    @property
    def key(self) -> str:
        """A label unique within a configuration, e.g. ``b-edge`` or ``ratio 16 n^1``."""
        if self.name == "one-rate":
            return "one-rate"
        scale = "".join(f" {v}^{e:g}" for v, e in (("n", self.held_n), ("r", self.held_r)) if e)
        label = "ratio" if self.role == "edge" else "profile"
        return self.name if self.name != "ratio" else f"{label} {self.held:g}{scale}"

    def held_at(self, n: int, r: int, n0: int, r0: int) -> float:
        return self.held * (n / n0) ** self.held_n * (r / r0) ** self.held_r

    def rates(self, values, n: int, r: int, n0: int, r0: int) -> tuple[np.ndarray, np.ndarray]:
        """(eta_A, eta_B) of the runs whose varied rate is ``values``."""
        v = np.asarray(values, float)
        h = self.held_at(n, r, n0, r0)
        if self.name == "b-edge":
            return np.full_like(v, h), v
        if self.name == "a-edge":
            return v, np.full_like(v, h)
        if self.name == "one-rate":
            return v, v.copy()
        return v, h * v


@dataclass(frozen=True)
class ConfigKey:
    """A configuration's identity, typed: what distinguishes it from every other configuration
    of a run. ``label`` is the name the tables carry (``config`` column); reports find a
    configuration's rows through its key, e.g. ``ConfigKey("linear", "adam", "1").label``.

    rank_width: for a rank study (laws against r), the width it holds fixed (None: a width
    study); detached: the stacking control; extra: any other setting that differs from the
    catalogue's house value, as written in the label (``LawsConfig.key``)."""

    model: str
    optimizer: str
    init: str
    alpha_scaling: str = "r"
    b0_variance: str = "1"
    b0_scale: float = 1.0
    teacher: str = "independent"
    depth: int = 1
    rank_width: int | None = None
    detached: bool = False
    extra: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        parts = (["B0 var 1/r"] if self.b0_variance != "1" else []) + (
            [f"B0 x {self.b0_scale:g}"] if self.b0_scale != 1.0 else []) + (
            [f"teacher {self.teacher}"] if self.teacher != "independent" else []) + (
            [f"n={self.rank_width} vs r"] if self.rank_width is not None else []) + (
            [f"depth {self.depth}"] if self.depth != 1 else []) + list(self.extra) + (
            ["LoRA inputs detached"] if self.detached else [])
        return "/".join([self.model, self.optimizer, f"init{self.init}", self.alpha_scaling, *parts])


@dataclass(frozen=True)
class LawsConfig:
    """One configuration measured along its slices at every (width, rank) and seed.

    variable: "n" (widths vary, one rank) or "r" (ranks vary, one width). criteria: the first is
    the primary one (laws.csv); the others give the sensitivity table. n0, r0: where the slices'
    held values are given. profile_widths: the widths at which profile slices run (None: all).
    """

    model: str
    optimizer: str
    init: str | None
    widths: tuple[int, ...]
    ranks: tuple[int, ...] = (4,)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    slices: tuple[SliceSpec, ...] = ()
    criteria: tuple[Criterion, ...] = (Criterion(20, 0.5),)
    alpha: float | None = None
    alpha_scaling: str = "r"
    variable: str = "n"
    per_decade: int = 4
    refine_points: int = 3
    refine_rounds: int = 2
    n0: int = 64
    r0: int = 4
    depth: int = 1
    batch_size: int | None = None
    data: str = "fixed"
    dtype: str = "float32"
    profile_widths: tuple[int, ...] | None = None
    teacher: str = "independent"
    teacher_rank: int | None = None
    b0_variance: str = "1"
    b0_scale: float = 1.0
    factory: str | None = None  # a factory reference (``studies.lr_laws.factory``); model is then its name
    center: str = "mean"  # the seeds' centre of a width's log edges in fits and summaries (scaling.gamma.CENTERS)
    # The stacking control: every LoRA layer with a LoRA layer upstream reads a detached copy of its
    # input in its LoRA branch (no gradient reaches the layers below through B A; the frozen path stays)
    detach_lora_input: bool = False

    def __post_init__(self):
        if self.factory is not None:
            self._check_factory_config()
        else:
            check_choices(self.model, self.optimizer, self.init)
        if self.alpha_scaling not in ALPHA_SCALINGS:
            raise SpecError(f"unknown LoRA scale {self.alpha_scaling!r}; choose from {', '.join(ALPHA_SCALINGS)}")
        if self.b0_variance not in ("1", "1/r"):
            raise SpecError(f"b0 variance must be '1' or '1/r', got {self.b0_variance!r}")
        if self.center not in CENTERS:
            raise SpecError(f"unknown seed centre {self.center!r}; choose from {', '.join(CENTERS)}")
        if self.variable not in ("n", "r"):
            raise SpecError(f"variable must be 'n' (width) or 'r' (rank), got {self.variable!r}")
        for name in ("widths", "ranks"):
            object.__setattr__(self, name, _positive_ints(name, getattr(self, name)))
        if self.variable == "r" and len(self.widths) != 1:
            raise SpecError("a rank study holds the width fixed: give exactly one width")
        if self.variable == "n" and len(self.ranks) != 1:
            raise SpecError("a width study holds the rank fixed: give exactly one rank")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise SpecError(f"seeds must be non-negative integers, got {list(self.seeds)}")
        if not self.slices:
            raise SpecError("give at least one slice")
        keys = [s.key for s in self.slices]
        if len(set(keys)) != len(keys):
            raise SpecError(f"slices must differ, got {keys}")
        if not self.criteria:
            raise SpecError("give at least one edge criterion")
        for name in ("per_decade", "refine_points"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise SpecError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.refine_rounds, int) or self.refine_rounds < 0:
            raise SpecError(f"refine-rounds must be a non-negative integer, got {self.refine_rounds!r}")
        if self.optimizer == "sgd" and any(c.fraction is not None for c in self.criteria):
            raise SpecError("under gradient descent the edge is a divergence: give criteria without a fraction")
        if self.factory is None:  # a factory checks its own widths (studies.factory_check.check_factory)
            for w, r in self.points():
                try:
                    self.model_config(w, r).check()
                except ValueError as err:
                    raise SpecError(str(err)) from None
        if self.detach_lora_input and self.factory is None and not (self.model == "mlp" and self.depth >= 2):
            raise SpecError("the stacking control (detached LoRA inputs) needs stacked LoRA layers: "
                            "the mlp at depth 2 or more, or a factory")
        if self.model == "paper-mlp" and self.init not in (None, "paper"):
            raise SpecError(f"paper-mlp has no base matrix between A and B, so init {self.init!r} never trains; "
                            "use init paper")

    def _check_factory_config(self) -> None:
        """A factory's model trains under Adam from Init[1] or Init[2], with PEFT's scale."""
        if self.optimizer != "adam":
            raise SpecError(f"a factory's model trains under Adam only, got optimizer {self.optimizer!r}")
        if self.init not in ("1", "2"):
            raise SpecError(f"a factory's model starts from init 1 or 2, got {self.init!r}")
        if self.variable != "n" or self.alpha_scaling != "r":
            raise SpecError("a factory's laws are width laws at the factory's own LoRA scale (alpha/r)")

    @property
    def init_name(self) -> str:
        return self.init or MODELS[self.model].default_init

    @property
    def predict_as(self) -> str:
        """The model whose derivation predicts this one: a factory's LoRA layers are predicted as
        the mlp's (Adam LoRA layers with Theta(1) inputs whose outputs the loss does not read
        directly; ``studies.factory_check``)."""
        return "mlp" if self.factory is not None else self.model

    @property
    def effective_batch(self) -> int | None:
        """Samples per step: the given batch or the toy model's own (None for a factory, whose
        batches are its own)."""
        if self.factory is not None:
            return None
        return self.batch_size or MODELS[self.model].default_batch

    @property
    def key(self) -> ConfigKey:
        """The configuration's identity: its main settings, then every other setting of the model
        or its training that differs from the catalogue's house value (``HOUSE``), so that two
        configurations that train differently never share a label (``check_labels``) while the
        catalogue's own labels stay short."""
        house = HOUSE[self.variable]
        extra = []
        batch = self.effective_batch
        if batch is not None and batch != (house["batch"] if self.optimizer != "sgd" else MODELS[self.model].default_batch):
            extra.append(f"batch {batch}")
        extra += ([f"data {self.data}"] if self.data != "fixed" else []) + (
            [self.dtype] if self.dtype != "float32" else []) + (
            [f"alpha {_or(self.alpha, 'r')}"] if self.alpha != house["alpha"] else []) + (
            [f"teacher rank {_or(self.teacher_rank, 'r')}"] if self.teacher_rank != house["teacher_rank"] else []) + (
            [f"n0={self.n0}"] if self.n0 != 64 else [])
        return ConfigKey(self.model, self.optimizer, self.init_name, self.alpha_scaling, self.b0_variance,
                         self.b0_scale, self.teacher, self.depth, self.widths[0] if self.variable == "r" else None,
                         self.detach_lora_input, tuple(extra))

    @property
    def label(self) -> str:
        return self.key.label

    @property
    def steps(self) -> int:
        return max(c.steps for c in self.criteria)

    @property
    def primary(self) -> Criterion:
        return self.criteria[0]

    def model_config(self, width: int, rank: int) -> ModelConfig:
        return ModelConfig(width=width, rank=rank, alpha=self.alpha, alpha_scaling=self.alpha_scaling,
                           init=self.init, batch_size=self.batch_size, data=self.data, depth=self.depth,
                           dtype=self.dtype, teacher=self.teacher, teacher_rank=self.teacher_rank,
                           b0_scale=self.b0_scale * (1.0 if self.b0_variance == "1" else rank ** -0.5),
                           detach_lora_input=self.detach_lora_input)

    def points(self) -> list[tuple[int, int]]:
        """Every (width, rank) measured."""
        return [(w, r) for w in self.widths for r in self.ranks]

    def slices_at(self, width: int) -> list[SliceSpec]:
        return [s for s in self.slices if s.role == "edge" or self.profile_widths is None
                or width in self.profile_widths]

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["detach_lora_input"]:  # added later: left out at its default so older stores still resume
            del d["detach_lora_input"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LawsConfig":
        """Inverse of to_dict (a stored run's meta.json)."""
        d = dict(d)
        d["slices"] = tuple(SliceSpec(**{**s, "rate_range": tuple(s["rate_range"])}) for s in d["slices"])
        d["criteria"] = tuple(Criterion(**c) for c in d["criteria"])
        for k in ("widths", "ranks", "seeds"):
            d[k] = tuple(d[k])
        if d.get("profile_widths") is not None:
            d["profile_widths"] = tuple(d["profile_widths"])
        return cls(**d)


def check_labels(configs: list[LawsConfig]) -> None:
    """SpecError when two different configurations share a label: their runs would be merged
    into one configuration's edges (the label is the runs' ``config`` column)."""
    seen: dict[str, LawsConfig] = {}
    for c in configs:
        other = seen.setdefault(c.label, c)
        if other != c:
            a, b = other.to_dict(), c.to_dict()
            differ = [k for k in a if a[k] != b[k]]
            raise SpecError(f"two configurations share the label {c.label!r} but differ in {', '.join(differ)}")


# -- the catalogue -------------------------------------------------------------------------------
STUDIES = ("width", "gd", "rank", "fig2", "transfer")
ADAM_CRITERIA = (Criterion(20, 1.0), Criterion(20, 0.5), Criterion(20, 0.9))
ADAM_T_CRITERIA = (Criterion(10, 1.0), Criterion(40, 1.0))
GD_CRITERIA = (Criterion(50), Criterion(25), Criterion(100))
PROFILE_RATIOS = tuple(10.0 ** (k / 2) for k in range(-2, 11))  # 0.1 .. 1e5, two per decade


def adam_slices(profile: bool) -> tuple[SliceSpec, ...]:
    """The Adam slices. Held values at n0 = 64: eta_A = 1e-2 (n/64)^-1 on the B edge, eta_B = 3e-2
    on the A edge (inside the trainable region of both inits at every width measured), and
    LoRA+'s ratio 16 (n/64) on the ratio slice, whose rates then move only with the scheme's
    base rate (the muP-style transfer plot). Profile: width-free ratios 0.1 .. 1e5, each with
    eta_A on a 6-per-decade grid (the profile's minimum over eta_A must be resolved finely)."""
    s = (SliceSpec("b-edge", held=1e-2, held_n=-1.0, rate_range=(1e-3, 1e4)),
         SliceSpec("a-edge", held=3e-2, held_n=0.0, rate_range=(1e-6, 1e2)),
         SliceSpec("one-rate", rate_range=(1e-6, 1e2)),
         SliceSpec("ratio", held=16.0, held_n=1.0, rate_range=(1e-7, 1e1)))
    if profile:
        s += tuple(SliceSpec("ratio", held=lam, rate_range=(1e-5, 1e1), role="profile", per_decade=6)
                   for lam in PROFILE_RATIOS)
    return s


def stacked_configs(quick: bool) -> list[LawsConfig]:
    """The toy mlp with 2 LoRA layers in series under Adam, each beside its stacking control (every
    LoRA layer above the first reads a detached copy of its input): under Init[1] the B edge falls
    like n^-(L-1)/(2L) and the control gives back the one-layer laws; under Init[2] the one-rate
    edge steepens to n^(-1 + 1/(2L)) with or without the control (docs/investigations/stacked_lora.md).
    Widths 64..2048, those of the investigation's ladder: at the A edge's held eta_B = 3e-2 the
    backward link opens (eta_B n^1/2 > 1) near n = 1100, beyond which the A edge has bounds only. Quick: Init[1]
    and its control on the B edge and the one-rate edge, at 64..1024 and 4 seeds."""
    if quick:
        inits, widths, seeds, slices = ("1",), (64, 128, 256, 512, 1024), tuple(range(4)), (
            adam_slices(False)[0], adam_slices(False)[2])
    else:
        inits, widths, seeds, slices = ("1", "2"), (64, 128, 256, 512, 1024, 2048), tuple(range(8)), adam_slices(False)
    return [LawsConfig(model="mlp", optimizer="adam", init=init, widths=widths, seeds=seeds, slices=slices,
                       criteria=ADAM_CRITERIA[:1], batch_size=8, per_decade=3, depth=2, detach_lora_input=detached)
            for init in inits for detached in (False, True)]


def gd_slices(ratio: bool, top: float = 1e4) -> tuple[SliceSpec, ...]:
    """Gradient descent's slices; rates up to ``top`` (1e7 on the toy model, where a few seeds in 32
    have a tiny (a^T x)^2 or b and their B or A edge lies beyond 1e4: censored there, they cost
    whole widths)."""
    s = (SliceSpec("b-edge", held=1e-2, held_n=-1.0, rate_range=(1e-4, top)),
         SliceSpec("a-edge", held=5e-2, held_n=0.0, rate_range=(1e-6, top)),
         SliceSpec("one-rate", rate_range=(1e-6, min(top, 1e6))))
    return s + ((SliceSpec("ratio", held=16.0, held_n=1.0, rate_range=(1e-6, min(top, 1e6))),) if ratio else ())


def catalogue(study: str, quick: bool = False) -> list[LawsConfig]:
    """The configurations of a named study (quick: fewer widths, ranks and seeds)."""
    pd3 = dict(per_decade=3)
    if study == "width":
        out = []
        for model in ("linear", "mlp"):
            if quick and model == "mlp":
                continue
            widths = (64, 128, 256, 512, 1024, 2048) if quick else (64, 128, 256, 512, 1024, 2048, 4096, 8192)
            profile_widths = (64, 512) if quick else (64, 512, 4096) if model == "linear" else (64, 256, 1024)
            for init in ("1", "2"):
                crit = ADAM_CRITERIA[:1] if quick else ADAM_CRITERIA + (
                    ADAM_T_CRITERIA if (model, init) == ("linear", "1") else ())
                out.append(LawsConfig(model=model, optimizer="adam", init=init, widths=widths,
                                      seeds=tuple(range(4 if quick else 8)), slices=adam_slices(True),
                                      criteria=crit, batch_size=8, profile_widths=profile_widths, **pd3))
        if not quick:
            # controls: Init[2]'s overshoot on linear (the teacher's output directions in span(B0),
            # so A's own target is Theta(1)) and the B0 path on the mlp (B0 x 1/4, which shrinks
            # what B0's random columns carry and changes no predicted exponent)
            control = dict(optimizer="adam", init="2", widths=out[0].widths, seeds=tuple(range(8)),
                           slices=adam_slices(False)[:3], criteria=ADAM_CRITERIA[:1], batch_size=8, **pd3)
            out += [LawsConfig(model="linear", teacher="b0-aligned", **control),
                    LawsConfig(model="mlp", b0_scale=0.25, **control)]
        return out + stacked_configs(quick)
    if study == "gd":
        toy_widths = (256, 1024, 4096, 16384) if quick else (256, 512, 1024, 2048, 4096, 8192, 16384)
        out = [LawsConfig(model="toy", optimizer="sgd", init=init, widths=toy_widths, ranks=(1,), r0=1,
                          seeds=tuple(range(8 if quick else 32)), slices=gd_slices(True, 1e7),
                          criteria=GD_CRITERIA[:1] if quick else GD_CRITERIA, **pd3) for init in ("1", "2")]
        if not quick:
            out.append(LawsConfig(model="paper-mlp", optimizer="sgd", init="paper",
                                  widths=(64, 128, 256, 512, 1024, 2048), seeds=tuple(range(16)),
                                  slices=gd_slices(False), criteria=GD_CRITERIA[:2], **pd3))
        return out
    if study == "rank":
        # muA's rows: Init[A] = Init[1] at every scale; Init[B] = Init[2] with B0 of variance 1/r
        # (their fan-in convention). The linear model with a rank-4 teacher keeps the target the
        # same at every LoRA rank; Init[2] also runs on the toy model (one output), where A's first
        # step cannot overshoot a small target of its own, so the calculus is tested there too.
        ranks = (1, 4, 16, 64) if quick else (1, 2, 4, 8, 16, 32, 64, 128, 256)
        width = 512 if quick else 1024
        rows = ([("linear", "1", s) for s in ALPHA_SCALINGS] + [("linear", "2", s) for s in ALPHA_SCALINGS]
                + ([] if quick else [("toy", "2", s) for s in ALPHA_SCALINGS]))
        return [LawsConfig(model=model, optimizer="adam", init=init, widths=(width,), ranks=ranks, variable="r",
                           r0=1, alpha=1.0, alpha_scaling=scaling, b0_variance="1/r" if init == "2" else "1",
                           teacher_rank=4, seeds=tuple(range(4 if quick else 8)),
                           slices=(SliceSpec("one-rate", rate_range=(1e-6, 1e1)),), criteria=ADAM_CRITERIA[:1],
                           batch_size=8, **pd3)
                for model, init, scaling in rows]
    raise SpecError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")


# -- the command ----------------------------------------------------------------------------------
def _choose(name: str, given: list[str] | None, allowed) -> list[str] | None:
    """The listed names (None: all), each checked against ``allowed``."""
    if given is None:
        return None
    for v in given:
        if v not in allowed:
            raise SpecError(f"unknown {name} {v!r}; choose from {', '.join(allowed)}")
    if not given:
        raise SpecError(f"--{name}s: give at least one value")
    return given


def parse_criteria(names: list[str]) -> tuple[Criterion, ...]:
    """The criteria ``--criteria`` names (``Criterion.parse``), in order without repeats, the
    first primary; SpecError (one line) for a name that is none."""
    try:
        return tuple(dict.fromkeys(Criterion.parse(c) for c in names))
    except ValueError as err:
        raise SpecError(f"--criteria: {err}") from None


def select_configs(studies: list[str], quick: bool = False, models=None, inits=None, scales=None, slices=None,
                   laws=None, widths=None, ranks=None, seeds: int | None = None, fraction: float | None = None,
                   steps: int | None = None, rate_range: tuple[float, float] | None = None, depth: int | None = None,
                   detach: bool = False, criteria: list[str] | None = None) -> list[LawsConfig]:
    """The configurations to run: the named studies' catalogue, narrowed by the filters and
    changed by the overrides (all validated; SpecError with one line otherwise). depth and detach
    (the stacking control) apply to the mlp, and only the mlp's configurations may be selected then;
    they set the catalogue's one-layer mlp configurations to that stack and leave out its own
    stacked ones (which would repeat them under the same label). criteria: criterion names
    (``Criterion.parse``) replacing every configuration's, the first primary; fraction and steps
    then change that first one."""
    _choose("studie", studies, STUDIES)
    _choose("model", models, tuple(MODELS))
    _choose("init", inits, ("1", "2", "paper"))
    _choose("scale", scales, ALPHA_SCALINGS)
    _choose("slice", slices, SLICES)
    laws = _choose("law", laws, LAWS) or list(LAWS)
    if rate_range is not None:
        check_range("--range", *rate_range)
    if seeds is not None and seeds <= 0:
        raise SpecError(f"--seeds must be a positive integer, got {seeds}")
    if fraction is not None and not 0 < fraction <= 1:
        raise SpecError(f"--fraction must be in (0, 1], got {fraction}")
    if steps is not None and steps <= 0:
        raise SpecError(f"--steps must be a positive integer, got {steps}")
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise SpecError(f"--depth must be a positive integer, got {depth}")
    if detach and (depth or 1) < 2:
        raise SpecError("--detach-lora-inputs needs stacked LoRA layers: give --depth 2 or more")
    parsed = parse_criteria(criteria) if criteria else None
    out = []
    for study in (s for s in studies if s not in ("fig2", "transfer")):
        for c in catalogue(study, quick):
            if (models and c.model not in models) or (inits and c.init_name not in inits) or (
                    scales and c.alpha_scaling not in scales):
                continue
            keep = [s for s in c.slices if (s.role == "edge" and (not slices or s.name in slices)
                                             and ({"edge", "corner", "optimum"} & set(laws)))
                    or (s.role == "profile" and "profile" in laws)]
            if not keep:
                continue
            changes = {"slices": tuple(replace(s, rate_range=tuple(rate_range)) if rate_range else s for s in keep)}
            if widths and c.variable == "n":
                changes["widths"] = tuple(widths)
                if c.profile_widths is not None:
                    changes["profile_widths"] = tuple(w for w in c.profile_widths if w in widths) or tuple(widths[:1])
            if ranks and c.variable == "r":
                changes["ranks"] = tuple(ranks)
            if seeds:
                changes["seeds"] = tuple(range(seeds))
            if depth is not None or detach:
                if c.depth > 1 and c.factory is None:  # the catalogue's own stacks: the override replaces them
                    continue
                if c.model != "mlp":
                    raise SpecError(f"--depth and --detach-lora-inputs apply to the mlp only; the selection holds "
                                    f"{c.label} (add --models mlp)")
                changes.update(depth=depth or c.depth, detach_lora_input=detach)
            if parsed:
                if (c.optimizer == "sgd") != all(k.kind == "diverged" for k in parsed):
                    raise SpecError(f"--criteria {','.join(criteria)}: {c.label} needs "
                                    + ("diverged@T<T> (gradient descent)" if c.optimizer == "sgd" else
                                       "f<F>@T<T> or best<Q>@T<T> (Adam)") + "; narrow --studies or --models")
                changes["criteria"] = parsed
            if fraction is not None or steps is not None:
                first = changes.get("criteria", c.criteria)[0]
                if c.optimizer == "sgd":
                    changes["criteria"] = (Criterion(steps or first.steps),)
                else:
                    changes["criteria"] = (Criterion(steps or first.steps, fraction or first.fraction, first.kind),)
            out.append(replace(c, **changes))
    check_labels(out)
    if not out and not {"fig2", "transfer"} & set(studies):
        raise SpecError("nothing to run: the filters leave no configuration of " + ", ".join(studies))
    return out


# -- one law for validate --------------------------------------------------------------------------
def corner_config() -> LawsConfig:
    """The LoRA+ corner on ``linear`` under Adam and Init[1], small enough for ``validate --quick``
    (about 5 s of CPU here): the B edge and the A edge at five widths, 8 seeds, primary criterion."""
    return LawsConfig(model="linear", optimizer="adam", init="1", widths=(128, 256, 512, 1024, 2048),
                      seeds=tuple(range(8)), slices=adam_slices(False)[:2], criteria=ADAM_CRITERIA[:1], batch_size=8,
                      per_decade=3)
