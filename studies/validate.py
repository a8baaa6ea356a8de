"""The main job: a fixed suite of coordinate checks, fitted and judged against the theory.

Suite: models toy, linear and mlp with Adam under Init[1] and Init[2]; gradient descent on
the toy model under both inits; the four built-in schemes each. Verdicts are taken at steps
1, 2 and the last step: step 1 holds the exact zeros of the first update, step 2 is the
first step where every term is active, the last step shows where the recursion settles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from studies.run.runner import run_coord_check_group
from studies.run.shards import Shard, ShardStore, run_shards
from studies.run.spec import CoordCheckSpec

SCHEMES = ("loraplus", "lora-const", "lora-sqrt", "lora-inv")
CONFIGS = [("toy", "adam", "1"), ("toy", "adam", "2"), ("linear", "adam", "1"), ("linear", "adam", "2"),
           ("mlp", "adam", "1"), ("mlp", "adam", "2"), ("toy", "sgd", "1"), ("toy", "sgd", "2")]


@dataclass(frozen=True)
class SuiteSettings:
    widths: dict[str, tuple[int, ...]]
    seeds: dict[str, int]
    steps: int

    def verdict_steps(self) -> tuple[int, ...]:
        return tuple(sorted({1, 2, self.steps}))


# The toy model is cheap (one output), so it reaches further; it also needs n >> batch (8),
# and its measurements are products of a few Theta(1) random scalars (a^T x, U): heavy-tailed,
# so it gets many more seeds. The mlp's hidden layers under Init[2] carry a finite-width
# transient in Z_A (its local slopes fall from about +0.3 at n = 128 to about 0 at 4096 by
# step 6); telling that trend from a settled exponent takes widths to 4096 and 32 seeds: with
# 8 seeds to 2048 the drift test cannot see it and the fit, pulled by the narrow widths, FAILs.
QUICK = SuiteSettings(widths={"toy": (256, 512, 1024, 2048, 4096, 8192), "linear": (128, 256, 512, 1024, 2048),
                              "mlp": (128, 256, 512, 1024, 2048, 4096)},
                     seeds={"toy": 16, "linear": 8, "mlp": 32}, steps=6)
# Wider where it is cheap: a toy shard (one output, O(n) per sample) costs about the same at
# n = 65536 as at 256 (peak memory +30 MB), so the full suite takes the toy to 65536, a longer lever
# arm for the corrected fits. Not the linear model: its dense n x n base and teacher make a shard at
# n = 16384 peak at 7.7 GB and take about 4x the time of one at 8192 (measured; README).
FULL = SuiteSettings(widths={"toy": (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
                             "linear": (128, 256, 512, 1024, 2048, 4096, 8192),
                             "mlp": (128, 256, 512, 1024, 2048, 4096, 8192)},
                    seeds={"toy": 32, "linear": 8, "mlp": 32}, steps=8)


def suite_specs(settings: SuiteSettings) -> list[CoordCheckSpec]:
    return [CoordCheckSpec(model=model, optimizer=opt, init=init, schemes=SCHEMES,
                           widths=settings.widths[model], steps=settings.steps,
                           seeds=tuple(range(settings.seeds[model])))
            for model, opt, init in CONFIGS]


def control_spec(settings: SuiteSettings) -> CoordCheckSpec:
    """The control for the Init[2] overshoot (scaling.theory): linear, Adam, Init[2], LoRA+,
    with the teacher's output directions inside span(B0), where A's own target is Theta(1)."""
    return CoordCheckSpec(model="linear", optimizer="adam", init="2", schemes=("loraplus",),
                          widths=settings.widths["linear"], steps=settings.steps,
                          seeds=tuple(range(settings.seeds["linear"])), teacher="b0-aligned")


B0_CONTROL_SCALE = 0.25


def b0_control_spec(settings: SuiteSettings) -> CoordCheckSpec:
    """The control for the B0 path (scaling.theory.first_step_loss_drop): the mlp under Adam and
    Init[2], LoRA+ and lora-inv, with B0 scaled by B0_CONTROL_SCALE and everything else (widths,
    seeds, base, data) as in the suite. The predicted exponents do not depend on B0's scale; the
    B0 path shrinks with it."""
    return CoordCheckSpec(model="mlp", optimizer="adam", init="2", schemes=("loraplus", "lora-inv"),
                          widths=settings.widths["mlp"], steps=settings.steps,
                          seeds=tuple(range(settings.seeds["mlp"])), b0_scale=B0_CONTROL_SCALE)


def b0_control_table(exponents: pd.DataFrame, control: pd.DataFrame, steps, tol: float) -> pd.DataFrame:
    """The suite's verdicts (its exponents table, already judged) for the control's
    configurations beside the control's own: one row per (scheme, metric, layer, step) that is
    not a PASS in at least one of the two, each with the slope its verdict judged (the corrected
    exponent where the theory gives a correction)."""
    from scaling.verdicts import compare, judged_slopes
    twin = exponents[(exponents.model == "mlp") & (exponents.optimizer == "adam") & (exponents.init == "2")
                     & exponents.scheme.isin(control.scheme.unique())]
    keys = ["scheme", "metric", "layer", "step"]
    cols = keys + ["predicted", "slope", "ci_low", "ci_high", "verdict"]  # slopes: what the verdicts judged
    both = judged_slopes(twin)[cols].merge(judged_slopes(compare(control, steps, tol=tol))[cols],
                                           on=keys + ["predicted"], suffixes=("", "_b0_scaled"))
    return both[(both.verdict != "PASS") | (both.verdict_b0_scaled != "PASS")].reset_index(drop=True)


def overshoot_table(suite: pd.DataFrame, control: pd.DataFrame, steps) -> pd.DataFrame:
    """Slopes of z_a and delta1 (linear, Adam, Init[2], LoRA+) under both teachers: one row
    per (teacher, metric, step) with slope and 95% interval."""
    from scaling.gamma import fit_power_law
    base = suite[(suite.model == "linear") & (suite.init == "2") & (suite.scheme == "loraplus")]
    rows = []
    for teacher, frame in (("independent", base), ("b0-aligned", control)):
        for metric in ("z_a", "delta1"):
            for step in steps:
                m = frame[(frame.metric == metric) & (frame.step == step)]
                fit = fit_power_law(m.width, m.value, m.seed)
                if fit is not None:
                    rows.append({"teacher": teacher, "metric": metric, "step": step, "slope": fit.slope,
                                 "ci_low": fit.ci_low, "ci_high": fit.ci_high,
                                 "local_slopes": " ".join(f"{s:+.2f}" for s in fit.local_slopes)})
    return pd.DataFrame(rows)


def progress_table(suite: pd.DataFrame, steps, model: str = "mlp",
                   schemes=("loraplus", "lora-inv")) -> pd.DataFrame:
    """Training progress 1 - L(t) / L(0) (mean over seeds) of ``model`` under Adam: one row per
    (init, scheme, step), one column per width. Under Init[2] the B0 path (scaling.theory.
    first_step_loss_drop) makes narrow widths train faster early on than the fixed-t limit says."""
    loss = suite[(suite.model == model) & (suite.optimizer == "adam") & (suite.metric == "loss")
                 & suite.scheme.isin(schemes)]
    if loss.empty:
        return pd.DataFrame()
    keys = ["init", "scheme", "width", "seed"]
    start = loss[loss.step == 0].set_index(keys).value
    rows = []
    for step in steps:
        later = loss[loss.step == step].set_index(keys).value
        progress = (1 - later / start).dropna().groupby(["init", "scheme", "width"]).mean()
        rows.append(progress.unstack("width").assign(step=step))
    return pd.concat(rows).reset_index().set_index(["init", "scheme", "step"]).sort_index().reset_index()


def suite_shards(settings: SuiteSettings, device: torch.device) -> tuple[list[Shard], dict[str, list[str]]]:
    """The shards of the suite and its two controls, and the part names of each: one shard per
    (model, width, seed) trains every configuration of that model there (the suite's inits and
    optimisers, and the control on that model), so the frozen base is drawn once, not three
    or four times. Ordered so that each model's shards spread evenly over the run (the cost per
    shard is then about the same throughout, and the progress bar's estimate holds early on).
    Returns (shards, {"suite" | "control" | "b0control": [part names]})."""
    named = [(f"{spec.model}_{spec.optimizer}_init{spec.init}", spec) for spec in suite_specs(settings)]
    parts = {"suite": [name for name, _ in named], "control": ["control"], "b0control": ["b0control"]}
    named += [("control", control_spec(settings)), ("b0control", b0_control_spec(settings))]
    shards = []
    for model in settings.widths:
        group = tuple((name, spec) for name, spec in named if spec.model == model)
        seeds = settings.seeds[model]
        shards += [(s / seeds, w, Shard(f"{model}_w{w}_s{s}", run_coord_check_group, (group, w, s, device)))
                   for w in settings.widths[model] for s in range(seeds)]
    return [sh for *_, sh in sorted(shards, key=lambda x: x[:2])], parts


def run_suite(settings: SuiteSettings, device: torch.device, store: ShardStore, executor: str = "inline",
              workers: int = 2, scheduler: str | None = None,
              progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every shard of the suite and of its two controls (the Init[2] overshoot, the B0 path)
    that the store does not hold yet. Returns (suite, overshoot control, B0 control) results,
    each in the runner's tidy format, rows ordered by configuration, width and seed."""
    shards, parts = suite_shards(settings, device)
    run_shards(shards, store, executor, workers, scheduler, bar="validate" if progress else None)
    everything = store.load([sh.key for sh in shards])

    def part(names: list[str]) -> pd.DataFrame:
        rank = {name: i for i, name in enumerate(names)}
        rows = everything[everything.part.isin(rank)]
        order = np.lexsort((rows.seed.to_numpy(), rows.width.to_numpy(), rows.part.map(rank).to_numpy()))
        return rows.iloc[order].drop(columns="part").reset_index(drop=True)

    return (part(parts["suite"]), part(parts["control"]).assign(teacher="b0-aligned"),
            part(parts["b0control"]).assign(b0_scale=B0_CONTROL_SCALE))
