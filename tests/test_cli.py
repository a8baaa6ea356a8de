"""The command line: bad input is one ``error:`` line and exit code 2; a good run writes tidy files."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scaling.rules import BUILTIN_SCHEMES
from studies.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "toy", "--widths", "8,16", "--steps", "1", "--seeds", "1", "--device", "cpu"]

BAD_INPUTS = {
    "unknown model": ["--model", "resnet"],
    "unknown optimizer": ["--optimizer", "lion"],
    "unknown scheme": ["--schemes", "loraplus,lora-fast"],
    "width zero": ["--widths", "0,128"],
    "negative width": ["--widths", "-5"],
    "no widths": ["--widths", ""],
    "non-integer width": ["--widths", "16,3.5"],
    "rank above width": ["--model", "linear", "--widths", "16,32", "--rank", "20"],
    "rank zero": ["--rank", "0"],
    "negative steps": ["--steps", "-3"],
    "zero steps": ["--steps", "0"],
    "zero seeds": ["--seeds", "0"],
    "negative seeds": ["--seeds", "-2"],
    "custom scheme missing value": ["--schemes", "gA=-1,gB"],
    "custom scheme missing gB": ["--schemes", "gA=-1,cA=0.5"],
    "custom scheme unknown key": ["--schemes", "gA=-1,gB=0,lr=3"],
    "custom scheme not a number": ["--schemes", "gA=minus-one,gB=0"],
    "custom scheme infinite": ["--schemes", "gA=inf,gB=0"],
    "custom scheme non-positive constant": ["--schemes", "gA=-1,gB=0,cA=0"],
    "unknown init": ["--init", "3"],
    "unknown dtype": ["--dtype", "float16"],
    "bad alpha scaling": ["--alpha-scaling", "r2"],
    "bad data": ["--data", "streaming"],
    "bad loss reduction": ["--loss-reduction", "max"],
    "bad depth": ["--model", "mlp", "--depth", "0"],
    "bad batch size": ["--batch-size", "0"],
    "unknown device": ["--device", "tpu"],
    "unknown option": ["--colour", "red"],
    "non-positive alpha": ["--alpha", "0"],
    "non-positive b0 scale": ["--b0-scale", "0"],
    "infinite b0 scale": ["--b0-scale", "inf"],
    "stacking control on one layer": ["--model", "mlp", "--depth", "1", "--detach-lora-inputs"],
    "stacking control on linear": ["--model", "linear", "--detach-lora-inputs"],
}


def _assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {err!r}"
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("args", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_exit_2(args, capsys, tmp_path):
    out = tmp_path / "out"
    code = main(["coord-check", *args, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    _assert_one_error_line(captured.err)
    assert not out.exists(), "nothing may be written before the inputs are validated"


@pytest.mark.parametrize("args,expected", [
    (["--model", "resnet"], "resnet"),
    (["--widths", "0,128"], "width"),
    (["--widths", "-5"], "-5"),
    (["--model", "linear", "--widths", "16,32", "--rank", "20"], "rank"),
    (["--steps", "-3"], "steps"),
    (["--seeds", "0"], "seeds"),
    (["--schemes", "gA=-1,gB"], "gB"),
    (["--schemes", "lora-fast"], "lora-fast"),
])
def test_error_message_names_the_problem(args, expected, capsys, tmp_path):
    assert main(["coord-check", *args, "--out", str(tmp_path / "o")]) == 2
    assert expected in capsys.readouterr().err


def test_out_is_an_existing_file(capsys, tmp_path):
    target = tmp_path / "results"
    target.write_text("precious\n")
    code = main(["coord-check", *TINY, "--out", str(target)])
    captured = capsys.readouterr()
    assert code == 2
    _assert_one_error_line(captured.err)
    assert target.read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path)) == ["results"]


@pytest.mark.parametrize("alpha", ["nan", "inf"])
def test_non_finite_alpha_is_a_usage_error(alpha, capsys, tmp_path):
    """A non-finite --alpha makes every LoRA update NaN; it must be refused up front like
    every other bad number (it currently crashes in the SVD of scaling.measure.update_norms
    with a traceback and exit code 1)."""
    out = tmp_path / "out"
    code = main(["coord-check", *TINY, "--schemes", "loraplus", "--alpha", alpha, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    _assert_one_error_line(captured.err)
    assert not out.exists()


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    _assert_one_error_line(capsys.readouterr().err)


@pytest.mark.heavy(4)
def test_bad_input_through_python_dash_m(tmp_path):
    """The same one error line from a fresh interpreter (the cases above run in-process)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "studies", "coord-check", "--widths", "0,128", "--out",
                           str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    _assert_one_error_line(proc.stderr)
    assert proc.stdout == ""
    assert os.listdir(tmp_path) == []


def test_tiny_coord_check_writes_tidy_results(capsys, tmp_path):
    out = tmp_path / "cc"
    code = main(["coord-check", "--model", "toy", "--widths", "16,32", "--steps", "2", "--seeds", "1",
                 "--device", "cpu", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(os.listdir(out)) == ["exponents.csv", "figures", "manifest.json", "meta.json", "report.md",
                                       "results.csv", "shards"]  # no temporary files left
    assert not [f for f in os.listdir(out / "shards") if not f.endswith(".csv")]
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == ["model", "optimizer", "init", "scheme", "width", "seed", "step", "layer",
                                "metric", "value", "eta_a", "eta_b"]
    assert set(df.model) == {"toy"} and set(df.optimizer) == {"adam"} and set(df.seed) == {0}
    assert set(df.width) == {16, 32} and set(df.step) == {0, 1, 2}
    assert set(df.scheme) == set(BUILTIN_SCHEMES)
    assert {"loss", "delta1", "delta2", "delta3", "dz_b", "z_a", "dw_fro", "dw_op"} <= set(df.metric)
    assert df.value.notna().all()
    for (scheme, width), g in df.groupby(["scheme", "width"]):
        eta_a, eta_b = BUILTIN_SCHEMES[scheme].rates(width, "adam")
        assert g.eta_a.unique().tolist() == pytest.approx([eta_a])
        assert g.eta_b.unique().tolist() == pytest.approx([eta_b])
        assert len(g[g.metric == "loss"]) == 3
    meta = json.loads((out / "meta.json").read_text())
    assert {"spec", "versions", "git_revision", "device", "wall_time_s"} <= set(meta)
    assert meta["device"] == "cpu"
    assert meta["spec"]["model"] == "toy" and meta["spec"]["widths"] == [16, 32]
    assert meta["spec"]["steps"] == 2 and meta["spec"]["seeds"] == [0]
    assert "torch" in meta["versions"] and meta["wall_time_s"] >= 0
    assert captured.out.splitlines()[-1].startswith(f"report: {out / 'report.md'}")
    # the golden coord-check report: what it found, the slopes, the verdicts, the figure
    report = (out / "report.md").read_text()
    assert [line for line in report.splitlines() if line.startswith("#")] == [
        "# coord-check: toy, adam", "## What it found", "## Log-log slope against width at step 2", "## Verdicts"]
    assert report.split("\n---\n")[0].rstrip().endswith("(figures/coord_check.png)") and (out / "figures" / "coord_check.png").is_file()
    exponents = pd.read_csv(out / "exponents.csv")  # two widths and one seed: nothing can be judged
    assert set(exponents.verdict) == {"INCONCLUSIVE"} and exponents.reason.str.startswith("too little data").all()


# Exponents are typed as the README writes them: fractions, negative ones included.

def test_theory_takes_exponents_as_fractions(capsys):
    assert main(["theory", "--gA", "-1/2", "--gB", "1/2", "--json"]) == 0
    as_fractions = json.loads(capsys.readouterr().out)
    assert main(["theory", "--gA=-0.5", "--gB", "0.5", "--json"]) == 0
    assert as_fractions == json.loads(capsys.readouterr().out)
    assert as_fractions["gA"] == -0.5 and as_fractions["gB"] == 0.5


def test_custom_scheme_exponents_as_fractions():
    from scaling.rules import parse_scheme
    custom = parse_scheme("gA=-1/2,gB=-1/2")
    assert (custom.gA, custom.gB) == (-0.5, -0.5)
    assert custom.rates(512, "adam") == BUILTIN_SCHEMES["lora-sqrt"].rates(512, "adam")


# A list typed with a space after a comma reaches argparse as two words.

@pytest.mark.parametrize("args,option,fix", [
    (["coord-check", "--widths", "128,", "256"], "--widths", "--widths 128,256"),
    (["coord-check", "--schemes", "loraplus,", "lora-inv"], "--schemes", "--schemes loraplus,lora-inv"),
    (["lr-grid", "--widths", "64", ",128"], "--widths", "--widths 64,128"),
    (["lr-grid", "--eval-at", "10,", "200"], "--eval-at", "--eval-at 10,200"),
    (["lr-grid", "--eta-a-range", "1e-4:", "10"], "--eta-a-range", "--eta-a-range 1e-4:10"),
    (["finetune", "--ratios", "1,", "16"], "--ratios", "--ratios 1,16"),
    (["finetune", "--lrs", "1e-3,", "4e-3"], "--lrs", "--lrs 1e-3,4e-3"),
    (["finetune", "--targets", "query,", "value"], "--targets", "--targets query,value"),
])
def test_list_split_by_the_shell_names_the_option_and_the_fix(args, option, fix, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err)
    assert option in err and fix in err
    assert not (tmp_path / "o").exists()


def test_stray_word_after_an_option_value_names_the_option(capsys):
    assert main(["coord-check", "--model", "linear", "mlp"]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err)
    assert "'mlp' after --model linear" in err


BAD_THEORY = {
    "unknown model": (["--model", "resnet"], "--model"),
    "unknown optimizer": (["--optimizer", "lion"], "--optimizer"),
    "sgd beyond the toy model": (["--optimizer", "sgd", "--model", "mlp"], "--optimizer sgd --model mlp"),
    "unknown init": (["--init", "3"], "--init"),
    "step zero": (["--step", "0"], "--step"),
    "step beyond memory": (["--step", "99999999999"], "--step"),
    "exponent not a number": (["--gA", "minus-one"], "--gA"),
    "exponent infinite": (["--gB", "inf"], "--gB"),
    "exponent 1/0": (["--gA", "1/0"], "--gA"),
    "out without the diagram": (["--out", "x.png"], "--out"),
    "diagram of an unknown format": (["--phase-diagram", "--out", "phase.xyz"], "--out"),
}


@pytest.mark.parametrize("args,option", list(BAD_THEORY.values()), ids=list(BAD_THEORY))
def test_theory_bad_input_names_the_option(args, option, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["theory", *args]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err)
    assert option in err
    assert os.listdir(tmp_path) == []


def test_phase_diagram_default_goes_under_runs(capsys, monkeypatch, tmp_path):
    """Without --out the diagram lands in runs/theory/ (gitignored), not the working directory;
    --out creates its folder; a directory given as --out is refused."""
    monkeypatch.chdir(tmp_path)
    assert main(["theory", "--optimizer", "adam", "--init", "2", "--phase-diagram"]) == 0
    assert (tmp_path / "runs" / "theory" / "phase_adam_init2_linear.png").is_file()
    assert sorted(os.listdir(tmp_path)) == ["runs"]
    assert main(["theory", "--phase-diagram", "--out", "figs/phase.pdf"]) == 0
    assert (tmp_path / "figs" / "phase.pdf").is_file()
    assert main(["theory", "--phase-diagram", "--out", "figs"]) == 2
    assert "is a directory" in capsys.readouterr().err


def _help_texts() -> dict[str, str]:
    from studies.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {"": parser.format_help(), **{name: p.format_help() for name, p in sub.choices.items()}}


def test_help_is_plain_text_and_every_option_explained():
    from studies.cli import build_parser
    for name, text in _help_texts().items():
        assert "``" not in text, f"reST markup in the help of {name or 'the program'}"
        assert not re.search(r"\[[A-Z_]+ \.\.\.\]", text), f"{name}: a list option shown as several words"
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.description, f"{name} has no description"
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"


@pytest.mark.parametrize("args,expected", [
    (["coord-check", *TINY[:-4], "--seeds", "99999999999"], "--seeds"),
    (["coord-check", *TINY, "--out", ""], "--out"),
    (["coord-check", *TINY, "--scheduler", "tcp://127.0.0.1:9"], "--scheduler"),
    (["coord-check", *TINY, "--spec", "--force"], "--spec"),
    (["lr-grid", "--per-decade", "99999999999"], "per-decade"),
])
def test_more_bad_input_is_one_error_line(args, expected, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an empty --out would be this directory
    assert main(args) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err)
    assert expected in err
    assert os.listdir(tmp_path) == []


def test_out_of_memory_is_one_error_line(capsys, monkeypatch):
    """A run too large for memory (here: torch's allocator refusing, as for --widths 10^11)."""
    from studies import commands

    def too_big(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 799999999992 bytes. Error code 12 (Cannot allocate memory)")
    monkeypatch.setitem(commands.COMMANDS, "theory", too_big)
    assert main(["theory"]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err)
    assert "out of memory (one tensor of 745 GiB)" in err and "--widths" in err

    def bug(args):
        raise RuntimeError("an unrelated failure")  # not a user's input: still a traceback
    monkeypatch.setitem(commands.COMMANDS, "theory", bug)
    with pytest.raises(RuntimeError, match="unrelated"):
        main(["theory"])
