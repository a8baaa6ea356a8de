"""What each sub-command does, once its arguments are parsed."""
from __future__ import annotations

import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from scaling.rules import split_schemes
from studies.run.runner import resolve_device
from studies.run.spec import CoordCheckSpec, SpecError
from studies.run.store import metadata, prepare_out_dir, write_csv, write_json, write_text

SUMMARY_METRICS = ("delta1", "delta2", "delta3", "z_a", "dz_b")


def _open_study(args, device, out_path, spec: dict):
    """A sharded study's start: its executor (--executor auto resolved), its --out directory
    (created) and the shard store there (refusing another spec's shards unless --force).
    Returns (executor, out, store)."""
    from studies.run.shards import ShardStore, resolve_executor
    if args.workers < 1:
        raise SpecError(f"--workers must be at least 1, got {args.workers}")
    executor = resolve_executor(args.executor, device)
    if args.scheduler and executor != "dask":
        raise SpecError(f"--scheduler is the Dask scheduler's address: give it with --executor dask "
                        f"(this run's executor: {executor})")
    out = prepare_out_dir(out_path)
    return executor, out, ShardStore(out, spec, force=args.force)


MAX_SEEDS = 10_000  # one shard per seed (and width): beyond this a study is a typo, not a plan


def _seeds(args) -> tuple[int, ...]:
    """Seeds 0..S-1 for --seeds S."""
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise SpecError(f"--seeds must be an integer from 1 to {MAX_SEEDS}, got {args.seeds}")
    return tuple(range(args.seeds))


def _spec_from_args(args) -> CoordCheckSpec:
    return CoordCheckSpec(model=args.model, optimizer=args.optimizer, init=args.init,
                          schemes=tuple(split_schemes(args.schemes)), widths=tuple(args.widths),
                          steps=args.steps, seeds=_seeds(args), rank=args.rank,
                          alpha=args.alpha, alpha_scaling=args.alpha_scaling,
                          batch_size=args.batch_size, data=args.data, depth=args.depth,
                          dtype=args.dtype, loss_reduction=args.loss_reduction, teacher=args.teacher,
                          b0_scale=args.b0_scale, detach_lora_input=args.detach_lora_inputs)


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
    from studies.run.runner import coord_check_shards
    from studies.run.shards import run_shards

    if args.factory is not None:  # a user's model: studies.factory_check
        from studies.factory_check import coord_check_command
        return coord_check_command(args)
    spec = _spec_from_args(args)
    device = resolve_device(args.device)
    executor, out, store = _open_study(args, device, args.out,
                                       {"study": "coord-check", **spec.to_dict(), "device": str(device)})
    shards = coord_check_shards(spec, device)
    skipped = len(store.done)
    start = time.perf_counter()
    run_shards(shards, store, executor, args.workers, args.scheduler)
    results = store.load([sh.key for sh in shards])
    wall = time.perf_counter() - start
    write_csv(results, out / "results.csv")
    write_json(metadata(spec.to_dict(), str(device), wall, executor=executor, resumed_shards=skipped),
               out / "meta.json")
    table = slope_summary(results, spec.steps)
    n_div = int((results.metric == "diverged").sum())
    print(f"coord-check {spec.model} / {spec.optimizer} / init {results.init.iloc[0]}: "
          f"{len(spec.widths)} widths x {len(spec.seeds)} seeds x {len(spec.schemes)} schemes, "
          f"{spec.steps} steps in {wall:.1f}s ({skipped} of {len(shards)} shards already done); "
          f"{n_div} diverged runs")
    print(f"log-log slope against width at step {spec.steps}:")
    print(table.round(2).to_string() if not table.empty else "  (not enough widths to fit)")
    print(f"wrote {out / 'results.csv'} and {out / 'meta.json'}")
    return 0


COMMANDS = {"coord-check": coord_check}


@contextmanager
def _phase(what: str):
    """Say on stderr what a phase of a long command is doing, then how long it took."""
    print(f"{what} ...", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f" {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def validate(args) -> int:
    """Run the fixed suite, fit, judge, write report/exponents/results/figures; exit 1 on a FAIL."""
    from dataclasses import asdict

    from scaling.verdicts import compare, compare_first_step
    from studies.reports.validate import draw_figures, summary_text, write_report
    from studies.run.store import git_revision
    from studies.validate import FULL, QUICK, b0_control_table, overshoot_table, progress_table, run_suite

    if not 0 < args.tolerance < 10:
        raise SpecError(f"--tolerance must be in (0, 10), got {args.tolerance}")
    settings = QUICK if args.quick else FULL
    device = resolve_device(args.device)
    executor, out, store = _open_study(args, device, args.out,
                                       {"study": "validate", **asdict(settings), "device": str(device)})
    skipped = len(store.done)
    start = time.perf_counter()
    results, control, b0_control = run_suite(settings, device, store, executor, args.workers, args.scheduler)
    with _phase(f"validate: fitting and judging the exponents ({len(results):,} measurements)"):
        exponents = pd.concat([compare(results, settings.verdict_steps(), tol=args.tolerance),
                               compare_first_step(results, tol=args.tolerance)], ignore_index=True)
        overshoot = overshoot_table(results, control, settings.verdict_steps())
        progress = progress_table(results, sorted({1, 2, settings.steps // 2, settings.steps}))
        b0_table = b0_control_table(exponents, b0_control, settings.verdict_steps(), args.tolerance)
    with _phase("validate: drawing the figures"):
        (out / "figures").mkdir(exist_ok=True)
        figures = draw_figures(results, exponents, settings.steps, out / "figures")
    with _phase("validate: writing the tables and the report"):
        wall = time.perf_counter() - start
        meta = {"settings": "quick" if args.quick else "full", "device": str(device), "wall_time_s": wall,
                "git_revision": git_revision(), "executor": executor, "resumed_shards": skipped}
        write_csv(results, out / "results.csv")
        write_csv(exponents, out / "exponents.csv")
        write_csv(control, out / "control_results.csv")
        write_csv(b0_control, out / "b0_control_results.csv")
        write_json(metadata({"suite": meta["settings"], "tolerance": args.tolerance,
                             "widths": settings.widths, "seeds": settings.seeds, "steps": settings.steps},
                            str(device), wall, executor=executor, resumed_shards=skipped), out / "meta.json")
        report = write_report(exponents, meta, figures, args.tolerance, overshoot, progress, b0_table)
    with _phase("validate: one learning-rate law, the LoRA+ corner on linear under Adam (lr-laws)"):
        from studies.lr_laws import validate_corner
        corner, section = validate_corner(device, out, executor, args.workers, args.scheduler, args.tolerance)
        write_csv(corner, out / "lr_laws.csv")
        head, sep, appendices = report.partition("## Appendix A")  # the law before the long listings
        write_text(head + section + "\n" + sep + appendices, out / "report.md")
    counts = pd.concat([exponents.verdict, corner.verdict]).value_counts()
    print(f"validate, {meta['settings']} suite, {time.perf_counter() - start:.0f} s:\n{summary_text(exponents)}")
    if "verdict_straight" in exponents:  # before the corrections to scaling
        straight = exponents.verdict_straight.value_counts()
        print(f"(straight log-log slopes alone: {straight.get('PASS', 0)} PASS, {straight.get('FAIL', 0)} FAIL, "
              f"{straight.get('INCONCLUSIVE', 0)} INCONCLUSIVE)")
    print(corner[["law", "predicted", "slope", "lo", "hi", "verdict"]].to_string(
        index=False, float_format="{:+.2f}".format))
    print(f"report: {out / 'report.md'} (tables per setting, controls, figures; every check in exponents.csv)")
    return 1 if counts.get("FAIL", 0) else 0


MAX_THEORY_STEP = 10**6  # the recursions settle by scaling.theory.LATE_STEP (6); a bound keeps memory finite


def _check_theory_args(args) -> None:
    """SpecError naming the option for a model, optimizer, init or step the theory does not cover."""
    from scaling.theory import INIT_NAMES, SUPPORTED

    models, optimizers = sorted({m for _, m in SUPPORTED}), sorted({o for o, _ in SUPPORTED})
    if args.model not in models:
        raise SpecError(f"--model {args.model!r}: the theory covers {', '.join(models)}")
    if args.optimizer not in optimizers:
        raise SpecError(f"--optimizer {args.optimizer!r}: the theory covers {', '.join(optimizers)}")
    if (args.optimizer, args.model) not in SUPPORTED:
        raise SpecError(f"--optimizer {args.optimizer} --model {args.model}: SGD exponents depend on the loss "
                        "normalisation and readout, and are derived for the toy model only")
    if args.init not in INIT_NAMES:
        raise SpecError(f"--init {args.init!r}: the theory covers {', '.join(INIT_NAMES)}")
    if not 1 <= args.step <= MAX_THEORY_STEP:
        raise SpecError(f"--step must be between 1 and {MAX_THEORY_STEP}, got {args.step}")


def _figure_path(option: str, path: str) -> Path:
    """A figure file to write: its suffix one matplotlib writes (.png, .pdf, .svg), not a
    directory; its parent directory created. SpecError naming ``option`` otherwise."""
    out = Path(path)
    if out.is_dir():
        raise SpecError(f"{option} {path} is a directory; give a file such as {out / 'phase.png'}")
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise SpecError(f"{option} {path}: give a file ending in .png, .pdf or .svg")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SpecError(f"{option} {path}: cannot create {out.parent} ({err.strerror})") from None
    return out


def theory(args) -> int:
    """Print predicted exponents (and the derivation, or the phase diagram)."""
    import json

    from scaling.theory import NEG_INF, first_step_loss_drop, fmt, predict
    if args.laws:
        return _theory_laws(args)
    _check_theory_args(args)
    if args.phase_diagram:
        import matplotlib.pyplot as plt

        from figures.phase import plot_phase_diagram
        out = _figure_path("--out", args.out or f"runs/theory/phase_{args.optimizer}_init{args.init}_{args.model}.png")
        fig = plot_phase_diagram(args.optimizer, args.init, args.model)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        print(f"wrote {out}")
        return 0
    if args.out:
        raise SpecError("--out is the phase diagram's file: give it with --phase-diagram")
    pred = predict(args.model, args.optimizer, args.init, args.gA, args.gB, args.step)
    # The first step's loss decrease (the Init[2] "B0 path"), where it is derived.
    first = first_step_loss_drop(args.model, args.optimizer, args.init, args.gA, args.gB)
    if args.json:
        d = pred.to_dict()
        if first is not None:
            d["loss_drop_step1"] = None if first.exponent == NEG_INF else first.exponent
        print(json.dumps(d, indent=2))
    elif args.latex:
        print(pred.to_latex())
    elif args.markdown:
        print(pred.to_markdown())
    else:
        print(pred.to_text(explain=args.explain))
        if first is not None:
            print(f"  first step's loss decrease through the layer: gamma[loss_drop(1)] = {fmt(first.exponent)}")
            if args.explain:
                print("\n".join(f"  {s.quantity:<16} = {s.expression:<34} gamma = {fmt(s.exponent):<6} {s.reason}"
                                for s in first.derivation))
    return 0


def _theory_laws(args) -> int:
    """theory --laws: the law table (or every derivation) for the chosen settings."""
    import json

    from scaling.laws import all_predictions, law_frame
    if args.latex or args.phase_diagram:
        raise SpecError("--laws prints text, --explain, --json or --markdown (not --latex or --phase-diagram)")
    preds = all_predictions(*(tuple(v.strip() for v in a.split(",") if v.strip()) for a in
                              (args.model, args.optimizer, args.init, args.alpha_scaling)),
                            variable=args.variable, b0_variance=args.b0_variance)
    if args.json:
        print(json.dumps([p.to_dict() for p in preds], indent=2))
        return 0
    if args.explain:
        print("\n\n".join(p.to_text(explain=True) for p in preds))
        return 0
    table = law_frame(preds, short=True)
    print(f"Learning-rate scaling laws, exponents in {args.variable} ("
          + ("r and alpha fixed" if args.variable == "n" else "n -> inf first, then r") + "). An edge is the largest rate "
          "on its slice whose output stays O(1); the corner is eta_B,edge / eta_A,edge; --explain derives each row.")
    print(table.to_markdown(index=False) if args.markdown else table.to_string(index=False))
    return 0


def lr_grid(args) -> int:
    """Train the grid at every width, then write grid/curves/optima tables, figures, report."""
    from studies.lr_grid import LrGridSpec, curve_frame, run_lr_grid
    from studies.reports.lr_grid import write_outputs

    spec = LrGridSpec(model=args.model, widths=tuple(args.widths), eta_a_range=tuple(args.eta_a_range),
                      eta_b_range=tuple(args.eta_b_range), per_decade=args.per_decade, steps=args.steps,
                      eval_at=tuple(args.eval_at), seeds=_seeds(args), optimizer=args.optimizer,
                      init=args.init, rank=args.rank, batch_size=args.batch_size, data=args.data,
                      test_size=args.test_size)
    device = resolve_device(args.device)
    executor, out, store = _open_study(args, device, args.out,
                                       {"study": "lr-grid", **spec.to_dict(), "device": str(device)})
    skipped = len(store.done)
    start = time.perf_counter()
    grid, curves = run_lr_grid(spec, device, store, executor, args.workers, args.scheduler)
    wall = time.perf_counter() - start
    curve_table = curve_frame(spec, curves, grid)
    meta = metadata(spec.to_dict(), str(device), wall, study="lr-grid", init=str(grid.init.iloc[0]),
                    pairs=len(spec.pairs()[0]), executor=executor, resumed_shards=skipped)
    write_outputs(out, grid, curve_table, meta)
    n_div = int(grid[grid.step == max(spec.eval_at)].groupby(["width", "eta_a", "eta_b", "seed"]).diverged.any().sum())
    print(f"lr-grid {spec.model} / {spec.optimizer}: {len(spec.pairs()[0])} pairs x {len(spec.seeds)} seeds x "
          f"{len(spec.widths)} widths, {spec.steps} steps in {wall:.1f}s ({skipped} shards already done); "
          f"{n_div} runs diverged")
    print((out / "report.md").read_text().split("## Figures")[0])
    return 0


def figures(args) -> int:
    """Redraw stored runs' figures and reports from their tables, each into its own directory;
    with --gallery, copy their key figures there too."""
    from pathlib import Path

    from studies.reports.gallery import build_gallery

    source = Path(args.source)
    if not source.exists():
        raise SpecError(f"--from {source} does not exist")
    gallery = Path(args.gallery) if args.gallery else None
    if gallery is not None and gallery.exists() and not gallery.is_dir():
        raise SpecError(f"--gallery {gallery} exists and is not a directory")
    copied = build_gallery(source, gallery)
    if gallery is not None:
        print(f"copied {len(copied)} files to {gallery}")
    return 0


def bench(args) -> int:
    """Run the benchmark suite; print the table and write bench.json."""
    import json

    out = prepare_out_dir(args.out)
    try:
        from benchmarks.bench_suite import format_report, run_suite
    except ImportError as err:
        raise SpecError(f"the benchmarks are not installed with this copy ({err}); run from the repository") from None
    report = run_suite(args.quick)
    print(format_report(report))
    write_text(json.dumps(report, indent=2, default=str) + "\n", out / "bench.json")
    print(f"wrote {out / 'bench.json'}")
    return 0


def finetune(args) -> int:
    """LoRA vs LoRA+ fine-tunes over (ratio, lr, seed); tables, figures and report."""
    from studies.finetune import FinetuneSpec, prepared, run_finetune
    from studies.reports.finetune import write_outputs

    if args.task != "sst2":
        raise SpecError(f"unknown task {args.task!r}; this version runs sst2")
    spec = FinetuneSpec(model=args.model, data=args.data, ratios=tuple(args.ratios), lrs=tuple(args.lrs),
                        steps=args.steps, seeds=_seeds(args), rank=args.rank, alpha=args.alpha,
                        targets=tuple(t for t in args.targets.split(",") if t), batch_size=args.batch_size,
                        max_length=args.max_length, train_limit=args.train_limit or None,
                        dev_limit=args.dev_limit or None, eval_every=args.eval_every,
                        monitor_every=args.monitor_every, bracket=not args.no_bracket,
                        device=str(resolve_device(args.device)))
    prepared(spec)  # a bad --model or --data fails here, before --out is touched (run_finetune reuses it)
    executor, out, store = _open_study(args, spec.device, args.out, {"study": "finetune", **spec.to_dict()})
    skipped = len(store.done)

    def progress(ratio, lr, seed, last):
        print(f"  ratio {ratio:g} lr {lr:.3g} seed {seed}: step {int(last['step'])}, dev acc {last['dev_acc']:.4f}",
              file=sys.stderr, flush=True)

    evals, monitor, wall, sizes = run_finetune(spec, store, executor, args.workers, args.scheduler, progress)
    meta = metadata(spec.to_dict(), spec.device, wall, study="finetune", executor=executor, workers=args.workers,
                    resumed_shards=skipped, **sizes)
    write_outputs(out, evals, monitor, meta)
    print((out / "report.md").read_text().split("## Figures")[0])
    return 0


def study(args) -> int:
    """Run a named study; write results, summary, figure, report."""
    from studies.companions import STUDIES, run_study, variants, write_outputs

    from studies import family_width
    if args.name in family_width.STUDIES:  # real architectures through the factory path
        return family_width.run(args)
    if args.name not in STUDIES:
        raise SpecError(f"unknown study {args.name!r}; choose from {', '.join(STUDIES + tuple(family_width.STUDIES))}")
    specs = [v.spec.to_dict() | {"variant": v.label} for v in variants(args.name, args.quick)]
    device = resolve_device(args.device)
    executor, out, store = _open_study(args, device, args.out or f"runs/{args.name}",
                                       {"study": args.name, "variants": specs, "device": str(device)})
    skipped = len(store.done)
    start = time.perf_counter()
    results = run_study(args.name, args.quick, device, store, executor, args.workers, args.scheduler)
    wall = time.perf_counter() - start
    write_outputs(out, args.name, results, metadata({"variants": specs, "quick": args.quick}, str(device), wall,
                                                     study=args.name, executor=executor, resumed_shards=skipped))
    print(f"study {args.name}: {len(specs)} coordinate checks in {wall:.1f}s ({skipped} shards already done)")
    print((out / "report.md").read_text().split("![")[0])
    return 0


def lr_laws(args) -> int:
    """Measure the learning-rate laws (studies.lr_laws), judge them, write tables, figures, report."""
    from studies.lr_laws import LAWS, dead_start, run_fig2, run_laws, select_configs
    from studies.reports.lr_laws import found_paragraph, render

    def names(text):
        return None if text is None else [v.strip() for v in text.split(",") if v.strip()]

    if not 0 < args.tolerance < 10:
        raise SpecError(f"--tolerance must be in (0, 10), got {args.tolerance}")
    studies = names(args.studies) or []
    if args.factory:
        from studies.factory_check import FactoryCheckSpec, check_factory
        from studies.factory_laws import factory_configs, run_factory_laws
        studies = ["factory"]
        for name in ("models", "scales", "laws", "ranks", "depth"):
            if getattr(args, name) is not None:
                raise SpecError(f"--{name} does not apply with --factory (the factory makes the model)")
        configs = factory_configs(names(args.factory), args.quick, names(args.inits), args.widths, args.seeds,
                                  args.fraction, args.steps, args.range, names(args.slices),
                                  detach=args.detach_lora_inputs)
    else:
        configs = select_configs(studies, args.quick, names(args.models), names(args.inits), names(args.scales),
                                 names(args.slices), names(args.laws), args.widths, args.ranks, args.seeds,
                                 args.fraction, args.steps, args.range, args.depth, args.detach_lora_inputs)
    device = resolve_device(args.device)
    if args.factory:
        with _phase("lr-laws: checking the factories at every width"):
            for ref in dict.fromkeys(c.factory for c in configs):
                c = next(c for c in configs if c.factory == ref)
                check_factory(FactoryCheckSpec(factory=ref, widths=c.widths, seeds=c.seeds[:1], rank=c.ranks[0]),
                              device)
    spec = {"study": "lr-laws", "studies": studies, "quick": args.quick, "device": str(device),
            "configs": [c.to_dict() for c in configs]}
    default_out = "runs/lr-laws-factory" if args.factory else ("runs/lr-laws-quick" if args.quick else "runs/lr-laws")
    executor, out, store = _open_study(args, device, args.out or default_out, spec)
    skipped = len(store.done)
    start = time.perf_counter()
    if args.factory:
        runs = run_factory_laws(configs, device, store, executor, args.workers, args.scheduler)
    else:
        runs = run_laws(configs, device, store, executor, args.workers, args.scheduler) if configs else pd.DataFrame()
    fig2 = run_fig2(device, store, executor, args.workers, args.scheduler, args.quick) if "fig2" in studies else None
    dead = dead_start() if "fig2" in studies else None
    wall = time.perf_counter() - start
    cpu = float(runs.groupby(["config", "width", "rank", "seed"]).cpu_s.first().sum()) if len(runs) else 0.0
    meta = metadata(spec, str(device), wall, study="lr-laws", executor=executor, workers=args.workers, resumed_shards=skipped,
                    cpu_s=cpu, studies=studies, quick=args.quick, tolerance=args.tolerance)
    write_csv(runs, out / "runs.csv")
    if fig2 is not None:
        write_csv(fig2, out / "fig2_grid.csv")
    write_json(meta, out / "meta.json")
    with _phase("lr-laws: fitting, judging and drawing"):
        tables = render(out, runs, configs, meta, fig2, dead, args.tolerance, kinds=names(args.laws) or LAWS)
    laws = tables["laws"]
    print(textwrap.fill(found_paragraph((out / "report.md").read_text()), 100) + "\n")
    if len(laws):
        print(laws[["law", "config", "predicted", "slope", "lo", "hi", "verdict"]].to_string(
            index=False, float_format=lambda v: f"{v:+.2f}"))
    counts = laws.verdict.value_counts() if len(laws) else pd.Series(dtype=int)
    print(f"{counts.get('PASS', 0)} PASS, {counts.get('FAIL', 0)} FAIL, {counts.get('INCONCLUSIVE', 0)} INCONCLUSIVE "
          f"in {wall:.0f}s ({skipped} shards already done); report: {out / 'report.md'}")
    return 0


COMMANDS.update({"lr-laws": lr_laws, "validate": validate, "theory": theory, "lr-grid": lr_grid, "figures": figures, "study": study,
                 "finetune": finetune, "bench": bench})
