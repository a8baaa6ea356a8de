"""What each sub-command does, once its arguments are parsed."""
from __future__ import annotations

import sys
import time

import pandas as pd

from studies.runner import resolve_device, run_coord_check
from studies.spec import CoordCheckSpec, SpecError
from studies.store import metadata, prepare_out_dir, write_csv, write_json

SUMMARY_METRICS = ("delta1", "delta2", "delta3", "z_a", "dz_b")


def _spec_from_args(args) -> CoordCheckSpec:
    if args.seeds <= 0:
        raise SpecError(f"--seeds must be a positive integer, got {args.seeds}")
    schemes = [s for s in (args.schemes.split(";") if "=" in args.schemes else args.schemes.split(","))
               if s.strip()]
    return CoordCheckSpec(model=args.model, optimizer=args.optimizer, init=args.init,
                          schemes=tuple(s.strip() for s in schemes), widths=tuple(args.widths),
                          steps=args.steps, seeds=tuple(range(args.seeds)), rank=args.rank,
                          alpha=args.alpha, alpha_scaling=args.alpha_scaling,
                          batch_size=args.batch_size, data=args.data, depth=args.depth,
                          dtype=args.dtype, loss_reduction=args.loss_reduction)


def slope_summary(results: pd.DataFrame, step: int) -> pd.DataFrame:
    """Log-log slope against width of each summary metric at ``step``: scheme x metric."""
    from scaling.gamma import fit_table
    at = results[(results.step == step) & results.metric.isin(SUMMARY_METRICS + ("diverged",))]
    fits = fit_table(at, by=("scheme", "metric", "layer"))
    if fits.empty or "slope" not in fits:
        return pd.DataFrame()
    table = fits.pivot_table(index=["scheme", "layer"], columns="metric", values="slope")
    return table[[m for m in SUMMARY_METRICS if m in table.columns]]


def coord_check(args) -> int:
    spec = _spec_from_args(args)
    device = resolve_device(args.device)
    out = prepare_out_dir(args.out)
    start = time.perf_counter()
    results = run_coord_check(spec, device, progress=sys.stderr.isatty())
    wall = time.perf_counter() - start
    write_csv(results, out / "results.csv")
    write_json(metadata(spec.to_dict(), str(device), wall), out / "meta.json")
    table = slope_summary(results, spec.steps)
    n_div = int((results.metric == "diverged").sum())
    print(f"coord-check {spec.model} / {spec.optimizer} / init {results.init.iloc[0]}: "
          f"{len(spec.widths)} widths x {len(spec.seeds)} seeds x {len(spec.schemes)} schemes, "
          f"{spec.steps} steps in {wall:.1f}s; {n_div} diverged runs")
    print(f"log-log slope against width at step {spec.steps}:")
    print(table.round(2).to_string() if not table.empty else "  (not enough widths to fit)")
    print(f"wrote {out / 'results.csv'} and {out / 'meta.json'}")
    return 0


COMMANDS = {"coord-check": coord_check}
