"""Tickwire risk demo: VaR and CVaR of a real stock portfolio, through the gRPC API.

Loads ten years of adjusted daily closes of ten US stocks (``data/daily-prices``),
builds a $10m long/short book, registers the daily return history with the
server once, and asks the Risk service for VaR and CVaR by four methods at 95%
and 99% over 1 and 10 days, the per-asset component VaR, and a backtest of
rolling historical VaR. Every row shows the backend that ran the call, the
server's compute time, the round trip and the trace id to look up in Jaeger.

Usage::

    python clients/python/examples/risk_demo.py                  # starts a server, then stops it
    python clients/python/examples/risk_demo.py --target host:port  # uses a running server

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the demo's client spans and the
server's spans are exported there (Jaeger shows one trace per call).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from _local_server import local_server
from opentelemetry import trace
from rich.console import Console
from rich.table import Table
from tickwire.feeds.daily_prices import data_dir, load_prices, simple_returns
from tickwire.telemetry.tracing import make_tracer_provider
from tickwire_client import Client

TICKERS = ["AAPL", "AMZN", "GOOG", "JPM", "BAC", "XOM", "PFE", "WMT", "MA", "SBUX"]
#: Portfolio weights of a $10m book (long nine names, short SBUX as a hedge).
WEIGHTS = np.array([0.15, 0.15, 0.12, 0.10, 0.08, 0.10, 0.08, 0.10, 0.12, -0.10])
BOOK_USD = 10_000_000.0
METHODS = ["historical", "parametric", "cornish_fisher", "monte_carlo"]

console = Console(width=None if sys.stdout.isatty() else 160)


def run(target: str) -> None:
    """Run every demo call against the server at ``target`` and print the tables."""
    provider = make_tracer_provider(env={**os.environ, "OTEL_SERVICE_NAME": "tickwire-demo"})
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("tickwire.demo")

    prices = load_prices(data_dir() / "daily-prices" / "stock_prices_1990_2024.csv.gz", TICKERS,
                         start="2015-01-01")  # fmt: skip
    returns = simple_returns(prices)
    positions = WEIGHTS * BOOK_USD
    console.print(
        f"Portfolio: {len(TICKERS)} US stocks, ${BOOK_USD / 1e6:.0f}m book, "
        f"{len(returns)} daily returns {returns.index[0]:%Y-%m-%d} .. {returns.index[-1]:%Y-%m-%d} "
        "(data/daily-prices, adjusted closes)"
    )

    with Client(target, timeout=60.0) as tw:
        console.print(f"Server health: {tw.health()}")
        with tracer.start_as_current_span("demo.register"):
            scenarios = tw.risk.register_scenarios(returns.to_numpy())
        console.print(f"Registered scenarios {scenarios.id[:23]}… ({scenarios.num_scenarios} x "
                      f"{scenarios.num_assets})")  # fmt: skip

        table = Table(title="VaR and CVaR (USD, positive = loss)")
        for col in ("method", "confidence", "horizon", "VaR", "CVaR", "backend", "compute ms",
                    "round trip ms", "trace id"):  # fmt: skip
            table.add_column(
                col, justify="right" if col not in ("method", "backend", "trace id") else "left"
            )
        for method in METHODS:
            with tracer.start_as_current_span(f"demo.var.{method}"):
                t0 = time.perf_counter()
                report = tw.risk.compute_var(
                    scenarios, positions, method=method, confidence_levels=[0.95, 0.99],
                    horizon_days=[1, 10], num_simulations=1_000_000, seed=2024,
                )  # fmt: skip
                rtt_ms = (time.perf_counter() - t0) * 1e3
            ex = report.execution
            for i, e in enumerate(report.estimates):
                se = f" ±{e.var_standard_error:,.0f}" if e.var_standard_error else ""
                call = (ex.backend_used, f"{ex.compute_ms:.2f}", f"{rtt_ms:.2f}", ex.trace_id)
                table.add_row(method if i == 0 else "", f"{e.confidence_level:.0%}",
                              f"{e.horizon_days}d", f"{e.var:,.0f}{se}", f"{e.cvar:,.0f}",
                              *(call if i == 0 else ("", "", "", "")),
                              end_section=i == len(report.estimates) - 1)  # fmt: skip
        console.print(table)

        with tracer.start_as_current_span("demo.component_var"):
            t0 = time.perf_counter()
            comp = tw.risk.component_var(scenarios, positions, confidence_level=0.99)
            rtt_ms = (time.perf_counter() - t0) * 1e3
        ct = Table(title=f"Component VaR and CVaR at 99%, 1 day (sum: VaR {comp.var:,.0f}, "
                         f"CVaR {comp.cvar:,.0f})")  # fmt: skip
        for col in (
            "asset",
            "position",
            "marginal VaR",
            "component VaR",
            "share",
            "component CVaR",
        ):
            ct.add_column(col, justify="left" if col == "asset" else "right")
        for i, ticker in enumerate(TICKERS):
            ct.add_row(ticker, f"{positions[i]:,.0f}", f"{comp.marginal_var[i]:.4f}",
                       f"{comp.component_var[i]:,.0f}", f"{comp.component_var_share[i]:.1%}",
                       f"{comp.component_cvar[i]:,.0f}")  # fmt: skip
        console.print(ct)
        console.print(f"  backend {comp.execution.backend_used}, compute "
                      f"{comp.execution.compute_ms:.2f} ms, round trip {rtt_ms:.2f} ms, "
                      f"trace {comp.execution.trace_id}")  # fmt: skip

        pnl = returns.to_numpy() @ positions
        with tracer.start_as_current_span("demo.backtest"):
            t0 = time.perf_counter()
            bt = tw.risk.backtest_var(pnl, confidence_level=0.99, window=250)
            rtt_ms = (time.perf_counter() - t0) * 1e3
        bt_table = Table(title="Backtest of rolling 250-day historical VaR at 99% (realised P&L)")
        for col in ("test", "statistic", "df", "p-value", "verdict at 5%"):
            bt_table.add_column(
                col, justify="left" if col in ("test", "verdict at 5%") else "right"
            )
        for name, t in (("Kupiec POF", bt.kupiec_pof),
                        ("Christoffersen independence", bt.christoffersen_independence),
                        ("Conditional coverage", bt.conditional_coverage)):  # fmt: skip
            bt_table.add_row(name, f"{t.statistic:.3f}", str(t.degrees_of_freedom),
                             f"{t.p_value:.4f}", "reject" if t.reject else "do not reject")  # fmt: skip
        console.print(bt_table)
        console.print(
            f"  {bt.num_exceptions} exceptions in {bt.num_observations} days "
            f"({bt.exception_rate:.2%}, expected {bt.expected_exception_rate:.2%}); backend "
            f"{bt.execution.backend_used}, compute {bt.execution.compute_ms:.2f} ms, "
            f"round trip {rtt_ms:.2f} ms, trace {bt.execution.trace_id}"
        )
    provider.shutdown()


def main() -> int:
    """Parse flags, start a server unless ``--target`` is given, run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="host:port of a running server (default: start one)")
    args = parser.parse_args()
    if args.target:
        run(args.target)
    else:
        with local_server() as target:
            run(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
