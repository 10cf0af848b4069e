"""Mean-variance and CVaR optimisers against PyPortfolioOpt 1.6.0 (cvxpy + Clarabel),
closed forms, and the properties every solution must have.

Weights must agree within 1e-4 absolute (the solvers' tolerance; they agree far
closer in practice), volatilities within 1e-6 and returns within 1e-5.
"""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
from pypfopt import EfficientCVaR, EfficientFrontier, objective_functions
from tickwire.engines import portfolio_estimators as pe
from tickwire.engines import portfolio_optimise as po
from tickwire.feeds.daily_prices import data_dir, load_prices
from tickwire.feeds.sp500 import load_closes, load_constituents
from tickwire.routing.backends import NumpyBackend

W_TOL = 1e-4
#: Volatility and CVaR are the objectives: tight. The return of a minimum-
#: variance solution moves more within the solvers' tolerance.
P_TOL = 1e-6
R_TOL = 1e-5


@pytest.fixture(scope="module")
def data() -> dict:
    """PyPortfolioOpt's test prices (complete dates): mu, S, returns, tickers."""
    path = data_dir() / "daily-prices" / "stock_prices_1989_2018.csv.gz"
    prices = load_prices(path).dropna()
    r = pe.returns_from_prices(prices.to_numpy())
    return {
        "tickers": list(prices.columns),
        "returns": r,
        "mu": pe.mean_historical_return(r),
        "cov": pe.estimate_covariance(NumpyBackend(), r).matrix,
    }


def reference(data: dict, bounds=(0, 1)) -> EfficientFrontier:
    return EfficientFrontier(data["mu"], data["cov"], weight_bounds=bounds, solver="CLARABEL")


def check(res: po.PortfolioResult, ef: EfficientFrontier, weights: dict, rf: float = 0.0):
    w = np.array(list(weights.values()))
    assert not res.infeasible
    np.testing.assert_allclose(res.weights, w, atol=W_TOL, rtol=0)
    ret, vol, sharpe = ef.portfolio_performance(risk_free_rate=rf)
    assert res.expected_return == pytest.approx(ret, abs=R_TOL)
    assert res.volatility == pytest.approx(vol, abs=P_TOL)
    assert res.sharpe_ratio == pytest.approx(sharpe, abs=10 * R_TOL)
    assert res.risk_contributions.sum() == pytest.approx(res.volatility, rel=1e-12)


def long_only(n: int) -> po.Constraints:
    return po.Constraints.long_only(n)


def test_min_volatility(data):
    ef = reference(data)
    check(po.min_volatility(data["cov"], long_only(20), data["mu"]), ef, ef.min_volatility())


@pytest.mark.parametrize("rf", [0.0, 0.02])
def test_max_sharpe(data, rf):
    ef = reference(data)
    expected = ef.max_sharpe(risk_free_rate=rf)
    check(po.max_sharpe(data["mu"], data["cov"], long_only(20), rf), ef, expected, rf)


def test_efficient_return(data):
    ef = reference(data)
    expected = ef.efficient_return(0.25)
    res = po.efficient_return(data["mu"], data["cov"], 0.25, long_only(20))[0]
    check(res, ef, expected)
    assert res.expected_return == pytest.approx(0.25, abs=1e-8)


def test_efficient_risk(data):
    ef = reference(data)
    expected = ef.efficient_risk(0.2)
    res = po.efficient_risk(data["mu"], data["cov"], 0.2, long_only(20))
    check(res, ef, expected)
    assert res.volatility == pytest.approx(0.2, abs=1e-8)


def test_max_quadratic_utility(data):
    ef = reference(data)
    expected = ef.max_quadratic_utility(risk_aversion=3.0)
    check(po.max_quadratic_utility(data["mu"], data["cov"], 3.0, long_only(20)), ef, expected)


def test_market_neutral_efficient_return(data):
    ef = reference(data, (-1, 1))
    expected = ef.efficient_return(0.2, market_neutral=True)
    cons = po.Constraints(-np.ones(20), np.ones(20), market_neutral=True)
    res = po.efficient_return(data["mu"], data["cov"], 0.2, cons)[0]
    check(res, ef, expected)
    assert res.weights.sum() == pytest.approx(0.0, abs=1e-8)


def test_bounds_sectors_and_l2_match_pyportfolioopt(data):
    tickers = data["tickers"]
    sectors = {
        t: ("tech" if i % 3 == 0 else "other" if i % 3 == 1 else "fin")
        for i, t in enumerate(tickers)
    }
    lower, upper = {"fin": 0.2}, {"tech": 0.3}
    ef = reference(data, (0.01, 0.25))
    ef.tickers = tickers
    ef.add_sector_constraints(sectors, lower, upper)
    ef.add_objective(objective_functions.L2_reg, gamma=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ef.min_volatility()
    names = ("tech", "fin")
    member = np.array([[sectors[t] == s for t in tickers] for s in names], dtype=float)
    cons = po.Constraints(
        np.full(20, 0.01), np.full(20, 0.25), False, member,
        np.array([-np.inf, 0.2]), np.array([0.3, np.inf]), names, 0.1,
    )  # fmt: skip
    res = po.min_volatility(data["cov"], cons, data["mu"])
    np.testing.assert_allclose(res.weights, list(expected.values()), atol=W_TOL, rtol=0)
    assert member[0] @ res.weights <= 0.3 + 1e-8
    assert member[1] @ res.weights >= 0.2 - 1e-8
    assert res.weights.min() >= 0.01 - 1e-8 and res.weights.max() <= 0.25 + 1e-8


def test_max_sharpe_with_sector_limits_homogenises_them(data):
    tickers = data["tickers"]
    sectors = {t: ("a" if i < 10 else "b") for i, t in enumerate(tickers)}
    ef = reference(data)
    ef.tickers = tickers
    ef.add_sector_constraints(sectors, {"a": 0.4}, {"b": 0.5})
    expected = ef.max_sharpe()
    member = np.array([[1.0] * 10 + [0.0] * 10, [0.0] * 10 + [1.0] * 10])
    cons = po.Constraints(
        np.zeros(20), np.ones(20), False, member,
        np.array([0.4, -np.inf]), np.array([np.inf, 0.5]), ("a", "b"),
    )  # fmt: skip
    check(po.max_sharpe(data["mu"], data["cov"], cons), ef, expected)


def test_min_cvar(data):
    ec = EfficientCVaR(data["mu"], data["returns"], beta=0.95, solver="CLARABEL")
    expected = np.array(list(ec.min_cvar().values()))
    _, cvar = ec.portfolio_performance()
    res = po.min_cvar(data["returns"], long_only(20), 0.95, data["mu"], data["cov"])
    np.testing.assert_allclose(res.weights, expected, atol=W_TOL, rtol=0)
    assert res.cvar == pytest.approx(cvar, abs=P_TOL)
    # Rockafellar-Uryasev at the optimum: the mean of the worst T(1 - beta)
    # losses, the last one counted fractionally
    losses = np.sort(-(data["returns"] @ res.weights))[::-1]
    m = len(losses) * 0.05
    k = int(np.floor(m))
    tail = (losses[:k].sum() + (m - k) * losses[k]) / m
    assert res.cvar == pytest.approx(tail, abs=1e-9)


def test_turnover_limit_holds_and_binds(data):
    w0 = np.full(20, 0.05)
    free = po.max_sharpe(data["mu"], data["cov"], long_only(20))
    cons = po.Constraints(np.zeros(20), np.ones(20), current_weights=w0, max_turnover=0.3)
    res = po.max_sharpe(data["mu"], data["cov"], cons)
    turnover = np.abs(free.weights - w0).sum()
    assert turnover > 0.3
    assert np.abs(res.weights - w0).sum() == pytest.approx(0.3, abs=1e-6)
    # the same problem in cvxpy: max Sharpe over the turnover ball, by scanning
    # is not needed: any feasible portfolio with a higher Sharpe ratio refutes it
    w = cp.Variable(20)
    s = data["cov"]
    prob = cp.Problem(
        cp.Minimize(cp.quad_form(w, s) - 0.0),
        [cp.sum(w) == 1, w >= 0, cp.norm1(w - w0) <= 0.3, data["mu"] @ w >= res.expected_return],
    )
    prob.solve(solver="CLARABEL")
    assert np.sqrt(prob.value) >= res.volatility - 1e-6


def test_closed_forms_without_bounds(data):
    inf = po.Constraints(np.full(20, -np.inf), np.full(20, np.inf))
    s, mu = data["cov"], data["mu"]
    mv = po.min_volatility(s, inf, mu)
    x = np.linalg.solve(s, np.ones(20))
    np.testing.assert_allclose(mv.weights, x / x.sum(), rtol=1e-10)
    assert mv.solver.name == "closed_form"
    tan = po.max_sharpe(mu, s, inf, 0.01)
    y = np.linalg.solve(s, mu - 0.01)
    np.testing.assert_allclose(tan.weights, y / y.sum(), rtol=1e-10)


def test_screening_finds_the_full_problems_optimum():
    rng = np.random.default_rng(11)
    for _ in range(5):
        n = 150
        f = rng.standard_normal((400, n)) * 0.01 + rng.standard_normal((400, 1)) * 0.01
        cov = np.cov(f, rowvar=False) * 252
        mu = rng.uniform(-0.05, 0.3, n)
        cons = po.Constraints(np.zeros(n), np.full(n, 0.08))
        screened = po.max_sharpe(mu, cov, cons)
        assert screened.solver.working_set < n
        prob = po._Problem(n, po._quadratic(cov, cons))
        po._add_budget(prob, 1.0)
        po._add_bounds(prob, cons)
        k = prob.homogenise()
        row = np.zeros((1, prob.nvar))
        row[0, :n] = mu
        prob.add("eq", row, 1.0, "risk_free_rate")
        kr = np.zeros((1, prob.nvar))
        kr[0, k] = -1.0
        prob.add("le", kr, 0.0, "lower_bounds")
        full = po._clarabel(prob, None, None)
        w = full.x[:n] / full.x[k]
        np.testing.assert_allclose(screened.weights, w, atol=1e-5)
        sharpe = (mu @ w) / np.sqrt(w @ cov @ w)
        assert screened.sharpe_ratio == pytest.approx(sharpe, rel=1e-8)


def test_frontier_is_efficient_and_monotone(data):
    fr = po.efficient_frontier(data["mu"], data["cov"], long_only(20), 25)
    assert fr.weights.shape == (25, 20)
    np.testing.assert_allclose(fr.weights.sum(axis=1), 1.0, atol=1e-8)
    assert np.all(np.diff(fr.expected_returns) > 0)
    assert np.all(np.diff(fr.volatilities) > -1e-9)
    ef = reference(data)
    expected = ef.efficient_return(float(fr.target_returns[10]))
    np.testing.assert_allclose(fr.weights[10], list(expected.values()), atol=W_TOL)
    mv = po.min_volatility(data["cov"], long_only(20), data["mu"])
    assert fr.volatilities[0] == pytest.approx(mv.volatility, abs=1e-9)


def test_infeasible_constraints_are_named(data):
    member = np.array([[1.0] * 10 + [0.0] * 10])
    cons = po.Constraints(
        np.zeros(20), np.full(20, 0.05), False, member, np.array([0.6]), np.array([np.inf]), ("a",)
    )
    res = po.max_sharpe(data["mu"], data["cov"], cons)
    assert res.infeasible == ("sector_limits",)
    res = po.efficient_return(data["mu"], data["cov"], 10.0, long_only(20))[0]
    assert res.infeasible == ("target_return",)
    res = po.efficient_risk(data["mu"], data["cov"], 0.01, long_only(20))
    assert res.infeasible == ("target_volatility",)
    res = po.min_volatility(data["cov"], po.Constraints(np.full(20, 0.1), np.ones(20)))
    assert set(res.infeasible) == {"lower_bounds", "upper_bounds"}


def test_sp500_max_sharpe_and_min_volatility_with_sector_caps():
    """470 stocks: the same weights as PyPortfolioOpt, GICS sector caps hold."""
    closes = load_closes()
    r = pe.returns_from_prices(closes.to_numpy())
    mu = pe.mean_historical_return(r)
    cov = pe.estimate_covariance(NumpyBackend(), r).matrix
    n = len(mu)
    ef = EfficientFrontier(mu, cov, solver="CLARABEL")
    res = po.max_sharpe(mu, cov, long_only(n))
    check(res, ef, ef.max_sharpe())
    assert res.solver.working_set < n  # screening did its job
    sectors = load_constituents()["sector"].reindex(closes.columns).fillna("Unknown").to_numpy()
    names = tuple(sorted(set(sectors)))
    member = np.array([[s == name for s in sectors] for name in names], dtype=float)
    cons = po.Constraints(
        np.zeros(n), np.full(n, 0.05), False, member,
        np.full(len(names), -np.inf), np.full(len(names), 0.2), names,
    )  # fmt: skip
    ef = EfficientFrontier(mu, cov, weight_bounds=(0, 0.05), solver="CLARABEL")
    ef.tickers = list(closes.columns)
    ef.add_sector_constraints(
        dict(zip(closes.columns, sectors, strict=True)), {}, dict.fromkeys(names, 0.2)
    )
    res = po.min_volatility(cov, cons, mu)
    check(res, ef, ef.min_volatility())
    assert np.all(member @ res.weights <= 0.2 + 1e-8)
    assert res.weights.max() <= 0.05 + 1e-8
    pd.testing.assert_index_equal(
        closes.columns, pd.Index(sorted(closes.columns)), check_names=False
    )


def _cold_clarabel(mu, cov, cons, target):
    """One efficient_return point as a cold, unscreened Clarabel solve."""
    n = mu.shape[0]
    prob = po._return_problem(mu, cov, target, cons)
    sol = po._clarabel(prob, None, None)
    assert sol.status == "Solved"
    return sol.x[:n]


@pytest.mark.parametrize("solver", ["daqp", "osqp"])
@pytest.mark.parametrize(
    "bounds, sector_cap", [((0.0, 1.0), None), ((0.0, 0.15), 0.4), ((-0.5, 1.0), None)]
)
def test_warm_started_frontier_equals_cold_clarabel(data, bounds, sector_cap, solver):
    """The warm-started frontiers (DAQP: one setup, target updated, started from
    the previous active set; OSQP, its fallback: warm-started ADMM, polished)
    give every point's weights as a cold per-point Clarabel solve does, within
    the solvers' tolerance, and no more variance than it beyond that tolerance."""
    mu, cov = data["mu"], data["cov"]
    n = mu.shape[0]
    member = np.zeros((0, n))
    lo_s = hi_s = np.zeros(0)
    if sector_cap is not None:
        member = np.array([[1.0] * 7 + [0.0] * 13, [0.0] * 7 + [1.0] * 13])
        lo_s, hi_s = np.full(2, -np.inf), np.array([sector_cap, 1.0])
    cons = po.Constraints(
        np.full(n, bounds[0]),
        np.full(n, bounds[1]),
        False,
        member,
        lo_s,
        hi_s,
        ("a", "b")[: len(lo_s)],
    )
    if solver == "daqp":
        fr = po.efficient_frontier(mu, cov, cons, 20)
    else:
        fr = po._warm_frontier(po._FrontierQP, mu, cov, cons, 20, 0.0, None)
    assert fr.solver.name.startswith(solver)
    assert fr.weights.shape == (20, n)
    for i, target in enumerate(fr.target_returns):
        w = (
            _cold_clarabel(mu, cov, cons, -np.inf)
            if i == 0
            else _cold_clarabel(mu, cov, cons, float(target))
        )
        np.testing.assert_allclose(fr.weights[i], w, atol=W_TOL, rtol=0)
        assert fr.weights[i] @ cov @ fr.weights[i] <= (w @ cov @ w) * (1 + 1e-6)
        if i:
            assert mu @ fr.weights[i] >= target - 1e-8
    assert np.all(fr.weights >= bounds[0] - 1e-8) and np.all(fr.weights <= bounds[1] + 1e-8)
    np.testing.assert_allclose(fr.weights.sum(axis=1), 1.0, atol=1e-8)
    if sector_cap is not None:
        assert np.all(fr.weights @ member[0] <= sector_cap + 1e-8)
    cold = po.efficient_frontier(mu, cov, cons, 20, warm_start=False)
    assert cold.solver.name == "clarabel"
    # the minimum-variance return (the first target) is flat in the weights:
    # the two solvers' answers differ by their tolerance
    np.testing.assert_allclose(fr.target_returns, cold.target_returns, atol=1e-4)


def test_sp500_warm_started_frontier_matches_clarabel():
    """470 stocks, long-only: the screened DAQP frontier against the screened
    Clarabel efficient_return at each target: weights within 2.5e-4 (the flat
    low-risk end is where the interior-point answers move most: there the
    active-set point has slightly less variance than Clarabel's), never
    more volatility."""
    closes = load_closes()
    r = pe.returns_from_prices(closes.to_numpy())
    mu = pe.mean_historical_return(r)
    cov = pe.estimate_covariance(NumpyBackend(), r).matrix
    n = mu.shape[0]
    fr = po.efficient_frontier(mu, cov, long_only(n), 50)
    assert fr.solver.name == "daqp" and fr.solver.working_set < n
    assert np.all(fr.weights @ mu >= fr.target_returns - 1e-8)
    for i in range(1, 50):
        ref = po.efficient_return(mu, cov, float(fr.target_returns[i]), long_only(n))[0]
        np.testing.assert_allclose(fr.weights[i], ref.weights, atol=2.5e-4)
        assert fr.volatilities[i] <= ref.volatility * (1 + 1e-6)


def test_frontier_safety_net_when_daqp_stops_early(data, monkeypatch):
    """A DAQP point that is not reported optimal goes to Clarabel (the status
    counts it), and a minimum-variance point DAQP does not solve sends the
    whole frontier to OSQP; either way the weights are the cold Clarabel ones."""
    mu, cov = data["mu"], data["cov"]
    n = mu.shape[0]
    ref = po.efficient_frontier(mu, cov, long_only(n), 12)
    assert ref.solver.name == "daqp" and ref.solver.status == "Solved"
    calls = {"n": 0}
    real_solve = po._DaqpFrontierQP.solve

    def flaky(self, target, x0=None):
        x, y, its, ok = real_solve(self, target, x0)
        calls["n"] += 1
        return x, y, its, ok and calls["n"] % 3 != 0  # every third solve "fails"

    monkeypatch.setattr(po._DaqpFrontierQP, "solve", flaky)
    fr = po.efficient_frontier(mu, cov, long_only(n), 12)
    assert fr.solver.name == "daqp+clarabel"
    assert "clarabel for" in fr.solver.status
    np.testing.assert_allclose(fr.weights, ref.weights, atol=W_TOL, rtol=0)
    for i in range(1, 12):
        w = _cold_clarabel(mu, cov, long_only(n), float(fr.target_returns[i]))
        np.testing.assert_allclose(fr.weights[i], w, atol=W_TOL, rtol=0)

    monkeypatch.setattr(
        po._DaqpFrontierQP, "solve", lambda self, t, x0=None: (*real_solve(self, t, x0)[:3], False)
    )
    fr = po.efficient_frontier(mu, cov, long_only(n), 12)
    assert fr.solver.name.startswith("osqp")
    np.testing.assert_allclose(fr.weights, ref.weights, atol=W_TOL, rtol=0)
