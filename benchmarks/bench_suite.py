"""The benchmark suite: ``python -m benchmarks.bench_suite [--quick] [--out DIR]`` (from the
repository's root; benchmarks depend on the package, never the reverse). Writes DIR/bench.json.

In one process (so the numbers are ratios measured under the same load):
  engine     population engine vs per-run nn.Module + torch.optim loops (bench_engine cases);
  matmul     this machine's dense float32 matmul rate (2048 x 2048, best of 5), GFLOP/s;
  mlp rate   the engine's achieved GFLOP/s training ``mlp`` (depth 2, batch 32, 4 runs) at
             n = 1024 and 2048, counting the n x n products only: per run and step, the
             hidden layer's base product forward (2 N n^2) and its input gradient backward
             (2 N n^2); the rank-r LoRA products are left out (a lower bound);
  overhead   training with measurement every step vs without, mlp at n = 1024 and 2048 and
             linear at n = 1024 (aim: at most 25%);
  memory     peak resident memory of the widest coordinate-check shard (linear, n = 8192,
             4 schemes, Adam, 6 steps), measured in a fresh process.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import time
from pathlib import Path

import torch

from benchmarks.bench_engine import format_table, run_benchmarks
from scaling.rules import BUILTIN_SCHEMES
from studies.run.runner import run_coord_check_shard
from studies.run.spec import CoordCheckSpec
from toy_models.models import ModelConfig, build_model
from toy_models.population import Population


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_time(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _population(name: str, width: int) -> Population:
    model = build_model(name, ModelConfig(width=width), 0)
    rates = [s.rates(width, "adam") for s in BUILTIN_SCHEMES.values()]
    return Population(model, [r[0] for r in rates], [r[1] for r in rates], "adam")


def mlp_rate(width: int, steps: int = 10) -> dict:
    pop = _population("mlp", width)
    pop.run(2, measure=False)
    seconds = min(_time(lambda: pop.run(steps, measure=False)) for _ in range(3))
    model = pop.model
    n, N, L, R = width, model.cfg.batch_size, model.cfg.depth, pop.runs
    flops = steps * R * (L - 1) * 4 * N * n * n
    return {"width": width, "seconds_per_step": seconds / steps, "gflops": flops / seconds / 1e9}


def measurement_overhead(name: str, width: int, steps: int = 10) -> dict:
    times = {}
    for measure in (False, True, False, True):
        pop = _population(name, width)
        pop.run(2, measure=measure)
        dt = _time(lambda: pop.run(steps, measure=measure))
        times[measure] = min(times.get(measure, float("inf")), dt)
    return {"model": name, "width": width, "train_s": times[False], "measured_s": times[True],
            "overhead": times[True] / times[False] - 1}


def _widest_shard(queue) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    spec = CoordCheckSpec(model="linear", widths=(8192,), steps=6, seeds=(0,))
    start = time.perf_counter()
    run_coord_check_shard(spec, 8192, 0, torch.device("cpu"))
    queue.put({"width": 8192, "seconds": time.perf_counter() - start, "baseline_mb": before / 1024,
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def peak_memory() -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_widest_shard, args=(queue,))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def run_suite(quick: bool = False) -> dict:
    report = {"engine": run_benchmarks(quick), "matmul_gflops": matmul_gflops()}
    report["mlp_rate"] = [mlp_rate(w) for w in (1024, 2048)]
    report["overhead"] = [measurement_overhead("mlp", 1024), measurement_overhead("mlp", 2048),
                          measurement_overhead("linear", 1024)]
    report["memory"] = peak_memory()
    report.update(torch=torch.__version__, threads=torch.get_num_threads(), python=platform.python_version())
    return report


def format_report(report: dict) -> str:
    lines = [format_table(report["engine"]), "",
             f"dense float32 matmul (2048^2): {report['matmul_gflops']:.1f} GFLOP/s"]
    for r in report["mlp_rate"]:
        lines.append(f"engine, mlp n = {r['width']}: {r['gflops']:.1f} GFLOP/s "
                     f"({100 * r['gflops'] / report['matmul_gflops']:.0f}% of matmul; {1e3 * r['seconds_per_step']:.1f} "
                     "ms per step for 4 runs; aim >= 50%)")
    for r in report["overhead"]:
        lines.append(f"measurement overhead, {r['model']} n = {r['width']}: {100 * r['overhead']:+.0f}% "
                     f"({r['train_s']:.3f} s -> {r['measured_s']:.3f} s; aim <= 25%)")
    m = report["memory"]
    lines.append(f"peak memory, widest shard (linear n = {m['width']}, 4 runs): {m['peak_mb']:.0f} MB "
                 f"(process baseline {m['baseline_mb']:.0f} MB; {m['seconds']:.1f} s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds; loops timed on samples and extrapolated")
    parser.add_argument("--out", default="runs/bench", help="directory for bench.json (default runs/bench)")
    args = parser.parse_args()
    report = run_suite(args.quick)
    print(format_report(report))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out / 'bench.json'}")


if __name__ == "__main__":
    main()
