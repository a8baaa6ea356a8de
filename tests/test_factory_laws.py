"""lr-laws --factory: the learning-rate laws on a factory's model (the README's example factory;
the families run the same code at hidden 64..512 from the CLI)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from scaling.loraplus import create_loraplus_optimizer
from studies.cli import main
from studies.lr_laws.factory import factory_configs, factory_laws_shard, population_losses
from studies.reports import lr_laws as lr_laws_report

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "docs" / "examples" / "tiny_mlp_factory.py") + ":make"


def test_population_losses_puts_nan_after_a_divergence():
    frame = pd.DataFrame({"member": 0, "run": [0, 0, 0, 1, 1], "step": [0, 1, 2, 0, 1],
                          "layer": "all", "metric": ["loss"] * 4 + ["diverged"], "value": [3.0, 2.0, 1.0, 3.0, 1.0]})
    out = population_losses(frame, runs=2, steps=2)
    assert out["diverged_step"].tolist() == [-1, 1]
    np.testing.assert_array_equal(out["train"][:, 0], [3.0, 2.0, 1.0])
    assert out["train"][0, 1] == 3.0 and np.isnan(out["train"][1:, 1]).all()


def test_each_candidate_trains_like_a_plain_adam_run():
    import importlib.util

    from studies.families.pretrain import apply_init
    spec = importlib.util.spec_from_file_location("tiny_factory_oracle", EXAMPLE.rsplit(":", 1)[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (config1, config2) = factory_configs([EXAMPLE], quick=True, widths=[64], seeds=1, steps=4)
    rows = factory_laws_shard((config1, config2), 64, 4, 0, "cpu")
    assert set(rows.init) == {"1", "2"} and set(rows.slice_name) == {"b-edge", "a-edge", "one-rate", "ratio"}
    assert rows.groupby("init")["round"].max().min() >= 1  # brackets were refined
    for init in ("1", "2"):
        mine = rows[(rows.init == init) & (rows.diverged_step < 0)]
        for _, run in mine.sample(3, random_state=0).iterrows():
            task = module.make(64, 4, 0)
            torch.manual_seed(30_000)
            apply_init(task.model, init)
            opt = create_loraplus_optimizer(task.model, torch.optim.Adam, lr=run.eta_a,
                                            loraplus_lr_ratio=run.eta_b / run.eta_a)
            for _ in range(4):
                loss = task.loss(task.model, task.batch(0))
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                final = float(task.loss(task.model, task.batch(0)))
            assert run.loss_t4 == pytest.approx(final, rel=1e-3, abs=1e-6)


@pytest.mark.heavy(6)
def test_the_cli_measures_and_judges_the_laws_on_a_factory(tmp_path, capsys, monkeypatch):
    out = tmp_path / "laws"
    argv = ["lr-laws", "--factory", EXAMPLE, "--quick", "--widths", "64,128,256", "--seeds", "2",
            "--executor", "inline", "--device", "cpu", "--out", str(out)]
    code = main(argv)
    laws = pd.read_csv(out / "laws.csv", dtype={"init": str})
    assert code == (1 if (laws.verdict == "FAIL").any() else 0)  # the judging commands' exit codes
    for column in ("law", "model", "optimizer", "init", "alpha_scaling", "variable", "predicted", "slope", "lo",
                   "hi", "verdict", "reason"):
        assert column in laws
    assert {"B edge", "A edge", "one-rate edge", "corner lambda_c"} <= set(laws.law)
    assert {"1", "2"} <= set(laws.init) <= {"1", "2", "1 / 2"} and set(laws.verdict) <= {"PASS", "FAIL", "INCONCLUSIVE"}
    # the example's two LoRA layers are in series (chain 2) under a mean-field readout: the stacked laws
    b_edge = laws[(laws.law == "B edge") & (laws.init == "1")].iloc[0]
    corner = laws[(laws.law == "corner lambda_c") & (laws.init == "1")].iloc[0]
    assert b_edge.predicted == -0.25 and np.isfinite(corner.slope) and np.isnan(corner.predicted)
    monkeypatch.setattr(lr_laws_report, "draw_figures", lambda *a: {})  # drawn above; resuming is the point here
    assert main(argv) == code  # resumes
    assert json.loads((out / "meta.json").read_text())["resumed_shards"] == 6


@pytest.mark.parametrize("argv, fragment", [
    (["--factory", "no/such/file.py:make"], "no such file"),
    (["--factory", "bert", "--models", "linear"], "--models does not apply with --factory"),
    (["--factory", "bert", "--inits", "paper"], "init 1 or 2"),
    (["--factory", "bert", "--depth", "2"], "--depth does not apply with --factory"),
])
def test_bad_factory_input_is_one_error_line(tmp_path, capsys, argv, fragment):
    out = tmp_path / "x"
    assert main(["lr-laws", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0]
    assert not out.exists()


def test_the_factory_path_finds_the_toy_engines_edges():
    """The toy mlp written as a factory (toy_models.as_factory) through lr-laws --factory's shard
    gives the toy engine's candidates, losses and edges: the two engines agree, with and without
    the stacking control (which changes the losses)."""
    from dataclasses import replace

    from studies.lr_laws.analysis import edge_table
    from studies.lr_laws.config import ADAM_CRITERIA, LawsConfig, adam_slices
    from studies.lr_laws.search import laws_shard
    toy = LawsConfig(model="mlp", optimizer="adam", init="1", depth=2, widths=(32,), seeds=(0,),
                     slices=adam_slices(False)[:1], criteria=ADAM_CRITERIA[:1], batch_size=8, per_decade=2,
                     refine_rounds=1, dtype="float64")
    ref = "toy_models.as_factory:mlp_depth2_float64"
    losses = []
    for detach in (False, True):
        engine = replace(toy, detach_lora_input=detach)
        factory = replace(engine, model=ref, factory=ref, batch_size=None, depth=1)
        a = laws_shard(engine, 32, 4, 0, torch.device("cpu"))
        b = factory_laws_shard((factory,), 32, 4, 0, "cpu", chunk_size=None)
        both = a.merge(b, on=["slice", "round", "rate"], suffixes=("_toy", "_factory"), how="outer",
                       validate="one_to_one")
        assert len(both) == len(a) == len(b) and both["round"].max() == 1
        np.testing.assert_allclose(both.loss_t20_factory, both.loss_t20_toy, rtol=1e-9)
        np.testing.assert_array_equal(both.diverged_step_factory, both.diverged_step_toy)
        edges = [edge_table(r.assign(config=c.label), [c]).set_index("slice").edge
                 for r, c in ((a, engine), (b, factory))]
        assert edges[0].notna().all()
        pd.testing.assert_series_equal(edges[0], edges[1])
        losses.append(a[a["round"] == 0].set_index("rate").loss_t20)
    moved = (losses[1] / losses[0] - 1).abs()
    assert moved.max() > 1e-3  # the control is not a no-op


def test_each_family_has_its_own_defaults_and_criteria_replace_them():
    from studies.run.spec import SpecError
    bert = factory_configs(["bert"], inits=["1"])[0]
    assert bert.widths[-1] / bert.widths[0] >= 16 and len(bert.seeds) >= 6  # 4 octaves, 6 seeds or more
    assert bert.center == "median"
    # GPT-2's fine-tune starts above a blind guess: its edge is read against the best rate, not the start
    gpt2 = factory_configs(["gpt2"], inits=["1"])[0]
    assert [(c.kind, c.fraction, c.steps) for c in gpt2.criteria] == [("best", 0.9, 20), ("best", 0.8, 20),
                                                                     ("best", 0.95, 20)]
    quick = factory_configs(["gpt2"], quick=True, inits=["1"])[0]
    assert len(quick.criteria) == 1 and len(quick.seeds) == 2 and len(quick.widths) < len(gpt2.widths)
    (given,) = factory_configs(["gpt2"], inits=["1"], criteria=["f0.5@T10", "best0.8@T10"], steps=30)
    assert [c.name for c in given.criteria] == ["f0.5@T30"]  # --steps replaces the primary's T, keeps its kind
    with pytest.raises(SpecError, match="Adam"):
        factory_configs(["gpt2"], criteria=["diverged@T10"])
    with pytest.raises(SpecError, match="--criteria"):
        factory_configs(["gpt2"], criteria=["best2@T10"])
