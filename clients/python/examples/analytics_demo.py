"""Tickwire analytics demo: performance statistics of the S&P 500 stocks through the gRPC API.

1. Loads the daily closes of the 470 stocks priced on every day of
   2013-02-08 .. 2018-02-07 (``data/sp500-stocks-5yr-2013-2018``), SPY
   (``data/daily-prices``) and the S&P 500 index (``data/index-sp500-daily``)
   over the same days, as simple returns.
2. Sends all 472 series in one ComputePerformanceStatistics call with SPY as
   the benchmark: annual return, volatility, Sharpe, Sortino, Calmar, Omega,
   max drawdown with its dates, stability, skewness, kurtosis, alpha, beta,
   information ratio, capture ratios, VaR and CVaR.
3. Prints the benchmarks, the cross-section's medians, and the ten best and
   ten worst stocks by Sharpe ratio (rich tables).
4. Computes the drawdown series of those names and SPY (ComputeDrawdowns) and
   their rolling 126-day beta (ComputeRollingStatistics), and plots them (PNG).

Usage::

    python clients/python/examples/analytics_demo.py [--target host:port] [--plot out/x.png | --no-plot]
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
from tickwire.feeds.daily_prices import data_dir, load_prices
from tickwire.feeds.sp500 import load_closes
from tickwire_client import Client, PerformanceReport

console = Console(width=None if sys.stdout.isatty() else 160)

#: Columns of the ranking tables: (statistic, header, format).
COLUMNS = [
    ("annual_return", "ann. return", "{:+.1%}"),
    ("annual_volatility", "ann. vol", "{:.1%}"),
    ("sharpe_ratio", "Sharpe", "{:.2f}"),
    ("sortino_ratio", "Sortino", "{:.2f}"),
    ("max_drawdown", "max DD", "{:.1%}"),
    ("drawdown_trough", "DD trough", "{:%Y-%m-%d}"),
    ("drawdown_recovery", "recovered", "{:%Y-%m-%d}"),
    ("calmar_ratio", "Calmar", "{:.2f}"),
    ("beta", "beta", "{:.2f}"),
    ("alpha", "alpha", "{:+.1%}"),
    ("up_capture", "up cap", "{:.2f}"),
    ("down_capture", "down cap", "{:.2f}"),
    ("var_95", "VaR 95", "{:.2%}"),
    ("stability", "stability", "{:.2f}"),
]


def load_returns() -> tuple[pd.DataFrame, pd.Series]:
    """(1258, 472) daily simple returns: 470 stocks, SPY and the S&P 500 index; and SPY."""
    closes = load_closes()
    spy = load_prices(data_dir() / "daily-prices" / "spy_prices_1993_2019.csv.gz", ["SPY"])
    index = pd.read_csv(
        data_dir() / "index-sp500-daily" / "sp500_close_1990_2022.csv.gz",
        index_col="Date",
        parse_dates=True,
    ).rename(columns={"SP500": "^GSPC"})
    prices = closes.join(spy, how="left").join(index, how="left")
    returns = (prices / prices.shift(1) - 1.0).iloc[1:]
    return returns, returns["SPY"]


def _cell(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def ranking_table(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("series")
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    for name, row in frame.iterrows():
        table.add_row(str(name), *(_cell(row[col], fmt) for col, _, fmt in COLUMNS))
    return table


def run(target: str, plot: Path | None) -> None:
    """The demo against the server at ``target``."""
    returns, spy = load_returns()
    stocks = [c for c in returns.columns if c not in ("SPY", "^GSPC")]
    console.print(
        f"[bold]{len(stocks)} S&P 500 stocks[/bold], {returns.index[0]:%Y-%m-%d} .. "
        f"{returns.index[-1]:%Y-%m-%d} ({len(returns)} daily returns), benchmark SPY"
    )
    with Client(target, timeout=120.0) as tw:
        t0 = time.perf_counter()
        report: PerformanceReport = tw.analytics.performance_statistics(
            returns, periods_per_year=252, benchmark=spy, confidence_levels=[0.95, 0.99]
        )
        rpc_ms = (time.perf_counter() - t0) * 1e3
        ex = report.execution
        console.print(
            f"ComputePerformanceStatistics: {returns.shape[1]} series x {returns.shape[0]} days in "
            f"one call, {rpc_ms:.0f} ms round trip, {ex.compute_ms:.1f} ms compute on "
            f"{ex.backend_used} (trace {ex.trace_id or '-'})"
        )
        stats = report.to_frame()
        console.print(ranking_table("Benchmarks", stats.loc[["SPY", "^GSPC"]]))

        cross = stats.loc[stocks]
        spy_sharpe = stats.loc["SPY", "sharpe_ratio"]
        medians = Table(title="Cross-section of the 470 stocks", title_justify="left")
        for header in ("statistic", "median", "10%", "90%"):
            medians.add_column(header, justify="right" if header != "statistic" else "left")
        for col, header, fmt in COLUMNS:
            if col.startswith("drawdown_"):
                continue
            q = cross[col].astype(float).quantile([0.5, 0.1, 0.9])
            medians.add_row(header, *(_cell(v, fmt) for v in q))
        console.print(medians)
        console.print(
            f"{(cross.sharpe_ratio > spy_sharpe).mean():.0%} of the stocks beat SPY's Sharpe "
            f"ratio of {spy_sharpe:.2f}; median beta {cross.beta.median():.2f}; "
            f"{(cross.drawdown_recovery.isna()).mean():.0%} had not recovered from their "
            "maximum drawdown by 2018-02-07."
        )
        ranked = cross.sort_values("sharpe_ratio", ascending=False)
        console.print(ranking_table("Top 10 by Sharpe ratio", ranked.head(10)))
        console.print(ranking_table("Bottom 10 by Sharpe ratio", ranked.tail(10)))

        names = [*ranked.index[:3], *ranked.index[-3:], "SPY"]
        dd = tw.analytics.drawdowns(returns[names])
        rolling = tw.analytics.rolling_statistics(returns[names], window=126, benchmark=spy)
        console.print(
            f"ComputeDrawdowns and ComputeRollingStatistics (126-day window) for {len(names)} "
            f"series: {dd.execution.compute_ms:.2f} ms and {rolling.execution.compute_ms:.2f} ms "
            "compute"
        )
        if plot is not None:
            _plot(dd.frame(), rolling.frame("beta"), plot)
            console.print(f"wrote {plot}")


def _plot(drawdown: pd.DataFrame, beta: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    for name in drawdown.columns:
        style = {"color": "black", "lw": 2.0} if name == "SPY" else {"lw": 1.0}
        top.plot(drawdown.index, drawdown[name] * 100, label=name, **style)
        if name != "SPY":
            bottom.plot(beta.index, beta[name], label=name, lw=1.0)
    top.set(ylabel="drawdown (%)", title="Drawdowns: best and worst three by Sharpe ratio, and SPY")
    top.legend(fontsize=8, ncol=4)
    top.grid(alpha=0.3)
    bottom.axhline(1.0, color="black", lw=0.8)
    bottom.set(ylabel="beta to SPY", title="Rolling 126-day beta")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    """Parse flags, start a server unless ``--target`` is given, run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="host:port of a running server (default: start one)")
    parser.add_argument(
        "--plot", default="out/sp500_drawdowns.png", help="PNG path for the drawdown plot"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = parser.parse_args()
    plot = None if args.no_plot else Path(args.plot)
    if args.target:
        run(args.target, plot)
    else:
        with local_server() as target:
            run(target, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
