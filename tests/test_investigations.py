"""docs/investigations scripts still run, and their quantities mean what they say."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "investigations" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init2_b0_path_traces_the_first_steps(tmp_path, capsys):
    out = tmp_path / "trace.csv"
    _load("init2_b0_path").main(["--widths", "64,128", "--seeds", "2", "--steps", "3", "--out", str(out)])
    t = pd.read_csv(out)
    assert len(t) == 2 * 2 * 4 * 2 * 2  # widths x seeds x steps 0..3 x layers x schemes
    first = t[t.step == 1]
    # Adam's first step is sign(grad) * eta_A; B has not moved yet under Init[2] (Z_A(0) = 0)
    assert ((first.adam_step - 1).abs() < 0.02).all()
    assert (first.learned_over_b0 == 0).all() and ((first.grad_cos - 1).abs() < 1e-5).all()
    assert (t[t.step == 3].learned_over_b0 > 0).all() and (first.progress > 0).all()
    # B0 x 1/4 shrinks the B0 path: the first step lowers the loss less
    small = tmp_path / "small.csv"
    _load("init2_b0_path").main(["--widths", "64", "--seeds", "2", "--steps", "1", "--b0-scale", "0.25",
                                 "--out", str(small)])
    s = pd.read_csv(small)
    assert (s[s.step == 1].progress.mean() < first[first.width == 64].progress.mean())
    assert "progress" in capsys.readouterr().out


def test_corrections_to_scaling_monte_carlo_runs_and_fits():
    mc = _load("corrections_to_scaling")
    table = mc.run([32, 128, 512, 2048], 4000)
    # Init[1] step 1: B0 = 0 leaves A untouched (delta1, delta3 exactly zero: no rows); Init[2]: B untouched
    assert set(table[table.init == "1"].metric) == {"delta2 (step 1)", "delta1 (step 2)", "delta2 (step 2)",
                                                    "delta3 (step 2)"}
    assert set(table[table.init == "2"].metric) == {"delta1 (step 1)", "delta1 (step 2)", "delta2 (step 2)",
                                                    "delta3 (step 2)"}
    assert (table.se > 0).all() and len(table) == 8 * 4
    fit = mc.correction_fit(table)
    assert {"A (n^-1/2)", "B (n^-1)", "A / se"} <= set(fit.columns) and len(fit) == 8


def test_stacked_lora_ladder_and_trace_run(tmp_path, capsys):
    mod = _load("stacked_lora")
    table = mod.main(["ladder", "--depths", "1,2", "--widths", "32,64", "--seeds", "2", "--control",
                      "--primary-only", "--out", str(tmp_path / "ladder")])
    assert set(table.depth) == {1, 2} and set(table.control) == {"", "detached"}
    assert {"B edge", "A edge", "one-rate edge", "ratio edge", "corner lambda_c"} <= set(table.law)
    one = table[(table.law == "B edge") & (table.control == "")].set_index("depth").predicted
    assert one[1] == 0 and one[2] == -0.25  # scaling.stacked's prediction beside each row
    assert (tmp_path / "ladder" / "ladder.csv").is_file()
    trace = mod.main(["trace", "--depth", "2", "--widths", "32,64", "--seeds", "1", "--steps", "2",
                      "--out", str(tmp_path / "trace.csv")])
    first = trace[(trace.step == 1) & (trace.metric == "input_gain")]
    # step 1: B2 = 0, so no gradient reached layer 1 through B2 A2: its input moved in a random
    # direction relative to A2's rows (gain about 1, not n^1/2)
    assert len(first) == 2 and first.value.between(0.5, 2).all()
    assert "path_ratio" in set(trace.metric) and "input_gain" in capsys.readouterr().out
