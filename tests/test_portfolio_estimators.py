"""Expected returns and covariance estimators against PyPortfolioOpt 1.6.0.

Data: PyPortfolioOpt's own test prices (data/daily-prices/stock_prices_1989_2018,
20 stocks) on the 896 dates where every stock has a price, and the 470-stock
S&P 500 universe of 2013-2018. The estimators must agree to 1e-10 relative.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from pypfopt import expected_returns as pyp_returns
from pypfopt import risk_models as pyp_risk
from tickwire.engines import portfolio_estimators as pe
from tickwire.feeds.daily_prices import data_dir, load_prices
from tickwire.feeds.sp500 import load_closes
from tickwire.routing.backends import NumpyBackend, TorchBackend, detect_backends

REL = 1e-10


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    """(897, 20) closes of PyPortfolioOpt's test file, complete dates only."""
    path = data_dir() / "daily-prices" / "stock_prices_1989_2018.csv.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_prices(path).dropna()


@pytest.fixture(scope="module")
def returns(prices: pd.DataFrame) -> np.ndarray:
    return pe.returns_from_prices(prices.to_numpy())


def assert_rel(actual: np.ndarray, expected: np.ndarray, rel: float = REL) -> None:
    expected = np.asarray(expected, dtype=np.float64)
    err = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert err <= rel, err


def _shrinkage(prices: pd.DataFrame, target: str) -> pd.DataFrame:
    cs = pyp_risk.CovarianceShrinkage(prices)
    if target == "oracle_approximating":
        return cs.oracle_approximating()
    return cs.ledoit_wolf(target)


REFERENCES = {
    "sample": lambda p: pyp_risk.sample_cov(p),
    "exponential": lambda p: pyp_risk.exp_cov(p, span=180),
    "semicovariance": lambda p: pyp_risk.semicovariance(p),
    "ledoit_wolf_constant_variance": lambda p: _shrinkage(p, "constant_variance"),
    "ledoit_wolf_single_factor": lambda p: _shrinkage(p, "single_factor"),
    "ledoit_wolf_constant_correlation": lambda p: _shrinkage(p, "constant_correlation"),
    "oracle_approximating": lambda p: _shrinkage(p, "oracle_approximating"),
}


@pytest.mark.parametrize("method", pe.COVARIANCE_METHODS)
def test_covariance_matches_pyportfolioopt(method, prices, returns):
    expected = REFERENCES[method](prices)
    got = pe.estimate_covariance(NumpyBackend(), returns, method)
    assert_rel(got.matrix, expected.to_numpy())
    assert not got.repaired
    assert np.array_equal(got.matrix, got.matrix.T)


def test_shrinkage_intensity_matches_pyportfolioopt(prices, returns):
    cs = pyp_risk.CovarianceShrinkage(prices)
    for target, method in (
        ("constant_variance", "ledoit_wolf_constant_variance"),
        ("single_factor", "ledoit_wolf_single_factor"),
        ("constant_correlation", "ledoit_wolf_constant_correlation"),
    ):
        cs.ledoit_wolf(target)
        got = pe.estimate_covariance(NumpyBackend(), returns, method).shrinkage
        assert got == pytest.approx(cs.delta, rel=REL)
        assert 0.0 < got < 1.0


def test_expected_returns_match_pyportfolioopt(prices, returns):
    assert_rel(pe.mean_historical_return(returns), pyp_returns.mean_historical_return(prices))
    assert_rel(
        pe.mean_historical_return(returns, compounding=False),
        pyp_returns.mean_historical_return(prices, compounding=False),
    )
    assert_rel(
        pe.ema_historical_return(returns, span=250),
        pyp_returns.ema_historical_return(prices, span=250),
    )
    assert_rel(
        pe.ema_historical_return(returns, compounding=False),
        pyp_returns.ema_historical_return(prices, compounding=False),
    )
    assert_rel(pe.capm_return(returns), pyp_returns.capm_return(prices))
    assert_rel(
        pe.capm_return(returns, risk_free_rate=0.02, compounding=False),
        pyp_returns.capm_return(prices, risk_free_rate=0.02, compounding=False),
    )


def test_capm_with_a_market_series(prices, returns):
    market = prices.mean(axis=1).to_frame("mkt")
    expected = pyp_returns.capm_return(prices, market_prices=market)
    got = pe.capm_return(returns, pe.returns_from_prices(market.to_numpy())[:, 0])
    assert_rel(got, expected)


def test_non_psd_estimate_is_repaired_as_pyportfolioopt_does():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 6))
    m = a @ a.T
    m[0, 1] = m[1, 0] = m[0, 1] + 5.0 * np.sqrt(m[0, 0] * m[1, 1])  # break PSD
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pyp_risk.fix_nonpositive_semidefinite(pd.DataFrame(m))
    fixed, repaired, min_eig = pe.repair_psd(m)
    assert repaired and min_eig < 0
    assert min_eig == pytest.approx(np.linalg.eigvalsh(m).min(), rel=1e-12)
    assert_rel(fixed, expected.to_numpy(), 1e-12)
    assert np.linalg.eigvalsh(fixed).min() > -1e-12


def test_torch_backend_gives_the_numpy_estimate(returns):
    if "torch-cpu" not in detect_backends():
        pytest.skip("torch not installed")
    for method in ("sample", "ledoit_wolf_constant_correlation", "ledoit_wolf_single_factor"):
        a = pe.estimate_covariance(NumpyBackend(), returns, method).matrix
        b = pe.estimate_covariance(TorchBackend("cpu"), returns, method).matrix
        assert_rel(b, a, 1e-12)


def test_sp500_universe_matches_pyportfolioopt():
    closes = load_closes()
    r = pe.returns_from_prices(closes.to_numpy())
    assert r.shape == (1258, 470)
    for method in ("sample", "ledoit_wolf_constant_correlation"):
        got = pe.estimate_covariance(NumpyBackend(), r, method).matrix
        assert_rel(got, REFERENCES[method](closes).to_numpy())
    assert_rel(pe.mean_historical_return(r), pyp_returns.mean_historical_return(closes))


def test_bad_inputs_name_the_field(returns):
    with pytest.raises(ValueError, match=r"^covariance_model.method: "):
        pe.estimate_covariance(NumpyBackend(), returns, "nope")
    with pytest.raises(ValueError, match=r"^prices: "):
        pe.returns_from_prices(np.array([[1.0], [0.0], [2.0]]))
    with pytest.raises(ValueError, match=r"^market_returns: "):
        pe.capm_return(returns, np.zeros(3))
