"""The batched engine against the per-run torch.optim oracle, run by run and step by step."""
from __future__ import annotations

import inspect
import itertools

import pytest
import torch

from tests.oracle import OracleLora, oracle_loss, train_oracle
from toy_models import ModelConfig, Population, build_model

RTOL = 1e-5
# Population may offer an autograd reference path next to its hand-written gradients.
GRADIENT_PATHS = [{}] + ([{"fast_path": False}]
                         if "fast_path" in inspect.signature(Population.__init__).parameters else [])
STEPS = 5
MODELS = ("toy", "linear", "mlp", "paper-mlp")
OPTIMIZERS = ("sgd", "adam", "adamw")
# (eta_a, eta_b) per run: different ratios either way; SGD small enough to stay finite.
RATES = {
    "sgd": [(0.01, 0.05), (0.05, 0.01), (0.02, 0.02)],
    "adam": [(1e-3, 1e-2), (1e-2, 1e-3), (5e-3, 5e-2)],
    "adamw": [(1e-3, 1e-2), (1e-2, 1e-3), (5e-3, 5e-2)],
}
MODEL_KW = {"toy": {}, "linear": {}, "mlp": {"input_dim": 4, "depth": 2}, "paper-mlp": {}}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (absolute when b is zero)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300)) if b.norm() > 0 else float(a.norm())


def assert_params_match(pop: Population, run: int, expected, where: str) -> None:
    """Parameters AND their displacement from the initialisation agree to RTOL (the second
    catches a wrong update even when it is small next to the initial weights)."""
    for l, (a, b) in enumerate(expected):
        a0, b0 = pop.init[l]
        ea, eb = rel_err(pop.A[l][run], a), rel_err(pop.B[l][run], b)
        da, db = rel_err(pop.A[l][run] - a0, a - a0), rel_err(pop.B[l][run] - b0, b - b0)
        assert max(ea, eb, da, db) <= RTOL, (f"{where} run {run} layer {l}: rel err A {ea:.2e}, "
                                             f"B {eb:.2e}, dA {da:.2e}, dB {db:.2e}")


def check_against_oracle(name: str, optimizer: str, rates, cfg: ModelConfig, seed: int = 0,
                         steps: int = STEPS, weight_decay=None, step_by_step: bool = True):
    model = build_model(name, cfg, seed)
    eta_a, eta_b = [r[0] for r in rates], [r[1] for r in rates]
    kw = {} if weight_decay is None else {"weight_decay": weight_decay}
    oracles = [train_oracle(model, ea, eb, optimizer, steps, weight_decay=weight_decay)
               for ea, eb in rates]

    # The comparison means something only if every run moved and stayed finite.
    for i, o in enumerate(oracles):
        assert torch.isfinite(o.losses).all()
        for l, ((a0, b0), (a1, b1)) in enumerate(zip(o.params[0], o.params[-1])):
            moved = float((a1 - a0).norm() + (b1 - b0).norm())
            assert moved > 1e-8, f"run {i} layer {l} did not move: the test would be vacuous"

    # (1) run(steps) in one call: final parameters and the per-step loss metric, through
    # every gradient path the engine offers (hand-written fast path and autograd reference).
    for path_kw in GRADIENT_PATHS:
        pop = Population(model, eta_a, eta_b, optimizer, **kw, **path_kw)
        traj = pop.run(steps)
        assert traj.metrics["loss"].shape == (steps + 1, len(rates), len(model.layer_names))
        assert (traj.diverged_step == -1).all()
        for i, o in enumerate(oracles):
            assert_params_match(pop, i, o.params[-1], f"after run({steps}) {path_kw}")
            loss = traj.metrics["loss"][:, i, 0]
            err = ((loss - o.losses).abs() / o.losses.abs()).max().item()
            assert err <= RTOL, f"run {i} {path_kw}: per-step loss differs from the oracle by {err:.2e}"

    # (2) run(1) repeatedly: parameters after every single step (fixed data only: the
    # optimiser state persists in pop.optimizer, so this continues the same trajectory).
    if step_by_step:
        pop1 = Population(model, eta_a, eta_b, optimizer, **kw)
        for t in range(1, steps + 1):
            pop1.run(1, measure=False)
            for i, o in enumerate(oracles):
                assert_params_match(pop1, i, o.params[t], f"step {t}")
    return model, pop, traj, oracles


@pytest.mark.parametrize("name,optimizer", list(itertools.product(MODELS, OPTIMIZERS)))
def test_engine_matches_oracle(name, optimizer):
    cfg = ModelConfig(width=24, rank=3, dtype="float64", batch_size=12, probe_size=8,
                      **MODEL_KW[name])
    check_against_oracle(name, optimizer, RATES[optimizer], cfg, seed=1)


@pytest.mark.parametrize("name,optimizer,extra,weight_decay,rate_factor", [
    ("linear", "adam", {"init": "2"}, None, 1.0),
    ("mlp", "sgd", {"init": "2", "input_dim": 3}, None, 10.0),
    ("toy", "adamw", {"init": "2"}, None, 1.0),
    ("mlp", "adam", {"alpha_scaling": "sqrt-r", "alpha": 3.0, "input_dim": 4, "depth": 3}, None, 1.0),
    ("linear", "sgd", {"alpha_scaling": "sqrt-r", "alpha": 8.0, "init": "paper"}, None, 1 / 32),
    ("linear", "adam", {"alpha_scaling": "sqrt-r", "alpha": 1.0}, None, 1.0),
    ("linear", "sgd", {"loss_reduction": "sum"}, None, 1 / 16),  # sum over n outputs
    ("paper-mlp", "adam", {"alpha": 2.0}, None, 1.0),
    ("linear", "adamw", {}, 0.3, 1.0),
    ("mlp", "adam", {"input_dim": 4}, 0.05, 1.0),
    ("toy", "sgd", {}, 0.1, 1.0),
])
def test_engine_matches_oracle_variants(name, optimizer, extra, weight_decay, rate_factor):
    cfg = ModelConfig(width=16, rank=2, dtype="float64", batch_size=10, probe_size=6, **extra)
    rates = [(ea * rate_factor, eb * rate_factor) for ea, eb in RATES[optimizer]]
    check_against_oracle(name, optimizer, rates, cfg, seed=3, weight_decay=weight_decay)


@pytest.mark.parametrize("name,optimizer", [("linear", "adam"), ("toy", "sgd"), ("mlp", "adamw")])
def test_engine_matches_oracle_fresh_data(name, optimizer):
    """With data="fresh", optimiser step k trains on model.train_batch(k) (its documented
    contract), so after k steps the engine must hold the oracle's parameters."""
    cfg = ModelConfig(width=16, rank=2, dtype="float64", batch_size=8, probe_size=6, data="fresh",
                      **({"input_dim": 4} if name == "mlp" else {}))
    model = build_model(name, cfg, seed=2)
    batches = [model.train_batch(k)[0] for k in (1, 2, 3)]
    assert not torch.equal(batches[0], batches[1]) and not torch.equal(batches[1], batches[2])
    rates = RATES[optimizer]
    pop = Population(model, [r[0] for r in rates], [r[1] for r in rates], optimizer)
    traj = pop.run(4)
    for i, (ea, eb) in enumerate(rates):
        o = train_oracle(model, ea, eb, optimizer, 4)
        assert_params_match(pop, i, o.params[-1], "fresh data after run(4)")
        # loss[t]: after t updates, on the batch step t + 1 trains on (the same forward pass)
        torch.testing.assert_close(traj.metrics["loss"][:, i, 0], o.losses, rtol=RTOL, atol=0)
    # run(1) four times continues through batches 1, 2, 3, 4 as well
    pop1 = Population(model, [r[0] for r in rates], [r[1] for r in rates], optimizer)
    oracles = [train_oracle(model, ea, eb, optimizer, 4) for ea, eb in rates]
    for t in range(1, 5):
        pop1.run(1, measure=False)
        for i, o in enumerate(oracles):
            assert_params_match(pop1, i, o.params[t], f"fresh data, step {t} of run(1) x 4")


def test_run_in_pieces_equals_one_run():
    """run(2) + run(3) continues the trajectory of run(5): same parameters, same losses."""
    cfg = ModelConfig(width=20, rank=2, dtype="float64", batch_size=10, input_dim=4)
    model = build_model("mlp", cfg, seed=0)
    whole = Population(model, [1e-2, 3e-3], [1e-3, 3e-2], "adam")
    tw = whole.run(5)
    parts = Population(model, [1e-2, 3e-3], [1e-3, 3e-2], "adam")
    t1 = parts.run(2)
    t2 = parts.run(3)
    for pw, pp in zip(whole.A + whole.B, parts.A + parts.B):
        assert rel_err(pp, pw) < 1e-12
    torch.testing.assert_close(t1.metrics["loss"][:, :, 0], tw.metrics["loss"][:3, :, 0], rtol=1e-12, atol=0)
    torch.testing.assert_close(t2.metrics["loss"][:, :, 0], tw.metrics["loss"][2:, :, 0], rtol=1e-12, atol=0)
    # Step 0 of a call holds only the initial state; the updates of steps 3..5 must agree.
    for k in ("delta1", "delta2", "dz_b", "dw_fro", "share_a"):
        torch.testing.assert_close(t2.metrics[k][1:], tw.metrics[k][3:], rtol=1e-10, atol=0)


def test_runs_do_not_depend_on_their_neighbours():
    """A run trained alone equals the same run inside a population (float64)."""
    cfg = ModelConfig(width=24, rank=2, dtype="float64", batch_size=10, input_dim=4)
    model = build_model("mlp", cfg, seed=5)
    big = Population(model, [1e-3, 2e-2, 5e-3], [1e-2, 1e-3, 5e-2], "adamw")
    tb = big.run(4)
    alone = Population(model, [2e-2], [1e-3], "adamw")
    ta = alone.run(4)
    for pb, pa in zip(big.A + big.B, alone.A + alone.B):
        assert rel_err(pb[1], pa[0]) < 1e-10
    for k in tb.metrics:
        torch.testing.assert_close(tb.metrics[k][:, 1], ta.metrics[k][:, 0], rtol=1e-9, atol=1e-14,
                                   equal_nan=True)


def test_float32_population_tracks_oracle():
    """The default float32 engine stays close to the float64 oracle over a few Adam steps."""
    cfg32 = ModelConfig(width=32, rank=2, batch_size=16)
    m32 = build_model("linear", cfg32, seed=0)
    m64 = build_model("linear", ModelConfig(width=32, rank=2, batch_size=16, dtype="float64"), seed=0)
    assert m32.w_star.dtype == torch.float32
    torch.testing.assert_close(m32.w_star.double(), m64.w_star, rtol=1e-6, atol=1e-7)
    pop = Population(m32, [1e-3, 1e-2], [1e-2, 1e-3], "adam")
    pop.run(4)
    for i, (ea, eb) in enumerate([(1e-3, 1e-2), (1e-2, 1e-3)]):
        o = train_oracle(m64, ea, eb, "adam", 4)
        a, b = o.params[-1][0]
        assert rel_err(pop.A[0][i], a) < 1e-3 and rel_err(pop.B[0][i], b) < 1e-3


# -- the frozen pieces the oracle reads --------------------------------------------------------
@pytest.mark.parametrize("alpha,scaling,expected", [(None, "r", 1.0), (8.0, "r", 2.0),
                                                    (None, "sqrt-r", 2.0), (8.0, "sqrt-r", 4.0),
                                                    (None, "none", 1.0), (8.0, "none", 8.0)])
def test_lora_scale(alpha, scaling, expected):
    cfg = ModelConfig(width=16, rank=4, alpha=alpha, alpha_scaling=scaling, dtype="float64")
    assert cfg.lora_scale == pytest.approx(expected)
    assert build_model("linear", cfg, seed=0).scale == pytest.approx(expected)


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_alpha_scaling_none_changes_exactly_the_scale(name):
    """'none' (s = alpha, rank-free) against 'r' with alpha * r: the same scale, so the same model
    (base, data, init and every prediction); against 'r' with the same alpha only the LoRA branch
    differs, by exactly the factor r."""
    extra = {"input_dim": 3} if name == "mlp" else {}
    none = build_model(name, ModelConfig(width=16, rank=4, alpha=3.0, alpha_scaling="none", dtype="float64", **extra), 0)
    same = build_model(name, ModelConfig(width=16, rank=4, alpha=12.0, alpha_scaling="r", dtype="float64", **extra), 0)
    by_r = build_model(name, ModelConfig(width=16, rank=4, alpha=3.0, alpha_scaling="r", dtype="float64", **extra), 0)
    assert none.scale == same.scale == 3.0 and by_r.scale == 0.75
    x, _ = none.train_batch(1)
    (A, B), *rest = none.lora_init()
    A, B = A[None] + 0.1, B[None] + 0.1  # move off Init[1]'s zero B so the branch is non-zero
    As, Bs = [A] + [a[None] for a, _ in rest], [B] + [b[None] for _, b in rest]
    assert torch.equal(none.forward(x, As, Bs)[0], same.forward(x, As, Bs)[0])
    z = none.layer_inputs(x, As, Bs)[0]
    assert torch.allclose(none.lora(z, A, B), 4 * by_r.lora(z, A, B))
    with pytest.raises(ValueError, match="alpha scaling"):
        ModelConfig(width=16, alpha_scaling="rank").check()


@pytest.mark.parametrize("name", MODELS)
def test_oracle_forward_matches_engine_forward(name):
    """Oracle and engine agree on the initial predictions (catches a wrong base in the oracle)."""
    cfg = ModelConfig(width=16, rank=2, dtype="float64", batch_size=7, init="paper",
                      **({"input_dim": 3} if name == "mlp" else {}))
    model = build_model(name, cfg, seed=4)
    x, y = model.train_batch(1)
    net = OracleLora(model)
    init = model.lora_init()
    pred, zs = model.forward(x, [a[None] for a, _ in init], [b[None] for _, b in init])
    torch.testing.assert_close(pred[0], net(x), rtol=1e-12, atol=1e-12)
    assert len(zs) == len(model.layer_names)
    torch.testing.assert_close(model.loss(pred, y)[0], oracle_loss(net(x), y), rtol=1e-12, atol=0)


@pytest.mark.parametrize("init", ["1", "2", "zero", "paper"])
def test_lora_init_schemes(init):
    cfg = ModelConfig(width=64, rank=3, init=init, dtype="float64")
    (A, B), = build_model("linear", cfg, seed=0).lora_init()
    assert A.shape == (3, 64) and B.shape == (64, 3)
    a_zero, b_zero = bool((A == 0).all()), bool((B == 0).all())
    assert (a_zero, b_zero) == {"1": (False, True), "2": (True, False), "zero": (True, True),
                                "paper": (False, False)}[init]
    if not a_zero:  # A ~ N(0, 1/n_in): n_in * var ~ 1
        assert 0.6 < float(A.var() * 64) < 1.5
    if not b_zero:  # B ~ N(0, 1)
        assert 0.6 < float(B.var()) < 1.5


def test_models_are_reproducible_and_seeded():
    cfg = ModelConfig(width=16, rank=2, dtype="float64", input_dim=3)
    m1, m2, m3 = (build_model("mlp", cfg, seed=s) for s in (7, 7, 8))
    assert torch.equal(m1.w_in, m2.w_in) and torch.equal(m1.train_batch(1)[0], m2.train_batch(1)[0])
    assert not torch.equal(m1.w_in, m3.w_in)
    assert torch.equal(m1.lora_init()[1][0], m2.lora_init()[1][0])


def test_test_loss_and_unmeasured_runs():
    """test_loss[t] is the loss on model.test_batch(size) after t updates; measure=False
    records the loss only, with the same numbers."""
    cfg = ModelConfig(width=16, rank=2, dtype="float64", batch_size=10, input_dim=3)
    model = build_model("mlp", cfg, seed=6)
    rates = [(1e-2, 1e-3), (2e-3, 3e-2)]
    traj = Population(model, [r[0] for r in rates], [r[1] for r in rates], "adam").run(3, test_size=40)
    quiet = Population(model, [r[0] for r in rates], [r[1] for r in rates], "adam").run(3, measure=False)
    assert set(quiet.metrics) == {"loss"}
    torch.testing.assert_close(quiet.metrics["loss"][:, :, 0], traj.metrics["loss"][:, :, 0], rtol=1e-12, atol=0)
    xt, yt = model.test_batch(40)
    assert xt.shape[0] == 40 and not torch.equal(xt[:10], model.train_batch(1)[0])
    for i, (ea, eb) in enumerate(rates):
        o = train_oracle(model, ea, eb, "adam", 3)
        expected = torch.stack([OracleLora(model).load(p).loss(xt, yt).detach() for p in o.params])
        torch.testing.assert_close(traj.metrics["test_loss"][:, i, 0], expected, rtol=RTOL, atol=0)
