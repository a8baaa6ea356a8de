"""The command line: bad input is one ``error:`` line and exit code 2; a good run writes tidy files."""
from __future__ import annotations

import json
import os
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


def test_bad_input_through_python_dash_m(tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for args in (["--widths", "0,128", "--out", str(tmp_path / "b")],
                 [*TINY, "--out", str(target)]):
        proc = subprocess.run([sys.executable, "-m", "studies", "coord-check", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 2, proc.stderr
        _assert_one_error_line(proc.stderr)
        assert proc.stdout == ""
    assert target.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_tiny_coord_check_writes_tidy_results(capsys, tmp_path):
    out = tmp_path / "cc"
    code = main(["coord-check", "--model", "toy", "--widths", "16,32", "--steps", "2", "--seeds", "1",
                 "--device", "cpu", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(os.listdir(out)) == ["manifest.json", "meta.json", "results.csv", "shards"]  # no temporary files left
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
    assert "wrote" in captured.out and captured.err == ""
