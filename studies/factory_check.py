"""The coordinate check on any model: ``coord-check --factory REF`` (and ``studies.api``).

A factory ``make(width, rank, seed)`` (``scaling.factory``) gives the model; every scheme runs
at every width and seed, and ``scaling.monitor``'s measurements of every LoRA layer are fitted
against width and judged exactly as in ``validate`` (``scaling.verdicts.compare``).

Shards: one width x a block of seeds (``seeds_per_shard``); a shard builds its members with the
factory and trains all their runs (seeds x schemes) as one population
(``scaling.module_population``: torch.func when the members share one architecture, else the
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
from scaling.rules import parse_scheme
from studies.run.spec import SpecError, _positive_ints

PATHS = ("auto", "torch.func", "loop")
RESULT_COLUMNS = ["model", "optimizer", "init", "scheme", "width", "seed", "step", "layer", "metric", "value",
                  "eta_a", "eta_b", "upstream_lora", "path"]


def factory_for(ref) -> Factory:
    """A factory from a reference, a built-in family name or a callable (FactoryError if unusable)."""
    from studies.families import FAMILIES
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


def short_layer_names(names: list[str]) -> dict[str, str]:
    """Readable layer names: PEFT's ``base_model.model.`` and the path components every name
    shares are dropped (block indices stay; one layer keeps its last component), a leading block
    index n becomes Ln
    ("bert.encoder.layer.0.attention.self.query" -> "L0.query")."""
    parts = [n.removeprefix("base_model.model.").split(".") for n in names]
    if len(parts) == 1:
        short = [parts[0][-1:]]
    elif len({len(p) for p in parts}) == 1:
        varying = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1 or parts[0][i].isdigit()]
        short = [[p[i] for i in varying] for p in parts]
    else:
        lead = 0
        while all(len(p) > lead + 1 and p[lead] == parts[0][lead] for p in parts):
            lead += 1
        short = [p[lead:] for p in parts]
    out = {}
    for name, p, full in zip(names, short, parts):
        p = p or full[-1:]
        if p[0].isdigit():
            p = [f"L{p[0]}"] + p[1:]
        out[name] = ".".join(p)
    return out


def population_shard(factory: Factory, width: int, rank: int, seeds: tuple[int, ...], runs: pd.DataFrame,
                     steps: int, measure: bool = True, path: str = "auto", max_inputs: int = 256,
                     device: str = "cpu", chunk_size: int | None = None) -> pd.DataFrame:
    """One shard: the factory's members at (width, each seed), every row of ``runs`` (columns
    eta_a, eta_b and any labels) trained from each member as one population (``chunk_size``:
    runs per member computed at once on the torch.func path; None: all).

    Returns the tidy rows (RESULT_COLUMNS, the labels of ``runs`` and the factory's Task.info
    numbers as columns): model = the factory's name, optimizer adam, init from the model."""
    from scaling.module_population import train_population

    dev = torch.device(device)
    tasks = [factory(width, rank, seed, dev) for seed in seeds]
    shape = inspect_task(tasks[0], f"factory {factory.name}")
    result = train_population(tasks, runs.eta_a.to_numpy(), runs.eta_b.to_numpy(), steps, measure=measure,
                              path=path, max_inputs=max_inputs, device=dev, chunk_size=chunk_size)
    info = pd.DataFrame([t.info for t in tasks]).assign(member=range(len(tasks)))
    del tasks
    frame = result.frame
    names = short_layer_names(shape.layers)
    upstream = {names[n]: len(u) for n, u in shape.upstream.items()}
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
    from studies.run.shards import Shard
    return [Shard(f"{prefix}w{w}_s{'-'.join(map(str, block))}", population_shard,
                  (spec.factory, w, spec.rank, block, spec.runs(w), spec.steps, True, spec.path,
                   spec.max_inputs, str(device)))
            for w in sorted(spec.widths, reverse=True) for block in spec.seed_blocks()]


def run_factory_check(spec: FactoryCheckSpec, device: torch.device, store, executor: str = "inline",
                      workers: int = 2, scheduler: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Every shard the store does not hold yet; all shards' rows."""
    from studies.run.shards import run_shards
    shards = factory_shards(spec, device)
    run_shards(shards, store, executor, workers, scheduler, bar=f"coord-check {spec.name}" if progress else None)
    return store.load([sh.key for sh in shards])


def factory_predictor(model, optimizer, init, gA, gB, step):
    """scaling.theory.predict for a factory's LoRA layers: an Adam LoRA layer with Theta(1)
    inputs whose outputs the loss does not read directly (the ``mlp`` recursion)."""
    from scaling.theory import predict
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
    from scaling.verdicts import DEFAULT_TOLERANCE, compare
    steps = sorted({1, 2, int(results.step.max())})
    first = {layer for layer, k in upstream_counts(results).items() if k == 0}
    return compare(results, steps, tol=DEFAULT_TOLERANCE if tol is None else tol, predictor=factory_predictor,
                   first_layers=lambda names: [n for n in names if n in first],
                   corrected=False)  # the corrections to scaling are derived for the toy models only


# -- the command ---------------------------------------------------------------------------------
TOY_OPTIONS = ("model", "optimizer", "init", "alpha", "alpha_scaling", "batch_size", "data", "depth", "dtype",
               "loss_reduction", "teacher", "b0_scale", "detach_lora_inputs")


def spec_from_args(args) -> FactoryCheckSpec:
    """The spec of ``coord-check --factory``; options of the toy models are refused."""
    import argparse

    from scaling.rules import split_schemes
    from studies.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["coord-check"]
    given = [o for o in TOY_OPTIONS if getattr(args, o) != sub.get_default(o)]
    if given:
        option = "--" + given[0].replace("_", "-")
        why = "runs train with Adam" if given[0] == "optimizer" else "the model comes from the factory"
        raise SpecError(f"{option} is an option of the built-in toy models; with --factory {why}")
    if args.seeds <= 0:
        raise SpecError(f"--seeds must be a positive integer, got {args.seeds}")
    return FactoryCheckSpec(factory=args.factory, widths=tuple(args.widths), seeds=tuple(range(args.seeds)),
                            schemes=tuple(split_schemes(args.schemes)), steps=args.steps,
                            rank=4 if args.rank is None else args.rank, lr_a=args.lr_a, lr_b=args.lr_b,
                            base_width=args.base_width, seeds_per_shard=args.seeds_per_shard, path=args.train_path)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the local executor's workers)."""
    import resource
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_study(spec: FactoryCheckSpec, args, out_default: str, study: str, title: str = "",
              figure: str = "coord_check") -> int:
    """Check the factory, run every shard (resuming), write results / exponents / meta / report,
    print the findings. Shared by coord-check --factory and the family width studies."""
    import time

    from studies.commands import _open_study
    from studies.reports.factory_check import render
    from studies.run.runner import resolve_device
    from studies.run.store import metadata, write_csv, write_json

    device = resolve_device(args.device)
    check_factory(spec, device)  # before --out exists
    executor, out, store = _open_study(args, device, args.out or out_default,
                                       {"study": study, **spec.to_dict(), "device": str(device)})
    skipped = len(store.done)
    start, cpu = time.perf_counter(), cpu_seconds()
    results = run_factory_check(spec, device, store, executor, args.workers, args.scheduler)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    paths = results.drop_duplicates(["width", "seed"]).path.value_counts().to_dict()
    meta = metadata(spec.to_dict(), str(device), wall, study=study, executor=executor, resumed_shards=skipped,
                    cpu_time_s=round(cpu, 1), training_paths=paths)
    write_csv(results, out / "results.csv")
    write_json(meta, out / "meta.json")
    render(out, results, meta, figure=figure, title=title)
    shards = len(spec.widths) * len(spec.seed_blocks())
    print(f"{title or 'coord-check ' + spec.name}: {len(spec.widths)} widths x {len(spec.seeds)} seeds x "
          f"{len(spec.schemes)} schemes, {spec.steps} steps in {wall:.1f}s wall, {cpu:.0f}s CPU "
          f"({skipped} of {shards} shards already done)")
    print("training path: " + "; ".join(f"{p} ({k} members)" for p, k in paths.items()))
    print((out / "report.md").read_text().split("## LoRA layers")[0])
    print(f"wrote {out / 'results.csv'}, {out / 'exponents.csv'}, {out / 'report.md'}")
    return 0


def coord_check_command(args) -> int:
    """coord-check --factory REF."""
    return run_study(spec_from_args(args), args, "runs/coord-check", "coord-check")
