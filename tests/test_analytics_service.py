"""AnalyticsService end to end: the public Python client (blocking and asyncio)
against a real server on 127.0.0.1, on the S&P 500 stocks and SPY; results
checked against the engines and empyrical, bad requests against their field
violations."""

from __future__ import annotations

import asyncio
import math
import time

import empyrical as ep
import grpc
import numpy as np
import pandas as pd
import pytest
from tickwire.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from tickwire.common.v1 import execution_pb2
from tickwire.engines import analytics_returns
from tickwire.feeds.daily_prices import data_dir, load_prices, simple_returns
from tickwire.feeds.sp500 import load_closes
from tickwire.routing.backends import NumpyBackend
from tickwire_client import AsyncClient, Client, TickwireError, to_tensor

P = 252.0


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.Series]:
    """(1258, 470) stock returns (dates x symbols) and SPY on the same dates."""
    spy = load_prices(data_dir() / "daily-prices" / "spy_prices_1993_2019.csv.gz", ["SPY"])
    rets = simple_returns(load_closes().join(spy, how="left"))
    return rets.drop(columns="SPY"), rets["SPY"]


@pytest.fixture(scope="module")
def stub(server) -> analytics_pb2_grpc.AnalyticsServiceStub:
    with grpc.insecure_channel(server.target) as channel:
        yield analytics_pb2_grpc.AnalyticsServiceStub(channel)


def test_statistics_of_470_stocks_in_one_call(client: Client, frames) -> None:
    r, b = frames
    report = client.analytics.performance_statistics(r, benchmark=b)
    ref = analytics_returns.performance_statistics(NumpyBackend(), r.to_numpy(), P, b.to_numpy())
    assert report.names == list(r.columns)
    for name in ("annual_return", "sharpe_ratio", "stability", "alpha", "down_capture"):
        np.testing.assert_array_equal(getattr(report, name), getattr(ref, name))
    np.testing.assert_array_equal(report.value_at_risk, ref.value_at_risk)
    assert report.confidence_levels == [0.95, 0.99]
    j = r.columns.get_loc("AAPL")
    assert report.sharpe_ratio[j] == pytest.approx(ep.sharpe_ratio(r["AAPL"]), rel=1e-10)
    assert report.execution.operation == "analytics.performance_statistics"
    assert report.execution.work_units == r.size
    assert report.execution.backend_used == "numpy"


def test_drawdown_dates_come_from_the_dataframe_index(client: Client, frames) -> None:
    r, _ = frames
    cols = r[["AAPL", "MSFT", "XOM"]]
    report = client.analytics.performance_statistics(cols)
    dd = report.drawdown
    for j, name in enumerate(cols.columns):
        wealth = (1.0 + cols[name]).cumprod()
        under = wealth / np.maximum(wealth.cummax(), 1.0) - 1.0
        assert dd.trough_time[j] == under.idxmin().to_datetime64()
        assert dd.max_drawdown[j] == pytest.approx(under.min(), rel=1e-12)
        if dd.recovery_index[j] >= 0:
            assert dd.recovery_time[j] == cols.index[dd.recovery_index[j]].to_datetime64()
        else:
            assert np.isnat(dd.recovery_time[j])
    frame = report.to_frame()
    assert list(frame.index) == ["AAPL", "MSFT", "XOM"]
    assert {"var_95", "cvar_99", "drawdown_trough", "sharpe_ratio"} <= set(frame.columns)
    assert "alpha" not in frame.columns  # no benchmark, no relative statistics
    assert report.alpha is None


def test_missing_periods_are_accepted_as_nan(client: Client) -> None:
    closes = load_closes(complete=False)
    r = (closes / closes.shift(1) - 1.0).iloc[1:]
    late = r.loc[:, r.isna().any()].iloc[:, :5]
    report = client.analytics.performance_statistics(late)
    np.testing.assert_array_equal(report.num_observations, late.notna().sum().to_numpy())
    expected = [ep.sharpe_ratio(late[c].to_numpy()) for c in late.columns]
    np.testing.assert_allclose(report.sharpe_ratio, expected, rtol=1e-10)


def test_rolling_statistics_rpc(client: Client, frames) -> None:
    r, b = frames
    cols = r.iloc[:, :30]
    out = client.analytics.rolling_statistics(cols, 63, benchmark=b)
    assert out.sharpe_ratio.shape == (r.shape[0] - 62, 30)
    assert out.index[0] == r.index[62]
    beta = out.frame("beta")
    ref = ep.roll_beta(cols.iloc[:, 4].to_numpy(), b.to_numpy(), 63)
    np.testing.assert_allclose(beta.iloc[:, 4].to_numpy(), ref, rtol=1e-10, atol=1e-12)
    assert out.execution.operation == "analytics.rolling_statistics"


def test_drawdowns_rpc(client: Client, frames) -> None:
    r, _ = frames
    out = client.analytics.drawdowns(r.iloc[:, :50])
    np.testing.assert_allclose(
        out.drawdown, ep.stats.drawdown_series(r.iloc[:, :50].to_numpy()), rtol=1e-12
    )
    assert out.frame().index.equals(r.index)
    np.testing.assert_array_equal(out.maximum.max_drawdown, out.drawdown.min(axis=0))


def test_async_client(server, frames) -> None:
    r, b = frames

    async def go() -> tuple:
        async with AsyncClient(server.target) as c:
            s = await c.analytics.performance_statistics(r.iloc[:, :10], benchmark=b)
            ro = await c.analytics.rolling_statistics(r.iloc[:, :10], window=21)
            d = await c.analytics.drawdowns(r.iloc[:, :10])
            return s, ro, d

    s, ro, d = asyncio.run(go())
    assert s.beta.shape == (10,)
    assert ro.beta is None and ro.volatility.shape == (r.shape[0] - 20, 10)
    assert d.drawdown.shape == (r.shape[0], 10)


# --------------------------------------------------------------------------
# bad requests: INVALID_ARGUMENT naming every bad field, server keeps serving
# --------------------------------------------------------------------------
def _returns(t: int = 20, k: int = 3) -> np.ndarray:
    return np.random.default_rng(0).normal(0.0005, 0.01, (t, k))


def _stats_request(**fields) -> analytics_pb2.ComputePerformanceStatisticsRequest:
    req = analytics_pb2.ComputePerformanceStatisticsRequest(
        returns=to_tensor(_returns()), periods_per_year=P
    )
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            getattr(req, name).CopyFrom(to_tensor(value, "<i8" if name == "timestamps" else "<f8"))
        elif name == "confidence_levels":
            req.confidence_levels.extend(value)
        elif name == "returns_raw":
            req.returns.CopyFrom(value)
        elif name == "execution":
            req.execution.CopyFrom(value)
        else:
            setattr(req, name, value)
    return req


def _fields(err: grpc.RpcError) -> list[str]:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)
    out = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out += [v.field for v in br.field_violations]
    return out


BAD_STATS = [
    ("periods_per_year_zero", {"periods_per_year": 0.0}, ["periods_per_year"]),
    ("periods_per_year_negative", {"periods_per_year": -12.0}, ["periods_per_year"]),
    ("periods_per_year_nan", {"periods_per_year": math.nan}, ["periods_per_year"]),
    ("benchmark_nan", {"benchmark": np.r_[np.full(19, 0.001), np.nan]}, ["benchmark.data"]),
    ("benchmark_wrong_length", {"benchmark": np.zeros(19)}, ["benchmark.shape"]),
    ("benchmark_two_d", {"benchmark": np.zeros((20, 1))}, ["benchmark.shape"]),
    ("risk_free_inf", {"risk_free": math.inf}, ["risk_free"]),
    ("required_return_nan", {"required_return": math.nan}, ["required_return"]),
    ("confidence_level_one", {"confidence_levels": [0.95, 1.0]}, ["confidence_levels[1]"]),
    ("confidence_level_nan", {"confidence_levels": [math.nan]}, ["confidence_levels"]),
    ("timestamps_decreasing", {"timestamps": np.arange(20)[::-1].copy()}, ["timestamps.data"]),
    ("timestamps_wrong_length", {"timestamps": np.arange(5)}, ["timestamps.shape"]),
    ("returns_inf", {"returns_raw": to_tensor(np.full((20, 2), np.inf))}, ["returns.data"]),
    (
        "returns_below_minus_one",
        {"returns_raw": to_tensor(np.full((20, 2), -2.0))},
        ["returns.data"],
    ),
    ("returns_one_period", {"returns_raw": to_tensor(np.zeros((1, 2)))}, ["returns.shape"]),
    ("returns_three_d", {"returns_raw": to_tensor(np.zeros((4, 2, 2)))}, ["returns.shape"]),
    (
        "backend_unknown",
        {"execution": execution_pb2.ExecutionOptions(backend=42)},
        ["execution.backend"],
    ),
]


@pytest.mark.parametrize(
    ("fields", "expected"), [c[1:] for c in BAD_STATS], ids=[c[0] for c in BAD_STATS]
)
def test_bad_statistics_request_names_the_field(stub, fields, expected) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputePerformanceStatistics(_stats_request(**fields), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(info.value) == expected


def test_missing_returns_and_every_bad_field_at_once(stub) -> None:
    req = analytics_pb2.ComputePerformanceStatisticsRequest(
        periods_per_year=-1.0, risk_free=math.nan
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputePerformanceStatistics(req, timeout=30)
    assert _fields(info.value) == ["returns", "periods_per_year", "risk_free"]


@pytest.mark.parametrize(("window", "ok"), [(1, False), (20, True), (21, False), (0, False)])
def test_rolling_window_must_fit_the_series(stub, window, ok) -> None:
    req = analytics_pb2.ComputeRollingStatisticsRequest(
        returns=to_tensor(_returns()), periods_per_year=P, window=window
    )
    if ok:
        assert stub.ComputeRollingStatistics(req, timeout=30).rolling_volatility.shape == [1, 3]
        return
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputeRollingStatistics(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(info.value) == ["window"]


def test_rolling_benchmark_of_wrong_shape(stub) -> None:
    req = analytics_pb2.ComputeRollingStatisticsRequest(
        returns=to_tensor(_returns()),
        periods_per_year=0.0,
        window=5,
        benchmark=to_tensor(np.zeros(7)),
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputeRollingStatistics(req, timeout=30)
    assert _fields(info.value) == ["periods_per_year", "benchmark.shape"]


def test_drawdowns_reject_timestamps_of_the_wrong_dtype(stub) -> None:
    req = analytics_pb2.ComputeDrawdownsRequest(
        returns=to_tensor(_returns()), timestamps=to_tensor(np.arange(20.0))
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputeDrawdowns(req, timeout=30)
    assert _fields(info.value) == ["timestamps.dtype"]


def test_client_surfaces_violations_and_server_keeps_serving(client: Client) -> None:
    with pytest.raises(TickwireError) as info:
        client.analytics.performance_statistics(_returns(), periods_per_year=0.0)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in info.value.field_violations] == ["periods_per_year"]
    with pytest.raises(TickwireError):
        client.analytics.rolling_statistics(_returns(), window=50)
    report = client.analytics.performance_statistics(_returns())
    assert report.sharpe_ratio.shape == (3,)


# --------------------------------------------------------------------------
# registered return matrices
# --------------------------------------------------------------------------
def test_registered_returns_give_the_same_statistics(client: Client, frames) -> None:
    r, b = frames
    rs = client.analytics.register_returns(r)
    assert rs.id.startswith("sha256:")
    assert (rs.num_periods, rs.num_series) == r.shape
    assert client.analytics.register_returns(r).already_registered
    inline = client.analytics.performance_statistics(r, benchmark=b)
    stored = client.analytics.performance_statistics(rs, benchmark=b)
    assert stored.names == list(r.columns)
    for name in ("sharpe_ratio", "beta", "tail_ratio", "max_drawdown"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(inline, name))
    np.testing.assert_array_equal(stored.drawdown.trough_time, inline.drawdown.trough_time)
    rolling = client.analytics.rolling_statistics(rs, 21)
    assert rolling.sharpe_ratio.shape == (r.shape[0] - 20, r.shape[1])
    assert client.analytics.drawdowns(rs).drawdown.shape == r.shape


def test_unknown_returns_set_id_is_not_found(stub) -> None:
    req = analytics_pb2.ComputeDrawdownsRequest(returns_set_id="sha256:" + "0" * 64)
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputeDrawdowns(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_registers_again_on_a_server_that_lost_the_set(client: Client, frames) -> None:
    from conftest import start_server, stop_server

    r, _ = frames
    rs = client.analytics.register_returns(r.iloc[:, :20])
    other = start_server()  # a fresh replica that never saw the set
    try:
        with Client(other.target, timeout=60.0) as fresh:
            report = fresh.analytics.performance_statistics(rs)
            assert report.sharpe_ratio.shape == (20,)
            assert fresh.analytics.register_returns(rs).already_registered
    finally:
        stop_server(other)


def test_registered_set_too_short_for_rolling(client: Client, stub) -> None:
    rs = client.analytics.register_returns(np.full((1, 3), 0.01))
    req = analytics_pb2.ComputePerformanceStatisticsRequest(
        returns_set_id=rs.id, periods_per_year=P
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputePerformanceStatistics(req, timeout=30)
    assert _fields(info.value) == ["returns_set_id"]


def test_service_is_served_and_traced(server, client: Client, frames) -> None:
    assert client.health("tickwire.analytics.v1.AnalyticsService") == "SERVING"
    server.spans.clear()
    client.analytics.performance_statistics(frames[0].iloc[:, :5])
    name = "tickwire.analytics.v1.AnalyticsService/ComputePerformanceStatistics"
    # The server span ends after the response is sent: wait for its export.
    end = time.monotonic() + 5.0
    while time.monotonic() < end:
        names = {s.name: s for s in server.spans.get_finished_spans()}
        if name in names:
            break
        time.sleep(0.02)
    rpc = names[name]
    assert rpc.attributes["tickwire.operation"] == "analytics.performance_statistics"
    assert rpc.attributes["tickwire.work_units"] == frames[0].shape[0] * 5
    assert {"decode", "route", "compute", "encode"} <= set(names)


def test_a_deadline_shorter_than_the_work_is_exceeded(client: Client, frames) -> None:
    r, b = frames
    with pytest.raises(TickwireError) as info:
        client.analytics.performance_statistics(r, benchmark=b, timeout=0.001)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert client.analytics.performance_statistics(r.iloc[:, :2]).sharpe_ratio.shape == (2,)
