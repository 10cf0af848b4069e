"""Round-trip latency of Tickwire's smallest call against a bare grpc.aio echo server.

Variants, measured in ONE run, in interleaved rounds (the order rotates every
round) so that drift on a shared machine hits every variant alike:

(a) echo     bare grpc.aio server, one generic unary handler, identity
             (bytes) serializers, returns the request bytes. Its request is
             the same number of bytes as (b)'s.
(b) traced   Tickwire, ComputeVar historical, 250 x 2 scenarios, 1 level,
             1 horizon; tracing ON: the OpenTelemetry aio server interceptor
             plus Tickwire's child spans, an SDK ``TracerProvider`` with a
             ``BatchSpanProcessor`` and the real ``OTLPSpanExporter`` (OTLP/gRPC)
             sending to an OTLP TraceService receiver in its own process.
(c) untraced the same server with ``Settings(tracing=False)``.
(d) client   (optional) (b)'s server through ``tickwire_client.Client`` (sync,
             builds the request from NumPy and decodes the response).

(a)-(c) use the same client code: one grpc.aio channel per server and
``unary_unary`` with pre-serialized request bytes, so client cost is equal.
Each server runs in its own process, the client in this one. Latency is the
client-side ``perf_counter_ns`` around one awaited call, calls one at a time.

The OTLP receiver also reports the duration of every span it received, by
name: the server-side breakdown (decode / route / compute / encode) of (b).
``--profile`` adds a cProfile pass over a traced server process.

Run: ``python bench/bench_latency.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import multiprocessing as mp
import pstats
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

ECHO_SERVICE = "bench.v1.EchoService"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"
VAR_METHOD = "/tickwire.risk.v1.RiskService/ComputeVar"
MAX_MSG = 64 << 20


# ============================================================================
# server processes (spawned; each sends its port, then waits for "stop")
# ============================================================================
def _process_cpu_s() -> float:
    """User + system CPU seconds of this process, every thread included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _serve_until_stopped(conn: Any, start: Any) -> None:
    """Run ``start()`` (async, returns (port, stop_coro_fn, stats_fn)) until told to stop."""

    async def main() -> None:
        port, stop, stats = await start()
        cpu0 = _process_cpu_s()
        conn.send(port)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)
        await stop()  # included: a traced server exports its last spans here
        conn.send({**stats(), "cpu_s": _process_cpu_s() - cpu0})

    asyncio.run(main())


def echo_server(conn: Any, with_interceptor: bool = False) -> None:
    """(a): a bare grpc.aio server with one generic bytes-in, bytes-out handler.

    ``with_interceptor``: (e), the same with one pass-through aio interceptor,
    the price of grpc.aio's interceptor machinery alone.
    """
    import grpc

    class PassThrough(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            return await continuation(details)

    async def start() -> tuple[int, Any, Any]:
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        handler = grpc.method_handlers_generic_handler(
            ECHO_SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server(
            interceptors=[PassThrough()] if with_interceptor else None,
            options=[
                ("grpc.max_receive_message_length", MAX_MSG),
                ("grpc.max_send_message_length", MAX_MSG),
            ],
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return port, lambda: server.stop(0.5), dict

    _serve_until_stopped(conn, start)


def otlp_receiver(conn: Any) -> None:
    """An OTLP/gRPC TraceService that counts spans and keeps their durations by name."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    durations: dict[str, list[int]] = defaultdict(list)
    counters = {"exports": 0, "spans": 0}

    class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
        async def Export(
            self,
            request: trace_service_pb2.ExportTraceServiceRequest,
            context: grpc.aio.ServicerContext,
        ) -> trace_service_pb2.ExportTraceServiceResponse:
            counters["exports"] += 1
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        counters["spans"] += 1
                        durations[s.name].append(s.end_time_unix_nano - s.start_time_unix_nano)
            return trace_service_pb2.ExportTraceServiceResponse()

    async def start() -> tuple[int, Any, Any]:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MSG)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()

        async def stop() -> None:
            await server.stop(1.0)

        def stats() -> dict[str, Any]:
            return {**counters, "durations": dict(durations)}

        return port, stop, stats

    _serve_until_stopped(conn, start)


def tickwire_server(
    conn: Any, traced: bool, otlp_port: int, profile_path: str = "", patch: str = ""
) -> None:
    """(b) or (c): Tickwire via ``create_app``; traced spans go to the OTLP receiver.

    ``patch`` (untraced diagnostics, this process only): ``"timed"`` wraps
    ``RiskServicer.ComputeVar`` to time the handler inside the server (f);
    ``"cached"`` makes it return the response of its first call (g), leaving
    grpc, protobuf parsing and serialization: the server's plumbing alone.
    """
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from tickwire.app import create_app
    from tickwire.config import Settings
    from tickwire.services.risk import RiskServicer
    from tickwire.services.runtime import EngineRuntime
    from tickwire.telemetry.tracing import make_tracer_provider

    prof = cProfile.Profile() if profile_path else None
    handler_ns: list[int] = []
    stage_ns: dict[str, list[int]] = defaultdict(list)
    if patch == "timed":
        # time the stages too: the untraced runtime's spans are no-ops anyway

        @contextlib.contextmanager
        def stage(*args: Any) -> Any:  # (self, name) as a method, (name) as a staticmethod
            name = args[-1]
            t0 = time.perf_counter_ns()
            try:
                yield trace.INVALID_SPAN
            finally:
                stage_ns[name].append(time.perf_counter_ns() - t0)

        EngineRuntime.span = stage
    if patch:
        original = RiskServicer.ComputeVar
        cached: list[Any] = []

        async def timed(self: Any, request: Any, context: Any) -> Any:
            t0 = time.perf_counter_ns()
            response = await original(self, request, context)
            handler_ns.append(time.perf_counter_ns() - t0)
            return response

        async def from_cache(self: Any, request: Any, context: Any) -> Any:
            if not cached:
                cached.append(await original(self, request, context))
            return cached[0]

        RiskServicer.ComputeVar = timed if patch == "timed" else from_cache

    async def start() -> tuple[int, Any, Any]:
        settings = Settings(host="127.0.0.1", port=0, tracing=traced, log_level="WARNING")
        provider = None
        if traced:
            exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{otlp_port}", insecure=True)
            provider = make_tracer_provider([BatchSpanProcessor(exporter)], env={})
        app = await create_app(settings, provider)
        if prof is not None:
            prof.enable()

        async def stop() -> None:
            if prof is not None:
                prof.disable()
                prof.dump_stats(profile_path)
            await app.stop(0.5)  # also flushes and shuts down the tracer provider

        def stats() -> dict[str, Any]:
            skip = args_warmup_skip(handler_ns)
            return {
                "handler_ns": handler_ns[skip:],
                "stage_ns": {k: v[skip:] for k, v in stage_ns.items()},
            }

        return app.port, stop, stats

    _serve_until_stopped(conn, start)


def args_warmup_skip(samples: list[int]) -> int:
    """Drop the first tenth of in-server samples (the warm-up calls)."""
    return len(samples) // 10


class ServerProcess:
    """A spawned server process: start, port, stop (returns its stats)."""

    def __init__(self, target: Any, *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        if not self.conn.poll(120):
            self.proc.kill()
            raise RuntimeError(f"{target.__name__} did not start")
        self.port: int = self.conn.recv()

    def stop(self) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        with contextlib.suppress(BrokenPipeError, EOFError):
            self.conn.send("stop")
            if self.conn.poll(30):
                stats = self.conn.recv()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        return stats


# ============================================================================
# server-side breakdown, in one spawned process, without the network
# ============================================================================
class _FakeContext:
    """What the interceptors and servicers read from a grpc.aio ServicerContext."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._md = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._md

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def time_remaining(self) -> float:
        return 10.0  # the benchmark's clients send a 10 s deadline

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def add_done_callback(self, callback: Any) -> None:
        pass

    def set_code(self, code: Any) -> None:
        pass

    def set_details(self, details: Any) -> None:
        pass

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        raise RuntimeError(f"aborted: {code} {details}")


def breakdown_process(conn: Any, otlp_port: int, request: bytes, rounds: int, reps: int) -> None:
    """Time each server-side step of (b) and (c) in-process, interleaved in rounds.

    Reproduces what grpc.aio does around a handler (parse the request, run the
    interceptor chain to find the handler, await it, serialize the response,
    run the loop's ready callbacks) with Tickwire's own pieces: the same
    services, router, runtime and ``server_interceptors(provider)`` that
    ``create_app`` wires, and an OTLP exporter sending to a receiver process.
    Only grpc's transport (HTTP/2, the C core, the Cython glue) is missing;
    (a) measures that.
    """
    import inspect
    from collections import defaultdict as dd
    from collections import namedtuple

    from grpc._cython import cygrpc
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from tickwire import __version__
    from tickwire.app import discover_services
    from tickwire.config import Settings
    from tickwire.risk.v1 import risk_pb2
    from tickwire.routing.backends import detect_backends
    from tickwire.routing.cost_model import load_profile
    from tickwire.routing.operation import get as get_operation
    from tickwire.routing.router import Router
    from tickwire.services.runtime import EngineRuntime
    from tickwire.store import ArrayStore
    from tickwire.telemetry.tracing import make_tracer_provider, server_interceptors

    class Registry:
        """Stands in for the server in ``add_<Service>Servicer_to_server``."""

        def __init__(self) -> None:
            self.generic: list[Any] = []

        def add_generic_rpc_handlers(self, handlers: Any) -> None:
            self.generic.extend(handlers)

        def add_registered_method_handlers(self, *args: Any) -> None:
            pass

    settings = Settings(host="127.0.0.1", port=0)
    backends = detect_backends(settings.resident_bytes)
    router = Router(backends, load_profile(None))
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{otlp_port}", insecure=True)
    provider = make_tracer_provider([BatchSpanProcessor(exporter)], env={})
    memory = InMemorySpanExporter()
    mem_provider = make_tracer_provider([SimpleSpanProcessor(memory)], env={})
    # EngineRuntime took a tracer for its child spans in earlier versions
    takes_tracer = "tracer" in inspect.signature(EngineRuntime).parameters
    stage_ns: dict[str, list[int]] = dd(list)

    @contextlib.contextmanager
    def timing_span(*args: Any, **kwargs: Any) -> Any:
        name = args[-1] if args else kwargs.get("name", "?")
        t0 = time.perf_counter_ns()
        try:
            yield trace.INVALID_SPAN
        finally:
            stage_ns[name].append(time.perf_counter_ns() - t0)

    def handler_for(tracer: trace.Tracer | None, timed: bool = False) -> Any:
        extra = (tracer or trace.NoOpTracer(),) if takes_tracer else ()
        runtime = EngineRuntime(settings, router, ArrayStore(settings.registry_bytes), *extra)
        if timed:
            runtime.span = timing_span  # this instance only: time the stages
        reg = Registry()
        for spec in discover_services():
            if spec.name == "tickwire.risk.v1.RiskService":
                spec.add_to_server(spec.create(runtime), reg)
        return reg.generic[0]

    tracer = provider.get_tracer("tickwire", __version__)
    generic_untraced = handler_for(None)
    generic_traced = handler_for(tracer)
    generic_timed = handler_for(None, timed=True)
    generic_mem = handler_for(mem_provider.get_tracer("tickwire", __version__))
    chain = server_interceptors(provider)
    mem_chain = server_interceptors(mem_provider)
    metadatum = namedtuple("Metadatum", ["key", "value"])  # as grpc.aio hands it over
    md = (metadatum("user-agent", f"grpc-python-asyncio/{__import__('grpc').__version__}"),)
    details = cygrpc._HandlerCallDetails(VAR_METHOD, md)
    ctx = _FakeContext(md)

    async def lookup(interceptors: list[Any], generic: Any) -> Any:
        """grpc.aio's interceptor chain: each interceptor gets the next as continuation."""

        async def base(d: Any) -> Any:
            return generic.service(d)

        cont = base
        for icp in reversed(interceptors):

            async def nxt(d: Any, icp: Any = icp, cont: Any = cont) -> Any:
                return await icp.intercept_service(cont, d)

            cont = nxt
        return await cont(details)

    req = risk_pb2.ComputeVarRequest.FromString(request)
    op = get_operation("risk.historical_var")
    estimate_ns = router.estimate_ns(
        op, {"scenarios": np_frombuffer_scenarios(req), "positions": None, "scenarios_key": None}
    )
    names = {
        "parse": "parse request (grpc deserializer)",
        "lookup0": "handler lookup, no interceptors",
        "lookup1": "handler lookup through the interceptor chain",
        "off": "handler, tracing OFF (no interceptors)",
        "child": "handler + SDK child spans (no interceptor; old runtime API)",
        "on": "handler through the interceptors, tracing ON",
        "tick_off": "loop iteration after the call, tracing OFF (asyncio.sleep(0))",
        "tick_on": "loop iteration after the call, tracing ON (deferred span work)",
        "timed": "handler, stage-timed (tracing OFF)",
        "ser": "serialize response (grpc serializer)",
        "otlp": "OTLP-encode the spans of one call (export thread)",
    }

    async def run() -> dict[str, list[int]]:
        clock = time.perf_counter_ns
        t: dict[str, list[int]] = dd(list)
        h_untraced = (await lookup([], generic_untraced)).unary_unary
        h_childonly = (await lookup([], generic_traced)).unary_unary
        h_timed = (await lookup([], generic_timed)).unary_unary
        resp = await h_untraced(req, ctx)

        # spans of one traced call, for the export-encoding cost
        h_mem = (await lookup(mem_chain, generic_mem)).unary_unary
        for _ in range(20):
            await h_mem(req, ctx)
            await asyncio.sleep(0)
        spans = list(memory.get_finished_spans())
        per_call = max(len(spans) // 20, 1)
        batch = spans[-per_call:] * 100
        stage_ns.clear()

        for _ in range(rounds):
            for _ in range(reps):
                t0 = clock()
                risk_pb2.ComputeVarRequest.FromString(request)
                t1 = clock()
                await lookup([], generic_untraced)
                t2 = clock()
                await lookup(chain, generic_traced)
                t3 = clock()
                t[names["parse"]].append(t1 - t0)
                t[names["lookup0"]].append(t2 - t1)
                t[names["lookup1"]].append(t3 - t2)
            for _ in range(reps):
                t0 = clock()
                await h_untraced(req, ctx)
                t1 = clock()
                await asyncio.sleep(0)
                t[names["off"]].append(t1 - t0)
                t[names["tick_off"]].append(clock() - t1)
            if takes_tracer:
                for _ in range(reps):
                    t0 = clock()
                    await h_childonly(req, ctx)
                    t[names["child"]].append(clock() - t0)
            for _ in range(reps):
                h = (await lookup(chain, generic_traced)).unary_unary
                t0 = clock()
                await h(req, ctx)
                t1 = clock()
                await asyncio.sleep(0)
                t[names["on"]].append(t1 - t0)
                t[names["tick_on"]].append(clock() - t1)
            provider.force_flush()  # export now, not during the next step's timing
            for _ in range(reps):
                t0 = clock()
                await h_timed(req, ctx)
                t[names["timed"]].append(clock() - t0)
            for _ in range(reps):
                t0 = clock()
                resp.SerializeToString()
                t[names["ser"]].append(clock() - t0)
            for _ in range(max(reps // 20, 1)):
                t0 = clock()
                encode_spans(batch).SerializeToString()
                t[names["otlp"]].append((clock() - t0) // 100)
        return t

    timings = asyncio.run(run())
    for name, ns in stage_ns.items():
        timings[f"stage {name}"] = ns
    provider.shutdown()
    conn.send(
        {
            "timings": dict(timings),
            "names": names,
            "spans_per_call": per_call_spans(memory),
            "estimate_ns": estimate_ns,
            "inline_ns": settings.inline_threshold_us * 1e3,
        }
    )
    conn.close()


def per_call_spans(memory: Any) -> int:
    """Spans per call among the 20 calls made into ``memory``."""
    return max(len(memory.get_finished_spans()) // 20, 1)


def np_frombuffer_scenarios(req: Any) -> Any:
    import numpy as np

    return np.frombuffer(req.scenarios.data, dtype="<f8").reshape(tuple(req.scenarios.shape))


def run_breakdown(args: argparse.Namespace, request: bytes) -> dict[str, Any]:
    receiver = ServerProcess(otlp_receiver)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=breakdown_process,
        args=(child, receiver.port, request, args.breakdown_rounds, args.breakdown_reps),
        daemon=True,
    )
    proc.start()
    out: dict[str, Any] = {}
    try:
        while proc.is_alive() or parent.poll(0):
            if parent.poll(1):
                out = parent.recv()
                break
        else:
            print("the breakdown process failed (see its traceback above)", flush=True)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
        receiver.stop()
    return out


# ============================================================================
# client side (this process)
# ============================================================================
def var_request_bytes(num_scenarios: int, num_assets: int) -> tuple[bytes, Any, Any]:
    """(b)'s serialized ComputeVarRequest, its scenarios and positions."""
    import numpy as np
    from tickwire.risk.v1 import risk_pb2
    from tickwire_client import to_tensor

    rng = np.random.default_rng(7)
    scenarios = rng.standard_normal((num_scenarios, num_assets)) * 0.01
    positions = np.full(num_assets, 1e6 / num_assets)
    req = risk_pb2.ComputeVarRequest(
        scenarios=to_tensor(scenarios),
        positions=positions.tolist(),
        method=risk_pb2.VAR_METHOD_HISTORICAL,
        confidence_levels=[0.99],
        horizon_days=[1],
    )
    return req.SerializeToString(), scenarios, positions


async def _aio_calls(stub: Any, request: bytes, n: int, out: list[int]) -> int:
    """n sequential calls; append each round trip in ns to ``out``; return response size."""
    size = 0
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        resp = await stub(request, timeout=10)
        out.append(clock() - t0)
        size = len(resp)
    return size


def _sync_client_calls(client: Any, scenarios: Any, positions: Any, n: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        client.risk.compute_var(
            scenarios, positions, method="historical", confidence_levels=[0.99], horizon_days=[1]
        )
        out.append(clock() - t0)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers, measure interleaved rounds, stop the servers; return raw results."""
    import grpc

    request, scenarios, positions = var_request_bytes(args.scenarios, args.assets)
    echo_request = bytes(len(request))  # same size as (b)'s request

    print("starting server processes", flush=True)
    receiver = ServerProcess(otlp_receiver)
    servers = {"a": ServerProcess(echo_server)}
    if args.control:
        servers["a2"] = ServerProcess(echo_server)
    if args.interceptor_variant:
        servers["e"] = ServerProcess(echo_server, True)
    servers["b"] = ServerProcess(tickwire_server, True, receiver.port)
    servers["c"] = ServerProcess(tickwire_server, False, 0)
    if args.diagnostics:
        servers["f"] = ServerProcess(tickwire_server, False, 0, "", "timed")
        servers["g"] = ServerProcess(tickwire_server, False, 0, "", "cached")
    results: dict[str, Any] = {"request_bytes": len(request)}
    try:
        loop = asyncio.new_event_loop()
        opts = [
            ("grpc.max_receive_message_length", MAX_MSG),
            ("grpc.max_send_message_length", MAX_MSG),
        ]

        async def channels() -> dict[str, Any]:
            out = {}
            for name, srv in servers.items():
                echo = name in ("a", "a2", "e")
                ch = grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}", options=opts)
                await asyncio.wait_for(ch.channel_ready(), 30)
                stub = ch.unary_unary(ECHO_METHOD if echo else VAR_METHOD)
                out[name] = (ch, stub, echo_request if echo else request)
            return out

        stubs = loop.run_until_complete(channels())
        client = None
        variants = [v for v in ("a", "a2", "b", "c", "e", "f", "g") if v in stubs]
        if args.client:
            from tickwire_client import Client

            client = Client(f"127.0.0.1:{servers['b'].port}", timeout=10)
            client.wait_ready(30)
            variants.append("d")

        def one(v: str, n: int, out: list[int]) -> None:
            if v == "d":
                _sync_client_calls(client, scenarios, positions, n, out)
            else:
                _, stub, req = stubs[v]
                results[f"response_bytes_{v}"] = loop.run_until_complete(
                    _aio_calls(stub, req, n, out)
                )

        print(f"warming up ({args.warmup} calls per variant)", flush=True)
        for v in variants:
            one(v, args.warmup, [])
        results["traced_warmup_calls"] = args.warmup * (2 if "d" in variants else 1)

        samples: dict[str, list[int]] = {v: [] for v in variants}
        per_round: dict[str, list[float]] = {v: [] for v in variants}
        t_end = time.perf_counter() + args.duration
        rounds = 0
        while rounds < args.max_rounds and (
            rounds < args.min_rounds or time.perf_counter() < t_end
        ):
            k = rounds % len(variants)
            for v in variants[k:] + variants[:k]:
                buf: list[int] = []
                one(v, args.round_calls, buf)
                samples[v] += buf
                per_round[v].append(statistics.median(buf))
            rounds += 1
        results.update(samples=samples, per_round=per_round, rounds=rounds, variants=variants)
        print(f"measured {rounds} rounds x {args.round_calls} calls per variant", flush=True)

        if client is not None:
            client.close()

        async def close() -> None:
            for ch, _, _ in stubs.values():
                await ch.close()

        loop.run_until_complete(close())
        loop.close()
    finally:
        results["server_stats"] = {v: s.stop() for v, s in servers.items()}
        # the traced server flushed its spans on stop; now read the receiver
        results["otlp"] = receiver.stop()
    if args.breakdown:
        print("server-side breakdown (in-process, no network)", flush=True)
        results["breakdown"] = run_breakdown(args, request)
    return results


def run_profile(args: argparse.Namespace) -> str:
    """cProfile of a traced Tickwire server process over ``--profile-calls`` calls."""
    import grpc

    request, _, _ = var_request_bytes(args.scenarios, args.assets)
    path = common.RESULTS / "latency-profile.prof"
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    receiver = ServerProcess(otlp_receiver)
    server = ServerProcess(tickwire_server, True, receiver.port, str(path))

    async def calls() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = ch.unary_unary(VAR_METHOD)
            for _ in range(args.profile_calls):
                await stub(request, timeout=10)

    try:
        asyncio.run(calls())
    finally:
        server.stop()
        receiver.stop()
    buf = io.StringIO()
    st = pstats.Stats(str(path), stream=buf)
    st.strip_dirs()
    buf.write(
        f"cProfile of the traced server's event loop thread over {args.profile_calls} calls "
        "(cProfile inflates small Python calls; use it for where, the breakdown for how much)\n"
    )
    st.sort_stats("tottime").print_stats(25)
    st.sort_stats("cumulative").print_stats(45)
    path.unlink(missing_ok=True)
    return buf.getvalue()


# ============================================================================
# report
# ============================================================================
LABELS = {
    "a": "(a) bare grpc.aio echo (bytes)",
    "b": "(b) Tickwire ComputeVar, tracing ON (OTLP export)",
    "c": "(c) Tickwire ComputeVar, tracing OFF",
    "d": "(d) (b)'s server via tickwire_client.Client (sync)",
    "e": "(e) (a) + one pass-through aio interceptor",
    "a2": "(a2) a second, identical echo server process (noise floor)",
    "f": "(f) (c) with ComputeVar timed inside the server",
    "g": "(g) (c) with ComputeVar returning a cached response (plumbing only)",
}


def _breakdown_section(res: dict[str, Any], med: dict[str, float]) -> tuple[str, str]:
    bd = res.get("breakdown") or {}
    t = bd.get("timings", {})
    names = bd.get("names", {})
    stats = res.get("server_stats", {})
    nan = float("nan")
    m = {k: statistics.median(v) / 1e3 for k, v in t.items()}

    def get(key: str) -> float:
        return m.get(names.get(key, key), nan)

    headers = ["step (server side, in-process)", "median us", "p90 us", "samples"]
    order = [
        *(names[k] for k in ("parse", "lookup0", "lookup1", "off", "child", "on") if k in names),
        *(names[k] for k in ("tick_off", "tick_on", "timed") if k in names),
        *sorted(k for k in m if k.startswith("stage ")),
        *(names[k] for k in ("ser", "otlp") if k in names),
    ]
    rows = [
        [k, f"{m[k]:.1f}", f"{common.percentile(t[k], 90) / 1e3:.1f}", f"{len(t[k]):,}"]
        for k in order
        if k in m
    ]
    stages = sum(v for k, v in m.items() if k.startswith("stage "))
    off, on, child = get("off"), get("on"), get("child")
    lookup = get("lookup1") - get("lookup0")
    deferred = get("tick_on") - get("tick_off")
    otlp = get("otlp")
    derived: list[list[str]] = []
    if m:
        derived += [
            ["handler glue outside the 4 stages (tracing OFF)", f"{get('timed') - stages:.1f}"],
        ]
        if child == child:
            derived += [
                ["child spans (handler + SDK child spans - handler OFF)", f"{child - off:.1f}"],
                ["RPC span + interceptor wrapper (tracing ON - child spans)", f"{on - child:.1f}"],
            ]
        else:
            derived += [
                ["RPC span, stages and wrapper on the call's path (ON - OFF)", f"{on - off:.1f}"]
            ]
        derived += [
            ["interceptor chain at handler lookup (filter, wrapping)", f"{lookup:.1f}"],
            ["span work deferred to a loop callback after the call", f"{deferred:.1f}"],
            ["OTLP encoding of the call's spans (export thread, holds the GIL)", f"{otlp:.1f}"],
            [
                "tracing ON - OFF, in-process total (sum of the rows above but the glue)",
                f"{(on - off) + lookup + deferred + otlp:.1f}",
            ],
        ]
    derived += [
        [
            "grpc.aio interceptor machinery alone ((e) - (a), end to end)",
            f"{med.get('e', nan) - med['a']:.1f}",
        ],
        ["tracing ON - OFF, end to end ((b) - (c))", f"{med['b'] - med['c']:.1f}"],
        ["Tickwire OFF - echo, end to end ((c) - (a))", f"{med['c'] - med['a']:.1f}"],
    ]
    f_ns = stats.get("f", {}).get("handler_ns", [])
    if f_ns:
        derived.append(
            [
                "ComputeVar handler timed inside the real untraced server ((f), median)",
                f"{statistics.median(f_ns) / 1e3:.1f}",
            ]
        )
    f_stages = stats.get("f", {}).get("stage_ns", {})
    if f_ns and f_stages:
        f_sum = 0.0
        for name in ("decode", "route", "compute", "encode"):
            if name in f_stages:
                x = statistics.median(f_stages[name]) / 1e3
                f_sum += x
                derived.append([f"  (f) stage {name}, inside the real server", f"{x:.1f}"])
        derived.append(
            [
                "  (f) handler minus the 4 stages (glue), inside the real server",
                f"{statistics.median(f_ns) / 1e3 - f_sum:.1f}",
            ]
        )
    if "g" in med:
        derived.append(
            [
                "Tickwire plumbing without the handler, end to end ((g) - (a))",
                f"{med['g'] - med['a']:.1f}",
            ]
        )
        derived.append(["the handler, end to end ((c) - (g))", f"{med['c'] - med['g']:.1f}"])
    est = bd.get("estimate_ns", nan) / 1e3
    inline = bd.get("inline_ns", nan) / 1e3
    text = ""
    if rows:
        text += common.markdown_table(headers, rows) + "\n\n"
        common.print_table("Server-side breakdown (in-process)", headers, rows)
    text += common.markdown_table(["derived (differences of medians)", "us"], derived)
    common.print_table("Derived", ["derived", "us"], derived)
    if est == est:
        text += (
            f"\n\nRouter estimate for this call: {est:.1f} us (inline threshold {inline:.0f} "
            "us): "
            + (
                "it runs inline on the event loop, no executor hop."
                if est < inline
                else "it goes to the executor (a thread hop)."
            )
        )
    if rows:
        text += (
            f"\n\nSpans per traced call: {bd.get('spans_per_call', '?')}. The in-process steps "
            "run Tickwire's own services, router, runtime and `server_interceptors(provider)` "
            "in one process (a BatchSpanProcessor with the OTLP exporter to a receiver "
            "process), emulating grpc.aio's interceptor chain and calling the handler with a "
            "stand-in ServicerContext; only grpc's transport is missing. They run hot (the same "
            "call in a tight loop), so they read lower than the same code inside a real server "
            "(compare the handler with (f)). Stage times come from replacing the runtime's "
            "`span` with a clock-only context manager."
        )
    if f_ns:
        text += (
            "\n\n(f) and (g) are (c)'s server with `RiskServicer.ComputeVar` patched in their "
            "own process: (f) times the handler and its stages (`EngineRuntime.span` replaced "
            "by a clock-only context manager), (g) returns the first call's response every "
            "time, leaving grpc, protobuf parsing and serialization: Tickwire's plumbing alone."
        )
    return "Where the time goes: server-side breakdown", text


def report(args: argparse.Namespace, res: dict[str, Any], profile: str) -> None:
    samples = res["samples"]
    per_round = res["per_round"]
    us = {v: [x / 1e3 for x in s] for v, s in samples.items()}
    med = {v: common.median(s) for v, s in us.items()}
    p99 = {v: common.percentile(s, 99) for v, s in us.items()}
    served = {v: args.warmup + len(samples[v]) for v in samples}
    if "d" in served:
        served["b"] += served.pop("d")
    stats = res.get("server_stats", {})
    cpu = {
        v: stats[v]["cpu_s"] * 1e6 / served[v]
        for v in served
        if "cpu_s" in stats.get(v, {}) and served[v]
    }
    rows = []
    for v in res["variants"]:
        rows.append(
            [
                LABELS[v],
                f"{len(us[v]):,}",
                f"{med[v]:.1f}",
                f"{common.percentile(us[v], 90):.1f}",
                f"{p99[v]:.1f}",
                f"{med[v] / med['a']:.2f}x",
                f"{p99[v] / p99['a']:.2f}x",
                f"{med[v] - med['a']:+.1f}",
                f"{cpu[v]:.0f}" if v in cpu else "(b)'s",
            ]
        )
    headers = [
        "variant",
        "calls",
        "median us",
        "p90 us",
        "p99 us",
        "median / (a)",
        "p99 / (a)",
        "median - (a) us",
        "server CPU us/call",
    ]
    common.print_table("Round-trip latency (client side)", headers, rows)

    ratio_rows = []
    for v in res["variants"][1:]:
        r = [x / y for x, y in zip(per_round[v], per_round["a"], strict=True)]
        ratio_rows.append(
            [
                f"({v}) / (a)",
                f"{statistics.median(r):.3f}",
                f"{common.percentile(r, 25):.3f}",
                f"{common.percentile(r, 75):.3f}",
                f"{min(r):.3f}",
                f"{max(r):.3f}",
            ]
        )
    ratio_headers = ["ratio of round medians", "median", "p25", "p75", "min", "max"]
    common.print_table(
        f"Per-round ratio of medians ({res['rounds']} rounds)", ratio_headers, ratio_rows
    )
    goal = med["b"] / med["a"]
    verdict = (
        f"**(b)/(a) = {goal:.3f}** (project goal <= 1.15: {'met' if goal <= 1.15 else 'NOT met'}); "
        f"**(c)/(a) = {med['c'] / med['a']:.3f}**; p99 ratios {p99['b'] / p99['a']:.2f} and "
        f"{p99['c'] / p99['a']:.2f}."
    )
    if {"a", "b", "c"} <= cpu.keys():
        verdict += (
            f" Server CPU per call (every thread of the server process, warm-up included): "
            f"(b) {cpu['b']:.0f} us, (c) {cpu['c']:.0f} us, (a) {cpu['a']:.0f} us; "
            f"(b)/(a) {cpu['b'] / cpu['a']:.2f}, (c)/(a) {cpu['c'] / cpu['a']:.2f}."
        )
    print(verdict, flush=True)

    otlp = res.get("otlp", {})
    durations: dict[str, list[int]] = otlp.get("durations", {})
    traced_calls = len(samples["b"]) + len(samples.get("d", [])) + res["traced_warmup_calls"]
    span_rows = [
        [
            name,
            f"{len(ds):,}",
            f"{statistics.median(ds) / 1e3:.1f}",
            f"{common.percentile(ds, 99) / 1e3:.1f}",
        ]
        for name, ds in sorted(durations.items(), key=lambda kv: -statistics.median(kv[1]))
    ]
    span_headers = ["span", "received", "median us", "p99 us"]
    common.print_table("Spans received from (b)'s server", span_headers, span_rows)
    spans_note = (
        f"The OTLP receiver got {otlp.get('spans', 0):,} spans in {otlp.get('exports', 0):,} "
        f"export calls for {traced_calls:,} traced calls (warm-up included): "
        f"{otlp.get('spans', 0) / max(traced_calls, 1):.2f} spans per call "
        "(5 expected: the RPC span and decode, route, compute, encode; fewer means the "
        "BatchSpanProcessor dropped spans because its queue was full). The received "
        "durations are the spans' own start and end times, so they still say how long each "
        "stage took when the spans are made after the call."
    )
    print(spans_note, flush=True)

    bd_title, bd_text = _breakdown_section(res, med)
    settings = [
        ("variants", ", ".join(res["variants"])),
        (
            "(b)/(c) request",
            f"ComputeVar historical, {args.scenarios} x {args.assets} scenarios "
            "inline as a Tensor, 1 confidence level (0.99), 1 horizon (1 day), routed (auto)",
        ),
        ("request bytes", f"{res['request_bytes']:,} ((a), (e) send as many zero bytes)"),
        (
            "response bytes",
            ", ".join(
                f"({v}) {res[f'response_bytes_{v}']}"
                for v in ("a", "b", "c", "e")
                if f"response_bytes_{v}" in res
            ),
        ),
        (
            "tracing of (b)",
            "create_app's server_interceptors (opentelemetry-instrumentation-grpc "
            "aio server interceptor, plus any Tickwire adds) and the child spans; SDK "
            "TracerProvider, BatchSpanProcessor (defaults: queue 2048, batch 512, delay 5 s), "
            "OTLPSpanExporter (OTLP/gRPC, insecure) to an OTLP TraceService receiver in its own "
            "process on 127.0.0.1",
        ),
        (
            "server settings",
            "Settings(host='127.0.0.1', port=0, tracing=True|False); everything "
            "else default (workers = cores, inline_threshold_us=150, compute_threads=0)",
        ),
        (
            "processes",
            "client (this one); echo; second echo; echo+interceptor; Tickwire traced; "
            "Tickwire untraced; OTLP receiver: one process each (spawned); server CPU is "
            "getrusage(RUSAGE_SELF) of the server process from start to stop (every thread) "
            "divided by the calls it served",
        ),
        (
            "client",
            "one grpc.aio channel per server, unary_unary with pre-serialized request "
            "bytes (identity serializers), timeout=10 s, one call at a time, perf_counter_ns "
            "around each await"
            + (
                "; (d): tickwire_client.Client (sync; default trace=True, no SDK in the client)"
                if "d" in res["variants"]
                else ""
            ),
        ),
        ("warm-up", f"{args.warmup} calls per variant"),
        (
            "rounds",
            f"{res['rounds']} interleaved rounds x {args.round_calls} calls per variant; "
            "the variant order rotates every round",
        ),
        ("time budget", f"{args.duration} s (min {args.min_rounds}, max {args.max_rounds} rounds)"),
        (
            "breakdown",
            f"{args.breakdown_rounds} rounds x {args.breakdown_reps} reps per step"
            if args.breakdown
            else "off",
        ),
    ]
    sections = [
        (
            "Round-trip latency (client side)",
            common.markdown_table(headers, rows) + "\n\n" + verdict,
        ),
        (
            "Stability: per-round ratio of medians",
            common.markdown_table(ratio_headers, ratio_rows)
            + "\n\nEach round measures every variant back to back; a ratio per round cancels "
            "drift from other work on the machine.",
        ),
        (
            "Spans exported by (b)'s server, as received",
            common.markdown_table(span_headers, span_rows)
            + "\n\n"
            + spans_note
            + "\n\nThe RPC span is opened by the tracing interceptor after grpc has parsed the "
            "request and closed before the response is serialized; the stage spans nest inside "
            "it.",
        ),
    ]
    if bd_title:
        sections.append((bd_title, bd_text))
    if profile:
        sections.append(
            ("cProfile of the traced server (event loop thread)", "```\n" + profile + "\n```")
        )
    name = "latency-cpu" + ("-quick" if args.quick else "")
    common.write_report(
        name, "Tickwire smallest-call latency vs a bare grpc.aio server", settings, sections
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scenarios", type=int, default=250, help="scenario rows of (b) (250)")
    p.add_argument("--assets", type=int, default=2, help="assets of (b) (2)")
    p.add_argument("--warmup", type=int, default=500, help="warm-up calls per variant (500)")
    p.add_argument("--round-calls", type=int, default=200, help="calls per variant per round")
    p.add_argument("--duration", type=float, default=60.0, help="measuring time budget, s (60)")
    p.add_argument("--min-rounds", type=int, default=5, help="rounds at least (5)")
    p.add_argument("--max-rounds", type=int, default=200, help="rounds at most (200)")
    p.add_argument(
        "--no-client",
        dest="client",
        action="store_false",
        help="skip (d), the tickwire_client.Client variant",
    )
    p.add_argument(
        "--no-interceptor-variant",
        dest="interceptor_variant",
        action="store_false",
        help="skip (e), the echo server with a pass-through interceptor",
    )
    p.add_argument(
        "--no-diagnostics",
        dest="diagnostics",
        action="store_false",
        help="skip (f) and (g), the untraced server with its handler timed / cached",
    )
    p.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="skip (a2), a second echo server process (the noise floor)",
    )
    p.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="skip the in-process server-side breakdown",
    )
    p.add_argument("--breakdown-rounds", type=int, default=20, help="breakdown rounds (20)")
    p.add_argument("--breakdown-reps", type=int, default=100, help="reps per step per round")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile a traced server over --profile-calls calls",
    )
    p.add_argument("--profile-calls", type=int, default=3000, help="calls under cProfile (3000)")
    p.add_argument("--quick", action="store_true", help="smoke run (~20 s)")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.round_calls, args.duration = 100, 50, 6.0
        args.min_rounds, args.profile_calls = 3, 500
        args.breakdown_rounds, args.breakdown_reps = 5, 40
    res = run_benchmark(args)
    profile = run_profile(args) if args.profile else ""
    report(args, res, profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
