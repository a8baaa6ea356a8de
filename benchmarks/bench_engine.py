"""Benchmark: the batched population engine against a plain per-run nn.Module + torch.optim loop.

The work: train every run of a learning-rate grid and record its loss at every step (steps + 1
evaluations per run, the last after the final update). The engine runs
``Population(...).run(steps, measure=False)``; it stops a run when its loss stops being finite
or exceeds DIVERGENCE_FACTOR x its initial loss. Two per-run baselines, written here as a
researcher would (module per run, loss.backward(), opt.step(), loss.item() every step):
  loop        every run trained for all steps (what a plain loop does);
  loop+stop   the same loop ending each run at the engine's divergence rule: exactly the
              engine's work, the strict comparison.
Both sides read the SAME frozen tensors (base weights, data, LoRA init) from the engine's model
objects; building those is outside the timed region. After an untimed warm-up of each side,
every seed is timed engine / loop / loop+stop in turn (background load then hits all alike);
the engine's time is the best of a few repeats, each loop is timed once (it runs thousands of
steps). The two sides must agree: same divergence step per run, and final losses equal to
float32 rounding (amplified over the steps; AGREE_RTOL).

Cases:
  (a) paper-mlp, n = 100, 1000 samples (full batch), 17 x 17 log grid of (eta_A, eta_B)
      from 1e-4 to 10, 3 seeds, 50 steps, SGD (full-batch gradient descent, paper Fig. 2);
  (b) linear, n = 1024, the 4 built-in schemes (Scheme.rates(n, "adam")) x 4 seeds,
      20 steps, Adam.
  (c) the paper's full Fig. 2 grid: paper-mlp, n = 100, 43 x 43 pairs (2e-4 .. 9.3, nine per
      decade) x 3 seeds, 200 SGD steps; the loops are timed on 60 random runs per seed and
      extrapolated (the whole loop takes about ten minutes).
``--quick``: cases (a) and (c) on one seed with the loops timed on random runs and extrapolated.

Usage: python benchmarks/bench_engine.py [--quick] [--out FILE.json]
       (or run_benchmarks(quick) -> dict from Python)
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scaling.rules import BUILTIN_SCHEMES
from toy_models import ModelConfig, Population, build_model

DIVERGENCE_FACTOR = 1e8  # the engine's default
AGREE_RTOL = 1e-3        # p99 of final-loss differences, float32, after up to 50 steps
RECHECK_RTOL = 1e-9      # the least-agreeing runs, both sides redone in float64


# -- the per-run baseline: what a researcher would write for one run ----------------------
class PaperMlpRun(nn.Module):
    """f(x) = W_out relu(scale B A relu(W_in x)); only A and B train."""

    def __init__(self, model, A, B):
        super().__init__()
        self.register_buffer("w_in", model.w_in)
        self.register_buffer("w_out", model.w_out)
        self.A, self.B, self.scale = nn.Parameter(A.clone()), nn.Parameter(B.clone()), model.scale

    def forward(self, x):
        h = torch.relu(F.linear(x, self.w_in))
        h = torch.relu(self.scale * F.linear(F.linear(h, self.A), self.B))
        return F.linear(h, self.w_out)


class LinearLoraRun(nn.Module):
    """f(x) = (W* + scale B A) x: a frozen linear layer plus its LoRA branch."""

    def __init__(self, model, A, B):
        super().__init__()
        self.register_buffer("w_star", model.w_star)
        self.A, self.B, self.scale = nn.Parameter(A.clone()), nn.Parameter(B.clone()), model.scale

    def forward(self, x):
        return F.linear(x, self.w_star) + self.scale * F.linear(F.linear(x, self.A), self.B)


RUN_MODULES = {"paper-mlp": PaperMlpRun, "linear": LinearLoraRun}
TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def train_one_run(model, eta_a: float, eta_b: float, optimizer: str, steps: int,
                  early_stop: bool) -> list[float]:
    """One run: per-run module + torch.optim, recording the loss at every step (steps + 1
    values, the last after the final update). With ``early_stop`` the run ends at the first
    loss that is non-finite or above DIVERGENCE_FACTOR x the initial loss (the engine's rule;
    that loss is the last one recorded)."""
    (A, B), = model.lora_init()
    net = RUN_MODULES[model.name](model, A, B)
    opt = TORCH_OPTIMIZERS[optimizer]([{"params": [net.A], "lr": eta_a},
                                       {"params": [net.B], "lr": eta_b}])
    x, y = model.train_batch(1)  # fixed data: one full batch
    losses: list[float] = []
    for t in range(steps + 1):
        loss = 0.5 * F.mse_loss(net(x), y)
        losses.append(loss.item())
        if early_stop and not losses[-1] <= DIVERGENCE_FACTOR * max(losses[0], 1e-30):
            break
        if t == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


def loop_losses(model, rates, optimizer: str, steps: int, runs: list[int],
                early_stop: bool) -> dict[int, list[float]]:
    return {i: train_one_run(model, *rates[i], optimizer, steps, early_stop) for i in runs}


# -- the engine -----------------------------------------------------------------------------
def population_losses(model, rates, optimizer: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    pop = Population(model, [r[0] for r in rates], [r[1] for r in rates], optimizer,
                     divergence_factor=DIVERGENCE_FACTOR)
    traj = pop.run(steps, measure=False)
    return traj.metrics["loss"][:, :, 0], traj.diverged_step  # (T + 1, R), (R,)


# -- cases ----------------------------------------------------------------------------------
def case_a(quick: bool) -> dict:
    grid = np.logspace(-4, 1, 17)
    rates = [(float(a), float(b)) for a in grid for b in grid]
    seeds = [0] if quick else [0, 1, 2]
    build = lambda seed, dtype="float32": build_model("paper-mlp", ModelConfig(width=100, dtype=dtype), seed)
    subset = 48 if quick else None  # per seed; the loop is timed on these and extrapolated
    return dict(name="(a) paper-mlp n=100, 17x17 grid, SGD", seeds=seeds, build=build,
                rates=rates, optimizer="sgd", steps=50, subset=subset)


def case_b(quick: bool) -> dict:
    width = 1024
    rates = [s.rates(width, "adam") for s in BUILTIN_SCHEMES.values()]
    build = lambda seed, dtype="float32": build_model("linear", ModelConfig(width=width, dtype=dtype), seed)
    return dict(name="(b) linear n=1024, 4 schemes, Adam", seeds=list(range(4)), build=build,
                rates=rates, optimizer="adam", steps=20, subset=None)


def case_c(quick: bool) -> dict:
    """The paper's full Fig. 2 grid: 43 x 43 pairs (2e-4 .. 9.3, 9 per decade), 200 steps."""
    grid = 2e-4 * 10.0 ** (np.arange(43) / 9)
    rates = [(float(a), float(b)) for a in grid for b in grid]
    build = lambda seed, dtype="float32": build_model("paper-mlp", ModelConfig(width=100, dtype=dtype), seed)
    return dict(name="(c) Fig. 2 grid 43x43, 200 SGD steps", seeds=[0] if quick else [0, 1, 2], build=build,
                rates=rates, optimizer="sgd", steps=200, subset=24 if quick else 60)


def _timed(fn, repeats: int = 1):
    """(best wall time over ``repeats`` calls, result of the last call)."""
    best, result = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def first_bad_step(losses) -> int:
    """The engine's divergence rule applied to a recorded loss curve; -1 if never."""
    for t, value in enumerate(losses):
        if not value <= DIVERGENCE_FACTOR * max(losses[0], 1e-30):
            return t
    return -1


def _compare(pop_loss: torch.Tensor, pop_div: torch.Tensor, loop: dict[int, list[float]],
             steps: int) -> tuple[dict, list[tuple[float, int]]]:
    """Do the two sides agree? Same divergence step per run, and the final loss of every run
    that finished. Returns a summary and (rel. diff, run) of the finished runs."""
    same_div, diffs = 0, []
    for i, losses in loop.items():
        div = first_bad_step(losses)
        same_div += int(div == int(pop_div[i]))
        if div < 0 and int(pop_div[i]) < 0:
            a, b = float(pop_loss[steps, i]), losses[steps]
            diffs.append((abs(a - b) / max(abs(b), 1e-30), i))
    return {"runs_compared": len(loop), "same_divergence_step": same_div}, diffs


def _recheck_float64(case: dict, worst: list[tuple[float, int, int]], count: int = 3) -> float:
    """Redo the ``count`` least-agreeing runs in float64 on both sides (one-run populations:
    runs never mix); returns the largest relative difference of their loss curves."""
    opt, steps, worst_diff = case["optimizer"], case["steps"], 0.0
    for _, seed, i in sorted(worst, reverse=True)[:count]:
        model = case["build"](seed, "float64")
        pop = population_losses(model, [case["rates"][i]], opt, steps)[0][:, 0]
        loop = torch.tensor(train_one_run(model, *case["rates"][i], opt, steps, early_stop=True),
                            dtype=torch.float64)
        diff = ((pop[:len(loop)] - loop).abs() / loop.abs().clamp_min(1e-300)).max()
        worst_diff = max(worst_diff, float(diff))
    return worst_diff


def run_case(case: dict, pop_repeats: int, seed: int = 0) -> dict:
    """Time one case. Per seed, interleaved (so that background load hits both sides alike):
    the population (best of ``pop_repeats``), the plain loop, the loop with early stopping."""
    rates, opt, steps = case["rates"], case["optimizer"], case["steps"]
    models = [case["build"](s) for s in case["seeds"]]
    R = len(rates)
    rng = random.Random(seed)
    runs = sorted(rng.sample(range(R), case["subset"])) if case["subset"] else list(range(R))
    # warm-up (untimed): one-time costs of both code paths (thread pools, MKL, allocator)
    population_losses(models[0], rates[:2], opt, 2)
    loop_losses(models[0], rates, opt, 2, runs[:2], early_stop=False)

    t_pop = t_plain = t_stop = 0.0
    same_div, diverged, diffs = 0, 0, []
    for s, model in zip(case["seeds"], models):
        dt, (pop_loss, pop_div) = _timed(lambda: population_losses(model, rates, opt, steps),
                                         pop_repeats)
        t_pop += dt
        dt, plain = _timed(lambda: loop_losses(model, rates, opt, steps, runs, early_stop=False))
        t_plain += dt * R / len(runs)
        dt, _ = _timed(lambda: loop_losses(model, rates, opt, steps, runs, early_stop=True))
        t_stop += dt * R / len(runs)
        summary, d = _compare(pop_loss, pop_div, plain, steps)
        same_div += summary["same_divergence_step"]
        diffs += [(diff, s, i) for diff, i in d]
        diverged += int((pop_div >= 0).sum())
    rel = np.array([d for d, _, _ in diffs]) if diffs else np.zeros(1)
    recheck = _recheck_float64(case, diffs)
    n_cmp = len(runs) * len(models)
    agree = {
        "agree": bool(same_div == n_cmp and np.quantile(rel, 0.99) <= AGREE_RTOL
                      and recheck <= RECHECK_RTOL),
        "runs_compared": n_cmp, "same_divergence_step": same_div, "finished_compared": len(diffs),
        "final_loss_rel_diff_median": float(np.median(rel)),
        "final_loss_rel_diff_p99": float(np.quantile(rel, 0.99)),
        "final_loss_rel_diff_max": float(rel.max()),
        "finished_above_1e-3": int((rel > 1e-3).sum()),
        "float64_recheck_max_rel_diff": recheck,
    }
    return {
        "case": case["name"], "runs": R * len(models), "seeds": len(models), "steps": steps,
        "diverged_runs": diverged, "population_s": t_pop,
        "loop_s": t_plain, "loop_early_stop_s": t_stop,
        "speedup": t_plain / t_pop, "speedup_vs_early_stop": t_stop / t_pop,
        "loop_timed_runs": n_cmp, "loop_extrapolated": len(runs) < R,
        "agreement": agree,
    }


def run_benchmarks(quick: bool = False) -> dict:
    """Time cases (a), (b) and (c); returns a JSON-able dict (``results``: one entry per case)."""
    repeats = 2 if quick else 3
    results = [run_case(case_a(quick), repeats), run_case(case_b(quick), repeats), run_case(case_c(quick), 1)]
    return {
        "quick": quick, "population_repeats": repeats, "results": results,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "python": platform.python_version(), "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


def format_table(report: dict) -> str:
    head = (f"{'case':<40} {'runs':>5} {'steps':>5} {'population s':>13} {'loop s':>9} "
            f"{'speedup':>8} {'loop+stop s':>12} {'speedup':>8}")
    lines = [head, "-" * len(head)]
    notes = []
    for r in report["results"]:
        star = "*" if r["loop_extrapolated"] else " "
        lines.append(f"{r['case']:<40} {r['runs']:>5} {r['steps']:>5} {r['population_s']:>13.3f} "
                     f"{r['loop_s']:>8.3f}{star} {r['speedup']:>7.1f}x {r['loop_early_stop_s']:>11.3f}{star} "
                     f"{r['speedup_vs_early_stop']:>7.1f}x")
        a = r["agreement"]
        notes.append(f"{r['case']}: {r['diverged_runs']} runs diverged. "
                     f"{'Agreement OK' if a['agree'] else 'WARNING: LOOP AND ENGINE DISAGREE'}: on "
                     f"{a['runs_compared']} runs: same divergence step for {a['same_divergence_step']}; "
                     f"final loss of the {a['finished_compared']} finished runs (float32): rel. diff "
                     f"median {a['final_loss_rel_diff_median']:.1e}, p99 {a['final_loss_rel_diff_p99']:.1e}, "
                     f"max {a['final_loss_rel_diff_max']:.1e} ({a['finished_above_1e-3']} above 1e-3); "
                     f"the 3 least-agreeing runs redone in float64: max rel. diff "
                     f"{a['float64_recheck_max_rel_diff']:.1e}")
        if r["loop_extrapolated"]:
            notes.append(f"  * loops timed on {r['loop_timed_runs']} random runs, extrapolated to "
                         f"all {r['runs']}")
    legend = ("loop = plain per-run nn.Module + torch.optim loop, every run trained all steps; "
              "loop+stop = the same loop ending each run at the engine's divergence rule "
              "(exactly the engine's work). Engine: Population.run(steps, measure=False). "
              f"Population time = best of {report['population_repeats']}; loops timed once.")
    return "\n".join(lines + [""] + notes + ["", legend])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="(a): one seed, loops timed on a random subset of runs (< 1 minute)")
    p.add_argument("--out", help="write the results as JSON to this file")
    args = p.parse_args(argv)
    report = run_benchmarks(args.quick)
    print(format_table(report))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
