"""Pages the documentation build generates (called by docs/hooks.py; runnable on its own).

- ``cli_help(command)``: what ``loraplus-scaling COMMAND --help`` prints, as a code block, so
  every command page lists the options the installed parser really has.
- ``results_page(gallery)``: the results page, every figure of ``figures/gallery`` (and its
  ``course/`` folder) with a caption read from its file name ``<run directory>__<figure>.png``.
  A figure whose name no rule knows still appears, captioned by its name: the page never drops
  one.

``python docs/gen_pages.py OUTDIR`` writes both (``OUTDIR/results.md``, ``OUTDIR/cli/*.txt``)
to look at them without building the site.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path

HELP_COLUMNS = "80"   # argparse wraps to $COLUMNS: fixed, so the pages do not depend on the terminal


def help_text(command: str) -> str:
    """The text ``loraplus-scaling COMMAND --help`` prints, at HELP_COLUMNS columns."""
    from studies.cli import build_parser   # the documented checkout's parser (hooks put it first on sys.path)

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            build_parser().parse_args([command, "--help"])
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    text = out.getvalue().rstrip()
    if not text.startswith("usage:"):
        raise RuntimeError(f"`loraplus-scaling {command} --help` printed no usage")
    return text


def cli_commands() -> list[str]:
    """The subcommands the installed parser has (what ``loraplus-scaling --help`` lists)."""
    from studies.cli import build_parser

    parser = build_parser()
    return [name for action in parser._subparsers._group_actions for name in action.choices]


def cli_help(command: str) -> str:
    """A page's options block: the help text in a fenced block, with where it comes from."""
    return (f"The options, as `loraplus-scaling {command} --help` prints them (generated when the site "
            f"is built, so they match the installed version):\n\n"
            f"```text\n$ loraplus-scaling {command} --help\n{help_text(command)}\n```\n")


# -- the results page ---------------------------------------------------------------------------------
# Each run directory of the gallery: (section title, the command that made it, what it shows).
RUNS = {
    "lr-laws": ("Learning-rate laws on the toy models", "loraplus-scaling lr-laws --out runs/lr-laws",
                "Edges of the trainable region against width, the corner, transfer plots and the ratio profile."),
    "lr-laws-transfer": ("The transfer test on the toy models", "loraplus-scaling lr-laws --studies transfer "
                         "--out runs/lr-laws-transfer", "Rates tuned at n = 64 moved to wider widths by each rule: "
                         "the loss against rates retuned there."),
    "lr-laws-bert": ("Learning-rate laws on the BERT family", "loraplus-scaling lr-laws --factory bert "
                     "--out runs/lr-laws-bert", "Hidden 32 .. 512, 8 seeds, the median over seeds."),
    "lr-laws-bert-transfer": ("The transfer test on the BERT family", "loraplus-scaling lr-laws --factory bert "
                              "--widths 32,64,128 --seeds 4 --slices one-rate --transfer --out runs/lr-laws-bert-transfer",
                              "Rates tuned at hidden 32 moved to 64 and 128 by each rule."),
    "lr-laws-example-mlp": ("Learning-rate laws on the example MLP factory",
                            "loraplus-scaling lr-laws --factory docs/examples/tiny_mlp_factory.py:make --widths "
                            "64,128,256,512 --seeds 4 --transfer --target-width 1024,2048 --out runs/lr-laws-example-mlp",
                            "Two LoRA layers in series, a mean-field readout: the stacked laws."),
    "lr-laws-example-conv": ("Learning-rate laws on the example conv net",
                             "loraplus-scaling lr-laws --factory docs/examples/conv_factory.py:make --widths "
                             "32,64,128,256 --seeds 4 --out runs/lr-laws-example-conv",
                             "LoRA on two stacked convolutions, a mean-field readout."),
    "lr-laws-example-prenorm": ("Learning-rate laws on the example pre-LayerNorm block",
                                "loraplus-scaling lr-laws --factory docs/examples/prenorm_block_factory.py:make "
                                "--widths 64,128,256,512 --seeds 4 --criteria best0.9@T10,best0.8@T10,f1@T10 "
                                "--out runs/lr-laws-example-prenorm",
                                "LoRA on query, value and fc1, a standard readout."),
    "fig2": ("The paper's Fig. 2 grid", "loraplus-scaling lr-grid --out runs/fig2",
             "paper-mlp at n = 100, 43 x 43 rate pairs, 3 seeds, full-batch gradient descent."),
    "sweep-paper-mlp": ("lambda*(n) on the paper's MLP",
                        "loraplus-scaling lr-grid --model paper-mlp --widths 64,128,256,512,1024,2048 "
                        "--per-decade 4 --eta-a-range 1e-4:10 --eta-b-range 1e-4:10 --steps 200 --eval-at 10,200 "
                        "--out runs/sweep-paper-mlp",
                        "The loss-optimal pair and its ratio against width under gradient descent."),
    "sweep-linear": ("lambda*(n) on the linear model under Adam",
                     "loraplus-scaling lr-grid --model linear --optimizer adam --data fresh "
                     "--widths 64,128,256,512,1024,2048,4096 --eta-a-range 1e-5:1 --eta-b-range 1e-5:1 "
                     "--per-decade 4 --steps 100 --eval-at 10,100 --out runs/sweep-linear",
                     "Under Adam the near-optimal pairs lie on a ridge: lambda* is not identified."),
    "init": ("Init[1] against Init[2] against both zero", "loraplus-scaling study init --out runs/init", ""),
    "rank": ("Rank: alpha/r against alpha/sqrt(r)", "loraplus-scaling study rank --out runs/rank", ""),
    "contribution": ("A's share of the loss decrease", "loraplus-scaling study contribution --out runs/contribution", ""),
    "bert-width": ("Coordinate check of a BERT-style encoder", "loraplus-scaling study bert-width --out runs/bert-width", ""),
    "gpt2-width": ("Coordinate check of a GPT-2-style decoder", "loraplus-scaling study gpt2-width --out runs/gpt2-width", ""),
    "finetune": ("LoRA against LoRA+ on MiniLM and SST-2", "loraplus-scaling finetune --out runs/finetune",
                 "Best learning rate against best, per ratio; the monitor's deltas per layer."),
}
COURSE = ("The course's figures (full settings)",
          "COURSE_FIGURES=figures/gallery/course python docs/course/lessonN_....py",
          "Each lesson's figure at its full settings (the site's lesson pages show the quick ones).")

MODELS = {"linear": "linear (n x n LoRA layer)", "mlp": "mlp", "toy": "toy", "paper-mlp": "paper-mlp",
          "docs_examples_tiny_mlp_factorypy_make": "the example MLP factory",
          "docs_examples_conv_factorypy_make": "the example conv net",
          "docs_examples_prenorm_block_factorypy_make": "the example pre-LayerNorm block",
          "paper-mlp-base": "paper-mlp with a frozen W between A and B", "bert": "BERT family", "gpt2": "GPT-2 family"}
INITS = {"init1": "Init[1]", "init2": "Init[2]", "initpaper": "the paper's printed init"}
OPTIMIZERS = {"adam": "Adam", "sgd": "gradient descent"}
SCALES = {"r": "scale alpha/r", "sqrt-r": "scale alpha/sqrt(r)", "none": "scale alpha"}
EXTRAS = {"teacher_b0-aligned": "control: teacher inside span(B0)", "B0_x_025": "control: B0 x 0.25"}
KINDS = {"edges": "Edges of the trainable region and the corner against width",
         "transfer": "Transfer plot: loss against the rate rescaled by its edge, every width",
         "profile": "Ratio profile: the best loss over eta_A at each ratio, every width",
         "fig2": "The Fig. 2 grid under one reading of the paper",
         "transfer_gaps": "Transfer test: each rule's loss against the rates retuned at each width"}
_SETTING = re.compile(r"^(?P<kind>edges|transfer_gaps|transfer|profile)_(?P<model>bert|gpt2|linear|mlp|toy|paper-mlp|"
                      r"docs_examples_[a-z_]+py_make)_"
                      r"(?P<opt>adam|sgd)_(?P<init>init1|init2|initpaper)_(?P<scale>r|sqrt-r|none)(?:_(?P<extra>.+))?$")
_FIG2 = re.compile(r"^fig2_(?P<opt>adam|sgd)_(?P<model>[a-z0-9-]+?)_(?P<init>init1|init2|initpaper)$")
_HEATMAP = re.compile(r"^heatmap_n(?P<n>\d+)_t(?P<t>\d+)_(?P<split>train|test)$")
_LAMBDA = re.compile(r"^lambda_t(?P<t>\d+)_(?P<split>train|test)$")


def caption(run: str, figure: str) -> str:
    """A caption for the gallery figure ``<run>__<figure>.png``; the bare name when no rule fits."""
    if m := _SETTING.match(figure):
        parts = [MODELS[m["model"]], OPTIMIZERS[m["opt"]], INITS[m["init"]], SCALES[m["scale"]]]
        if m["extra"]:
            parts.append(EXTRAS.get(m["extra"], m["extra"]))
        return f"{KINDS[m['kind']]}: {', '.join(parts)}."
    if m := _FIG2.match(figure):
        return f"{KINDS['fig2']}: {MODELS.get(m['model'], m['model'])}, {OPTIMIZERS[m['opt']]}, {INITS[m['init']]}."
    if m := _HEATMAP.match(figure):
        return f"Loss heatmap over (eta_A, eta_B) at n = {m['n']}, step {m['t']}, {m['split']} loss."
    if m := _LAMBDA.match(figure):
        return f"The optimum eta_A*, eta_B* and lambda* against width, step {m['t']}, {m['split']} loss."
    named = {"curves_n100": "The best pair's and the best equal-rate pair's loss curves at n = 100.",
             "accuracy_vs_ratio": "Best dev accuracy against the ratio lambda = eta_B / eta_A.",
             "curves": "Dev accuracy curves, each ratio at its best learning rate.",
             "steps_to_target": "Steps to the target accuracy, per ratio.",
             "monitor": "The feature-learning monitor: delta1 and delta2 per LoRA layer during the fine-tune.",
             "init": "Loss, A-side and B-side updates under the three initialisations.",
             "rank": "The feature update against rank under the two LoRA scalings.",
             "contribution": "A's share of the first-order loss decrease against width.",
             "bert_width": "Coordinate check: the deltas of each LoRA layer against hidden size.",
             "gpt2_width": "Coordinate check: the deltas of each LoRA layer against hidden size."}
    if figure in named:
        return named[figure]
    if run == "course" and (m := re.match(r"^lesson(\d+)_(.+)$", figure)):
        return f"Lesson {m[1]}: {m[2].replace('_', ' ')}."
    return figure.replace("_", " ")


def results_page(gallery: Path, image_dir: str = "results") -> tuple[str, dict[str, Path]]:
    """(markdown of the results page, {site path of each image: its file in the gallery})."""
    groups: dict[str, list[Path]] = {}
    for png in sorted(gallery.glob("*.png")):
        run, _, _ = png.stem.partition("__")
        groups.setdefault(run, []).append(png)
    course = sorted((gallery / "course").glob("*.png"))
    lines = ["# Results: the gallery", "",
             "Every figure in the repository's gallery (`figures/gallery`), grouped by the run that made it. "
             "This page is generated from the gallery when the site is built: a figure added there appears "
             "here. The numbers behind each figure, and what they mean, are on the command pages; the "
             "figures are measurements made on the project's 2-core CPU machine, drawn from stored runs "
             "(`loraplus-scaling figures --from runs --gallery figures/gallery` refreshes them).", ""]
    images: dict[str, Path] = {}
    order = [run for run in RUNS if run in groups] + sorted(run for run in groups if run not in RUNS)
    sections = [(run, RUNS.get(run, (run, None, "")), groups[run]) for run in order]
    if course:
        sections.append(("course", COURSE, course))
    for run, (title, command, what), pngs in sections:
        lines += [f"## {title}", ""]
        if what:
            lines += [what, ""]
        if command:
            lines += ["```bash", command, "```", ""]
        for png in pngs:
            figure = png.stem.partition("__")[2] if run != "course" else png.stem
            uri = f"{image_dir}/{run}/{png.name}"
            images[uri] = png
            text = caption(run, figure)
            lines += [f"<figure markdown=\"span\">", f"  ![{text}]({uri}){{ loading=lazy }}",
                      f"  <figcaption>{text} <code>{png.relative_to(gallery.parent.parent)}</code></figcaption>",
                      "</figure>", ""]
    return "\n".join(lines), images


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python docs/gen_pages.py OUTDIR")
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    out = Path(sys.argv[1])
    (out / "cli").mkdir(parents=True, exist_ok=True)
    page, _ = results_page(repo / "figures" / "gallery")
    (out / "results.md").write_text(page)
    commands = cli_commands()
    for name in commands:
        (out / "cli" / f"{name}.txt").write_text(help_text(name) + "\n")
    print(f"wrote {out / 'results.md'} and {len(commands)} help texts in {out / 'cli'}")
