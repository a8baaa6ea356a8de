"""Benchmark: torch.func against the per-run loop on a model family's LoRA fine-tune.

The coord-check's training step on the BERT family (``studies.families.bert``): M members
(seeds) x K rate pairs (schemes) for S Adam steps, measured every step, trained once by
``toy_models.module_population``'s torch.func path and once by its per-run loop, from the same
members. Both are timed in wall and process CPU seconds, in alternating blocks so that
background load hits both alike; the speed-up is the ratio of the totals. The members'
pretraining (the family's own cost, the same on either path) is not timed here: pass
``--pretrain-steps`` to change it (the default 0 keeps the benchmark short; the step's FLOPs
do not depend on the base's weights).

Usage: python benchmarks/bench_factory.py [--widths 256,1024] [--members 4] [--rates 2] [--steps 6]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from toy_models.module_population import train_population
from studies.families.bert import BertFamily


def _timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def run(widths=(256, 1024), members: int = 4, rates: int = 2, steps: int = 6, pretrain_steps: int = 0,
        blocks: int = 2) -> list[dict]:
    family = dataclasses.replace(BertFamily(), pretrain_steps=pretrain_steps)
    eta_a = [1e-3 * 0.5 ** k for k in range(rates)]
    eta_b = [1e-3] * rates
    rows = []
    for width in widths:
        tasks = [family(width, 4, seed) for seed in range(members)]
        train_population(tasks[:1], eta_a[:1], eta_b[:1], 1)  # warm-up (allocator, lazy imports)
        totals = {"torch.func": [0.0, 0.0], "loop": [0.0, 0.0]}
        for _ in range(blocks):
            for path in ("torch.func", "loop"):
                wall, cpu, result = _timed(lambda: train_population(tasks, eta_a, eta_b, steps, path=path))
                assert result.path == path
                totals[path][0] += wall
                totals[path][1] += cpu
        (fw, fc), (lw, lc) = totals["torch.func"], totals["loop"]
        rows.append({"width": width, "members": members, "rates": rates, "steps": steps,
                     "torch.func_wall_s": fw / blocks, "loop_wall_s": lw / blocks,
                     "torch.func_cpu_s": fc / blocks, "loop_cpu_s": lc / blocks,
                     "speedup_wall": lw / fw, "speedup_cpu": lc / fc})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="256,1024")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--rates", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--pretrain-steps", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the shards run with 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(tuple(int(w) for w in args.widths.split(",")), args.members, args.rates, args.steps,
               args.pretrain_steps)
    for r in rows:
        print(f"hidden {r['width']}: {r['members']} members x {r['rates']} rates x {r['steps']} steps: "
              f"torch.func {r['torch.func_wall_s']:.2f} s ({r['torch.func_cpu_s']:.2f} s CPU), "
              f"loop {r['loop_wall_s']:.2f} s ({r['loop_cpu_s']:.2f} s CPU): "
              f"{r['speedup_wall']:.2f}x wall, {r['speedup_cpu']:.2f}x CPU")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
