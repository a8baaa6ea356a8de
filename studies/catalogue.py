"""Every study as a ``Study`` (``studies.run.study``): its spec, its shards, its analysis and its
report wired into the one lifecycle, and the registries the command line and the gallery use.

Each class only connects the study's own module (spec, shards, analysis: ``studies.<name>``)
to its report (``studies.reports.<name>``); ``KINDS`` finds a stored run's study by meta.json's
"study", ``NAMED`` the studies ``loraplus-scaling study NAME`` runs.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from scaling.transfer import read_run
from scaling.verdicts import DEFAULT_TOLERANCE
from studies import companions, coord_check, factory_check, finetune, lr_grid, validate
from studies.factory_check import FactoryCheckSpec, check_factory
from studies.finetune import FinetuneSpec
from studies.lr_grid import LrGridSpec
from studies.lr_laws import analysis as laws_analysis
from studies.lr_laws import factory as laws_factory
from studies.lr_laws import fig2 as laws_fig2
from studies.lr_laws.config import LAWS, LawsConfig
from studies.lr_laws.search import run_laws
from studies.lr_laws.transfer import TransferConfig, run_transfer
from studies.reports import companions as companions_report
from studies.reports import coord_check as coord_check_report
from studies.reports import factory_check as factory_check_report
from studies.reports import finetune as finetune_report
from studies.reports import lr_grid as lr_grid_report
from studies.reports import lr_laws as lr_laws_report
from studies.reports import validate as validate_report
from studies.run.context import RunContext
from studies.run.spec import CoordCheckSpec, SpecError
from studies.run.study import Report, Study


class CoordCheckStudy(Study):
    """``coord-check``: a toy model's coordinate check, judged where the theory covers it."""

    kind = "coord-check"
    raw_tables = ("results",)

    def __init__(self, spec: CoordCheckSpec, tolerance: float = DEFAULT_TOLERANCE):
        self.spec, self.tolerance = spec, tolerance

    def store_spec(self) -> dict:
        return {"study": self.kind, **self.spec.to_dict()}

    def meta_spec(self) -> dict:
        return {**self.spec.to_dict(), "tolerance": self.tolerance}

    @classmethod
    def from_meta(cls, meta: dict) -> "CoordCheckStudy":
        spec = dict(meta["spec"])
        tolerance = spec.pop("tolerance", DEFAULT_TOLERANCE)
        return cls(CoordCheckSpec.from_dict(spec), tolerance)

    def execute(self, ctx: RunContext) -> dict[str, pd.DataFrame]:
        return {"results": coord_check.run(self.spec, ctx)}

    def analyse(self, raw):
        return coord_check.analyse(self.spec, raw["results"], self.tolerance)

    def render(self, out: Path, tables, meta: dict) -> Report:
        return coord_check_report.render(out, self.spec, tables, meta)


class FactoryCheckStudy(Study):
    """``coord-check --factory``: the coordinate check of a factory's model (a user's or a family)."""

    kind = "coord-check --factory"
    raw_tables = ("results",)

    def __init__(self, spec: FactoryCheckSpec, tolerance: float = DEFAULT_TOLERANCE, title: str = "",
                 figure: str = "coord_check"):
        self.spec, self.tolerance, self.title, self.figure = spec, tolerance, title, figure

    def check(self, device: torch.device) -> None:
        shape = check_factory(self.spec, device)
        if not shape.layers:
            raise SpecError(f"factory {self.spec.name}: coord-check measures linear LoRA layers and this model has "
                            f"only {', '.join(shape.skipped[:3])}; lr-laws --factory studies its learning rates")

    def store_spec(self) -> dict:
        return {"study": "coord-check", **self.spec.to_dict()}

    def meta_spec(self) -> dict:
        return {**self.spec.to_dict(), "tolerance": self.tolerance}

    @classmethod
    def from_meta(cls, meta: dict) -> "FactoryCheckStudy":
        spec = dict(meta["spec"])
        return cls(None, spec.get("tolerance", DEFAULT_TOLERANCE))  # a stored run is redrawn from its tables

    def execute(self, ctx: RunContext) -> dict[str, pd.DataFrame]:
        return {"results": factory_check.run_factory_check(self.spec, ctx)}

    def meta_extra(self, raw) -> dict:
        results = raw["results"]
        return {"training_paths": results.drop_duplicates(["width", "seed"]).path.value_counts().to_dict()}

    def analyse(self, raw):
        return factory_check.analyse(raw["results"], self.tolerance)

    def render(self, out: Path, tables, meta: dict) -> Report:
        return factory_check_report.render(out, tables, meta, figure=self.figure, title=self.title)


@dataclasses.dataclass(frozen=True)
class Family:
    """A built-in family's width study (``study bert-width``, ``study gpt2-width``): its coordinate
    check through the factory path, at every hidden size n (2 layers, heads n/64, intermediate
    4n), the base pretrained briefly with Adam's width rule, then LoRA (rank 4, Init[1]) under
    each scheme at eta = 1e-3 (n/64)^gamma on one fixed batch."""

    family: str
    title: str
    figure: str
    seeds: int
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    schemes: tuple[str, ...] = ("lora-const", "loraplus")

    def spec(self, quick: bool = False) -> FactoryCheckSpec:
        widths, seeds = ((64, 128, 256), 2) if quick else (self.widths, self.seeds)
        return FactoryCheckSpec(factory=self.family, widths=widths, seeds=tuple(range(seeds)), schemes=self.schemes,
                                steps=6, rank=4, lr_a=1e-3, lr_b=1e-3, base_width=64)


# bert-width keeps the settings it had as a hard-wired loop (3 seeds), so that its verdicts can be
# compared with that version's; ``coord-check --factory bert --seeds 4`` runs more seeds.
FAMILIES = {
    "bert-width": Family("bert", "study bert-width: BERT-style encoders", "bert_width", seeds=3),
    "gpt2-width": Family("gpt2", "study gpt2-width: GPT-2-style decoders", "gpt2_width", seeds=4),
}


class FamilyStudy(FactoryCheckStudy):
    """A family's width study: a FactoryCheckStudy under the family's name, title and figure."""

    def __init__(self, name: str, spec: FactoryCheckSpec | None, tolerance: float = DEFAULT_TOLERANCE):
        family = FAMILIES[name]
        super().__init__(spec, tolerance, family.title, family.figure)
        self.kind = name

    def store_spec(self) -> dict:
        return {"study": self.kind, **self.spec.to_dict()}

    @classmethod
    def from_meta(cls, meta: dict) -> "FamilyStudy":
        return cls(meta["study"], None, meta["spec"].get("tolerance", DEFAULT_TOLERANCE))


class ValidateStudy(Study):
    """``validate``: the fixed suite of coordinate checks and its controls, judged, plus one
    learning-rate law (the LoRA+ corner)."""

    kind = "validate"
    raw_tables = ("results", "control_results", "b0_control_results", "stack_control_results", "lr_corner_runs")

    def __init__(self, quick: bool = True, tolerance: float = DEFAULT_TOLERANCE):
        self.quick, self.tolerance = quick, tolerance
        self.settings = validate.QUICK if quick else validate.FULL

    def store_spec(self) -> dict:
        return validate.store_spec(self.settings)

    def meta_spec(self) -> dict:
        s = self.settings
        return {"suite": "quick" if self.quick else "full", "tolerance": self.tolerance, "widths": s.widths,
                "seeds": s.seeds, "fewer_seeds": s.fewer_seeds, "steps": s.steps}

    @classmethod
    def from_meta(cls, meta: dict) -> "ValidateStudy":
        spec = meta["spec"]
        return cls(spec["suite"] == "quick", spec.get("tolerance", DEFAULT_TOLERANCE))

    def execute(self, ctx: RunContext) -> dict[str, pd.DataFrame]:
        suite, control, b0_control, stack_control = validate.run_suite(self.settings, ctx)
        return {"results": suite, "control_results": control, "b0_control_results": b0_control,
                "stack_control_results": stack_control, "lr_corner_runs": validate.run_corner(ctx)}

    def analyse(self, raw):
        return validate.analyse(self.settings, raw["results"], raw["control_results"], raw["b0_control_results"],
                                raw["lr_corner_runs"], self.tolerance, raw["stack_control_results"])

    def render(self, out: Path, tables, meta: dict) -> Report:
        return validate_report.render(out, tables, meta)


class LrGridStudy(Study):
    """``lr-grid``: the loss over a grid of (eta_A, eta_B) at each width; optima and lambda*(n)."""

    kind = "lr-grid"
    raw_tables = ("grid", "curves")

    def __init__(self, spec: LrGridSpec):
        self.spec = spec

    def store_spec(self) -> dict:
        return {"study": self.kind, **self.spec.to_dict()}

    def meta_spec(self) -> dict:
        return self.spec.to_dict()

    @classmethod
    def from_meta(cls, meta: dict) -> "LrGridStudy":
        return cls(LrGridSpec.from_dict(meta["spec"]))

    def execute(self, ctx: RunContext) -> dict[str, pd.DataFrame]:
        grid, curves = lr_grid.run_lr_grid(self.spec, ctx)
        return {"grid": grid, "curves": lr_grid.curve_frame(self.spec, curves, grid)}

    def meta_extra(self, raw) -> dict:
        return {"init": str(raw["grid"].init.iloc[0]), "pairs": len(self.spec.pairs()[0])}

    def analyse(self, raw):
        return lr_grid.analyse(self.spec, raw["grid"], raw["curves"])

    def render(self, out: Path, tables, meta: dict) -> Report:
        return lr_grid_report.render(out, tables, meta)


class LawsStudy(Study):
    """``lr-laws``: the edges of the trainable region, the corner and the optima against width and
    rank, on the toys (the catalogue's studies, and the Fig. 2 question) or on factories' models."""

    kind = "lr-laws"

    def __init__(self, configs: list[LawsConfig], studies: list[str], quick: bool = False,
                 tolerance: float = DEFAULT_TOLERANCE, kinds: list[str] | None = None,
                 transfers: list[TransferConfig] = (), target_widths: tuple[int, ...] = (),
                 check_against: str | None = None):
        self.configs, self.studies, self.quick, self.tolerance = configs, list(studies), quick, tolerance
        self.kinds = tuple(kinds or LAWS)
        self.transfers, self.target_widths = list(transfers), tuple(target_widths)
        self.check_against = check_against  # a run that measured the target widths
        self.fig2 = "fig2" in self.studies
        self.factory = any(c.factory is not None for c in configs)
        self.raw_tables = ("runs",) + (("fig2_grid",) if self.fig2 else ()) + (
            ("transfer_runs",) if self.transfers else ())

    def store_spec(self) -> dict:
        spec = {"study": self.kind, "studies": self.studies, "quick": self.quick,
                "configs": [c.to_dict() for c in self.configs]}
        if self.transfers:  # only when asked for: runs stored before the transfer test keep their spec
            spec["transfers"] = [t.to_dict() for t in self.transfers]
        return spec

    def meta_spec(self) -> dict:
        return {**self.store_spec(), "tolerance": self.tolerance, "kinds": list(self.kinds),
                "target_widths": list(self.target_widths), "check_against": self.check_against}

    @classmethod
    def from_meta(cls, meta: dict) -> "LawsStudy":
        spec = meta["spec"]
        return cls([LawsConfig.from_dict(d) for d in spec["configs"]], spec.get("studies", []), spec.get("quick", False),
                   spec.get("tolerance", meta.get("tolerance", DEFAULT_TOLERANCE)), spec.get("kinds"),
                   [TransferConfig.from_dict(d) for d in spec.get("transfers", [])], tuple(spec.get("target_widths", ())),
                   spec.get("check_against"))

    def check(self, device: torch.device) -> None:
        if self.check_against is not None:
            if not self.target_widths:
                raise SpecError("--check-against compares recommendations at --target-width with a run that "
                                "measured those widths: give --target-width too")
            read_run(self.check_against)  # ValueError (one line) when it is no lr-laws run
        if self.factory:
            laws_factory.check_factories(self.configs, device)

    def execute(self, ctx: RunContext) -> dict[str, pd.DataFrame]:
        if self.factory:
            runs = laws_factory.run_factory_laws(self.configs, ctx)
        else:
            runs = run_laws(self.configs, ctx) if self.configs else pd.DataFrame()
        raw = {"runs": runs}
        if self.fig2:
            raw["fig2_grid"] = laws_fig2.run_fig2(ctx, self.quick)
        if self.transfers:
            raw["transfer_runs"] = run_transfer(self.transfers, ctx)
        return raw

    def meta_extra(self, raw) -> dict:
        runs = raw["runs"]
        cpu = float(runs.groupby(["config", "width", "rank", "seed"]).cpu_s.first().sum()) if len(runs) else 0.0
        return {"cpu_s": cpu, "studies": self.studies, "quick": self.quick, "tolerance": self.tolerance}

    def analyse(self, raw):
        dead = laws_fig2.dead_start() if self.fig2 else None
        return laws_analysis.analyse(raw["runs"], self.configs, self.tolerance, kinds=self.kinds,
                                     fig2_grid=raw.get("fig2_grid"), dead=dead, transfer_rows=raw.get("transfer_runs"),
                                     transfers=self.transfers, target_widths=self.target_widths,
                                     measured_at_targets=read_run(self.check_against) if self.check_against else None)

    def render(self, out: Path, tables, meta: dict) -> Report:
        return lr_laws_report.render(out, tables, meta)


class CompanionStudy(Study):
    """``study init | rank | contribution``: a set of coordinate checks with one figure."""

    def __init__(self, name: str, quick: bool = False):
        self.kind, self.quick = name, quick
        self.raw_tables = ("results",)

    def store_spec(self) -> dict:
        return {"study": self.kind, "variants": self._variants()}

    def _variants(self) -> list[dict]:
        return [v.spec.to_dict() | {"variant": v.label} for v in companions.variants(self.kind, self.quick)]

    def meta_spec(self) -> dict:
        return {"variants": self._variants(), "quick": self.quick}

    @classmethod
    def from_meta(cls, meta: dict) -> "CompanionStudy":
        return cls(meta["study"], meta["spec"].get("quick", False))

    def execute(self, ctx: RunContext) -> dict[str, pd.DataFrame]:
        return {"results": companions.run(self.kind, self.quick, ctx)}

    def analyse(self, raw):
        return companions.analyse(self.kind, raw["results"])

    def render(self, out: Path, tables, meta: dict) -> Report:
        return companions_report.render(out, tables, meta)


class FinetuneStudy(Study):
    """``finetune``: LoRA against LoRA+ on a pretrained transformer and SST-2, best against best."""

    kind = "finetune"
    raw_tables = ("evals", "monitor")

    def __init__(self, spec: FinetuneSpec | None, settings: dict | None = None):
        self.spec = spec
        self.settings = settings if settings is not None else spec.to_dict()

    def check(self, device: torch.device) -> None:
        finetune.prepared(self.spec)  # a bad --model or --data fails here, before --out is touched

    def store_spec(self) -> dict:
        return {"study": self.kind, **self.spec.to_dict()}

    def meta_spec(self) -> dict:
        return self.spec.to_dict()

    @classmethod
    def from_meta(cls, meta: dict) -> "FinetuneStudy":
        return cls(None, meta["spec"])  # the data need not exist to redraw

    def execute(self, ctx: RunContext) -> dict[str, pd.DataFrame]:
        def say(ratio, lr, seed, last):  # one line per finished fine-tune: each takes minutes
            if ctx.options.progress:
                print(f"  ratio {ratio:g} lr {lr:.3g} seed {seed}: step {int(last['step'])}, dev acc "
                      f"{last['dev_acc']:.4f}", file=sys.stderr, flush=True)

        evals, monitor = finetune.run_finetune(self.spec, ctx, say)
        return {"evals": evals, "monitor": monitor}

    def meta_extra(self, raw) -> dict:
        return finetune.data_sizes(self.spec)

    def analyse(self, raw):
        return finetune.analyse(self.settings["steps"], self.settings["monitor_every"], raw["evals"], raw["monitor"])

    def render(self, out: Path, tables, meta: dict) -> Report:
        return finetune_report.render(out, tables, meta)


# -- the registries --------------------------------------------------------------------------------
KINDS: dict[str, type[Study]] = {
    "coord-check": CoordCheckStudy, "coord-check --factory": FactoryCheckStudy, "validate": ValidateStudy,
    "lr-grid": LrGridStudy, "lr-laws": LawsStudy, "finetune": FinetuneStudy,
    **{name: CompanionStudy for name in companions.STUDIES}, **{name: FamilyStudy for name in FAMILIES},
}
NAMED: dict[str, Callable[[bool], Study]] = {
    **{name: (lambda quick, name=name: CompanionStudy(name, quick)) for name in companions.STUDIES},
    **{name: (lambda quick, name=name: FamilyStudy(name, FAMILIES[name].spec(quick))) for name in FAMILIES},
}


def study_kind(meta: dict, manifest: dict | None = None) -> str | None:
    """The kind of a stored run: meta.json's "study" (a coord-check of a factory's model is
    "coord-check --factory"), else the shard manifest spec's."""
    kind = meta.get("study")
    if not isinstance(kind, str) and manifest is not None:
        spec = manifest.get("spec")
        kind = spec.get("study") if isinstance(spec, dict) else None
    if kind == "coord-check" and isinstance(meta.get("spec"), dict) and meta["spec"].get("factory"):
        return "coord-check --factory"
    return kind if isinstance(kind, str) else None
