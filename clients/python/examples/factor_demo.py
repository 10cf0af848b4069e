"""Tickwire factor demo: a market + sector + style risk model of the S&P 500, through the gRPC API.

Loads five years of daily closes of the 448 S&P 500 stocks that have a close on
every day and a market cap in the constituents snapshot (``data/``), asks the
Factor service for the whole model in one call (momentum, size and value
scores, market + 11 GICS sectors + 3 styles regressed on every one of 987 days,
exponentially weighted factor covariance and specific variances), and prints:

- each factor's annualised volatility and cumulative return;
- a sample portfolio's risk split into factor and specific parts and by factor;
- the same portfolio's Fama-French three-factor regression on monthly returns.

It writes a PNG of the cumulative factor returns (``out/`` by default).

The constituents are ONE snapshot (2017-03-08), not point-in-time data: market
cap per date is shares outstanding (cap / price on the snapshot day) times the
previous close, and book value, sales and earnings per share are held fixed.

Usage::

    python clients/python/examples/factor_demo.py                    # starts a server, then stops it
    python clients/python/examples/factor_demo.py --target host:port # uses a running server
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
from tickwire.feeds import sp500
from tickwire_client import Client

#: The sample portfolio: ten large caps, equal weight.
PORTFOLIO = ["AAPL", "MSFT", "AMZN", "GOOGL", "JPM", "XOM", "JNJ", "PG", "NVDA", "BA"]

console = Console(width=None if sys.stdout.isatty() else 150)


def universe() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Closes (dates x symbols) and the snapshot rows of the stocks with a market cap."""
    closes = sp500.load_closes()
    cons = sp500.load_constituents()
    symbols = [s for s in closes.columns if s in cons.index]
    symbols = [s for s in symbols if np.isfinite(cons.loc[s, "shares_outstanding"])]
    return closes[symbols], cons.loc[symbols]


def run(target: str, plot: Path) -> None:
    """Estimate the model on the server at ``target``, print the tables, write the plot."""
    closes, cons = universe()
    n = closes.shape[1]
    weights = np.zeros(n)
    weights[[closes.columns.get_loc(s) for s in PORTFOLIO]] = 1.0 / len(PORTFOLIO)
    console.print(
        f"Universe: {n} S&P 500 stocks, {len(closes)} daily closes "
        f"{closes.index[0]:%Y-%m-%d} .. {closes.index[-1]:%Y-%m-%d}; fundamentals and shares "
        "from the 2017-03-08 constituents snapshot (not point in time)"
    )
    with Client(target, timeout=300.0) as tw:
        t0 = time.perf_counter()
        model = tw.factor.estimate_risk_model(
            closes.to_numpy(),
            cons["shares_outstanding"].to_numpy(),
            cons["sector"].to_numpy(),
            book_value_per_share=(cons["price"] / cons["price_to_book"]).to_numpy(),
            sales_per_share=(cons["price"] / cons["price_to_sales"]).to_numpy(),
            earnings_per_share=(cons["price"] / cons["price_to_earnings"]).to_numpy(),
            momentum_trailing_days=252,
            momentum_half_life_days=126,
            momentum_lag_days=20,
            covariance_half_life_days=126,
            specific_half_life_days=63,
            portfolio_weights=weights,
        )
        wall = time.perf_counter() - t0
        ex = model.execution
        dates = closes.index[1 + model.first_date_index :]
        console.print(
            f"EstimateRiskModel: {model.factor_returns.shape[0]} dates x {n} stocks x "
            f"{len(model.factor_names)} factors in {wall * 1e3:.0f} ms round trip "
            f"({ex.compute_ms:.0f} ms compute on {ex.backend_used}; trace {ex.trace_id or '-'})"
        )
        factor_table(model, dates)
        risk_table(model)
        fama_french(tw, closes, weights)
    plot_cumulative(model, dates, plot)
    console.print(f"wrote {plot}")


def factor_table(model, dates: pd.DatetimeIndex) -> None:
    """Annualised volatility (EW covariance) and cumulative return of each factor."""
    vol = np.sqrt(np.diag(model.factor_covariance) * 252.0)
    cum = np.prod(1.0 + model.factor_returns, axis=0) - 1.0
    realised = model.factor_returns.std(axis=0, ddof=1) * np.sqrt(252.0)
    t = Table(title=f"Factor returns {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d}")
    for col in ("factor", "annualised vol (EW, hl 126 d)", "realised vol", "cumulative return"):
        t.add_column(col, justify="right" if col != "factor" else "left")
    for name, v, r, c in zip(model.factor_names, vol, realised, cum, strict=True):
        t.add_row(name, f"{v:.2%}", f"{r:.2%}", f"{c:+.2%}")
    console.print(t)


def risk_table(model) -> None:
    """The sample portfolio's risk: factor vs specific, and each factor's share."""
    r = model.portfolio
    total = float(r.total_variance[0])
    vol = float(r.total_volatility[0])
    console.print(
        f"Portfolio {', '.join(PORTFOLIO)} (equal weight): annualised volatility {vol:.2%}; "
        f"factor {r.factor_variance[0] / total:.1%} of variance, "
        f"specific {r.specific_variance[0] / total:.1%}"
    )
    t = Table(title="Risk decomposition (Euler: contributions add up to the total)")
    for col in (
        "source",
        "exposure",
        "variance contribution",
        "share of variance",
        "volatility contribution",
    ):
        t.add_column(col, justify="left" if col == "source" else "right")
    contrib = r.factor_contributions[0]
    order = np.argsort(-np.abs(contrib))
    for k in order:
        if abs(contrib[k]) < 1e-6 * total:
            continue
        t.add_row(
            model.factor_names[k],
            f"{r.exposures[0, k]:+.3f}",
            f"{contrib[k]:.6f}",
            f"{contrib[k] / total:+.1%}",
            f"{contrib[k] / vol:+.2%}",
        )
    spec = float(r.specific_variance[0])
    t.add_row("specific", "", f"{spec:.6f}", f"{spec / total:+.1%}", f"{spec / vol:+.2%}")
    t.add_row("total", "", f"{total:.6f}", "100.0%", f"{vol:.2%}", style="bold")
    console.print(t)


def fama_french(tw: Client, closes: pd.DataFrame, weights: np.ndarray) -> None:
    """Fama-French three-factor regression of the portfolio's monthly returns."""
    month_end = closes.groupby(closes.index.to_period("M")).last()
    monthly = (month_end.pct_change().iloc[1:] @ weights).loc[:"2018-01"]
    months = [int(p.strftime("%Y%m")) for p in monthly.index]
    ff = tw.factor.regress_fama_french(monthly.to_numpy(), months)
    t = Table(
        title=f"Fama-French 3 factors, {months[0]} .. {months[-1]} ({ff.num_observations} "
        f"months): R^2 {ff.r_squared[0]:.3f}, adjusted {ff.adjusted_r_squared[0]:.3f}"
    )
    for col in ("coefficient", "estimate", "std error", "t-stat", "p-value"):
        t.add_column(col, justify="left" if col == "coefficient" else "right")
    for j, name in enumerate(ff.coefficient_names):
        est = ff.coefficients[0, j]
        label = f"{est:+.4f}" + (" /month" if name == "alpha" else "")
        t.add_row(
            name,
            label,
            f"{ff.standard_errors[0, j]:.4f}",
            f"{ff.t_statistics[0, j]:+.2f}",
            f"{ff.p_values[0, j]:.3f}",
        )
    console.print(t)


def plot_cumulative(model, dates: pd.DatetimeIndex, path: Path) -> None:
    """Cumulative factor returns: market and styles on the left, sectors on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cum = np.cumprod(1.0 + model.factor_returns, axis=0) - 1.0
    names = model.factor_names
    styles = [i for i, nm in enumerate(names) if nm in ("market", "momentum", "size", "value")]
    sectors = [i for i in range(len(names)) if i not in styles]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    for i in styles:
        left.plot(dates, cum[:, i] * 100, label=names[i])
    left.set(title="Market and style factors", ylabel="cumulative return (%)")
    colours = plt.cm.tab20.colors
    for j, i in enumerate(sectors):
        right.plot(dates, cum[:, i] * 100, label=names[i], lw=1, color=colours[j % 20])
    right.set(title="Sector factors (sum to zero each day)", ylabel="cumulative return (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("S&P 500 factor model (toraniko-style), daily factor returns compounded")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    """Parse flags, start a server unless ``--target`` is given, run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="host:port of a running server (default: start one)")
    parser.add_argument("--plot", default="out/factor_returns_sp500.png", help="PNG path")
    args = parser.parse_args()
    if args.target:
        run(args.target, Path(args.plot))
    else:
        with local_server() as target:
            run(target, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
