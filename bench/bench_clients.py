"""Round trip of the smallest VaR call from each client stack, next to a bare health check,
and ticks/s into the VPIN stream from each client stack.

Clients: Python sync (``tickwire_client.Client``), Python asyncio (``AsyncClient``), and
the Go, C++, Java and TypeScript clients (``clients/*``, their ``bench_var`` programs).
All call ONE ``tickwire serve`` on 127.0.0.1, one client at a time, calls one at a time
on one connection: ``ComputeVar`` historical on a 2 x 1 scenario matrix, one level, one
horizon (the smallest call), then ``grpc.health.v1.Health/Check`` (the server's cheapest
RPC: no decoding of arrays, no routing, no engine). The difference of the medians is what
the VaR service costs beyond a bare RPC through the same client stack. Each client runs
``--rounds`` times, in rotated order, and its samples are pooled (the host is shared and
noisy; compare ratios within one run).

VPIN stream: the LOBSTER AAPL and AMZN days of 2012-06-21 (46,409 trades, from the server's
Replay), each copied under ``--vpin-copies`` symbol names, cut into batches of 1,000 trades
of one symbol (written once as hex StreamVpinRequest lines, the config first), sent through
a new ``StreamVpin`` stream ``--vpin-streams`` times per round by every client (writing and
reading concurrently); ticks/s = trades / (first write to last answer).

Run: ``python bench/bench_clients.py`` (after ``make test`` built the clients; ``--quick``
for a smoke run). Writes ``bench/results/clients.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import (
    ROOT,
    environment,
    fmt,
    markdown_table,
    median,
    percentile,
    print_table,
    write_report,
)
from tickwire.microstructure.v1 import microstructure_pb2 as mpb
from tickwire_client import AsyncClient, Client
from tickwire_client.microstructure import vpin_parameters

CLIENTS = ROOT / "clients"
sys.path.insert(0, str(CLIENTS / "python" / "examples"))
from _local_server import local_server  # noqa: E402

SCENARIOS = np.array([[-0.01], [0.02]])
POSITIONS = [1e6]
VPIN_DATASETS = ["lobster-aapl-2012-06-21-l1", "lobster-amzn-2012-06-21-l1"]
VPIN_BATCH = 1000
VPIN_PARAMS = vpin_parameters(10_000.0, bar_ns=10_000_000_000)


def vpin_requests(target: str, copies: int, path: Path) -> tuple[list, int]:
    """Write the stream's requests (hex lines, the config first); return the trade batches
    (without the config) and the number of trades."""
    cols: dict[str, list[np.ndarray]] = {}
    with Client(target) as c:
        for m in c.market_data.replay(VPIN_DATASETS, trades=True, batch_size=10_000):
            if m.WhichOneof("payload") == "trades":
                t = m.trades
                cols.setdefault(t.symbol, []).append(
                    np.array([t.ts_ns, t.price, t.size], dtype=object)
                )
    days = {
        s: [np.concatenate([np.asarray(p[i], dtype=dt) for p in parts]) for i, dt in enumerate((np.int64, float, float))]
        for s, parts in cols.items()
    }  # fmt: skip
    batches = []
    for start in range(0, max(len(d[0]) for d in days.values()), VPIN_BATCH):
        for k in range(copies):
            for sym, (ts, price, size) in days.items():
                if start < len(ts):
                    sl = slice(start, start + VPIN_BATCH)
                    batches.append(mpb.StreamVpinRequest(client_batch_id=len(batches) + 1,
                                                         trades={"symbol": f"{sym}{k}", "ts_ns": ts[sl],
                                                                 "price": price[sl], "size": size[sl]}))  # fmt: skip
    config = mpb.StreamVpinRequest(config=mpb.VpinStreamConfig(default_parameters=VPIN_PARAMS))
    path.write_text("\n".join(r.SerializeToString().hex() for r in [config, *batches]) + "\n")
    return batches, sum(len(b.trades.ts_ns) for b in batches)


def _python_streams(target: str, batches: list, reps: int) -> list[float]:
    out = []
    with Client(target) as c:
        for _ in range(reps):
            t0 = time.perf_counter()
            for a in c.microstructure.stream_vpin(batches, bucket_volume=VPIN_PARAMS.bucket_volume,
                                                  bar_ns=VPIN_PARAMS.bar_ns, timeout=300):  # fmt: skip
                assert a.WhichOneof("payload") != "rejection", a
            out.append(time.perf_counter() - t0)
    return out


async def _python_async_streams(target: str, batches: list, reps: int) -> list[float]:
    out = []
    async with AsyncClient(target) as c:
        for _ in range(reps):
            t0 = time.perf_counter()
            async for a in c.microstructure.stream_vpin(batches, bucket_volume=VPIN_PARAMS.bucket_volume,
                                                        bar_ns=VPIN_PARAMS.bar_ns, timeout=300):  # fmt: skip
                assert a.WhichOneof("payload") != "rejection", a
            out.append(time.perf_counter() - t0)
    return out


def _python_sync(target: str, n: int, vpin: tuple | None = None) -> dict[str, list[float]]:
    with Client(target) as c:

        def var() -> None:
            c.risk.compute_var(SCENARIOS, POSITIONS, confidence_levels=[0.99], horizon_days=[1])

        out = {"var_us": _time(var, n), "health_us": _time(c.health, n)}
    if vpin:
        out["vpin_s"] = _python_streams(target, vpin[0], vpin[2])
    return out


def _time(call: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(200, n)):
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return out


def _python_async(target: str, n: int, vpin: tuple | None = None) -> dict[str, list[float]]:
    async def main() -> dict[str, list[float]]:
        async with AsyncClient(target) as c:

            async def timed(call: Callable[[], object]) -> list[float]:
                for _ in range(min(200, n)):
                    await call()
                out = []
                for _ in range(n):
                    t0 = time.perf_counter_ns()
                    await call()
                    out.append((time.perf_counter_ns() - t0) / 1e3)
                return out

            var = await timed(lambda: c.risk.compute_var(SCENARIOS, POSITIONS,
                                                         confidence_levels=[0.99],
                                                         horizon_days=[1]))  # fmt: skip
            out = {"var_us": var, "health_us": await timed(c.health)}
        if vpin:
            out["vpin_s"] = await _python_async_streams(target, vpin[0], vpin[2])
        return out

    return asyncio.run(main())


def _external(cmd: list[str], cwd: Path) -> Callable[..., dict[str, list[float]]]:
    def run(target: str, n: int, vpin: tuple | None = None) -> dict[str, list[float]]:
        extra = [str(vpin[1]), str(vpin[2])] if vpin else []
        out = subprocess.run([*cmd, target, str(n), *extra], cwd=cwd, capture_output=True,
                             text=True, check=True, timeout=600)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    return run


def _java_cp() -> str:
    cp = subprocess.run(["./classpath.sh"], cwd=CLIENTS / "java", capture_output=True, text=True)
    return f"target/classes:{cp.stdout.strip()}"


def build() -> dict[str, Callable[..., dict[str, list[float]]]]:
    """Build each client's bench program (toolchains from make setup-clients)."""
    go_env = {**os.environ, "GOFLAGS": "-mod=vendor", "GOPROXY": "off"}
    steps = [
        (["node_modules/.bin/tsc", "-p", "."], CLIENTS / "typescript", None),
        (["./vendor.sh"], CLIENTS / "go", go_env),
        (["go", "build", "-o", "bin/bench_var", "./examples/bench_var"], CLIENTS / "go", go_env),
        (
            [
                "cmake",
                "-S",
                ".",
                "-B",
                "build-bench",
                "-DCMAKE_BUILD_TYPE=Release",
                "-DBUILD_TESTING=OFF",
            ],
            CLIENTS / "cpp",
            None,
        ),
        (
            ["cmake", "--build", "build-bench", "-j2", "--target", "bench_var"],
            CLIENTS / "cpp",
            None,
        ),
        (
            [
                "mvn",
                "-B",
                "-q",
                "-s",
                "settings.xml",
                "-Dmaven.repo.local=../../build/java-m2",
                "-DskipTests",
                "compile",
            ],
            CLIENTS / "java",
            None,
        ),
    ]
    for cmd, cwd, env in steps:
        subprocess.run(cmd, cwd=cwd, env=env, check=True)
    return {
        "Python sync": _python_sync,
        "Python asyncio": _python_async,
        "Go": _external(["bin/bench_var"], CLIENTS / "go"),
        "C++": _external(["build-bench/bench_var"], CLIENTS / "cpp"),
        "Java": _external(
            ["java", "-cp", _java_cp(), "tickwire.client.examples.BenchVar"], CLIENTS / "java"
        ),
        "TypeScript": _external(["node", "dist/examples/bench_var.js"], CLIENTS / "typescript"),
    }


def main() -> int:
    """Build, start the server, measure every client, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per round and kind")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--vpin-copies", type=int, default=10, help="copies of the two days")
    parser.add_argument("--vpin-streams", type=int, default=3, help="streams per round")
    parser.add_argument("--quick", action="store_true", help="200 calls, 1 round, 1 stream")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds, args.vpin_copies, args.vpin_streams = 200, 1, 2, 1
    env = environment()
    clients = build()
    samples: dict[str, dict[str, list[float]]] = {
        k: {"var_us": [], "health_us": [], "vpin_s": []} for k in clients
    }
    requests_file = Path(tempfile.mkdtemp()) / "vpin-requests.hex"
    with local_server() as target:
        batches, trades = vpin_requests(target, args.vpin_copies, requests_file)
        vpin = (batches, requests_file, args.vpin_streams)
        names = list(clients)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                got = clients[name](target, args.calls, vpin)
                for kind in ("var_us", "health_us", "vpin_s"):
                    samples[name][kind] += got[kind]
                print(f"round {r + 1}: {name} done", flush=True)
    base = median(samples["Python sync"]["var_us"])
    headers = ["client", "VaR median µs", "VaR p99 µs", "health median µs", "health p99 µs",
               "VaR - health (median) µs", "VaR median / Python sync"]  # fmt: skip
    rows = []
    for name, s in samples.items():
        v, h = s["var_us"], s["health_us"]
        rows.append([name, fmt(median(v)), fmt(percentile(v, 99)), fmt(median(h)),
                     fmt(percentile(h, 99)), fmt(median(v) - median(h)),
                     f"{median(v) / base:.2f}"])  # fmt: skip
    print_table("Smallest VaR call and health check, per client", headers, rows)
    requests_file.unlink(missing_ok=True)
    base_ticks = trades / median(samples["Python sync"]["vpin_s"])
    vheaders = ["client", "streams", "ticks/s median", "ticks/s best", "median / Python sync"]
    vrows = []
    for name, s in samples.items():
        rates = [trades / x for x in s["vpin_s"]]
        vrows.append([name, str(len(rates)), fmt(median(rates)), fmt(max(rates)),
                      f"{median(rates) / base_ticks:.2f}"])  # fmt: skip
    print_table(f"StreamVpin, {trades:,} trades in batches of {VPIN_BATCH:,}", vheaders, vrows)
    versions = [
        ("Go", subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()),
        ("Node", subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()),
        ("Java", subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]),
        ("client stacks", "grpc-go 1.33.3, gRPC C++ 1.51.1 (-O2), grpc-java 1.41.3 Netty, "
                          "@connectrpc/connect-node 2.1.2, grpcio 1.85.1"),
    ]  # fmt: skip
    write_report(
        "clients",
        "Smallest VaR call from each client stack vs a health check",
        [
            ("calls per round and kind", args.calls),
            ("rounds (rotated order)", args.rounds),
            ("warm-up calls", "200 (Java: 1,000, JIT)"),
            ("VaR request", "ComputeVar historical, 2 x 1 scenarios, 1 level, 1 horizon"),
            ("bare call", "grpc.health.v1.Health/Check on the same server and connection"),
            ("server", "tickwire serve, 127.0.0.1, default settings (tracing on, no exporter)"),
            (
                "VPIN stream",
                f"{trades:,} trades per stream ({args.vpin_copies} copies of the LOBSTER "
                f"AAPL + AMZN days), {VPIN_BATCH:,} per batch, one symbol per batch, "
                f"V = 10,000 shares, 10 s bars, n = 50; {args.vpin_streams} streams "
                "per round and client",
            ),
            ("host", "shared by several engineers' jobs: compare ratios within this run"),
            *versions,
        ],
        [
            ("Round trip per client (µs)", markdown_table(headers, rows)),
            ("Ticks/s into the VPIN stream per client", markdown_table(vheaders, vrows)),
        ],
        env,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
