"""Properties the analytics engines must hold whatever the data: the batch is
the per-series computation (no leakage between columns), invariances of the
ratios, the benchmark against itself, the drawdown's shape, and VaR/CVaR
through the Risk engine's own functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tickwire.engines import analytics_drawdown, analytics_returns, analytics_rolling, risk
from tickwire.feeds.daily_prices import data_dir, load_prices, simple_returns
from tickwire.feeds.sp500 import load_closes
from tickwire.routing.backends import NumpyBackend

P = 252.0
BE = NumpyBackend()
FIELDS = (
    "annual_return",
    "cumulative_return",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "downside_risk",
    "calmar_ratio",
    "omega_ratio",
    "tail_ratio",
    "stability",
    "skewness",
    "kurtosis",
    "alpha",
    "beta",
    "information_ratio",
    "tracking_error",
    "up_capture",
    "down_capture",
)


@pytest.fixture(scope="module")
def panel() -> tuple[np.ndarray, np.ndarray]:
    spy = load_prices(data_dir() / "daily-prices" / "spy_prices_1993_2019.csv.gz", ["SPY"])
    rets = simple_returns(load_closes().join(spy, how="left"))
    return rets.drop(columns="SPY").to_numpy()[:, :80], rets["SPY"].to_numpy()


def compute(r: np.ndarray, b: np.ndarray | None = None, **kw):
    return analytics_returns.performance_statistics(BE, r, P, benchmark=b, **kw)


def assert_same(a: np.ndarray, b: np.ndarray, rel: float = 1e-12, abs_: float = 0.0) -> None:
    np.testing.assert_allclose(a, b, rtol=rel, atol=abs_, equal_nan=True)


def _returns(bound: float) -> st.SearchStrategy[float]:
    """Simple returns in [-bound, bound]: 0 or at least 1e-9 in size. Smaller
    ones vanish against 1 when compounded (1 + 1e-17 == 1 in float64), and
    ratios over compounded wealth (Calmar, ...) become quotients of rounding
    residues that no two summation orders agree on (hypothesis found
    1.2e-38 next to -1.6e-54)."""
    return st.floats(-bound, bound, allow_nan=False).filter(lambda x: x == 0 or abs(x) >= 1e-9)


returns_matrix = arrays(
    np.float64,
    st.tuples(st.integers(8, 60), st.integers(1, 6)),
    elements=st.one_of(_returns(0.2), st.just(float("nan"))),
)


_NEARLY_CONSTANT = np.full((8, 2), 0.125)
_NEARLY_CONSTANT[5, 0] = -1e-7  # Sharpe ~ 9e6: once failed a flat 1e-9 tolerance


@settings(max_examples=60, deadline=None)
@given(r=returns_matrix, data=st.data())
def test_batch_equals_each_series_alone(r: np.ndarray, data) -> None:
    b = data.draw(arrays(np.float64, r.shape[0], elements=_returns(0.1)))
    _check_batch_equals_each_series_alone(r, b)


def test_batch_equals_each_series_alone_for_a_nearly_constant_column() -> None:
    _check_batch_equals_each_series_alone(_NEARLY_CONSTANT, np.zeros(8))


def _check_batch_equals_each_series_alone(r: np.ndarray, b: np.ndarray) -> None:
    batch = compute(r, b)
    for j in range(r.shape[1]):
        alone = compute(r[:, j : j + 1], b)
        # Summation order differs between a (T, K) and a (T, 1) array: equal to
        # rounding, amplified where a column is nearly constant (its volatility
        # is a difference of nearly equal numbers: mean / std ~ 1e6 leaves
        # ratios like Sharpe with 1e-10 relative error times 1e6).
        col = r[:, j][~np.isnan(r[:, j])]
        std = float(col.std()) if col.size > 1 else 0.0
        cond = max(1.0, abs(float(col.mean())) / std) if std > 0 else 1.0
        for name in FIELDS:
            assert_same(getattr(batch, name)[j : j + 1], getattr(alone, name), 1e-9 * cond, 1e-12)
        assert_same(batch.value_at_risk[:, j : j + 1], alone.value_at_risk)
        assert_same(batch.conditional_value_at_risk[:, j : j + 1], alone.conditional_value_at_risk)
        assert batch.max_drawdown.trough_index[j] == alone.max_drawdown.trough_index[0]


def test_column_order_does_not_matter(panel) -> None:
    r, b = panel
    perm = np.random.default_rng(3).permutation(r.shape[1])
    s, sp = compute(r, b), compute(r[:, perm], b)
    for name in FIELDS:
        assert_same(getattr(sp, name), getattr(s, name)[perm])


def test_sharpe_is_invariant_to_leverage_without_risk_free(panel) -> None:
    r, _ = panel
    assert_same(compute(r * 0.5).sharpe_ratio, compute(r).sharpe_ratio, rel=1e-11)


def test_benchmark_against_itself(panel) -> None:
    _, b = panel
    s = compute(b[:, None], b)
    assert s.beta[0] == pytest.approx(1.0, rel=1e-12)
    assert s.alpha[0] == pytest.approx(0.0, abs=1e-12)
    assert s.up_capture[0] == pytest.approx(1.0, rel=1e-12)
    assert s.down_capture[0] == pytest.approx(1.0, rel=1e-12)
    assert s.tracking_error[0] == 0.0
    assert math.isnan(s.information_ratio[0])  # 0 / 0: no active risk


def test_cvar_is_at_least_var_and_both_grow_with_confidence(panel) -> None:
    r, _ = panel
    s = compute(r, confidence_levels=np.array([0.9, 0.95, 0.975, 0.99]))
    assert (s.conditional_value_at_risk >= s.value_at_risk).all()
    assert (np.diff(s.value_at_risk, axis=0) >= 0).all()
    assert (np.diff(s.conditional_value_at_risk, axis=0) >= 0).all()


def test_var_and_cvar_are_the_risk_engines_historical_figures(panel) -> None:
    r, _ = panel
    levels = np.array([0.95, 0.99])
    s = compute(r, confidence_levels=levels)
    for j in range(0, r.shape[1], 7):
        # One unit of currency in series j: P&L = r[:, j].
        ref = risk.historical_var(BE, r[:, j : j + 1], np.array([1.0]), levels, np.array([1]))
        np.testing.assert_allclose(s.value_at_risk[:, j], ref.var[:, 0], rtol=1e-14)
        np.testing.assert_allclose(s.conditional_value_at_risk[:, j], ref.cvar[:, 0], rtol=1e-12)


def test_drawdown_shape(panel) -> None:
    r, _ = panel
    d = analytics_drawdown.drawdowns(BE, r)
    dd, m = d.drawdown, d.maximum
    assert (dd <= 0.0).all()
    np.testing.assert_array_equal(m.max_drawdown, dd.min(axis=0))
    cols = np.arange(r.shape[1])
    fell = m.trough_index >= 0
    assert fell.all()  # every stock of 2013-2018 had a drawdown
    assert (m.peak_index < m.trough_index).all()
    recovered = m.recovery_index >= 0
    assert (m.recovery_index[recovered] > m.trough_index[recovered]).all()
    assert (dd[m.recovery_index[recovered], cols[recovered]] == 0.0).all()
    has_peak = m.peak_index >= 0
    assert (dd[m.peak_index[has_peak], cols[has_peak]] == 0.0).all()


def test_a_series_that_never_falls_has_no_drawdown_period() -> None:
    r = np.array([[0.01, 0.0], [0.02, -0.01], [0.0, 0.02]])
    m = analytics_drawdown.drawdowns(BE, r).maximum
    assert m.max_drawdown[0] == 0.0
    assert (m.peak_index[0], m.trough_index[0], m.recovery_index[0]) == (-1, -1, -1)
    # The second series falls on day 1 from its start value and recovers on day 2.
    assert (m.peak_index[1], m.trough_index[1], m.recovery_index[1]) == (0, 1, 2)


def test_rolling_window_equal_to_t_is_the_full_sample(panel) -> None:
    r, b = panel
    out = analytics_rolling.rolling_statistics(BE, r, P, r.shape[0], benchmark=b)
    s = compute(r, b)
    assert out.sharpe_ratio.shape == (1, r.shape[1])
    np.testing.assert_allclose(out.sharpe_ratio[0], s.sharpe_ratio, rtol=1e-10)
    np.testing.assert_allclose(out.volatility[0], s.annual_volatility, rtol=1e-10)
    np.testing.assert_allclose(out.beta[0], s.beta, rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"periods_per_year": 0.0}, "periods_per_year"),
        ({"periods_per_year": -252.0}, "periods_per_year"),
        ({"periods_per_year": float("nan")}, "periods_per_year"),
        ({"benchmark": np.zeros(3)}, "benchmark"),
        ({"benchmark": np.full(10, np.nan)}, "benchmark"),
        ({"returns": np.full((10, 2), np.inf)}, "returns"),
        ({"returns": np.zeros((1, 2))}, "returns"),
        ({"returns": np.full((10, 2), -1.5)}, "returns"),
        ({"risk_free": float("inf")}, "risk_free"),
        ({"confidence_levels": np.array([1.0])}, "confidence_levels"),
    ],
)
def test_engine_rejects_bad_input_naming_the_field(kwargs, field) -> None:
    inputs = {"returns": np.full((10, 2), 0.01), "periods_per_year": P, **kwargs}
    with pytest.raises(ValueError, match=f"^{field}: "):
        analytics_returns.performance_statistics(BE, **inputs)


def test_rolling_window_out_of_range_is_rejected() -> None:
    r = np.full((10, 2), 0.01)
    for window in (1, 11):
        with pytest.raises(ValueError, match=r"^window: "):
            analytics_rolling.rolling_statistics(BE, r, P, window)
