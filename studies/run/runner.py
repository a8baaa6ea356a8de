"""Run a study: expand it into shards (one width x one seed), train each shard's runs as one
population, and collect a tidy long table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from studies.run.shards import Shard
from studies.run.spec import CoordCheckSpec
from toy_models.models import build_model
from toy_models.population import Population, Trajectory

RESULT_COLUMNS = ["model", "optimizer", "init", "scheme", "width", "seed", "step", "layer",
                  "metric", "value", "eta_a", "eta_b"]


def trajectory_frame(traj: Trajectory, run_labels: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows (run, step, layer, metric, value) for every finite measurement, joined with
    ``run_labels`` (one row per run): the label columns, then step, layer, metric, value. Rows
    run by run (in run_labels' order), within a run metric by metric, step, layer. Divergence
    adds a row metric="diverged", value 1 at the step it happened (layer "all"), after that
    run's measurements; a run's update at that step and later is not a measurement.

    Built with numpy and one DataFrame at the end: per-metric frames, a concat and a merge cost
    a toy-model shard more than its training."""
    div = traj.diverged_step.numpy()
    cut = np.where(div >= 0, div, np.iinfo(np.int64).max)          # first step not recorded, per run
    layer_names = np.array(list(traj.layer_names) + ["all"], dtype=object)
    metric_names = np.array(list(traj.metrics) + ["diverged"], dtype=object)
    parts = []                                                      # (run, step, layer, metric, value)
    for code, (metric, table) in enumerate(traj.metrics.items()):
        v = table.numpy()                                           # (T + 1, R, L)
        step, run, layer = np.nonzero(np.isfinite(v) & (np.arange(v.shape[0])[:, None, None] < cut[None, :, None]))
        value = v[step, run, layer]
        if metric in ("loss", "test_loss"):  # one value per run (kept in layer 0), for the whole model
            layer = np.full_like(layer, len(layer_names) - 1)
        parts.append((run, step, layer, np.full(run.size, code), value))
    diverged = np.nonzero(div >= 0)[0]
    parts.append((diverged, div[diverged], np.full(diverged.size, len(layer_names) - 1),
                  np.full(diverged.size, len(metric_names) - 1), np.ones(diverged.size)))
    run, step, layer, metric, value = (np.concatenate(column) for column in zip(*parts))
    order = np.argsort(run, kind="stable")                          # run by run, as a merge on run would
    run = run[order]
    return pd.DataFrame({**{c: run_labels[c].to_numpy()[run] for c in run_labels.columns},
                         "step": step[order], "layer": layer_names[layer[order]],
                         "metric": metric_names[metric[order]], "value": value[order].astype(np.float64)})


def run_coord_check_shard(spec: CoordCheckSpec, width: int, seed: int, device: torch.device,
                          bases: dict | None = None) -> pd.DataFrame:
    """Train every scheme of ``spec`` at one (width, seed) as one population; ``bases``: frozen
    bases already drawn (toy_models.models.LoraModel)."""
    model = build_model(spec.model, spec.model_config(width), seed, device, bases)
    schemes = spec.scheme_objects
    rates = [s.rates(width, spec.optimizer) for s in schemes]
    pop = Population(model, [r[0] for r in rates], [r[1] for r in rates], spec.optimizer,
                     weight_decay=spec.weight_decay)
    traj = pop.run(spec.steps)
    labels = pd.DataFrame({"model": spec.model, "optimizer": spec.optimizer, "init": model.cfg.init,
                           "scheme": [s.name for s in schemes], "width": width, "seed": seed,
                           "eta_a": [r[0] for r in rates], "eta_b": [r[1] for r in rates]})
    return trajectory_frame(traj, labels)[RESULT_COLUMNS]


def coord_check_shards(spec: CoordCheckSpec, device: torch.device, prefix: str = "") -> list[Shard]:
    """The shards of a coordinate check, one per (width, seed), narrowest first; keys
    ``<prefix>w<width>_s<seed>``."""
    return [Shard(f"{prefix}w{w}_s{s}", run_coord_check_shard, (spec, w, s, device))
            for w in sorted(spec.widths) for s in spec.seeds]


def run_coord_check_group(parts: tuple[tuple[str, CoordCheckSpec], ...], width: int, seed: int,
                          device: torch.device) -> pd.DataFrame:
    """Several coordinate checks of one model at one (width, seed): one population per spec,
    each frozen base drawn once for all of them (the same numbers as separate shards). Rows as
    ``run_coord_check_shard``'s plus ``part``, the name each spec has in ``parts``."""
    bases: dict = {}
    return pd.concat([run_coord_check_shard(spec, width, seed, device, bases).assign(part=name)
                      for name, spec in parts], ignore_index=True)


def run_coord_check(spec: CoordCheckSpec, device: torch.device, progress: bool = True) -> pd.DataFrame:
    """Every shard of a coordinate check in this process, without a store (the course and the
    tests use it), widest last so the progress bar is honest early."""
    frames = [sh.fn(*sh.args) for sh in tqdm(coord_check_shards(spec, device), desc=f"coord-check {spec.model}",
                                             unit="shard", disable=not progress, leave=False)]
    return pd.concat(frames, ignore_index=True)
