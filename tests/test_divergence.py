"""Runs that blow up are recorded, frozen and dropped; the other runs never notice."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from studies.run.runner import RESULT_COLUMNS, run_coord_check_shard, trajectory_frame
from studies.run.spec import CoordCheckSpec
from tests.oracle import train_oracle
from toy_models import ModelConfig, Population, build_model

STEPS = 6
CASES = {
    # SGD with a huge rate: the loss overflows to inf / NaN within a few steps
    "linear-sgd": ("linear", "sgd", ModelConfig(width=32, rank=2, dtype="float64", batch_size=16),
                   [(0.01, 0.05), (50.0, 50.0), (0.02, 0.005)]),
    # Adam's steps are bounded by the rate: a huge rate trips the 1e8 x initial-loss rule
    "paper-mlp-adam": ("paper-mlp", "adam", ModelConfig(width=32, rank=2, dtype="float64", batch_size=50),
                       [(1e-2, 1e-2), (1e5, 1e5), (1e-3, 1e-1)]),
    # two runs diverge, at different steps (2 and 1), around a healthy one
    "mlp-sgd": ("mlp", "sgd", ModelConfig(width=24, rank=2, dtype="float64", batch_size=12, input_dim=4),
                [(3e4, 3e4), (0.5, 0.5), (3e3, 3e5)]),
}


def _population(case):
    name, opt, cfg, rates = CASES[case]
    model = build_model(name, cfg, seed=0)
    return model, opt, rates


@pytest.mark.parametrize("case", list(CASES))
def test_diverged_runs_are_recorded_and_do_not_touch_the_others(case):
    model, opt, rates = _population(case)
    pop = Population(model, [r[0] for r in rates], [r[1] for r in rates], opt)
    traj = pop.run(STEPS)
    div = traj.diverged_step
    assert div.dtype == torch.int64 and div.shape == (len(rates),)
    bad = [i for i, (ea, _) in enumerate(rates) if ea >= 10]
    good = [i for i in range(len(rates)) if i not in bad]
    assert all(div[i] >= 1 for i in bad), div
    assert all(div[i] == -1 for i in good), div
    if case == "mlp-sgd":
        assert div[0] != div[2]

    loss = traj.metrics["loss"][:, :, 0]
    for i in good:
        assert torch.isfinite(loss[-1, i])
    for i in bad:
        s = int(div[i])
        # nothing measured at or after the step the run diverged (its loss) / after it (the rest)
        assert torch.isnan(loss[s:, i]).all()
        assert torch.isfinite(loss[:s, i]).all()
        for k, v in traj.metrics.items():
            assert torch.isnan(v[s + 1:, i]).all(), k
        # frozen: parameters zeroed, and they stay finite
        for p in pop.A + pop.B:
            assert (p[i] == 0).all()

    # the healthy runs alone give the same numbers (runs never mix)
    alone = Population(model, [rates[i][0] for i in good], [rates[i][1] for i in good], opt)
    ta = alone.run(STEPS)
    assert (ta.diverged_step == -1).all()
    for j, i in enumerate(good):
        for k in traj.metrics:
            torch.testing.assert_close(traj.metrics[k][:, i], ta.metrics[k][:, j], rtol=1e-10,
                                       atol=1e-300, equal_nan=True)
        for pp, pa in zip(pop.A + pop.B, alone.A + alone.B):
            torch.testing.assert_close(pp[i], pa[j], rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("case", list(CASES))
def test_diverged_step_is_the_first_bad_loss_of_the_oracle(case):
    """diverged_step = the number of updates after which the loss (of the same run trained
    alone with torch.optim) first became non-finite or exceeded 1e8 x the initial loss."""
    model, opt, rates = _population(case)
    traj = Population(model, [r[0] for r in rates], [r[1] for r in rates], opt).run(STEPS)
    for i, (ea, eb) in enumerate(rates):
        losses = train_oracle(model, ea, eb, opt, STEPS).losses
        bad = ~torch.isfinite(losses) | (losses > 1e8 * losses[0])
        first = int(bad.nonzero()[0, 0]) if bad.any() else -1
        assert int(traj.diverged_step[i]) == first, (i, losses)


def test_divergence_factor_is_configurable():
    model, opt, rates = _population("paper-mlp-adam")
    tight = Population(model, [1e-2, 1.0], [1e-2, 1.0], "adam", divergence_factor=1.5).run(4)
    loose = Population(model, [1e-2, 1.0], [1e-2, 1.0], "adam").run(4)
    assert int(tight.diverged_step[1]) >= 1 and int(loose.diverged_step[1]) == -1
    assert int(tight.diverged_step[0]) == int(loose.diverged_step[0]) == -1


def test_trajectory_frame_marks_divergence_and_drops_later_values():
    model, opt, rates = _population("linear-sgd")
    traj = Population(model, [r[0] for r in rates], [r[1] for r in rates], opt).run(STEPS)
    s = int(traj.diverged_step[1])
    assert s >= 1
    labels = pd.DataFrame({"scheme": ["a", "boom", "c"]})
    tidy = trajectory_frame(traj, labels)
    assert set(tidy.columns) == {"scheme", "step", "layer", "metric", "value"}
    assert np.isfinite(tidy.value).all()
    boom = tidy[tidy.scheme == "boom"]
    div_rows = boom[boom.metric == "diverged"]
    assert len(div_rows) == 1
    assert div_rows.step.iloc[0] == s and div_rows.value.iloc[0] == 1.0 and div_rows.layer.iloc[0] == "all"
    assert (boom.step <= s).all()
    assert boom[(boom.metric == "loss") & (boom.step == s)].empty
    assert (tidy[tidy.metric == "diverged"].scheme == "boom").all()
    for other in ("a", "c"):  # healthy runs: every metric at every step
        rows = tidy[tidy.scheme == other]
        assert rows.step.max() == STEPS
        assert set(rows[rows.step == STEPS].metric) == set(traj.metrics)


def test_runner_shard_records_diverged_scheme():
    base = dict(model="linear", optimizer="sgd", widths=(32,), steps=STEPS, seeds=(0,), dtype="float64",
                rank=2)
    spec = CoordCheckSpec(schemes=("loraplus", "gA=0,gB=0,cA=50,cB=50"), **base)
    df = run_coord_check_shard(spec, 32, 0, torch.device("cpu"))
    assert list(df.columns) == RESULT_COLUMNS
    boom = df[df.scheme == "gA=0,gB=0,cA=50,cB=50"]
    div_rows = boom[boom.metric == "diverged"]
    assert len(div_rows) == 1
    s = int(div_rows.step.iloc[0])
    assert 1 <= s <= STEPS
    assert (boom.step <= s).all() and boom[(boom.metric == "loss") & (boom.step == s)].empty
    assert boom.eta_a.iloc[0] == pytest.approx(50 * (32 / 128) ** 0)
    # the healthy scheme is unaffected by its diverging neighbour
    alone = run_coord_check_shard(CoordCheckSpec(schemes=("loraplus",), **base), 32, 0, torch.device("cpu"))
    good = df[df.scheme == "loraplus"].reset_index(drop=True)
    assert "diverged" not in set(good.metric)
    pd.testing.assert_frame_equal(good, alone.reset_index(drop=True), check_exact=False, rtol=1e-10)


@pytest.mark.parametrize("eta_a,eta_b", [([1e-2, math.nan], [1e-2, 1e-2]), ([1e-2], [-1e-3]),
                                         ([1e-2, 1e-2], [1e-2]), ([math.inf], [1.0])])
def test_population_rejects_bad_rates(eta_a, eta_b):
    model = build_model("linear", ModelConfig(width=8, rank=2), seed=0)
    with pytest.raises(ValueError):
        Population(model, eta_a, eta_b, "adam")


def test_population_rejects_bad_optimizer_and_steps():
    model = build_model("linear", ModelConfig(width=8, rank=2), seed=0)
    with pytest.raises(ValueError):
        Population(model, [1e-2], [1e-2], "lion")
    with pytest.raises(ValueError):
        Population(model, [1e-2], [1e-2], "adam").run(-1)


def test_step_that_overflows_the_update_does_not_crash_the_population():
    """float32 Adam with a rate near the float32 maximum: after step 1 run 1's factors are
    ~1e38, so B A (and dW) overflow to inf. That run must be marked diverged at step 1 and
    the other run must go on; the measurement of the fatal step must not raise (it used to:
    torch.linalg.matrix_norm(core, 2) in scaling.measure.update_norms refuses non-finite
    input with a LinAlgError, killing the whole population)."""
    model = build_model("linear", ModelConfig(width=32, rank=2, batch_size=16, init="paper"), seed=0)
    traj = Population(model, [1e-2, 1e38], [1e-2, 1e38], "adam").run(3)
    assert traj.diverged_step.tolist() == [-1, 1]
    assert torch.isfinite(traj.metrics["loss"][:, 0]).any() and torch.isfinite(traj.metrics["loss"][-1, 0, 0])
    alone = Population(model, [1e-2], [1e-2], "adam").run(3)
    torch.testing.assert_close(traj.metrics["loss"][:, 0], alone.metrics["loss"][:, 0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_update_norms_of_a_non_finite_run_are_not_an_error(bad):
    """One run's non-finite factors give that run a non-finite norm, not an exception."""
    from scaling.measure import update_norms
    A1, B1 = torch.ones(2, 2, 5, dtype=torch.float64), torch.ones(2, 3, 2, dtype=torch.float64)
    A1[1, 0, 0] = bad
    fro, op = update_norms(A1, B1, torch.zeros(2, 5, dtype=torch.float64),
                           torch.zeros(3, 2, dtype=torch.float64), 1.0)
    dense = B1[0] @ A1[0]  # all entries 2: rank one, both norms 2 sqrt(15)
    assert fro[0].item() == pytest.approx(2 * 15 ** 0.5, rel=1e-12)
    assert op[0].item() == pytest.approx(torch.linalg.matrix_norm(dense, 2).item(), rel=1e-12)
    assert not torch.isfinite(fro[1]) and not torch.isfinite(op[1])


def _reference_trajectory_frame(traj, run_labels: pd.DataFrame) -> pd.DataFrame:
    """trajectory_frame as it was written first (per-metric frames, a concat, a merge on run):
    the numpy version must give the same frame."""
    frames = []
    for metric, values in traj.metrics.items():
        v = values.numpy()
        step, run, layer = np.nonzero(np.isfinite(v))
        layer_names = np.array(traj.layer_names if metric not in ("loss", "test_loss") else ["all"])
        layer_idx = layer if len(layer_names) > 1 else np.zeros_like(layer)
        frames.append(pd.DataFrame({"run": run, "step": step, "layer": layer_names[layer_idx],
                                    "metric": metric, "value": v[step, run, layer]}))
    div = traj.diverged_step.numpy()
    tidy_steps = pd.concat(frames, ignore_index=True)
    cut = np.where(div >= 0, div, np.iinfo(np.int64).max)[tidy_steps.run.to_numpy()]
    frames = [tidy_steps[tidy_steps.step.to_numpy() < cut]]
    runs = np.nonzero(div >= 0)[0]
    frames.append(pd.DataFrame({"run": runs, "step": div[runs], "layer": "all", "metric": "diverged", "value": 1.0}))
    tidy = pd.concat(frames, ignore_index=True)
    return run_labels.reset_index(names="run").merge(tidy, on="run").drop(columns="run")


@pytest.mark.parametrize("case", [*CASES, "mlp-adam-deep"])
def test_trajectory_frame_gives_the_frame_of_its_first_version(case):
    if case == "mlp-adam-deep":
        model = build_model("mlp", ModelConfig(width=16, rank=2, depth=3), seed=1)
        rates = [(1e-2, 1e-2), (10.0, 10.0), (1e-3, 1e-1)]
        opt = "adam"
    else:
        model, opt, rates = _population(case)
    traj = Population(model, [r[0] for r in rates], [r[1] for r in rates], opt).run(STEPS, test_size=8)
    labels = pd.DataFrame({"scheme": [f"s{i}" for i in range(len(rates))], "width": 16, "eta_a": [r[0] for r in rates]})
    pd.testing.assert_frame_equal(trajectory_frame(traj, labels), _reference_trajectory_frame(traj, labels),
                                  check_exact=True)
