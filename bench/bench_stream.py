"""Ticks per second into one StreamVpin bidi stream, VPIN maintained, against a
bare grpc.aio bidi stream that only counts ticks, in the same run.

Both servers run in their own process and take the same method path and the
same message type (``tickwire.microstructure.v1.StreamVpinRequest``); the
client is the same code for both: one grpc.aio channel, a generic
``stream_stream`` with identity serializers, and request bytes serialized
once before the clock starts, so the client only hands bytes to gRPC and
counts the (undecoded) responses.

- bare: a generic handler that parses each request and adds
  ``len(trades.ts_ns)`` to a counter; one response at the end.
- bare answering: the same, plus one response of about one answer's size
  (300 bytes) written for every request; a reference for what writing costs
  gRPC itself (not part of the ratio).
- tickwire: the real server (``create_app``, tracing on with no exporter, as
  a server without ``OTEL_*`` settings runs), ``StreamVpin`` with the default
  config: decode, validate, per-symbol VPIN state, an answer for every batch
  that completes a bucket, joined into responses at most once per answer
  interval (5 ms by default, ``VpinStreamConfig.answer_interval_us``).

Trades: the LOBSTER AAPL day of 2012-06-21 (34,990 executions, real times
and sizes, no aggressor side, so BVC), replayed as ``--symbols`` symbols
(SYM0, SYM1, ...; 20 by default, a desk's universe), batch j to symbol
j mod S, each symbol playing the day in order and then again a day later, so
that each symbol's state lives through many batches as in a trading day.
``--symbols 0`` instead takes as many symbols as it needs for each to play
the day once (at 10,000 per batch 334 symbols, and a third of the batches
open a symbol), written to ``stream-cpu-day-per-symbol.md``. VPIN parameters: bucket V = the day's volume / 50
(ELO's default, 57,003 shares), n = 50, one-minute bars, normal CDF.

Each (batch size, server) pair runs ``--repeats`` times, alternating servers;
the table gives the best run of each (a shared machine only slows runs
down). Also reported: the client process's CPU seconds per run over its wall
time (well under 1.0: the client is not the bottleneck) and the engine alone
(``VpinState.update`` on the same batches in this process, no gRPC).

Run: ``python bench/bench_stream.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

METHOD = "/tickwire.microstructure.v1.MicrostructureService/StreamVpin"
MAX_MSG = 64 << 20
DATASET = "lobster-aapl-2012-06-21-l1"
#: Ticks sent per run, by batch size (bounded counts; the runs are seconds each).
TICKS = {1: 20_000, 100: 600_000, 1_000: 3_000_000, 10_000: 10_000_000}
#: Symbols in the stream by default: a desk's universe, each symbol's state living through
#: many batches (the AAPL day played again and again, a day later each time).
SYMBOLS = 20


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _proc_cpu_s(pid: int, main_thread: bool) -> float:
    """CPU seconds of process ``pid`` (or of its main thread, the one that
    runs the asyncio event loop), from /proc; NaN where there is no /proc."""
    path = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ============================================================================
# server processes (spawned; each sends its port, then waits for "stop")
# ============================================================================
def _serve(conn: Any, start: Any) -> None:
    async def main() -> None:
        port, stop = await start()
        cpu0 = _cpu_s()
        conn.send(port)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await stop()
        conn.send({"cpu_s": _cpu_s() - cpu0})

    asyncio.run(main())


def bare_server(conn: Any, answer_each: bool = False) -> None:
    """A grpc.aio server whose StreamVpin only parses requests and counts ticks
    (and, with ``answer_each``, writes a 300-byte response for every request)."""
    import grpc
    from tickwire.microstructure.v1 import microstructure_pb2 as pb

    filler = pb.StreamVpinResponse(
        answers=[pb.StreamVpinAnswer(ack=pb.StreamAck(symbol="x" * 290))]
    )

    async def count(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        ticks = 0
        async for req in requests:
            ticks += len(req.trades.ts_ns)
            if answer_each:
                yield filler
        yield pb.StreamVpinResponse(answers=[pb.StreamVpinAnswer(ack=pb.StreamAck(buckets=ticks))])

    async def start() -> tuple[int, Any]:
        handler = grpc.method_handlers_generic_handler(
            "tickwire.microstructure.v1.MicrostructureService",
            {
                "StreamVpin": grpc.stream_stream_rpc_method_handler(
                    count,
                    request_deserializer=pb.StreamVpinRequest.FromString,
                    response_serializer=pb.StreamVpinResponse.SerializeToString,
                )
            },
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
        return port, lambda: server.stop(0.5)

    _serve(conn, start)


def bare_answering_server(conn: Any) -> None:
    """:func:`bare_server` that also answers every request."""
    bare_server(conn, answer_each=True)


def tickwire_server(conn: Any) -> None:
    """The Tickwire server (create_app, default settings, tracing without an exporter)."""
    from tickwire.app import create_app
    from tickwire.config import Settings

    async def start() -> tuple[int, Any]:
        app = await create_app(Settings(host="127.0.0.1", port=0, log_level="WARNING"))
        return app.port, lambda: app.stop(0.5)

    _serve(conn, start)


def spawn(target: Any) -> tuple[Any, Any, int]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child,), daemon=True)
    proc.start()
    return proc, parent, parent.recv()


def stop(proc: Any, conn: Any) -> dict[str, Any]:
    conn.send("stop")
    stats = conn.recv()
    proc.join(10)
    return stats


# ============================================================================
# requests, built and serialized before any clock starts
# ============================================================================
#: Nanoseconds per day: a symbol that has played the whole day plays it again a day later.
DAY_NS = 86_400 * 10**9


def plan(
    n_trades: int, batch: int, n_msgs: int, symbols: int
) -> tuple[int, list[tuple[int, int, int]]]:
    """(S, per message (symbol, slice, day)): message j is batch j // S of
    symbol j % S, the day's trades ``[slice * batch, (slice + 1) * batch)``
    shifted by ``day`` days. ``symbols`` 0: as many symbols as it takes for
    each to play the day once (S = messages / whole batches of the day)."""
    per_symbol = max(n_trades // batch, 1)  # whole batches of the day
    s = min(symbols, n_msgs) if symbols > 0 else math.ceil(n_msgs / per_symbol)
    steps = []
    for j in range(n_msgs):
        day, i = divmod(j // s, per_symbol)
        steps.append((j % s, i, day))
    return s, steps


def build_requests(
    trades: Any, batch: int, ticks: int, bucket_volume: float, symbols: int = 0
) -> dict[str, Any]:
    """Serialized StreamVpinRequest bytes: a config, then the trade batches (see :func:`plan`)."""
    from tickwire.common.v1 import market_pb2
    from tickwire.microstructure.v1 import microstructure_pb2 as pb

    n_msgs = max(ticks // batch, 1)
    n_symbols, steps = plan(len(trades), batch, n_msgs, symbols)
    config = pb.StreamVpinRequest(
        config=pb.VpinStreamConfig(
            session_id=f"bench-{batch}-{time.time_ns()}",
            default_parameters=pb.VpinParameters(bucket_volume=bucket_volume),
        )
    )
    out = [config.SerializeToString()]
    req = pb.StreamVpinRequest()
    batches: dict[tuple[int, int], Any] = {}
    for j, (sym, i, day) in enumerate(steps):
        tb = batches.get((i, day))
        if tb is None:
            a, b = i * batch, (i + 1) * batch
            tb = batches[(i, day)] = market_pb2.TradeBatch(
                ts_ns=trades.ts_ns[a:b] + day * DAY_NS,
                price=trades.price[a:b],
                size=trades.size[a:b],
            )
        req.client_batch_id = j + 1
        req.trades.CopyFrom(tb)
        req.trades.symbol = f"SYM{sym}"
        out.append(req.SerializeToString())
    return {
        "requests": out,
        "messages": n_msgs,
        "ticks": n_msgs * batch,
        "symbols": n_symbols,
        "bytes": sum(map(len, out)),
        "session_id": config.config.session_id,
    }


async def run_stream(target: str, requests: list[bytes]) -> dict[str, Any]:
    """Send every request on one stream, read every response; wall and client CPU."""
    import grpc

    async with grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_MSG),
            ("grpc.max_send_message_length", MAX_MSG),
        ],
    ) as channel:
        await channel.channel_ready()
        call_fn = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)

        async def gen() -> Any:
            for r in requests:
                yield r

        cpu0, t0 = _cpu_s(), time.perf_counter()
        responses = response_bytes = 0
        last = b""
        async for resp in call_fn(gen()):
            responses += 1
            response_bytes += len(resp)
            last = resp
        wall = time.perf_counter() - t0
        cpu = _cpu_s() - cpu0
    return {
        "wall_s": wall,
        "client_cpu": cpu / wall,
        "responses": responses,
        "bytes": response_bytes,
        "last": last,
    }


def engine_only(trades: Any, batch: int, msgs: int, symbols: int, v: float) -> float:
    """Ticks/s of VpinState.update alone on the stream's batches (:func:`plan`),
    in this process; each symbol's first batch (its buffers' growth) is
    applied before the clock starts."""
    import numpy as np
    from tickwire.engines.vpin import VpinParameters, VpinState, warm_up

    warm_up()  # the compiled kernel loaded before the clock starts
    params = VpinParameters(bucket_volume=v)
    ts, price, size = (np.ascontiguousarray(a) for a in (trades.ts_ns, trades.price, trades.size))
    n = min(msgs, max(2_000_000 // batch, 200))
    n_symbols, steps = plan(len(ts), batch, n, symbols)
    states = [VpinState(params) for _ in range(n_symbols)]

    def apply(sym: int, i: int, day: int) -> None:
        a, b = i * batch, (i + 1) * batch
        states[sym].update(ts[a:b] + day * DAY_NS, price[a:b].copy(), size[a:b].copy())

    for step in steps[:n_symbols]:
        apply(*step)
    timed = steps[n_symbols:]
    if not timed:
        return math.nan
    t0 = time.perf_counter()
    for step in timed:
        apply(*step)
    return len(timed) * batch / (time.perf_counter() - t0)


def _paired(speed: dict[tuple[str, int], float], repeats: int) -> str:
    """Median and range of tickwire / bare over the repeats, each repeat's two
    runs back to back (a slow spell of the host slows both)."""
    ratios = sorted(speed[("tickwire", r)] / speed[("bare", r)] for r in range(repeats))
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    return f"{median:.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,100,1000,10000")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the tick counts")
    ap.add_argument(
        "--symbols",
        type=int,
        default=SYMBOLS,
        help="symbols in the stream, each playing the day again and again (0: as many as it "
        "takes for each to play the day once)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 10%% of the ticks, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.scale, args.repeats = 0.1, 1

    from tickwire.feeds import lobster
    from tickwire.microstructure.v1 import microstructure_pb2 as pb
    from tickwire_client import Client

    trades = lobster.load_trades(lobster.find_day(DATASET))
    v = float(trades.size.sum() / 50)
    batches = [int(b) for b in args.batches.split(",")]

    procs = {
        "bare": spawn(bare_server),
        "bare answering": spawn(bare_answering_server),
        "tickwire": spawn(tickwire_server),
    }
    rows, details = [], []
    try:
        for batch in batches:
            ticks = max(int(TICKS.get(batch, 1_000_000) * args.scale), batch)
            built = build_requests(trades, batch, ticks, v, args.symbols)
            best: dict[str, dict[str, Any]] = {}
            speed: dict[tuple[str, int], float] = {}  # (server, repeat) -> ticks/s
            for rep in range(args.repeats):
                order = list(procs) if rep % 2 == 0 else list(procs)[::-1]
                for name in order:
                    reqs = built["requests"] if name == "tickwire" else built["requests"][1:]
                    if name == "tickwire" and rep:
                        built = build_requests(
                            trades, batch, ticks, v, args.symbols
                        )  # a fresh session
                        reqs = built["requests"]
                    pid = procs[name][0].pid
                    main0, all0 = _proc_cpu_s(pid, True), _proc_cpu_s(pid, False)
                    r = asyncio.run(run_stream(f"127.0.0.1:{procs[name][2]}", reqs))
                    r["ticks_per_s"] = built["ticks"] / r["wall_s"]
                    r["main_us"] = (_proc_cpu_s(pid, True) - main0) / len(reqs) * 1e6
                    r["server_us"] = (_proc_cpu_s(pid, False) - all0) / len(reqs) * 1e6
                    if name != "tickwire":
                        counted = pb.StreamVpinResponse.FromString(r["last"]).answers[0].ack.buckets
                        assert counted == built["ticks"], (counted, built["ticks"])
                    else:
                        with Client(f"127.0.0.1:{procs[name][2]}", trace=False) as c:
                            last = f"SYM{built['symbols'] - 1}"
                            st = c.microstructure.get_state(built["session_id"], last)
                            assert st.trades > 0
                    details.append((batch, name, rep, r["wall_s"], r["ticks_per_s"],
                                    r["client_cpu"], r["responses"]))  # fmt: skip
                    print(f"batch {batch:>6} {name:>14} rep {rep}: {r['ticks_per_s'] / 1e6:7.3f} M"
                          f" ticks/s, client CPU {r['client_cpu']:.2f}", flush=True)  # fmt: skip
                    speed[(name, rep)] = r["ticks_per_s"]
                    if name not in best or r["ticks_per_s"] > best[name]["ticks_per_s"]:
                        best[name] = r
            eng = engine_only(trades, batch, built["messages"], args.symbols, v)
            bare, tw, echo = best["bare"], best["tickwire"], best["bare answering"]
            rows.append(
                [
                    f"{batch:,}",
                    f"{built['messages']:,}",
                    f"{built['ticks']:,}",
                    built["symbols"],
                    f"{bare['ticks_per_s'] / 1e6:.3f}",
                    f"{tw['ticks_per_s'] / 1e6:.3f}",
                    f"{tw['ticks_per_s'] / bare['ticks_per_s']:.2f}",
                    _paired(speed, args.repeats),
                    f"{echo['ticks_per_s'] / 1e6:.3f} ({echo['ticks_per_s'] / bare['ticks_per_s']:.2f})",
                    f"{tw['responses']:,}",
                    f"{bare['client_cpu']:.2f} / {tw['client_cpu']:.2f}",
                    f"{eng / 1e6:.2f}",
                    f"{batch / bare['ticks_per_s'] * 1e6:,.0f} / {batch / tw['ticks_per_s'] * 1e6:,.0f}"
                    f" / {batch / eng * 1e6:,.0f}",
                    f"{bare['main_us']:,.0f} / {tw['main_us']:,.0f}",
                    f"{bare['server_us']:,.0f} / {tw['server_us']:,.0f}",
                ]
            )
    finally:
        cpu = {name: stop(p, c) for name, (p, c, _) in procs.items()}
    headers = ["batch", "messages", "ticks", "symbols", "bare M ticks/s", "tickwire M ticks/s",
               "ratio", "ratio per repeat: median (range)", "bare answering every batch M ticks/s (ratio)", "tw responses", "client CPU/wall (bare / tw)", "engine alone M ticks/s",
               "us per batch (bare / tw / engine)", "server event-loop thread CPU us per batch "
               "(bare / tw)", "server process CPU us per batch (bare / tw)"]  # fmt: skip
    common.print_table("StreamVpin vs bare grpc.aio stream", headers, rows)
    detail_rows = [[b, n, r, f"{w:.3f}", f"{t / 1e6:.3f}", f"{c:.2f}", resp]
                   for b, n, r, w, t, c, resp in details]  # fmt: skip
    body = common.markdown_table(headers, rows)
    notes = (
        "Ratio = tickwire / bare, best run of each, measured in the same run with the same client "
        "and the same pre-serialized request bytes. Ratio per repeat: tickwire / bare of each "
        "repeat, whose runs of the servers follow each other within seconds (alternating order), so a slow "
        "spell of the host slows both; the median is the steadier figure. The host is a shared 2-core VM (other "
        "engineers' jobs ran at the same time); client and server processes share its two "
        "cores, so absolute numbers move between runs: compare the ratios.\n\n"
        "Bare answering every batch: the bare server writing one 300-byte response per request "
        "(ratio to the bare stream in brackets). It shows what writing costs gRPC itself: the "
        "bare stream writes once per run, Tickwire writes whenever buckets complete (in this "
        "data about every batch of 1,000 trades), joined into at most one response per 5 ms "
        "answer interval (the default; tw responses is their count in the best run).\n\n"
        "us per batch: wall time per trade batch of the bare stream, of the Tickwire stream, and "
        "of the engine alone (VpinState.update in one process, no gRPC, the same batches of "
        "the same symbols in turn, each symbol's first batch before the clock starts). The engine is one compiled pass over the batch (Numba, trade by trade; "
        "server/tickwire/engines/vpin_kernel.py), so its cost is mostly the few microseconds "
        "of each call.\n\n"
        "Server CPU per batch (best run of each, from /proc, 10 ms ticks): the thread that runs "
        "the asyncio event loop (gRPC's Python side, the handler, the engine) and the whole "
        "server process (with gRPC's own I/O threads). Client and server share the two cores: "
        "the bare stream's client, server loop and gRPC threads together keep both busy.\n\n"
        f"Server CPU over the whole run: bare {cpu['bare']['cpu_s']:.1f} s, bare answering "
        f"{cpu['bare answering']['cpu_s']:.1f} s, tickwire {cpu['tickwire']['cpu_s']:.1f} s."
    )
    common.write_report(
        "stream-cpu"
        + ("" if args.symbols > 0 else "-day-per-symbol")
        + ("-quick" if args.quick else ""),
        "StreamVpin throughput vs a bare grpc.aio bidi stream",
        [
            (
                "trades",
                f"{DATASET}, 34,990 executions, no sides (BVC), replayed as "
                + (
                    f"{args.symbols} symbols, each playing the day again and again (a day later "
                    "each time), batches of the symbols in turn"
                    if args.symbols > 0
                    else "S symbols, each playing the day once, batches of the symbols in turn"
                ),
            ),
            ("VPIN", f"V = {v:,.0f} shares (day volume / 50), n = 50, 60 s bars, normal CDF"),
            ("answer interval", "the default (5 ms)"),
            ("repeats", args.repeats),
            (
                "ticks per run",
                ", ".join(f"{b}: {int(TICKS.get(b, 1e6) * args.scale):,}" for b in batches),
            ),
        ],
        [
            ("Throughput", body + "\n\n" + notes),
            (
                "Every run",
                common.markdown_table(
                    [
                        "batch",
                        "server",
                        "repeat",
                        "wall s",
                        "M ticks/s",
                        "client CPU/wall",
                        "responses",
                    ],
                    detail_rows,
                ),
            ),
        ],
    )


if __name__ == "__main__":
    main()
