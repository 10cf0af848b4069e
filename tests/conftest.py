"""Shared fixtures: real price data, and a real server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tickwire.app import App, create_app
from tickwire.config import Settings
from tickwire.feeds.daily_prices import data_dir, load_prices, simple_returns
from tickwire.telemetry.tracing import make_tracer_provider
from tickwire_client import Client

#: The demo's portfolio: ten large US stocks, 2015-2024 (data/daily-prices).
PORTFOLIO_TICKERS = ["AAPL", "AMZN", "GOOG", "JPM", "BAC", "XOM", "PFE", "WMT", "MA", "SBUX"]


@pytest.fixture(scope="session")
def prices() -> pd.DataFrame:
    """(D, 10) adjusted closes, 2015-01-02 .. 2024-11-29."""
    path = data_dir() / "daily-prices" / "stock_prices_1990_2024.csv.gz"
    return load_prices(path, PORTFOLIO_TICKERS, start="2015-01-01")


@pytest.fixture(scope="session")
def returns(prices: pd.DataFrame) -> np.ndarray:
    """(T, 10) float64 simple daily returns of the portfolio's stocks."""
    return simple_returns(prices).to_numpy()


@pytest.fixture(scope="session")
def positions() -> np.ndarray:
    """(10,) market values in USD: a $10m book, long 9 names and short one."""
    w = np.array([0.15, 0.15, 0.12, 0.10, 0.08, 0.10, 0.08, 0.10, 0.12, -0.10])
    return w * 10_000_000.0


@dataclass
class ServerHandle:
    """A server running on its own event loop thread."""

    app: App
    loop: asyncio.AbstractEventLoop
    spans: InMemorySpanExporter
    provider: TracerProvider

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    def call(self, coro: object, timeout: float = 60.0) -> object:
        """Run a coroutine on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def start_server(settings: Settings | None = None) -> ServerHandle:
    """Start a server on 127.0.0.1, a free port, with an in-memory span exporter."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="tickwire-test-server", daemon=True)
    thread.start()
    spans = InMemorySpanExporter()
    provider = make_tracer_provider([SimpleSpanProcessor(spans)], env={})
    settings = settings or Settings(host="127.0.0.1", port=0)
    app = asyncio.run_coroutine_threadsafe(create_app(settings, provider), loop).result(60)
    return ServerHandle(app, loop, spans, provider)


def stop_server(handle: ServerHandle) -> None:
    """Drain and stop the server, then its loop."""
    handle.call(handle.app.stop(0.5))
    handle.loop.call_soon_threadsafe(handle.loop.stop)


@pytest.fixture(scope="session")
def server() -> Iterator[ServerHandle]:
    """One real Tickwire server for the test session (127.0.0.1, free port)."""
    handle = start_server()
    yield handle
    stop_server(handle)


@pytest.fixture
def client(server: ServerHandle) -> Iterator[Client]:
    """A blocking client connected to the session server."""
    with Client(server.target, timeout=60.0) as c:
        yield c
