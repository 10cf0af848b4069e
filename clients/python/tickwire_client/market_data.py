"""``tickwire.marketdata.v1.MarketDataService`` from Python: list the
replayable datasets and stream a replay.

>>> for msg in tw.market_data.replay("lobster-aapl-2012-06-21-l1", quotes=True,
...                                  time_bar_ns=60_000_000_000):  # doctest: +SKIP
...     kind = msg.WhichOneof("payload")      # "trades", "quotes" or "bars"
...     batch = getattr(msg, kind)            # common.v1.TradeBatch / QuoteBatch / BarBatch
...     ts = np.asarray(batch.ts_ns) if kind != "bars" else np.asarray(batch.start_ts_ns)

The replay yields ``ReplayResponse`` messages as they arrive; the columns of a
batch turn into NumPy arrays with ``np.asarray(batch.field)``. Leaving the
loop early (``break``, an exception, closing the iterator) cancels the call,
and the server stops producing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import grpc
from tickwire.marketdata.v1 import market_data_pb2, market_data_pb2_grpc

from tickwire_client.errors import TickwireError

#: DatasetKind values by name.
DATASET_KINDS = {
    v.number: v.name.removeprefix("DATASET_KIND_").lower()
    for v in market_data_pb2.DatasetKind.DESCRIPTOR.values
}


@dataclass(frozen=True)
class DatasetInfo:
    """A replayable dataset.

    Attributes
    ----------
    name : str
        Pass it to :meth:`MarketDataClient.replay`.
    symbols : list of str
    session_date : datetime.date
        Trading day (New York).
    start_ts_ns, end_ts_ns : int
        Time window ``[start, end)``, ns since the Unix epoch (UTC).
    events : int
        Events (LOBSTER messages, or prints).
    trades : int
        Trades (LOBSTER executions, or prints).
    kind : str
        ``"lobster"`` or ``"trade_prints"``.
    has_aggressor_side, has_quotes : bool
    """

    name: str
    symbols: list[str]
    session_date: date
    start_ts_ns: int
    end_ts_ns: int
    events: int
    trades: int
    kind: str
    has_aggressor_side: bool
    has_quotes: bool

    @classmethod
    def from_proto(cls, d: market_data_pb2.DatasetInfo) -> DatasetInfo:
        """Decode ``tickwire.marketdata.v1.DatasetInfo``."""
        return cls(
            name=d.name,
            symbols=list(d.symbols),
            session_date=date.fromisoformat(d.session_date),
            start_ts_ns=d.start_ts_ns,
            end_ts_ns=d.end_ts_ns,
            events=d.events,
            trades=d.trades,
            kind=DATASET_KINDS.get(d.kind, "unspecified"),
            has_aggressor_side=d.has_aggressor_side,
            has_quotes=d.has_quotes,
        )


def replay_request(
    datasets: str | Sequence[str],
    *,
    speed: float = 0.0,
    start_ts_ns: int | None = None,
    end_ts_ns: int | None = None,
    trades: bool = True,
    quotes: bool = False,
    time_bar_ns: int | None = None,
    volume_bar_shares: float | None = None,
    batch_size: int = 1000,
) -> market_data_pb2.ReplayRequest:
    """The ``ReplayRequest`` of :meth:`MarketDataClient.replay`'s arguments."""
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    return market_data_pb2.ReplayRequest(
        datasets=names,
        speed=speed,
        start_ts_ns=start_ts_ns or 0,
        end_ts_ns=end_ts_ns or 0,
        trades=trades,
        quotes=quotes,
        time_bar_ns=time_bar_ns or 0,
        volume_bar_shares=volume_bar_shares or 0.0,
        batch_size=batch_size,
    )


class MarketDataClient:
    """Blocking calls to ``MarketDataService``; reached as ``Client(...).market_data``."""

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._rpc = market_data_pb2_grpc.MarketDataServiceStub(channel)
        self._timeout = timeout

    def list_datasets(self, timeout: float | None = None) -> list[DatasetInfo]:
        """The datasets (and symbols) the server can replay, sorted by name."""
        try:
            resp = self._rpc.ListDatasets(
                market_data_pb2.ListDatasetsRequest(), timeout=timeout or self._timeout
            )
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        return [DatasetInfo.from_proto(d) for d in resp.datasets]

    def replay(
        self,
        datasets: str | Sequence[str],
        *,
        speed: float = 0.0,
        start_ts_ns: int | None = None,
        end_ts_ns: int | None = None,
        trades: bool = True,
        quotes: bool = False,
        time_bar_ns: int | None = None,
        volume_bar_shares: float | None = None,
        batch_size: int = 1000,
        timeout: float | None = None,
    ) -> Iterator[market_data_pb2.ReplayResponse]:
        """Stream a replay of one or more datasets, merged in time order.

        Parameters
        ----------
        datasets : str or list of str
            Names from :meth:`list_datasets`.
        speed : float
            0 as fast as the reader takes it, 1 real time, N N x real time.
        start_ts_ns, end_ts_ns : int, optional
            Range ``[start, end)``, ns since the Unix epoch (UTC); the
            datasets' window when None.
        trades, quotes : bool
            Emit trade / top-of-book quote batches.
        time_bar_ns : int, optional
            Emit time bars of this length (ns; e.g. 60e9 for one minute).
        volume_bar_shares : float, optional
            Emit volume bars of this many shares.
        batch_size : int
            Maximum rows per batch (1 .. 100,000).
        timeout : float, optional
            Deadline of the whole stream, seconds (None: no deadline; a
            real-time replay of a day lasts 6.5 hours).

        Yields
        ------
        tickwire.marketdata.v1.ReplayResponse

        Raises
        ------
        TickwireError
            NOT_FOUND for an unknown dataset, INVALID_ARGUMENT naming the
            bad fields, DEADLINE_EXCEEDED, ...
        """
        request = replay_request(
            datasets,
            speed=speed,
            start_ts_ns=start_ts_ns,
            end_ts_ns=end_ts_ns,
            trades=trades,
            quotes=quotes,
            time_bar_ns=time_bar_ns,
            volume_bar_shares=volume_bar_shares,
            batch_size=batch_size,
        )
        return self._stream(request, timeout)

    def _stream(
        self, request: market_data_pb2.ReplayRequest, timeout: float | None
    ) -> Iterator[market_data_pb2.ReplayResponse]:
        call: Any = self._rpc.Replay(request, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        finally:
            # A bare call is cancelled (a no-op once it has ended). Through the
            # OpenTelemetry client interceptor the call is a generator: closing
            # it drops the last reference to the call, whose finaliser cancels it.
            stop = getattr(call, "cancel", None) or call.close
            stop()


class AsyncMarketDataClient:
    """asyncio calls to ``MarketDataService``; reached as ``AsyncClient(...).market_data``."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._rpc = market_data_pb2_grpc.MarketDataServiceStub(channel)
        self._timeout = timeout

    async def list_datasets(self, timeout: float | None = None) -> list[DatasetInfo]:
        """The datasets (and symbols) the server can replay, sorted by name."""
        try:
            resp = await self._rpc.ListDatasets(
                market_data_pb2.ListDatasetsRequest(), timeout=timeout or self._timeout
            )
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        return [DatasetInfo.from_proto(d) for d in resp.datasets]

    async def replay(
        self,
        datasets: str | Sequence[str],
        *,
        speed: float = 0.0,
        start_ts_ns: int | None = None,
        end_ts_ns: int | None = None,
        trades: bool = True,
        quotes: bool = False,
        time_bar_ns: int | None = None,
        volume_bar_shares: float | None = None,
        batch_size: int = 1000,
        timeout: float | None = None,
    ) -> AsyncIterator[market_data_pb2.ReplayResponse]:
        """As :meth:`MarketDataClient.replay`, an async iterator (``async for``)."""
        request = replay_request(
            datasets,
            speed=speed,
            start_ts_ns=start_ts_ns,
            end_ts_ns=end_ts_ns,
            trades=trades,
            quotes=quotes,
            time_bar_ns=time_bar_ns,
            volume_bar_shares=volume_bar_shares,
            batch_size=batch_size,
        )
        call: Any = self._rpc.Replay(request, timeout=timeout)
        try:
            async for response in call:
                yield response
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        finally:
            call.cancel()
