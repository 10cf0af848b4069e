"""Connections to a Tickwire server: :class:`Client` (blocking) and :class:`AsyncClient`.

Connection behaviour, the same in every Tickwire client language:

- a default deadline on every call (``timeout`` seconds, per call overridable);
- message size limits matching the server's default (256 MiB);
- keepalive pings every 30 s (the server accepts pings 10 s apart or more);
- retries on UNAVAILABLE only, through gRPC's own retry policy (4 attempts,
  exponential backoff from 50 ms); every other status is raised at once as
  :class:`~tickwire_client.errors.TickwireError`;
- W3C trace context: the OpenTelemetry gRPC client instrumentation makes a
  CLIENT span under the caller's active span and sends ``traceparent``, so the
  server's spans join the caller's trace.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace

from tickwire_client.analytics import AnalyticsClient, AsyncAnalyticsClient
from tickwire_client.errors import TickwireError
from tickwire_client.factor import AsyncFactorClient, FactorClient
from tickwire_client.market_data import AsyncMarketDataClient, MarketDataClient
from tickwire_client.microstructure import AsyncMicrostructureClient, MicrostructureClient
from tickwire_client.portfolio import AsyncPortfolioClient, PortfolioClient
from tickwire_client.pricing import AsyncPricingClient, PricingClient
from tickwire_client.risk import AsyncRiskClient, RiskClient

DEFAULT_MAX_MESSAGE_BYTES = 256 << 20

_RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Channel options every Tickwire Python client uses (see module docstring)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", _RETRY_SERVICE_CONFIG),
    ]


class Client:
    """Blocking client.

    Parameters
    ----------
    target : str
        ``host:port`` of a server (or any gRPC target string, e.g. ``dns:///...``).
    timeout : float
        Default deadline of each call, seconds.
    credentials : grpc.ChannelCredentials, optional
        TLS credentials; plaintext when None.
    trace : bool
        Propagate the caller's OpenTelemetry context (W3C ``traceparent``).
    tracer_provider : TracerProvider, optional
        Provider for the client spans; the global one when None.
    max_message_bytes : int
        Send and receive limit.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        trace: bool = True,
        tracer_provider: trace.TracerProvider | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        opts = channel_options(max_message_bytes)
        if credentials is None:
            channel = grpc.insecure_channel(target, options=opts)
        else:
            channel = grpc.secure_channel(target, credentials, options=opts)
        self._raw_channel = channel
        if trace:
            from opentelemetry.instrumentation.grpc import client_interceptor, intercept_channel

            channel = intercept_channel(channel, client_interceptor(tracer_provider))
        self._channel = channel
        self.timeout = timeout
        self.risk = RiskClient(channel, timeout)
        self.pricing = PricingClient(channel, timeout)
        self.factor = FactorClient(channel, timeout)
        self.analytics = AnalyticsClient(channel, timeout)
        self.portfolio = PortfolioClient(channel, timeout)
        self.microstructure = MicrostructureClient(channel, timeout)
        self.market_data = MarketDataClient(channel, timeout)

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """``grpc.health.v1`` status of the server ("") or of one service: "SERVING", ..."""
        try:
            resp = health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout or self.timeout
            )
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects; ``grpc.FutureTimeoutError`` after ``timeout``."""
        grpc.channel_ready_future(self._raw_channel).result(timeout=timeout)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """asyncio client; the same methods as :class:`Client`, as coroutines."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        trace: bool = True,
        tracer_provider: trace.TracerProvider | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        opts = channel_options(max_message_bytes)
        interceptors = None
        if trace:
            from opentelemetry.instrumentation.grpc import aio_client_interceptors

            interceptors = aio_client_interceptors(tracer_provider)
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(
                target, options=opts, interceptors=interceptors
            )
        else:
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=opts, interceptors=interceptors
            )
        self.timeout = timeout
        self.risk = AsyncRiskClient(self._channel, timeout)
        self.pricing = AsyncPricingClient(self._channel, timeout)
        self.factor = AsyncFactorClient(self._channel, timeout)
        self.analytics = AsyncAnalyticsClient(self._channel, timeout)
        self.portfolio = AsyncPortfolioClient(self._channel, timeout)
        self.microstructure = AsyncMicrostructureClient(self._channel, timeout)
        self.market_data = AsyncMarketDataClient(self._channel, timeout)

    async def health(self, service: str = "", timeout: float | None = None) -> str:
        """``grpc.health.v1`` status of the server ("") or of one service."""
        try:
            resp = await health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout or self.timeout
            )
        except grpc.RpcError as err:
            raise TickwireError.from_rpc_error(err) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the channel connects; ``asyncio.TimeoutError`` after ``timeout``."""
        import asyncio

        await asyncio.wait_for(self._channel.channel_ready(), timeout)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
