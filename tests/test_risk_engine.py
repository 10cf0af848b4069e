"""Correctness of the pure-math risk engine (tickwire.engines.risk).

Every figure is checked against a reference written here independently of the
engine: NumPy/pandas order statistics for historical VaR, scipy.stats closed
forms and scipy.integrate for the parametric and Cornish-Fisher methods, the
Kupiec and Christoffersen likelihood ratios written out by hand, and finite
differences for marginal VaR. Most inputs are the real ten-stock book of
``tests/conftest.py`` (daily simple returns 2015-2024).
"""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, stats
from tickwire.engines import risk
from tickwire.routing.backends import Backend, MlxBackend, NumpyBackend, TorchBackend

LEVELS = np.array([0.9, 0.95, 0.975, 0.99, 0.995, 0.999])
HORIZONS = np.array([1, 10, 250])


# --------------------------------------------------------------------------
# fixtures and independent references
# --------------------------------------------------------------------------
def make_backend(name: str) -> Backend:
    if name == "numpy":
        return NumpyBackend()
    if name == "torch-cpu":
        pytest.importorskip("torch")
        return TorchBackend("cpu")
    pytest.importorskip("mlx.core")
    return MlxBackend()


@pytest.fixture(params=["numpy", "torch-cpu", "mlx"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return make_backend(request.param)


@pytest.fixture(scope="module")
def numpy_backend() -> NumpyBackend:
    return NumpyBackend()


@pytest.fixture(scope="module")
def pnl(returns: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(T,) daily USD P&L of the real book."""
    return returns @ positions


def exact_k(confidence_level: float, num_scenarios: int) -> int:
    """``ceil(c * T)`` in exact decimal arithmetic (no floating-point product)."""
    return max(math.ceil(Fraction(str(confidence_level)) * num_scenarios), 1)


def sorted_var_cvar(losses: np.ndarray, confidence_level: float) -> tuple[float, float]:
    """VaR = L(k), CVaR = mean(L(k..T)) over the ascending losses, k = ceil(c T)."""
    ordered = np.sort(losses)
    k = exact_k(confidence_level, losses.shape[0])
    return float(ordered[k - 1]), float(ordered[k - 1 :].mean())


def pandas_var_cvar(losses: np.ndarray, confidence_level: float) -> tuple[float, float]:
    """The same convention through pandas: the T - k + 1 largest losses."""
    s = pd.Series(losses)
    tail = s.nlargest(len(s) - exact_k(confidence_level, len(s)) + 1)
    return float(tail.min()), float(tail.mean())


def cornish_fisher_quantile(p: np.ndarray | float, skew: float, kurt: float) -> np.ndarray:
    """Standard Cornish-Fisher quantile (Zangari 1996), written from the formula."""
    z = stats.norm.ppf(p)
    return (
        z
        + (z * z - 1.0) * skew / 6.0
        + (z**3 - 3.0 * z) * kurt / 24.0
        - (2.0 * z**3 - 5.0 * z) * skew * skew / 36.0
    )


# --------------------------------------------------------------------------
# historical simulation
# --------------------------------------------------------------------------
def test_tail_count_is_t_minus_ceil_ct_plus_one_at_integer_edges() -> None:
    # c * T integral: k = c * T exactly, not one more (float products like
    # 0.1 * 10 = 1.0000000000000002 must not push k up).
    assert risk.tail_count(0.95, 2000) == 101
    assert risk.tail_count(0.99, 100) == 2
    assert risk.tail_count(0.1, 10) == 10
    assert risk.tail_count(0.999, 100) == 1  # ceil(99.9) = 100
    assert risk.tail_count(0.001, 100) == 100  # ceil(0.1) = 1
    assert risk.tail_count(0.99, 20_000_000) == 200_001
    # 0.271 * 1e8 = 27100000.000000004 in floating point; k is still 27,100,000.
    assert risk.tail_count(0.271, 100_000_000) == 72_900_001


@pytest.mark.parametrize("num_scenarios", [7, 250, 2494, 10**6, 2 * 10**7, 10**8, 3 * 10**8])
def test_tail_count_matches_exact_decimal_ceil_for_every_three_digit_level(
    num_scenarios: int,
) -> None:
    for i in range(1, 1000):
        c = i / 1000
        expected = num_scenarios - exact_k(c, num_scenarios) + 1
        assert risk.tail_count(c, num_scenarios) == expected, c


def test_historical_var_cvar_equal_sorted_loss_order_statistics(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, pnl: np.ndarray
) -> None:
    res = risk.historical_var(numpy_backend, returns, positions, LEVELS, HORIZONS)
    losses = -pnl
    for i, c in enumerate(LEVELS):
        var_ref, cvar_ref = sorted_var_cvar(losses, c)
        np.testing.assert_allclose(res.var[i], var_ref * np.sqrt(HORIZONS), rtol=1e-12)
        np.testing.assert_allclose(res.cvar[i], cvar_ref * np.sqrt(HORIZONS), rtol=1e-12)
    assert res.num_scenarios == returns.shape[0]
    np.testing.assert_array_equal(res.var_standard_error, 0.0)
    assert res.pnl_mean == pytest.approx(pnl.mean(), rel=1e-12)
    assert res.pnl_std == pytest.approx(pnl.std(ddof=1), rel=1e-12)


def test_historical_var_equals_numpy_inverted_cdf_quantile(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, pnl: np.ndarray
) -> None:
    res = risk.historical_var(numpy_backend, returns, positions, LEVELS, np.array([1]))
    ref = np.quantile(-pnl, LEVELS, method="inverted_cdf")
    np.testing.assert_allclose(res.var[:, 0], ref, rtol=1e-12)


@pytest.mark.parametrize("num_days", [2000, 2494])
def test_historical_var_cvar_equal_pandas_tail(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, num_days: int
) -> None:
    # With T = 2000 every level below has c * T integral: the edge of the ceil.
    levels = np.array([0.5, 0.9, 0.95, 0.96, 0.975, 0.99, 0.995, 0.999])
    scen = returns[-num_days:]
    res = risk.historical_var(numpy_backend, scen, positions, levels, np.array([1, 5]))
    losses = -(scen @ positions)
    for i, c in enumerate(levels):
        var_ref, cvar_ref = pandas_var_cvar(losses, c)
        np.testing.assert_allclose(res.var[i], var_ref * np.sqrt([1, 5]), rtol=1e-12)
        np.testing.assert_allclose(res.cvar[i], cvar_ref * np.sqrt([1, 5]), rtol=1e-12)


def test_historical_var_at_integer_ct_is_the_ct_th_smallest_loss(numpy_backend: Backend) -> None:
    # Losses 1..100 (one asset, position 1): VaR_0.95 = L(95), CVaR = mean(95..100).
    scen = -np.arange(1.0, 101.0)[::-1].reshape(-1, 1)
    res = risk.historical_var(numpy_backend, scen, np.array([1.0]), [0.95, 0.99], [1])
    np.testing.assert_allclose(res.var[:, 0], [95.0, 99.0])
    np.testing.assert_allclose(res.cvar[:, 0], [97.5, 99.5])


# --------------------------------------------------------------------------
# parametric normal
# --------------------------------------------------------------------------
def test_parametric_normal_matches_scipy_norm_closed_form(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, pnl: np.ndarray
) -> None:
    res = risk.parametric_normal_var(numpy_backend, returns, positions, LEVELS, HORIZONS)
    mu, sd = pnl.mean(), pnl.std(ddof=1)
    dist = stats.norm(loc=mu, scale=sd)
    for i, c in enumerate(LEVELS):
        var_ref = -dist.ppf(1.0 - c)
        # Expected loss beyond VaR: mean of a normal truncated above at -VaR.
        b = stats.norm.ppf(1.0 - c)
        cvar_ref = -(mu + sd * stats.truncnorm(-np.inf, b).mean())
        np.testing.assert_allclose(res.var[i], var_ref * np.sqrt(HORIZONS), rtol=1e-10)
        np.testing.assert_allclose(res.cvar[i], cvar_ref * np.sqrt(HORIZONS), rtol=1e-10)


def test_parametric_normal_cvar_is_tail_average_of_the_normal_quantile(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, pnl: np.ndarray
) -> None:
    res = risk.parametric_normal_var(numpy_backend, returns, positions, LEVELS, [1])
    dist = stats.norm(loc=pnl.mean(), scale=pnl.std(ddof=1))
    for i, c in enumerate(LEVELS):
        tail = 1.0 - c
        integral, _ = integrate.quad(dist.ppf, 0.0, tail, epsabs=0.0, epsrel=1e-13, limit=200)
        assert res.cvar[i, 0] == pytest.approx(-integral / tail, rel=1e-10)


# --------------------------------------------------------------------------
# Cornish-Fisher
# --------------------------------------------------------------------------
def test_cornish_fisher_var_matches_formula_with_scipy_moments(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, pnl: np.ndarray
) -> None:
    res = risk.cornish_fisher_var(numpy_backend, returns, positions, LEVELS, HORIZONS)
    skew, kurt = stats.skew(pnl), stats.kurtosis(pnl)  # population estimators, excess kurtosis
    mu, sd = pnl.mean(), pnl.std(ddof=1)
    var_ref = -(mu + sd * cornish_fisher_quantile(1.0 - LEVELS, skew, kurt))
    np.testing.assert_allclose(res.var, var_ref[:, None] * np.sqrt(HORIZONS), rtol=1e-10)


def test_cornish_fisher_cvar_equals_quad_of_cf_quantile_over_the_tail(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, pnl: np.ndarray
) -> None:
    res = risk.cornish_fisher_var(numpy_backend, returns, positions, LEVELS, HORIZONS)
    skew, kurt = stats.skew(pnl), stats.kurtosis(pnl)
    mu, sd = pnl.mean(), pnl.std(ddof=1)
    for i, c in enumerate(LEVELS):
        tail = 1.0 - c
        integral, _ = integrate.quad(
            cornish_fisher_quantile, 0.0, tail, args=(skew, kurt), epsabs=0.0, epsrel=1e-13
        )
        cvar_ref = -(mu + sd * integral / tail)
        np.testing.assert_allclose(res.cvar[i], cvar_ref * np.sqrt(HORIZONS), rtol=1e-8)


def test_cornish_fisher_raises_far_tail_var_for_fat_tailed_real_pnl(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, pnl: np.ndarray
) -> None:
    assert stats.kurtosis(pnl) > 3.0  # daily equity P&L is fat-tailed
    cf = risk.cornish_fisher_var(numpy_backend, returns, positions, [0.99, 0.999], [1])
    normal = risk.parametric_normal_var(numpy_backend, returns, positions, [0.99, 0.999], [1])
    assert np.all(cf.var > normal.var)
    assert np.all(cf.cvar > normal.cvar)


def test_cornish_fisher_reduces_to_normal_without_skew_or_excess_kurtosis(
    numpy_backend: Backend,
) -> None:
    # Values {0, 0, 0, 0, +1, -1}: symmetric, and m4 / m2^2 = (1/3) / (1/3)^2 = 3.
    base = np.tile([0.0, 0.0, 0.0, 0.0, 1.0, -1.0], 100) * 0.01 + 0.0005
    scen = np.column_stack([base, 0.5 * base + 0.0002])
    pos = np.array([1e6, -3e5])
    pnl = scen @ pos
    assert abs(stats.skew(pnl)) < 1e-12
    assert abs(stats.kurtosis(pnl)) < 1e-12
    cf = risk.cornish_fisher_var(numpy_backend, scen, pos, LEVELS, HORIZONS)
    normal = risk.parametric_normal_var(numpy_backend, scen, pos, LEVELS, HORIZONS)
    np.testing.assert_allclose(cf.var, normal.var, rtol=1e-10)
    np.testing.assert_allclose(cf.cvar, normal.cvar, rtol=1e-10)


# --------------------------------------------------------------------------
# Monte Carlo
# --------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["numpy", "torch-cpu", "mlx"])
def test_monte_carlo_converges_to_parametric_normal(
    backend_name: str, returns: np.ndarray, positions: np.ndarray
) -> None:
    # The simulated P&L is N(mu . w, w' Sigma w) with the sample moments, which
    # are the mean and variance of the historical P&L: the normal VaR's inputs.
    be = make_backend(backend_name)
    levels = np.array([0.95, 0.99])
    mc = risk.monte_carlo_var(be, returns, positions, levels, [1, 10], 200_000, seed=11)
    normal = risk.parametric_normal_var(be, returns, positions, levels, [1, 10])
    assert np.all(mc.var_standard_error > 0.0)
    assert np.all(np.abs(mc.var - normal.var) < 4.0 * mc.var_standard_error)
    np.testing.assert_allclose(mc.cvar, normal.cvar, rtol=0.02)
    assert mc.num_scenarios == 200_000
    assert mc.pnl_mean == pytest.approx(normal.pnl_mean, abs=0.02 * normal.pnl_std)
    assert mc.pnl_std == pytest.approx(normal.pnl_std, rel=0.01)


def test_monte_carlo_standard_error_matches_asymptotic_order_statistic_error(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, pnl: np.ndarray
) -> None:
    levels = np.array([0.95, 0.99])
    m = 1_000_000
    mc = risk.monte_carlo_var(numpy_backend, returns, positions, levels, [1, 4], m, seed=5)
    z = stats.norm.ppf(levels)
    # sqrt(c (1-c) / M) / f(VaR) with f the normal density of P&L at VaR.
    se_ref = np.sqrt(levels * (1.0 - levels) / m) * pnl.std(ddof=1) / stats.norm.pdf(z)
    np.testing.assert_allclose(mc.var_standard_error[:, 0], se_ref, rtol=0.25)
    np.testing.assert_allclose(mc.var_standard_error[:, 1], 2.0 * mc.var_standard_error[:, 0])


def test_monte_carlo_standard_error_shrinks_like_one_over_sqrt_m(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray
) -> None:
    levels = np.array([0.95, 0.99])

    def mean_se(m: int) -> np.ndarray:
        runs = [
            risk.monte_carlo_var(numpy_backend, returns, positions, levels, [1], m, seed=s)
            for s in range(8)
        ]
        return np.mean([r.var_standard_error[:, 0] for r in runs], axis=0)

    ratio = mean_se(10_000) / mean_se(1_000_000)
    assert np.all((ratio > 10.0 * 0.75) & (ratio < 10.0 / 0.75)), ratio


def test_monte_carlo_standard_error_matches_spread_across_seeds(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray
) -> None:
    runs = [
        risk.monte_carlo_var(numpy_backend, returns, positions, [0.95], [1], 20_000, seed=s)
        for s in range(60)
    ]
    spread = np.std([r.var[0, 0] for r in runs], ddof=1)
    reported = np.mean([r.var_standard_error[0, 0] for r in runs])
    assert reported == pytest.approx(spread, rel=0.3)


def test_monte_carlo_same_seed_and_backend_is_identical(
    backend: Backend, returns: np.ndarray, positions: np.ndarray
) -> None:
    args = (returns, positions, LEVELS, HORIZONS, 50_000)
    a = risk.monte_carlo_var(backend, *args, seed=42)
    b = risk.monte_carlo_var(backend, *args, seed=42)
    np.testing.assert_array_equal(a.var, b.var)
    np.testing.assert_array_equal(a.cvar, b.cvar)
    np.testing.assert_array_equal(a.var_standard_error, b.var_standard_error)
    assert a.pnl_mean == b.pnl_mean
    assert a.pnl_std == b.pnl_std


def test_monte_carlo_different_seed_gives_different_draws(
    backend: Backend, returns: np.ndarray, positions: np.ndarray
) -> None:
    args = (returns, positions, LEVELS, [1], 50_000)
    a = risk.monte_carlo_var(backend, *args, seed=1)
    b = risk.monte_carlo_var(backend, *args, seed=2)
    assert np.all(a.var != b.var)
    assert a.pnl_mean != b.pnl_mean


def test_monte_carlo_stop_aborts_between_chunks(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray
) -> None:
    calls: list[int] = []

    def stop_after_first_chunk() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(TimeoutError):
        risk.monte_carlo_var(
            numpy_backend, returns, positions, [0.99], [1], 100_000_000, stop=stop_after_first_chunk
        )
    assert len(calls) == 2  # one chunk ran, the check before the second one stopped it
    with pytest.raises(TimeoutError):
        risk.monte_carlo_var(
            numpy_backend, returns, positions, [0.99], [1], 100_000_000, stop=lambda: True
        )


def test_monte_carlo_twenty_million_draws_run_in_bounded_memory(numpy_backend: Backend) -> None:
    rng = np.random.default_rng(3)
    scen = rng.standard_normal((500, 2)) * 0.01
    pos = np.array([1e6, 5e5])
    levels = [0.95, 0.99]

    def traced_peak(m: int) -> tuple[risk.VarResult, int]:
        tracemalloc.start()
        try:
            res = risk.monte_carlo_var(numpy_backend, scen, pos, levels, [1], m, seed=9)
            return res, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    m = 20_000_000  # the draws alone would be 2e7 x 2 float64 = 320 MB at once
    _, two_chunk_peak = traced_peak(2 * risk.monte_carlo_chunk_rows(2))
    mc, peak = traced_peak(m)
    assert peak < 1.1 * two_chunk_peak  # five chunks cost what two do: memory does not grow
    assert peak < 320e6
    normal = risk.parametric_normal_var(numpy_backend, scen, pos, levels, [1])
    assert mc.num_scenarios == m
    assert np.all(np.abs(mc.var - normal.var) < 4.0 * mc.var_standard_error)
    np.testing.assert_allclose(mc.cvar, normal.cvar, rtol=2e-3)


# --------------------------------------------------------------------------
# properties (hypothesis)
# --------------------------------------------------------------------------
@st.composite
def books(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    t = draw(st.integers(5, 60))
    n = draw(st.integers(1, 4))
    ret = st.floats(-0.2, 0.2, allow_nan=False, allow_infinity=False)
    scen = draw(hnp.arrays(np.float64, (t, n), elements=ret))
    pos = draw(hnp.arrays(np.float64, (n,), elements=st.floats(-1e6, 1e6)))
    return scen, pos


level_lists = st.lists(st.floats(0.5, 0.999), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None)
@given(book=books(), levels=level_lists)
def test_cvar_is_at_least_var(book: tuple[np.ndarray, np.ndarray], levels: list[float]) -> None:
    scen, pos = book
    be = NumpyBackend()
    for method in (risk.historical_var, risk.parametric_normal_var):
        res = method(be, scen, pos, np.array(levels), np.array([1, 10]))
        tol = 1e-9 * (1.0 + np.abs(res.cvar))
        assert np.all(res.cvar >= res.var - tol), method.__name__


@settings(max_examples=40, deadline=None)
@given(book=books(), levels=level_lists)
def test_var_and_cvar_are_non_decreasing_in_confidence_level(
    book: tuple[np.ndarray, np.ndarray], levels: list[float]
) -> None:
    scen, pos = book
    be = NumpyBackend()
    ordered = np.sort(np.array(levels))
    for method in (risk.historical_var, risk.parametric_normal_var):
        res = method(be, scen, pos, ordered, np.array([1]))
        for values in (res.var[:, 0], res.cvar[:, 0]):
            tol = 1e-9 * (1.0 + np.abs(values[1:]))
            assert np.all(np.diff(values) >= -tol), method.__name__


@settings(max_examples=40, deadline=None)
@given(book=books(), levels=level_lists, scale=st.floats(0.01, 100.0))
def test_var_scales_linearly_with_positions(
    book: tuple[np.ndarray, np.ndarray], levels: list[float], scale: float
) -> None:
    scen, pos = book
    be = NumpyBackend()
    size = float(np.max(np.abs(scen) @ np.abs(pos)))
    assume(size > 1e-6)
    c = np.array(levels)
    for method in (risk.historical_var, risk.parametric_normal_var):
        base = method(be, scen, pos, c, np.array([1]))
        scaled = method(be, scen, scale * pos, c, np.array([1]))
        atol = 1e-9 * scale * size
        np.testing.assert_allclose(scaled.var, scale * base.var, rtol=1e-9, atol=atol)
        np.testing.assert_allclose(scaled.cvar, scale * base.cvar, rtol=1e-9, atol=atol)


# --------------------------------------------------------------------------
# backtests
# --------------------------------------------------------------------------
def test_kupiec_pof_equals_hand_computation_for_8_exceptions_in_250_days() -> None:
    # p = 1 - 0.99 = 0.01, phat = 8 / 250 = 0.032
    lr = -2.0 * (
        242 * math.log(0.99)
        + 8 * math.log(0.01)
        - 242 * math.log(1.0 - 0.032)
        - 8 * math.log(0.032)
    )
    res = risk.kupiec_pof(250, 8, 0.99)
    assert res.statistic == pytest.approx(lr, rel=1e-12)
    assert res.statistic == pytest.approx(7.7336, abs=1e-4)
    assert res.degrees_of_freedom == 1
    assert res.p_value == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-12)
    assert res.p_value < 0.01  # 8 exceptions in a year rejects a 99% model


def test_kupiec_pof_with_no_exceptions_uses_zero_log_zero_equals_zero() -> None:
    # x = 0: the x ln p and x ln phat terms vanish, ln(1 - phat) = ln 1 = 0.
    lr = -2.0 * 250 * math.log(0.99)
    res = risk.kupiec_pof(250, 0, 0.99)
    assert res.statistic == pytest.approx(lr, rel=1e-12)
    assert res.p_value == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-12)


def test_kupiec_pof_with_every_period_an_exception() -> None:
    # x = n: (n - x) ln(1 - phat) = 0 ln 0 = 0 and phat = 1.
    res = risk.kupiec_pof(20, 20, 0.95)
    assert res.statistic == pytest.approx(-2.0 * 20 * math.log(0.05), rel=1e-12)


def test_kupiec_pof_is_zero_when_exception_rate_matches_level() -> None:
    res = risk.kupiec_pof(1000, 10, 0.99)
    assert res.statistic == pytest.approx(0.0, abs=1e-9)
    assert res.p_value == pytest.approx(1.0, abs=1e-6)


#: 16 periods; transitions (15) counted by hand:
#:  00 at 1-2, 2-3, 6-7, 7-8, 8-9, 11-12, 15-16 -> n00 = 7
#:  01 at 3-4, 9-10, 12-13                      -> n01 = 3
#:  10 at 5-6, 10-11, 14-15                     -> n10 = 3
#:  11 at 4-5, 13-14                            -> n11 = 2
HITS = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0])


def christoffersen_by_hand() -> float:
    # pi01 = 3/10, pi11 = 2/5, pi = 5/15
    log_null = 10 * math.log(1 - 5 / 15) + 5 * math.log(5 / 15)
    log_alt = (
        7 * math.log(1 - 3 / 10)
        + 3 * math.log(3 / 10)
        + 3 * math.log(1 - 2 / 5)
        + 2 * math.log(2 / 5)
    )
    return -2.0 * (log_null - log_alt)


def test_christoffersen_independence_equals_hand_counted_transitions() -> None:
    res = risk.christoffersen_independence(HITS)
    lr = christoffersen_by_hand()
    assert res.statistic == pytest.approx(lr, rel=1e-12)
    assert res.degrees_of_freedom == 1
    assert res.p_value == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-12)


def test_christoffersen_independence_without_consecutive_exceptions() -> None:
    # n00 = 5, n01 = 2, n10 = 2, n11 = 0 (0 ln 0 = 0): pi01 = 2/7, pi11 = 0, pi = 2/9.
    hits = np.array([0, 0, 1, 0, 0, 0, 0, 1, 0, 0])
    lr = -2.0 * (
        7 * math.log(7 / 9)
        + 2 * math.log(2 / 9)
        - 5 * math.log(5 / 7)
        - 2 * math.log(2 / 7)
        - 2 * math.log(1.0)
    )
    assert risk.christoffersen_independence(hits).statistic == pytest.approx(lr, rel=1e-12)
    assert risk.christoffersen_independence(np.zeros(30)).statistic == 0.0


def test_backtest_conditional_coverage_is_pof_plus_independence_with_two_dof(
    numpy_backend: Backend,
) -> None:
    # Loss 2 against a VaR of 1 where HITS is 1; no loss elsewhere.
    pnl = np.where(HITS == 1, -2.0, 0.0)
    res = risk.backtest_var(numpy_backend, pnl, 0.95, var_forecasts=np.ones(HITS.shape[0]))
    assert res.num_observations == 16
    assert res.num_exceptions == 5
    np.testing.assert_array_equal(res.exception_indices, [3, 4, 9, 12, 13])
    pof = -2.0 * (
        11 * math.log(0.95) + 5 * math.log(0.05) - 11 * math.log(11 / 16) - 5 * math.log(5 / 16)
    )
    ind = christoffersen_by_hand()
    assert res.kupiec_pof.statistic == pytest.approx(pof, rel=1e-12)
    assert res.christoffersen_independence.statistic == pytest.approx(ind, rel=1e-12)
    cc = res.conditional_coverage
    assert cc.statistic == pytest.approx(pof + ind, rel=1e-12)
    assert cc.degrees_of_freedom == 2
    assert cc.p_value == pytest.approx(stats.chi2.sf(pof + ind, 2), rel=1e-12)


def test_backtest_exception_needs_loss_strictly_beyond_var(numpy_backend: Backend) -> None:
    res = risk.backtest_var(numpy_backend, np.array([-1.0, -1.5, 0.5]), 0.99, np.ones(3))
    np.testing.assert_array_equal(res.exception_indices, [1])


def pandas_rolling_var(pnl: np.ndarray, window: int, confidence_level: float) -> np.ndarray:
    """Forecast for t from pnl[t-window:t]: the k-th smallest loss, shifted one period."""
    k = exact_k(confidence_level, window)
    rolled = pd.Series(-pnl).rolling(window).apply(lambda x: np.sort(x)[k - 1], raw=True)
    return rolled.shift(1).iloc[window:].to_numpy()


@pytest.mark.parametrize(("window", "level"), [(250, 0.99), (250, 0.96), (500, 0.975), (100, 0.95)])
def test_rolling_historical_var_equals_pandas_rolling_order_statistic(
    pnl: np.ndarray, window: int, level: float
) -> None:
    got = risk.rolling_historical_var(pnl, window, level)
    ref = pandas_rolling_var(pnl, window, level)
    assert got.shape == (pnl.shape[0] - window,)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_backtest_with_window_counts_exceptions_of_rolling_var(
    numpy_backend: Backend, pnl: np.ndarray
) -> None:
    window, level = 250, 0.99
    res = risk.backtest_var(numpy_backend, pnl, level, window=window)
    forecasts = pandas_rolling_var(pnl, window, level)
    hits = -pnl[window:] > forecasts
    assert res.num_observations == pnl.shape[0] - window
    assert res.num_exceptions == int(hits.sum())
    np.testing.assert_array_equal(res.exception_indices, np.flatnonzero(hits))
    np.testing.assert_allclose(res.var_forecasts, forecasts, rtol=1e-12)
    pof = risk.kupiec_pof(res.num_observations, res.num_exceptions, level)
    assert res.kupiec_pof.statistic == pytest.approx(pof.statistic, rel=1e-12)


# --------------------------------------------------------------------------
# Euler allocation
# --------------------------------------------------------------------------
def delta_normal_var(returns: np.ndarray, w: np.ndarray, c: float, h: int) -> float:
    mu = returns.mean(axis=0)
    cov = np.cov(returns, rowvar=False)
    return float((-w @ mu + stats.norm.ppf(c) * np.sqrt(w @ cov @ w)) * np.sqrt(h))


@pytest.mark.parametrize(("level", "horizon"), [(0.99, 1), (0.95, 10), (0.975, 1)])
def test_component_var_sums_to_delta_normal_var(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, level: float, horizon: int
) -> None:
    res = risk.component_var(numpy_backend, returns, positions, level, horizon)
    ref = delta_normal_var(returns, positions, level, horizon)
    assert res.var == pytest.approx(ref, rel=1e-10)
    assert float(np.sum(res.component_var)) == pytest.approx(res.var, rel=1e-9)
    np.testing.assert_allclose(res.component_var, positions * res.marginal_var, rtol=1e-12)
    assert float(np.sum(res.component_var_share)) == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose(res.component_var_share, res.component_var / ref, rtol=1e-9)


def test_marginal_var_equals_finite_difference_of_delta_normal_var(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray
) -> None:
    level, horizon, step = 0.99, 10, 10.0  # step in USD of a $1m position
    res = risk.component_var(numpy_backend, returns, positions, level, horizon)
    for i in range(positions.shape[0]):
        up, down = positions.copy(), positions.copy()
        up[i] += step
        down[i] -= step
        fd = (
            delta_normal_var(returns, up, level, horizon)
            - delta_normal_var(returns, down, level, horizon)
        ) / (2.0 * step)
        assert res.marginal_var[i] == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(("level", "horizon"), [(0.99, 1), (0.95, 10), (0.975, 1)])
def test_component_cvar_sums_to_historical_cvar(
    numpy_backend: Backend, returns: np.ndarray, positions: np.ndarray, level: float, horizon: int
) -> None:
    res = risk.component_var(numpy_backend, returns, positions, level, horizon)
    hist = risk.historical_var(numpy_backend, returns, positions, [level], [horizon])
    assert res.cvar == pytest.approx(hist.cvar[0, 0], rel=1e-9)
    assert float(np.sum(res.component_cvar)) == pytest.approx(hist.cvar[0, 0], rel=1e-9)
    # Independent: each position's mean loss over the worst T - ceil(cT) + 1 days.
    losses = -(returns @ positions)
    m = returns.shape[0] - exact_k(level, returns.shape[0]) + 1
    worst = np.argsort(losses)[-m:]
    ref = -(returns[worst] * positions).mean(axis=0) * np.sqrt(horizon)
    np.testing.assert_allclose(res.component_cvar, ref, rtol=1e-9)


def test_component_var_rejects_zero_variance_portfolio(
    numpy_backend: Backend, returns: np.ndarray
) -> None:
    with pytest.raises(ValueError, match="positions"):
        risk.component_var(numpy_backend, returns, np.zeros(returns.shape[1]), 0.99)


# --------------------------------------------------------------------------
# backends agree
# --------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["torch-cpu", "mlx"])
@pytest.mark.parametrize(
    "method",
    [risk.historical_var, risk.parametric_normal_var, risk.cornish_fisher_var],
    ids=["historical", "parametric", "cornish-fisher"],
)
def test_backend_matches_numpy_for_closed_form_methods(
    backend_name: str, method, returns: np.ndarray, positions: np.ndarray
) -> None:
    other = make_backend(backend_name)
    ref = method(NumpyBackend(), returns, positions, LEVELS, HORIZONS)
    got = method(other, returns, positions, LEVELS, HORIZONS, scenarios_key="book")
    again = method(other, returns, positions, LEVELS, HORIZONS, scenarios_key="book")
    assert other.is_resident("book")
    for res in (got, again):
        np.testing.assert_allclose(res.var, ref.var, rtol=1e-9)
        np.testing.assert_allclose(res.cvar, ref.cvar, rtol=1e-9)
        assert res.pnl_mean == pytest.approx(ref.pnl_mean, rel=1e-9)
        assert res.pnl_std == pytest.approx(ref.pnl_std, rel=1e-9)


@pytest.mark.parametrize("backend_name", ["torch-cpu", "mlx"])
def test_backend_matches_numpy_for_component_var(
    backend_name: str, returns: np.ndarray, positions: np.ndarray
) -> None:
    ref = risk.component_var(NumpyBackend(), returns, positions, 0.99, 10)
    got = risk.component_var(make_backend(backend_name), returns, positions, 0.99, 10)
    assert got.var == pytest.approx(ref.var, rel=1e-9)
    assert got.cvar == pytest.approx(ref.cvar, rel=1e-9)
    np.testing.assert_allclose(got.marginal_var, ref.marginal_var, rtol=1e-9)
    np.testing.assert_allclose(got.component_var, ref.component_var, rtol=1e-9)
    np.testing.assert_allclose(got.component_cvar, ref.component_cvar, rtol=1e-9)


@pytest.mark.parametrize("backend_name", ["torch-cpu", "mlx"])
def test_monte_carlo_draws_are_backend_specific(
    backend_name: str, returns: np.ndarray, positions: np.ndarray
) -> None:
    args = (returns, positions, [0.99], [1], 20_000)
    ref = risk.monte_carlo_var(NumpyBackend(), *args, seed=3)
    got = risk.monte_carlo_var(make_backend(backend_name), *args, seed=3)
    assert got.var[0, 0] != ref.var[0, 0]
    # Different draws of the same distribution: within a few standard errors.
    se = math.hypot(got.var_standard_error[0, 0], ref.var_standard_error[0, 0])
    assert abs(got.var[0, 0] - ref.var[0, 0]) < 5.0 * se
