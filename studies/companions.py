"""Companion studies, each a set of coordinate checks with one figure and a short summary.

- ``init``: Init[1] (B = 0, A random) vs Init[2] (A = 0, B random) vs both zero, LoRA+ rates:
  loss and the A-side / B-side feature updates over the steps, on ``linear`` and ``mlp``.
- ``rank``: alpha/r vs alpha/sqrt(r) (rsLoRA) for r = 1 .. 256 at fixed alpha: the size of the
  feature update and of ||dW||, and the loss, against the rank (``mlp``, whose target does
  not depend on r).
- ``contribution``: each matrix's share of the first-order loss decrease against width at
  steps 2, T/2 and T, under equal rates (lora-const, lora-inv) and LoRA+ (the "equivalent
  contribution" argument). With Adam and Init[1], A's share over B's is about
  t eta_A n E|z| / |Z_A| (B itself is Theta(eta_B t), so eta_B cancels): it is balanced exactly
  when eta_A = Theta(1/n), whatever eta_B; balance is necessary for efficiency, not sufficient
  (lora-inv is balanced and lazy on both sides).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from studies.run.runner import coord_check_shards
from studies.run.spec import CoordCheckSpec

STUDIES = ("init", "rank", "contribution")


@dataclass(frozen=True)
class Variant:
    label: str
    spec: CoordCheckSpec


def variants(study: str, quick: bool) -> list[Variant]:
    """The coordinate checks a study runs (quick: fewer widths, ranks and steps)."""
    if study == "init":
        steps, widths = (30, (256,)) if quick else (60, (256, 1024))
        return [Variant(f"{model}, init {init}", CoordCheckSpec(
            model=model, optimizer="adam", init=init, schemes=("loraplus",), widths=widths, steps=steps,
            seeds=(0, 1, 2))) for model in ("linear", "mlp") for init in ("1", "2", "zero")]
    if study == "rank":
        width, ranks = (256, (1, 2, 4, 8, 16, 32, 64)) if quick else (512, (1, 2, 4, 8, 16, 32, 64, 128, 256))
        return [Variant(f"{scaling}|{r}", CoordCheckSpec(
            model="mlp", optimizer="adam", init="1", schemes=("loraplus",), widths=(width,), steps=20,
            seeds=(0, 1, 2), rank=r, alpha=8.0, alpha_scaling=scaling)) for scaling in ("r", "sqrt-r") for r in ranks]
    if study == "contribution":
        widths = (128, 256, 512, 1024, 2048) if quick else (128, 256, 512, 1024, 2048, 4096)
        return [Variant("linear", CoordCheckSpec(
            model="linear", optimizer="adam", init="1", schemes=("lora-const", "lora-inv", "loraplus"),
            widths=widths, steps=10, seeds=(0, 1, 2)))]
    raise ValueError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")


def run(study: str, quick: bool, ctx) -> pd.DataFrame:
    """Every shard of every variant that the run's store does not hold yet (``ctx``: a
    studies.run.context.RunContext); results with a ``variant`` column."""
    per_variant = [(v.label, coord_check_shards(v.spec, ctx.device, f"v{i}_"))
                   for i, v in enumerate(variants(study, quick))]
    ctx.run([sh for _, shards in per_variant for sh in shards], bar=f"study {study}")
    return pd.concat([ctx.load(shards).assign(variant=label) for label, shards in per_variant], ignore_index=True)


def _gmean(v: pd.Series) -> float:
    v = v[v > 0]
    return float(np.exp(np.log(v).mean())) if len(v) else np.nan


def summarise(study: str, results: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind the figure, one row per line drawn."""
    if study == "init":
        last = results.step.max()
        rows = []
        for (variant, width), g in results.groupby(["variant", "width"], sort=False):
            loss = g[g.metric == "loss"]
            rows.append({"variant": variant, "width": width,
                         "loss_0": loss[loss.step == 0].value.mean(), f"loss_{last}": loss[loss.step == last].value.mean(),
                         "delta1 (A side, median over steps)": _gmean(g[(g.metric == "delta1") & (g.step > 1)].value),
                         "delta2 (B side)": _gmean(g[(g.metric == "delta2") & (g.step > 1)].value)})
        return pd.DataFrame(rows)
    if study == "rank":
        r = results.assign(scaling=results.variant.str.split("|").str[0], rank=results.variant.str.split("|").str[1].astype(int))
        last = r.step.max()
        rows = []
        for (scaling, rank), g in r.groupby(["scaling", "rank"], sort=True):
            rows.append({"alpha_scaling": "alpha/r" if scaling == "r" else "alpha/sqrt(r)", "rank": rank,
                         "dz_b (step 2)": _gmean(g[(g.metric == "dz_b") & (g.step == 2)].value),
                         f"dw_fro (step {last})": _gmean(g[(g.metric == "dw_fro") & (g.step == last)].value),
                         f"loss (step {last})": g[(g.metric == "loss") & (g.step == last)].value.mean()})
        table = pd.DataFrame(rows)
        for scaling, g in table.groupby("alpha_scaling"):  # log-log slope of the update size against r
            slope = np.polyfit(np.log(g["rank"]), np.log(g["dz_b (step 2)"]), 1)[0]
            table.loc[g.index, "dz_b slope vs rank"] = slope
        return table
    if study == "contribution":
        last = int(results.step.max())
        s = results[(results.metric == "share_a") & results.step.isin([2, last // 2, last])]
        table = s.groupby(["scheme", "width", "step"]).value.median().unstack("step")
        table.columns = [f"share_a step {c}" for c in table.columns]
        return table.reset_index()
    raise ValueError(f"unknown study {study!r}")


@dataclass
class CompanionTables:
    """A companion study's results (the figure's data) and its summary, one row per line drawn."""

    study: str
    results: pd.DataFrame
    summary: pd.DataFrame

    def files(self) -> dict[str, pd.DataFrame]:
        return {"summary": self.summary}


def analyse(study: str, results: pd.DataFrame) -> CompanionTables:
    return CompanionTables(study, results, summarise(study, results))
