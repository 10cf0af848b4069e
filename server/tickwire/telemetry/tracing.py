"""OpenTelemetry tracing for the server.

One SERVER span per RPC comes from the maintained OpenTelemetry gRPC
instrumentation (``opentelemetry-instrumentation-grpc``'s aio server
interceptor): RPC semantic conventions (``rpc.system=grpc``, ``rpc.service``,
``rpc.method``, ``rpc.grpc.status_code``) and the W3C ``traceparent`` from the
client's metadata as parent. :class:`RpcSpanCompletion` adds what it lacks
(the semantic-convention span name, the status of calls grpc.aio cancels).
Tickwire adds child spans (decode, route, compute, encode) and ``tickwire.*``
attributes in :mod:`tickwire.services.runtime`.

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
``OTEL_SDK_DISABLED=true``
    No spans at all (as ``--no-tracing``).
``OTEL_BSP_*``
    Batch span processor queue and delay.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_GRPC_STATUS_CODE
from opentelemetry.trace import SpanKind, Status, StatusCode

from tickwire import __version__

#: Services whose calls are not traced (probes and tooling, not work).
UNTRACED_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


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
            SERVICE_NAME: (env or os.environ).get("OTEL_SERVICE_NAME", "tickwire"),
            SERVICE_VERSION: __version__,
        }
    )
    provider = TracerProvider(resource=resource)
    if processors is None:
        exporter = exporter_from_env(env)
        processors = [BatchSpanProcessor(exporter)] if exporter is not None else []
    for p in processors:
        provider.add_span_processor(p)
    return provider


def server_interceptors(provider: trace.TracerProvider | None) -> list[grpc.aio.ServerInterceptor]:
    """The aio server interceptors that make one span per RPC (none without a provider).

    The contrib interceptor makes the span; :class:`RpcSpanCompletion` runs inside
    it and completes what it lacks.
    """
    if provider is None:
        return []
    untraced = filters.any_of(*(filters.service_name(s) for s in UNTRACED_SERVICES))
    return [
        aio_server_interceptor(tracer_provider=provider, filter_=filters.negate(untraced)),
        RpcSpanCompletion(),
    ]


class RpcSpanCompletion(grpc.aio.ServerInterceptor):
    """Completes the contrib interceptor's SERVER span, from inside it.

    - Span name ``package.Service/Method``, as the RPC semantic conventions
      require (the contrib interceptor names it ``/package.Service/Method``).
    - A call that grpc.aio cancels (the deadline passed, the client cancelled
      or went away) ends the handler with ``CancelledError``, which the contrib
      interceptor does not see: its span kept ``rpc.grpc.status_code=0`` (OK).
      It now records 4 (DEADLINE_EXCEEDED, an error status for a server span)
      or 1 (CANCELLED, status left unset).
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if isinstance(method, bytes):
            method = method.decode()
        name = method.lstrip("/")
        if handler is None or name.split("/", 1)[0] in UNTRACED_SERVICES:
            return handler
        if handler.response_streaming:
            behavior = handler.unary_stream or handler.stream_stream
            factory = (
                grpc.stream_stream_rpc_method_handler
                if handler.request_streaming
                else grpc.unary_stream_rpc_method_handler
            )
            wrapped = (
                _streaming(behavior, name)
                if inspect.isasyncgenfunction(behavior)
                else _unary(behavior, name)
            )
        else:
            behavior = handler.stream_unary or handler.unary_unary
            factory = (
                grpc.stream_unary_rpc_method_handler
                if handler.request_streaming
                else grpc.unary_unary_rpc_method_handler
            )
            wrapped = _unary(behavior, name)
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _rpc_span(name: str) -> trace.Span | None:
    """The current SERVER span, renamed to ``name``; None outside one."""
    span = trace.get_current_span()
    if not span.is_recording() or getattr(span, "kind", None) is not SpanKind.SERVER:
        return None
    span.update_name(name)
    return span


def _record_cancelled(span: trace.Span | None, context: grpc.aio.ServicerContext) -> None:
    if span is None:
        return
    try:
        remaining = context.time_remaining()
    except Exception:  # a context torn down by the cancellation
        remaining = None
    # time_remaining() is 0 once the deadline has passed; a few ms of clock slack.
    if remaining is not None and remaining < 0.005:
        code = grpc.StatusCode.DEADLINE_EXCEEDED
        span.set_status(Status(StatusCode.ERROR, f"{code}:deadline passed; call cancelled"))
    else:
        code = grpc.StatusCode.CANCELLED
    span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])


def _unary(behavior: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        span = _rpc_span(name)
        try:
            return await behavior(request, context)
        except asyncio.CancelledError:
            _record_cancelled(span, context)
            raise

    return wrapper


def _streaming(behavior: Callable[..., AsyncIterator[Any]], name: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        span = _rpc_span(name)
        try:
            async for response in behavior(request, context):
                yield response
        except asyncio.CancelledError:
            _record_cancelled(span, context)
            raise

    return wrapper
