"""``tickwire.microstructure.v1.MicrostructureService`` from Python: VPIN for
a batch of trades, and the bidirectional VPIN stream.

>>> report = tw.microstructure.compute_vpin(                      # doctest: +SKIP
...     ts_ns, price, size, side, symbol="AAPL", bucket_volume=57_000)
>>> report.buckets.vpin[-1], report.bvc_accuracy                  # doctest: +SKIP

>>> for msg in tw.microstructure.stream_vpin(batches, bucket_volume=5_000):  # doctest: +SKIP
...     if msg.WhichOneof("payload") == "buckets":
...         b = VpinBuckets.from_proto(msg.buckets)
...         print(b.symbol, b.bucket_index[-1], b.vpin[-1])

``batches`` is any iterable (for the async client also an async iterable) of
``tickwire.common.v1.TradeBatch`` messages (:func:`trade_batch` builds one
from NumPy); each is sent with ``client_batch_id`` = its 1-based position.
Ready-made ``StreamVpinRequest`` messages pass through unchanged (e.g. with
your own ids). The stream yields the server's answers
(``StreamVpinAnswer``, unpacked from its ``StreamVpinResponse`` messages, in
request order): ``buckets`` (completed buckets of one batch), ``rejection``
(the batch id and the bad fields; the stream goes on) and ``ack`` (config,
per-symbol parameters, restore).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tickwire.common.v1 import market_pb2
from tickwire.microstructure.v1 import microstructure_pb2 as pb
from tickwire.microstructure.v1 import microstructure_pb2_grpc as pb_grpc

from tickwire_client.errors import TickwireError
from tickwire_client.risk import BACKENDS, Execution

CDFS = {"normal": pb.PRICE_CHANGE_CDF_NORMAL, "student_t": pb.PRICE_CHANGE_CDF_STUDENT_T}
CLASSIFICATIONS = {
    "bvc": pb.VOLUME_CLASSIFICATION_BVC,
    "true_side": pb.VOLUME_CLASSIFICATION_TRUE_SIDE,
}


@dataclass(frozen=True)
class VpinBuckets:
    """Completed volume buckets of one symbol; every array has one value per bucket."""

    symbol: str
    bucket_index: np.ndarray
    end_ts_ns: np.ndarray
    end_price: np.ndarray
    buy_volume: np.ndarray
    bvc_buy_volume: np.ndarray
    true_buy_volume: np.ndarray
    order_imbalance: np.ndarray
    vpin: np.ndarray
    cdf_rank: np.ndarray
    kyle_lambda: np.ndarray
    vpin_bvc: np.ndarray
    vpin_true_side: np.ndarray

    @classmethod
    def from_proto(cls, m: pb.VpinBuckets) -> VpinBuckets:
        """Decode ``tickwire.microstructure.v1.VpinBuckets``."""
        f = np.asarray
        return cls(
            symbol=m.symbol,
            bucket_index=f(m.bucket_index, dtype=np.int64),
            end_ts_ns=f(m.end_ts_ns, dtype=np.int64),
            end_price=f(m.end_price, dtype=np.float64),
            buy_volume=f(m.buy_volume, dtype=np.float64),
            bvc_buy_volume=f(m.bvc_buy_volume, dtype=np.float64),
            true_buy_volume=f(m.true_buy_volume, dtype=np.float64),
            order_imbalance=f(m.order_imbalance, dtype=np.float64),
            vpin=f(m.vpin, dtype=np.float64),
            cdf_rank=f(m.cdf_rank, dtype=np.float64),
            kyle_lambda=f(m.kyle_lambda, dtype=np.float64),
            vpin_bvc=f(m.vpin_bvc, dtype=np.float64),
            vpin_true_side=f(m.vpin_true_side, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.bucket_index)


@dataclass(frozen=True)
class VpinReport:
    """The result of ``compute_vpin`` (see ``ComputeVpinResponse`` for each field)."""

    buckets: VpinBuckets
    trades: int
    bars: int
    kyle_lambda: float
    kyle_lambda_stderr: float
    kyle_lambda_r2: float
    realised_volatility: float
    sigma: float
    bvc_accuracy: float
    vpin_correlation: float
    vpin_mean_abs_difference: float
    execution: Execution


def trade_batch(
    symbol: str,
    ts_ns: Any,
    price: Any,
    size: Any,
    aggressor_side: Any | None = None,
) -> market_pb2.TradeBatch:
    """A ``TradeBatch`` from columns: ts_ns (N,) int ns since the epoch (UTC),
    price (N,) currency units, size (N,) shares, aggressor_side (N,) +1 buy /
    -1 sell or None."""
    tb = market_pb2.TradeBatch(
        symbol=symbol,
        ts_ns=np.asarray(ts_ns, dtype=np.int64),
        price=np.asarray(price, dtype=np.float64),
        size=np.asarray(size, dtype=np.float64),
    )
    if aggressor_side is not None and len(aggressor_side):
        side = np.asarray(aggressor_side)
        tb.aggressor_side.extend(
            np.where(side > 0, market_pb2.AGGRESSOR_SIDE_BUY, market_pb2.AGGRESSOR_SIDE_SELL)
        )
    return tb


def vpin_parameters(
    bucket_volume: float = 0.0,
    window_buckets: int = 50,
    bar_ns: int = 60_000_000_000,
    cdf: str = "normal",
    degrees_of_freedom: float = 0.0,
    sigma: float = 0.0,
    classification: str = "bvc",
    cdf_history: int = 10_000,
) -> pb.VpinParameters:
    """A ``VpinParameters`` message (see ``tickwire.engines.vpin`` for each choice).

    Raises
    ------
    ValueError
        Unknown ``cdf`` or ``classification`` name.
    """
    if cdf not in CDFS:
        raise ValueError(f"cdf: use one of {sorted(CDFS)}")
    if classification not in CLASSIFICATIONS:
        raise ValueError(f"classification: use one of {sorted(CLASSIFICATIONS)}")
    return pb.VpinParameters(
        bucket_volume=bucket_volume,
        window_buckets=window_buckets,
        bar_ns=bar_ns,
        cdf=CDFS[cdf],
        degrees_of_freedom=degrees_of_freedom,
        sigma=sigma,
        classification=CLASSIFICATIONS[classification],
        cdf_history=cdf_history,
    )


def _report(r: pb.ComputeVpinResponse) -> VpinReport:
    return VpinReport(
        buckets=VpinBuckets.from_proto(r.buckets),
        trades=r.trades,
        bars=r.bars,
        kyle_lambda=r.kyle_lambda,
        kyle_lambda_stderr=r.kyle_lambda_stderr,
        kyle_lambda_r2=r.kyle_lambda_r2,
        realised_volatility=r.realised_volatility,
        sigma=r.sigma,
        bvc_accuracy=r.bvc_accuracy,
        vpin_correlation=r.vpin_correlation,
        vpin_mean_abs_difference=r.vpin_mean_abs_difference,
        execution=Execution.from_proto(r.execution),
    )


def _compute_request(
    ts_ns: Any,
    price: Any,
    size: Any,
    aggressor_side: Any | None,
    symbol: str,
    params: pb.VpinParameters,
    backend: str | None,
) -> pb.ComputeVpinRequest:
    req = pb.ComputeVpinRequest(
        trades=trade_batch(symbol, ts_ns, price, size, aggressor_side), parameters=params
    )
    if backend not in BACKENDS:
        raise ValueError(f"backend: use one of {[b for b in BACKENDS if b]}")
    req.execution.backend = BACKENDS[backend]
    return req


def _config(
    params: pb.VpinParameters,
    session_id: str,
    symbol_parameters: Mapping[str, pb.VpinParameters] | None,
    max_symbols: int,
    answer_interval_us: int,
) -> pb.StreamVpinRequest:
    return pb.StreamVpinRequest(
        config=pb.VpinStreamConfig(
            session_id=session_id,
            default_parameters=params,
            symbols=[
                pb.SymbolParameters(symbol=s, parameters=p)
                for s, p in (symbol_parameters or {}).items()
            ],
            max_symbols=max_symbols,
            answer_interval_us=answer_interval_us,
        )
    )


def _wrap(i: int, item: Any) -> Any:
    if isinstance(item, market_pb2.TradeBatch):
        return pb.StreamVpinRequest(client_batch_id=i, trades=item)
    return item  # a StreamVpinRequest as is


def _requests(
    config: pb.StreamVpinRequest, restore: Iterable[pb.VpinSymbolState], batches: Iterable[Any]
) -> Iterator[Any]:
    yield config
    for state in restore:
        yield pb.StreamVpinRequest(restore=state)
    for i, item in enumerate(batches, 1):
        yield _wrap(i, item)


async def _arequests(
    config: pb.StreamVpinRequest,
    restore: Iterable[pb.VpinSymbolState],
    batches: Iterable[Any] | AsyncIterable[Any],
) -> AsyncIterator[Any]:
    yield config
    for state in restore:
        yield pb.StreamVpinRequest(restore=state)
    if isinstance(batches, AsyncIterable):
        i = 0
        async for item in batches:
            i += 1
            yield _wrap(i, item)
    else:
        for i, item in enumerate(batches, 1):
            yield _wrap(i, item)


class MicrostructureClient:
    """Blocking calls to ``MicrostructureService``; reached as ``Client(...).microstructure``."""

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._rpc = pb_grpc.MicrostructureServiceStub(channel)
        self._timeout = timeout

    def compute_vpin(
        self,
        ts_ns: Any,
        price: Any,
        size: Any,
        aggressor_side: Any | None = None,
        *,
        symbol: str,
        bucket_volume: float,
        window_buckets: int = 50,
        bar_ns: int = 60_000_000_000,
        cdf: str = "normal",
        degrees_of_freedom: float = 0.0,
        sigma: float = 0.0,
        classification: str = "bvc",
        cdf_history: int = 10_000,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> VpinReport:
        """VPIN series, imbalances, CDF ranks, Kyle's lambda and realised
        volatility of one symbol's trades (+ BVC accuracy when sides are given)."""
        params = vpin_parameters(
            bucket_volume, window_buckets, bar_ns, cdf, degrees_of_freedom, sigma,
            classification, cdf_history,
        )  # fmt: skip
        req = _compute_request(ts_ns, price, size, aggressor_side, symbol, params, backend)
        try:
            return _report(self._rpc.ComputeVpin(req, timeout=timeout or self._timeout))
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None

    def stream_vpin(
        self,
        batches: Iterable[Any],
        *,
        bucket_volume: float = 0.0,
        window_buckets: int = 50,
        bar_ns: int = 60_000_000_000,
        cdf: str = "normal",
        degrees_of_freedom: float = 0.0,
        sigma: float = 0.0,
        classification: str = "bvc",
        cdf_history: int = 10_000,
        symbol_parameters: Mapping[str, pb.VpinParameters] | None = None,
        session_id: str = "",
        max_symbols: int = 0,
        answer_interval_us: int = 0,
        restore: Iterable[pb.VpinSymbolState] = (),
        timeout: float | None = None,
    ) -> Iterator[pb.StreamVpinAnswer]:
        """Stream trade batches, yield the server's answers (module docstring).

        ``bucket_volume`` (and the other parameters) are the stream's default;
        0 means every symbol needs ``symbol_parameters`` (build them with
        :func:`vpin_parameters`). ``session_id`` names the stream's state for
        ``get_state`` / ``reset_state`` and resumption; ``restore`` puts
        snapshots from ``get_state`` into this stream first.
        ``answer_interval_us``: least time between two of the server's
        responses (0: the server's default, 5 ms; 1: every answer at once,
        for a client that sends a batch and waits for its answer). ``timeout``:
        None for no deadline.

        Raises
        ------
        TickwireError
            The stream failed (a bad config is INVALID_ARGUMENT).
        """
        params = vpin_parameters(
            bucket_volume, window_buckets, bar_ns, cdf, degrees_of_freedom, sigma,
            classification, cdf_history,
        )  # fmt: skip
        config = _config(params, session_id, symbol_parameters, max_symbols, answer_interval_us)
        call = self._rpc.StreamVpin(_requests(config, list(restore), batches), timeout=timeout)
        try:
            for response in call:
                yield from response.answers
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        finally:
            call.cancel()  # no-op after a normal end; stops the call if the caller left early

    def get_state(
        self, session_id: str, symbol: str, timeout: float | None = None
    ) -> pb.VpinSymbolState:
        """Snapshot of one symbol of a named stream session (pass it to ``restore``)."""
        try:
            return self._rpc.GetVpinState(
                pb.GetVpinStateRequest(session_id=session_id, symbol=symbol),
                timeout=timeout or self._timeout,
            ).state
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None

    def reset_state(
        self, session_id: str, symbol: str, timeout: float | None = None
    ) -> pb.VpinSymbolState:
        """Clear one symbol of a named session; returns its state before the reset."""
        try:
            return self._rpc.ResetVpinState(
                pb.ResetVpinStateRequest(session_id=session_id, symbol=symbol),
                timeout=timeout or self._timeout,
            ).previous_state
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None


class AsyncMicrostructureClient:
    """asyncio calls to ``MicrostructureService``; reached as ``AsyncClient(...).microstructure``."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._rpc = pb_grpc.MicrostructureServiceStub(channel)
        self._timeout = timeout

    async def compute_vpin(
        self,
        ts_ns: Any,
        price: Any,
        size: Any,
        aggressor_side: Any | None = None,
        *,
        symbol: str,
        bucket_volume: float,
        window_buckets: int = 50,
        bar_ns: int = 60_000_000_000,
        cdf: str = "normal",
        degrees_of_freedom: float = 0.0,
        sigma: float = 0.0,
        classification: str = "bvc",
        cdf_history: int = 10_000,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> VpinReport:
        """As :meth:`MicrostructureClient.compute_vpin`."""
        params = vpin_parameters(
            bucket_volume, window_buckets, bar_ns, cdf, degrees_of_freedom, sigma,
            classification, cdf_history,
        )  # fmt: skip
        req = _compute_request(ts_ns, price, size, aggressor_side, symbol, params, backend)
        try:
            return _report(await self._rpc.ComputeVpin(req, timeout=timeout or self._timeout))
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None

    async def stream_vpin(
        self,
        batches: Iterable[Any] | AsyncIterable[Any],
        *,
        bucket_volume: float = 0.0,
        window_buckets: int = 50,
        bar_ns: int = 60_000_000_000,
        cdf: str = "normal",
        degrees_of_freedom: float = 0.0,
        sigma: float = 0.0,
        classification: str = "bvc",
        cdf_history: int = 10_000,
        symbol_parameters: Mapping[str, pb.VpinParameters] | None = None,
        session_id: str = "",
        max_symbols: int = 0,
        answer_interval_us: int = 0,
        restore: Iterable[pb.VpinSymbolState] = (),
        timeout: float | None = None,
    ) -> AsyncIterator[pb.StreamVpinAnswer]:
        """As :meth:`MicrostructureClient.stream_vpin`, as an async iterator."""
        params = vpin_parameters(
            bucket_volume, window_buckets, bar_ns, cdf, degrees_of_freedom, sigma,
            classification, cdf_history,
        )  # fmt: skip
        config = _config(params, session_id, symbol_parameters, max_symbols, answer_interval_us)
        call = self._rpc.StreamVpin(_arequests(config, list(restore), batches), timeout=timeout)
        try:
            async for response in call:
                for answer in response.answers:
                    yield answer
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        finally:
            call.cancel()

    async def get_state(
        self, session_id: str, symbol: str, timeout: float | None = None
    ) -> pb.VpinSymbolState:
        """As :meth:`MicrostructureClient.get_state`."""
        try:
            resp = await self._rpc.GetVpinState(
                pb.GetVpinStateRequest(session_id=session_id, symbol=symbol),
                timeout=timeout or self._timeout,
            )
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        return resp.state

    async def reset_state(
        self, session_id: str, symbol: str, timeout: float | None = None
    ) -> pb.VpinSymbolState:
        """As :meth:`MicrostructureClient.reset_state`."""
        try:
            resp = await self._rpc.ResetVpinState(
                pb.ResetVpinStateRequest(session_id=session_id, symbol=symbol),
                timeout=timeout or self._timeout,
            )
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        return resp.previous_state
