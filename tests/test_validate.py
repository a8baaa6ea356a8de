"""The main job end to end on a tiny suite: outputs, exit code, and resuming from its shards."""
from __future__ import annotations

import json

import pandas as pd

from studies import validate
from studies.run import context
from studies.cli import main

TINY = validate.SuiteSettings(widths={"toy": (256, 512, 1024), "linear": (64, 128, 256), "mlp": (64, 128, 256)},
                              seeds={"toy": 3, "linear": 2, "mlp": 2}, steps=3)


def test_validate_writes_its_outputs_and_resumes_without_recomputing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(validate, "QUICK", TINY)
    out = tmp_path / "v"
    code = main(["validate", "--quick", "--out", str(out)])
    exponents = pd.read_csv(out / "exponents.csv", dtype={"init": str})
    assert code == (1 if (exponents.verdict == "FAIL").any() else 0)
    assert set(exponents.verdict) <= {"PASS", "FAIL", "INCONCLUSIVE"}
    assert set(zip(exponents.model, exponents.optimizer, exponents.init)) == set(validate.CONFIGS)
    report = (out / "report.md").read_text()
    assert report.startswith("#")
    # the report opens with what it found in plain words; the long listings come last
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[0] == "## What it found" and sections[-2:] == [
        "## Appendix A: every check in full", "## Appendix B: every check that did not PASS"]
    n_pass = int((exponents.verdict == "PASS").sum())
    assert f"{n_pass} of {len(exponents)} predicted width exponents were confirmed" in report.split("## How")[0]
    std = capsys.readouterr()
    assert std.out.startswith("validate, quick suite") and "Predicted class of each scheme" in std.out
    assert "report: " in std.out.splitlines()[-1]
    # progress on stderr, which is not a terminal here: plain lines, each phase named
    assert "validate: " in std.err and "\r" not in std.err
    assert "validate: fitting and judging" in std.err and "drawing the figures" in std.err
    # the first step's loss decrease is judged for every Adam configuration, per layer
    drops = exponents[exponents.metric == "loss_drop"]
    assert set(drops.step) == {1} and set(zip(drops.model, drops.init)) == {
        (m, i) for m, o, i in validate.CONFIGS if o == "adam"}
    assert "## The B0 path (mlp, Adam)" in report and "figures/loss_drop_mlp_init2.png" in report
    assert (out / "figures" / "loss_drop_mlp_init2.png").is_file()
    assert "### Control: B0 scaled by 0.25" in report
    b0 = pd.read_csv(out / "b0_control_results.csv", dtype={"init": str})
    assert set(b0.scheme) == {"loraplus", "lora-inv"} and (b0.b0_scale == 0.25).all()
    assert (out / "figures" / "phase_adam_init1.png").is_file()
    # one shard per (model, width, seed) holds every configuration of that model, controls included
    n_shards = sum(len(TINY.widths[m]) * TINY.seeds[m] for m in ("toy", "linear", "mlp"))
    assert len(json.loads((out / "manifest.json").read_text())["done"]) == n_shards
    first = (out / "exponents.csv").read_bytes()

    calls = []
    monkeypatch.setattr(context, "run_shards", lambda shards, store, *a, **k: calls.append(
        [s.key for s in shards if not store.is_done(s.key)]))
    assert main(["validate", "--quick", "--out", str(out)]) == code
    assert calls == [[], []]  # every shard came from the store (the suite's, then the corner law's)
    assert (out / "exponents.csv").read_bytes() == first
