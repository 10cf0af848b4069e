"""HRP, risk parity, Black-Litterman and discrete allocation against PyPortfolioOpt
1.6.0 and the properties that define them."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.cluster.hierarchy as sch
from pypfopt import BlackLittermanModel, DiscreteAllocation, HRPOpt
from pypfopt.black_litterman import market_implied_prior_returns
from tickwire.engines import portfolio_allocation as pa
from tickwire.engines import portfolio_black_litterman as pb
from tickwire.engines import portfolio_estimators as pe
from tickwire.engines import portfolio_hrp as ph
from tickwire.feeds.daily_prices import data_dir, load_prices
from tickwire.feeds.sp500 import load_closes
from tickwire.routing.backends import NumpyBackend


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    path = data_dir() / "daily-prices" / "stock_prices_1989_2018.csv.gz"
    return load_prices(path).dropna()


def _hrp_reference(prices: pd.DataFrame) -> tuple[pd.Series, tuple]:
    rets = prices.pct_change().iloc[1:]
    h = HRPOpt(rets)
    weights = pd.Series(h.optimize())
    return weights, h.portfolio_performance()


def _hrp_ours(prices: pd.DataFrame):
    r = pe.returns_from_prices(prices.to_numpy())
    cov = pe.estimate_covariance(NumpyBackend(), r).matrix
    mu = pe.mean_historical_return(r, compounding=False)
    return ph.hrp(NumpyBackend(), cov, mu), cov


def test_hrp_matches_pyportfolioopt(prices):
    expected, (ret, vol, sharpe) = _hrp_reference(prices)
    res, _ = _hrp_ours(prices)
    got = pd.Series(res.weights, index=prices.columns)
    np.testing.assert_allclose(got[expected.index], expected, atol=1e-12, rtol=0)
    assert res.expected_return == pytest.approx(ret, rel=1e-12)
    assert res.volatility == pytest.approx(vol, rel=1e-12)
    assert res.sharpe_ratio == pytest.approx(sharpe, rel=1e-12)


def test_hrp_matches_pyportfolioopt_on_470_stocks():
    closes = load_closes()
    expected, (_, vol, _) = _hrp_reference(closes)
    res, _ = _hrp_ours(closes)
    np.testing.assert_allclose(res.weights, expected[closes.columns], atol=1e-12, rtol=0)
    assert res.volatility == pytest.approx(vol, rel=1e-10)


def test_quasi_diagonal_order_is_the_dendrogram_pre_order(prices):
    _, cov = _hrp_ours(prices)
    for method in ("single", "average", "ward"):
        order, link = ph.hrp_order(cov, method)
        assert order.tolist() == sch.to_tree(link, rd=False).pre_order()


def test_hrp_weights_are_a_long_only_budget(prices):
    res, _ = _hrp_ours(prices)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(res.weights > 0)
    assert res.risk_contributions.sum() == pytest.approx(res.volatility, rel=1e-12)
    # two uncorrelated assets: inverse-variance weights
    w = ph.recursive_bisection(np.diag([0.04, 0.01]), np.array([0, 1]))
    np.testing.assert_allclose(w, [0.2, 0.8], rtol=1e-14)


def test_risk_parity_has_equal_risk_contributions(prices):
    _, cov = _hrp_ours(prices)
    res = ph.risk_parity(NumpyBackend(), cov)
    assert res.solver.status == "Solved"
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(res.weights > 0)
    rc = res.risk_contributions
    np.testing.assert_allclose(rc, res.volatility / len(rc), rtol=1e-9)
    assert rc.sum() == pytest.approx(res.volatility, rel=1e-12)


def test_risk_budgets_set_the_shares_of_risk(prices):
    _, cov = _hrp_ours(prices)
    budgets = np.linspace(1.0, 3.0, 20)
    res = ph.risk_parity(NumpyBackend(), cov, risk_budgets=budgets)
    np.testing.assert_allclose(
        res.risk_contributions / res.volatility, budgets / budgets.sum(), rtol=1e-9
    )
    # two uncorrelated assets with equal budgets: weights inverse to volatility
    w = ph.risk_parity(NumpyBackend(), np.diag([0.04, 0.01])).weights
    np.testing.assert_allclose(w, [1 / 3, 2 / 3], rtol=1e-12)


def test_black_litterman_matches_pyportfolioopt(prices):
    r = pe.returns_from_prices(prices.to_numpy())
    cov = pe.estimate_covariance(NumpyBackend(), r).matrix
    tickers = list(prices.columns)
    n = len(tickers)
    caps = pd.Series(np.linspace(1e10, 8e11, n), index=tickers)
    p = np.zeros((3, n))
    p[0, tickers.index("AAPL")] = 1.0
    p[1, tickers.index("BAC")] = 1.0
    p[2, tickers.index("GOOG")], p[2, tickers.index("FB")] = 1.0, -1.0
    q = np.array([0.12, -0.05, 0.03])
    conf = np.array([0.6, 0.3, 0.9])
    cov_df = pd.DataFrame(cov, index=tickers, columns=tickers)
    prior = market_implied_prior_returns(caps, 2.5, cov_df, 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bl = BlackLittermanModel(
            cov_df, pi=prior, Q=q, P=p, omega="idzorek", view_confidences=conf,
            risk_aversion=2.5,
        )  # fmt: skip
    res = pb.black_litterman(
        NumpyBackend(), cov, p, q, conf, market_caps=caps.to_numpy(), risk_aversion=2.5,
        risk_free_rate=0.01,
    )  # fmt: skip
    np.testing.assert_allclose(res.prior_returns, prior, rtol=1e-12)
    np.testing.assert_allclose(res.posterior_returns, bl.bl_returns(), rtol=1e-10)
    np.testing.assert_allclose(res.posterior_covariance, bl.bl_cov(), rtol=1e-10)
    np.testing.assert_allclose(res.omega, np.diag(bl.omega), rtol=1e-12)
    np.testing.assert_allclose(res.implied_weights, list(bl.bl_weights().values()), rtol=1e-9)
    # a fully confident view is met exactly; a view with no confidence is ignored
    full = pb.black_litterman(NumpyBackend(), cov, p[:1], q[:1], np.array([1.0]), prior.to_numpy())
    assert full.posterior_returns[tickers.index("AAPL")] == pytest.approx(0.12, rel=1e-9)
    none = pb.black_litterman(NumpyBackend(), cov, p[:1], q[:1], np.array([0.0]), prior.to_numpy())
    np.testing.assert_allclose(none.posterior_returns, prior, rtol=1e-4)


def test_black_litterman_default_omega_matches_pyportfolioopt(prices):
    r = pe.returns_from_prices(prices.to_numpy())
    cov = pe.estimate_covariance(NumpyBackend(), r).matrix
    pi = pe.mean_historical_return(r)
    p = np.eye(20)[[1, 4]]
    q = np.array([0.2, 0.1])
    bl = BlackLittermanModel(cov, pi=pi, Q=q, P=p, tau=0.1)
    res = pb.black_litterman(NumpyBackend(), cov, p, q, None, pi, tau=0.1)
    np.testing.assert_allclose(res.posterior_returns, bl.bl_returns(), rtol=1e-10)


@pytest.mark.parametrize("shorts", [False, True])
def test_greedy_allocation_matches_pyportfolioopt(prices, shorts):
    rng = np.random.default_rng(5)
    w = rng.uniform(0.01, 1.0, 20)
    w /= w.sum()
    if shorts:
        w[:4] *= -1
    latest = prices.iloc[-1]
    da = DiscreteAllocation(dict(zip(prices.columns, w, strict=True)), latest, 250_000)
    expected, leftover = da.greedy_portfolio()
    got = pa.allocate(NumpyBackend(), w, latest.to_numpy(), 250_000)
    assert got.shares.tolist() == [expected.get(t, 0) for t in prices.columns]
    assert got.leftover == pytest.approx(leftover, rel=1e-12)


def test_lp_allocation_spends_within_budget_and_beats_greedy(prices):
    w = np.full(20, 0.05)
    latest = prices.iloc[-1].to_numpy()
    lp = pa.allocate(NumpyBackend(), w, latest, 50_000, "lp")
    greedy = pa.allocate(NumpyBackend(), w, latest, 50_000, "greedy")
    assert lp.leftover >= -1e-9
    assert lp.leftover == pytest.approx(50_000 - latest @ lp.shares, abs=1e-6)

    def objective(a):
        return np.abs(w * 50_000 - a.shares * latest).sum() + a.leftover

    assert objective(lp) <= objective(greedy) + 1e-6
    assert lp.allocated_weights.sum() == pytest.approx(1.0)
