"""RiskService end to end: the public Python client (blocking and asyncio) against a
real server on 127.0.0.1, checked against independent NumPy/SciPy computations
under the conventions documented in ``protos/tickwire/risk/v1/risk.proto``.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterator
from fractions import Fraction

import grpc
import numpy as np
import pytest
from conftest import ServerHandle, start_server, stop_server
from scipy import stats
from tickwire.risk.v1 import risk_pb2, risk_pb2_grpc
from tickwire_client import AsyncClient, Client, ScenarioSet, TickwireError, VarReport, to_tensor

REL = 1e-9
LEVELS = [0.99, 0.95, 0.975]  # deliberately unsorted: the response keeps request order
HORIZONS = [10, 1, 5]
BACKEND_NAMES = {"numpy", "torch-cpu", "torch-cuda", "mlx"}


# --------------------------------------------------------------------------
# independent reference computations
# --------------------------------------------------------------------------
def ref_historical(pnl: np.ndarray, c: float) -> tuple[float, float]:
    """VaR = L(k), CVaR = mean(L(k..T)), k = ceil(c T), losses L ascending.

    ``k`` is computed in exact rational arithmetic on the decimal the caller
    wrote (0.95 means 95/100), so that c*T landing on an integer is not
    pushed up by binary rounding.
    """
    losses = np.sort(-np.asarray(pnl, dtype=np.float64))
    t = losses.shape[0]
    k = math.ceil(Fraction(repr(c)) * t)
    return float(losses[k - 1]), float(losses[k - 1 :].mean())


def ref_parametric(pnl: np.ndarray, c: float) -> tuple[float, float]:
    """Normal with the sample mean and standard deviation (ddof=1) of P&L."""
    mu, sd = float(np.mean(pnl)), float(np.std(pnl, ddof=1))
    var = float(stats.norm.ppf(c, loc=-mu, scale=sd))  # loss quantile
    z = stats.norm.ppf(c)
    cvar = -mu + sd * float(stats.norm.pdf(z)) / (1.0 - c)
    return var, cvar


def assert_close(actual: float, expected: float, rel: float = REL) -> None:
    assert actual == pytest.approx(expected, rel=rel, abs=0.0), (actual, expected)


def assert_estimates(report: VarReport, pnl: np.ndarray, ref, levels, horizons) -> None:
    assert [(e.confidence_level, e.horizon_days) for e in report.estimates] == [
        (c, h) for c in levels for h in horizons
    ]
    for e in report.estimates:
        var1, cvar1 = ref(pnl, e.confidence_level)
        scale = math.sqrt(e.horizon_days)
        assert_close(e.var, var1 * scale)
        assert_close(e.cvar, cvar1 * scale)
        assert e.cvar >= e.var
        assert e.var_standard_error == 0.0


def assert_same_estimates(a: VarReport, b: VarReport, rel: float = 1e-12) -> None:
    """Equal figures; not bit for bit, since the router may place the two calls
    on different backends (a registered matrix may be resident on a GPU)."""
    assert [(e.confidence_level, e.horizon_days) for e in a.estimates] == [
        (e.confidence_level, e.horizon_days) for e in b.estimates
    ]
    for x, y in zip(a.estimates, b.estimates, strict=True):
        assert_close(x.var, y.var, rel)
        assert_close(x.cvar, y.cvar, rel)
    assert a.num_scenarios == b.num_scenarios
    assert_close(a.pnl_mean, b.pnl_mean, rel)
    assert_close(a.pnl_std, b.pnl_std, rel)


def assert_execution(report_execution, operation: str) -> None:
    ex = report_execution
    assert ex.backend_used in BACKEND_NAMES
    assert ex.compute_ms > 0.0
    assert ex.operation == operation
    assert re.fullmatch(r"[0-9a-f]{32}", ex.trace_id), ex.trace_id
    assert ex.trace_id != "0" * 32


def run(coro):
    """Run an AsyncClient coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def pnl(returns: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return returns @ positions


@pytest.fixture(scope="module")
def server_b() -> Iterator[ServerHandle]:
    """A second replica: it shares nothing with the session server."""
    handle = start_server()
    yield handle
    stop_server(handle)


# --------------------------------------------------------------------------
# VaR / CVaR
# --------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [None, 2000, 2400], ids=["all", "T=2000", "T=2400"])
def test_historical_matches_numpy(client: Client, returns, positions, rows) -> None:
    # With T=2000 and T=2400, c*T is an integer for every level (e.g. 0.975 * 2400 =
    # 2340), where a ceil of the binary product can pick the next order statistic.
    s = returns if rows is None else returns[:rows]
    pnl = s @ positions
    report = client.risk.compute_var(
        s, positions, method="historical", confidence_levels=LEVELS, horizon_days=HORIZONS
    )
    assert_estimates(report, pnl, ref_historical, LEVELS, HORIZONS)
    assert report.num_scenarios == s.shape[0]
    assert_close(report.pnl_mean, float(np.mean(pnl)))
    assert_close(report.pnl_std, float(np.std(pnl, ddof=1)))
    assert_execution(report.execution, "risk.historical_var")
    # The convention is numpy's "inverted_cdf" quantile.
    for e in report.estimates:
        q = np.quantile(-pnl, e.confidence_level, method="inverted_cdf")
        assert_close(e.var, float(q) * math.sqrt(e.horizon_days))


def test_historical_async_client_matches_blocking(client: Client, server, returns, positions):
    async def go() -> VarReport:
        async with AsyncClient(server.target, timeout=60.0) as ac:
            return await ac.risk.compute_var(
                returns, positions, confidence_levels=LEVELS, horizon_days=HORIZONS
            )

    a = run(go())
    b = client.risk.compute_var(returns, positions, confidence_levels=LEVELS, horizon_days=HORIZONS)
    assert_estimates(a, returns @ positions, ref_historical, LEVELS, HORIZONS)
    assert_same_estimates(a, b)
    assert_execution(a.execution, "risk.historical_var")
    assert a.execution.trace_id != b.execution.trace_id


def test_estimates_ordering_levels_outermost(client: Client, returns, positions) -> None:
    levels, horizons = [0.9, 0.999, 0.5], [3, 1]
    r = client.risk.compute_var(returns, positions, confidence_levels=levels, horizon_days=horizons)
    assert [(e.confidence_level, e.horizon_days) for e in r.estimates] == [
        (0.9, 3),
        (0.9, 1),
        (0.999, 3),
        (0.999, 1),
        (0.5, 3),
        (0.5, 1),
    ]
    assert r.get(0.999, 1).var == r.estimates[3].var
    # Empty horizons mean [1].
    r1 = client.risk.compute_var(returns, positions, confidence_levels=[0.99], horizon_days=[])
    assert [(e.confidence_level, e.horizon_days) for e in r1.estimates] == [(0.99, 1)]


def test_parametric_matches_scipy(client: Client, returns, positions, pnl) -> None:
    report = client.risk.compute_var(
        returns, positions, method="parametric", confidence_levels=LEVELS, horizon_days=HORIZONS
    )
    assert_estimates(report, pnl, ref_parametric, LEVELS, HORIZONS)
    assert_execution(report.execution, "risk.parametric_normal_var")
    # CVaR of the normal loss, by numerical integration instead of the closed form.
    mu, sd = float(np.mean(pnl)), float(np.std(pnl, ddof=1))
    for e in report.estimates:
        var1 = e.var / math.sqrt(e.horizon_days)
        tail = stats.norm.expect(lambda x: x, loc=-mu, scale=sd, lb=var1, conditional=True)
        assert_close(e.cvar, tail * math.sqrt(e.horizon_days), rel=1e-7)


def test_monte_carlo_reproducible_and_consistent(client: Client, server, returns, positions, pnl):
    kw = dict(
        method="monte_carlo",
        confidence_levels=[0.95, 0.99],
        horizon_days=[1, 10],
        num_simulations=200_000,
        backend="numpy",
    )
    a = client.risk.compute_var(returns, positions, seed=7, **kw)
    b = client.risk.compute_var(returns, positions, seed=7, **kw)
    c = client.risk.compute_var(returns, positions, seed=8, **kw)

    async def go() -> VarReport:
        async with AsyncClient(server.target, timeout=60.0) as ac:
            return await ac.risk.compute_var(returns, positions, seed=7, **kw)

    d = run(go())
    same = [(e.var, e.cvar, e.var_standard_error) for e in a.estimates]
    assert same == [(e.var, e.cvar, e.var_standard_error) for e in b.estimates]  # bit for bit
    assert same == [(e.var, e.cvar, e.var_standard_error) for e in d.estimates]
    assert same != [(e.var, e.cvar, e.var_standard_error) for e in c.estimates]
    assert a.num_scenarios == 200_000
    assert a.execution.backend_used == "numpy"
    assert a.execution.backend_requested == "numpy"
    assert_execution(a.execution, "risk.monte_carlo_var")
    # Draws from the fitted normal: the portfolio P&L is N(mean, var) of the
    # historical P&L, so MC VaR estimates the parametric VaR.
    for e in a.estimates:
        p_var, p_cvar = ref_parametric(pnl, e.confidence_level)
        root = math.sqrt(e.horizon_days)
        assert e.var_standard_error > 0.0
        assert abs(e.var - p_var * root) < 6.0 * e.var_standard_error
        assert e.cvar == pytest.approx(p_cvar * root, rel=0.03)
        assert e.cvar >= e.var
    assert a.pnl_mean == pytest.approx(float(np.mean(pnl)), abs=4 * np.std(pnl) / math.sqrt(2e5))
    assert a.pnl_std == pytest.approx(float(np.std(pnl, ddof=1)), rel=0.01)


def test_backends_agree(client: Client, server, returns, positions, pnl) -> None:
    """Every backend present gives the same historical figures to rounding."""
    present = sorted(server.app.runtime.router.backends)
    assert "numpy" in present
    for name in present:
        r = client.risk.compute_var(
            returns, positions, confidence_levels=LEVELS, horizon_days=HORIZONS, backend=name
        )
        assert r.execution.backend_used == name
        assert r.execution.backend_requested == name
        assert_estimates(r, pnl, ref_historical, LEVELS, HORIZONS)


# --------------------------------------------------------------------------
# component VaR, backtests
# --------------------------------------------------------------------------
def test_component_var_sums_and_matches_reference(client: Client, returns, positions, pnl):
    c, h = 0.99, 10
    r = client.risk.component_var(returns, positions, confidence_level=c, horizon_days=h)
    n = positions.shape[0]
    assert r.marginal_var.shape == r.component_var.shape == r.component_cvar.shape == (n,)
    assert_close(float(np.sum(r.component_var)), r.var)
    assert_close(float(np.sum(r.component_cvar)), r.cvar)
    assert float(np.sum(r.component_var_share)) == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(r.component_var, positions * r.marginal_var, rtol=1e-12)
    # Delta-normal VaR is the parametric VaR; historical CVaR is the tail mean.
    root = math.sqrt(h)
    assert_close(r.var, ref_parametric(pnl, c)[0] * root)
    assert_close(r.cvar, ref_historical(pnl, c)[1] * root)
    mu, cov = returns.mean(axis=0), np.cov(returns, rowvar=False, ddof=1)
    sigma_p = math.sqrt(positions @ cov @ positions)
    marginal = (-mu + stats.norm.ppf(c) * (cov @ positions) / sigma_p) * root
    np.testing.assert_allclose(r.marginal_var, marginal, rtol=1e-9)
    assert_execution(r.execution, "risk.component_var")


def test_backtest_rolling_window_on_real_pnl(client: Client, pnl) -> None:
    c, window = 0.99, 250
    r = client.risk.backtest_var(pnl, confidence_level=c, window=window)
    t = pnl.shape[0]
    assert r.num_observations == t - window
    # Independent rolling forecasts: VaR of the previous 250 days, same convention.
    forecasts = np.array([ref_historical(pnl[i - window : i], c)[0] for i in range(window, t)])
    np.testing.assert_allclose(r.var_forecasts, forecasts, rtol=1e-12)
    hits = np.flatnonzero(-pnl[window:] > r.var_forecasts)
    np.testing.assert_array_equal(r.exception_indices, hits)
    assert r.num_exceptions == hits.size
    assert r.exception_rate == pytest.approx(hits.size / (t - window))
    assert r.expected_exception_rate == pytest.approx(1 - c)
    # Kupiec POF from its definition.
    n, x, p = t - window, hits.size, 1 - c
    lr = -2 * (
        (n - x) * math.log(1 - p) + x * math.log(p) - (n - x) * math.log(1 - x / n)
        - x * math.log(x / n)
    )  # fmt: skip
    assert r.kupiec_pof.statistic == pytest.approx(lr, rel=1e-9)
    assert r.kupiec_pof.p_value == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-9)
    assert r.kupiec_pof.degrees_of_freedom == 1
    assert r.conditional_coverage.degrees_of_freedom == 2
    assert r.conditional_coverage.statistic == pytest.approx(
        r.kupiec_pof.statistic + r.christoffersen_independence.statistic
    )
    assert r.kupiec_pof.reject == (r.kupiec_pof.p_value < 0.05)


def test_backtest_with_given_forecasts(client: Client, pnl) -> None:
    forecasts = np.full(pnl.shape, ref_historical(pnl, 0.95)[0])
    r = client.risk.backtest_var(pnl, var_forecasts=forecasts, confidence_level=0.95)
    hits = np.flatnonzero(-pnl > forecasts)
    assert r.num_observations == pnl.shape[0]
    assert r.num_exceptions == hits.size
    np.testing.assert_array_equal(r.exception_indices, hits)
    np.testing.assert_array_equal(r.var_forecasts, forecasts)
    assert r.execution.backend_used == "numpy"


# --------------------------------------------------------------------------
# registered scenario sets
# --------------------------------------------------------------------------
def test_register_scenarios_content_id(server: ServerHandle, client: Client) -> None:
    s = np.random.default_rng(20240601).standard_normal((24, 6)) * 0.01
    with grpc.insecure_channel(server.target) as ch:
        stub = risk_pb2_grpc.RiskServiceStub(ch)
        req = risk_pb2.RegisterScenariosRequest(scenarios=to_tensor(s))
        first = stub.RegisterScenarios(req, timeout=30)
        second = stub.RegisterScenarios(req, timeout=30)
        # Same bytes, another shape: another id.
        other = stub.RegisterScenarios(
            risk_pb2.RegisterScenariosRequest(scenarios=to_tensor(s.reshape(6, 24))), timeout=30
        )
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first.scenario_set_id)
    assert (first.num_scenarios, first.num_assets) == (24, 6)
    assert first.already_registered is False
    assert second.scenario_set_id == first.scenario_set_id
    assert second.already_registered is True
    assert other.scenario_set_id != first.scenario_set_id
    # The client returns the same id for the same content (and a copy of the data).
    via_client = client.risk.register_scenarios(s.copy())
    assert via_client.id == first.scenario_set_id
    assert (via_client.num_scenarios, via_client.num_assets) == (24, 6)
    np.testing.assert_array_equal(via_client.array, s)
    changed = s.copy()
    changed[3, 2] += 1e-12
    assert client.risk.register_scenarios(changed).id != first.scenario_set_id


def test_call_by_id_equals_inline(client: Client, returns, positions) -> None:
    sset = client.risk.register_scenarios(returns)
    for method in ("historical", "parametric", "cornish_fisher"):
        by_id = client.risk.compute_var(
            sset, positions, method=method, confidence_levels=LEVELS, horizon_days=HORIZONS
        )
        inline = client.risk.compute_var(
            returns, positions, method=method, confidence_levels=LEVELS, horizon_days=HORIZONS
        )
        assert_same_estimates(by_id, inline)
    a = client.risk.component_var(sset, positions)
    b = client.risk.component_var(returns, positions)
    assert_close(a.var, b.var, 1e-12)
    assert_close(a.cvar, b.cvar, 1e-12)
    np.testing.assert_allclose(a.component_cvar, b.component_cvar, rtol=1e-12)


def test_large_matrix_with_default_limits(server: ServerHandle, returns) -> None:
    """A 10,000 x 500 float64 matrix (40 MB, ten times gRPC's 4 MiB default)
    passes with the client's and the server's default settings."""
    rng = np.random.default_rng(500)
    s = rng.standard_normal((10_000, 500)) * 0.01
    w = rng.uniform(-1.0, 1.0, 500) * 1e5
    with Client(server.target) as c:  # all defaults
        sset = c.risk.register_scenarios(s)
        assert (sset.num_scenarios, sset.num_assets) == (10_000, 500)
        by_id = c.risk.compute_var(sset, w, confidence_levels=[0.95, 0.99])
        inline = c.risk.compute_var(s, w, confidence_levels=[0.95, 0.99])
    assert_same_estimates(by_id, inline)
    assert by_id.num_scenarios == 10_000
    assert by_id.execution.work_units == 10_000 * 500
    assert_estimates(by_id, s @ w, ref_historical, [0.95, 0.99], [1])


def test_client_reregisters_on_unknown_id(server: ServerHandle, server_b: ServerHandle) -> None:
    rng = np.random.default_rng(77)
    s = rng.standard_normal((300, 4)) * 0.01
    w = np.array([1e6, -2e5, 3e5, 4e5])
    with Client(server.target) as a:
        sset = a.risk.register_scenarios(s)
    assert server_b.app.runtime.store.get(sset.id) is None
    # A raw call by id to the replica that never saw it: NOT_FOUND.
    with grpc.insecure_channel(server_b.target) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            risk_pb2_grpc.RiskServiceStub(ch).ComputeVar(
                risk_pb2.ComputeVarRequest(
                    scenario_set_id=sset.id,
                    positions=w.tolist(),
                    method=risk_pb2.VAR_METHOD_HISTORICAL,
                    confidence_levels=[0.99],
                ),
                timeout=30,
            )
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    # The client registers again on NOT_FOUND and retries, transparently.
    with Client(server_b.target) as b:
        r = b.risk.compute_var(sset, w, confidence_levels=[0.99])
    assert server_b.app.runtime.store.get(sset.id) is not None
    assert_estimates(r, s @ w, ref_historical, [0.99], [1])

    # The same with the asyncio client, for component VaR.
    s2 = rng.standard_normal((300, 4)) * 0.01
    with Client(server.target) as a:
        sset2 = a.risk.register_scenarios(s2)
    assert server_b.app.runtime.store.get(sset2.id) is None

    async def go():
        async with AsyncClient(server_b.target, timeout=30.0) as b:
            return await b.risk.component_var(sset2, w, confidence_level=0.99)

    cr = run(go())
    assert server_b.app.runtime.store.get(sset2.id) is not None
    assert_close(cr.cvar, ref_historical(s2 @ w, 0.99)[1])


def test_stale_set_with_wrong_array_is_not_hidden(server_b: ServerHandle) -> None:
    """A ScenarioSet whose array does not hash to its id is not silently
    replaced by another matrix: the retry by the old id fails NOT_FOUND."""
    s = np.random.default_rng(5).standard_normal((50, 3)) * 0.01
    bogus = ScenarioSet("sha256:" + "0" * 64, 50, 3, s)

    with Client(server_b.target) as b, pytest.raises(TickwireError) as exc:
        b.risk.compute_var(bogus, [1.0, 2.0, 3.0])
    assert exc.value.code == grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------
# execution info
# --------------------------------------------------------------------------
def test_execution_info_and_trace(server: ServerHandle, client: Client, returns, positions):
    r = client.risk.compute_var(returns, positions, backend="numpy")
    ex = r.execution
    assert_execution(ex, "risk.historical_var")
    assert (ex.backend_used, ex.backend_requested) == ("numpy", "numpy")
    assert ex.work_units == returns.shape[0] * returns.shape[1]
    assert ex.estimated_ms > 0.0
    assert ex.fallbacks == []
    routed = client.risk.compute_var(returns, positions)
    assert routed.execution.backend_requested == "auto"
    # The trace id is the one of the server's spans for this call.
    deadline = time.monotonic() + 5.0
    ids: set[str] = set()
    while time.monotonic() < deadline:
        ids = {format(s.context.trace_id, "032x") for s in server.spans.get_finished_spans()}
        if ex.trace_id in ids:
            break
        time.sleep(0.05)
    assert ex.trace_id in ids


def test_registered_set_keeps_a_copy_the_caller_cannot_change(client, returns) -> None:
    mine = returns.copy()
    registered = client.risk.register_scenarios(mine)
    mine[:] = 0.0  # the caller reuses its buffer
    assert not registered.array.flags.writeable
    np.testing.assert_array_equal(registered.array, returns)
    again = client.risk.register_scenarios(returns)
    assert again.id == registered.id and again.already_registered
