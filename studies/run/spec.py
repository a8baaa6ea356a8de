"""Study specifications: plain dataclasses validated on construction with one-line errors."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from scaling.rules import Scheme, parse_scheme
from toy_models.init import INITS
from toy_models.models import DTYPES, MODELS, ModelConfig
from toy_models.optim import OPTIMIZERS


class SpecError(ValueError):
    """A bad input; its message is one line meant for the user."""


def check_choices(model: str, optimizer: str, init: str | None) -> None:
    """SpecError naming the allowed values for an unknown model, optimizer or init."""
    if model not in MODELS:
        raise SpecError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if optimizer not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if init is not None and init not in INITS:
        raise SpecError(f"unknown init {init!r}; choose from {', '.join(INITS)}")


def _positive_ints(name: str, values) -> tuple[int, ...]:
    values = tuple(values)
    if not values:
        raise SpecError(f"{name}: give at least one value")
    for v in values:
        if not isinstance(v, int) or v <= 0:
            raise SpecError(f"{name} must be positive integers, got {v!r}")
    return values


# The options of the built-in toy models (a factory's model takes none of them).
TOY_MODEL_OPTIONS = ("model", "optimizer", "init", "rank", "alpha", "alpha_scaling", "batch_size", "data", "depth",
                     "dtype", "loss_reduction", "teacher", "b0_scale", "detach_lora_input")


@dataclass(frozen=True)
class CoordCheckSpec:
    """A coordinate check: every scheme at every width and seed, measured every step.

    One shard = one (width, seed): all schemes train together as one population.
    """

    model: str = "linear"
    optimizer: str = "adam"
    init: str | None = None
    schemes: tuple[str, ...] = ("loraplus", "lora-const", "lora-sqrt", "lora-inv")
    widths: tuple[int, ...] = (128, 256, 512, 1024, 2048)
    steps: int = 6
    seeds: tuple[int, ...] = (0, 1)
    rank: int | None = None
    alpha: float | None = None
    alpha_scaling: str = "r"
    batch_size: int | None = None
    data: str = "fixed"
    depth: int = 2
    dtype: str = "float32"
    loss_reduction: str = "mean"
    teacher: str = "independent"
    weight_decay: float | None = None
    extra: dict = field(default_factory=dict)
    b0_scale: float = 1.0
    detach_lora_input: bool = False  # the stacking control (ModelConfig.detach_lora_input)

    def __post_init__(self):
        check_choices(self.model, self.optimizer, self.init)
        if self.model == "paper-mlp" and self.init not in (None, "paper"):
            raise SpecError(f"paper-mlp has no base matrix between A and B, so init {self.init!r} starts "
                            "at relu'(0) = 0 and never trains; use --init paper")
        if self.teacher != "independent" and self.model not in ("toy", "linear"):
            raise SpecError(f"--teacher applies to the toy and linear models only, not {self.model!r}")
        if self.dtype not in DTYPES:
            raise SpecError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        if self.detach_lora_input and not (self.model == "mlp" and self.depth >= 2):
            raise SpecError("--detach-lora-inputs (the stacking control) needs stacked LoRA layers: "
                            "--model mlp with --depth 2 or more")
        object.__setattr__(self, "widths", _positive_ints("widths", self.widths))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise SpecError(f"seeds must be non-negative integers, got {list(self.seeds)}")
        if not isinstance(self.steps, int) or self.steps <= 0:
            raise SpecError(f"steps must be a positive integer, got {self.steps!r}")
        try:
            parsed = [parse_scheme(s) for s in self.schemes]
        except ValueError as err:
            raise SpecError(str(err)) from None
        if not parsed:
            raise SpecError("schemes: give at least one scheme")
        for w in self.widths:
            try:
                self.model_config(w).check()
            except ValueError as err:
                raise SpecError(str(err)) from None

    @property
    def scheme_objects(self) -> list[Scheme]:
        return [parse_scheme(s) for s in self.schemes]

    def model_config(self, width: int) -> ModelConfig:
        rank = self.rank if self.rank is not None else (1 if self.model == "toy" else 4)
        return ModelConfig(width=width, rank=rank, alpha=self.alpha, alpha_scaling=self.alpha_scaling,
                           init=self.init, batch_size=self.batch_size, data=self.data,
                           depth=self.depth, dtype=self.dtype, loss_reduction=self.loss_reduction,
                           teacher=self.teacher, b0_scale=self.b0_scale, detach_lora_input=self.detach_lora_input)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schemes"], d["widths"], d["seeds"] = list(self.schemes), list(self.widths), list(self.seeds)
        for key, default in (("b0_scale", 1.0), ("detach_lora_input", False)):
            if d[key] == default:  # added later: left out at its default so older stores still resume
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CoordCheckSpec":
        """Inverse of to_dict (a stored run's meta.json)."""
        return cls(**{**d, **{k: tuple(d[k]) for k in ("schemes", "widths", "seeds") if k in d}})


def toy_model_defaults() -> dict:
    """The toy models' options at their defaults (CoordCheckSpec's)."""
    return {f.name: f.default for f in fields(CoordCheckSpec) if f.name in TOY_MODEL_OPTIONS}
