"""scaling.measure: the delta decomposition is exact, the norms are the dense norms, the shares add up."""
from __future__ import annotations

import pytest
import torch

from scaling.measure import METRICS, decompose, layer_metrics, rms, update_norms
from tests.oracle import OracleLora
from toy_models import ModelConfig, Population, build_model


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _factors(R, n_out, n_in, r, seed):
    A0, B0 = _rand(R, r, n_in, seed=seed), _rand(R, n_out, r, seed=seed + 1)
    A1 = A0 + 0.1 * _rand(R, r, n_in, seed=seed + 2)
    B1 = B0 + 0.1 * _rand(R, n_out, r, seed=seed + 3)
    return A0, B0, A1, B1


# -- rms ----------------------------------------------------------------------------------
def test_rms_is_coordinate_rms_over_samples_and_coordinates():
    v = torch.full((2, 3, 5), 3.0, dtype=torch.float64)
    v[1] = -2.0
    torch.testing.assert_close(rms(v), torch.tensor([3.0, 2.0], dtype=torch.float64))
    w = _rand(4, 6, 7)
    expected = torch.stack([w[i].norm() / (6 * 7) ** 0.5 for i in range(4)])
    torch.testing.assert_close(rms(w), expected, rtol=1e-14, atol=0)
    # one large coordinate among many: RMS is ||v|| / sqrt(dim), not a max or a mean of |v|
    u = torch.zeros(1, 1, 100, dtype=torch.float64)
    u[0, 0, 0] = 10.0
    assert rms(u).item() == pytest.approx(1.0)


# -- decompose ----------------------------------------------------------------------------
@pytest.mark.parametrize("z_batched", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_decompose_terms_add_up_and_match_their_definitions(z_batched, scale):
    R, N, n_in, n_out, r = 3, 5, 7, 6, 2
    A0, B0, A1, B1 = _factors(R, n_out, n_in, r, seed=10)
    z = _rand(R, N, n_in, seed=20) if z_batched else _rand(N, n_in, seed=20)
    d1, d2, d3, dzb = decompose(z, A0, B0, A1, B1, scale)
    for t in (d1, d2, d3, dzb):
        assert t.shape == (R, N, n_out)
    torch.testing.assert_close(d1 + d2 + d3, dzb, rtol=1e-12, atol=1e-12)
    for i in range(R):  # independent per-run formulas, z as rows
        zi = z[i] if z_batched else z
        dA, dB = A1[i] - A0[i], B1[i] - B0[i]
        torch.testing.assert_close(d1[i], scale * zi @ (B0[i] @ dA).T, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(d2[i], scale * zi @ (dB @ A0[i]).T, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(d3[i], scale * zi @ (dB @ dA).T, rtol=1e-12, atol=1e-12)
        dense = scale * (B1[i] @ A1[i] - B0[i] @ A0[i])
        torch.testing.assert_close(dzb[i], zi @ dense.T, rtol=1e-12, atol=1e-12)


def test_decompose_no_update_is_zero_and_one_sided_updates_isolate_terms():
    A0, B0, A1, B1 = _factors(2, 4, 5, 2, seed=30)
    z = _rand(3, 5, seed=31)
    for t in decompose(z, A0, B0, A0, B0, 1.0):
        assert t.abs().max().item() == 0.0
    d1, d2, d3, dzb = decompose(z, A0, B0, A1, B0, 1.0)  # only A moves: delta1 only
    assert d2.abs().max().item() == 0.0 and d3.abs().max().item() == 0.0
    torch.testing.assert_close(d1, dzb, rtol=1e-12, atol=1e-12)
    d1, d2, d3, dzb = decompose(z, A0, B0, A0, B1, 1.0)  # only B moves: delta2 only
    assert d1.abs().max().item() == 0.0 and d3.abs().max().item() == 0.0
    torch.testing.assert_close(d2, dzb, rtol=1e-12, atol=1e-12)


# -- update norms -------------------------------------------------------------------------
@pytest.mark.parametrize("n_out,n_in,r", [(6, 9, 2), (1, 12, 3), (8, 3, 2), (5, 5, 4)])
@pytest.mark.parametrize("shared_init", [True, False])
def test_update_norms_equal_dense_norms(n_out, n_in, r, shared_init):
    R, scale = 3, 1.7
    A0, B0, A1, B1 = _factors(R, n_out, n_in, r, seed=40)
    if shared_init:
        A_init, B_init = A0[0], B0[0]
        dense = scale * (B1 @ A1 - B_init @ A_init)
    else:
        A_init, B_init = A0, B0
        dense = scale * (B1 @ A1 - B0 @ A0)
    fro, op = update_norms(A1, B1, A_init, B_init, scale)
    assert fro.shape == op.shape == (R,)
    torch.testing.assert_close(fro, torch.linalg.matrix_norm(dense, "fro"), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op, torch.linalg.matrix_norm(dense, 2), rtol=1e-10, atol=1e-12)
    assert (op <= fro + 1e-12).all()


def test_update_norms_zero_when_nothing_moved():
    A0, B0, _, _ = _factors(2, 6, 7, 2, seed=50)
    fro, op = update_norms(A0, B0, A0[0], B0[0], 1.0)
    assert fro[0].item() == pytest.approx(0.0, abs=1e-12) and op[0].item() == pytest.approx(0.0, abs=1e-12)
    assert fro[1].item() > 0.1  # run 1 differs from run 0's factors, which serve as the init


# -- layer_metrics ------------------------------------------------------------------------
def test_layer_metrics_shares_add_to_one_and_follow_their_definition():
    R, N, n_in, n_out, r = 4, 6, 8, 5, 2
    A0, B0, _, _ = _factors(R, n_out, n_in, r, seed=60)
    gA, gB = _rand(R, r, n_in, seed=61), _rand(R, n_out, r, seed=62)
    eta_a = torch.tensor([1e-3, 1e-2, 1e-1, 0.0], dtype=torch.float64)
    eta_b = torch.tensor([1e-1, 1e-2, 1e-3, 1e-2], dtype=torch.float64)
    A1, B1 = A0 - eta_a.view(-1, 1, 1) * gA, B0 - eta_b.view(-1, 1, 1) * gB  # SGD step
    z = _rand(N, n_in, seed=63)
    m = layer_metrics(z, A0, B0, A1, B1, gA, gB, A0[0], B0[0], 0.5)
    assert set(m) == set(METRICS)
    torch.testing.assert_close(m["share_a"] + m["share_b"], torch.ones(R, dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)
    drop_a = eta_a * gA.pow(2).sum((1, 2))
    drop_b = eta_b * gB.pow(2).sum((1, 2))
    torch.testing.assert_close(m["share_a"], drop_a / (drop_a + drop_b), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m["loss_drop"], drop_a + drop_b, rtol=1e-12, atol=0)
    assert m["share_a"][3].item() == 0.0 and m["share_b"][3].item() == 1.0
    assert m["share_a"][0] < m["share_a"][1] < m["share_a"][2]
    d1, d2, d3, dzb = decompose(z, A0, B0, A1, B1, 0.5)
    for k, v in zip(("delta1", "delta2", "delta3", "dz_b"), (d1, d2, d3, dzb)):
        torch.testing.assert_close(m[k], rms(v), rtol=1e-14, atol=0)
    torch.testing.assert_close(m["z_a"], rms(z @ A1.mT), rtol=1e-14, atol=0)


# -- on real population steps -------------------------------------------------------------
@pytest.mark.parametrize("name,optimizer,extra", [
    ("linear", "adam", {}),
    ("toy", "sgd", {"init": "paper"}),
    ("mlp", "adamw", {"input_dim": 4, "depth": 2}),
    ("mlp", "sgd", {"input_dim": 4, "depth": 2, "init": "2", "probe_size": 64}),  # probe != prefix
    ("paper-mlp", "adam", {"alpha_scaling": "sqrt-r"}),
])
def test_population_step_decomposition_and_metrics(name, optimizer, extra):
    """Take one real optimiser step (the second, so that every delta is non-zero under
    Init[1]/[2]); the decomposition of the measured change is exact and the trajectory's
    metrics equal the dense computations on the parameters before/after."""
    cfg = ModelConfig(width=24, rank=2, dtype="float64", batch_size=16,
                      **{"probe_size": 8, **extra})
    model = build_model(name, cfg, seed=0)
    rates = {"sgd": ([0.05, 0.2], [0.5, 0.05]), "adam": ([1e-2, 1e-3], [1e-2, 5e-2]),
             "adamw": ([1e-2, 1e-3], [1e-2, 5e-2])}[optimizer]
    pop = Population(model, *rates, optimizer)
    pop.run(1)
    before = [(a.detach().clone(), b.detach().clone()) for a, b in zip(pop.A, pop.B)]
    traj = pop.run(1)
    after = [(a.detach().clone(), b.detach().clone()) for a, b in zip(pop.A, pop.B)]
    init = model.lora_init()
    probe_x = model.probe[0]
    for i in range(pop.runs):
        z_before = OracleLora(model).load([(a[i], b[i]) for a, b in before]).layer_inputs(probe_x)
        for l, ((A0, B0), (A1, B1)) in enumerate(zip(before, after)):
            A0, B0, A1, B1 = A0[i:i + 1], B0[i:i + 1], A1[i:i + 1], B1[i:i + 1]
            z = z_before[l]
            d1, d2, d3, dzb = decompose(z, A0, B0, A1, B1, model.scale)
            direct = z @ (model.scale * (B1[0] @ A1[0] - B0[0] @ A0[0])).T
            torch.testing.assert_close(dzb[0], direct, rtol=1e-10, atol=1e-13)
            torch.testing.assert_close(d1 + d2 + d3, dzb, rtol=1e-10, atol=1e-13)
            for k, v in zip(("delta1", "delta2", "delta3", "dz_b"), (d1, d2, d3, dzb)):
                got = traj.metrics[k][1, i, l]
                assert got.item() > 0, f"{k} is zero: the check would be vacuous"
                torch.testing.assert_close(got, rms(v)[0], rtol=1e-9, atol=0)
            dense = model.scale * (B1[0] @ A1[0] - init[l][1] @ init[l][0])
            torch.testing.assert_close(traj.metrics["dw_fro"][1, i, l],
                                       torch.linalg.matrix_norm(dense, "fro"), rtol=1e-9, atol=1e-13)
            torch.testing.assert_close(traj.metrics["dw_op"][1, i, l],
                                       torch.linalg.matrix_norm(dense, 2), rtol=1e-9, atol=1e-13)
            torch.testing.assert_close(traj.metrics["z_a"][1, i, l], rms(z @ A1[0].T)[None][0],
                                       rtol=1e-9, atol=0)
    share = traj.metrics["share_a"][1] + traj.metrics["share_b"][1]
    torch.testing.assert_close(share, torch.ones_like(share), rtol=1e-10, atol=1e-10)
    if optimizer == "sgd":  # first-order decreases eta ||g||^2 are non-negative
        assert ((traj.metrics["share_a"][1] >= 0) & (traj.metrics["share_a"][1] <= 1)).all()


def test_z_a_at_step_zero_is_initial_feature_rms():
    cfg = ModelConfig(width=32, rank=3, dtype="float64", batch_size=12, probe_size=8)
    model = build_model("linear", cfg, seed=1)
    traj = Population(model, [1e-2], [1e-2], "adam").run(2)
    A_init = model.lora_init()[0][0]
    expected = rms((model.probe[0] @ A_init.T)[None])
    torch.testing.assert_close(traj.metrics["z_a"][0, 0, 0], expected[0], rtol=1e-12, atol=0)
    for k in ("delta1", "delta2", "delta3", "dz_b", "dw_fro"):  # no update at step 0
        assert torch.isnan(traj.metrics[k][0]).all()


def test_paper_linear_toy_closed_form():
    """The paper's toy model (its Sec. 3.1; docs, concepts, "Feature updates"): f = (W* + b a^T) x, one sample, loss (f - y)^2 / 2,
    gradient descent, U = f - y:
    delta1 = -eta_a b^2 U ||x||^2, delta2 = -eta_b (a^T x)^2 U, delta3 = eta_a eta_b U^2 b (a^T x) ||x||^2."""
    n = 40
    cfg = ModelConfig(width=n, rank=1, init="paper", batch_size=1, probe_size=1, dtype="float64")
    model = build_model("toy", cfg, seed=3)
    assert model.scale == 1.0
    (a_row, b_col), = model.lora_init()
    a, b = a_row[0], b_col[0, 0]
    x, y = model.train_batch(1)
    x, y = x[0], y[0, 0]
    U = (model.w_star[0] @ x + b * (a @ x)) - y
    eta_a = torch.tensor([1e-3, 1e-4], dtype=torch.float64)
    eta_b = torch.tensor([1e-2, 3e-2], dtype=torch.float64)
    traj = Population(model, eta_a, eta_b, "sgd").run(1)
    d1 = -eta_a * b ** 2 * U * x.dot(x)
    d2 = -eta_b * (a @ x) ** 2 * U
    d3 = eta_a * eta_b * U ** 2 * b * (a @ x) * x.dot(x)
    # rms over a single coordinate is the absolute value
    torch.testing.assert_close(traj.metrics["delta1"][1, :, 0], d1.abs(), rtol=1e-10, atol=0)
    torch.testing.assert_close(traj.metrics["delta2"][1, :, 0], d2.abs(), rtol=1e-10, atol=0)
    torch.testing.assert_close(traj.metrics["delta3"][1, :, 0], d3.abs(), rtol=1e-10, atol=0)
    torch.testing.assert_close(traj.metrics["dz_b"][1, :, 0], (d1 + d2 + d3).abs(), rtol=1e-10, atol=0)


@pytest.mark.parametrize("name,extra", [("mlp", {"input_dim": 4, "depth": 2}),
                                        ("mlp", {"input_dim": 4, "depth": 3, "init": "2"})])
def test_probe_inputs_are_pre_step_whichever_way_the_probe_is_taken(name, extra):
    """With fixed data the probe is the first probe_size training samples. probe_size = 16
    (a prefix of the 16-sample batch) and probe_size = 64 (capped to the same 16 samples, but
    then evaluated by a separate forward pass) measure on the very same inputs, so every
    metric must agree. The deltas are defined with each layer's input z at the pre-step
    parameters (see Population._probe_inputs), for every layer, not only the first."""
    trajs = []
    for probe_size in (16, 64):
        cfg = ModelConfig(width=24, rank=2, dtype="float64", batch_size=16, probe_size=probe_size, **extra)
        model = build_model(name, cfg, seed=0)
        assert model.probe[0].shape[0] == 16
        trajs.append(Population(model, [0.3, 0.05], [0.5, 0.2], "sgd").run(3))
    prefix, separate = trajs
    for k in METRICS:
        torch.testing.assert_close(separate.metrics[k], prefix.metrics[k], rtol=1e-10, atol=1e-14,
                                   equal_nan=True, msg=lambda m, k=k: f"metric {k}: {m}")
