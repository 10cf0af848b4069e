"""Wiring: backends, router, services, health, reflection, tracing; start and drain.

``serve()`` is the whole life of a server process: build, start, wait for
SIGTERM or SIGINT, then set health to NOT_SERVING, stop accepting calls, let
in-flight calls finish within the grace period, flush spans and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import pkgutil
import signal
import sys
from dataclasses import dataclass

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider

from tickwire.config import Settings
from tickwire.routing.backends import Backend, detect_backends
from tickwire.routing.cost_model import load_profile
from tickwire.routing.router import Router
from tickwire.services.runtime import EngineRuntime, ServiceSpec
from tickwire.store import ArrayStore
from tickwire.telemetry.tracing import (
    make_tracer_provider,
    server_interceptors,
    tracing_disabled_by_env,
)

log = logging.getLogger("tickwire.app")


def discover_services() -> list[ServiceSpec]:
    """Every ``SERVICE`` defined by a module of :mod:`tickwire.services`, by name."""
    import tickwire.services as pkg

    specs = []
    for mod in pkgutil.iter_modules(pkg.__path__):
        spec = getattr(importlib.import_module(f"{pkg.__name__}.{mod.name}"), "SERVICE", None)
        if isinstance(spec, ServiceSpec):
            specs.append(spec)
    return sorted(specs, key=lambda s: s.name)


def channel_options(settings: Settings) -> list[tuple[str, int]]:
    """Server options: message size limits and keepalive for hours-long streams."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", settings.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", settings.min_client_ping_interval_ms),
        ("grpc.http2.max_ping_strikes", 5),
    ]


def _limit_threads(n: int) -> None:
    """Cap BLAS, torch and MLX threads per compute call (avoids oversubscription)."""
    if n <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(n)


def _warm_up(backends: dict[str, Backend]) -> None:
    """Run one tiny operation per backend so that library start-up (torch's first
    kernel, MLX's first graph) is paid at start, not by the first call."""
    a = np.ones((4, 2))
    for be in backends.values():
        be.to_numpy(be.matmul(be.asarray(a), be.asarray(np.ones(2))))
        be.to_numpy(be.standard_normal((4, 2), 0))
        be.synchronize()


@dataclass
class App:
    """A started server and what it owns."""

    server: grpc.aio.Server
    port: int
    runtime: EngineRuntime
    health: HealthServicer
    services: list[ServiceSpec]
    tracer_provider: TracerProvider | None

    async def stop(self, grace: float | None = None) -> None:
        """Drain: health NOT_SERVING, stop accepting, finish in-flight calls, flush spans."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.runtime.shutdown()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


async def create_app(settings: Settings, tracer_provider: TracerProvider | None = None) -> App:
    """Build and start a server as ``settings`` say.

    Parameters
    ----------
    tracer_provider : TracerProvider, optional
        Where spans go. None: one configured from ``OTEL_*`` (unless tracing is
        off in ``settings`` or by ``OTEL_SDK_DISABLED``).

    Raises
    ------
    ValueError
        A setting names an unknown backend, or the calibration profile is bad.
    RuntimeError
        The address cannot be bound.
    """
    _limit_threads(settings.compute_threads)
    if settings.gil_switch_interval_us > 0:
        sys.setswitchinterval(settings.gil_switch_interval_us / 1e6)
    backends = detect_backends(settings.resident_bytes)
    if settings.backends:
        unknown = set(settings.backends) - set(backends)
        if unknown:
            raise ValueError(
                f"backends {sorted(unknown)} are not present (present: {sorted(backends)})"
            )
        backends = {k: v for k, v in backends.items() if k in settings.backends or k == "numpy"}
    _warm_up(backends)
    router = Router(backends, load_profile(settings.calibration_profile or None))

    provider = tracer_provider
    if provider is None and settings.tracing and not tracing_disabled_by_env():
        provider = make_tracer_provider()
    runtime = EngineRuntime(settings, router, ArrayStore(settings.registry_bytes))
    server = grpc.aio.server(
        interceptors=server_interceptors(provider), options=channel_options(settings)
    )
    services = discover_services()
    for spec in services:
        spec.add_to_server(spec.create(runtime), server)

    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [s.name for s in services]
        + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise RuntimeError(f"cannot listen on {settings.host}:{settings.port}")
    await server.start()
    for name in ["", *(s.name for s in services)]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "tickwire serving",
        extra={
            "address": f"{settings.host}:{port}",
            "services": [s.name for s in services],
            "backends": list(backends),
            "tracing": provider is not None,
            "max_message_bytes": settings.max_message_bytes,
        },
    )
    return App(server, port, runtime, health, services, provider)


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> int:
    """Run a server until SIGTERM or SIGINT, then drain; returns the exit code (0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: a SIGTERM that arrives once health says SERVING must drain.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = await create_app(settings)
    print(f"tickwire listening on {settings.host}:{app.port}", flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info(
        "draining",
        extra={"grace_seconds": settings.grace_seconds, "inflight": app.runtime.inflight},
    )
    await app.stop(settings.grace_seconds)
    log.info("stopped")
    return 0
