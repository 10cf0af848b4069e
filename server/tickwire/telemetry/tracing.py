"""OpenTelemetry tracing for the server: one SERVER span per RPC, child spans
per stage, and what they cost.

Per call (OpenTelemetry RPC semantic conventions): a SERVER span named
``package.Service/Method`` with ``rpc.system=grpc``, ``rpc.service``,
``rpc.method``, ``rpc.grpc.status_code`` and ``network.peer.*``; its parent is
the W3C ``traceparent`` from the client's metadata (through the configured
propagators). Servicers open stages (:func:`stage`: decode, route, compute,
encode), which become child spans, and add ``tickwire.*`` attributes to the
RPC span (:func:`annotate`). A deadline that passes or a client that cancels
is recorded as status 4 (an error on a server span) or 1.

Cost, and why this is not the contrib instrumentation's interceptor: measured
on the 2-core development machine (bench/results/latency-cpu.md), the
``opentelemetry-instrumentation-grpc`` aio server interceptor plus four SDK
child spans added about 200 us to a 500 us call, all of it before the
response left. Here the SERVER span is started on the call's path (its
context is needed for the trace id and for propagation), but every stage is
only timed on the path (``time.time_ns``) and the child spans, attributes and
span ends are created with those timestamps right after the handler returns,
in a callback on the event loop, while the response is on the wire. The
spans, their times and their parent links are the same; the call no longer
waits for them.

Exporters follow the standard variables:

``OTEL_TRACES_EXPORTER``
    ``otlp`` (OTLP over gRPC, what Jaeger ingests), ``console`` or ``none``.
    Default: ``otlp`` when an OTLP endpoint is set, else ``none`` (spans are
    still made, so trace ids are returned, but nothing is exported).
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    e.g. ``http://127.0.0.1:4317``. Other ``OTEL_EXPORTER_OTLP_*`` variables
    (headers, timeout, insecure) are read by the exporter itself.
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``
    Resource attributes; the service name defaults to ``tickwire``.
``OTEL_PROPAGATORS``
    Propagators for incoming context (default ``tracecontext,baggage``).
``OTEL_SDK_DISABLED=true``
    No spans at all (as ``--no-tracing``).
``OTEL_BSP_*``
    Batch span processor queue and delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tickwire import __version__

#: Services whose calls are not traced (probes and tooling, not work).
UNTRACED_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

#: gRPC codes that make a SERVER span's status an error (RPC semantic conventions).
SERVER_ERROR_CODES = frozenset(
    c.value[0]
    for c in (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    )
)
_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


def tracing_disabled_by_env(env: dict[str, str] | None = None) -> bool:
    """True when ``OTEL_SDK_DISABLED`` asks for no telemetry."""
    env = os.environ if env is None else env
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def exporter_from_env(env: dict[str, str] | None = None) -> SpanExporter | None:
    """The span exporter the ``OTEL_*`` variables ask for, or None.

    Raises
    ------
    ValueError
        ``OTEL_TRACES_EXPORTER`` names an exporter Tickwire does not ship.
    """
    env = os.environ if env is None else env
    has_endpoint = bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    kind = env.get("OTEL_TRACES_EXPORTER", "otlp" if has_endpoint else "none").strip().lower()
    if kind in ("", "none"):
        return None
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if kind == "console":
        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r}: use otlp, console or none")


def make_tracer_provider(
    processors: list[SpanProcessor] | None = None, env: dict[str, str] | None = None
) -> TracerProvider:
    """A tracer provider with the service resource and the given span processors.

    With ``processors`` None, a batch processor over :func:`exporter_from_env`
    is added when an exporter is configured.
    """
    resource = Resource.create(
        {
            SERVICE_NAME: (os.environ if env is None else env).get("OTEL_SERVICE_NAME", "tickwire"),
            SERVICE_VERSION: __version__,
        }
    )
    provider = TracerProvider(resource=resource)
    if processors is None:
        exporter = exporter_from_env(env)
        processors = (
            [] if exporter is None else [BatchSpanProcessor(exporter, **_batch_options(env))]
        )
    for p in processors:
        provider.add_span_processor(p)
    return provider


#: Spans per export batch unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise.
#: The SDK's 512 holds the GIL for about 11 ms per batch while it encodes
#: (bench/results/latency-cpu.md), a stall every call in flight then waits
#: out; 64 keeps each stall near 1.5 ms.
DEFAULT_EXPORT_BATCH_SIZE = 64


def _batch_options(env: dict[str, str] | None) -> dict[str, int]:
    env = os.environ if env is None else env
    if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in env:
        return {}  # the SDK reads the variable itself
    return {"max_export_batch_size": DEFAULT_EXPORT_BATCH_SIZE}


def server_interceptors(provider: trace.TracerProvider | None) -> list[grpc.aio.ServerInterceptor]:
    """The aio server interceptor that makes one span per RPC (none without a provider)."""
    if provider is None:
        return []
    return [TracingInterceptor(provider.get_tracer("tickwire", __version__))]


# --------------------------------------------------------------------------
# stages and attributes, recorded on the call's path, turned into spans after
# --------------------------------------------------------------------------
@dataclass(slots=True)
class Stage:
    """One timed stage of a call (a child span once the call returns)."""

    name: str
    start_ns: int
    end_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    error: BaseException | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        """Set an attribute of the stage's span."""
        self.attributes[key] = value

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        """Add a timestamped event to the stage's span."""
        self.events.append((name, attributes or {}, time.time_ns()))


@dataclass(slots=True)
class _Call:
    span: trace.Span
    stages: list[Stage] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    exception: BaseException | None = None


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("tickwire_call", default=None)


@contextlib.contextmanager
def stage(name: str) -> Iterator[Stage]:
    """Time a stage of the current call; it becomes a child span of the RPC span.

    Outside a traced call (tracing off) the stage is timed and dropped. An
    exception leaving the stage marks its span as an error.
    """
    st = Stage(name, time.time_ns())
    try:
        yield st
    except BaseException as exc:
        st.error = exc
        raise
    finally:
        st.end_ns = time.time_ns()
        call = _CALL.get()
        if call is not None:
            call.stages.append(st)


def annotate(attributes: dict[str, Any]) -> None:
    """Add attributes to the current call's RPC span (no-op when untraced)."""
    call = _CALL.get()
    if call is not None:
        call.attributes.update(attributes)


def current_trace_id() -> str:
    """W3C trace id (32 hex digits) of the current call, or "" when untraced."""
    call = _CALL.get()
    if call is None:
        return ""
    ctx = call.span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


class TracingInterceptor(grpc.aio.ServerInterceptor):
    """One SERVER span per RPC, child spans from :func:`stage`, emitted after the call.

    The wrapped handler of each method is built once and cached.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if isinstance(method, bytes):
            method = method.decode()
        try:
            return self._handlers[method]
        except KeyError:
            pass
        handler = await continuation(handler_call_details)
        name = method.lstrip("/")
        service, _, rpc_method = name.partition("/")
        if handler is not None and service not in UNTRACED_SERVICES:
            handler = self._wrap(handler, name, service, rpc_method)
        self._handlers[method] = handler
        return handler

    def _wrap(
        self, handler: grpc.RpcMethodHandler, name: str, service: str, method: str
    ) -> grpc.RpcMethodHandler:
        attrs = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        if handler.request_streaming and handler.response_streaming:
            behavior, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
        elif handler.request_streaming:
            behavior, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
        elif handler.response_streaming:
            behavior, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
        else:
            behavior, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        if inspect.isasyncgenfunction(behavior):
            wrapped = self._wrap_generator(behavior, name, attrs)
        else:
            wrapped = self._wrap_coroutine(behavior, name, attrs)
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    # ----- per call ---------------------------------------------------------
    def _begin(
        self, context: grpc.aio.ServicerContext, name: str, attrs: dict[str, Any]
    ) -> tuple[_Call, object, contextvars.Token]:
        metadata = context.invocation_metadata()
        parent = propagate.extract({k: v for k, v in metadata}) if metadata else None
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attrs)
        call = _Call(span)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return call, token, _CALL.set(call)

    def _end(
        self,
        call: _Call,
        token: object,
        call_token: contextvars.Token,
        code: int,
        details: str,
        peer: str,
    ) -> None:
        end_ns = time.time_ns()
        try:
            _CALL.reset(call_token)
        except ValueError:
            # A stream generator closed from another context (the event loop's
            # async-generator finaliser): nothing of ours is attached there.
            pass
        else:
            otel_context.detach(token)
        loop = asyncio.get_running_loop()
        loop.call_soon(self._emit, call, code, details, peer, end_ns)

    def _emit(self, call: _Call, code: int, details: str, peer: str, end_ns: int) -> None:
        """Turn the call's record into spans (runs after the handler returned)."""
        span = call.span
        span.set_attribute("rpc.grpc.status_code", code)
        address, _, port = peer.partition(":")[2].rpartition(":")
        if address:
            span.set_attribute("network.peer.address", address.strip("[]"))
            if port.isdigit():
                span.set_attribute("network.peer.port", int(port))
        span.set_attributes(call.attributes)
        parent = trace.set_span_in_context(span)
        for st in call.stages:
            child = self._tracer.start_span(
                st.name, context=parent, start_time=st.start_ns, attributes=st.attributes
            )
            for ev_name, ev_attrs, ev_ns in st.events:
                child.add_event(ev_name, ev_attrs, timestamp=ev_ns)
            if st.error is not None:
                child.record_exception(st.error, timestamp=st.end_ns)
                child.set_status(Status(StatusCode.ERROR, str(st.error)[:500]))
            child.end(end_time=st.end_ns)
        if call.exception is not None:
            span.record_exception(call.exception, timestamp=end_ns)
        if code in SERVER_ERROR_CODES:
            span.set_status(Status(StatusCode.ERROR, f"{_CODE_NAMES[code]}: {details}"[:500]))
        span.end(end_time=end_ns)

    def _wrap_coroutine(
        self, behavior: Callable[..., Awaitable[Any]], name: str, attrs: dict[str, Any]
    ) -> Callable[..., Awaitable[Any]]:
        async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call, token, call_token = self._begin(context, name, attrs)
            peer, deadline = context.peer(), _deadline(context)
            code, details = 0, ""
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                code, details = _cancelled(deadline)
                raise
            except Exception as exc:
                code, details = _failed(context, exc)
                call.exception = exc
                raise
            finally:
                self._end(call, token, call_token, code, details, peer)

        return traced

    def _wrap_generator(
        self, behavior: Callable[..., AsyncIterator[Any]], name: str, attrs: dict[str, Any]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def traced(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            # Read everything needed from the context up front: when the client
            # cancels, this generator may be closed (GeneratorExit) after gRPC
            # has released the call, and the context must not be touched then.
            call, token, call_token = self._begin(context, name, attrs)
            peer, deadline = context.peer(), _deadline(context)
            code, details = 0, ""
            responses = behavior(request, context)
            try:
                async for response in responses:
                    yield response
            except (asyncio.CancelledError, GeneratorExit):
                code, details = _cancelled(deadline)
                raise
            except Exception as exc:
                code, details = _failed(context, exc)
                call.exception = exc
                raise
            finally:
                # The handler's own cleanup runs now, not whenever the collector
                # gets to it; its failure must not hide the call's outcome.
                with contextlib.suppress(Exception):
                    await responses.aclose()
                self._end(call, token, call_token, code, details, peer)

        return traced


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline on the ``time.monotonic`` clock, None without one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _cancelled(deadline: float | None) -> tuple[int, str]:
    """DEADLINE_EXCEEDED when the deadline has passed, else CANCELLED.

    Decided from the deadline read when the call began: a cancelled call's
    context may already be torn down, and must not be touched again.
    """
    # A few ms of clock slack: the deadline fires a little before our clock says so.
    if deadline is not None and time.monotonic() > deadline - 0.005:
        return grpc.StatusCode.DEADLINE_EXCEEDED.value[0], "deadline passed; call cancelled"
    return grpc.StatusCode.CANCELLED.value[0], "cancelled by the client"


def _failed(context: grpc.aio.ServicerContext, exc: Exception) -> tuple[int, str]:
    """The status an aborted or failed handler ends with (UNKNOWN if none was set)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.value[0], context.details() or str(exc)
    if isinstance(code, int) and code != 0:
        return code, context.details() or str(exc)
    return grpc.StatusCode.UNKNOWN.value[0], f"{type(exc).__name__}: {exc}"
