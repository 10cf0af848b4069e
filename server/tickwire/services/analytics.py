"""``tickwire.analytics.v1.AnalyticsService``: performance statistics, rolling
statistics and drawdowns of many return series.

Validation and conversion only; the math is in
:mod:`tickwire.engines.analytics_returns`, :mod:`~tickwire.engines.analytics_rolling`
and :mod:`~tickwire.engines.analytics_drawdown`.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
import numpy as np

from tickwire.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from tickwire.common.v1 import tensor_pb2
from tickwire.engines import analytics_drawdown, analytics_returns, analytics_rolling
from tickwire.services import errors, tensors
from tickwire.services.errors import Violations
from tickwire.services.runtime import EngineRuntime, ServiceSpec, rpc

#: Most VaR confidence levels per call.
MAX_CONFIDENCE_LEVELS = 64
#: NumPy's NaT as int64: the time of an index of -1 ("none").
NAT_NS = np.iinfo(np.int64).min


def _decode_returns(t: tensor_pb2.Tensor, v: Violations, min_periods: int) -> np.ndarray | None:
    """The (T, K) return matrix (a (T,) tensor becomes (T, 1)); NaN allowed."""
    ndim = len(t.shape)
    if ndim not in (1, 2):
        v.add("returns.shape", f"must be (T, K) or (T,), got {list(t.shape)}")
        return None
    mins = (min_periods,) if ndim == 1 else (min_periods, 1)
    r = tensors.decode(t, "returns", v, ndim=ndim, min_shape=mins, allow_nan=True)
    if r is None:
        return None
    if r.ndim == 1:
        r = r[:, None]
    if not r.min() > -1.0 and (r <= -1.0).any():  # min is NaN when a period is missing
        bad = int(np.flatnonzero((r <= -1.0).reshape(-1))[0])
        v.add("returns.data", f"simple returns must be > -1; element {bad} is not")
        return None
    return r


def _stored_returns(array: np.ndarray, v: Violations, min_periods: int) -> np.ndarray | None:
    """A registered matrix as (T, K), checked against the RPC's minimum length."""
    r = array[:, None] if array.ndim == 1 else array
    if r.shape[0] < min_periods:
        v.add(
            "returns_set_id",
            f"the registered matrix has {r.shape[0]} periods; this call needs {min_periods}",
        )
        return None
    return r


def _benchmark(
    request: Any, returns: np.ndarray | None, v: Violations, field: str = "benchmark"
) -> np.ndarray | None:
    """The optional (T,) benchmark: finite, one value per period."""
    if not request.HasField(field):
        return None
    b = tensors.decode(getattr(request, field), field, v, ndim=1)
    if b is None:
        return None
    if returns is not None and b.shape[0] != returns.shape[0]:
        v.add(
            f"{field}.shape",
            f"has {b.shape[0]} values; the returns have {returns.shape[0]} periods",
        )
        return None
    if (b <= -1.0).any():
        v.add(f"{field}.data", "simple returns must be > -1")
        return None
    return b


def _timestamps(request: Any, returns: np.ndarray | None, v: Violations) -> np.ndarray | None:
    """The optional (T,) int64 period end times, strictly increasing."""
    if not request.HasField("timestamps"):
        return None
    t = request.timestamps
    if t.dtype != tensor_pb2.D_TYPE_INT64:
        v.add("timestamps.dtype", "must be D_TYPE_INT64 (nanoseconds since the epoch)")
        return None
    if len(t.shape) != 1:
        v.add("timestamps.shape", f"must be (T,), got {list(t.shape)}")
        return None
    data = t.data
    if len(data) != 8 * t.shape[0]:
        v.add(
            "timestamps.data",
            f"holds {len(data)} bytes; shape {list(t.shape)} needs {8 * t.shape[0]}",
        )
        return None
    ts = np.frombuffer(data, dtype="<i8")
    if returns is not None and ts.shape[0] != returns.shape[0]:
        v.add(
            "timestamps.shape",
            f"has {ts.shape[0]} values; the returns have {returns.shape[0]} periods",
        )
        return None
    if ts.shape[0] > 1 and not (np.diff(ts) > 0).all():
        v.add("timestamps.data", "must be strictly increasing")
        return None
    return ts


def _periods_per_year(value: float, v: Violations) -> None:
    if not (math.isfinite(value) and value > 0.0):
        v.add("periods_per_year", f"must be > 0 (e.g. 252 for daily returns), got {value}")


def _finite(value: float, field: str, v: Violations) -> None:
    if not math.isfinite(value):
        v.add(field, f"must be finite, got {value}")


def _max_drawdown(
    m: analytics_drawdown.MaxDrawdown, timestamps: np.ndarray | None
) -> analytics_pb2.MaxDrawdown:
    out = analytics_pb2.MaxDrawdown(
        max_drawdown=tensors.encode(m.max_drawdown),
        peak_index=tensors.encode(m.peak_index),
        trough_index=tensors.encode(m.trough_index),
        recovery_index=tensors.encode(m.recovery_index),
    )
    if timestamps is not None:
        for name in ("peak", "trough", "recovery"):
            idx = getattr(m, f"{name}_index")
            times = np.where(idx >= 0, timestamps[np.maximum(idx, 0)], NAT_NS).astype(np.int64)
            getattr(out, f"{name}_time_ns").CopyFrom(tensors.encode(times))
    return out


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    """Serves :class:`tickwire.analytics.v1.AnalyticsService` over an :class:`EngineRuntime`."""

    def __init__(self, runtime: EngineRuntime) -> None:
        self.rt = runtime

    # ----- decoding (runs off the event loop for large requests) ---------------
    def _returns(self, request: Any, v: Violations, min_periods: int) -> np.ndarray | None:
        """The request's return matrix, inline or registered (NOT_FOUND if unknown)."""
        source = request.WhichOneof("returns_source")
        if source == "returns_set_id":
            found = self.rt.store.get(request.returns_set_id)
            if found is None:
                raise errors.not_found("ReturnsSet", request.returns_set_id, "returns_set_id")
            return _stored_returns(found, v, min_periods)
        if source is None:
            v.add("returns", "required: a (T, K) tensor of simple returns, or `returns_set_id`")
            return None
        return _decode_returns(request.returns, v, min_periods)

    def _decode_register(self, request: analytics_pb2.RegisterReturnsRequest) -> np.ndarray:
        v = Violations()
        if not request.HasField("returns"):
            v.add("returns", "required: a (T, K) tensor of simple returns")
            raise errors.invalid_argument(v)
        r = _decode_returns(request.returns, v, min_periods=1)
        if v or r is None:
            raise errors.invalid_argument(v)
        return r

    def _decode_statistics(
        self, request: analytics_pb2.ComputePerformanceStatisticsRequest
    ) -> tuple[dict[str, Any], np.ndarray | None]:
        v = Violations()
        r = self._returns(request, v, min_periods=2)
        _periods_per_year(request.periods_per_year, v)
        b = _benchmark(request, r, v)
        ts = _timestamps(request, r, v)
        for field in ("risk_free", "required_return", "omega_required_return"):
            _finite(getattr(request, field), field, v)
        levels = tensors.finite_values(request.confidence_levels, "confidence_levels", v)
        if levels is not None:
            if levels.size > MAX_CONFIDENCE_LEVELS:
                v.add("confidence_levels", f"at most {MAX_CONFIDENCE_LEVELS} levels")
            for i, c in enumerate(levels[:MAX_CONFIDENCE_LEVELS]):
                if not 0.0 < c < 1.0:
                    v.add(f"confidence_levels[{i}]", f"must be in (0, 1), got {c}")
        self.rt.check_execution(request.execution, "execution", v)
        if v:
            raise errors.invalid_argument(v)
        inputs = {
            "returns": r,
            "periods_per_year": float(request.periods_per_year),
            "benchmark": b,
            "risk_free": float(request.risk_free),
            "required_return": float(request.required_return),
            "omega_required_return": float(request.omega_required_return),
            "confidence_levels": levels if levels is not None and levels.size else None,
            "information_ratio_per_period": bool(request.information_ratio_per_period),
        }
        return inputs, ts

    def _decode_rolling(
        self, request: analytics_pb2.ComputeRollingStatisticsRequest
    ) -> dict[str, Any]:
        v = Violations()
        r = self._returns(request, v, min_periods=2)
        _periods_per_year(request.periods_per_year, v)
        b = _benchmark(request, r, v)
        _finite(request.risk_free, "risk_free", v)
        if r is not None and not 2 <= request.window <= r.shape[0]:
            v.add(
                "window",
                f"must be in [2, {r.shape[0]}] (the number of periods), got {request.window}",
            )
        self.rt.check_execution(request.execution, "execution", v)
        if v:
            raise errors.invalid_argument(v)
        return {
            "returns": r,
            "periods_per_year": float(request.periods_per_year),
            "window": int(request.window),
            "benchmark": b,
            "risk_free": float(request.risk_free),
        }

    def _decode_drawdowns(
        self, request: analytics_pb2.ComputeDrawdownsRequest
    ) -> tuple[dict[str, Any], np.ndarray | None]:
        v = Violations()
        r = self._returns(request, v, min_periods=1)
        ts = _timestamps(request, r, v)
        self.rt.check_execution(request.execution, "execution", v)
        if v:
            raise errors.invalid_argument(v)
        return {"returns": r}, ts

    # ----- RPCs ---------------------------------------------------------------
    @rpc
    async def RegisterReturns(
        self, request: analytics_pb2.RegisterReturnsRequest, context: grpc.aio.ServicerContext
    ) -> analytics_pb2.RegisterReturnsResponse:
        """Store a return matrix under its content id."""
        r = await self.rt.decode(self._decode_register, request)
        try:
            key, existed = await self.rt.offload(self.rt.store.put, r, nbytes=r.nbytes)
        except ValueError as exc:
            message = str(exc).partition(": ")[2] or str(exc)
            raise errors.invalid_argument([errors.FieldViolation("returns", message)]) from exc
        return analytics_pb2.RegisterReturnsResponse(
            returns_set_id=key,
            num_periods=r.shape[0],
            num_series=r.shape[1] if r.ndim == 2 else 1,
            already_registered=existed,
        )

    @rpc
    async def ComputePerformanceStatistics(
        self,
        request: analytics_pb2.ComputePerformanceStatisticsRequest,
        context: grpc.aio.ServicerContext,
    ) -> analytics_pb2.ComputePerformanceStatisticsResponse:
        """Every summary statistic of K return series."""
        inputs, ts = await self.rt.decode(self._decode_statistics, request)
        result, info = await self.rt.run(
            analytics_returns.PERFORMANCE_STATISTICS, inputs, request.execution, context
        )
        s: analytics_returns.PerformanceStatistics = result.value
        with self.rt.span("encode"):
            out = analytics_pb2.ComputePerformanceStatisticsResponse(
                num_observations=tensors.encode(s.num_observations),
                max_drawdown=_max_drawdown(s.max_drawdown, ts),
                confidence_levels=s.confidence_levels.tolist(),
                value_at_risk=tensors.encode(s.value_at_risk),
                conditional_value_at_risk=tensors.encode(s.conditional_value_at_risk),
                execution=info,
            )
            for name in _SERIES_FIELDS:
                value = getattr(s, name)
                if value is not None:
                    getattr(out, name).CopyFrom(tensors.encode(value))
            return out

    @rpc
    async def ComputeRollingStatistics(
        self,
        request: analytics_pb2.ComputeRollingStatisticsRequest,
        context: grpc.aio.ServicerContext,
    ) -> analytics_pb2.ComputeRollingStatisticsResponse:
        """Rolling Sharpe ratio, volatility and beta."""
        inputs = await self.rt.decode(self._decode_rolling, request)
        result, info = await self.rt.run(
            analytics_rolling.ROLLING_STATISTICS, inputs, request.execution, context
        )
        s: analytics_rolling.RollingStatistics = result.value
        with self.rt.span("encode"):
            out = analytics_pb2.ComputeRollingStatisticsResponse(
                window=s.window,
                rolling_sharpe_ratio=tensors.encode(s.sharpe_ratio),
                rolling_volatility=tensors.encode(s.volatility),
                execution=info,
            )
            if s.beta is not None:
                out.rolling_beta.CopyFrom(tensors.encode(s.beta))
            return out

    @rpc
    async def ComputeDrawdowns(
        self,
        request: analytics_pb2.ComputeDrawdownsRequest,
        context: grpc.aio.ServicerContext,
    ) -> analytics_pb2.ComputeDrawdownsResponse:
        """The drawdown series and the maximum drawdown of each series."""
        inputs, ts = await self.rt.decode(self._decode_drawdowns, request)
        result, info = await self.rt.run(
            analytics_drawdown.DRAWDOWNS, inputs, request.execution, context
        )
        d: analytics_drawdown.Drawdowns = result.value
        with self.rt.span("encode"):
            return analytics_pb2.ComputeDrawdownsResponse(
                drawdown=tensors.encode(d.drawdown),
                max_drawdown=_max_drawdown(d.maximum, ts),
                execution=info,
            )


#: (K,) float64 statistics copied by name from the engine result to the response.
_SERIES_FIELDS = (
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

SERVICE = ServiceSpec(
    name=analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"].full_name,
    create=AnalyticsServicer,
    add_to_server=analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server,
)
