"""Redraw stored runs and collect their key figures into the gallery.

A run directory holds ``meta.json`` (with ``study``: lr-grid, finetune, init, rank or
contribution) and
its tables; ``render_run`` redraws its figures and report from those tables alone. A directory
of runs is walked one level deep. Each run's figures are copied to the gallery as
``<run directory name>__<figure>.png`` / ``.pdf``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from studies.run.spec import SpecError
from studies.run.store import read_table


def _read(path: Path) -> pd.DataFrame:
    try:
        return read_table(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: unreadable table ({err})") from None


def render_run(run: Path) -> dict[str, str]:
    """Redraw one stored run; returns {caption: figure path relative to the run}."""
    try:
        meta = json.loads((run / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpecError(f"{run}: unreadable meta.json ({err})") from None
    study = meta.get("study", "lr-grid" if (run / "grid.csv").is_file() else None)
    if study == "lr-grid":
        from studies.reports.lr_grid import render
        for name in ("grid.csv", "curves.csv"):
            if not (run / name).is_file():
                raise SpecError(f"{run}: not an lr-grid run (missing {name})")
        return render(run, _read(run / "grid.csv"), _read(run / "curves.csv"), meta)
    if study == "lr-laws":
        from studies.reports.lr_laws import rerender
        if not (run / "runs.csv").is_file():
            raise SpecError(f"{run}: not an lr-laws run (missing runs.csv)")
        return rerender(run)
    if study == "finetune":
        from studies.reports.finetune import render as render_finetune
        for name in ("evals.csv", "monitor.csv"):
            if not (run / name).is_file():
                raise SpecError(f"{run}: not a finetune run (missing {name})")
        return render_finetune(run, _read(run / "evals.csv"), _read(run / "monitor.csv"), meta)
    if study == "bert-width":
        from studies.bert_sweep import render as render_bert
        if not (run / "results.csv").is_file():
            raise SpecError(f"{run}: missing results.csv")
        results = _read(run / "results.csv")
        results["init"] = results["init"].astype(str)
        return render_bert(run, results, meta)
    from studies.companions import STUDIES, render
    if study in STUDIES:
        if not (run / "results.csv").is_file():
            raise SpecError(f"{run}: missing results.csv")
        results = _read(run / "results.csv")
        if "init" in results:
            results["init"] = results["init"].astype(str)
        return render(run, study, results, meta)
    raise SpecError(f"{run}: unknown study {study!r} in meta.json")


def find_runs(source: Path) -> list[Path]:
    if (source / "meta.json").is_file():
        return [source]
    runs = sorted(p for p in source.iterdir() if (p / "meta.json").is_file()) if source.is_dir() else []
    if not runs:
        raise SpecError(f"--from {source}: no stored run here (a run directory has meta.json)")
    return runs


def key_figures(figures: dict[str, str]) -> list[str]:
    """The figures worth a place in the gallery: for a width sweep its lambda*(n) plots and the
    train-loss heatmap of the widest width at the last step (the other heatmaps stay with the
    run), otherwise all of them."""
    paths = list(figures.values())
    sweep = [p for p in paths if Path(p).name.startswith("lambda_")]
    if not sweep:
        return paths
    heat = {}
    for p in paths:
        stem = Path(p).stem  # heatmap_n{width}_t{step}_{split}
        if stem.startswith("heatmap_") and stem.endswith("_train"):
            _, n, t, _ = stem.split("_")
            heat[(int(n[1:]), int(t[1:]))] = p
    return sweep + ([heat[max(heat)]] if heat else [])


def build_gallery(source: Path, gallery: Path | None) -> list[Path]:
    """Redraw every run under ``source``; copy its key figures (PNG and PDF) into ``gallery``."""
    copied = []
    for run in find_runs(source):
        figures = render_run(run)
        if gallery is None:
            continue
        gallery.mkdir(parents=True, exist_ok=True)
        for rel in key_figures(figures):
            for ext in (".png", ".pdf"):
                src = (run / rel).with_suffix(ext)
                if src.is_file():
                    dst = gallery / f"{run.name}__{src.name}"
                    shutil.copyfile(src, dst)
                    copied.append(dst)
    return copied
