"""What each sub-command does with its parsed options: build the study's spec and RunOptions,
run the study (``studies.run.study.run_study``), print its console lines, return its exit code.
This is the only module below the parsers that sees argparse's Namespace."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

from figures.phase import plot_phase_diagram
from scaling.laws import all_predictions, law_frame
from scaling.rules import split_schemes
from scaling.exponents import NEG_INF, fmt
from scaling.phase import phase_diagram
from scaling.theory import INIT_NAMES, SUPPORTED, first_step_loss_drop, predict
from studies import catalogue
from studies.catalogue import (CoordCheckStudy, FactoryCheckStudy, FinetuneStudy, LawsStudy, LrGridStudy,
                                ValidateStudy)
from studies.factory_check import FactoryCheckSpec
from studies.finetune import FinetuneSpec
from studies.gallery import build_gallery
from studies.lr_grid import LrGridSpec
from studies.lr_laws.config import STUDIES as LAWS_STUDIES
from studies.lr_laws.config import select_configs
from studies.lr_laws.transfer import factory_transfers, select_transfers
from studies.lr_laws.factory import factory_configs
from studies.run.context import RunOptions, resolve_device
from studies.run.spec import CoordCheckSpec, SpecError, toy_model_defaults
from studies.run.study import Study, run_study

MAX_SEEDS = 10_000  # one shard per seed (and width): beyond this a study is a typo, not a plan


def run_options(args, default_out: str) -> RunOptions:
    return RunOptions(out=default_out if args.out is None else args.out, device=args.device, executor=args.executor,
                      workers=args.workers, scheduler=args.scheduler, force=args.force)


def run(study: Study, args, default_out: str = "") -> int:
    """Run a study with the shared options; print what it found; its exit code."""
    report = run_study(study, run_options(args, default_out))
    print(report.console)
    return report.exit_code


def seeds(count: int) -> tuple[int, ...]:
    """Seeds 0..S-1 for --seeds S."""
    if not 1 <= count <= MAX_SEEDS:
        raise SpecError(f"--seeds must be an integer from 1 to {MAX_SEEDS}, got {count}")
    return tuple(range(count))


def check_tolerance(tolerance: float) -> float:
    if not 0 < tolerance < 10:
        raise SpecError(f"--tolerance must be in (0, 10), got {tolerance}")
    return tolerance


def _names(values: list[str] | None) -> list[str] | None:
    return None if values is None else list(values)


# -- coord-check ---------------------------------------------------------------------------------------
def toy_spec(args) -> CoordCheckSpec:
    return CoordCheckSpec(model=args.model, optimizer=args.optimizer, init=args.init,
                          schemes=tuple(split_schemes(args.schemes)), widths=tuple(args.widths),
                          steps=args.steps, seeds=seeds(args.seeds), rank=args.rank,
                          alpha=args.alpha, alpha_scaling=args.alpha_scaling,
                          batch_size=args.batch_size, data=args.data, depth=args.depth,
                          dtype=args.dtype, loss_reduction=args.loss_reduction, teacher=args.teacher,
                          b0_scale=args.b0_scale, detach_lora_input=args.detach_lora_input)


def factory_spec(args) -> FactoryCheckSpec:
    """coord-check --factory: the toy models' options are refused (the factory makes the model)."""
    given = [name for name, default in toy_model_defaults().items()
             if getattr(args, name) != default]
    if given:
        option = "--detach-lora-inputs" if given[0] == "detach_lora_input" else "--" + given[0].replace("_", "-")
        why = "runs train with Adam" if given[0] == "optimizer" else "the model comes from the factory"
        raise SpecError(f"{option} is an option of the built-in toy models; with --factory {why}")
    return FactoryCheckSpec(factory=args.factory, widths=tuple(args.widths), seeds=seeds(args.seeds),
                            schemes=tuple(split_schemes(args.schemes)), steps=args.steps,
                            rank=4 if args.rank is None else args.rank, lr_a=args.lr_a, lr_b=args.lr_b,
                            base_width=args.base_width, seeds_per_shard=args.seeds_per_shard, path=args.train_path)


def coord_check(args) -> int:
    tolerance = check_tolerance(args.tolerance)
    if args.factory is not None:
        return run(FactoryCheckStudy(factory_spec(args), tolerance=tolerance), args, "runs/coord-check")
    return run(CoordCheckStudy(toy_spec(args), tolerance), args, "runs/coord-check")


# -- the other studies -----------------------------------------------------------------------------------
def validate(args) -> int:
    return run(ValidateStudy(quick=args.quick, tolerance=check_tolerance(args.tolerance)), args, "runs/validate")


def lr_grid(args) -> int:
    spec = LrGridSpec(model=args.model, widths=tuple(args.widths), eta_a_range=tuple(args.eta_a_range),
                      eta_b_range=tuple(args.eta_b_range), per_decade=args.per_decade, steps=args.steps,
                      eval_at=tuple(args.eval_at), seeds=seeds(args.seeds), optimizer=args.optimizer,
                      init=args.init, rank=args.rank, batch_size=args.batch_size, data=args.data,
                      test_size=args.test_size)
    return run(LrGridStudy(spec), args, "runs/lr-grid")


def lr_laws(args) -> int:
    tolerance = check_tolerance(args.tolerance)
    targets = tuple(args.target_width or ())
    if any(n <= 0 for n in targets):
        raise SpecError(f"--target-width must be positive widths, got {','.join(map(str, targets))}")
    if args.factory:
        for name in ("models", "scales", "laws", "ranks", "studies", "depth"):
            if getattr(args, name) is not None:
                raise SpecError(f"--{name} does not apply with --factory (the factory makes the model)")
        configs = factory_configs(args.factory, args.quick, _names(args.inits), args.widths, args.seeds,
                                  args.fraction, args.steps, args.range, _names(args.slices),
                                  criteria=_names(args.criteria), detach=args.detach_lora_input)
        transfers = factory_transfers(configs) if args.transfer else []
        study = LawsStudy(configs, ["factory"] + (["transfer"] if transfers else []), args.quick, tolerance,
                          transfers=transfers, target_widths=targets, check_against=args.check_against)
        return run(study, args, "runs/lr-laws-factory")
    if args.transfer:
        raise SpecError("--transfer is for --factory runs; on the toys the transfer test is the 'transfer' study "
                        "(--studies transfer)")
    studies = args.studies if args.studies is not None else list(LAWS_STUDIES)
    configs = select_configs(studies, args.quick, args.models, args.inits, args.scales, args.slices, args.laws,
                             args.widths, args.ranks, args.seeds, args.fraction, args.steps, args.range, args.depth,
                             args.detach_lora_input, _names(args.criteria))
    transfers = select_transfers(studies, args.quick, args.models, args.inits, args.widths, args.seeds)
    study = LawsStudy(configs, studies, args.quick, tolerance, kinds=args.laws, transfers=transfers,
                      target_widths=targets, check_against=args.check_against)
    return run(study, args, "runs/lr-laws-quick" if args.quick else "runs/lr-laws")


def finetune(args) -> int:
    if args.task != "sst2":
        raise SpecError(f"unknown task {args.task!r}; this version runs sst2")
    spec = FinetuneSpec(model=args.model, data=args.data, ratios=tuple(args.ratios), lrs=tuple(args.lrs),
                        steps=args.steps, seeds=seeds(args.seeds), rank=args.rank, alpha=args.alpha,
                        targets=tuple(t for t in args.targets.split(",") if t), batch_size=args.batch_size,
                        max_length=args.max_length, train_limit=args.train_limit or None,
                        dev_limit=args.dev_limit or None, eval_every=args.eval_every,
                        monitor_every=args.monitor_every, bracket=not args.no_bracket,
                        device=str(resolve_device(args.device)))
    return run(FinetuneStudy(spec), args, "runs/finetune")


def study(args) -> int:
    if args.name not in catalogue.NAMED:
        raise SpecError(f"unknown study {args.name!r}; choose from {', '.join(catalogue.NAMED)}")
    return run(catalogue.NAMED[args.name](args.quick), args, f"runs/{args.name}")


def figures(args) -> int:
    """Redraw stored runs' figures and reports from their tables, each into its own directory;
    with --gallery, copy their key figures there too."""
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


# -- theory --------------------------------------------------------------------------------------------
MAX_THEORY_STEP = 10_000  # the recursions settle by scaling.recursion.LATE_STEP (6); a bound keeps time and memory finite


def _check_theory_args(args) -> None:
    """SpecError naming the option for a model, optimizer, init or step the theory does not cover."""
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
    if args.laws:
        return _theory_laws(args)
    _check_theory_args(args)
    if args.phase_diagram:
        out = _figure_path("--out", args.out or f"runs/theory/phase_{args.optimizer}_init{args.init}_{args.model}.png")
        fig = plot_phase_diagram(phase_diagram(args.optimizer, args.init, args.model))
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


COMMANDS = {"coord-check": coord_check, "validate": validate, "lr-grid": lr_grid, "lr-laws": lr_laws,
            "finetune": finetune, "study": study, "figures": figures, "theory": theory}
