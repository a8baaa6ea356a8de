"""scaling.optimum: robust optima of a learning-rate grid and the slope of lambda*(n)."""
from __future__ import annotations

import numpy as np
import pytest

from scaling.optimum import diverged_seeds, equal_rate_gap, near_optimal, optimum_table, seed_mean_log_loss

GRID = 10 ** np.linspace(-4, 1, 31)  # 6 per decade
A, B = (g.ravel() for g in np.meshgrid(GRID, GRID, indexing="ij"))


def bowl(a_star, b_star, n_seeds, sigma, rng, curvature=0.05, diverge_above=None):
    """Loss = 0.01 exp(c ((log a - log a*)^2 + (log b - log b*)^2)) x noise; (seeds, pairs)."""
    d2 = (np.log(A) - np.log(a_star)) ** 2 + (np.log(B) - np.log(b_star)) ** 2
    loss = 0.01 * np.exp(curvature * d2) * np.exp(sigma * rng.standard_normal((n_seeds, A.size)))
    if diverge_above is not None:
        loss[:, A > diverge_above] = np.nan
    return loss


def test_near_optimal_is_within_the_relative_tolerance():
    mask = near_optimal(np.log(np.array([1.0, 1.005, 1.02, 2.0])), rel_tol=0.01)
    assert mask.tolist() == [True, True, False, False]


def test_centroid_recovers_a_known_optimum_and_lambda_slope_one():
    rng = np.random.default_rng(0)
    widths = [64, 128, 256, 512]
    # eta_A* ~ 1/n, eta_B* fixed: lambda* = eta_B*/eta_A* ~ n (the theory's Theta(n))
    losses = np.stack([bowl(1e-2 * 64 / n, 0.3, 4, 0.002, rng) for n in widths])
    table, fit = optimum_table(losses, A, B, widths)
    for row, n in zip(table.itertuples(), widths):
        assert row.eta_a_star == pytest.approx(1e-2 * 64 / n, rel=0.15)
        assert row.eta_b_star == pytest.approx(0.3, rel=0.15)
        assert row.lambda_star_low <= row.lambda_star <= row.lambda_star_high
    assert fit["slope"] == pytest.approx(1.0, abs=0.1)
    assert fit["ci_low"] <= fit["slope"] <= fit["ci_high"]
    assert fit["slope_eta_a"] == pytest.approx(-1.0, abs=0.1) and fit["slope_eta_b"] == pytest.approx(0.0, abs=0.1)
    assert fit["slope_eta_a_low"] <= fit["slope_eta_a"] <= fit["slope_eta_a_high"]


def test_flat_noisy_landscape_gives_a_stable_centroid_not_a_jumping_argmin():
    rng = np.random.default_rng(1)
    losses = bowl(1e-2, 1e-1, 3, 0.01, rng, curvature=0.002)[None]  # nearly flat: argmin is noise
    table, _ = optimum_table(losses, A, B, [100])
    assert table.n_near[0] > 20
    assert table.lambda_star[0] == pytest.approx(10.0, rel=0.5)


def test_diverged_pairs_are_excluded_and_fully_diverged_widths_are_nan():
    rng = np.random.default_rng(2)
    losses = np.stack([bowl(1e-2, 1e-1, 3, 0.002, rng, diverge_above=1e-1), np.full((3, A.size), np.nan)])
    table, fit = optimum_table(losses, A, B, [64, 128])
    assert np.isfinite(table.lambda_star[0]) and np.isnan(table.lambda_star[1])


def test_equal_rate_gap():
    rng = np.random.default_rng(3)
    off_diagonal = bowl(1e-3, 1.0, 3, 0.0, rng)[None]   # optimum far from eta_A = eta_B
    on_diagonal = bowl(1e-2, 1e-2, 3, 0.0, rng)[None]
    assert equal_rate_gap(off_diagonal, A, B)[0] > 2.0
    assert equal_rate_gap(on_diagonal, A, B)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no equal-rate pairs"):
        equal_rate_gap(off_diagonal, A * 1.37, B)


def test_a_product_ridge_is_reported_and_the_edge_flagged():
    """Loss depending on eta_A * eta_B only (A <-> B rescaling): ridge slope -1, lambda* unidentified."""
    rng = np.random.default_rng(4)
    d = (np.log(A) + np.log(B) - np.log(1e-4)) ** 2
    losses = (0.01 * np.exp(0.05 * d) * np.exp(0.001 * rng.standard_normal((3, A.size))))[None]
    table, _ = optimum_table(losses, A, B, [64], rel_tol=0.05)
    assert table.ridge_slope[0] == pytest.approx(-1.0, abs=0.05)
    assert table.touches_edge[0]  # the ridge runs into the grid's boundary
    bowl_table, _ = optimum_table(bowl(1e-2, 1e-1, 3, 0.0, rng)[None], A, B, [64])
    assert not bowl_table.touches_edge[0]


def test_a_pair_that_diverged_on_one_seed_is_not_trainable_in_any_resample():
    """DIVERGENCE_RULE: a pair whose surviving seeds have the lowest loss of the grid, but which
    diverged on one seed, is never the optimum, not even in a bootstrap resample that happens to
    draw only its survivors (then lambda*'s interval would stretch to that pair)."""
    rng = np.random.default_rng(5)
    losses = bowl(1e-2, 1e-1, 3, 0.002, rng)
    trap = np.argmin(np.abs(np.log(A) - np.log(1.0)) + np.abs(np.log(B) - np.log(1e-3)))  # lambda = 1e-3
    losses[1:, trap] = 1e-4  # far below the bowl's best on the survivors
    losses[0, trap] = np.nan
    table, _ = optimum_table(losses[None], A, B, [64])
    row = table.iloc[0]
    assert row.lambda_star == pytest.approx(10.0, rel=0.3)
    assert row.lambda_star_low > 1.0  # the trap's lambda (1e-3) is outside every resample's optimum
    assert row.n_not_trainable == 1 and row.n_partly_diverged == 1
    assert seed_mean_log_loss(losses)[trap] == np.inf
    assert diverged_seeds(losses)[trap] == 1
