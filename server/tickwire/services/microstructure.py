"""``tickwire.microstructure.v1.MicrostructureService``: VPIN for one batch of
trades (unary), over a bidirectional stream with per-symbol state, and the
snapshot and reset of one symbol's state in a named stream session.

Validation and conversion only; the math is in :mod:`tickwire.engines.vpin`,
the per-stream state in :mod:`tickwire.feeds.vpin_session`. StreamVpin's
requests are decoded by :mod:`tickwire.services.trade_wire` (registered by
:func:`add_to_server`): a trades request arrives as a ``TradeBytes`` (its
bytes and its symbol), anything else as a ``TradeRequest`` or the protobuf
message. A trades batch of a symbol the stream already holds goes through
one compiled call (:class:`~tickwire.services.answer_wire.BucketEncoder`:
fields found, columns decoded, engine updated, answer encoded); any other
message, and any batch that call does not take, is parsed
(``TradeBytes.parse``) and goes through the general path, which checks
everything and names what is wrong. Both give the same buckets.

StreamVpin's answers are serialized by :mod:`tickwire.services.answer_wire`
(buckets straight from the engine's columns into protobuf's bytes). A
request that protobuf cannot parse ends the call with INVALID_ARGUMENT
(field ``request``) once the answers to the requests before it are written.

Stream flow control: the handler reads and applies one request at a time
(``context.read()``); its answers go to an
:class:`~tickwire.services.answer_writer.AnswerWriter`, which writes them
from its own task, joined into one response at most once per the stream's
answer interval (``VpinStreamConfig.answer_interval_us``, 5 ms by default):
an answer goes out at once unless the stream got a response less than the
interval ago. While a response is being written, at most
:data:`MAX_ANSWERS_PER_RESPONSE` answers (:data:`MAX_RESPONSE_BYTES`) wait;
then the handler waits for the write and reads nothing more, so a client
that stops reading stops the stream (HTTP/2 flow control does the rest).

Tracing: the stream's SERVER span (made by the tracing interceptor) gets one
``vpin.batches`` event per window of :data:`TRACE_WINDOW_BATCHES` processed
messages (messages, trades, symbols, buckets completed, rejections), one
``vpin.rejection`` event per rejected message (the first
:data:`MAX_REJECTION_EVENTS`), and the stream's totals as attributes. Never
anything per tick.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from opentelemetry import trace

from tickwire.common.v1 import market_pb2, tensor_pb2
from tickwire.engines import vpin as engine
from tickwire.engines import vpin_kernel as kernel
from tickwire.feeds import vpin_session as sessions
from tickwire.feeds.vpin_session import BatchRejectedError, SessionRegistry, VpinSession
from tickwire.microstructure.v1 import microstructure_pb2 as pb
from tickwire.microstructure.v1 import microstructure_pb2_grpc as pb_grpc
from tickwire.services import answer_wire, errors, tensors, trade_wire
from tickwire.services.answer_wire import (
    BucketEncoder,
    buckets_entry,
    buckets_to_proto,
    message_entry,
)
from tickwire.services.answer_writer import AnswerWriter
from tickwire.services.errors import Violations
from tickwire.services.runtime import EngineRuntime, ServiceSpec, rpc
from tickwire.services.trade_wire import TradeBytes, TradeRequest
from tickwire.telemetry.tracing import annotate

#: Most trades in one ComputeVpin call.
MAX_UNARY_TRADES = 10_000_000
#: Processed stream messages per ``vpin.batches`` span event.
TRACE_WINDOW_BATCHES = 100
#: Window events per stream span (the SDK keeps 128 events by default).
MAX_WINDOW_EVENTS = 100
#: Rejection events per stream span.
MAX_REJECTION_EVENTS = 20
#: Answers queued while a response is written, after which the stream stops
#: reading until they are written (also the most answers in one response).
MAX_ANSWERS_PER_RESPONSE = 256
#: The same bound in bytes (one answer that is larger is still sent whole).
MAX_RESPONSE_BYTES = 1 << 20
#: Least time between two responses of a stream unless its config says
#: otherwise (VpinStreamConfig.answer_interval_us), microseconds.
DEFAULT_ANSWER_INTERVAL_US = 5_000
#: Largest answer_interval_us a stream may ask for (1 s).
MAX_ANSWER_INTERVAL_US = 1_000_000
#: Batches at least this large are applied off the event loop.
OFFLOAD_TRADES = 50_000

_CDF = {
    pb.PRICE_CHANGE_CDF_UNSPECIFIED: "normal",
    pb.PRICE_CHANGE_CDF_NORMAL: "normal",
    pb.PRICE_CHANGE_CDF_STUDENT_T: "student_t",
}
_CDF_PB = {"normal": pb.PRICE_CHANGE_CDF_NORMAL, "student_t": pb.PRICE_CHANGE_CDF_STUDENT_T}
_CLASS = {
    pb.VOLUME_CLASSIFICATION_UNSPECIFIED: "bvc",
    pb.VOLUME_CLASSIFICATION_BVC: "bvc",
    pb.VOLUME_CLASSIFICATION_TRUE_SIDE: "true_side",
}
_CLASS_PB = {"bvc": pb.VOLUME_CLASSIFICATION_BVC, "true_side": pb.VOLUME_CLASSIFICATION_TRUE_SIDE}


# --------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------
def parameters_from_proto(
    msg: pb.VpinParameters, field: str, v: Violations, *, allow_no_volume: bool = False
) -> engine.VpinParameters | None:
    """Engine parameters from the message (0 means the default), or None after
    recording violations under ``field``. With ``allow_no_volume`` a
    bucket_volume of 0 gives None without a violation (no stream default)."""
    if allow_no_volume and msg.bucket_volume == 0:
        return None
    bad = False
    if msg.cdf not in _CDF:
        v.add(f"{field}.cdf", f"unknown PriceChangeCdf {msg.cdf}")
        bad = True
    if msg.classification not in _CLASS:
        v.add(f"{field}.classification", f"unknown VolumeClassification {msg.classification}")
        bad = True
    params = engine.VpinParameters(
        bucket_volume=float(msg.bucket_volume),
        window_buckets=int(msg.window_buckets or engine.DEFAULT_WINDOW_BUCKETS),
        bar_ns=int(msg.bar_ns or engine.DEFAULT_BAR_NS),
        cdf=_CDF.get(msg.cdf, "normal"),
        degrees_of_freedom=float(msg.degrees_of_freedom),
        sigma=float(msg.sigma),
        classification=_CLASS.get(msg.classification, "bvc"),
        cdf_history=int(msg.cdf_history or engine.DEFAULT_CDF_HISTORY),
    )
    for name, message in params.problems():
        v.add(f"{field}.{name}", message)
        bad = True
    return None if bad else params


def parameters_to_proto(p: engine.VpinParameters) -> pb.VpinParameters:
    """The message of engine parameters (defaults written out)."""
    return pb.VpinParameters(
        bucket_volume=p.bucket_volume,
        window_buckets=p.window_buckets,
        bar_ns=p.bar_ns,
        cdf=_CDF_PB[p.cdf],
        degrees_of_freedom=p.degrees_of_freedom,
        sigma=p.sigma,
        classification=_CLASS_PB[p.classification],
        cdf_history=p.cdf_history,
    )


def trade_arrays(
    tb: market_pb2.TradeBatch, field: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, list[tuple[str, str]]]:
    """(ts_ns, price, size, aggressor_side +1/-1 or None, violations) of a
    TradeBatch; column lengths and side values checked here, the rest by the engine."""
    return trade_columns(*raw_columns(tb), field)


def raw_columns(tb: market_pb2.TradeBatch) -> tuple[np.ndarray, ...]:
    """The four columns of a TradeBatch as arrays (ts_ns, price, size,
    aggressor_side AggressorSide values), unchecked."""
    return (
        np.array(tb.ts_ns, dtype=np.int64),
        np.array(tb.price, dtype=np.float64),
        np.array(tb.size, dtype=np.float64),
        np.array(tb.aggressor_side, dtype=np.int64),
    )


def trade_columns(
    ts: Any, price: Any, size: Any, raw_side: Any, field: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, list[tuple[str, str]]]:
    """:func:`trade_arrays` of columns already taken off the wire: ts (N,)
    int64, price and size (N,) float64, raw_side (N,) or (0,) AggressorSide
    values; other lengths are violations (the columns are not used then)."""
    n = len(ts)
    bad = []
    if len(price) != n:
        bad.append((f"{field}.price", f"has {len(price)} values; ts_ns has {n}"))
    if len(size) != n:
        bad.append((f"{field}.size", f"has {len(size)} values; ts_ns has {n}"))
    ns = len(raw_side)
    if ns and ns != n:
        bad.append((f"{field}.aggressor_side", f"has {ns} values; ts_ns has {n} (or leave empty)"))
    if bad:
        return np.empty(0, np.int64), np.empty(0), np.empty(0), None, bad
    side = None
    if ns:
        wrong = (raw_side != market_pb2.AGGRESSOR_SIDE_BUY) & (
            raw_side != market_pb2.AGGRESSOR_SIDE_SELL
        )
        if wrong.any():
            i = int(np.argmax(wrong))
            bad.append(
                (
                    f"{field}.aggressor_side",
                    f"row {i} is {raw_side[i]}; use AGGRESSOR_SIDE_BUY or _SELL (or leave all empty)",
                )
            )
        side = np.where(raw_side == market_pb2.AGGRESSOR_SIDE_BUY, 1, -1)  # int64 +1 / -1
    return ts, price, size, side, bad


def state_to_proto(symbol: str, s: engine.VpinState) -> pb.VpinSymbolState:
    """Summary and full snapshot of one symbol's state."""
    return pb.VpinSymbolState(
        symbol=symbol,
        parameters=parameters_to_proto(s.params),
        trades=s.trades,
        buckets=s.buckets,
        last_ts_ns=s.last_ts_ns if s.trades else 0,
        last_vpin=s.last_vpin,
        realised_volatility=s.realised_volatility,
        cumulative_volume=s.cum_volume,
        engine_state={k: tensors.encode(a) for k, a in s.to_arrays().items()},
    )


_STATE_DTYPES = {
    tensor_pb2.D_TYPE_FLOAT64: np.dtype("<f8"),
    tensor_pb2.D_TYPE_INT64: np.dtype("<i8"),
}
#: Largest engine-state array accepted in a restore (elements).
MAX_STATE_ELEMENTS = 4 * engine.MAX_CDF_HISTORY


def _decode_state_arrays(msg: pb.VpinSymbolState) -> tuple[dict[str, np.ndarray], list]:
    """Named arrays of a snapshot (NaN allowed: the state uses it for "none yet")."""
    out, bad = {}, []
    for name, t in msg.engine_state.items():
        field = f"restore.engine_state.{name}"
        dtype = _STATE_DTYPES.get(t.dtype)
        shape = tuple(int(s) for s in t.shape)
        count = math.prod(shape) if all(s >= 0 for s in shape) else -1
        if dtype is None:
            bad.append((f"{field}.dtype", "must be D_TYPE_FLOAT64 or D_TYPE_INT64"))
        elif not 0 <= count <= MAX_STATE_ELEMENTS or len(shape) > 2:
            bad.append((f"{field}.shape", f"bad shape {list(shape)}"))
        elif len(t.data) != count * dtype.itemsize:
            bad.append((f"{field}.data", f"{len(t.data)} bytes; shape x itemsize is {count * 8}"))
        else:
            out[name] = np.frombuffer(t.data, dtype=dtype).reshape(shape)
    return out, bad


class MicrostructureServicer(pb_grpc.MicrostructureServiceServicer):
    """Serves :class:`tickwire.microstructure.v1.MicrostructureService`."""

    def __init__(self, runtime: EngineRuntime, registry: SessionRegistry | None = None) -> None:
        self.rt = runtime
        self.registry = registry or SessionRegistry()
        engine.warm_up()  # the compiled state machine, the wire decoder and encoder
        trade_wire.warm_up()  # loaded now, not by the first call
        answer_wire.warm_up()

    # ----- unary ------------------------------------------------------------
    def _decode_compute(self, request: pb.ComputeVpinRequest) -> dict[str, Any]:
        v = Violations()
        if not request.HasField("parameters"):
            v.add("parameters.bucket_volume", "required: shares per volume bucket, > 0")
            params = None
        else:
            params = parameters_from_proto(request.parameters, "parameters", v)
        tb = request.trades
        for f, d in sessions.check_symbol(tb.symbol, "trades.symbol"):
            v.add(f, d)
        n = len(tb.ts_ns)
        if n == 0:
            v.add("trades.ts_ns", "required: at least one trade")
        elif n > MAX_UNARY_TRADES:
            v.add("trades.ts_ns", f"{n} trades; at most {MAX_UNARY_TRADES} per call")
        ts, price, size, side, bad = trade_arrays(tb, "trades")
        for f, d in bad:
            v.add(f, d)
        self.rt.check_execution(request.execution, "execution", v)
        if not v and params is not None:
            try:  # the engine's checks, reported as request fields
                engine._check_trades(ts, price, size, side, np.iinfo(np.int64).min, params)
            except ValueError as exc:
                name, _, msg = str(exc).partition(": ")
                v.add(f"trades.{name}", msg)
        if v:
            raise errors.invalid_argument(v)
        return {"ts_ns": ts, "price": price, "size": size, "aggressor_side": side, "params": params}

    @rpc
    async def ComputeVpin(
        self, request: pb.ComputeVpinRequest, context: grpc.aio.ServicerContext
    ) -> pb.ComputeVpinResponse:
        """VPIN and friends of one symbol's trades (routed like every unary
        call: admission, the deadline, off the event loop unless tiny)."""
        inputs = await self.rt.decode(self._decode_compute, request)
        routed, info = await self.rt.run(engine.COMPUTE_VPIN, inputs, request.execution, context)
        result: engine.VpinResult = routed.value
        annotate({"tickwire.vpin.buckets": len(result.buckets)})
        with self.rt.span("encode"):
            return pb.ComputeVpinResponse(
                buckets=buckets_to_proto(request.trades.symbol, result.buckets),
                trades=result.trades,
                bars=result.bars,
                kyle_lambda=result.kyle_lambda,
                kyle_lambda_stderr=result.kyle_lambda_stderr,
                kyle_lambda_r2=result.kyle_lambda_r2,
                realised_volatility=result.realised_volatility,
                sigma=result.sigma,
                bvc_accuracy=result.bvc_accuracy,
                vpin_correlation=result.vpin_correlation,
                vpin_mean_abs_difference=result.vpin_mean_abs_difference,
                execution=info,
            )

    # ----- snapshot and reset -------------------------------------------------
    def _session(self, session_id: str, symbol: str) -> VpinSession:
        v = Violations()
        if not session_id:
            v.add("session_id", "required: the stream's VpinStreamConfig.session_id")
        for f, d in sessions.check_symbol(symbol, "symbol"):
            v.add(f, d)
        if v:
            raise errors.invalid_argument(v)
        session = self.registry.get(session_id)
        if session is None:
            raise errors.not_found("VpinSession", session_id, "session_id")
        if symbol not in session.symbols:
            raise errors.not_found("VpinSymbol", f"{session_id}/{symbol}", "symbol")
        return session

    @rpc
    async def GetVpinState(
        self, request: pb.GetVpinStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetVpinStateResponse:
        """Snapshot of one symbol of a named session."""
        session = self._session(request.session_id, request.symbol)
        async with session.lock:
            state = session.symbols[request.symbol]
            return pb.GetVpinStateResponse(state=state_to_proto(request.symbol, state))

    @rpc
    async def ResetVpinState(
        self, request: pb.ResetVpinStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResetVpinStateResponse:
        """Clear one symbol of a named session; returns the state before."""
        session = self._session(request.session_id, request.symbol)
        async with session.lock:
            old = session.reset(request.symbol)
            return pb.ResetVpinStateResponse(previous_state=state_to_proto(request.symbol, old))

    # ----- the stream ---------------------------------------------------------
    def _open_session(self, config: pb.VpinStreamConfig | None) -> tuple[VpinSession, bool, float]:
        """The stream's session from its config, whether it was resumed, and
        the stream's answer interval in seconds (INVALID_ARGUMENT on a bad config)."""
        v = Violations()
        defaults = None
        symbols: dict[str, engine.VpinParameters] = {}
        max_symbols = sessions.MAX_SYMBOLS_PER_STREAM
        session_id = ""
        interval_us = DEFAULT_ANSWER_INTERVAL_US
        if config is not None:
            session_id = config.session_id
            if config.answer_interval_us:
                if not 1 <= config.answer_interval_us <= MAX_ANSWER_INTERVAL_US:
                    v.add(
                        "config.answer_interval_us",
                        f"must be in [1, {MAX_ANSWER_INTERVAL_US}] (0: the server default, "
                        f"{DEFAULT_ANSWER_INTERVAL_US}), got {config.answer_interval_us}",
                    )
                else:
                    interval_us = config.answer_interval_us
            if len(session_id) > sessions.MAX_SESSION_ID_LENGTH:
                v.add(
                    "config.session_id",
                    f"at most {sessions.MAX_SESSION_ID_LENGTH} characters, got {len(session_id)}",
                )
            defaults = parameters_from_proto(
                config.default_parameters, "config.default_parameters", v, allow_no_volume=True
            )
            if config.max_symbols:
                if not 1 <= config.max_symbols <= sessions.MAX_SYMBOLS_PER_STREAM:
                    v.add(
                        "config.max_symbols",
                        f"must be in [1, {sessions.MAX_SYMBOLS_PER_STREAM}], "
                        f"got {config.max_symbols}",
                    )
                else:
                    max_symbols = config.max_symbols
            if len(config.symbols) > max_symbols:
                v.add("config.symbols", f"{len(config.symbols)} symbols; at most {max_symbols}")
            for i, sp in enumerate(config.symbols):
                f = f"config.symbols[{i}]"
                for name, d in sessions.check_symbol(sp.symbol, f"{f}.symbol"):
                    v.add(name, d)
                if sp.symbol in symbols:
                    v.add(f"{f}.symbol", f"{sp.symbol} appears twice")
                p = parameters_from_proto(sp.parameters, f"{f}.parameters", v)
                if p is not None:
                    symbols[sp.symbol] = p
        if v:
            raise errors.invalid_argument(v)

        def make() -> VpinSession:
            return VpinSession(defaults=defaults, max_symbols=max_symbols, parameters=symbols)

        interval_s = interval_us * 1e-6
        if not session_id:
            s = make()
            s.live = True
            return s, False, interval_s
        try:
            session, resumed = self.registry.open(session_id, make)
        except sessions.SessionBusyError:
            raise errors.already_exists(
                f"session_id {session_id!r} is held by another live stream", "config.session_id"
            ) from None
        except sessions.RegistryFullError as exc:
            raise errors.resource_exhausted(f"no room for another named session: {exc}") from None
        if resumed:
            # A resumed session keeps its state; the new config may add symbols.
            if defaults is not None:
                session.defaults = defaults
            for sym, p in symbols.items():
                if sym not in session.symbols or not session.symbols[sym].trades:
                    session.parameters[sym] = p
        return session, resumed, interval_s

    async def _apply_trades(
        self,
        session: VpinSession,
        symbol: str,
        ts_ns: Any,
        price: Any,
        size: Any,
        raw_side: Any,
    ) -> engine.Buckets:
        ts, price, size, side, bad = trade_columns(ts_ns, price, size, raw_side, "trades")
        if bad:
            session.stats.rejections += 1
            raise BatchRejectedError(symbol, bad)
        if ts.size < OFFLOAD_TRADES:
            return session.apply(symbol, ts, price, size, side)
        async with session.lock:
            return await self.rt.offload(
                session.apply, symbol, ts, price, size, side, nbytes=1 << 30
            )

    async def _trades(
        self, session: VpinSession, bid: int, tb: TradeRequest | market_pb2.TradeBatch
    ) -> tuple[int, int, bytes | None]:
        """The general path of one trades batch of a stream: (trades,
        buckets completed, their answer entry or None). ``tb`` is the wire decoder's
        TradeRequest, or a parsed TradeBatch (an unusual encoding).

        Raises
        ------
        BatchRejectedError
            Anything wrong with the batch; nothing of it applied.
        google.protobuf.message.DecodeError
            Malformed varints in a column of a TradeRequest (the call ends).
        """
        columns = tb.columns() if type(tb) is TradeRequest else raw_columns(tb)
        buckets = await self._apply_trades(session, tb.symbol, *columns)
        m = len(buckets)
        return len(columns[0]), m, buckets_entry(bid, tb.symbol, buckets) if m else None

    def _restore(self, session: VpinSession, msg: pb.VpinSymbolState) -> int:
        v = Violations()
        params = parameters_from_proto(msg.parameters, "restore.parameters", v)
        arrays, bad = _decode_state_arrays(msg)
        for f, d in bad:
            v.add(f, d)
        if v:
            raise BatchRejectedError(msg.symbol, [(x.field, x.description) for x in v.items])
        return session.restore(msg.symbol, params, arrays)

    async def StreamVpin(
        self,
        request_iterator: AsyncIterator[pb.StreamVpinRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Trades in, completed buckets out (see the service comment)."""
        span = trace.get_current_span()
        session: VpinSession | None = None
        symbols: dict[str, engine.VpinState] = {}  # the session's states, once it is open
        window = _Window()
        events = rejection_events = 0
        out: AnswerWriter | None = None
        apply = BucketEncoder(OFFLOAD_TRADES).apply
        read, eof, ok = context.read, grpc.aio.EOF, kernel.OK
        try:
            while True:
                req = await read()
                if req is eof:
                    break
                # the usual batch: trades of a symbol the stream holds, in one compiled call
                state = symbols.get(req.symbol) if type(req) is TradeBytes else None
                if state is not None:
                    code, n, m, answer = apply(state, req)
                    if code == ok:
                        session.count(n, m)
                        window.add(req.symbol, n, m)
                    else:  # a new symbol, growth, an error, a big batch: the general path decides
                        state = None
                if state is None:
                    if type(req) is TradeBytes:
                        req = req.parse()
                    if session is None:
                        try:
                            session, resumed, interval_s = self._open_session(
                                req.config if _kind(req) == "config" else None
                            )
                        except errors.RpcError as err:
                            await context.abort_with_status(errors.to_grpc_status(err))
                            return
                        symbols = session.symbols
                        out = AnswerWriter(
                            context.write,
                            b"".join,  # answers entries joined: a StreamVpinResponse's bytes
                            interval_s,
                            MAX_ANSWERS_PER_RESPONSE,
                            MAX_RESPONSE_BYTES,
                        )
                        span.set_attribute(
                            "tickwire.vpin.answer_interval_us", round(interval_s * 1e6)
                        )
                        if _kind(req) == "config":
                            span.set_attribute("tickwire.vpin.session_resumed", resumed)
                            answer = message_entry(
                                pb.StreamVpinAnswer(
                                    client_batch_id=req.client_batch_id, ack=pb.StreamAck()
                                )
                            )
                            await out.put(answer)
                            continue
                    try:
                        answer = await self._message(session, req, window)
                    except BatchRejectedError as rej:
                        window.rejections += 1
                        window.messages += 1
                        bid = req.client_batch_id
                        if rejection_events < MAX_REJECTION_EVENTS:
                            rejection_events += 1
                            span.add_event(
                                "vpin.rejection",
                                {
                                    "client_batch_id": bid,
                                    "symbol": rej.symbol,
                                    "fields": [f for f, _ in rej.violations],
                                },
                            )
                        answer = message_entry(
                            pb.StreamVpinAnswer(
                                client_batch_id=bid,
                                rejection=pb.StreamRejection(
                                    symbol=rej.symbol,
                                    field_violations=[
                                        pb.FieldViolation(field=f, description=d)
                                        for f, d in rej.violations
                                    ],
                                ),
                            )
                        )
                if window.messages >= TRACE_WINDOW_BATCHES:
                    if events < MAX_WINDOW_EVENTS:
                        events += 1
                        span.add_event("vpin.batches", window.attributes())
                    window = _Window()
                if answer is not None and not out.put_nowait(answer):
                    await out.wait()  # the client reads slower than it sends
            if out is not None:
                await out.drain()
        except DecodeError as err:
            # bytes protobuf cannot parse (from read(), or a column decoded later): the
            # answers to every request before them go out, then the call ends
            if out is not None:
                await out.drain()
            v = Violations()
            v.add("request", f"not a StreamVpinRequest that protobuf can parse ({err})")
            await context.abort_with_status(errors.to_grpc_status(errors.invalid_argument(v)))
        finally:
            if out is not None:
                out.close()
            if window.messages and events < MAX_WINDOW_EVENTS:
                span.add_event("vpin.batches", window.attributes())
            if session is not None:
                st = session.stats
                annotate(
                    {
                        "tickwire.engine": "microstructure",
                        "tickwire.backend": "numpy",
                        "tickwire.vpin.batches": st.batches,
                        "tickwire.vpin.trades": st.trades,
                        "tickwire.vpin.buckets": st.buckets,
                        "tickwire.vpin.rejections": st.rejections,
                        "tickwire.vpin.responses": out.responses if out is not None else 0,
                        "tickwire.vpin.symbols": len(session.symbols),
                        "tickwire.vpin.session_id": session.session_id,
                    }
                )
                if session.session_id:
                    self.registry.close(session)

    async def _message(
        self, session: VpinSession, req: TradeRequest | pb.StreamVpinRequest, window: _Window
    ) -> bytes | None:
        """The general path of one stream message (a parsed message, or
        trades the compiled path did not take): its answer entry, or None.

        Raises
        ------
        BatchRejectedError
            Anything wrong with the message; nothing of it applied.
        """
        kind = _kind(req)
        bid = req.client_batch_id
        if kind == "trades":
            tb = req if type(req) is TradeRequest else req.trades
            n, m, answer = await self._trades(session, bid, tb)
            window.add(tb.symbol, n, m)
            return answer
        if kind == "symbol_parameters":
            sp = req.symbol_parameters
            v = Violations()
            p = parameters_from_proto(sp.parameters, "symbol_parameters.parameters", v)
            if v:
                raise BatchRejectedError(sp.symbol, [(x.field, x.description) for x in v.items])
            session.configure(sp.symbol, p)
            return message_entry(
                pb.StreamVpinAnswer(client_batch_id=bid, ack=pb.StreamAck(symbol=sp.symbol))
            )
        if kind == "restore":
            n = self._restore(session, req.restore)
            return message_entry(
                pb.StreamVpinAnswer(
                    client_batch_id=bid, ack=pb.StreamAck(symbol=req.restore.symbol, buckets=n)
                )
            )
        if kind == "config":
            raise BatchRejectedError("", [("config", "only as the stream's first message")])
        raise BatchRejectedError("", [("payload", "required: trades, config, ...")])


def _kind(req: TradeRequest | pb.StreamVpinRequest) -> str | None:
    """The payload of a stream message: "trades", "config", ..., or None."""
    return "trades" if type(req) is TradeRequest else req.WhichOneof("payload")


class _Window:
    """Counters of the processed messages since the last span event."""

    __slots__ = ("buckets", "messages", "rejections", "symbols", "trades")

    def __init__(self) -> None:
        self.messages = self.trades = self.buckets = self.rejections = 0
        self.symbols: set[str] = set()

    def add(self, symbol: str, trades: int, buckets: int) -> None:
        self.messages += 1
        self.trades += trades
        self.buckets += buckets
        if len(self.symbols) < 64:
            self.symbols.add(symbol)

    def attributes(self) -> dict[str, Any]:
        return {
            "batches": self.messages,
            "trades": self.trades,
            "symbols": len(self.symbols),
            "buckets_completed": self.buckets,
            "rejections": self.rejections,
        }


def add_to_server(servicer: MicrostructureServicer, server: grpc.aio.Server) -> None:
    """The generated registration, except that StreamVpin's requests are
    decoded by :func:`tickwire.services.trade_wire.deserialize` (trades
    straight into columns; any other request is the protobuf message)."""

    class _Capture:  # takes the generated method handlers, registers nothing
        def add_generic_rpc_handlers(self, handlers: tuple) -> None:
            pass

        def add_registered_method_handlers(self, service: str, methods: dict) -> None:
            self.service, self.methods = service, methods

    capture = _Capture()
    pb_grpc.add_MicrostructureServiceServicer_to_server(servicer, capture)
    methods = dict(capture.methods)
    stream = methods["StreamVpin"]
    methods["StreamVpin"] = grpc.stream_stream_rpc_method_handler(
        stream.stream_stream,
        request_deserializer=trade_wire.deserialize,
        response_serializer=answer_wire.serialize_response,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(capture.service, methods),)
    )
    server.add_registered_method_handlers(capture.service, methods)


SERVICE = ServiceSpec(
    name=pb.DESCRIPTOR.services_by_name["MicrostructureService"].full_name,
    create=MicrostructureServicer,
    add_to_server=add_to_server,
)
