"""The coordinate check of a toy model: every scheme at every width and seed, measured every step,
fitted against width and judged against the theory (``coord-check``).

Shards: one per (width, seed), all schemes trained as one population (``studies.run.runner``).
Analysis: the log-log slope of each summary metric at the last step, and, where the theory
derives the model's exponents (``scaling.theory.SUPPORTED``), the verdicts of ``validate`` at
steps 1, 2 and the last.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scaling.gamma import fit_table
from scaling.theory import SUPPORTED
from scaling.verdicts import DEFAULT_TOLERANCE, compare
from studies.run.runner import coord_check_shards
from studies.run.spec import CoordCheckSpec

SUMMARY_METRICS = ("delta1", "delta2", "delta3", "z_a", "dz_b")


def slope_summary(results: pd.DataFrame, step: int) -> pd.DataFrame:
    """Log-log slope against width of each summary metric at ``step``: rows (scheme, layer),
    one column per metric (empty when fewer than two widths have values)."""
    at = results[(results.step == step) & results.metric.isin(SUMMARY_METRICS + ("diverged",))]
    fits = fit_table(at, by=("scheme", "metric", "layer"))
    if fits.empty or "slope" not in fits:
        return pd.DataFrame()
    table = fits.pivot_table(index=["scheme", "layer"], columns="metric", values="slope")
    return table[[m for m in SUMMARY_METRICS if m in table.columns]]


def verdict_steps(steps: int) -> list[int]:
    """Where the verdicts are taken: step 1 (the first update's exact zeros), step 2 (every term
    active) and the last step (where the recursion settles)."""
    return sorted({1, 2, steps} & set(range(1, steps + 1)))


@dataclass
class CoordCheckTables:
    """results: the measurements (the figure's data); slopes: slope_summary at the last step;
    exponents: fits and verdicts (empty where the theory has no derivation for the model and
    optimizer); judged: whether it has one; n_diverged: runs that diverged."""

    results: pd.DataFrame
    slopes: pd.DataFrame
    exponents: pd.DataFrame
    judged: bool
    n_diverged: int

    def files(self) -> dict[str, pd.DataFrame]:
        return {"exponents": self.exponents} if self.judged else {}


def run(spec: CoordCheckSpec, ctx) -> pd.DataFrame:
    """Every shard of ``spec`` the run's store does not hold yet (``ctx``: a
    studies.run.context.RunContext); the tidy results of all of them."""
    shards = coord_check_shards(spec, ctx.device)
    ctx.run(shards, bar=f"coord-check {spec.model}")
    return ctx.load(shards)


def analyse(spec: CoordCheckSpec, results: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> CoordCheckTables:
    """Slopes at the last step and, where the theory covers the model, the verdicts."""
    results = results.assign(init=results["init"].astype(str))
    judged = (spec.optimizer, spec.model) in SUPPORTED
    exponents = compare(results, verdict_steps(spec.steps), tol=tolerance) if judged else pd.DataFrame()
    return CoordCheckTables(results, slope_summary(results, spec.steps), exponents, judged,
                            int((results.metric == "diverged").sum()))
