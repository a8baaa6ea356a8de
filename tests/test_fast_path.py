"""The hand-written fast paths against the autograd reference, in float64.

Every model that implements ``loss_and_grads`` must give the loss, the gradients and the
layer inputs of ``autograd_loss_and_grads`` (its ``forward`` differentiated by autograd) to
1e-10 relative; whole populations trained either way must record the same trajectories,
measurement included. The fused Adam step is checked against the plain one likewise.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from toy_models import MODELS, ModelConfig, Population, build_model
from toy_models.optim import BatchedOptimizer

RTOL = 1e-10

CONFIGS = {  # model -> list of ModelConfig keyword sets (float64 is added)
    "toy": [{"init": "paper"}, {"init": "1", "loss_reduction": "sum"}, {"init": "2", "rank": 1}],
    "linear": [{"init": "paper"}, {"init": "1", "loss_reduction": "sum"},
               {"init": "2", "alpha": 8.0, "alpha_scaling": "sqrt-r"}],
    "mlp": [{"init": "paper", "input_dim": 4, "depth": 3}, {"init": "1", "depth": 1},
            {"init": "2", "input_dim": 3, "loss_reduction": "sum", "alpha": 2.0},
            {"init": "1", "depth": 3, "detach_lora_input": True}],
    "paper-mlp": [{}, {"init": "1"}, {"init": "2", "alpha": 3.0, "alpha_scaling": "sqrt-r"}],
}


def fast_models() -> list[str]:
    return [name for name in MODELS if build_model(name, ModelConfig(width=8, rank=2), 0).has_fast_path]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.norm()
    return float((a - b).norm() / scale) if scale > 0 else float(a.norm())


def random_factors(model, runs: int, seed: int = 0):
    """The model's initial factors plus independent noise per run, (R, ...) each, so that
    every run differs and no factor is zero (the gradients are then all non-trivial)."""
    g = torch.Generator().manual_seed(seed)
    As, Bs = [], []
    for a, b in model.lora_init():
        As.append(a + 0.3 * torch.randn(runs, *a.shape, generator=g, dtype=a.dtype) / a.shape[-1] ** 0.5)
        Bs.append(b + 0.3 * torch.randn(runs, *b.shape, generator=g, dtype=b.dtype))
    return As, Bs


def test_the_toy_models_have_fast_paths():
    assert set(fast_models()) >= {"toy", "linear", "mlp", "paper-mlp"}


@pytest.mark.parametrize("name,k", [(n, k) for n in CONFIGS for k in range(len(CONFIGS[n]))])
def test_loss_and_grads_equal_autograd(name, k):
    cfg = ModelConfig(**{"width": 24, "rank": 3, "dtype": "float64", "batch_size": 40,
                         **CONFIGS[name][k]})
    model = build_model(name, cfg, seed=k)
    assert model.has_fast_path
    As, Bs = random_factors(model, runs=5, seed=k)
    for x, y in (model.train_batch(1), model.test_batch(30)):
        loss_ref, grads_ref, z_ref = model.autograd_loss_and_grads(x, y, As, Bs)
        loss, grads, z = model.loss_and_grads(x, y, As, Bs)
        assert loss.shape == loss_ref.shape == (5,)
        assert rel(loss, loss_ref) <= RTOL
        assert len(grads) == len(grads_ref) == 2 * len(model.layer_names)
        for g, g_ref in zip(grads, grads_ref):
            assert g.shape == g_ref.shape
            assert g_ref.norm() > 0 and rel(g, g_ref) <= RTOL
        assert len(z) == len(z_ref)
        for zi, zr in zip(z, z_ref):
            torch.testing.assert_close(zi.expand_as(zr), zr, rtol=RTOL, atol=0)
        loss_only, no_grads, _ = model.loss_and_grads(x, y, As, Bs, grads=False)
        assert no_grads is None and rel(loss_only, loss_ref) <= RTOL


def test_the_stacking_control_cuts_only_the_lora_path_to_the_layers_below():
    """Detached LoRA inputs: the same loss, the same gradients of the top layer, other
    gradients of the layer below (its gradient no longer flows back through B2 A2)."""
    cfg = ModelConfig(width=24, rank=3, dtype="float64", batch_size=40, depth=2)
    plain = build_model("mlp", cfg, seed=0)
    control = build_model("mlp", ModelConfig(**{**cfg.__dict__, "detach_lora_input": True}), seed=0)
    As, Bs = random_factors(plain, runs=2)
    x, y = plain.train_batch(1)
    loss, (dA1, dA2, dB1, dB2), _ = plain.loss_and_grads(x, y, As, Bs)
    loss_c, (dA1_c, dA2_c, dB1_c, dB2_c), _ = control.loss_and_grads(x, y, As, Bs)
    assert rel(loss_c, loss) <= RTOL and rel(dA2_c, dA2) <= RTOL and rel(dB2_c, dB2) <= RTOL
    assert rel(dA1_c, dA1) > 1e-3 and rel(dB1_c, dB1) > 1e-3


@pytest.mark.parametrize("block_bytes", [1, 3 * 24 * 40 * 8, None])
def test_paper_mlp_blocks_of_runs(block_bytes):
    """One run per block, uneven blocks (3 runs, then 2) and one block: all the same."""
    cfg = ModelConfig(width=24, rank=3, dtype="float64", batch_size=40)
    model = build_model("paper-mlp", cfg, seed=0)
    As, Bs = random_factors(model, runs=5)
    x, y = model.train_batch(1)
    loss_ref, grads_ref, _ = model.autograd_loss_and_grads(x, y, As, Bs)
    model.block_bytes = block_bytes
    loss, grads, _ = model.loss_and_grads(x, y, As, Bs)
    assert rel(loss, loss_ref) <= RTOL
    assert all(rel(g, r) <= RTOL for g, r in zip(grads, grads_ref))


TRAJECTORY_CASES = [
    ("toy", "sgd", {"init": "paper"}, [(1e-2, 5e-2), (5e-2, 1e-2), (40.0, 40.0)]),
    ("linear", "adam", {"init": "1"}, [(1e-3, 1e-2), (1e-2, 1e-3), (1e5, 1e5)]),
    ("linear", "sgd", {"init": "paper", "loss_reduction": "sum"}, [(1e-3, 2e-3), (3e-3, 1e-3)]),
    ("mlp", "adamw", {"input_dim": 4, "depth": 2, "init": "2"}, [(1e-3, 1e-2), (1e-2, 1e-3)]),
    ("mlp", "sgd", {"input_dim": 4, "depth": 3, "probe_size": 64}, [(0.5, 0.5), (3e4, 3e4)]),
    ("paper-mlp", "sgd", {}, [(1e-2, 1e-1), (1e-1, 1e-2), (1e4, 1e4)]),
    # (its own init: with A = 0 or B = 0 and no base matrix, the paper's MLP sits at a saddle)
    ("paper-mlp", "adam", {"data": "fresh", "alpha": 2.0}, [(1e-2, 1e-2), (1e-3, 1e-1)]),
]


@pytest.mark.parametrize("name,optimizer,extra,rates", TRAJECTORY_CASES)
def test_population_fast_path_equals_autograd(name, optimizer, extra, rates):
    """Training + every measured metric, fast path vs autograd, including runs that diverge
    (and are dropped from the computation) and a test loss."""
    cfg = ModelConfig(width=20, rank=2, dtype="float64", batch_size=16, **{"probe_size": 8, **extra})
    model = build_model(name, cfg, seed=1)
    eta_a, eta_b = [r[0] for r in rates], [r[1] for r in rates]
    pops = [Population(model, eta_a, eta_b, optimizer, fast_path=fast) for fast in (True, False)]
    trajs = [p.run(6, measure=True, test_size=12) for p in pops]
    fast, ref = trajs
    assert torch.equal(fast.diverged_step, ref.diverged_step)
    if any(ea >= 1e3 for ea in eta_a):  # the diverging run must really diverge
        assert (ref.diverged_step >= 0).any()
    assert set(fast.metrics) == set(ref.metrics)
    for key, value in ref.metrics.items():
        assert torch.isfinite(value).any(), key
        torch.testing.assert_close(fast.metrics[key], value, rtol=RTOL, atol=1e-14, equal_nan=True,
                                   msg=lambda m, key=key: f"metric {key}: {m}")
    for p_fast, p_ref in zip(pops[0].A + pops[0].B, pops[1].A + pops[1].B):
        torch.testing.assert_close(p_fast, p_ref, rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("kind,weight_decay", list(itertools.product(["adam", "adamw"], [None, 0.1])))
def test_fused_adam_equals_plain_adam(kind, weight_decay):
    """BatchedOptimizer's fused step (torch's fused Adam kernel) against its plain step."""
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 40, generator=g, dtype=torch.float64)
    lr = torch.tensor([1e-3, 1e-2, 0.0], dtype=torch.float64)
    grads = [torch.randn(3, 40, generator=g, dtype=torch.float64) for _ in range(8)]
    results = []
    saved = BatchedOptimizer._fused_ok
    try:
        for fused in (None, False):  # None: probe (fused if available); False: plain
            BatchedOptimizer._fused_ok = fused
            opt = BatchedOptimizer(kind, [p0.clone()], [lr], weight_decay=weight_decay)
            for gr in grads:
                opt.step([gr])
            results.append((opt.params[0], opt.m[0], opt.v[0]))
            if fused is None and hasattr(torch, "_fused_adam_"):
                assert BatchedOptimizer._fused_ok, "the fused kernel was not used: vacuous test"
    finally:
        BatchedOptimizer._fused_ok = saved
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    assert torch.equal(results[0][0][2], p0[2] * 1.0)  # a zero rate never moves a run


def test_pieces_with_divergence_equal_one_run():
    """run(2) + run(4) == run(6) when a run diverges in the second piece: the threshold is
    factor x the initial loss (kept across calls) and the dropped run stays dropped."""
    cfg = ModelConfig(width=32, rank=2, dtype="float64", batch_size=16)
    model = build_model("linear", cfg, seed=0)
    rates = ([1e-2, 20.0, 3.0], [1e-2, 20.0, 3.0])
    whole = Population(model, *rates, "sgd", divergence_factor=100.0)
    tw = whole.run(6)
    assert tw.diverged_step.tolist() == [-1, 3, -1]
    parts = Population(model, *rates, "sgd", divergence_factor=100.0)
    parts.run(2)
    tp = parts.run(4)
    assert torch.equal(tp.diverged_step, tw.diverged_step)
    for key in tw.metrics:
        torch.testing.assert_close(tp.metrics[key][1:], tw.metrics[key][3:], rtol=RTOL, atol=1e-14,
                                   equal_nan=True)
    torch.testing.assert_close(tp.metrics["loss"], tw.metrics["loss"][2:], rtol=RTOL, atol=0,
                               equal_nan=True)
    for pw, pp in zip(whole.A + whole.B, parts.A + parts.B):
        torch.testing.assert_close(pp, pw, rtol=RTOL, atol=0)
