"""The analytics engines against empyrical-reloaded 0.7.1, series by series, on
real data: the 470 S&P 500 stocks priced on every day of 2013-02-08 ..
2018-02-07 (1,258 daily returns), SPY over the same days as the benchmark, SPY
alone over 1993-2019, and the 505-stock universe with its missing periods
(stocks listed during the window) for empyrical's NaN conventions.

Tolerance: 1e-10 relative for every statistic (the rolling statistics, built
from cumulative sums, also accept 1e-12 absolute near zero; see
:mod:`tickwire.engines.analytics_rolling`).
"""

from __future__ import annotations

import warnings

import empyrical as ep
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from tickwire.engines import analytics_drawdown, analytics_returns, analytics_rolling
from tickwire.feeds.daily_prices import data_dir, load_prices, simple_returns
from tickwire.feeds.sp500 import load_closes
from tickwire.routing.backends import NumpyBackend

REL = 1e-10
P = 252.0
SPY_FILE = "daily-prices/spy_prices_1993_2019.csv.gz"


@pytest.fixture(scope="module")
def panel() -> tuple[np.ndarray, np.ndarray]:
    """(1258, 470) stock returns and (1258,) SPY returns on the same days."""
    spy = load_prices(data_dir() / SPY_FILE, ["SPY"])
    rets = simple_returns(load_closes().join(spy, how="left"))
    return rets.drop(columns="SPY").to_numpy(), rets["SPY"].to_numpy()


@pytest.fixture(scope="module")
def gappy(panel) -> tuple[np.ndarray, np.ndarray]:
    """(1258, 505) returns with NaN before each late listing, and SPY."""
    closes = load_closes(complete=False)
    r = (closes / closes.shift(1) - 1.0).iloc[1:]
    assert r.isna().any().sum() >= 30  # the point of this fixture: missing periods
    return r.to_numpy(), panel[1]


@pytest.fixture(scope="module")
def spy_long() -> np.ndarray:
    """SPY daily returns 1993-2019 as a (T, 1) matrix."""
    return simple_returns(load_prices(data_dir() / SPY_FILE, ["SPY"])).to_numpy()


def stats_of(
    r: np.ndarray, b: np.ndarray | None = None, **kw
) -> analytics_returns.PerformanceStatistics:
    return analytics_returns.performance_statistics(NumpyBackend(), r, P, benchmark=b, **kw)


def assert_rel(
    ours: np.ndarray, ref: list[float] | np.ndarray, rel: float = REL, abs_: float = 0.0
) -> None:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=rel, atol=abs_)


def per_column(fn, r: np.ndarray, *args, **kwargs) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [float(fn(r[:, j], *args, **kwargs)) for j in range(r.shape[1])]


SIMPLE = [
    ("annual_return", lambda c: ep.annual_return(c, annualization=252)),
    ("cumulative_return", ep.cum_returns_final),
    ("annual_volatility", lambda c: ep.annual_volatility(c, annualization=252)),
    ("sharpe_ratio", lambda c: ep.sharpe_ratio(c, annualization=252)),
    ("sortino_ratio", lambda c: ep.sortino_ratio(c, annualization=252)),
    ("downside_risk", lambda c: ep.downside_risk(c, annualization=252)),
    ("calmar_ratio", lambda c: ep.calmar_ratio(c, annualization=252)),
    ("omega_ratio", lambda c: ep.omega_ratio(c, annualization=252)),
    ("tail_ratio", ep.tail_ratio),
    ("stability", ep.stability_of_timeseries),
]


@pytest.mark.parametrize(("name", "reference"), SIMPLE, ids=[s[0] for s in SIMPLE])
def test_statistic_equals_empyrical_on_470_stocks(panel, name, reference) -> None:
    r, b = panel
    assert_rel(getattr(stats_of(r, b), name), per_column(reference, r))


def test_max_drawdown_equals_empyrical_on_470_stocks(panel) -> None:
    r, _ = panel
    assert_rel(stats_of(r).max_drawdown.max_drawdown, per_column(ep.max_drawdown, r))


def test_moments_equal_scipy_on_470_stocks(panel) -> None:
    r, _ = panel
    s = stats_of(r)
    # empyrical lists scipy.stats.skew and kurtosis (bias=True, Fisher) as its moments.
    assert_rel(s.skewness, stats.skew(r, axis=0))
    assert_rel(s.kurtosis, stats.kurtosis(r, axis=0))


FACTOR = [
    ("alpha", lambda c, b: ep.alpha(c, b, annualization=252)),
    ("beta", ep.beta),
    ("up_capture", ep.up_capture),
    ("down_capture", ep.down_capture),
]


@pytest.mark.parametrize(("name", "reference"), FACTOR, ids=[s[0] for s in FACTOR])
def test_benchmark_statistic_equals_empyrical_against_spy(panel, name, reference) -> None:
    r, b = panel
    assert_rel(getattr(stats_of(r, b), name), per_column(reference, r, b))


def test_information_ratio_is_annualised_excess_sharpe(panel) -> None:
    r, b = panel
    excess = per_column(ep.excess_sharpe, r, b)
    assert_rel(stats_of(r, b, information_ratio_per_period=True).information_ratio, excess)
    assert_rel(stats_of(r, b).information_ratio, np.asarray(excess) * np.sqrt(P))
    # Tracking error: the annualised standard deviation of the active return.
    assert_rel(stats_of(r, b).tracking_error, np.std(r - b[:, None], axis=0, ddof=1) * np.sqrt(P))


def test_risk_free_and_thresholds_follow_empyrical(panel) -> None:
    r, b = panel
    rf, mar, omega_req = 0.0001, 0.0002, 0.05
    s = stats_of(r, b, risk_free=rf, required_return=mar, omega_required_return=omega_req)
    assert_rel(s.sharpe_ratio, per_column(ep.sharpe_ratio, r, risk_free=rf))
    assert_rel(s.sortino_ratio, per_column(ep.sortino_ratio, r, required_return=mar))
    assert_rel(s.downside_risk, per_column(ep.downside_risk, r, required_return=mar))
    assert_rel(
        s.omega_ratio,
        per_column(ep.omega_ratio, r, risk_free=rf, required_return=omega_req, annualization=252),
    )
    assert_rel(s.alpha, per_column(ep.alpha, r, b, risk_free=rf))


def test_every_statistic_equals_empyrical_on_spy_1993_2019(spy_long) -> None:
    s = stats_of(spy_long)
    c = spy_long[:, 0]
    for name, reference in SIMPLE:
        assert getattr(s, name)[0] == pytest.approx(reference(c), rel=REL, abs=0.0), name
    assert s.max_drawdown.max_drawdown[0] == pytest.approx(ep.max_drawdown(c), rel=REL)
    assert s.skewness[0] == pytest.approx(stats.skew(c), rel=REL)
    assert s.kurtosis[0] == pytest.approx(stats.kurtosis(c), rel=REL)


def test_missing_periods_follow_empyrical_nan_conventions(gappy) -> None:
    r, b = gappy
    s = stats_of(r, b)
    for name, reference in SIMPLE:
        assert_rel(getattr(s, name), per_column(reference, r))
    assert_rel(s.max_drawdown.max_drawdown, per_column(ep.max_drawdown, r))
    for name, reference in FACTOR:
        assert_rel(getattr(s, name), per_column(reference, r, b))
    assert_rel(s.information_ratio / np.sqrt(P), per_column(ep.excess_sharpe, r, b))
    # Moments drop the missing periods (scipy's nan_policy="omit").
    assert_rel(s.skewness, stats.skew(r, axis=0, nan_policy="omit"))
    assert_rel(s.kurtosis, stats.kurtosis(r, axis=0, nan_policy="omit"))
    np.testing.assert_array_equal(s.num_observations, (~np.isnan(r)).sum(axis=0))


def test_drawdown_series_equals_empyrical(gappy) -> None:
    r, _ = gappy
    dd = analytics_drawdown.drawdown_series(r)
    np.testing.assert_allclose(dd, ep.stats.drawdown_series(r), rtol=REL, atol=0.0)


def test_peak_trough_recovery_match_pyfolio_definitions(panel) -> None:
    r, _ = panel
    d = analytics_drawdown.drawdowns(NumpyBackend(), r[:, :60])
    for j in range(60):
        # pyfolio's get_max_drawdown_underwater, on the series with its start value.
        under = pd.Series(np.concatenate([[0.0], d.drawdown[:, j]]))
        valley = int(under.idxmin())
        peak = int(under[:valley][under[:valley] == 0].index[-1])
        after = under[valley:][under[valley:] == 0]
        recovery = int(after.index[0]) if len(after) else None
        assert d.maximum.trough_index[j] == valley - 1
        assert d.maximum.peak_index[j] == peak - 1
        assert d.maximum.recovery_index[j] == (-1 if recovery is None else recovery - 1)


@pytest.mark.parametrize("window", [21, 126])
def test_rolling_statistics_equal_empyrical(panel, window) -> None:
    r, b = panel
    cols = r[:, ::10]  # 47 series; the engine computes them in one pass
    out = analytics_rolling.rolling_statistics(NumpyBackend(), cols, P, window, benchmark=b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sharpe = np.column_stack([ep.roll_sharpe_ratio(c, window) for c in cols.T])
        vol = np.column_stack([ep.roll_annual_volatility(c, window) for c in cols.T])
        beta = np.column_stack([ep.roll_beta(c, b, window) for c in cols.T])
    assert out.sharpe_ratio.shape == (r.shape[0] - window + 1, cols.shape[1])
    np.testing.assert_allclose(out.sharpe_ratio, sharpe, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(out.volatility, vol, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(out.beta, beta, rtol=REL, atol=1e-12)


def test_rolling_statistics_with_missing_periods_equal_empyrical(gappy) -> None:
    r, b = gappy
    late = np.flatnonzero(np.isnan(r).any(axis=0))[:10]
    cols = r[:, late]
    out = analytics_rolling.rolling_statistics(NumpyBackend(), cols, P, 63, benchmark=b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sharpe = np.column_stack([ep.roll_sharpe_ratio(c, 63) for c in cols.T])
        vol = np.column_stack([ep.roll_annual_volatility(c, 63) for c in cols.T])
        beta = np.column_stack([ep.roll_beta(c, b, 63) for c in cols.T])
    np.testing.assert_allclose(out.sharpe_ratio, sharpe, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(out.volatility, vol, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(out.beta, beta, rtol=REL, atol=1e-12)
