"""The coordinate check on any model: ``coord-check --factory REF`` (and ``studies.api``).

A factory ``make(width, rank, seed)`` (``scaling.factory``) gives the model; every scheme runs
at every width and seed, and ``scaling.monitor``'s measurements of every LoRA layer are fitted
against width and judged exactly as in ``validate`` (``scaling.verdicts.compare``).

Shards: one width x a block of seeds (``seeds_per_shard``); a shard builds its members with the
factory and trains all their runs (seeds x schemes) as one population
(``toy_models.module_population``: torch.func when the members share one architecture, else the
per-run loop; the rows say which in ``path``). ``population_shard`` takes explicit per-run
rates, so a study of the rates themselves (many candidate (eta_A, eta_B) at one width) trains
through the same shards.

Predictions. Each LoRA layer is predicted as an Adam LoRA layer with Theta(1) inputs: the
recursion of ``scaling.theory`` for the ``mlp`` model (no Init[2] overshoot: the loss does not
read the layer's outputs directly). That holds sharply for a layer with no LoRA layer upstream
(it reads the frozen base's own features, whatever the rates do) as long as the base itself
is width-stable (the report shows z_a at step 0 against width as that check). A layer behind
other LoRA layers keeps it only while the scheme is stable: under an unstable one its input
grows with n and it gets no sharp prediction (INCONCLUSIVE), as the mlp's deeper layers. The
first-step loss decrease (``loss_drop``) is not judged: its exponent depends on how the model
reads its features out, which the derivation knows only for the toy models.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scaling.factory import Factory, FactoryError, TaskShape, inspect_task, load_factory
from scaling.gamma import fit_power_law
from scaling.monitor import short_layer_names
from scaling.rules import parse_scheme
from scaling.theory import predict
from scaling.verdicts import DEFAULT_TOLERANCE, compare
from studies.families import FAMILIES
from studies.run.shards import Shard
from studies.run.spec import SpecError, _positive_ints
from toy_models.module_population import train_population

PATHS = ("auto", "torch.func", "loop")
RESULT_COLUMNS = ["model", "optimizer", "init", "scheme", "width", "seed", "step", "layer", "metric", "value",
                  "eta_a", "eta_b", "upstream_lora", "path"]


def factory_for(ref) -> Factory:
    """A factory from a reference, a built-in family name or a callable (FactoryError if unusable)."""
    return load_factory(ref, FAMILIES)


@dataclass(frozen=True)
class FactoryCheckSpec:
    """The coordinate check of a factory's model.

    lr_a, lr_b: eta_A and eta_B at ``base_width`` (default: the narrowest width, where every
    scheme uses the same rates); a custom scheme's own cA / cB / n0 win. seeds_per_shard: seeds
    trained together in one shard (one program on the torch.func path).
    """

    factory: object
    widths: tuple[int, ...] = (64, 128, 256, 512)
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    schemes: tuple[str, ...] = ("loraplus", "lora-const")
    steps: int = 6
    rank: int = 4
    lr_a: float = 1e-3
    lr_b: float = 1e-3
    base_width: int | None = None
    seeds_per_shard: int = 2
    path: str = "auto"
    max_inputs: int = 256

    def __post_init__(self):
        object.__setattr__(self, "factory", factory_for(self.factory))
        object.__setattr__(self, "widths", tuple(sorted(_positive_ints("widths", self.widths))))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "schemes", tuple(self.schemes))
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise SpecError(f"seeds must be non-negative integers, got {list(self.seeds)}")
        if not self.schemes:
            raise SpecError("schemes: give at least one scheme")
        try:
            [parse_scheme(s) for s in self.schemes]
        except ValueError as err:
            raise SpecError(str(err)) from None
        for name in ("steps", "rank", "seeds_per_shard", "max_inputs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise SpecError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr_a", "lr_b"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SpecError(f"{name} must be a positive number, got {value!r}")
        if self.base_width is not None and (not isinstance(self.base_width, int) or self.base_width <= 0):
            raise SpecError(f"base_width must be a positive integer, got {self.base_width!r}")
        if self.path not in PATHS:
            raise SpecError(f"unknown training path {self.path!r}; choose from {', '.join(PATHS)}")

    @property
    def name(self) -> str:
        return self.factory.name

    def scheme_rates(self, scheme: str, width: int) -> tuple[float, float]:
        """(eta_A, eta_B) of ``scheme`` at ``width``: lr x (width / base_width)^gamma."""
        s = parse_scheme(scheme)
        n0 = s.n0 if "n0=" in s.name else (self.base_width or self.widths[0])
        return dataclasses.replace(s, cA=self.lr_a if s.cA is None else s.cA, cB=self.lr_b if s.cB is None else s.cB,
                                   n0=n0).rates(width, "adam")

    def runs(self, width: int) -> pd.DataFrame:
        """The rate pairs of one width: one row per scheme (scheme, eta_a, eta_b)."""
        rates = [self.scheme_rates(s, width) for s in self.schemes]
        return pd.DataFrame({"scheme": list(self.schemes), "eta_a": [r[0] for r in rates],
                             "eta_b": [r[1] for r in rates]})

    def seed_blocks(self) -> list[tuple[int, ...]]:
        k = self.seeds_per_shard
        return [self.seeds[i:i + k] for i in range(0, len(self.seeds), k)]

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["factory"] = self.factory.name
        d["factory_fingerprint"] = self.factory.fingerprint
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def population_shard(factory: Factory, width: int, rank: int, seeds: tuple[int, ...], runs: pd.DataFrame,
                     steps: int, measure: bool = True, path: str = "auto", max_inputs: int = 256,
                     device: str = "cpu", chunk_size: int | None = None) -> pd.DataFrame:
    """One shard: the factory's members at (width, each seed), every row of ``runs`` (columns
    eta_a, eta_b and any labels) trained from each member as one population (``chunk_size``:
    runs per member computed at once on the torch.func path; None: all).

    Returns the tidy rows (RESULT_COLUMNS, the labels of ``runs`` and the factory's Task.info
    numbers as columns): model = the factory's name, optimizer adam, init from the model."""
    dev = torch.device(device)
    tasks = [factory(width, rank, seed, dev) for seed in seeds]
    shape = inspect_task(tasks[0], f"factory {factory.name}")
    result = train_population(tasks, runs.eta_a.to_numpy(), runs.eta_b.to_numpy(), steps, measure=measure,
                              path=path, max_inputs=max_inputs, device=dev, chunk_size=chunk_size)
    info = pd.DataFrame([t.info for t in tasks]).assign(member=range(len(tasks)))
    del tasks
    frame = result.frame
    names = short_layer_names(shape.layers)
    upstream = {names[n]: len(u) for n, u in shape.upstream.items() if n in names}
    frame = (frame.assign(layer=frame.layer.map(lambda n: names.get(n, n)))
             .merge(runs.reset_index(drop=True).rename_axis("run").reset_index(), on="run")
             .merge(info, on="member"))
    frame = frame.assign(model=factory.name, optimizer="adam", init=shape.init, width=width,
                         seed=np.asarray(seeds)[frame.member.to_numpy()],
                         upstream_lora=frame.layer.map(upstream).fillna(-1).astype(int),
                         path=result.path + (f" ({result.note})" if result.note else ""))
    labels = [c for c in frame.columns if c not in RESULT_COLUMNS + ["member", "run"]]
    return frame[RESULT_COLUMNS + labels]


def check_factory(spec: FactoryCheckSpec, device: torch.device) -> TaskShape:
    """Everything the factory must do, checked before anything is written (FactoryError):
    every width accepted (``make.check`` where the factory has one, else a build), and at
    the narrowest width a model with measurable LoRA layers and a finite scalar loss."""
    factory, name = spec.factory, f"factory {spec.factory.name}"

    def build(width: int):
        try:
            return factory(width, spec.rank, spec.seeds[0], device)
        except FactoryError:
            raise
        except ValueError as err:
            raise FactoryError(f"{name} rejects width {width} (rank {spec.rank}): {err}") from None
        except Exception as err:  # the user's code: any failure is theirs to see, in one line
            raise FactoryError(f"{name} failed at width {width} ({type(err).__name__}: {err})") from None

    check = getattr(factory.make, "check", None)
    for width in spec.widths[1:]:
        if callable(check):
            try:
                check(width, spec.rank)
            except ValueError as err:
                raise FactoryError(f"{name} rejects width {width} (rank {spec.rank}): {err}") from None
        else:
            build(width)
    return inspect_task(build(spec.widths[0]), name)


def factory_shards(spec: FactoryCheckSpec, device: torch.device, prefix: str = "") -> list:
    """One shard per (width, block of seeds), widest first (the longest shards start first)."""
    return [Shard(f"{prefix}w{w}_s{'-'.join(map(str, block))}", population_shard,
                  (spec.factory, w, spec.rank, block, spec.runs(w), spec.steps, True, spec.path,
                   spec.max_inputs, str(device)))
            for w in sorted(spec.widths, reverse=True) for block in spec.seed_blocks()]


def run_factory_check(spec: FactoryCheckSpec, ctx) -> pd.DataFrame:
    """Every shard the run's store does not hold yet (``ctx``: a studies.run.context.RunContext);
    all shards' rows."""
    shards = factory_shards(spec, ctx.device)
    ctx.run(shards, bar=f"coord-check {spec.name}")
    return ctx.load(shards)


def factory_predictor(model, optimizer, init, gA, gB, step):
    """scaling.theory.predict for a factory's LoRA layers: an Adam LoRA layer with Theta(1)
    inputs whose outputs the loss does not read directly (the ``mlp`` recursion)."""
    return predict("mlp", optimizer, init, gA, gB, step)


def upstream_counts(results: pd.DataFrame) -> dict[str, int]:
    """LoRA layer -> how many LoRA layers feed its input (0: it reads the base's own features)."""
    layers = [n for n in dict.fromkeys(results.layer) if n != "all"]
    if "upstream_lora" in results:
        return results[results.layer != "all"].groupby("layer").upstream_lora.first().astype(int).to_dict()
    # bert-width runs stored before the layer map was recorded: their first block (L0) reads the base
    return {n: 0 if str(n).startswith("L0.") else 1 for n in layers}


def judge(results: pd.DataFrame, tol: float | None = None) -> pd.DataFrame:
    """Fits and verdicts at steps 1, 2 and the last (``scaling.verdicts.compare``); layers with
    no LoRA layer upstream are the ones with a sharp prediction under every scheme."""
    steps = sorted({1, 2, int(results.step.max())})
    first = {layer for layer, k in upstream_counts(results).items() if k == 0}
    return compare(results, steps, tol=DEFAULT_TOLERANCE if tol is None else tol, predictor=factory_predictor,
                   first_layers=lambda names: [n for n in names if n in first],
                   corrected=False)  # the corrections to scaling are derived for the toy models only


# -- the analysis -------------------------------------------------------------------------------------
SHARP_EVERYWHERE = "reads the base model's own features (no LoRA layer upstream): Theta(1) inputs under every scheme"
SHARP_IF_STABLE = ("behind {k} LoRA layer(s): its input stays Theta(1) only under a stable scheme; under an unstable one "
                   "it grows with n (no sharp prediction there, INCONCLUSIVE)")


def _input_check(fit, tol: float) -> str:
    """Whether a layer's input is width-stable, from the fit of z_a(0) = A_0 z against width."""
    if fit is None:
        return "-"
    if fit.ci_high >= -tol and fit.ci_low <= tol:
        return "width-stable"
    return (f"{'grows' if fit.slope > 0 else 'shrinks'} like n^{fit.slope:+.2f}: the Theta(1)-input assumption "
            "fails, and every exponent of this layer shifts by that much")


def layer_table(results: pd.DataFrame, tol: float = 0.15) -> pd.DataFrame:
    """One row per LoRA layer: LoRA layers upstream, where its prediction is sharp and why, and
    the slope of z_a at step 0 against width: Z_A(0) = A_0 z with A_0's entries ~ n^-1/2 has the
    size of the layer's input z, so the slope is about 0 when the frozen base feeds the layer
    Theta(1) coordinates at every width (the derivation's first assumption); ``input`` says
    whether it does (the slope's interval within +-tol of 0)."""
    upstream = upstream_counts(results)
    rows = []
    at0 = results[(results.metric == "z_a") & (results.step == 0)]
    at0 = at0[at0.scheme == at0.scheme.iloc[0]] if len(at0) else at0  # every scheme starts alike
    layers = [n for n in dict.fromkeys(results.layer) if n != "all"]
    for layer in layers:
        up = upstream[layer]
        fit = fit_power_law(*(at0[at0.layer == layer][c] for c in ("width", "value", "seed")))
        rows.append({"layer": layer, "LoRA layers upstream": up,
                     "sharp prediction": "every scheme" if up == 0 else "stable schemes only",
                     "why": SHARP_EVERYWHERE if up == 0 else SHARP_IF_STABLE.format(k=up),
                     "z_a(0) slope": "-" if fit is None else f"{fit.slope:+.2f} [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}]",
                     "input": _input_check(fit, tol)})
    return pd.DataFrame(rows)


@dataclass
class FactoryCheckTables:
    """What a factory's coordinate check found. results: the measurements (the figure's data);
    exponents: fits and verdicts; layers: layer_table; tolerance: the verdicts' tolerance."""

    results: pd.DataFrame
    exponents: pd.DataFrame
    layers: pd.DataFrame
    tolerance: float

    def files(self) -> dict[str, pd.DataFrame]:
        return {"exponents": self.exponents}


def analyse(results: pd.DataFrame, tol: float = DEFAULT_TOLERANCE) -> FactoryCheckTables:
    results = results.assign(init=results["init"].astype(str))
    return FactoryCheckTables(results, judge(results, tol), layer_table(results, tol), tol)
