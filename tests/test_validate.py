"""The main job end to end on a tiny suite: outputs, exit code, the report's layout, and resuming
from its shards."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from studies import validate
from studies.reports import validate as report_module
from studies.run import context
from studies.cli import main
from tests.conftest import small_validate

TINY = validate.SuiteSettings(widths={"toy": (256, 512, 1024), "linear": (64, 128, 256), "mlp": (64, 128, 256)},
                              seeds={"toy": 3, "linear": 2, "mlp": 2}, steps=3)

SETTINGS = ["toy, Adam, Init[1]", "toy, Adam, Init[2]", "linear, Adam, Init[1]", "linear, Adam, Init[2]",
            "mlp, Adam, Init[1]", "mlp, Adam, Init[2]", "toy, SGD, Init[1]", "toy, SGD, Init[2]"]
# the golden layout: what it found first, the long listings last; a section that disappears fails here
HEADINGS = ["# loraplus-scaling validate", "## What it found", "## How to read the verdicts",
            "## Results per setting", *(f"### {s}" for s in SETTINGS), "## Why predictions did not show",
            "## Control: the Init[2] overshoot", "## The B0 path (mlp, Adam)", "### Control: B0 scaled by 0.25",
            "## Control: the stacked layer (mlp, Adam, Init[1])",
            "## Corrections to scaling", "## Phase diagrams", "## A learning-rate law: the LoRA+ corner",
            "## Appendix A: every check in full", *(f"### {s}, in full" for s in SETTINGS),
            "## Appendix B: every check that did not PASS"]


@pytest.mark.heavy(12)
def test_validate_writes_its_outputs_and_resumes_without_recomputing(tmp_path, monkeypatch, capsys):
    small_validate(monkeypatch, TINY)
    out = tmp_path / "v"
    code = main(["validate", "--quick", "--executor", "inline", "--out", str(out)])
    exponents = pd.read_csv(out / "exponents.csv", dtype={"init": str})
    assert code == (1 if (exponents.verdict == "FAIL").any() else 0)
    assert set(exponents.verdict) <= {"PASS", "FAIL", "INCONCLUSIVE"}
    assert set(zip(exponents.model, exponents.optimizer, exponents.init)) == set(validate.CONFIGS)
    report = (out / "report.md").read_text()
    assert [line for line in report.splitlines() if line.startswith("#")] == HEADINGS
    std = capsys.readouterr()
    assert std.out.startswith("validate, quick suite") and std.out.splitlines()[-1].startswith("report: ")
    # progress on stderr, which is not a terminal here: plain lines, each phase named
    assert "validate: " in std.err and "\r" not in std.err
    assert "validate: fitting and judging" in std.err and "drawing the figures" in std.err
    # the first step's loss decrease is judged for every Adam configuration, per layer
    drops = exponents[exponents.metric == "loss_drop"]
    assert set(drops.step) == {1} and set(zip(drops.model, drops.init)) == {
        (m, i) for m, o, i in validate.CONFIGS if o == "adam"}
    assert "figures/loss_drop_mlp_init2.png" in report and (out / "figures" / "loss_drop_mlp_init2.png").is_file()
    b0 = pd.read_csv(out / "b0_control_results.csv", dtype={"init": str})
    assert set(b0.scheme) == {"loraplus", "lora-inv"} and (b0.b0_scale == 0.25).all()
    assert (out / "figures" / "phase_adam_init1.png").is_file()
    corner = pd.read_csv(out / "lr_laws.csv")
    assert list(corner.law) == ["B edge", "A edge", "corner lambda_c"]
    # one shard per (model, width, seed) holds every configuration of that model, controls included
    n_shards = sum(len(TINY.widths[m]) * TINY.seeds[m] for m in ("toy", "linear", "mlp"))
    assert len(json.loads((out / "manifest.json").read_text())["done"]) == n_shards
    first = (out / "exponents.csv").read_bytes()

    calls = []
    monkeypatch.setattr(context, "run_shards", lambda shards, store, *a, **k: calls.append(
        [s.key for s in shards if not store.is_done(s.key)]) or 0.0)  # 0.0: no CPU spent in workers
    monkeypatch.setattr(report_module, "draw_figures", lambda *a: {})  # drawn above; the tables are the point here
    assert main(["validate", "--quick", "--executor", "inline", "--out", str(out)]) == code
    assert calls == [[], []]  # every shard came from the store (the suite's, then the corner law's)
    assert (out / "exponents.csv").read_bytes() == first
