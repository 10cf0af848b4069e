"""VaR on every backend present, engine-level through ``Router.run``, and the router's pick.

For each scenario matrix size (T scenarios x N assets) and each method
(historical, parametric normal), on every backend present (numpy, torch-cpu,
mlx; torch-cuda on a CUDA host), pinned through ``Router.run``:

- resident:    the matrix is registered (a key) and already on the backend;
- transferred: no key, so a backend that copies its input (mlx, torch-cuda)
               copies the matrix on every call (numpy and torch-cpu wrap it).

Repetitions interleave the backends and the two modes, so drift hits all alike.
Then the router picks (no pin) in both modes: its pick, its estimate, the
measured time of the routed call, and the ratio of that time to the fastest
pinned backend measured on the same input. Monte Carlo VaR (``--mc-sims``
draws x ``--mc-assets`` assets) runs on every backend the same way (its draws
are made on the device: no matrix to move).

Finally, one row of end-to-end RPC time: ComputeVar over ``--rpc-size``
through ``tickwire_client.Client`` with the matrix sent in the request vs a
registered scenario-set id, against a Tickwire server in its own process.

Run: ``python bench/bench_var_backends.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import numpy as np

MIB = 1 << 20


def mem_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (0 when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def free_g() -> str:
    """``free -g`` output, for the record."""
    try:
        return subprocess.run(["free", "-g"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "(free not available)"


def thread_settings() -> str:
    """BLAS / torch thread counts in this process (the server leaves library defaults)."""
    parts = []
    try:
        from threadpoolctl import threadpool_info

        parts += [
            f"{i.get('internal_api')} {i.get('num_threads')} threads" for i in threadpool_info()
        ]
    except ImportError:
        pass
    try:
        import torch

        parts.append(f"torch {torch.get_num_threads()} intra-op threads")
    except ImportError:
        pass
    return "; ".join(parts) or "library defaults"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        t, n = part.lower().replace("_", "").split("x")
        out.append((int(float(t)), int(float(n))))
    return out


def make_scenarios(t: int, n: int, seed: int) -> np.ndarray:
    """(t, n) float64 returns, generated in place (no temporary copy)."""
    s = np.empty((t, n), dtype=np.float64)
    np.random.default_rng(seed).standard_normal(out=s)
    s *= 0.01
    return s


# ============================================================================
# engine-level measurements
# ============================================================================
class Bench:
    """Backends, router and timing helpers."""

    def __init__(self, only: list[str] | None) -> None:
        from tickwire.routing.backends import detect_backends
        from tickwire.routing.cost_model import load_profile
        from tickwire.routing.router import Router

        backends = detect_backends()
        if only:
            backends = {k: v for k, v in backends.items() if k in only or k == "numpy"}
        self.router = Router(backends, load_profile(None))
        self.names = list(backends)

    def run(self, op: Any, inputs: dict[str, Any], pinned: str | None) -> tuple[float, Any]:
        """Wall ms of one routed call (engine + synchronize) and its RouteResult."""
        t0 = time.perf_counter_ns()
        r = self.router.run(op, inputs, pinned)
        return (time.perf_counter_ns() - t0) / 1e6, r

    def estimate(self, op: Any, inputs: dict[str, Any], backend: str) -> float:
        """The cost model's estimate (ms) for ``backend`` on ``inputs`` as they stand."""
        for c in self.router.candidates(op, inputs):
            if c.backend == backend:
                return c.estimated_ns / 1e6
        return float("nan")


def measure_scenario_op(
    bench: Bench,
    op: Any,
    scenarios: np.ndarray,
    positions: np.ndarray,
    key: str,
    repeats: int,
    budget_s: float,
) -> dict[str, Any]:
    """Pinned (resident, transferred) on every backend, then routed; interleaved."""
    base = {
        "scenarios": scenarios,
        "positions": positions,
        "confidence_levels": np.array([0.99]),
        "horizon_days": np.array([1]),
    }
    modes = {"resident": {**base, "scenarios_key": key}, "transferred": {**base}}
    for be in bench.router.backends.values():
        be.asarray(scenarios, key=key)  # resident: copied to the backend once, here
    est = {
        (m, b): bench.estimate(op, inputs, b) for m, inputs in modes.items() for b in bench.names
    }
    picks = {m: bench.router.candidates(op, inputs)[0] for m, inputs in modes.items()}
    times: dict[tuple[str, str], list[float]] = {
        (m, b): [] for m in modes for b in [*bench.names, "auto"]
    }
    used: dict[tuple[str, str], str] = {}
    # warm-up: one call of each (first-call allocations, kernel selection)
    for inputs in modes.values():
        for b in bench.names:
            bench.run(op, inputs, b)
    t_end = time.perf_counter() + budget_s
    for i in range(repeats):
        order = [*bench.names, "auto"]
        k = i % len(order)
        for b in order[k:] + order[:k]:
            for m, inputs in modes.items():
                ms, r = bench.run(op, inputs, None if b == "auto" else b)
                times[(m, b)].append(ms)
                used[(m, b)] = r.backend
        if i >= 1 and time.perf_counter() > t_end:
            break
    for be in bench.router.backends.values():
        be.evict(key)
    return {"times": times, "estimates": est, "picks": picks, "used": used}


def measure_mc(
    bench: Bench, op: Any, scenarios: np.ndarray, sims: int, repeats: int, budget_s: float
) -> dict[str, Any]:
    """Monte Carlo VaR pinned on every backend, then routed; interleaved."""
    n = scenarios.shape[1]
    inputs = {
        "scenarios": scenarios,
        "positions": np.full(n, 1e6 / n),
        "confidence_levels": np.array([0.99]),
        "horizon_days": np.array([1]),
        "num_simulations": sims,
        "seed": 7,
    }
    est = {("-", b): bench.estimate(op, inputs, b) for b in bench.names}
    pick = bench.router.candidates(op, inputs)[0]
    times: dict[tuple[str, str], list[float]] = {("-", b): [] for b in [*bench.names, "auto"]}
    used: dict[tuple[str, str], str] = {}
    t_end = time.perf_counter() + budget_s
    for i in range(repeats):
        order = [*bench.names, "auto"]
        k = i % len(order)
        for b in order[k:] + order[:k]:
            ms, r = bench.run(op, inputs, None if b == "auto" else b)
            times[("-", b)].append(ms)
            used[("-", b)] = r.backend
        if time.perf_counter() > t_end:
            break
    return {"times": times, "estimates": est, "picks": {"-": pick}, "used": used}


# ============================================================================
# end-to-end RPC: inline matrix vs registered id
# ============================================================================
def rpc_server(conn: Any) -> None:
    """A Tickwire server with default settings (tracing on, no exporter configured)."""
    import bench_latency as bl

    async def start() -> tuple[int, Any, Any]:
        from tickwire.app import create_app
        from tickwire.config import Settings

        app = await create_app(Settings(host="127.0.0.1", port=0, log_level="WARNING"))
        return app.port, lambda: app.stop(0.5), dict

    bl._serve_until_stopped(conn, start)


def measure_rpc(t: int, n: int, repeats: int) -> dict[str, Any]:
    import bench_latency as bl
    from tickwire_client import Client

    scenarios = make_scenarios(t, n, seed=11)
    positions = np.random.default_rng(12).uniform(0.5, 1.5, n) * 1e6 / n
    server = bl.ServerProcess(rpc_server)
    out: dict[str, Any] = {"inline": [], "registered": [], "info": {}}
    try:
        with Client(f"127.0.0.1:{server.port}", timeout=120) as c:
            c.wait_ready(30)
            t0 = time.perf_counter_ns()
            sset = c.risk.register_scenarios(scenarios)
            out["register_ms"] = (time.perf_counter_ns() - t0) / 1e6
            sources = {"inline": scenarios, "registered": sset}
            for src in sources.values():  # warm-up
                c.risk.compute_var(src, positions, confidence_levels=[0.99], horizon_days=[1])
            for i in range(repeats):
                order = list(sources) if i % 2 == 0 else list(sources)[::-1]
                for name in order:
                    t0 = time.perf_counter_ns()
                    rep = c.risk.compute_var(
                        sources[name], positions, confidence_levels=[0.99], horizon_days=[1]
                    )
                    out[name].append((time.perf_counter_ns() - t0) / 1e6)
                    out["info"][name] = rep.execution
    finally:
        server.stop()
    out["request_bytes"] = {
        "inline": scenarios.nbytes,
        "registered": len(sset.id.encode()),
    }
    return out


# ============================================================================
# report
# ============================================================================
METHODS = {
    "historical": "risk.historical_var",
    "parametric": "risk.parametric_normal_var",
}


def fmt_ms(x: float) -> str:
    if x != x:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes",
        default="10000x500,100000x2000",
        help="scenario matrices, TxN, comma-separated (10000x500,100000x2000)",
    )
    p.add_argument(
        "--methods", default="historical,parametric", help="historical,parametric (both)"
    )
    p.add_argument("--repeats", type=int, default=7, help="repetitions per cell at most (7)")
    p.add_argument("--budget", type=float, default=20.0, help="seconds per (size, method) (20)")
    p.add_argument("--mc-sims", type=int, default=1_000_000, help="Monte Carlo draws (1e6)")
    p.add_argument("--mc-assets", type=int, default=500, help="Monte Carlo assets (500)")
    p.add_argument("--mc-repeats", type=int, default=1, help="Monte Carlo repetitions (1)")
    p.add_argument("--no-mc", dest="mc", action="store_false", help="skip Monte Carlo")
    p.add_argument("--rpc-size", default="10000x500", help="matrix of the RPC row (10000x500)")
    p.add_argument("--rpc-repeats", type=int, default=10, help="RPC repetitions per mode (10)")
    p.add_argument("--no-rpc", dest="rpc", action="store_false", help="skip the RPC row")
    p.add_argument("--backends", default="", help="only these backends (numpy always kept)")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, ~20 s")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.budget = "2000x100,10000x500", 3, 5.0
        args.mc_sims, args.mc_assets, args.rpc_repeats = 100_000, 100, 3
        args.rpc_size = "2000x100"

    from tickwire.routing.operation import get as get_op

    env = common.environment()  # before the big allocations
    free_before = free_g()
    print(free_before, flush=True)
    bench = Bench([b for b in args.backends.split(",") if b])
    threads = thread_settings()
    print(f"backends: {', '.join(bench.names)}; {threads}", flush=True)

    rows_backend: list[list[str]] = []
    rows_route: list[list[str]] = []
    notes: list[str] = []
    results: list[tuple[str, str, dict[str, Any]]] = []
    sizes = parse_sizes(args.sizes)
    methods = [m for m in args.methods.split(",") if m]
    for t, n in sizes:
        need = 8 * t * n
        avail = mem_available_bytes()
        # host matrix + one resident copy (mlx) + one per-call copy + slack
        if avail and avail < 3.5 * need:
            notes.append(
                f"{t:,} x {n:,} skipped: needs about {3.5 * need / 2**30:.1f} GiB, "
                f"{avail / 2**30:.1f} GiB available"
            )
            print(notes[-1], flush=True)
            continue
        print(
            f"{t:,} x {n:,}: generating {need / 2**30:.2f} GiB ({avail / 2**30:.1f} GiB available)",
            flush=True,
        )
        scenarios = make_scenarios(t, n, seed=1)
        positions = np.random.default_rng(2).uniform(0.5, 1.5, n) * 1e6 / n
        key = f"bench-{t}x{n}"
        for m in methods:
            op = get_op(METHODS[m])
            print(f"  {m}", flush=True)
            r = measure_scenario_op(bench, op, scenarios, positions, key, args.repeats, args.budget)
            results.append((m, f"{t:,} x {n:,}", r))
        del scenarios
        gc.collect()

    if args.mc:
        t_mc = max(2 * args.mc_assets, 1000)
        print(f"monte carlo: {args.mc_sims:,} draws x {args.mc_assets} assets", flush=True)
        s = make_scenarios(t_mc, args.mc_assets, seed=3)
        r = measure_mc(
            bench, get_op("risk.monte_carlo_var"), s, args.mc_sims, args.mc_repeats, args.budget
        )
        results.append(("monte carlo", f"{args.mc_sims:,} draws x {args.mc_assets}", r))
        del s
        gc.collect()

    for m, size, r in results:
        times, est = r["times"], r["estimates"]
        modes = sorted({k[0] for k in times}, key=lambda x: x != "resident")
        med = {k: statistics.median(v) for k, v in times.items() if v}
        for b in bench.names:
            res_ms = med.get(("resident", b), med.get(("-", b), float("nan")))
            tr_ms = med.get(("transferred", b), float("nan"))
            rows_backend.append(
                [
                    m,
                    size,
                    b,
                    fmt_ms(res_ms),
                    fmt_ms(tr_ms),
                    f"{tr_ms / res_ms:.2f}x" if tr_ms == tr_ms else "-",
                    fmt_ms(est.get(("resident", b), est.get(("-", b), float("nan")))),
                    fmt_ms(est.get(("transferred", b), float("nan"))),
                    str(len(times.get(("resident", b), times.get(("-", b), [])))),
                ]
            )
        for mode in modes:
            pinned = {b: med[(mode, b)] for b in bench.names if (mode, b) in med}
            fastest = min(pinned, key=pinned.get)
            pick = r["picks"][mode]
            auto_ms = med.get((mode, "auto"), float("nan"))
            rows_route.append(
                [
                    m,
                    size,
                    mode if mode != "-" else "(draws on device)",
                    pick.backend,
                    fmt_ms(pick.estimated_ns / 1e6),
                    fmt_ms(pinned.get(pick.backend, float("nan"))),
                    f"{pinned.get(pick.backend, float('nan')) / (pick.estimated_ns / 1e6):.2f}x",
                    fmt_ms(auto_ms),
                    f"{fastest} {fmt_ms(pinned[fastest])}",
                    f"{pinned.get(pick.backend, float('nan')) / pinned[fastest]:.2f}x",
                    f"{auto_ms / pinned[fastest]:.2f}x",
                ]
            )

    h_backend = [
        "method",
        "T x N",
        "backend",
        "resident ms",
        "transferred ms",
        "transferred / resident",
        "estimate resident ms",
        "estimate transferred ms",
        "samples",
    ]
    h_route = [
        "method",
        "T x N",
        "mode",
        "router pick",
        "pick's estimate ms",
        "pick measured pinned ms",
        "measured / estimate",
        "routed call ms",
        "fastest pinned (ms)",
        "pick / fastest",
        "routed / fastest",
    ]
    common.print_table(
        "VaR per backend, pinned (median wall ms of Router.run)", h_backend, rows_backend
    )
    common.print_table("Router's pick vs the fastest measured", h_route, rows_route)

    rpc_text = ""
    rpc_rows: list[list[str]] = []
    h_rpc = [
        "ComputeVar (historical) over RPC",
        "scenario bytes in request",
        "median ms",
        "p90 ms",
        "server compute ms",
        "backend used",
        "vs registered",
    ]
    if args.rpc:
        (t, n) = parse_sizes(args.rpc_size)[0]
        print(f"RPC: {t:,} x {n:,} inline vs registered", flush=True)
        rr = measure_rpc(t, n, args.rpc_repeats)
        reg = statistics.median(rr["registered"])
        for mode in ("inline", "registered"):
            xs = rr[mode]
            info = rr["info"][mode]
            rpc_rows.append(
                [
                    f"{t:,} x {n:,}, {mode}",
                    f"{rr['request_bytes'][mode]:,}"
                    + (" (the id)" if mode == "registered" else ""),
                    fmt_ms(statistics.median(xs)),
                    fmt_ms(common.percentile(xs, 90)),
                    fmt_ms(info.compute_ms),
                    info.backend_used,
                    f"{statistics.median(xs) / reg:.2f}x",
                ]
            )
        common.print_table("End-to-end RPC (tickwire_client.Client, sync)", h_rpc, rpc_rows)
        rpc_text = (
            common.markdown_table(h_rpc, rpc_rows)
            + f"\n\nRegistering the matrix once took {fmt_ms(rr['register_ms'])} ms. "
            "Inline: the client encodes the matrix (`to_tensor`), sends it, the server "
            "parses it, checks every value is finite, routes and computes. Registered: the "
            "request carries the scenario-set id (a content hash) and the server reuses its "
            f"stored copy. {args.rpc_repeats} calls per mode, alternating, after one warm-up "
            "each; server with default Settings (tracing on, no exporter configured) in its "
            "own process on 127.0.0.1."
        )

    settings = [
        ("sizes", args.sizes),
        ("methods", ", ".join(methods)),
        ("request", "positions uniform(0.5, 1.5) x 1e6 / N; 1 confidence level (0.99), 1 horizon"),
        (
            "repeats",
            f"at most {args.repeats} per cell (budget {args.budget} s per size and "
            "method, at least 2); backends and modes interleaved, order rotating; one "
            "warm-up call each",
        ),
        (
            "Monte Carlo",
            f"{args.mc_sims:,} draws x {args.mc_assets} assets, covariance from a "
            f"{max(2 * args.mc_assets, 1000):,} x {args.mc_assets} matrix, "
            f"{args.mc_repeats} repetition(s)"
            if args.mc
            else "skipped",
        ),
        ("backends present", ", ".join(bench.names)),
        ("threads", threads + " (as the server: compute_threads=0 leaves library defaults)"),
        ("routing profile", "the shipped default (tickwire/routing/default_profile.json)"),
        ("timer", "perf_counter_ns around Router.run (engine call + backend.synchronize())"),
        ("free -g before", "<pre>" + free_before.strip().replace("\n", "<br>") + "</pre>"),
    ]
    sections = [
        (
            "VaR per backend, pinned (median wall ms of Router.run)",
            common.markdown_table(h_backend, rows_backend)
            + "\n\nresident: the matrix was registered under a key and copied to the backend "
            "before timing; transferred: no key, so mlx (and torch-cuda) copy it on every call, "
            "numpy and torch-cpu wrap the host array without a copy. Estimates are the routing "
            "cost model's (fixed + per unit x T x N + transfer bytes x per byte).",
        ),
        (
            "Router's pick vs the fastest measured",
            common.markdown_table(h_route, rows_route)
            + "\n\npick / fastest compares the pinned medians (the routing decision alone); "
            "routed / fastest times the unpinned call itself. Routing is correct when its pick "
            "is within a few percent of the fastest.",
        ),
    ]
    if rpc_text:
        sections.append(("End-to-end RPC: inline matrix vs registered id", rpc_text))
    if notes:
        sections.append(("Notes", "\n".join(f"- {x}" for x in notes)))
    sections.append(
        (
            "GPU hosts",
            "On a CUDA host torch-cuda joins every table by itself (it is detected); run "
            "`python bench/bench_var_backends.py` there. Its transferred column then includes the "
            "host-to-device copy of the matrix on every call.",
        )
    )
    gpu = "-cuda" if "torch-cuda" in bench.names else ""
    name = "var-backends" + gpu + ("-quick" if args.quick else "")
    common.write_report(
        name, "VaR by backend: resident vs transferred, and routing", settings, sections, env=env
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
