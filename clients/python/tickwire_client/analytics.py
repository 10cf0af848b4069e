"""``tickwire.analytics.v1.AnalyticsService`` from Python: performance statistics,
rolling statistics and drawdowns of many return series, NumPy or pandas in and out.

``returns`` is a (T, K) array-like of simple returns, one column per series
(a (T,) vector or a Series is one series); NaN marks a missing period. A
DataFrame keeps its column names (``report.names``) and, with a
``DatetimeIndex``, sends its dates as the period timestamps, so that the
drawdown peak, trough and recovery come back as dates. A benchmark Series is
aligned on the returns' index first.

``register_returns`` stores a matrix on the server once and returns a
:class:`ReturnsSet` to pass as ``returns`` later (no 4.7 MB upload per call
for the S&P 500 panel). A server that does not hold it (a restart, another
replica, eviction) answers NOT_FOUND; the client then registers the same
matrix again and retries once.

>>> from tickwire_client import Client
>>> with Client("127.0.0.1:50051") as tw:                          # doctest: +SKIP
...     report = tw.analytics.performance_statistics(stock_returns, benchmark=spy)
...     print(report.to_frame().sort_values("sharpe_ratio").tail())
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pandas as pd
from tickwire.analytics.v1 import analytics_pb2, analytics_pb2_grpc

from tickwire_client.arrays import from_tensor, to_tensor
from tickwire_client.calls import call, call_async
from tickwire_client.risk import Execution, _execution

#: The (K,) statistics of a :class:`PerformanceReport`, in the order of ``to_frame``.
STATISTICS = (
    "annual_return",
    "cumulative_return",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "downside_risk",
    "max_drawdown",
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


@dataclass(frozen=True)
class ReturnsSet:
    """A return matrix registered on the server (refer to it instead of resending)."""

    id: str
    num_periods: int
    num_series: int
    #: A read-only copy of the registered matrix, sent again if a server lost it.
    array: np.ndarray
    #: Column names and index of the DataFrame it came from, if any.
    names: list[str] | None = None
    index: pd.Index | None = None
    #: True when the server already held this matrix.
    already_registered: bool = False


@dataclass(frozen=True)
class MaxDrawdownInfo:
    """Maximum drawdown of each series: depth (<= 0) and periods (-1: none).

    ``peak_time``, ``trough_time`` and ``recovery_time`` are ``datetime64[ns]``
    arrays (NaT where the index is -1) when timestamps were sent, else None.
    """

    max_drawdown: np.ndarray
    peak_index: np.ndarray
    trough_index: np.ndarray
    recovery_index: np.ndarray
    peak_time: np.ndarray | None
    trough_time: np.ndarray | None
    recovery_time: np.ndarray | None

    @classmethod
    def from_proto(cls, m: analytics_pb2.MaxDrawdown) -> MaxDrawdownInfo:
        """Decode ``tickwire.analytics.v1.MaxDrawdown``."""

        def times(t: Any) -> np.ndarray | None:
            return from_tensor(t).view("datetime64[ns]") if t.dtype else None

        return cls(
            from_tensor(m.max_drawdown),
            from_tensor(m.peak_index),
            from_tensor(m.trough_index),
            from_tensor(m.recovery_index),
            times(m.peak_time_ns),
            times(m.trough_time_ns),
            times(m.recovery_time_ns),
        )


@dataclass(frozen=True)
class PerformanceReport:
    """Statistics of K series, each a (K,) array (None without a benchmark
    for ``alpha`` .. ``down_capture``); VaR and CVaR are (C, K)."""

    names: list[str] | None
    num_observations: np.ndarray
    annual_return: np.ndarray
    cumulative_return: np.ndarray
    annual_volatility: np.ndarray
    sharpe_ratio: np.ndarray
    sortino_ratio: np.ndarray
    downside_risk: np.ndarray
    drawdown: MaxDrawdownInfo
    calmar_ratio: np.ndarray
    omega_ratio: np.ndarray
    tail_ratio: np.ndarray
    stability: np.ndarray
    skewness: np.ndarray
    kurtosis: np.ndarray
    confidence_levels: list[float]
    value_at_risk: np.ndarray
    conditional_value_at_risk: np.ndarray
    alpha: np.ndarray | None
    beta: np.ndarray | None
    information_ratio: np.ndarray | None
    tracking_error: np.ndarray | None
    up_capture: np.ndarray | None
    down_capture: np.ndarray | None
    execution: Execution

    @property
    def max_drawdown(self) -> np.ndarray:
        """(K,) maximum drawdown, <= 0."""
        return self.drawdown.max_drawdown

    def to_frame(self) -> pd.DataFrame:
        """One row per series (indexed by name), one column per statistic,
        plus ``var_95``/``cvar_95``-style columns per confidence level and
        the drawdown peak, trough and recovery (dates when available)."""
        cols: dict[str, Any] = {
            name: getattr(self, name)
            for name in STATISTICS
            if getattr(self, name, None) is not None
        }
        for i, c in enumerate(self.confidence_levels):
            tag = f"{c * 100:g}".replace(".", "_")
            cols[f"var_{tag}"] = self.value_at_risk[i]
            cols[f"cvar_{tag}"] = self.conditional_value_at_risk[i]
        dd = self.drawdown
        for part in ("peak", "trough", "recovery"):
            when = getattr(dd, f"{part}_time")
            cols[f"drawdown_{part}"] = when if when is not None else getattr(dd, f"{part}_index")
        cols["num_observations"] = self.num_observations
        return pd.DataFrame(cols, index=self.names)


@dataclass(frozen=True)
class RollingReport:
    """Rolling statistics, (T - window + 1, K); row i covers periods i .. i + window - 1.

    ``index`` labels each row with the last period of its window when the
    returns came with an index (a DataFrame or Series), else None.
    """

    names: list[str] | None
    index: pd.Index | None
    window: int
    sharpe_ratio: np.ndarray
    volatility: np.ndarray
    beta: np.ndarray | None
    execution: Execution

    def frame(self, statistic: str) -> pd.DataFrame:
        """One statistic ("sharpe_ratio", "volatility", "beta") as a DataFrame."""
        return pd.DataFrame(getattr(self, statistic), index=self.index, columns=self.names)


@dataclass(frozen=True)
class DrawdownReport:
    """The (T, K) drawdown series and the maximum drawdown of each series."""

    names: list[str] | None
    index: pd.Index | None
    drawdown: np.ndarray
    maximum: MaxDrawdownInfo
    execution: Execution

    def frame(self) -> pd.DataFrame:
        """The drawdown series as a DataFrame (dates x series)."""
        return pd.DataFrame(self.drawdown, index=self.index, columns=self.names)


# --------------------------------------------------------------------------
# request building
# --------------------------------------------------------------------------
def _panel(returns: Any) -> tuple[np.ndarray, list[str] | None, pd.Index | None]:
    """Returns as a float64 array, with the column names and index if any."""
    if isinstance(returns, ReturnsSet):
        return returns.array, returns.names, returns.index
    if isinstance(returns, pd.DataFrame):
        return returns.to_numpy(np.float64), [str(c) for c in returns.columns], returns.index
    if isinstance(returns, pd.Series):
        return returns.to_numpy(np.float64), [str(returns.name)], returns.index
    return np.asarray(returns, dtype=np.float64), None, None


def _source(returns: Any, array: np.ndarray) -> dict[str, Any]:
    """The request's ``returns_source`` oneof: an id or the inline tensor."""
    if isinstance(returns, ReturnsSet):
        return {"returns_set_id": returns.id}
    return {"returns": to_tensor(array)}


def _register_request(returns: Any) -> tuple[np.ndarray, list[str] | None, pd.Index | None, Any]:
    r, names, index = _panel(returns)
    a = np.array(r, dtype=np.float64, order="C")
    a.setflags(write=False)
    return a, names, index, analytics_pb2.RegisterReturnsRequest(returns=to_tensor(a))


def _returns_set(
    a: np.ndarray, names: list[str] | None, index: pd.Index | None, r: Any
) -> ReturnsSet:
    return ReturnsSet(
        r.returns_set_id, r.num_periods, r.num_series, a, names, index, r.already_registered
    )


def _benchmark(benchmark: Any, index: pd.Index | None) -> Any:
    if benchmark is None:
        return None
    if isinstance(benchmark, pd.DataFrame):
        if benchmark.shape[1] != 1:
            raise ValueError("benchmark must be one series")
        benchmark = benchmark.iloc[:, 0]
    if isinstance(benchmark, pd.Series) and index is not None:
        benchmark = benchmark.reindex(index)
    return to_tensor(np.asarray(benchmark, dtype=np.float64))


def _timestamps(timestamps: Any, index: pd.Index | None) -> Any:
    """int64 ns Tensor from explicit timestamps, or from a DatetimeIndex."""
    if timestamps is None and isinstance(index, pd.DatetimeIndex):
        timestamps = index
    if timestamps is None:
        return None
    ns = pd.DatetimeIndex(timestamps)
    if ns.tz is not None:
        ns = ns.tz_convert("UTC").tz_localize(None)
    return to_tensor(ns.as_unit("ns").asi8, "<i8")


class _Requests:
    """Request builders shared by the blocking and asyncio clients."""

    @staticmethod
    def statistics(
        returns,
        periods_per_year,
        benchmark,
        risk_free,
        required_return,
        omega_required_return,
        confidence_levels,
        timestamps,
        information_ratio_per_period,
        backend,
    ) -> tuple[analytics_pb2.ComputePerformanceStatisticsRequest, list[str] | None]:
        r, names, index = _panel(returns)
        req = analytics_pb2.ComputePerformanceStatisticsRequest(
            **_source(returns, r),
            periods_per_year=periods_per_year,
            risk_free=risk_free,
            required_return=required_return,
            omega_required_return=omega_required_return,
            confidence_levels=list(confidence_levels or []),
            information_ratio_per_period=information_ratio_per_period,
            execution=_execution(backend, False),
        )
        b = _benchmark(benchmark, index)
        if b is not None:
            req.benchmark.CopyFrom(b)
        ts = _timestamps(timestamps, index)
        if ts is not None:
            req.timestamps.CopyFrom(ts)
        return req, names

    @staticmethod
    def rolling(
        returns, window, periods_per_year, benchmark, risk_free, backend
    ) -> tuple[analytics_pb2.ComputeRollingStatisticsRequest, list[str] | None, pd.Index | None]:
        r, names, index = _panel(returns)
        req = analytics_pb2.ComputeRollingStatisticsRequest(
            **_source(returns, r),
            periods_per_year=periods_per_year,
            window=window,
            risk_free=risk_free,
            execution=_execution(backend, False),
        )
        b = _benchmark(benchmark, index)
        if b is not None:
            req.benchmark.CopyFrom(b)
        labels = index[window - 1 :] if index is not None and 1 <= window <= len(index) else None
        return req, names, labels

    @staticmethod
    def drawdowns(
        returns, timestamps, backend
    ) -> tuple[analytics_pb2.ComputeDrawdownsRequest, list[str] | None, pd.Index | None]:
        r, names, index = _panel(returns)
        req = analytics_pb2.ComputeDrawdownsRequest(
            **_source(returns, r), execution=_execution(backend, False)
        )
        ts = _timestamps(timestamps, index)
        if ts is not None:
            req.timestamps.CopyFrom(ts)
        return req, names, index


def _maybe(t: Any) -> np.ndarray | None:
    return from_tensor(t) if t.dtype else None


def _report(
    r: analytics_pb2.ComputePerformanceStatisticsResponse, names: list[str] | None
) -> PerformanceReport:
    return PerformanceReport(
        names=names,
        num_observations=from_tensor(r.num_observations),
        annual_return=from_tensor(r.annual_return),
        cumulative_return=from_tensor(r.cumulative_return),
        annual_volatility=from_tensor(r.annual_volatility),
        sharpe_ratio=from_tensor(r.sharpe_ratio),
        sortino_ratio=from_tensor(r.sortino_ratio),
        downside_risk=from_tensor(r.downside_risk),
        drawdown=MaxDrawdownInfo.from_proto(r.max_drawdown),
        calmar_ratio=from_tensor(r.calmar_ratio),
        omega_ratio=from_tensor(r.omega_ratio),
        tail_ratio=from_tensor(r.tail_ratio),
        stability=from_tensor(r.stability),
        skewness=from_tensor(r.skewness),
        kurtosis=from_tensor(r.kurtosis),
        confidence_levels=list(r.confidence_levels),
        value_at_risk=from_tensor(r.value_at_risk),
        conditional_value_at_risk=from_tensor(r.conditional_value_at_risk),
        alpha=_maybe(r.alpha),
        beta=_maybe(r.beta),
        information_ratio=_maybe(r.information_ratio),
        tracking_error=_maybe(r.tracking_error),
        up_capture=_maybe(r.up_capture),
        down_capture=_maybe(r.down_capture),
        execution=Execution.from_proto(r.execution),
    )


def _rolling(
    r: analytics_pb2.ComputeRollingStatisticsResponse,
    names: list[str] | None,
    index: pd.Index | None,
) -> RollingReport:
    return RollingReport(
        names,
        index,
        r.window,
        from_tensor(r.rolling_sharpe_ratio),
        from_tensor(r.rolling_volatility),
        _maybe(r.rolling_beta),
        Execution.from_proto(r.execution),
    )


def _drawdowns(
    r: analytics_pb2.ComputeDrawdownsResponse, names: list[str] | None, index: pd.Index | None
) -> DrawdownReport:
    return DrawdownReport(
        names,
        index,
        from_tensor(r.drawdown),
        MaxDrawdownInfo.from_proto(r.max_drawdown),
        Execution.from_proto(r.execution),
    )


class AnalyticsClient:
    """Blocking calls to ``AnalyticsService``; reached as ``Client(...).analytics``.

    Every method takes ``timeout`` (seconds) and ``backend`` (None routes) and
    raises :class:`TickwireError` on a failed call.
    """

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._rpc = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        self._timeout = timeout

    def _call(self, name: str, request: Any, timeout: float | None, returns: Any = None) -> Any:
        again = None
        if isinstance(returns, ReturnsSet):
            again = functools.partial(self.register_returns, returns, timeout=timeout)
        return call(getattr(self._rpc, name), request, timeout or self._timeout, again)

    def register_returns(self, returns: Any, timeout: float | None = None) -> ReturnsSet:
        """Register a (T, K) return matrix (a DataFrame keeps its names and
        dates); pass the result as ``returns`` later."""
        a, names, index, req = _register_request(returns)
        return _returns_set(a, names, index, self._call("RegisterReturns", req, timeout))

    def performance_statistics(
        self,
        returns: Any,
        periods_per_year: float = 252.0,
        benchmark: Any = None,
        risk_free: float = 0.0,
        required_return: float = 0.0,
        omega_required_return: float = 0.0,
        confidence_levels: Any = None,
        timestamps: Any = None,
        information_ratio_per_period: bool = False,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> PerformanceReport:
        """Every summary statistic of the columns of ``returns`` in one call.

        ``risk_free`` and ``required_return`` are per period;
        ``omega_required_return`` is annual; ``confidence_levels`` default to
        (0.95, 0.99). See ``protos/tickwire/analytics/v1/analytics.proto``.
        """
        req, names = _Requests.statistics(
            returns,
            periods_per_year,
            benchmark,
            risk_free,
            required_return,
            omega_required_return,
            confidence_levels,
            timestamps,
            information_ratio_per_period,
            backend,
        )
        return _report(self._call("ComputePerformanceStatistics", req, timeout, returns), names)

    def rolling_statistics(
        self,
        returns: Any,
        window: int,
        periods_per_year: float = 252.0,
        benchmark: Any = None,
        risk_free: float = 0.0,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> RollingReport:
        """Rolling Sharpe ratio, volatility and (with a benchmark) beta."""
        req, names, index = _Requests.rolling(
            returns, window, periods_per_year, benchmark, risk_free, backend
        )
        return _rolling(self._call("ComputeRollingStatistics", req, timeout, returns), names, index)

    def drawdowns(
        self,
        returns: Any,
        timestamps: Any = None,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> DrawdownReport:
        """The drawdown series and the maximum drawdown of every column."""
        req, names, index = _Requests.drawdowns(returns, timestamps, backend)
        return _drawdowns(self._call("ComputeDrawdowns", req, timeout, returns), names, index)


class AsyncAnalyticsClient:
    """asyncio calls to ``AnalyticsService``; the same methods as :class:`AnalyticsClient`."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._rpc = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        self._timeout = timeout

    async def _call(
        self, name: str, request: Any, timeout: float | None, returns: Any = None
    ) -> Any:
        again = None
        if isinstance(returns, ReturnsSet):
            again = functools.partial(self.register_returns, returns, timeout=timeout)
        return await call_async(getattr(self._rpc, name), request, timeout or self._timeout, again)

    async def register_returns(self, returns: Any, timeout: float | None = None) -> ReturnsSet:
        """See :meth:`AnalyticsClient.register_returns`."""
        a, names, index, req = _register_request(returns)
        return _returns_set(a, names, index, await self._call("RegisterReturns", req, timeout))

    async def performance_statistics(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> PerformanceReport:
        """See :meth:`AnalyticsClient.performance_statistics`."""
        values = _bind(AnalyticsClient.performance_statistics, args, kwargs)
        req, names = _Requests.statistics(*values)
        reply = await self._call("ComputePerformanceStatistics", req, timeout, values[0])
        return _report(reply, names)

    async def rolling_statistics(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> RollingReport:
        """See :meth:`AnalyticsClient.rolling_statistics`."""
        values = _bind(AnalyticsClient.rolling_statistics, args, kwargs)
        req, names, index = _Requests.rolling(*values)
        reply = await self._call("ComputeRollingStatistics", req, timeout, values[0])
        return _rolling(reply, names, index)

    async def drawdowns(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> DrawdownReport:
        """See :meth:`AnalyticsClient.drawdowns`."""
        values = _bind(AnalyticsClient.drawdowns, args, kwargs)
        req, names, index = _Requests.drawdowns(*values)
        reply = await self._call("ComputeDrawdowns", req, timeout, values[0])
        return _drawdowns(reply, names, index)


def _bind(method: Any, args: tuple, kwargs: dict) -> list[Any]:
    """The blocking method's arguments in order, defaults applied (minus self, timeout)."""
    bound = inspect.signature(method).bind(None, *args, **kwargs)
    bound.apply_defaults()
    values = list(bound.arguments.values())[1:]
    return values[:-1]  # drop timeout
