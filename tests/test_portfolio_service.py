"""PortfolioService end to end: the public Python client (blocking and asyncio)
against a real server on 127.0.0.1, checked against PyPortfolioOpt 1.6.0 and
the engine, and every error path through the RPC."""

from __future__ import annotations

import asyncio
import warnings

import grpc
import numpy as np
import pandas as pd
import pytest
from conftest import ServerHandle, start_server, stop_server
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pypfopt import EfficientFrontier, HRPOpt, expected_returns, risk_models
from tickwire.feeds.daily_prices import data_dir, load_prices
from tickwire.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from tickwire_client import AsyncClient, Client, TickwireError, to_tensor
from tickwire_client.portfolio import BlackLitterman, WeightConstraints

W_TOL = 1e-4


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    path = data_dir() / "daily-prices" / "stock_prices_1989_2018.csv.gz"
    return load_prices(path).dropna()


@pytest.fixture(scope="module")
def ref(prices: pd.DataFrame) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "mu": expected_returns.mean_historical_return(prices),
            "cov": risk_models.sample_cov(prices),
        }


def test_max_sharpe_from_prices_matches_pyportfolioopt(client: Client, prices, ref):
    res = client.portfolio.optimize("max_sharpe", history=prices, risk_free_rate=0.02)
    ef = EfficientFrontier(ref["mu"], ref["cov"], solver="CLARABEL")
    expected = np.array(list(ef.max_sharpe(risk_free_rate=0.02).values()))
    ret, vol, sharpe = ef.portfolio_performance(risk_free_rate=0.02)
    np.testing.assert_allclose(res.weights, expected, atol=W_TOL)
    assert res.expected_return == pytest.approx(ret, abs=1e-6)
    assert res.volatility == pytest.approx(vol, abs=1e-6)
    assert res.sharpe_ratio == pytest.approx(sharpe, abs=1e-5)
    assert res.risk_contributions.sum() == pytest.approx(res.volatility, rel=1e-12)
    np.testing.assert_allclose(res.expected_returns, ref["mu"], rtol=1e-12)
    assert res.solver.solver == "clarabel" and res.solver.status == "Solved"
    assert res.execution.operation == "portfolio.optimise"
    assert res.estimation_execution.operation == "portfolio.estimate_inputs"
    assert res.estimation_execution.backend_used in {"numpy", "torch-cpu", "torch-cuda"}
    assert res.execution.compute_ms > 0


def test_explicit_inputs_and_every_mean_variance_objective(client: Client, ref):
    mu, cov = ref["mu"].to_numpy(), ref["cov"].to_numpy()
    cases = [
        ("min_volatility", {}, lambda ef: ef.min_volatility()),
        ("efficient_return", {"target_return": 0.2}, lambda ef: ef.efficient_return(0.2)),
        ("efficient_risk", {"target_volatility": 0.2}, lambda ef: ef.efficient_risk(0.2)),
        (
            "max_quadratic_utility",
            {"risk_aversion": 4.0},
            lambda ef: ef.max_quadratic_utility(4.0),
        ),
    ]
    for objective, kw, call in cases:
        res = client.portfolio.optimize(objective, expected_returns=mu, covariance=cov, **kw)
        expected = np.array(list(call(EfficientFrontier(mu, cov, solver="CLARABEL")).values()))
        np.testing.assert_allclose(res.weights, expected, atol=W_TOL, err_msg=objective)
        assert res.estimation_execution is None  # nothing was estimated


def test_hrp_and_risk_parity(client: Client, prices):
    res = client.portfolio.optimize("hrp", history=prices, compounding=False)
    h = HRPOpt(prices.pct_change().iloc[1:])
    expected = pd.Series(h.optimize())[prices.columns].to_numpy()
    np.testing.assert_allclose(res.weights, expected, atol=1e-12)
    ret, vol, _ = h.portfolio_performance()
    assert res.expected_return == pytest.approx(ret, rel=1e-12)
    assert res.volatility == pytest.approx(vol, rel=1e-12)
    rp = client.portfolio.optimize("risk_parity", history=prices)
    np.testing.assert_allclose(rp.risk_contributions, rp.volatility / 20, rtol=1e-9)


def test_min_cvar_and_constraints(client: Client, prices):
    sectors = ["tech"] * 5 + ["fin"] * 5 + ["other"] * 10
    cons = WeightConstraints(
        upper=0.3, sectors=sectors, sector_lower={"fin": 0.25}, sector_upper={"tech": 0.1}
    )
    res = client.portfolio.optimize(
        "min_cvar", history=prices, constraints=cons, cvar_confidence_level=0.9
    )
    w = res.weights
    assert w.sum() == pytest.approx(1.0, abs=1e-8)
    assert w.min() >= -1e-9 and w.max() <= 0.3 + 1e-8
    assert w[:5].sum() <= 0.1 + 1e-8 and w[5:10].sum() >= 0.25 - 1e-8
    assert 0 < res.cvar < 0.1


def test_turnover_and_market_neutral(client: Client, ref):
    mu, cov = ref["mu"].to_numpy(), ref["cov"].to_numpy()
    w0 = np.full(20, 0.05)
    res = client.portfolio.optimize(
        "max_sharpe", expected_returns=mu, covariance=cov,
        constraints={"current_weights": w0, "max_turnover": 0.2},
    )  # fmt: skip
    assert np.abs(res.weights - w0).sum() <= 0.2 + 1e-6
    mn = client.portfolio.optimize(
        "efficient_return", expected_returns=mu, covariance=cov, target_return=0.1,
        constraints={"market_neutral": True},
    )  # fmt: skip
    assert mn.weights.sum() == pytest.approx(0.0, abs=1e-8)
    assert mn.weights.min() < 0


def test_efficient_frontier(client: Client, prices):
    fr = client.portfolio.efficient_frontier(history=prices, num_points=30)
    assert fr.weights.shape == (30, 20)
    np.testing.assert_allclose(fr.weights.sum(axis=1), 1.0, atol=1e-8)
    assert np.all(np.diff(fr.expected_returns) > 0)
    assert np.all(np.diff(fr.volatilities) > -1e-9)
    mv = client.portfolio.optimize("min_volatility", history=prices)
    assert fr.volatilities[0] == pytest.approx(mv.volatility, abs=1e-9)
    ms = client.portfolio.optimize("max_sharpe", history=prices)
    assert fr.sharpe_ratios.max() <= ms.sharpe_ratio + 1e-6


def test_estimate_inputs_and_registered_dataset(client: Client, prices, ref):
    est = client.portfolio.estimate_inputs(prices, covariance_method="sample")
    np.testing.assert_allclose(est.covariance, ref["cov"], rtol=1e-10)
    np.testing.assert_allclose(est.expected_returns, ref["mu"], rtol=1e-10)
    assert est.num_periods == len(prices) - 1
    returns = prices.pct_change().iloc[1:].to_numpy()
    dataset = client.risk.register_scenarios(returns)
    a = client.portfolio.optimize("max_sharpe", history=dataset, kind="returns")
    b = client.portfolio.optimize("max_sharpe", history=returns, kind="returns")
    np.testing.assert_array_equal(a.weights, b.weights)
    # the dataset's estimate is reused for the same estimator settings only
    again = client.portfolio.optimize("min_volatility", history=dataset, kind="returns")
    assert again.estimate_cached and again.estimation_execution is None
    assert not b.estimate_cached
    shrunk = client.portfolio.optimize(
        "min_volatility", history=dataset, kind="returns", covariance_method="ledoit_wolf"
    )
    assert not shrunk.estimate_cached and shrunk.covariance_report.shrinkage > 0


def test_black_litterman_posterior_drives_the_optimiser(client: Client, ref):
    cov = ref["cov"].to_numpy()
    model = BlackLitterman.absolute(
        20, {1: 0.3, 5: -0.1}, {1: 0.8, 5: 0.5}, market_caps=np.linspace(1, 20, 20),
        risk_aversion=2.0,
    )  # fmt: skip
    post = client.portfolio.black_litterman(model, covariance=cov)
    assert post.omega.shape == (2,)
    assert post.posterior_returns[1] > post.prior_returns[1]
    res = client.portfolio.optimize("max_sharpe", covariance=cov, black_litterman=model)
    np.testing.assert_allclose(res.expected_returns, post.posterior_returns, rtol=1e-12)
    ef = EfficientFrontier(post.posterior_returns, cov, solver="CLARABEL")
    np.testing.assert_allclose(res.weights, list(ef.max_sharpe().values()), atol=W_TOL)


def test_allocate_shares(client: Client, prices):
    w = np.full(20, 0.05)
    latest = prices.iloc[-1].to_numpy()
    a = client.portfolio.allocate(w, latest, 100_000)
    assert a.leftover >= 0
    assert a.leftover == pytest.approx(100_000 - latest @ a.shares, abs=1e-6)
    assert a.rmse < 0.01


def _status(err: grpc.RpcError):
    return rpc_status.from_call(err)


def test_infeasible_constraints_give_failed_precondition_naming_them(
    server: ServerHandle, client: Client, prices
):
    # each bound alone is fine (20 x 0.06 >= 1), but sector a can reach 0.6 only
    cons = WeightConstraints(upper=0.06, sectors=["a"] * 10 + ["b"] * 10, sector_lower={"a": 0.7})
    with pytest.raises(TickwireError) as exc:
        client.portfolio.optimize("max_sharpe", history=prices, constraints=cons)
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert exc.value.message.endswith(": constraints.sector_limits")
    assert exc.value.reason == "INFEASIBLE"
    with pytest.raises(TickwireError) as exc:
        client.portfolio.optimize("min_volatility", history=prices, constraints={"upper": 0.04})
    assert "constraints.upper_bounds" in exc.value.message
    with pytest.raises(TickwireError) as exc:
        client.portfolio.optimize("efficient_return", history=prices, target_return=3.0)
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "target_return" in exc.value.message
    # the precondition failure detail lists the fields for any client language
    channel = grpc.insecure_channel(server.target)
    stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
    req = portfolio_pb2.OptimizePortfolioRequest(
        inputs=portfolio_pb2.PortfolioInputs(
            history=portfolio_pb2.History(values=to_tensor(prices), kind=1)
        ),
        objective=portfolio_pb2.OBJECTIVE_EFFICIENT_RISK,
        target_volatility=0.01,
    )
    with pytest.raises(grpc.RpcError) as raw:
        stub.OptimizePortfolio(req, timeout=30)
    channel.close()
    detail = error_details_pb2.PreconditionFailure()
    _status(raw.value).details[0].Unpack(detail)
    assert [v.subject for v in detail.violations] == ["target_volatility"]


BAD_REQUESTS = [
    ({"objective": "max_sharpe", "history": "nan"}, "inputs.history.values.data"),
    ({"objective": "max_sharpe", "history": "negative"}, "inputs.history.values.data"),
    ({"objective": "max_sharpe", "mismatch": True}, "inputs.expected_returns"),
    ({"objective": "efficient_return"}, "target_return"),
    ({"objective": "efficient_risk", "target_volatility": -0.1}, "target_volatility"),
    ({"objective": "max_sharpe", "constraints": {"lower": [0.0, 0.1]}}, "constraints.lower_bounds"),
    (
        {"objective": "max_sharpe", "constraints": {"lower": 0.5, "upper": 0.2}},
        "constraints.lower_bounds",
    ),
    ({"objective": "max_sharpe", "risk_free_rate": 5.0}, "risk_free_rate"),
    ({"objective": "hrp", "linkage_method": "nope"}, "linkage_method"),
    ({"objective": "risk_parity", "constraints": {"upper": 0.1}}, "constraints"),
    ({"objective": "min_cvar", "cvar_confidence_level": 1.5}, "cvar_confidence_level"),
    ({"objective": "max_sharpe", "periods_per_year": -1.0}, "inputs.history.periods_per_year"),
]


@pytest.mark.parametrize(("case", "field"), BAD_REQUESTS)
def test_bad_requests_name_the_field(client: Client, prices, case, field):
    case = dict(case)
    objective = case.pop("objective")
    history = prices.to_numpy().copy()
    bad = case.pop("history", None)
    if bad == "nan":
        history[3, 2] = np.nan
    elif bad == "negative":
        history[3, 2] = -1.0
    if case.pop("mismatch", False):
        case["expected_returns"] = np.zeros(7)
    with pytest.raises(TickwireError) as exc:
        client.portfolio.optimize(objective, history=history, **case)
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT, exc.value
    assert field in exc.value.fields, exc.value.fields
    # the server keeps serving
    assert client.portfolio.optimize("min_volatility", history=prices).weights.shape == (20,)


def test_other_rpcs_reject_bad_input(client: Client, prices):
    with pytest.raises(TickwireError) as exc:
        client.portfolio.allocate(np.zeros(3), [1.0, 2.0, 3.0], 1000)
    assert "weights" in exc.value.fields
    with pytest.raises(TickwireError) as exc:
        client.portfolio.allocate([0.5, 0.5], [1.0, -2.0], 1000)
    assert "latest_prices" in exc.value.fields
    with pytest.raises(TickwireError) as exc:
        client.portfolio.efficient_frontier(history=prices, num_points=1)
    assert "num_points" in exc.value.fields
    bad = BlackLitterman(np.eye(20)[:1], [0.1], confidences=[2.0])
    with pytest.raises(TickwireError) as exc:
        client.portfolio.black_litterman(bad, history=prices)
    assert "inputs.black_litterman.views[0].confidence" in exc.value.fields
    with pytest.raises(TickwireError) as exc:
        client.portfolio.optimize("max_sharpe", covariance=np.array([[1.0, 2.0], [0.0, 1.0]]))
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs.covariance" in exc.value.fields


def test_unknown_dataset_is_not_found(server: ServerHandle):
    with grpc.insecure_channel(server.target) as ch:
        stub = portfolio_pb2_grpc.PortfolioServiceStub(ch)
        req = portfolio_pb2.OptimizePortfolioRequest(
            inputs=portfolio_pb2.PortfolioInputs(
                history=portfolio_pb2.History(dataset_id="sha256:00", kind=2)
            ),
            objective=portfolio_pb2.OBJECTIVE_MIN_VOLATILITY,
        )
        with pytest.raises(grpc.RpcError) as exc:
            stub.OptimizePortfolio(req, timeout=30)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_async_client(server: ServerHandle, prices):
    async def run() -> np.ndarray:
        async with AsyncClient(server.target) as tw:
            a, b = await asyncio.gather(
                tw.portfolio.optimize("max_sharpe", history=prices),
                tw.portfolio.optimize("hrp", history=prices),
            )
            return a.weights, b.weights

    sharpe, hrp = asyncio.run(run())
    assert sharpe.sum() == pytest.approx(1.0) and hrp.sum() == pytest.approx(1.0)


def test_estimation_pinned_to_torch_matches_numpy(client: Client, prices):
    from tickwire.routing.backends import detect_backends

    if "torch-cpu" not in detect_backends():
        pytest.skip("torch not installed")
    ref = client.portfolio.estimate_inputs(prices, covariance_method="ledoit_wolf_single_factor")
    got = client.portfolio.estimate_inputs(
        prices, covariance_method="ledoit_wolf_single_factor", backend="torch-cpu"
    )
    assert got.execution.backend_used == "torch-cpu"
    np.testing.assert_allclose(got.covariance, ref.covariance, rtol=1e-12)
    # float32 MLX would break the 1e-10 promise: the operation does not run there
    with pytest.raises(TickwireError) as exc:
        client.portfolio.estimate_inputs(prices, backend="mlx")
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_rank_deficient_estimate_is_repaired_and_reported(client: Client):
    """Fewer periods than assets: the sample covariance is singular; an estimate
    that rounding leaves slightly indefinite is repaired, and the report says so."""
    rng = np.random.default_rng(0)
    returns = rng.standard_normal((5, 200)) * 0.01  # rank 4 of 200
    est = client.portfolio.estimate_inputs(returns, kind="returns")
    rep = est.covariance_report
    assert rep.psd_repaired
    assert -1e-12 < rep.min_eigenvalue_before_repair < 0
    eig = np.linalg.eigvalsh(est.covariance)
    assert eig.min() > -1e-12 * eig.max()
    raw = np.cov(returns, rowvar=False) * 252
    assert rep.psd_repaired == (np.linalg.eigvalsh(raw).min() < 0 and not _cholesky_ok(raw))
    np.testing.assert_allclose(est.covariance, raw, atol=1e-12 * np.abs(raw).max())


def _cholesky_ok(m: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(m + 1e-16 * np.eye(len(m)))
    except np.linalg.LinAlgError:
        return False
    return True


def test_client_reregisters_history_on_unknown_id(server: ServerHandle):
    """A returns history registered on one replica and used on another, which
    answers NOT_FOUND: the client registers it there and retries (sync and
    asyncio), with the same weights as on the first replica."""
    rng = np.random.default_rng(2024)
    rs = [rng.standard_normal((300, 6)) * 0.01 + rng.uniform(0.0, 0.001, 6) for _ in range(2)]
    with Client(server.target) as a:
        hists = [a.risk.register_scenarios(r) for r in rs]
        refs = [
            a.portfolio.optimize("min_volatility", history=h, kind="returns").weights for h in hists
        ]
    other = start_server()
    try:
        assert all(other.app.runtime.store.get(h.id) is None for h in hists)
        with Client(other.target) as b:
            w = b.portfolio.optimize("min_volatility", history=hists[0], kind="returns").weights
        np.testing.assert_allclose(w, refs[0], atol=1e-12)

        async def run() -> np.ndarray:
            async with AsyncClient(other.target) as tw:
                res = await tw.portfolio.optimize(
                    "min_volatility", history=hists[1], kind="returns"
                )
                return res.weights

        np.testing.assert_allclose(asyncio.run(run()), refs[1], atol=1e-12)
        assert all(other.app.runtime.store.get(h.id) is not None for h in hists)
    finally:
        stop_server(other)
