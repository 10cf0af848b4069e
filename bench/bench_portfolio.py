"""Portfolio construction: Tickwire's PortfolioService against PyPortfolioOpt 1.6.0.

Universes:

- 20 stocks: PyPortfolioOpt's own test prices (data/daily-prices/
  stock_prices_1989_2018), the 897 dates where every stock has a price;
- 470 stocks: the S&P 500 members priced on all 1,259 dates of 2013-2018
  (data/sp500-stocks-5yr-2013-2018);
- 2,000 stocks: a synthetic five-factor universe, 2,521 daily prices (seed 2000).

Tasks, each from the price history (estimation of the annual mean historical
return and sample covariance included on both sides):

- ``min_volatility`` and ``max_sharpe``, long-only (PyPortfolioOpt:
  ``EfficientFrontier(..., solver="CLARABEL")``, the solver the issue names;
  its default for these QPs in cvxpy 1.9 is OSQP, timed once as well);
- ``hrp`` (PyPortfolioOpt: ``HRPOpt(returns).optimize()``);
- a 50-point efficient frontier (PyPortfolioOpt: one ``EfficientFrontier``
  and 50 ``efficient_return`` calls, cvxpy re-solving with a parameter update).

Tickwire runs through the RPC (``tickwire_client.Client.portfolio``) against a
server in its own process: "inline" sends the (T, N) prices with every call;
"registered" sends the id of returns registered once with
``RiskService.RegisterScenarios``. The ratio is PyPortfolioOpt's time over
Tickwire's (inline); "max |dw|" is the largest weight difference. Rounds
alternate the two sides; the median is reported.

Both sides use ``--threads`` BLAS threads (default 1: on a small shared host,
multi-threaded BLAS spinning on busy cores makes the times erratic).

Run: ``python bench/bench_portfolio.py`` (``--quick``: 20 and 470 only, fewer
repeats). Results go to ``bench/results/portfolio-cpu.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import numpy as np
import pandas as pd

TASKS = ("min_volatility", "max_sharpe", "hrp", "frontier_50")


def universes(include_2000: bool) -> dict[str, pd.DataFrame]:
    from tickwire.feeds.daily_prices import data_dir, load_prices
    from tickwire.feeds.sp500 import load_closes

    out = {
        "20": load_prices(data_dir() / "daily-prices" / "stock_prices_1989_2018.csv.gz").dropna(),
        "470": load_closes(),
    }
    if include_2000:
        rng = np.random.default_rng(2000)
        t, n, k = 2520, 2000, 5
        b = rng.normal(1.0, 0.3, (n, k)) * np.array([0.01, 0.005, 0.004, 0.003, 0.002])
        f = rng.standard_normal((t, k))
        e = rng.standard_normal((t, n)) * rng.uniform(0.008, 0.025, n)
        r = f @ b.T + e + rng.uniform(-0.0002, 0.0008, n)
        prices = 100 * np.vstack([np.ones(n), np.cumprod(1 + r, axis=0)])
        out["2000"] = pd.DataFrame(prices, columns=[f"S{i:04d}" for i in range(n)])
    return out


# ----- PyPortfolioOpt -----------------------------------------------------------
def pyp_task(task: str, prices: pd.DataFrame, solver: str = "CLARABEL") -> np.ndarray:
    from pypfopt import EfficientFrontier, HRPOpt, expected_returns, risk_models

    if task == "hrp":
        w = HRPOpt(prices.pct_change().iloc[1:]).optimize()
        return pd.Series(w)[prices.columns].to_numpy()
    mu = expected_returns.mean_historical_return(prices)
    cov = risk_models.sample_cov(prices)
    ef = EfficientFrontier(mu, cov, solver=solver)
    if task == "min_volatility":
        return np.array(list(ef.min_volatility().values()))
    if task == "max_sharpe":
        return np.array(list(ef.max_sharpe().values()))
    lo = float(
        np.asarray(list(EfficientFrontier(mu, cov, solver=solver).min_volatility().values())) @ mu
    )
    hi = float(mu.max())
    weights = []
    for target in np.linspace(lo, hi - 1e-3 * (hi - lo), 50)[1:]:
        weights.append(list(ef.efficient_return(float(target)).values()))
    return np.array(weights)


# ----- Tickwire -------------------------------------------------------------------
def tw_task(client: Any, task: str, history: Any, kind: str) -> tuple[np.ndarray, Any]:
    if task == "frontier_50":
        fr = client.portfolio.efficient_frontier(history=history, kind=kind, num_points=50)
        return fr.weights[1:], fr
    res = client.portfolio.optimize(task, history=history, kind=kind)
    return res.weights, res


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter_ns()
    out = fn()
    return (time.perf_counter_ns() - t0) / 1e6, out


def portfolio_server(conn: Any, threads: int) -> None:
    """A Tickwire server whose compute uses ``threads`` BLAS / torch threads."""
    import bench_latency as bl

    async def start() -> tuple[int, Any, Any]:
        from tickwire.app import create_app
        from tickwire.config import Settings

        settings = Settings(host="127.0.0.1", port=0, log_level="WARNING", compute_threads=threads)
        app = await create_app(settings)
        return app.port, lambda: app.stop(0.5), dict

    bl._serve_until_stopped(conn, start)


def run(args: argparse.Namespace) -> None:
    import bench_latency as bl
    from threadpoolctl import threadpool_limits
    from tickwire_client import Client

    warnings.simplefilter("ignore")
    if args.threads > 0:
        threadpool_limits(args.threads)  # PyPortfolioOpt's side: the same BLAS threads
    data = universes(not args.quick)
    repeats = {"20": args.repeats, "470": max(args.repeats // 2, 2), "2000": 1}
    rows, fr_rows, osqp_rows = [], [], []
    server = bl.ServerProcess(portfolio_server, args.threads)
    try:
        with Client(f"127.0.0.1:{server.port}", timeout=600) as c:
            c.wait_ready(30)
            for label, prices in data.items():
                n = prices.shape[1]
                returns = prices.pct_change().iloc[1:].to_numpy()
                dataset = c.risk.register_scenarios(returns)
                for task in TASKS:
                    if task == "frontier_50" and label == "2000" and not args.frontier_2000:
                        continue
                    reps = 1 if task == "frontier_50" and label == "2000" else repeats[label]
                    # warm-up (server and client paths, BLAS threads)
                    tw_task(c, task, prices, "prices")
                    tw_task(c, task, dataset, "returns")
                    pyp_ms, tw_ms, reg_ms, compute_ms = [], [], [], []
                    skip_pyp = label == "2000" and task == "frontier_50"
                    w_pyp = None
                    for i in range(reps):
                        order = ("pyp", "tw", "reg") if i % 2 == 0 else ("reg", "tw", "pyp")
                        for side in order:
                            if side == "pyp" and not skip_pyp:
                                ms, w_pyp = timed(lambda t=task, p=prices: pyp_task(t, p))
                                pyp_ms.append(ms)
                            elif side == "tw":
                                ms, (w_tw, res) = timed(
                                    lambda t=task, p=prices: tw_task(c, t, p, "prices")
                                )
                                tw_ms.append(ms)
                                compute_ms.append(res.execution.compute_ms)
                            elif side == "reg":
                                ms, _ = timed(lambda t=task, d=dataset: tw_task(c, t, d, "returns"))
                                reg_ms.append(ms)
                    p, t, r = (common.median(x) for x in (pyp_ms, tw_ms, reg_ms))
                    dw = float(np.max(np.abs(w_tw - w_pyp))) if w_pyp is not None else float("nan")
                    row = [
                        n, task, fmt(p), fmt(t), fmt(r), fmt(common.median(compute_ms)),
                        "-" if p != p else f"{p / t:.1f}x", "-" if dw != dw else f"{dw:.1e}",
                        len(pyp_ms), len(tw_ms),
                    ]  # fmt: skip
                    rows.append(row)
                    common.print_table("progress", HEADERS, [row])
                    if task == "frontier_50":
                        ms_row = next(x for x in rows if x[0] == n and x[1] == "max_sharpe")
                        single, single_reg = (float(ms_row[j].replace(",", "")) for j in (3, 4))
                        fr_rows.append([
                            n, fmt(t), fmt(single), f"{t / single:.1f}",
                            fmt(r), fmt(single_reg), f"{r / single_reg:.1f}", fmt(p),
                        ])  # fmt: skip
                if label == "470":
                    for task in ("min_volatility", "max_sharpe"):
                        try:
                            ms, _ = timed(lambda t=task, p=prices: pyp_task(t, p, "OSQP"))
                            osqp_rows.append([n, task, fmt(ms), "solved"])
                        except Exception as exc:
                            osqp_rows.append([n, task, fmt(float("nan")), type(exc).__name__])
    finally:
        server.stop()

    common.print_table("PyPortfolioOpt vs Tickwire (RPC)", HEADERS, rows)
    common.print_table("Frontier", FR_HEADERS, fr_rows)
    settings = [
        ("repeats (20 / 470 / 2000 assets)", f"{repeats['20']} / {repeats['470']} / 1"),
        ("frontier repeats (2000)", "1"),
        ("PyPortfolioOpt", common._version("pyportfolioopt")),
        ("cvxpy", common._version("cvxpy")),
        ("clarabel", common._version("clarabel")),
        ("daqp (Tickwire's frontier)", common._version("daqp")),
        ("osqp (Tickwire's frontier fallback)", common._version("osqp")),
        ("BLAS / torch threads, both sides", args.threads or "library default"),
        ("host", "2 cores shared with other engineers' work: compare ratios, not absolutes"),
    ]
    sections = [
        ("PyPortfolioOpt (cvxpy + Clarabel) vs Tickwire through the RPC", TEXT + "\n\n"
         + common.markdown_table(HEADERS, rows)),
        ("50-point efficient frontier vs one optimisation", FR_TEXT + "\n\n"
         + common.markdown_table(FR_HEADERS, fr_rows)),
        ("PyPortfolioOpt with its default QP solver (OSQP), 470 assets, once",
         OSQP_TEXT + "\n\n"
         + common.markdown_table(["assets", "task", "PyPortfolioOpt OSQP ms", "outcome"], osqp_rows)),
        ("Notes", NOTES),
    ]  # fmt: skip
    common.write_report(
        "portfolio-cpu-quick" if args.quick else "portfolio-cpu",
        "Portfolio construction: Tickwire vs PyPortfolioOpt",
        settings,
        sections,
    )


def fmt(x: float) -> str:
    if x != x:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


HEADERS = [
    "assets", "task", "PyPortfolioOpt ms", "Tickwire RPC ms (inline)",
    "Tickwire RPC ms (registered, estimate cached)", "Tickwire compute ms", "ratio", "max |dw|", "n pyp", "n tw",
]  # fmt: skip
FR_HEADERS = [
    "assets", "Tickwire frontier ms (inline)", "Tickwire max_sharpe ms (inline)",
    "frontier / single (inline)", "Tickwire frontier ms (registered)",
    "Tickwire max_sharpe ms (registered)", "frontier / single (registered)",
    "PyPortfolioOpt frontier ms",
]  # fmt: skip
TEXT = (
    "Times are medians, in milliseconds, from the price history to the weights "
    "(estimation of mean historical returns and the sample covariance included on both "
    "sides). Tickwire's are wall-clock round trips through `tickwire_client` "
    "(inline: prices sent with each call and the inputs estimated again; registered: the "
    "id of a returns dataset registered once, whose estimate the server reuses after the "
    "first call, so that column is the optimisation and the round trip), and the inline "
    "call's server-side compute (estimation + optimisation). ratio = PyPortfolioOpt / "
    "Tickwire inline. max |dw| compares the weights (the frontier's 49 points after the "
    "first)."
)
FR_TEXT = (
    "Tickwire's 50-point frontier (one RPC) against its own single max_sharpe call on the "
    "same universe, with prices inline (estimation included in both) and on a registered "
    "dataset (estimate cached: the optimisations and the round trip), and PyPortfolioOpt's "
    "50 efficient_return calls. Medians over the same rounds as max_sharpe."
)

OSQP_TEXT = (
    "cvxpy 1.9 sends these QPs to OSQP when no solver is named; the issue's reference "
    "times (max_sharpe 844 ms at 470 assets) match this column, not the Clarabel one."
)
NOTES = """\
- Where Tickwire's time goes: inline, a 470-stock call moves 4.7 MB of prices (2,000
  stocks: 40 MB) and estimates the sample covariance again (T x N^2, the largest part
  of the compute at 2,000); the optimisation itself is the "registered" column, where
  the server reuses its estimate of the registered returns.
- Long-only mean-variance problems are solved by screening: Clarabel solves the problem
  restricted to a working set of assets and the full problem's KKT conditions are
  checked with its duals; the 470-stock max-Sharpe optimum is found with factorisations
  the size of its ~40-stock support, which is where the speed comes from.
- The frontier is one DAQP problem (dual active-set QP) set up once over a screened
  working set of assets (about 150 of the 470): each point changes only the
  target-return bound, so DAQP keeps its factorisation and starts from the previous
  point's active set (about 6 iterations a point at 470 assets); the excluded assets'
  reduced costs are checked at every point. A point DAQP does not solve (optimal and
  feasible to 1e-7) goes to a screened Clarabel solve and the solver report says so;
  when DAQP cannot solve the first point the frontier is one warm-started OSQP
  problem. Before DAQP (OSQP with a Clarabel fallback for about half of the 50
  points at 470 assets) the 470-asset frontier cost 92 ms on a registered dataset,
  6.6 single max-Sharpe calls; in-process, from the covariance, its 50 points took
  about 105 ms against 10 to 15 ms with DAQP (same host, same session).
- max |dw| on the frontier: the largest differences (about 1e-4) are near the minimum-
  volatility end where the frontier is flat; there PyPortfolioOpt's interior-point
  solution misses the target return by its feasibility tolerance, and the active-set
  point has slightly less variance (by 1e-9 to 5e-8) than PyPortfolioOpt's.
- The host has 2 cores shared with other engineers' builds and tests: the load average
  in the header says how busy it was; ratios measured side by side are the result.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 and 470 assets only")
    ap.add_argument("--repeats", type=int, default=5, help="rounds at 20 assets (470: half)")
    ap.add_argument(
        "--threads", type=int, default=1,
        help="BLAS/torch threads on both sides (server compute_threads; 0: library default)",
    )  # fmt: skip
    ap.add_argument(
        "--frontier-2000", action="store_true", help="also the frontier at 2,000 (Tickwire only)"
    )
    args = ap.parse_args()
    if args.quick:
        args.repeats = min(args.repeats, 3)
    run(args)


if __name__ == "__main__":
    main()
