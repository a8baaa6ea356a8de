"""Redraw stored runs from their tables; copy their key figures into a gallery only when asked.

A run directory holds ``meta.json`` and its raw tables (and ``manifest.json`` with the spec of
its shards). Its kind is meta.json's ``study`` (``studies.catalogue.study_kind``); the study
class registered for that kind (``studies.catalogue.KINDS``) analyses and renders it again
into the run's own directory (``studies.run.study.redraw``). A directory of runs is walked one
level deep. With a gallery, each run's key figures are copied to it as ``<run directory
name>__<figure>.png`` / ``.pdf``; without one, nothing outside the runs is written.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from studies.catalogue import KINDS, study_kind
from studies.run.spec import SpecError
from studies.run.study import NotRedrawn, read_json, redraw


def render_run(run: Path) -> dict[str, str]:
    """Redraw one stored run into its own directory; returns {caption: figure path relative to
    the run}. Raises NotRedrawn for a kind this version does not know, SpecError for a damaged run."""
    meta = read_json(run / "meta.json")
    manifest = read_json(run / "manifest.json") if (run / "manifest.json").is_file() else None
    kind = study_kind(meta, manifest)
    if kind not in KINDS:
        raise NotRedrawn(f"an unknown kind of run ({'study ' + repr(kind) if kind else 'no study'} in meta.json or "
                         "manifest.json); this version redraws " + ", ".join(KINDS))
    return redraw(run, kind, KINDS[kind], meta).figures


def find_runs(source: Path) -> tuple[list[Path], list[str]]:
    """(the stored runs under ``source``, one line for each sub-directory that is not one).
    ``source`` is a run itself (it has meta.json) or a directory of runs."""
    if (source / "meta.json").is_file():
        return [source], []
    if (source / "manifest.json").is_file():
        candidates = [source]
    elif source.is_dir():
        candidates = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        candidates = []
    runs, unfinished, others = [], [], []
    for p in candidates:
        if (p / "meta.json").is_file():
            runs.append(p)
        elif (p / "manifest.json").is_file():
            unfinished.append(f"{p}: skipped, unfinished (shards but no meta.json; rerun its command with the "
                              "same --out to finish it)")
        elif (p / "bench.json").is_file():
            others.append(f"{p}: skipped, benchmark output (bench.json) has no figures")
        else:
            others.append(f"{p}: skipped, not a stored run (no meta.json)")
    if not runs and not unfinished:
        raise SpecError(f"--from {source}: no stored run here (a run directory has meta.json)")
    return runs, unfinished + others


def key_figures(figures: dict[str, str]) -> list[str]:
    """The figures worth a place in the gallery: for a width sweep its lambda*(n) plots and the
    train-loss heatmap of the widest width at the last step (the other heatmaps stay with the
    run); for lr-laws the edge plots and a few others; otherwise all of them."""
    paths = list(figures.values())
    names = {p: Path(p).name for p in paths}
    if any(n.startswith("edges_") for n in names.values()):  # lr-laws: ~45 figures; the gallery keeps
        return [p for p, n in names.items()  # the edges, the width transfer plots under Init[1], one
                if n.startswith("edges_") or (n.startswith("transfer_") and "init1_r" in n and "vs_r" not in n)
                or n in ("profile_linear_adam_init1_r.png", "fig2_sgd_paper-mlp_initpaper.png",  # profile, and
                         "fig2_sgd_paper-mlp-base_init1.png")]  # Fig. 2 without and with a frozen W
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


def build_gallery(source: Path, gallery: Path | None, say=print) -> list[Path]:
    """Redraw every run under ``source`` into its own directory, saying one line per run; with
    ``gallery``, copy each run's key figures (PNG and PDF) into it. Returns the copied files."""
    runs, skipped = find_runs(source)
    for line in skipped:
        say(line)
    copied = []
    for run in runs:
        try:
            figures = render_run(run)
        except NotRedrawn as why:
            say(f"{run}: skipped, {why}")
            continue
        say(f"{run}: redrew {len(figures)} figure{'s' * (len(figures) != 1)} and report.md")
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
