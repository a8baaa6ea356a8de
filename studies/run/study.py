"""A study's one lifecycle: spec -> shards -> analyse -> render.

Every study (validate, coord-check, lr-grid, lr-laws, the companions, finetune, the factory
studies and the families) is a ``Study``: it says which shards identify it (``store_spec``),
trains them through a ``RunContext`` and returns its raw tables (``execute``), turns those
into typed tables (``analyse``) and formats them (``render``: report.md, figures and the lines
the console prints, opening with what was found). ``run_study`` drives that sequence and is
the only place that opens a store, writes the raw tables, ``meta.json``, the analysis tables
and ``report.md``. ``redraw`` repeats analyse and render on a stored run's raw tables, which is
what ``figures --from`` does for every kind.

Exit codes of the studies that judge (``Report.exit_code``): 0 when no check FAILs, 1 when at
least one does; bad input is 2 (the command line) and an interrupted run 130.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch

from studies.run.context import RunContext, RunOptions, resolve_device
from studies.run.spec import SpecError
from studies.run.store import read_table, write_csv, write_text

EXIT_OK, EXIT_FAIL = 0, 1


def exit_code(verdicts: pd.Series) -> int:
    """The judging studies' convention: 1 when any verdict is FAIL, else 0."""
    return EXIT_FAIL if (verdicts == "FAIL").any() else EXIT_OK


@dataclass
class Report:
    """What ``render`` gives: report.md's text, the figures ({caption: path relative to the
    run}), the console's lines (plain words first) and the exit code."""

    text: str
    figures: dict[str, str] = field(default_factory=dict)
    console: str = ""
    exit_code: int = EXIT_OK


class Study(ABC):
    """One study. Subclasses (or their instances) set ``kind`` (meta.json's "study", the
    registry's key) and ``raw_tables`` (the tables ``execute`` returns, stored as <name>.csv so
    that a run can be redrawn)."""

    kind: ClassVar[str]
    raw_tables: ClassVar[tuple[str, ...]]

    def check(self, device: torch.device) -> None:
        """Checks the spec cannot make alone (a factory's model at every width): before ``out``
        is created. SpecError (one line) when the study cannot run."""

    @abstractmethod
    def store_spec(self) -> dict:
        """What identifies the study's shards (a change of it refuses the old store)."""

    def meta_spec(self) -> dict:
        """meta.json's "spec": enough to rebuild the study with ``from_meta``."""
        return self.store_spec()

    @abstractmethod
    def execute(self, ctx: RunContext) -> dict[str, pd.DataFrame]:
        """Train the shards the store does not hold yet; the raw tables by name."""

    def meta_extra(self, raw: dict[str, pd.DataFrame]) -> dict:
        """Numbers about the run that meta.json keeps beside the spec."""
        return {}

    @abstractmethod
    def analyse(self, raw: dict[str, pd.DataFrame]) -> Any:
        """The typed tables (an object with ``files()``: the tables written as CSV)."""

    @abstractmethod
    def render(self, out: Path, tables: Any, meta: dict) -> Report:
        """Figures into ``out``/figures; the report's text and the console's lines."""

    @classmethod
    @abstractmethod
    def from_meta(cls, meta: dict) -> "Study":
        """The study of a stored run, from its meta.json."""


def write_tables(out: Path, tables: dict[str, pd.DataFrame]) -> None:
    for name, table in tables.items():
        if table is not None:
            write_csv(table, out / f"{name}.csv")


GLOSSARY_PAGE = "docs/glossary.md"  # in the repository; the Glossary page of the documentation site
GLOSSARY_WORDS = ("Init[1]", "Init[2]", "Theta(1)", "delta1..3", "lazy side", "edge", "corner", "B0 path",
                  "local slopes", "omega")


def glossary_note() -> str:
    """The closing line of every report.md: where its words (Init[1], delta1..3, edge, corner,
    B0 path, local slopes, omega, ...) are explained. It names the page, not a path on this
    machine: a report is read where the package's sources may not be."""
    return (f"\n\n---\nThe words this report uses ({', '.join(GLOSSARY_WORDS)}, ...) are explained in the glossary: "
            f"`{GLOSSARY_PAGE}` in the repository, the Glossary page of the documentation site.\n")


def finish(study: Study, out: Path, raw: dict[str, pd.DataFrame], meta: dict, say=None) -> Report:
    """analyse -> render -> write the analysis tables and report.md (a run's last half, shared by
    ``run_study`` and ``redraw``); ``say(what)`` is a context manager that reports a phase."""
    phase = say or (lambda what: nullcontext())
    with phase(f"{study.kind}: fitting and judging"):
        tables = study.analyse(raw)
    with phase(f"{study.kind}: drawing the figures and writing the report"):
        (out / "figures").mkdir(exist_ok=True)
        report = study.render(out, tables, meta)
        write_tables(out, tables.files())
        write_text(report.text.rstrip("\n") + glossary_note(), out / "report.md")
    return report


def run_study(study: Study, options: RunOptions) -> Report:
    """Run ``study`` into ``options.out`` (resuming its finished shards): shards, raw tables,
    meta.json, analysis tables, figures and report.md. Nothing is written before the inputs
    and ``study.check`` pass."""
    options.check()
    device = resolve_device(options.device)
    study.check(device)
    ctx = RunContext(options, study.store_spec(), device)
    try:
        raw = study.execute(ctx)
    finally:
        ctx.close()
    meta = ctx.meta(study.kind, study.meta_spec(), **study.meta_extra(raw))
    write_tables(ctx.out, raw)
    ctx.write_meta(meta)
    return finish(study, ctx.out, raw, meta, ctx.phase)


# -- stored runs ------------------------------------------------------------------------------------
class NotRedrawn(Exception):
    """A stored run that cannot be redrawn here; the message says why, in one line."""


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; SpecError (one line) when it is unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpecError(f"{path.parent}: unreadable {path.name} ({err})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path.parent}: {path.name} is not a JSON object")
    return data


def read_raw(run: Path, study: Study) -> dict[str, pd.DataFrame]:
    """A stored run's raw tables; SpecError naming the first one missing or damaged."""
    raw = {}
    for name in study.raw_tables:
        path = run / f"{name}.csv"
        if not path.is_file():
            raise SpecError(f"{run}: not a complete {study.kind} run (missing {path.name})")
        try:
            raw[name] = read_table(path) if path.stat().st_size > 1 else pd.DataFrame()
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise SpecError(f"{path}: unreadable table ({err})") from None
    return raw


def redraw(run: Path, kind: str, study_cls: type[Study], meta: dict) -> Report:
    """Analyse and render a stored ``kind`` run again, into its own directory, from its raw tables."""
    if not isinstance(meta.get("spec"), dict):
        raise SpecError(f"{run}: meta.json has no spec, so this {kind} run cannot be redrawn")
    study = study_cls.from_meta(meta)
    return finish(study, run, read_raw(run, study), meta)
