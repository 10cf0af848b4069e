"""Replay of the whole LOBSTER AAPL day (2012-06-21) as fast as possible:
events per second (trades + top-of-book quotes) at several batch sizes.

Variants, measured in ONE run, in interleaved rounds (the order rotates every
round), median of the rounds:

(a) tickwire   ``Client.market_data.replay("lobster-aapl-2012-06-21-l1",
               quotes=True, speed=0, batch_size=B)`` against a Tickwire server
               (default settings: tracing on, no exporter) in its own process.
               The client reads every message and turns its ``ts_ns`` column
               into a NumPy array.
(b) bare       a bare grpc.aio server-streaming handler in its own process
               that sends the SAME messages, serialized before the clock
               starts (identity serializer), read by the same client code:
               the transport and parse ceiling, for the ratio (a) / (b).
(c) in-process the server's own work without gRPC: the replay plan of the
               request, the columns encoded once (``services/replay_wire.py``),
               every batch's ``ReplayResponse`` bytes sliced out; what (a)
               costs the server per event.
(d) built      as (c), but each response built with the generated classes
               (``tolist()`` of the sliced columns into the packed fields)
               and serialized: the ratio (c) / (d) is what the wire encoder
               saves.

Events = 34,990 trades + 118,497 quotes = 153,487 per replay; the plan
(merge order, windows) is built per request, the day's arrays are cached
(each server replays once before the clock starts).

Run: ``python bench/bench_replay.py`` (``--quick`` for a smoke run). Results go
to ``bench/results/replay-cpu.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import bench_latency as bl

DATASET = "lobster-aapl-2012-06-21-l1"
BARE_SERVICE = "bench.v1.ReplayEcho"
BARE_METHOD = f"/{BARE_SERVICE}/Replay"
REPLAY_METHOD = "/tickwire.marketdata.v1.MarketDataService/Replay"
MAX_MSG = 64 << 20


def _spec(batch_size: int) -> Any:
    from tickwire.feeds import replay

    return replay.ReplaySpec((DATASET,), trades=True, quotes=True, batch_size=batch_size)


def _messages(batch_size: int) -> list[bytes]:
    """The serialized ReplayResponses of the whole day at ``batch_size`` (the server's code)."""
    from tickwire.services.market_data import _plan, _window_bytes

    plan, encoded = _plan(_spec(batch_size))
    return [raw for w in plan.windows() for raw in _window_bytes(encoded, w)]


# ============================================================================
# servers (spawned)
# ============================================================================
def _serve(conn: Any, start: Any) -> None:
    """Run ``start()`` (async, returns (port, stop_coro_fn, stats_fn)); answer
    "cpu" with this process's CPU seconds so far, stop on "stop"."""

    async def main() -> None:
        port, stop, _ = await start()
        conn.send(port)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, conn.recv) == "cpu":
            conn.send(bl._process_cpu_s())
        await stop()
        conn.send({})

    asyncio.run(main())


def server_cpu_s(server: Any) -> float:
    """CPU seconds the server process has used so far (user + system, all threads)."""
    server.conn.send("cpu")
    return float(server.conn.recv())


def tickwire_server(conn: Any) -> None:
    """A Tickwire server, default settings, on 127.0.0.1 and a free port."""

    async def start() -> tuple[int, Any, Any]:
        from tickwire.app import create_app
        from tickwire.config import Settings

        app = await create_app(Settings(host="127.0.0.1", port=0, log_level="WARNING"))
        return app.port, lambda: app.stop(0.5), dict

    _serve(conn, start)


def bare_server(conn: Any, batch_sizes: list[int]) -> None:
    """A bare grpc.aio server that streams the pre-serialized replay of a batch size."""
    import grpc

    payloads = {b: _messages(b) for b in batch_sizes}

    async def start() -> tuple[int, Any, Any]:
        async def stream(request: bytes, context: grpc.aio.ServicerContext) -> None:
            for raw in payloads[int(request.decode())]:
                await context.write(raw)

        handler = grpc.method_handlers_generic_handler(
            BARE_SERVICE, {"Replay": grpc.unary_stream_rpc_method_handler(stream)}
        )
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MSG),
                ("grpc.max_send_message_length", MAX_MSG),
            ]
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return port, lambda: server.stop(0.5), dict

    _serve(conn, start)


# ============================================================================
# measurements
# ============================================================================
def _read(stream: Any) -> tuple[int, int]:
    """Read a replay stream as a consumer would: (events, messages)."""
    import numpy as np

    events = messages = 0
    for msg in stream:
        batch = getattr(msg, msg.WhichOneof("payload"))
        events += len(np.asarray(batch.ts_ns))
        messages += 1
    return events, messages


def run_tickwire(client: Any, batch_size: int) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    events, messages = _read(client.market_data.replay(DATASET, quotes=True, batch_size=batch_size))
    return time.perf_counter() - t0, events, messages


def run_bare(channel: Any, batch_size: int) -> tuple[float, int, int]:
    from tickwire.marketdata.v1 import market_data_pb2

    call = channel.unary_stream(
        BARE_METHOD,
        request_serializer=lambda b: b,
        response_deserializer=market_data_pb2.ReplayResponse.FromString,
    )
    t0 = time.perf_counter()
    events, messages = _read(call(str(batch_size).encode(), timeout=600))
    return time.perf_counter() - t0, events, messages


def run_in_process(batch_size: int, built: bool = False) -> tuple[float, int, int]:
    """The server's work for one replay; ``built``: messages built with the
    generated classes (``tolist()`` into the packed fields, then serialized)
    instead of the server's wire encoder."""
    from tickwire.services.market_data import _plan, _response, _window_bytes

    t0 = time.perf_counter()
    plan, encoded = _plan(_spec(batch_size))
    events = messages = 0
    for w in plan.windows():
        if built:
            for b in w.batches:
                _response(b, w).SerializeToString()
        else:
            _window_bytes(encoded, w)
        events += sum(len(b) for b in w.batches)
        messages += len(w.batches)
    return time.perf_counter() - t0, events, messages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="10,100,1000,10000")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="batch sizes 1000,10000, one round")
    args = p.parse_args(argv)
    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    rounds = args.rounds
    if args.quick:
        batch_sizes, rounds = [1000, 10000], 1

    import grpc
    from tickwire_client import Client, channel_options

    env = common.environment()
    run_in_process(1000)  # load and cache the day in this process
    tw = bl.ServerProcess(tickwire_server)
    bare = bl.ServerProcess(bare_server, batch_sizes)
    results: dict[tuple[str, int], list[float]] = {}
    counts: dict[int, tuple[int, int]] = {}
    try:
        with Client(f"127.0.0.1:{tw.port}", timeout=600) as client:
            client.wait_ready(30)
            channel = grpc.insecure_channel(f"127.0.0.1:{bare.port}", options=channel_options())
            variants = {
                "tickwire": lambda b: run_tickwire(client, b),
                "bare": lambda b: run_bare(channel, b),
                "in-process": run_in_process,
                "built": lambda b: run_in_process(b, built=True),
            }
            servers = {"tickwire": tw, "bare": bare}
            for b in batch_sizes:  # warm-up: the server loads the day, every path runs once
                for fn in variants.values():
                    fn(b)
            for r in range(rounds):
                for b in batch_sizes:
                    names = list(variants)
                    names = names[r % len(names) :] + names[: r % len(names)]
                    for name in names:
                        server = servers.get(name)
                        cpu0 = server_cpu_s(server) if server else 0.0
                        seconds, events, messages = variants[name](b)
                        if server:
                            cpu = server_cpu_s(server) - cpu0
                            results.setdefault((f"{name}-cpu", b), []).append(cpu)
                        results.setdefault((name, b), []).append(seconds)
                        counts[b] = (events, messages)
                        print(f"round {r} batch {b:>6} {name:<10} {events / seconds:>12,.0f} ev/s")
            channel.close()
    finally:
        tw.stop()
        bare.stop()

    rows = []
    cpu_rows = []
    for b in batch_sizes:
        events, messages = counts[b]
        cpu = {n: statistics.median(results[(f"{n}-cpu", b)]) for n in ("tickwire", "bare")}
        cpu_rows.append(
            (
                f"{b:,}",
                f"{cpu['tickwire'] * 1e3:,.1f}",
                f"{cpu['tickwire'] / events * 1e9:,.0f}",
                f"{cpu['bare'] * 1e3:,.1f}",
                f"{cpu['bare'] / events * 1e9:,.0f}",
                f"{cpu['tickwire'] / cpu['bare']:.2f}x",
            )
        )
    cpu_headers = [
        "batch size",
        "(a) tickwire server CPU ms per day",
        "(a) ns per event",
        "(b) bare server CPU ms per day",
        "(b) ns per event",
        "(a)/(b) CPU",
    ]
    for b in batch_sizes:
        med = {name: statistics.median(results[(name, b)]) for name in variants}
        events, messages = counts[b]
        rate = {name: events / med[name] for name in variants}
        rows.append(
            (
                f"{b:,}",
                f"{messages:,}",
                f"{rate['tickwire']:,.0f}",
                f"{med['tickwire'] * 1e3:,.0f}",
                f"{rate['bare']:,.0f}",
                f"{rate['in-process']:,.0f}",
                f"{rate['built']:,.0f}",
                f"{rate['tickwire'] / rate['bare']:.2f}x",
                f"{rate['in-process'] / rate['built']:.1f}x",
                ", ".join(
                    f"{tb / ta:.2f}"
                    for ta, tb in zip(results[("tickwire", b)], results[("bare", b)], strict=True)
                ),
            )
        )
    headers = [
        "batch size",
        "messages",
        "(a) tickwire events/s",
        "(a) ms per day",
        "(b) bare events/s",
        "(c) in-process events/s",
        "(d) built events/s",
        "(a)/(b)",
        "(c)/(d)",
        "(a)/(b) per round",
    ]
    title = "Replay of the LOBSTER AAPL day (153,487 trades + quotes), as fast as possible"
    common.print_table(title, headers, rows)
    common.print_table("Server CPU per replay (median of the rounds)", cpu_headers, cpu_rows)
    note = (
        "The host was SHARED with other engineers' work (2 cores; see the load average "
        "above): compare the ratios measured side by side in this run, not absolute rates "
        "across runs. Median of the rounds; (a), (b) and (c) interleaved per round."
    )
    common.write_report(
        "replay-cpu" if not args.quick else "replay-cpu-quick",
        "Replay throughput: the whole AAPL day through MarketDataService.Replay",
        [
            ("dataset", f"{DATASET}: 34,990 trades + 118,497 quotes"),
            ("request", "quotes=True, trades=True, speed=0 (as fast as possible), no bars"),
            ("batch sizes", ", ".join(f"{b:,}" for b in batch_sizes)),
            ("rounds", rounds),
            (
                "servers",
                "each in its own process on 127.0.0.1: Tickwire "
                "create_app(Settings(port=0)) (tracing on, no exporter); bare grpc.aio "
                "unary-stream handler writing pre-serialized bytes",
            ),
            (
                "client",
                "(a) tickwire_client.Client (sync); (b) a plain sync channel with the "
                "same channel options, the same ReplayResponse parse; both read every message and np.asarray(batch.ts_ns)",
            ),
        ],
        [
            ("Results", common.markdown_table(headers, rows)),
            (
                "Server CPU per replay",
                "CPU seconds (user + system, every thread, `getrusage`) the server process "
                "spent on one replay, read before and after it: unlike the rates above, this "
                "hardly depends on what else the machine runs.\n\n"
                + common.markdown_table(cpu_headers, cpu_rows),
            ),
            ("Notes", note + "\n\n" + __doc__.split("\n\n", 1)[1]),
        ],
        env,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
