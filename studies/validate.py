"""The main job: a fixed suite of coordinate checks, fitted and judged against the theory.

Suite: models toy, linear and mlp with Adam under Init[1] and Init[2]; gradient descent on
the toy model under both inits; the four built-in schemes each. Verdicts are taken at steps
1, 2 and the last step: step 1 holds the exact zeros of the first update, step 2 is the
first step where every term is active, the last step shows where the recursion settles.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from scaling.gamma import fit_power_law
from scaling.verdicts import DEFAULT_TOLERANCE, FAIL_KIND, compare, compare_first_step, judged_slopes
from studies.lr_laws.analysis import CORNER, SLICE_NAMES, analyse as analyse_laws
from studies.lr_laws.config import ADAM_CRITERIA, LawsConfig, adam_slices
from studies.lr_laws.search import run_laws
from studies.run.runner import run_coord_check_group
from studies.run.shards import Shard
from studies.run.spec import CoordCheckSpec

SCHEMES = ("loraplus", "lora-const", "lora-sqrt", "lora-inv")
CONFIGS = [("toy", "adam", "1"), ("toy", "adam", "2"), ("linear", "adam", "1"), ("linear", "adam", "2"),
           ("mlp", "adam", "1"), ("mlp", "adam", "2"), ("toy", "sgd", "1"), ("toy", "sgd", "2")]


@dataclass(frozen=True)
class SuiteSettings:
    """widths, seeds: per model; fewer_seeds: per model, the widths that run only the first few
    of its seeds ({width: seeds}; default: every width runs them all), where one shard can cost as
    much as all narrower ones together."""

    widths: dict[str, tuple[int, ...]]
    seeds: dict[str, int]
    steps: int
    fewer_seeds: dict[str, dict[int, int]] = field(default_factory=dict)

    def verdict_steps(self) -> tuple[int, ...]:
        return tuple(sorted({1, 2, self.steps}))

    def seeds_at(self, model: str, width: int) -> int:
        """How many seeds run ``model`` at ``width``."""
        return min(self.seeds[model], self.fewer_seeds.get(model, {}).get(width, self.seeds[model]))


# The toy model is cheap (one output; a shard at n = 65536 costs about 4x one at 256, a few tenths
# of a CPU second), so it reaches further; it also needs n >> batch (8), and its measurements are
# products of a few Theta(1) random scalars (a^T x, U): heavy-tailed, so it gets many more seeds.
# Its corrected fits need both: INCONCLUSIVE toy checks (of 266) were 143 at widths to 8192 with
# 16 seeds, 132 with 64 seeds there, 107 / 81 / 88 at widths to 65536 with 32 / 48 / 64 seeds;
# widths to 262144 with 32 seeds gave 106 (the corrections need more than width). The linear
# model's 8 -> 16 seeds cost little (52 -> 45 INCONCLUSIVE of 152; its Init[2] overshoot's trends
# stay at any seed count, and at widths to 4096). The mlp's hidden layers under Init[2] carry a
# finite-width transient in Z_A (its local slopes fall from about +0.3 at n = 128 to about 0 at
# 4096 by step 6); telling that trend from a settled exponent takes widths to 4096 and 32 seeds:
# with 8 seeds to 2048 the drift test cannot see it and the fit, pulled by the narrow widths, FAILs.
# An mlp shard at 4096 costs about 4x one at 2048 (two dense 4096 x 4096 float64 bases to draw and
# multiply), more than all its narrower widths together: there it runs the first 16 seeds, and at
# 2048 the first 20. Judged on the same runs, INCONCLUSIVE checks (of 650) were 146 with all 32
# seeds at 4096, 149 with 16, 157 with 15, 166 with 12, 202 with 8, 181 without the width 4096 at
# all; with 16 at 4096, the seeds at 2048 gave 149 (32), 149 (24), 148 (20), 154 (16).
QUICK = SuiteSettings(widths={"toy": (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
                              "linear": (128, 256, 512, 1024, 2048), "mlp": (128, 256, 512, 1024, 2048, 4096)},
                     seeds={"toy": 48, "linear": 16, "mlp": 32}, steps=6, fewer_seeds={"mlp": {2048: 20, 4096: 16}})
# Wider where it is cheap: a toy shard (one output, O(n) per sample) costs about the same at
# n = 65536 as at 256 (peak memory +30 MB), so the full suite takes the toy to 65536, a longer lever
# arm for the corrected fits. Not the linear model: its dense n x n base and teacher make a shard at
# n = 16384 peak at 7.7 GB and take about 4x the time of one at 8192 (measured; README).
FULL = SuiteSettings(widths={"toy": (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
                             "linear": (128, 256, 512, 1024, 2048, 4096, 8192),
                             "mlp": (128, 256, 512, 1024, 2048, 4096, 8192)},
                    seeds={"toy": 32, "linear": 8, "mlp": 32}, steps=8)


# Rows where the theory predicts no exponent at all (scaling.verdicts' reason kinds): a layer after
# an unstable one (its inputs grow with n; the derivation assumes Theta(1) inputs) and SGD past its
# blow-up (it diverges). They are no check of a prediction, so validate counts them apart as "not
# predicted" (listed in the report, kept in exponents.csv with verdict INCONCLUSIVE) and takes its
# PASS / FAIL / INCONCLUSIVE counts and the INCONCLUSIVE share over the checks with a prediction.
NOT_PREDICTED_KINDS = ("after an unstable layer", "SGD past its blow-up")


def has_prediction(exponents: pd.DataFrame) -> pd.Series:
    """Per row of an exponents table (scaling.verdicts.compare): True where the theory predicts
    an exponent to check, False for the rows NOT_PREDICTED_KINDS names."""
    return ~exponents.reason_kind.isin(NOT_PREDICTED_KINDS)


def verdict_counts(exponents: pd.DataFrame) -> dict[str, float]:
    """The counts validate reports, from an exponents table: rows (all of them), checks (rows with
    a prediction), not_predicted (the others), PASS / FAIL / INCONCLUSIVE over the checks,
    inconclusive_share (INCONCLUSIVE / checks), inconclusive_rows and inconclusive_share_rows
    (every INCONCLUSIVE row, the not-predicted ones included, and its share of all rows: what
    exponents.csv's verdict column shows)."""
    checks = exponents[has_prediction(exponents)]
    verdicts = checks.verdict.value_counts()
    n_inc = int(verdicts.get("INCONCLUSIVE", 0))
    inconclusive_rows = int((exponents.verdict == "INCONCLUSIVE").sum())
    return {"rows": len(exponents), "checks": len(checks), "not_predicted": len(exponents) - len(checks),
            "PASS": int(verdicts.get("PASS", 0)), "FAIL": int(verdicts.get("FAIL", 0)), "INCONCLUSIVE": n_inc,
            "inconclusive_share": n_inc / len(checks) if len(checks) else float("nan"),
            "inconclusive_rows": inconclusive_rows,
            "inconclusive_share_rows": inconclusive_rows / len(exponents) if len(exponents) else float("nan")}


def reason_counts(exponents: pd.DataFrame) -> pd.DataFrame:
    """Rows that did not PASS, counted by (predicted, reason_kind): predicted False for the rows
    not predicted; columns predicted, reason_kind, rows; FAILs first, then the largest kinds."""
    bad = exponents[exponents.verdict != "PASS"]
    counts = (bad.assign(predicted=has_prediction(bad)).groupby(["predicted", "reason_kind"]).size()
              .rename("rows").reset_index())
    order = np.lexsort((-counts.rows.to_numpy(), counts.reason_kind.ne(FAIL_KIND[0]).to_numpy(),
                        ~counts.predicted.to_numpy()))
    return counts.iloc[order].reset_index(drop=True)


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


# The stacking control trains one more population in the mlp's shards, about a quarter of a
# shard's cost at the widest width (measured), so it runs on the first seeds only.
STACK_CONTROL_SEEDS = 8


def stack_control_spec(settings: SuiteSettings) -> CoordCheckSpec:
    """The stacking control (scaling.theory.predict(layer=, detached=)): the mlp under Adam and
    Init[1], LoRA+, with every LoRA layer but the first reading a detached copy of its input
    (toy_models' detach_lora_input), everything else (widths, base, data) as in the suite, on
    the suite's first STACK_CONTROL_SEEDS seeds. The backward link between the stacked LoRA
    layers is cut, so hidden2 is predicted as a first layer: z_a and delta2 Theta(1), where the
    suite's hidden2 gets only bounds."""
    return CoordCheckSpec(model="mlp", optimizer="adam", init="1", schemes=("loraplus",),
                          widths=settings.widths["mlp"], steps=settings.steps,
                          seeds=tuple(range(min(STACK_CONTROL_SEEDS, settings.seeds["mlp"]))),
                          detach_lora_input=True)


# The stacked layer's quantities the stacking control shows (scaling.theory: the bounds of a
# stacked-layer crossover sit on z_a and delta2, and on dz_b through delta2).
STACKED_METRICS = ("z_a", "delta2", "dz_b")


def stack_control_table(exponents: pd.DataFrame, results: pd.DataFrame, control: pd.DataFrame, steps,
                        tol: float, layer: str = "hidden2") -> pd.DataFrame:
    """``layer``'s STACKED_METRICS at ``steps`` in the suite (mlp, Adam, Init[1], LoRA+; its
    exponents table, already judged against the stacked prediction), the suite's same runs on the
    control's seeds only (suffix _same_seeds, judged the same way, from ``results``) and the
    stacking control (suffix _detached, judged with ``detached``: the one-layer prediction): one
    row per (metric, step) with the prediction, slope judged, interval, verdict and reason kind
    of each; straight, straight_lo, straight_hi: the straight log-log slope and its interval
    whatever was judged. n_seeds, n_seeds_detached: the seeds behind the suite's and the control's fits."""
    keys = ["scheme", "metric", "layer", "step"]
    cols = keys + ["predicted", "claim", "lower", "upper", "slope", "ci_low", "ci_high", "verdict", "reason_kind",
                   "n_seeds", "straight", "straight_lo", "straight_hi"]

    def pick(e: pd.DataFrame) -> pd.DataFrame:
        # the straight slopes too: a bounded check judges the straight one, a control's may judge
        # its corrected one, and like is set beside like only with both
        e = judged_slopes(e.assign(straight=e.slope, straight_lo=e.ci_low, straight_hi=e.ci_high))
        return e[(e.model == "mlp") & (e.optimizer == "adam") & (e.init == "1") & (e.scheme == "loraplus")
                 & (e.layer == layer) & e.metric.isin(STACKED_METRICS)][cols]

    twin = results[(results.model == "mlp") & (results.optimizer == "adam") & (results.init == "1")
                   & (results.scheme == "loraplus") & results.seed.isin(control.seed.unique())]
    same = pick(compare(twin, steps, tol=tol)).drop(columns=["predicted", "claim", "lower", "upper"])
    both = (pick(exponents).merge(same, on=keys, suffixes=("", "_same_seeds"))
            .merge(pick(compare(control, steps, tol=tol, detached=True)), on=keys, suffixes=("", "_detached")))
    return both.sort_values(["metric", "step"]).reset_index(drop=True)


def b0_control_table(exponents: pd.DataFrame, control: pd.DataFrame, steps, tol: float) -> pd.DataFrame:
    """The suite's verdicts (its exponents table, already judged) for the control's
    configurations beside the control's own: one row per (scheme, metric, layer, step) that is
    not a PASS in at least one of the two, each with the slope its verdict judged (the corrected
    exponent where the theory gives a correction)."""
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
    """The shards of the suite and its three controls, and the part names of each: one shard per
    (model, width, seed) trains every configuration of that model there (the suite's inits and
    optimisers, and the controls on that model), so the frozen base is drawn once, not three
    or four times. Ordered so that each model's shards spread evenly over the run (the cost per
    shard is then about the same throughout, and the progress bar's estimate holds early on).
    Returns (shards, {"suite" | "control" | "b0control" | "stackcontrol": [part names]})."""
    named = [(f"{spec.model}_{spec.optimizer}_init{spec.init}", spec) for spec in suite_specs(settings)]
    parts = {"suite": [name for name, _ in named], "control": ["control"], "b0control": ["b0control"],
             "stackcontrol": ["stackcontrol"]}
    named += [("control", control_spec(settings)), ("b0control", b0_control_spec(settings)),
              ("stackcontrol", stack_control_spec(settings))]
    shards = []
    for model in settings.widths:
        seeds = settings.seeds[model]
        for s in range(seeds):  # a control on fewer seeds joins the shards of its seeds only
            group = tuple((name, spec) for name, spec in named if spec.model == model and s in spec.seeds)
            shards += [(s / seeds, w, Shard(f"{model}_w{w}_s{s}", run_coord_check_group, (group, w, s, device)))
                       for w in settings.widths[model] if s < settings.seeds_at(model, w)]
    return [sh for *_, sh in sorted(shards, key=lambda x: x[:2])], parts


def run_suite(settings: SuiteSettings, ctx) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every shard of the suite and of its three controls (the Init[2] overshoot, the B0 path,
    the stacked layers) that the run's store does not hold yet (``ctx``: a
    studies.run.context.RunContext). Returns (suite, overshoot control, B0 control, stacking
    control) results, each in the runner's tidy format, rows ordered by configuration, width
    and seed."""
    shards, parts = suite_shards(settings, ctx.device)
    ctx.run(shards, bar="validate")
    everything = ctx.load(shards)

    def part(names: list[str]) -> pd.DataFrame:
        rank = {name: i for i, name in enumerate(names)}
        rows = everything[everything.part.isin(rank)]
        order = np.lexsort((rows.seed.to_numpy(), rows.width.to_numpy(), rows.part.map(rank).to_numpy()))
        return rows.iloc[order].drop(columns="part").reset_index(drop=True)

    return (part(parts["suite"]), part(parts["control"]).assign(teacher="b0-aligned"),
            part(parts["b0control"]).assign(b0_scale=B0_CONTROL_SCALE),
            part(parts["stackcontrol"]).assign(detach_lora_input=True))


# -- one learning-rate law: the LoRA+ corner ----------------------------------------------------------
CORNER_LAWS = (CORNER, SLICE_NAMES["b-edge"], SLICE_NAMES["a-edge"])


def corner_config() -> LawsConfig:
    """The LoRA+ corner on ``linear`` under Adam and Init[1], small enough for ``validate --quick``
    (a few CPU seconds): the B edge and the A edge at five widths, 8 seeds, primary criterion."""
    return LawsConfig(model="linear", optimizer="adam", init="1", widths=(128, 256, 512, 1024, 2048),
                      seeds=tuple(range(8)), slices=adam_slices(False)[:2], criteria=ADAM_CRITERIA[:1], batch_size=8,
                      per_decade=3)


def run_corner(ctx) -> pd.DataFrame:
    """The corner's edge-search runs, in their own store under ``out``/lr_corner (resumable)."""
    config = corner_config()
    with ctx.phase("validate: one learning-rate law, the LoRA+ corner on linear under Adam (lr-laws)"):
        store = ctx.sub_store("lr_corner", {"study": "validate lr-laws corner", "config": config.to_dict()})
        return run_laws([config], ctx, store=store, bar=None)


# -- the analysis -------------------------------------------------------------------------------------
@dataclass
class ValidateTables:
    """What validate found. results: the suite's measurements (the figures' data); exponents:
    every check's fit and verdict; overshoot, b0_control, stack_control: the three controls'
    tables (stack_control_table: hidden2 with and without the stacking control); progress:
    the mlp's training progress per width; corner: the learning-rate law's rows (lr_laws.csv);
    corner_cpu_s: the corner search's CPU seconds; settings, tolerance: what was run and judged."""

    results: pd.DataFrame
    exponents: pd.DataFrame
    overshoot: pd.DataFrame
    progress: pd.DataFrame
    b0_control: pd.DataFrame
    corner: pd.DataFrame
    corner_cpu_s: float
    settings: SuiteSettings
    tolerance: float
    b0_scale: float = B0_CONTROL_SCALE
    stack_control: pd.DataFrame | None = None

    def files(self) -> dict[str, pd.DataFrame]:
        return {"exponents": self.exponents, "lr_laws": self.corner}


def analyse(settings: SuiteSettings, results: pd.DataFrame, control: pd.DataFrame, b0_control: pd.DataFrame,
            corner_runs: pd.DataFrame, tol: float = DEFAULT_TOLERANCE,
            stack_control: pd.DataFrame | None = None) -> ValidateTables:
    """Fit and judge the suite and its controls; the corner law from its edge-search runs."""
    steps = settings.verdict_steps()
    exponents = pd.concat([compare(results, steps, tol=tol), compare_first_step(results, tol=tol)], ignore_index=True)
    config = corner_config()
    laws = analyse_laws(corner_runs, [config], tol, kinds=("edge", "corner")).laws
    corner = laws[laws.law.isin(CORNER_LAWS)].reset_index(drop=True)
    cpu = float(corner_runs.groupby(["width", "seed"]).cpu_s.first().sum()) if len(corner_runs) else 0.0
    return ValidateTables(results, exponents, overshoot_table(results, control, steps),
                          progress_table(results, sorted({1, 2, settings.steps // 2, settings.steps})),
                          b0_control_table(exponents, b0_control, steps, tol), corner, cpu, settings, tol,
                          stack_control=(stack_control_table(exponents, results, stack_control, steps, tol)
                                         if stack_control is not None and len(stack_control) else None))


def settings_named(name: str) -> SuiteSettings:
    """The suite called ``name``: quick or full."""
    return {"quick": QUICK, "full": FULL}[name]


# The controls each shard trains beside the suite: a store made before one was added lacks its
# rows, so the list is part of the store's spec (such a store is refused, not silently resumed).
CONTROLS = ("overshoot", "b0", f"stacking on {STACK_CONTROL_SEEDS} seeds")


def store_spec(settings: SuiteSettings) -> dict:
    return {"study": "validate", **asdict(settings), "controls": list(CONTROLS)}
