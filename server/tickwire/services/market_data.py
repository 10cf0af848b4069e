"""``tickwire.marketdata.v1.MarketDataService``: replay of recorded trading
days (trades, top-of-book quotes, OHLCV bars) and the list of datasets.

Validation and conversion only: the catalogue, the merge, the windows and the
pacing are in :mod:`tickwire.feeds.replay`, the bars in
:mod:`tickwire.engines.bars`.

Streaming: ``Replay`` writes with ``await context.write(...)``, which returns
once HTTP/2 flow control has taken the message, so a slow reader slows the
replay and the server holds at most one window of batches (no queue). The
call's deadline and a client's cancellation cancel the handler at its next
await (a write or a pacing sleep): the replay stops producing. (The
reader/writer form rather than an async generator: when a client cancels, a
suspended async generator is finalised later, outside the call, where the
tracing interceptor's ``finally`` would touch a finished call; a coroutine
handler gets the ``CancelledError`` inside the call.)

Tracing: the RPC's span (one per stream, made by the tracing interceptor)
gets a ``replay.progress`` event each time the replay crosses another
1/:data:`TRACE_MILESTONES` of its range (at most that many events, whatever
the batch size; cumulative counts of windows, batches, trades, quotes and
bars), a ``replay.end`` event when the last window is sent, and the totals as
``tickwire.replay.*`` attributes (also when the stream is cancelled).
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import grpc
from grpc._cython import cygrpc
from opentelemetry import trace

from tickwire.common.v1 import market_pb2
from tickwire.feeds import replay
from tickwire.feeds.daily_prices import data_dir
from tickwire.marketdata.v1 import market_data_pb2, market_data_pb2_grpc
from tickwire.services import errors, replay_wire
from tickwire.services.errors import Violations
from tickwire.services.runtime import OFFLOAD_BYTES, EngineRuntime, ServiceSpec, rpc
from tickwire.telemetry.tracing import annotate

#: Progress events per replay on the stream's span (plus one at the end).
TRACE_MILESTONES = 50

_KINDS = {
    replay.KIND_LOBSTER: market_data_pb2.DATASET_KIND_LOBSTER,
    replay.KIND_TRADE_PRINTS: market_data_pb2.DATASET_KIND_TRADE_PRINTS,
}
_BAR_TYPES = {
    replay.TIME_BARS: market_pb2.BAR_TYPE_TIME,
    replay.VOLUME_BARS: market_pb2.BAR_TYPE_VOLUME,
}


def _spec(request: market_data_pb2.ReplayRequest) -> replay.ReplaySpec:
    """The request with its defaults applied (0 = unset)."""
    return replay.ReplaySpec(
        datasets=tuple(request.datasets),
        speed=request.speed,
        start_ts_ns=request.start_ts_ns or None,
        end_ts_ns=request.end_ts_ns or None,
        trades=request.trades,
        quotes=request.quotes,
        time_bar_ns=request.time_bar_ns,
        volume_bar_shares=request.volume_bar_shares,
        batch_size=request.batch_size or replay.DEFAULT_BATCH_SIZE,
    )


def _check(spec: replay.ReplaySpec) -> None:
    """Raise NOT_FOUND for an unknown dataset, INVALID_ARGUMENT for bad fields."""
    try:
        bad = replay.check_spec(spec)
    except replay.UnknownDatasetError as exc:
        raise errors.not_found("dataset", exc.name, "datasets") from None
    v = Violations()
    for name, description in bad:
        v.add(name, description)
    if v:
        raise errors.invalid_argument(v)


_MESSAGES = {
    replay.TRADES: market_pb2.TradeBatch,
    replay.QUOTES: market_pb2.QuoteBatch,
    replay.TIME_BARS: market_pb2.BarBatch,
    replay.VOLUME_BARS: market_pb2.BarBatch,
}


#: A stream in wire form: its encoded columns and the row of its first event.
Encoded = tuple[replay_wire.EncodedColumns, int]


@functools.lru_cache(maxsize=16)
def _day_encoding(dataset: str, kind: str, data_root: str) -> replay_wire.EncodedColumns:
    """A dataset's whole day of trades or quotes in wire form, encoded once per process."""
    day = replay.load_day(dataset, Path(data_root))
    if kind == replay.TRADES:
        cols = replay.trade_columns(day)
    else:
        assert day.quotes is not None
        cols = replay.quote_columns(day.quotes)
    return replay_wire.EncodedColumns(_MESSAGES[kind], cols, {"symbol": day.entry.symbol})


def _encode_streams(plan: replay.ReplayPlan) -> list[Encoded]:
    """Every stream of the plan in wire form: trades and quotes from the
    per-dataset cache, bars (computed for this replay) encoded here."""
    out: list[Encoded] = []
    root = str(data_dir().resolve())
    for stream in plan.streams:
        if stream.dataset:
            out.append((_day_encoding(stream.dataset, stream.kind, root), stream.base))
            continue
        header: dict[str, object] = {"symbol": stream.symbol}
        if stream.kind in _BAR_TYPES:
            header["bar_type"] = _BAR_TYPES[stream.kind]
        out.append((replay_wire.EncodedColumns(_MESSAGES[stream.kind], stream.columns, header), 0))
    return out


def _plan(spec: replay.ReplaySpec) -> tuple[replay.ReplayPlan, list[Encoded]]:
    """The replay plan and its streams in wire form (run on the executor)."""
    plan = replay.build_plan(spec)
    return plan, _encode_streams(plan)


def _window_bytes(encoded: list[Encoded], window: replay.Window) -> list[bytes]:
    """The window's batches as serialized ``ReplayResponse`` messages: slices
    of the encoded columns, and the window's clock fields encoded once."""
    clock = replay_wire.clock(window.progress, window.replay_ts_ns)
    out = []
    for batch in window.batches:
        columns, base = encoded[batch.stream]
        payload = columns.batch(base + batch.lo, base + batch.hi)
        out.append(replay_wire.response(_MESSAGES[batch.kind], payload, clock))
    return out


def _response(batch: replay.Batch, window: replay.Window) -> market_data_pb2.ReplayResponse:
    """One batch as a response message built the ordinary way (whole columns
    to the packed fields at once); the reference for :func:`_response_bytes`."""
    c = batch.columns
    clock = {"progress": window.progress, "replay_ts_ns": window.replay_ts_ns}
    if batch.kind == replay.TRADES:
        fields = {k: a.tolist() for k, a in c.items()}
        return market_data_pb2.ReplayResponse(
            trades=market_pb2.TradeBatch(symbol=batch.symbol, **fields), **clock
        )
    if batch.kind == replay.QUOTES:
        fields = {k: a.tolist() for k, a in c.items()}
        return market_data_pb2.ReplayResponse(
            quotes=market_pb2.QuoteBatch(symbol=batch.symbol, **fields), **clock
        )
    fields = {k: a.tolist() for k, a in c.items()}
    return market_data_pb2.ReplayResponse(
        bars=market_pb2.BarBatch(symbol=batch.symbol, bar_type=_BAR_TYPES[batch.kind], **fields),
        **clock,
    )


def _dataset_info(day: replay.DayData) -> market_data_pb2.DatasetInfo:
    e = day.entry
    return market_data_pb2.DatasetInfo(
        name=e.name,
        symbols=[e.symbol],
        session_date=e.session_date.isoformat(),
        start_ts_ns=e.start_ns,
        end_ts_ns=e.end_ns,
        events=day.events,
        trades=len(day.trades),
        kind=_KINDS[e.kind],
        has_aggressor_side=e.has_aggressor_side,
        has_quotes=e.has_quotes,
    )


class MarketDataServicer(market_data_pb2_grpc.MarketDataServiceServicer):
    """Serves :class:`tickwire.marketdata.v1.MarketDataService` over an :class:`EngineRuntime`."""

    def __init__(self, runtime: EngineRuntime) -> None:
        self.rt = runtime

    @rpc
    async def ListDatasets(
        self, request: market_data_pb2.ListDatasetsRequest, context: grpc.aio.ServicerContext
    ) -> market_data_pb2.ListDatasetsResponse:
        """Every dataset of the catalogue with its counts (loads each day once)."""

        def load_all() -> list[replay.DayData]:
            return [replay.load_day(name) for name in replay.catalogue()]

        days = await self.rt.offload(load_all, nbytes=OFFLOAD_BYTES)
        return market_data_pb2.ListDatasetsResponse(datasets=[_dataset_info(d) for d in days])

    @rpc
    async def Replay(
        self, request: market_data_pb2.ReplayRequest, context: grpc.aio.ServicerContext
    ) -> None:
        """Stream the replay's windows, one response per batch, each write awaited."""
        spec = _spec(request)
        _check(spec)
        with self.rt.span("plan") as plan_span:
            plan, encoded = await self.rt.offload(_plan, spec, nbytes=OFFLOAD_BYTES)
            plan_span.set_attribute("tickwire.replay.windows_planned", plan.num_windows)
            plan_span.set_attribute("tickwire.replay.events_planned", plan.num_events)
        annotate(
            {
                "tickwire.replay.datasets": list(spec.datasets),
                "tickwire.replay.speed": spec.speed,
                "tickwire.replay.batch_size": spec.batch_size,
                "tickwire.replay.start_ts_ns": plan.start_ns,
                "tickwire.replay.end_ts_ns": plan.end_ns,
                "tickwire.replay.windows_planned": plan.num_windows,
            }
        )
        span = trace.get_current_span()
        counts = dict.fromkeys(("windows", "batches", "trades", "quotes", "bars"), 0)
        next_milestone = 1
        try:
            async for window in replay.paced(plan):
                for batch, raw in zip(window.batches, _window_bytes(encoded, window), strict=True):
                    try:
                        await context.write(raw)
                    except cygrpc.ExecuteBatchError as exc:
                        # The transport refused the write: the client went away
                        # (gRPC may report this before it cancels the handler).
                        raise asyncio.CancelledError("the client went away") from exc
                    counts["batches"] += 1
                    key = batch.kind if batch.kind in (replay.TRADES, replay.QUOTES) else "bars"
                    counts[key] += len(batch)
                counts["windows"] += 1
                if window.progress * TRACE_MILESTONES >= next_milestone:
                    next_milestone = int(window.progress * TRACE_MILESTONES) + 1
                    if window.index < plan.num_windows - 1:
                        span.add_event(
                            "replay.progress",
                            {
                                **counts,
                                "replay_ts_ns": window.replay_ts_ns,
                                "progress": window.progress,
                            },
                        )
            span.add_event("replay.end", {**counts, "progress": 1.0})
        finally:
            annotate({f"tickwire.replay.{k}": v for k, v in counts.items()})


SERVICE_NAME = market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"].full_name


def _serialize_response(message: market_data_pb2.ReplayResponse | bytes) -> bytes:
    """Replay writes responses already serialized (:mod:`replay_wire`); messages pass too."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_to_server(servicer: MarketDataServicer, server: grpc.aio.Server) -> None:
    """The generated ``add_MarketDataServiceServicer_to_server``, except that
    Replay's response serializer passes pre-serialized bytes through."""
    handlers = {
        "Replay": grpc.unary_stream_rpc_method_handler(
            servicer.Replay,
            request_deserializer=market_data_pb2.ReplayRequest.FromString,
            response_serializer=_serialize_response,
        ),
        "ListDatasets": grpc.unary_unary_rpc_method_handler(
            servicer.ListDatasets,
            request_deserializer=market_data_pb2.ListDatasetsRequest.FromString,
            response_serializer=market_data_pb2.ListDatasetsResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    create=MarketDataServicer,
    add_to_server=add_to_server,  # type: ignore[arg-type]
)
