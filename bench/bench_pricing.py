"""Option pricing on every backend present, engine-level through ``Router.run``, and over RPC.

Cells (one contract unless noted, call, S = K = 100, T = 1, r = 5%, q = 0,
sigma = 20%, seed 1, no antithetics):

- Monte Carlo European call, 1 step, at 1e6, 1e7 and 1e8 paths (paths/s);
- Monte Carlo arithmetic Asian call, 252 steps, control variate off, at 1e5
  and 1e6 paths (path-steps/s);
- Black-Scholes-Merton price + Greeks of 1e6 random contracts (contracts/s).

Each cell runs on every backend present (numpy, torch-cpu, mlx; torch-cuda on
a CUDA host; BSM does not run on mlx) pinned through ``Router.run``: compute
only, no RPC. Rounds interleave the backends, their order rotating, after one
warm-up call per backend (fewer paths for Monte Carlo); a cell keeps adding
rounds up to ``--repeats`` while its ``--budget`` allows (the largest cells
get two or three on 2 cores). One routed call per cell (no pin, in the first
round) records the router's pick, its estimate, and how the pick compares with
the fastest backend measured.

Then, end to end: the same cells (``--rpc-cells``) through
``tickwire_client.Client.pricing`` against a Tickwire server
(``create_app(Settings(port=0, tracing=False))``) in its own process, routed,
beside the in-process compute-only time of the backend the server used.

Run: ``python bench/bench_pricing.py`` (``--quick`` for a smoke run). Results go
to ``bench/results/pricing-cpu.md``, or ``pricing-cuda.md`` when torch-cuda is
present.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import numpy as np
from bench_var_backends import Bench, fmt_ms, free_g, thread_settings

#: The contract of the Monte Carlo cells.
MC_CONTRACT = {
    "option_type": 1,
    "spot": 100.0,
    "strike": 100.0,
    "time_to_expiry": 1.0,
    "rate": 0.05,
    "dividend_yield": 0.0,
    "volatility": 0.2,
}
SEED = 1


@dataclass
class Cell:
    """One benchmark cell: an operation, its inputs and how to count its work."""

    key: str  # e.g. "european-1e7", used by --rpc-cells
    what: str  # e.g. "MC European call, 1 step"
    size: str  # e.g. "10,000,000 paths"
    op: Any
    inputs: dict[str, Any]
    warm_inputs: dict[str, Any]
    units: float  # paths, path-steps or contracts per call
    unit: str  # "paths/s", ...
    rpc: dict[str, Any] = field(default_factory=dict)  # client call: method and kwargs


def _sci(x: int) -> str:
    e = len(str(x)) - 1
    return f"1e{e}" if x == 10**e else f"{x:g}"


def mc_cell(payoff: str, paths: int, steps: int) -> Cell:
    from tickwire.engines.pricing_monte_carlo import MONTE_CARLO_PRICE

    def inputs(n: int) -> dict[str, Any]:
        return {
            **{k: np.array([v]) for k, v in MC_CONTRACT.items()},
            "payoff": payoff,
            "num_paths": n,
            "num_steps": steps,
            "seed": SEED,
            "control_variate": False,
        }

    european = payoff == "european"
    name = "european" if european else "asian"
    warm = min(paths, max(1000, 2_000_000 // steps))
    return Cell(
        key=f"{name}-{_sci(paths)}",
        what=f"MC European call, {steps} step"
        if european
        else f"MC arithmetic Asian call, {steps} steps, no control variate",
        size=f"{paths:,} paths" + ("" if european else f" x {steps} steps"),
        op=MONTE_CARLO_PRICE,
        inputs=inputs(paths),
        warm_inputs=inputs(warm),
        units=float(paths) * (1 if european else steps),
        unit="paths/s" if european else "path-steps/s",
        rpc={
            "method": "monte_carlo",
            "kwargs": {
                **MC_CONTRACT,
                "payoff": payoff,
                "num_paths": paths,
                "num_steps": steps,
                "seed": SEED,
                "control_variate": False,
            },
        },
    )


def bsm_cell(contracts: int) -> Cell:
    from tickwire.engines.pricing_analytic import BSM_PRICE, sample_contracts

    c = sample_contracts(contracts, np.random.default_rng(SEED))
    inputs = {**c, "greeks": True}
    return Cell(
        key=f"bsm-{_sci(contracts)}",
        what="BSM price + Greeks",
        size=f"{contracts:,} contracts",
        op=BSM_PRICE,
        inputs=inputs,
        warm_inputs=inputs,
        units=float(contracts),
        unit="contracts/s",
        rpc={"method": "price_european", "kwargs": {**c, "greeks": True}},
    )


# ============================================================================
# engine-level measurements
# ============================================================================
def measure_cell(bench: Bench, cell: Cell, repeats: int, budget_s: float) -> dict[str, Any]:
    """Pinned on every backend the op runs on, interleaved; one routed call in round 0."""
    names = [b for b in bench.names if cell.op.runs_on(b)]
    est = {b: bench.estimate(cell.op, cell.inputs, b) for b in names}
    pick = bench.router.candidates(cell.op, cell.inputs)[0]
    for b in names:  # warm-up: first-call allocations, kernel selection, thread pools
        bench.run(cell.op, cell.warm_inputs, b)
    times: dict[str, list[float]] = {b: [] for b in names}
    routed: dict[str, Any] = {}
    t0 = time.perf_counter()
    for i in range(repeats):
        t_round = time.perf_counter()
        k = i % len(names)
        order = names[k:] + names[:k]
        if i == 0:
            order.append("auto")
        pinned_s = 0.0
        for b in order:
            ms, r = bench.run(cell.op, cell.inputs, None if b == "auto" else b)
            if b == "auto":
                routed = {"ms": ms, "backend": r.backend, "estimate_ms": r.estimated_ns / 1e6}
            else:
                times[b].append(ms)
                pinned_s += ms / 1e3
        elapsed = time.perf_counter() - t0
        print(
            f"    round {i + 1}: {time.perf_counter() - t_round:.1f} s "
            + ", ".join(f"{b} {fmt_ms(times[b][-1])} ms" for b in names),
            flush=True,
        )
        # another round only if it is expected to end within the budget
        if elapsed + pinned_s > budget_s:
            break
    return {"names": names, "times": times, "estimates": est, "pick": pick, "routed": routed}


# ============================================================================
# end to end through the RPC
# ============================================================================
def rpc_server(conn: Any) -> None:
    """A Tickwire server, tracing off, on 127.0.0.1 and a free port, in this process."""
    import bench_latency as bl

    async def start() -> tuple[int, Any, Any]:
        from tickwire.app import create_app
        from tickwire.config import Settings

        app = await create_app(
            Settings(host="127.0.0.1", port=0, tracing=False, log_level="WARNING")
        )
        return app.port, lambda: app.stop(0.5), dict

    bl._serve_until_stopped(conn, start)


def request_bytes(cell: Cell) -> int:
    """Serialized size of the cell's request (built as the client builds it)."""
    try:
        from tickwire_client.pricing import _Requests
    except ImportError:
        return 0
    kw = dict(cell.rpc["kwargs"])
    if cell.rpc["method"] == "price_european":
        req = _Requests.european(
            kw["option_type"],
            kw["spot"],
            kw["strike"],
            kw["time_to_expiry"],
            kw["volatility"],
            kw["rate"],
            kw["dividend_yield"],
            True,
            None,
        )
    else:
        req = _Requests.monte_carlo(
            kw["option_type"],
            kw["spot"],
            kw["strike"],
            kw["time_to_expiry"],
            kw["volatility"],
            kw["rate"],
            kw["dividend_yield"],
            kw["payoff"],
            kw["num_paths"],
            kw["num_steps"],
            kw["seed"],
            False,
            False,
            False,
            None,
            None,
            None,
            None,
        )
    return req.ByteSize()


def measure_rpc(cells: list[Cell], repeats: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Each cell through ``Client.pricing``, routed; ``warmup`` calls each, then rounds."""
    import bench_latency as bl
    from tickwire_client import Client

    out: dict[str, dict[str, Any]] = {
        c.key: {"ms": [], "server_ms": [], "used": set()} for c in cells
    }
    server = bl.ServerProcess(rpc_server)
    try:
        with Client(f"127.0.0.1:{server.port}", timeout=600) as client:
            client.wait_ready(30)

            def call(cell: Cell) -> tuple[float, Any]:
                fn = getattr(client.pricing, cell.rpc["method"])
                t0 = time.perf_counter_ns()
                rep = fn(**cell.rpc["kwargs"])
                return (time.perf_counter_ns() - t0) / 1e6, rep.execution

            for c in cells:
                for _ in range(warmup):  # the server's first calls of a kind run slower
                    call(c)
            for i in range(repeats):
                k = i % len(cells)
                for c in cells[k:] + cells[:k]:
                    ms, ex = call(c)
                    out[c.key]["ms"].append(ms)
                    out[c.key]["server_ms"].append(ex.compute_ms)
                    out[c.key]["used"].add(ex.backend_used)
    finally:
        server.stop()
    for c in cells:
        out[c.key]["request_bytes"] = request_bytes(c)
    return out


# ============================================================================
# report
# ============================================================================
def rate(units: float, ms: float) -> str:
    """Units per second, as "12.3 M"."""
    if ms != ms or ms <= 0:
        return "-"
    per_s = units / (ms / 1e3)
    if per_s >= 1e9:
        return f"{common.fmt(per_s / 1e9)} G"
    return f"{common.fmt(per_s / 1e6)} M"


def parse_counts(text: str) -> list[int]:
    return [int(float(x)) for x in text.replace("_", "").split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--european-paths", default="1e6,1e7,1e8", help="MC European paths (1e6,1e7,1e8)"
    )
    p.add_argument("--asian-paths", default="1e5,1e6", help="MC Asian paths (1e5,1e6)")
    p.add_argument("--asian-steps", type=int, default=252, help="MC Asian steps (252)")
    p.add_argument("--bsm-contracts", default="1e6", help="BSM contracts (1e6)")
    p.add_argument("--repeats", type=int, default=5, help="rounds per cell at most (5)")
    p.add_argument(
        "--budget",
        type=float,
        default=120.0,
        help="seconds per cell: no new round once the next would end past it; "
        "at least one round (120)",
    )
    p.add_argument(
        "--rpc-cells",
        default="european-1e6,european-1e7,asian-1e5,bsm-1e6",
        help="cells also measured through the RPC (european-1e6,european-1e7,asian-1e5,bsm-1e6)",
    )
    p.add_argument("--rpc-repeats", type=int, default=5, help="RPC calls per cell (5)")
    p.add_argument("--rpc-warmup", type=int, default=2, help="RPC warm-up calls per cell (2)")
    p.add_argument("--no-rpc", dest="rpc", action="store_false", help="skip the RPC rows")
    p.add_argument("--backends", default="", help="only these backends (numpy always kept)")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, ~30 s")
    args = p.parse_args(argv)
    if args.quick:
        args.european_paths, args.asian_paths, args.bsm_contracts = "1e5,1e6", "1e4", "1e5"
        args.repeats, args.budget, args.rpc_repeats = 3, 10.0, 3
        args.rpc_cells = "european-1e6,asian-1e4,bsm-1e5"

    env = common.environment()
    free_before = free_g()
    bench = Bench([b for b in args.backends.split(",") if b])
    threads = thread_settings()
    print(f"backends: {', '.join(bench.names)}; {threads}", flush=True)

    cells = [mc_cell("european", n, 1) for n in parse_counts(args.european_paths)]
    cells += [
        mc_cell("asian_arithmetic", n, args.asian_steps) for n in parse_counts(args.asian_paths)
    ]
    cells += [bsm_cell(n) for n in parse_counts(args.bsm_contracts)]

    t_start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for cell in cells:
        print(f"{cell.what}, {cell.size}", flush=True)
        results[cell.key] = measure_cell(bench, cell, args.repeats, args.budget)
        gc.collect()

    rows_backend: list[list[str]] = []
    rows_route: list[list[str]] = []
    surprises: list[str] = []
    med_by_cell: dict[str, dict[str, float]] = {}
    for cell in cells:
        r = results[cell.key]
        med = {b: statistics.median(v) for b, v in r["times"].items() if v}
        med_by_cell[cell.key] = med
        pick, routed = r["pick"], r["routed"]
        fastest = min(med, key=med.get)
        for b in r["names"]:
            mark = " *" if b == pick.backend else ""
            rows_backend.append(
                [
                    cell.what,
                    cell.size,
                    b + mark,
                    fmt_ms(med[b]),
                    fmt_ms(min(r["times"][b])),
                    fmt_ms(max(r["times"][b])),
                    f"{rate(cell.units, med[b])} {cell.unit}",
                    fmt_ms(r["estimates"][b]),
                    f"{med[b] / r['estimates'][b]:.2f}x",
                    f"{med[b] / med[fastest]:.2f}x",
                    str(len(r["times"][b])),
                ]
            )
        pick_ms = med.get(pick.backend, float("nan"))
        rows_route.append(
            [
                cell.what,
                cell.size,
                pick.backend,
                fmt_ms(pick.estimated_ns / 1e6),
                fmt_ms(pick_ms),
                f"{pick_ms / (pick.estimated_ns / 1e6):.2f}x",
                f"{fmt_ms(routed.get('ms', float('nan')))} ({routed.get('backend', '-')})",
                f"{fastest} {fmt_ms(med[fastest])}",
                f"{pick_ms / med[fastest]:.2f}x",
                f"{routed.get('ms', float('nan')) / med[fastest]:.2f}x",
            ]
        )
        if pick.backend != fastest and pick_ms / med[fastest] > 1.05:
            xs, fx = r["times"][pick.backend], r["times"][fastest]
            overlap = min(xs) <= max(fx)
            surprises.append(
                f"{cell.what}, {cell.size}: the router picks {pick.backend} "
                f"({fmt_ms(pick_ms)} ms median, {fmt_ms(min(xs))}-{fmt_ms(max(xs))} ms; "
                f"estimated {fmt_ms(pick.estimated_ns / 1e6)} ms), {fastest} is faster "
                f"({fmt_ms(med[fastest])} ms median, {fmt_ms(min(fx))}-{fmt_ms(max(fx))} ms): "
                f"{pick_ms / med[fastest]:.2f}x"
                + (
                    "; the ranges overlap, so the difference is within this run's noise"
                    if overlap
                    else ""
                )
            )
    engine_s = time.perf_counter() - t_start

    h_backend = [
        "cell",
        "size",
        "backend (* router's pick)",
        "median ms",
        "min ms",
        "max ms",
        "throughput",
        "estimate ms",
        "measured / estimate",
        "vs fastest",
        "samples",
    ]
    h_route = [
        "cell",
        "size",
        "router pick",
        "pick's estimate ms",
        "pick measured ms (pinned median)",
        "measured / estimate",
        "routed call ms (backend)",
        "fastest pinned (ms)",
        "pick / fastest",
        "routed / fastest",
    ]
    t_engine = "Pricing per backend, pinned (median wall ms of Router.run, compute only)"
    t_route = "Router's pick vs the fastest measured"
    common.print_table(t_engine, h_backend, rows_backend)
    common.print_table(t_route, h_route, rows_route)

    rpc_rows: list[list[str]] = []
    h_rpc = [
        "cell",
        "size",
        "request bytes",
        "backend used (routed)",
        "RPC median ms",
        "RPC p90 ms",
        "server compute ms (median)",
        "compute-only ms (in-process, pinned)",
        "RPC / compute-only",
        "RPC - server compute ms",
    ]
    rpc_s = 0.0
    if args.rpc:
        wanted = [k for k in args.rpc_cells.split(",") if k]
        rpc_cells = [c for c in cells if c.key in wanted]
        missing = sorted(set(wanted) - {c.key for c in rpc_cells})
        if missing:
            print(f"--rpc-cells: no such cell {missing}", flush=True)
        if rpc_cells:
            print(f"RPC: {', '.join(c.key for c in rpc_cells)}", flush=True)
            t0 = time.perf_counter()
            rr = measure_rpc(rpc_cells, args.rpc_repeats, args.rpc_warmup)
            rpc_s = time.perf_counter() - t0
            for c in rpc_cells:
                x = rr[c.key]
                used = sorted(x["used"])
                rpc_ms = statistics.median(x["ms"])
                srv_ms = statistics.median(x["server_ms"])
                local = (
                    med_by_cell[c.key].get(used[0], float("nan"))
                    if len(used) == 1
                    else float("nan")
                )
                rpc_rows.append(
                    [
                        c.what,
                        c.size,
                        f"{x['request_bytes']:,}" if x["request_bytes"] else "?",
                        ", ".join(used),
                        fmt_ms(rpc_ms),
                        fmt_ms(common.percentile(x["ms"], 90)),
                        fmt_ms(srv_ms),
                        fmt_ms(local),
                        f"{rpc_ms / local:.2f}x",
                        fmt_ms(rpc_ms - srv_ms),
                    ]
                )
            common.print_table(
                "End to end through the RPC (tickwire_client.Client, sync) vs compute only",
                h_rpc,
                rpc_rows,
            )

    gpu_present = "torch-cuda" in bench.names
    print(
        f"engine cells {engine_s:.0f} s, RPC {rpc_s:.0f} s, "
        f"total {time.perf_counter() - t_start:.0f} s",
        flush=True,
    )
    for s in surprises:
        print("note: " + s, flush=True)

    settings = [
        (
            "cells",
            f"MC European 1 step: {args.european_paths} paths; MC arithmetic Asian "
            f"{args.asian_steps} steps, control variate off: {args.asian_paths} paths; "
            f"BSM price + Greeks: {args.bsm_contracts} contracts",
        ),
        (
            "Monte Carlo contract",
            "1 call, S = K = 100, T = 1, r = 5%, q = 0, sigma = 20%, seed 1, no antithetics",
        ),
        (
            "BSM contracts",
            "`sample_contracts` (calls and puts; spot 50-150; strike 0.5x-2x spot; T 1 day "
            "to 5 years; r -1% to 8%; q 0-5%; vol 5%-100%), seed 1",
        ),
        (
            "repeats",
            f"at most {args.repeats} rounds per cell; no new round once it would end more than "
            f"{args.budget:g} s after the cell's first (at least one); backends interleaved, "
            "order rotating; one warm-up call per backend first (Monte Carlo: the same payoff, "
            "up to 2e6 path-steps)",
        ),
        ("routed call", "one per cell, no pin, after the pinned calls of the first round"),
        (
            "RPC",
            f"{args.rpc_repeats} routed calls per cell after {args.rpc_warmup} warm-up calls each, "
            "cells interleaved, order rotating; "
            "server `create_app(Settings(port=0, tracing=False))` in its own process on "
            "127.0.0.1; client `tickwire_client.Client(...).pricing` (sync)"
            if args.rpc
            else "skipped",
        ),
        ("backends present", ", ".join(bench.names)),
        ("threads", threads + " (as the server: compute_threads=0 leaves library defaults)"),
        ("routing profile", "the shipped default (tickwire/routing/default_profile.json)"),
        ("timer", "perf_counter_ns around Router.run (engine call + backend.synchronize())"),
        (
            "wall time",
            f"engine cells {engine_s:.0f} s, RPC {rpc_s:.0f} s",
        ),
        ("free -g before", "<pre>" + free_before.strip().replace("\n", "<br>") + "</pre>"),
    ]
    sections = [
        (
            t_engine,
            common.markdown_table(h_backend, rows_backend)
            + "\n\nthroughput: paths/s (European), path-steps/s (Asian: paths x steps), "
            "contracts/s (BSM), from the median. Estimates are the routing cost model's "
            "(fixed + per unit x work; work = contracts x paths x steps for Monte Carlo, "
            "contracts for BSM; nothing to transfer). vs fastest: this backend's median over "
            "the fastest backend's in the same cell. BSM does not run on mlx (its erf is "
            "single precision).",
        ),
        (
            t_route,
            common.markdown_table(h_route, rows_route)
            + "\n\npick / fastest compares pinned medians (the routing decision alone); the "
            "routed call is one unpinned call, so routed / fastest carries one sample's noise.",
        ),
    ]
    if rpc_rows:
        sections.append(
            (
                "End to end through the RPC vs compute only",
                common.markdown_table(h_rpc, rpc_rows)
                + "\n\nRPC: client-side wall time of one blocking call, including building "
                "the request from NumPy, the server's decoding and validation, routing, "
                "compute, encoding and the client's decoding. server compute ms: the "
                "`ExecutionInfo.compute_ns` the server reports for the same calls. "
                "compute-only: this run's in-process pinned median on the backend the server "
                "chose.",
            )
        )
    if surprises:
        sections.append(("Notes", "\n".join(f"- {s}" for s in surprises)))
    if gpu_present:
        gpu_text = (
            "torch-cuda was present (see the GPU row); the CPU table is `results/pricing-cpu.md`."
        )
    else:
        gpu_text = (
            "No GPU was present on this machine (GPU: none above): torch-cuda is absent from "
            "every table. On a CUDA host the same command detects torch-cuda by itself, adds "
            "it to every table and writes `results/pricing-cuda.md` instead of this file."
        )
    sections.append(("GPU hosts", gpu_text))
    name = ("pricing-cuda" if gpu_present else "pricing-cpu") + ("-quick" if args.quick else "")
    common.write_report(
        name,
        "Option pricing by backend: Monte Carlo and BSM, routing, and RPC",
        settings,
        sections,
        env=env,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
