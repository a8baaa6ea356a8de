"""Run a study: expand it into shards (one width x one seed), train each shard's runs as one
population, and collect a tidy long table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from studies.run.spec import CoordCheckSpec
from toy_models.models import build_model
from toy_models.population import Population, Trajectory

RESULT_COLUMNS = ["model", "optimizer", "init", "scheme", "width", "seed", "step", "layer",
                  "metric", "value", "eta_a", "eta_b"]


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but CUDA is not available")
    return dev


def trajectory_frame(traj: Trajectory, run_labels: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows (run, step, layer, metric, value) for every finite measurement, joined with
    ``run_labels`` (one row per run). Divergence adds a row metric="diverged", value 1 at the
    step it happened (layer "all")."""
    frames = []
    for metric, values in traj.metrics.items():
        v = values.numpy()  # (T + 1, R, L)
        step, run, layer = np.nonzero(np.isfinite(v))
        layer_names = np.array(traj.layer_names if metric not in ("loss", "test_loss") else ["all"])
        layer_idx = layer if len(layer_names) > 1 else np.zeros_like(layer)
        frames.append(pd.DataFrame({"run": run, "step": step, "layer": layer_names[layer_idx],
                                    "metric": metric, "value": v[step, run, layer]}))
    div = traj.diverged_step.numpy()
    # A run's update at the step it diverged is not a measurement of a healthy run.
    tidy_steps = pd.concat(frames, ignore_index=True)
    cut = np.where(div >= 0, div, np.iinfo(np.int64).max)[tidy_steps.run.to_numpy()]
    frames = [tidy_steps[tidy_steps.step.to_numpy() < cut]]
    runs = np.nonzero(div >= 0)[0]
    frames.append(pd.DataFrame({"run": runs, "step": div[runs], "layer": "all",
                                "metric": "diverged", "value": 1.0}))
    tidy = pd.concat(frames, ignore_index=True)
    return run_labels.reset_index(names="run").merge(tidy, on="run").drop(columns="run")


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


def coord_check_shards(spec: CoordCheckSpec, device: torch.device, prefix: str = "") -> list:
    """The shards of a coordinate check, one per (width, seed), narrowest first; keys
    ``<prefix>w<width>_s<seed>``."""
    from studies.run.shards import Shard
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
