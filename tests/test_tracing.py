"""Tracing: one SERVER span per RPC (OpenTelemetry RPC semantic conventions),
child spans decode / route / compute / encode, W3C ``traceparent`` continuation,
OTLP/gRPC export to a real receiver, tracing off, and trace ids in JSON logs.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import ServerHandle
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tickwire.app import create_app
from tickwire.config import Settings
from tickwire.risk.v1 import risk_pb2, risk_pb2_grpc
from tickwire.telemetry.logs import JsonFormatter
from tickwire.telemetry.tracing import make_tracer_provider, server_interceptors
from tickwire_client import AsyncClient, Client
from tickwire_client.arrays import to_tensor
from tickwire_client.errors import TickwireError

SERVICE = "tickwire.risk.v1.RiskService"
#: Server span name: ``$package.$service/$method`` (RPC semantic conventions).
SERVER_SPAN = f"{SERVICE}/ComputeVar"
#: Client span name, as the contrib client instrumentation makes it (leading "/").
CLIENT_SPAN = f"/{SERVICE}/ComputeVar"
CHILDREN = {"decode", "route", "compute", "encode"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


def server_spans(exporter: InMemorySpanExporter, name: str = SERVER_SPAN) -> list[ReadableSpan]:
    return [
        s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER and s.name == name
    ]


def one_server_span(exporter: InMemorySpanExporter, name: str = SERVER_SPAN) -> ReadableSpan:
    spans = wait_until(lambda: server_spans(exporter, name), what=f"a SERVER span {name}")
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def children_of(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def hex_trace_id(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def var_request(returns: np.ndarray, positions: np.ndarray) -> risk_pb2.ComputeVarRequest:
    return risk_pb2.ComputeVarRequest(
        scenarios=to_tensor(returns),
        positions=positions.tolist(),
        method=risk_pb2.VAR_METHOD_HISTORICAL,
        confidence_levels=[0.99],
    )


def new_traceparent() -> tuple[str, str, str]:
    """(traceparent header, trace id hex, parent span id hex)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def sdk_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A caller-side provider of its own (never the global one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


# --------------------------------------------------------------------------
# 1. spans of one call (in-memory exporter)
# --------------------------------------------------------------------------
def test_compute_var_makes_one_server_span_with_child_spans(
    server: ServerHandle, client: Client, returns: np.ndarray, positions: np.ndarray
) -> None:
    server.spans.clear()
    report = client.risk.compute_var(returns, positions, confidence_levels=(0.99,))

    rpc = one_server_span(server.spans)
    assert rpc.name == "tickwire.risk.v1.RiskService/ComputeVar"
    attrs = dict(rpc.attributes)
    assert attrs["rpc.system"] == "grpc"
    assert attrs["rpc.service"] == "tickwire.risk.v1.RiskService"
    assert attrs["rpc.method"] == "ComputeVar"
    assert attrs["rpc.grpc.status_code"] == 0
    assert rpc.status.status_code is StatusCode.UNSET
    assert rpc.resource.attributes["service.name"] == "tickwire"

    # Engine, backend and problem size on the RPC span.
    assert attrs["tickwire.operation"] == report.execution.operation == "risk.historical_var"
    assert attrs["tickwire.engine"] == "risk"
    assert attrs["tickwire.backend"] == report.execution.backend_used
    assert attrs["tickwire.backend.requested"] == "auto"
    assert attrs["tickwire.work_units"] == report.execution.work_units > 0
    assert isinstance(attrs["tickwire.compute_ns"], int) and attrs["tickwire.compute_ns"] > 0

    # decode, route, compute, encode: one each, children of the RPC span, same trace.
    kids = children_of(server.spans, rpc)
    assert sorted(s.name for s in kids) == sorted(CHILDREN)
    for s in kids:
        assert s.kind is SpanKind.INTERNAL
        assert s.context.trace_id == rpc.context.trace_id
        assert s.status.status_code is StatusCode.UNSET
        assert rpc.start_time <= s.start_time <= s.end_time <= rpc.end_time
    by_name = {s.name: s for s in kids}
    assert by_name["route"].attributes["tickwire.backend.chosen"] in (
        "numpy",
        "torch-cpu",
        "torch-cuda",
        "mlx",
    )
    assert by_name["compute"].attributes["tickwire.backend"] == report.execution.backend_used
    assert [s.name for s in sorted(kids, key=lambda s: s.start_time)] == [
        "decode",
        "route",
        "compute",
        "encode",
    ]

    # The response says which trace to look up.
    assert report.execution.trace_id == hex_trace_id(rpc)
    assert len(server.spans.get_finished_spans()) == 5


def test_invalid_argument_records_status_code_3(
    server: ServerHandle, client: Client, returns: np.ndarray
) -> None:
    server.spans.clear()
    with pytest.raises(TickwireError) as err:
        client.risk.compute_var(returns, np.zeros(returns.shape[1]))
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT

    rpc = one_server_span(server.spans)
    assert rpc.attributes["rpc.grpc.status_code"] == 3
    # RPC semantic conventions, gRPC server spans: only UNKNOWN, DEADLINE_EXCEEDED,
    # UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS are errors; a client's bad
    # argument leaves the server span's status unset. The failure is still on the
    # span (status code, exception event) and the decode span is in error.
    assert rpc.status.status_code is StatusCode.UNSET
    assert any(e.name == "exception" for e in rpc.events)
    kids = children_of(server.spans, rpc)
    assert [s.name for s in kids] == ["decode"]
    assert kids[0].status.status_code is StatusCode.ERROR
    assert "positions" in kids[0].status.description
    assert "tickwire.operation" not in rpc.attributes  # nothing was computed


def test_deadline_exceeded_is_an_error_on_the_server_span(
    server: ServerHandle, client: Client, returns: np.ndarray, positions: np.ndarray
) -> None:
    server.spans.clear()
    with pytest.raises(TickwireError) as err:
        client.risk.compute_var(
            returns,
            positions,
            method="monte_carlo",
            num_simulations=50_000_000,
            backend="numpy",
            timeout=0.2,
        )
    assert err.value.code is grpc.StatusCode.DEADLINE_EXCEEDED

    rpc = one_server_span(server.spans)
    assert rpc.attributes["rpc.grpc.status_code"] == 4
    assert rpc.status.status_code is StatusCode.ERROR
    assert "DEADLINE_EXCEEDED" in rpc.status.description


def test_health_checks_are_not_traced(server: ServerHandle, client: Client) -> None:
    server.spans.clear()
    assert client.health() == "SERVING"
    assert client.health(SERVICE) == "SERVING"
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    time.sleep(0.2)  # spans are exported synchronously; leave time for a stray one anyway
    assert server.spans.get_finished_spans() == ()


async def _slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(30)
    return b""


async def _slow_stream(request: bytes, context: grpc.aio.ServicerContext) -> Any:
    yield b"first"
    await asyncio.sleep(30)
    yield b"never"


def test_calls_the_server_cancels_record_their_status() -> None:
    """grpc.aio cancels the handler when the deadline passes or the client cancels;
    the span must not say OK (0) then."""
    spans = InMemorySpanExporter()
    provider = make_tracer_provider([SimpleSpanProcessor(spans)], env={})

    async def scenario() -> None:
        srv = grpc.aio.server(interceptors=server_interceptors(provider))
        srv.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "test.Slow",
                    {
                        "Wait": grpc.unary_unary_rpc_method_handler(_slow),
                        "Stream": grpc.unary_stream_rpc_method_handler(_slow_stream),
                    },
                )
            ]
        )
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                wait = ch.unary_unary("/test.Slow/Wait")
                stream = ch.unary_stream("/test.Slow/Stream")
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await wait(b"", timeout=0.2)
                assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

                call = wait(b"", timeout=30)
                await asyncio.sleep(0.2)
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call

                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in stream(b"", timeout=0.3):
                        pass
                assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

                call = stream(b"", timeout=30)
                async for msg in call:
                    assert msg == b"first"
                    call.cancel()
                    break
            await asyncio.to_thread(
                wait_until, lambda: len(spans.get_finished_spans()) == 4, 5.0, "4 spans"
            )
        finally:
            await srv.stop(0.1)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    got = [
        (s.name, s.attributes["rpc.grpc.status_code"], s.status.status_code)
        for s in sorted(spans.get_finished_spans(), key=lambda s: s.start_time)
    ]
    assert got == [
        ("test.Slow/Wait", 4, StatusCode.ERROR),
        ("test.Slow/Wait", 1, StatusCode.UNSET),
        ("test.Slow/Stream", 4, StatusCode.ERROR),
        ("test.Slow/Stream", 1, StatusCode.UNSET),
    ]


# --------------------------------------------------------------------------
# 2. W3C traceparent continues the caller's trace
# --------------------------------------------------------------------------
def test_traceparent_metadata_sets_trace_and_parent(
    server: ServerHandle, returns: np.ndarray, positions: np.ndarray
) -> None:
    server.spans.clear()
    traceparent, trace_id, parent_id = new_traceparent()
    with grpc.insecure_channel(server.target) as channel:
        resp = risk_pb2_grpc.RiskServiceStub(channel).ComputeVar(
            var_request(returns, positions),
            metadata=[("traceparent", traceparent)],
            timeout=60,
        )
    assert resp.execution.trace_id == trace_id

    rpc = one_server_span(server.spans)
    assert hex_trace_id(rpc) == trace_id
    assert rpc.parent is not None and rpc.parent.is_remote
    assert format(rpc.parent.span_id, "016x") == parent_id
    assert rpc.context.trace_flags.sampled
    kids = children_of(server.spans, rpc)
    assert sorted(s.name for s in kids) == sorted(CHILDREN)
    assert {hex_trace_id(s) for s in kids} == {trace_id}


def _check_client_trace(
    server: ServerHandle, caller: InMemorySpanExporter, trace_id_in_response: str
) -> None:
    desk = wait_until(
        lambda: [s for s in caller.get_finished_spans() if s.name == "desk-request"],
        what="desk-request span",
    )[0]
    client_spans = [s for s in caller.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [s.name for s in client_spans] == [CLIENT_SPAN]
    client_span = client_spans[0]
    assert client_span.parent is not None
    assert client_span.parent.span_id == desk.context.span_id
    assert client_span.attributes["rpc.grpc.status_code"] == 0

    rpc = one_server_span(server.spans)
    assert rpc.context.trace_id == desk.context.trace_id == client_span.context.trace_id
    assert rpc.parent is not None and rpc.parent.is_remote
    assert rpc.parent.span_id == client_span.context.span_id
    assert trace_id_in_response == hex_trace_id(desk)
    assert {s.context.trace_id for s in children_of(server.spans, rpc)} == {desk.context.trace_id}


def test_python_client_continues_the_callers_trace(
    server: ServerHandle, returns: np.ndarray, positions: np.ndarray
) -> None:
    server.spans.clear()
    provider, caller = sdk_provider()
    tracer = provider.get_tracer("desk")
    with (
        Client(server.target, timeout=60, tracer_provider=provider) as c,
        tracer.start_as_current_span("desk-request"),
    ):
        report = c.risk.compute_var(returns, positions)
    _check_client_trace(server, caller, report.execution.trace_id)


def test_async_client_continues_the_callers_trace(
    server: ServerHandle, returns: np.ndarray, positions: np.ndarray
) -> None:
    server.spans.clear()
    provider, caller = sdk_provider()
    tracer = provider.get_tracer("desk")

    async def call() -> str:
        async with AsyncClient(server.target, timeout=60, tracer_provider=provider) as c:
            with tracer.start_as_current_span("desk-request"):
                report = await c.risk.compute_var(returns, positions)
        return report.execution.trace_id

    trace_id = asyncio.run(asyncio.wait_for(call(), 60))
    _check_client_trace(server, caller, trace_id)


# --------------------------------------------------------------------------
# 3. OTLP over gRPC to a real receiver, from a server process
# --------------------------------------------------------------------------
class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every request."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        """(resource attributes, span) for every span received."""
        out = []
        with self.lock:
            requests = list(self.requests)
        for req in requests:
            for rs in req.resource_spans:
                resource = otlp_attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    out.extend((resource, s) for s in ss.spans)
        return out


def otlp_attributes(kvs: Any) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        field = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, field) if field else None
    return out


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    servicer = Receiver()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    assert port, "cannot bind the OTLP receiver"
    srv.start()
    yield servicer, port
    srv.stop(0).wait(5)


def _read_lines(stream: Any, out: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        out.put(line)


@pytest.mark.parametrize(
    "schedule_delay_ms",
    [
        "100",
        # Longer than the test: the spans can only leave with the flush on SIGTERM.
        "600000",
    ],
)
def test_spans_are_exported_over_otlp_grpc(
    schedule_delay_ms: str,
    receiver: tuple[Receiver, int],
    tmp_path: Path,
    returns: np.ndarray,
    positions: np.ndarray,
) -> None:
    collector, collector_port = receiver
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TICKWIRE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector_port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY=schedule_delay_ms,
        OTEL_SERVICE_NAME="tickwire-test",
    )
    stderr_path = tmp_path / "server.stderr"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickwire", "serve", "--host", "127.0.0.1", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        # The server prints "tickwire listening on HOST:PORT" once bound (port 0: any free one).
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            pytest.fail(f"server did not start:\n{stderr_path.read_text()}")
        assert line.startswith("tickwire listening on 127.0.0.1:"), line
        target = line.split()[-1]

        traceparent, trace_id, parent_id = new_traceparent()
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            resp = health.Check(health_pb2.HealthCheckRequest(), timeout=30, wait_for_ready=True)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            var = risk_pb2_grpc.RiskServiceStub(channel).ComputeVar(
                var_request(returns, positions),
                metadata=[("traceparent", traceparent)],
                timeout=60,
            )
        assert var.execution.trace_id == trace_id

        # SIGTERM: drain, flush spans, exit 0.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, stderr_path.read_text()
        log = stderr_path.read_text()
        assert '"msg": "stopped"' in log
        assert "Failed to export" not in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    spans = wait_until(
        lambda: len(collector.spans()) >= 5 and collector.spans(), 10.0, "5 spans at the receiver"
    )
    # The health check is not traced: only the ComputeVar call and its children.
    assert sorted(s.name for _, s in spans) == sorted(
        ["tickwire.risk.v1.RiskService/ComputeVar", *CHILDREN]
    )
    for resource, _ in spans:
        assert resource["service.name"] == "tickwire-test"
        assert resource["service.version"]
    assert {s.trace_id for _, s in spans} == {bytes.fromhex(trace_id)}

    (rpc,) = [s for _, s in spans if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
    assert rpc.name == "tickwire.risk.v1.RiskService/ComputeVar"
    assert rpc.parent_span_id == bytes.fromhex(parent_id)
    assert rpc.status.code == trace_pb2.Status.STATUS_CODE_UNSET
    attrs = otlp_attributes(rpc.attributes)
    assert attrs["rpc.system"] == "grpc"
    assert attrs["rpc.service"] == "tickwire.risk.v1.RiskService"
    assert attrs["rpc.method"] == "ComputeVar"
    assert attrs["rpc.grpc.status_code"] == 0
    assert attrs["tickwire.operation"] == "risk.historical_var"
    assert attrs["tickwire.work_units"] > 0
    assert attrs["tickwire.compute_ns"] > 0

    kids = [s for _, s in spans if s.kind != trace_pb2.Span.SPAN_KIND_SERVER]
    assert sorted(s.name for s in kids) == sorted(CHILDREN)
    for s in kids:
        assert s.kind == trace_pb2.Span.SPAN_KIND_INTERNAL
        assert s.parent_span_id == rpc.span_id
        assert rpc.start_time_unix_nano <= s.start_time_unix_nano
        assert s.end_time_unix_nano <= rpc.end_time_unix_nano


# --------------------------------------------------------------------------
# 4. tracing off
# --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["settings", "OTEL_SDK_DISABLED"])
def test_tracing_off_still_answers_with_empty_trace_id(
    how: str, monkeypatch: pytest.MonkeyPatch, returns: np.ndarray, positions: np.ndarray
) -> None:
    if how == "settings":
        settings = Settings(host="127.0.0.1", port=0, tracing=False)
    else:
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        settings = Settings(host="127.0.0.1", port=0)

    async def scenario() -> str:
        app = await create_app(settings)
        try:
            assert app.tracer_provider is None
            async with AsyncClient(f"127.0.0.1:{app.port}", timeout=60) as c:
                report = await c.risk.compute_var(returns, positions)
                assert report.estimates and report.estimates[0].var > 0
                return report.execution.trace_id
        finally:
            await app.stop(0.5)

    assert asyncio.run(asyncio.wait_for(scenario(), 120)) == ""


# --------------------------------------------------------------------------
# 5. JSON logs carry the trace id
# --------------------------------------------------------------------------
def test_json_log_lines_carry_trace_id_and_extra_fields() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test_tracing.json")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    provider, _ = sdk_provider()

    with provider.get_tracer("test").start_as_current_span("work") as span:
        log.info("var computed", extra={"backend": "numpy", "work_units": 5000})
    log.warning("outside any span")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")

    inside, outside, failed = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["msg"] == "var computed"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "test_tracing.json"
    assert inside["backend"] == "numpy"
    assert inside["work_units"] == 5000
    assert inside["ts"].endswith("Z")
    assert "trace_id" not in outside
    assert outside["level"] == "WARNING"
    assert "ValueError: boom" in failed["exc"]
