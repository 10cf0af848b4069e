"""OpenTelemetry tracing for the server.

One SERVER span per RPC comes from the maintained OpenTelemetry gRPC
instrumentation (``opentelemetry-instrumentation-grpc``'s aio server
interceptor): RPC semantic conventions (``rpc.system=grpc``, ``rpc.service``,
``rpc.method``, ``rpc.grpc.status_code``) and the W3C ``traceparent`` from the
client's metadata as parent. Tickwire adds child spans (decode, route, compute,
encode) and ``tickwire.*`` attributes in :mod:`tickwire.services.runtime`.

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

import os

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

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
    """The aio server interceptors that make one span per RPC (none without a provider)."""
    if provider is None:
        return []
    untraced = filters.any_of(*(filters.service_name(s) for s in UNTRACED_SERVICES))
    return [aio_server_interceptor(tracer_provider=provider, filter_=filters.negate(untraced))]
