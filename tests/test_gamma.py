"""scaling.gamma.fit_power_law: exponents, bootstrap intervals over seeds, the settled flag."""
from __future__ import annotations

import numpy as np
import pytest

from scaling.gamma import fit_power_law

WIDTHS = np.array([64, 128, 256, 512, 1024], dtype=float)


def synthetic(gamma: float, n_seeds: int, sigma: float, rng: np.random.Generator,
              widths=WIDTHS, prefactor: float = 3.0):
    """value = c n^gamma x exp(sigma N(0, 1)): one row per (seed, width)."""
    w = np.tile(widths, n_seeds)
    s = np.repeat(np.arange(n_seeds), len(widths))
    v = prefactor * w ** gamma * np.exp(sigma * rng.standard_normal(w.size))
    return w, v, s


@pytest.mark.parametrize("gamma", [-1.0, -0.5, 0.0, 0.5, 1.0])
def test_exact_power_law_is_recovered_exactly(gamma):
    w, v, s = synthetic(gamma, 3, 0.0, np.random.default_rng(0))
    fit = fit_power_law(w, v, s)
    assert fit.slope == pytest.approx(gamma, abs=1e-10)
    assert fit.ci_low - 1e-9 <= gamma <= fit.ci_high + 1e-9
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(fit.local_slopes, gamma, atol=1e-10) and len(fit.local_slopes) == len(WIDTHS) - 1
    assert fit.settled
    assert (fit.n_widths, fit.n_seeds) == (5, 3)


@pytest.mark.parametrize("gamma,seed", [(-1.0, 1), (-0.5, 2), (0.0, 3), (0.5, 4), (1.0, 5), (2.0, 6)])
def test_noisy_power_law_slope_and_interval(gamma, seed):
    """sigma = 0.1 log-normal noise, 6 seeds: the per-seed slope has sd ~ 0.046, the mean ~ 0.019."""
    w, v, s = synthetic(gamma, 6, 0.1, np.random.default_rng(seed))
    fit = fit_power_law(w, v, s)
    assert abs(fit.slope - gamma) < 0.08
    assert fit.ci_low < fit.slope < fit.ci_high
    assert 0.005 < fit.ci_high - fit.ci_low < 0.3
    if gamma != 0:  # r2 of a flat curve is noise over noise
        assert fit.r2 > 0.95
    assert fit.n_seeds == 6 and fit.n_widths == 5


def test_slope_is_invariant_to_prefactor_and_seed_labels():
    w, v, s = synthetic(-0.7, 4, 0.1, np.random.default_rng(9))
    a = fit_power_law(w, v, s)
    b = fit_power_law(w, 1e-6 * v, s + 100)
    assert b.slope == pytest.approx(a.slope, abs=1e-12)
    assert b.ci_low == pytest.approx(a.ci_low, abs=1e-9) and b.ci_high == pytest.approx(a.ci_high, abs=1e-9)


def _coverage(n_datasets: int, n_seeds: int, gamma: float = -1.0, sigma: float = 0.2) -> float:
    hits = 0
    for rep in range(n_datasets):
        w, v, s = synthetic(gamma, n_seeds, sigma, np.random.default_rng(10_000 + rep))
        fit = fit_power_law(w, v, s)
        hits += fit.ci_low <= gamma <= fit.ci_high
    return hits / n_datasets


def test_interval_coverage_with_eight_seeds():
    """Nominal 95%. A percentile bootstrap of a mean over 8 seeds under-covers: it uses the
    plug-in sd (x sqrt(7/8)) and normal rather than t_7 quantiles, so about 89% is expected
    (P(|t_7| < 1.96 sqrt(7/8))), ~87% measured over 1000 datasets. 400 datasets: sd ~ 0.017."""
    cov = _coverage(400, 8)
    assert 0.82 <= cov <= 0.97, cov


def test_interval_coverage_approaches_nominal_with_many_seeds():
    cov = _coverage(200, 30)
    assert 0.89 <= cov <= 0.99, cov


def test_settled_false_for_a_bending_curve():
    """value = n^-1 + a floor: local slopes drift from -1 towards 0 at the largest widths."""
    widths = 4.0 ** np.arange(2, 7)  # 16 .. 4096
    rng = np.random.default_rng(0)
    for sigma, n_seeds in ((0.0, 1), (0.03, 4)):
        w = np.tile(widths, n_seeds)
        s = np.repeat(np.arange(n_seeds), len(widths))
        v = (w ** -1.0 + 1 / 1024) * np.exp(sigma * rng.standard_normal(w.size))
        fit = fit_power_law(w, v, s)
        local = fit.local_slopes
        assert abs(local[-1] - local[-2]) > 0.2  # the design of the test
        assert abs(local[-1] - fit.slope) > 0.3
        assert not fit.settled


def test_settled_true_for_a_clean_power_law():
    rng = np.random.default_rng(1)
    widths = 4.0 ** np.arange(2, 7)
    for sigma, n_seeds in ((0.0, 1), (0.02, 4)):
        w = np.tile(widths, n_seeds)
        s = np.repeat(np.arange(n_seeds), len(widths))
        fit = fit_power_law(w, 2 * w ** -0.5 * np.exp(sigma * rng.standard_normal(w.size)), s)
        assert fit.settled
        assert fit.slope == pytest.approx(-0.5, abs=0.03)


def test_non_positive_and_non_finite_values_are_dropped():
    w = np.array([64, 128, 256, 512, 512, 1024, 1024], dtype=float)
    v = w ** -1.0
    v[3], v[5] = 0.0, np.nan  # width 512 keeps one value, 1024 keeps one
    fit = fit_power_law(w, v)
    assert fit.slope == pytest.approx(-1.0, abs=1e-10) and fit.n_widths == 5
    v2 = np.array([1.0, -2.0, np.inf, 0.0, np.nan, np.nan, -0.5])
    assert fit_power_law(w, v2) is None  # only width 64 keeps a usable value
    v2[6] = 0.5
    assert fit_power_law(w, v2).n_widths == 2


def test_fewer_than_two_widths_gives_none():
    assert fit_power_law([128, 128, 128], [1.0, 2.0, 3.0], [0, 1, 2]) is None
    assert fit_power_law([128, 256], [1.0, -1.0]) is None
    two = fit_power_law([128, 256], [1.0, 0.5])
    assert two is not None and two.slope == pytest.approx(-1.0) and two.settled


def test_settled_false_for_a_slow_crossover_the_last_slope_misses():
    """value = 1 + 0.1 n^0.5 (a Theta(1) part overtaken by a growing one, as Z_A(0) + updates):
    the local slopes climb evenly, so no single one stands out from the fit, but their drift does."""
    widths = 2.0 ** np.arange(7, 12)  # 128 .. 2048
    rng = np.random.default_rng(3)
    n_seeds = 8
    w = np.tile(widths, n_seeds)
    s = np.repeat(np.arange(n_seeds), len(widths))
    v = (1 + 0.1 * w ** 0.5) * np.exp(0.02 * rng.standard_normal(w.size))
    fit = fit_power_law(w, v, s)
    assert np.all(np.diff(fit.local_slopes) > 0)
    assert fit.drift > 0.1 and fit.drift_ci[0] > 0
    assert not fit.settled


def test_drift_is_zero_for_a_power_law_and_noise_does_not_unsettle_it():
    widths = 2.0 ** np.arange(7, 12)
    unsettled = 0
    for rep in range(40):
        w, v, s = synthetic(0.5, 8, 0.1, np.random.default_rng(500 + rep), widths=widths)
        fit = fit_power_law(w, v, s)
        unsettled += not fit.settled
    exact = fit_power_law(*synthetic(0.5, 2, 0.0, np.random.default_rng(0), widths=widths))
    assert exact.drift == pytest.approx(0.0, abs=1e-10)
    assert unsettled <= 6, unsettled  # a false alarm needs a significant AND > 0.1 drift


# -- corrections to scaling ----------------------------------------------------------------
from scaling.gamma import SHARE_BOUNDS, fit_corrected, fit_with_correction  # noqa: E402

SUITE_WIDTHS = 2.0 ** np.arange(7, 14)  # 128 .. 8192, the full suite's mlp widths


def planted(gamma: float, d: float, omega: float, n_seeds: int, sigma: float, seed: int, widths=SUITE_WIDTHS):
    """value = 2 n^gamma (1 + d n^-omega) x exp(sigma N(0, 1)): a leading power with a correction."""
    rng = np.random.default_rng(seed)
    w = np.tile(widths, n_seeds)
    s = np.repeat(np.arange(n_seeds), len(widths))
    return w, 2 * w ** gamma * (1 + d * w ** -omega) * np.exp(sigma * rng.standard_normal(w.size)), s


@pytest.mark.parametrize("d", [-4.5, 6.0])  # from below (share -0.40 at n = 128) and from above (+0.53)
def test_corrected_fit_recovers_a_planted_exponent_the_straight_fit_misses(d):
    """gamma = -1 with an n^-1/2 correction, 32 seeds: the straight slope is pulled away from -1
    by the correction and its interval excludes -1; the corrected gamma's interval holds it."""
    w, v, s = planted(-1.0, d, 0.5, 32, 0.1, seed=7)
    straight, corrected = fit_with_correction(w, v, s, omega=0.5)
    assert not straight.ci_low <= -1.0 <= straight.ci_high
    assert abs(straight.slope + 1.0) > 0.08
    assert corrected.ci_low <= -1.0 <= corrected.ci_high and abs(corrected.slope + 1.0) < 0.05
    assert corrected.share == pytest.approx(d * 128 ** -0.5, abs=0.15) and not corrected.at_bound
    assert corrected.settled and corrected.omega == 0.5 and corrected.quality < 2.5
    assert fit_corrected(w, v, s, omega=0.5).slope == corrected.slope


def test_the_correction_explains_the_curvature_the_straight_fit_calls_unsettled():
    """n^-1 approach with a large amplitude (the batch's cross terms): the straight fit's local
    slopes trend (not settled); the corrected curve's local slopes are flat."""
    w, v, s = planted(0.0, -60.0, 1.0, 32, 0.05, seed=3)
    straight, corrected = fit_with_correction(w, v, s, omega=1.0)
    assert not straight.settled
    assert corrected.settled and abs(corrected.slope) < 0.03 and np.allclose(corrected.local_slopes, 0, atol=0.06)


def test_exact_data_one_seed_and_a_negative_correction_near_the_bound():
    """1 + d n^-omega must stay positive: a share of -0.9 at the narrowest width is recovered
    exactly from noiseless data (one seed: the least-squares t-interval, here of zero width)."""
    w = SUITE_WIDTHS
    v = w ** 0.5 * (1 - 0.9 * (w / w[0]) ** -1.0)
    fit = fit_corrected(w, v, None, omega=1.0)
    assert fit.slope == pytest.approx(0.5, abs=1e-6) and fit.share == pytest.approx(-0.9, abs=1e-5)
    assert fit.ci_low == pytest.approx(0.5, abs=1e-5) and fit.ci_high == pytest.approx(0.5, abs=1e-5)
    assert fit.n_seeds == 1 and not fit.at_bound


def test_a_correction_larger_than_the_leading_term_sits_on_the_bound():
    w, v, s = planted(0.0, 30.0, 0.5, 32, 0.05, seed=5)  # share 2.7 at n = 128: not a correction there
    fit = fit_corrected(w, v, s, omega=0.5)
    assert fit.at_bound and fit.share == SHARE_BOUNDS[1] and fit.share_ci[0] > 0


def test_corrected_interval_coverage():
    """No correction planted (d = 0) and one planted (d = 3): the corrected 95% interval holds
    gamma in most datasets (16 seeds: a percentile bootstrap under-covers a little)."""
    hits = 0
    for rep in range(40):
        w, v, s = planted(-0.5, 3.0 * (rep % 2), 0.5, 16, 0.2, seed=100 + rep)
        fit = fit_corrected(w, v, s, omega=0.5)
        hits += fit.ci_low <= -0.5 <= fit.ci_high
    assert hits >= 32, hits


def test_corrected_fit_needs_four_widths_and_a_positive_omega():
    w, v, s = planted(0.0, 1.0, 0.5, 4, 0.1, seed=0, widths=SUITE_WIDTHS[:3])
    straight, corrected = fit_with_correction(w, v, s, omega=0.5)
    assert corrected is None and straight.n_widths == 3
    assert fit_with_correction(w, v, s)[1] is None  # no omega: the straight fit alone
    with pytest.raises(ValueError, match="omega"):
        fit_corrected(w, v, s, omega=0.0)


def test_the_straight_fit_is_the_same_with_or_without_a_correction():
    w, v, s = planted(-1.0, 2.0, 0.5, 8, 0.2, seed=11)
    alone = fit_power_law(w, v, s)
    straight, _ = fit_with_correction(w, v, s, omega=0.5)
    assert (straight.slope, straight.ci_low, straight.ci_high, straight.settled) == \
        (alone.slope, alone.ci_low, alone.ci_high, alone.settled)
