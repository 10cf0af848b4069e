"""Tickwire portfolio demo: four portfolios of 470 S&P 500 stocks through the gRPC API.

1. Loads the daily closes of the 470 S&P 500 members priced on every day of
   2013-02-08 .. 2018-02-07 (``data/sp500-stocks-5yr-2013-2018``) and their GICS
   sectors and market caps (``data/sp500-constituents-2017-03``), and registers
   the (1258, 470) daily returns once (RiskService.RegisterScenarios).
2. Optimises, by id: maximum Sharpe ratio and minimum volatility (long-only,
   at most 5% per stock and 25% per sector), equal risk contribution, and
   hierarchical risk parity (Lopez de Prado), and prints their weights by
   sector side by side with their expected return, volatility and Sharpe ratio.
3. Computes a 50-point efficient frontier under the same constraints and
   writes a PNG with the four portfolios and every stock marked.
4. Turns the max-Sharpe weights into whole shares for $1,000,000 at the last
   closes, and shows how a Black-Litterman view moves the max-Sharpe sectors.

Usage::

    python clients/python/examples/portfolio_demo.py [--target host:port] [--plot out/frontier.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _local_server import local_server
from rich.console import Console
from rich.table import Table
from tickwire.feeds.sp500 import load_closes, load_constituents
from tickwire_client import Client
from tickwire_client.portfolio import BlackLitterman, WeightConstraints

console = Console(width=None if sys.stdout.isatty() else 150)
UNKNOWN = "(not in the 2017-03 list)"
RISK_FREE = 0.02


def run(target: str, plot: Path) -> None:
    closes = load_closes()
    info = load_constituents().reindex(closes.columns)
    sectors = info["sector"].fillna(UNKNOWN).to_numpy()
    returns = closes.pct_change().iloc[1:].to_numpy()
    console.print(
        f"S&P 500: {closes.shape[1]} stocks x {len(returns)} daily returns "
        f"({closes.index[0]:%Y-%m-%d} .. {closes.index[-1]:%Y-%m-%d}), "
        f"{len(set(sectors))} sectors"
    )
    limits = {s: 0.25 for s in set(sectors)}
    constraints = WeightConstraints(upper=0.05, sectors=list(sectors), sector_upper=limits)
    with Client(target, timeout=120) as tw:
        t0 = time.perf_counter()
        dataset = tw.risk.register_scenarios(returns)
        console.print(
            f"Registered the returns once as {dataset.id[:19]}... "
            f"({returns.nbytes / 1e6:.1f} MB, {1e3 * (time.perf_counter() - t0):.0f} ms)"
        )
        common = {"history": dataset, "kind": "returns", "risk_free_rate": RISK_FREE}
        portfolios = {}
        timings = {}
        for label, objective, cons in (
            ("max Sharpe", "max_sharpe", constraints),
            ("min volatility", "min_volatility", constraints),
            ("risk parity", "risk_parity", None),
            ("HRP", "hrp", None),
        ):
            t0 = time.perf_counter()
            portfolios[label] = tw.portfolio.optimize(objective, constraints=cons, **common)
            timings[label] = 1e3 * (time.perf_counter() - t0)
        sector_table(portfolios, timings, sectors)

        t0 = time.perf_counter()
        frontier = tw.portfolio.efficient_frontier(num_points=50, constraints=constraints, **common)
        frontier_ms = 1e3 * (time.perf_counter() - t0)
        console.print(
            f"ComputeEfficientFrontier: 50 points in {frontier_ms:.0f} ms round trip "
            f"({frontier.solver.solver}: {frontier.solver.status}, "
            f"{frontier.solver.iterations} iterations); volatility "
            f"{frontier.volatilities[0]:.1%} .. {frontier.volatilities[-1]:.1%}"
        )

        best = portfolios["max Sharpe"]
        latest = closes.iloc[-1].to_numpy()
        alloc = tw.portfolio.allocate(best.weights, latest, 1_000_000)
        held = np.flatnonzero(alloc.shares)
        console.print(
            f"AllocateShares: $1,000,000 of the max-Sharpe portfolio -> {len(held)} stocks, "
            f"{int(alloc.shares.sum()):,} shares, ${alloc.leftover:,.2f} left over, "
            f"weight RMSE {alloc.rmse:.4f}"
        )

        black_litterman(tw, info, sectors, constraints, common, best)
    write_plot(plot, frontier, portfolios, returns)
    console.print(f"Efficient frontier written to {plot}")


def sector_table(portfolios: dict, timings: dict, sectors: np.ndarray) -> None:
    names = list(portfolios)
    by_sector = pd.DataFrame(
        {k: pd.Series(p.weights).groupby(sectors).sum() for k, p in portfolios.items()}
    ).sort_values("max Sharpe", ascending=False)
    table = Table(title="Weights by GICS sector (%)", title_justify="left")
    table.add_column("sector")
    for k in names:
        table.add_column(k, justify="right")
    for sector, row in by_sector.iterrows():
        table.add_row(sector, *(f"{100 * row[k]:.1f}" for k in names))
    table.add_section()
    rows = [
        ("expected return", lambda p: f"{p.expected_return:.1%}"),
        ("volatility", lambda p: f"{p.volatility:.1%}"),
        (f"Sharpe ratio (rf {RISK_FREE:.0%})", lambda p: f"{p.sharpe_ratio:.2f}"),
        ("stocks held (> 0.01%)", lambda p: f"{int(np.sum(p.weights > 1e-4))}"),
        ("largest weight", lambda p: f"{p.weights.max():.1%}"),
        ("largest risk share", lambda p: f"{p.risk_contributions.max() / p.volatility:.1%}"),
        ("solver", lambda p: p.solver.solver),
    ]
    for label, f in rows:
        table.add_row(label, *(f(portfolios[k]) for k in names))
    table.add_row("round trip ms", *(f"{timings[k]:.0f}" for k in names))
    table.add_row(
        "server compute ms", *(f"{portfolios[k].execution.compute_ms:.1f}" for k in names)
    )
    console.print(table)
    console.print(
        "[dim]Expected returns: mean historical (CAGR); covariance: sample; annualised "
        "with 252 days. The estimate of the registered returns is computed once and reused.[/dim]"
    )


def black_litterman(tw, info, sectors, constraints, common, best) -> None:
    """A relative view: Information Technology beats Utilities by 5% a year."""
    n = len(sectors)
    caps = info["market_cap_usd_bn"].fillna(info["market_cap_usd_bn"].median()).to_numpy()
    tech = sectors == "Information Technology"
    util = sectors == "Utilities"
    picking = np.zeros((1, n))
    picking[0, tech] = caps[tech] / caps[tech].sum()
    picking[0, util] = -caps[util] / caps[util].sum()
    model = BlackLitterman(
        picking, [0.05], confidences=[0.6], market_caps=caps, risk_aversion=2.5,
        risk_free_rate=RISK_FREE,
    )  # fmt: skip
    res = tw.portfolio.optimize(
        "max_sharpe", constraints=constraints, black_litterman=model, **common
    )
    before = pd.Series(best.weights).groupby(sectors).sum()
    after = pd.Series(res.weights).groupby(sectors).sum()
    console.print(
        "Black-Litterman (market-cap prior, view: IT beats Utilities by 5%, 60% confident): "
        f"max-Sharpe IT {before['Information Technology']:.1%} -> "
        f"{after['Information Technology']:.1%}, Utilities {before['Utilities']:.1%} -> "
        f"{after['Utilities']:.1%}"
    )


def write_plot(path: Path, frontier, portfolios: dict, returns: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    vol = returns.std(axis=0, ddof=1) * np.sqrt(252)
    cagr = np.prod(1 + returns, axis=0) ** (252 / len(returns)) - 1
    ax.scatter(vol * 100, cagr * 100, s=6, c="0.75", label="S&P 500 stocks")
    ax.plot(
        frontier.volatilities * 100, frontier.expected_returns * 100, "-", lw=2,
        color="tab:blue", label="efficient frontier (5% per stock, 25% per sector)",
    )  # fmt: skip
    markers = {"max Sharpe": "*", "min volatility": "o", "risk parity": "s", "HRP": "D"}
    for label, p in portfolios.items():
        ax.scatter(p.volatility * 100, p.expected_return * 100, marker=markers[label], s=140,
                   zorder=5, label=f"{label} (Sharpe {p.sharpe_ratio:.2f})")  # fmt: skip
    ax.set(
        xlabel="annual volatility (%)", ylabel="expected annual return (%)",
        title="470 S&P 500 stocks, 2013-2018: efficient frontier (Tickwire PortfolioService)",
        xlim=(0, max(45, frontier.volatilities.max() * 110)), ylim=(-20, 80),
    )  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    """Parse flags, start a server unless ``--target`` is given, run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="host:port of a running server (default: start one)")
    parser.add_argument(
        "--plot", default="out/sp500_efficient_frontier.png", help="PNG path for the plot"
    )
    args = parser.parse_args()
    if args.target:
        run(args.target, Path(args.plot))
    else:
        with local_server() as target:
            run(target, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
