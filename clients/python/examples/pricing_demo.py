"""Tickwire pricing demo: the SPX option chain of 2022-02-04 through the gRPC API.

1. Loads the Cboe SPX chain after the close of Friday 2022-02-04
   (``data/options-spx-2022-02-04``; SPX 4500.53).
2. Per expiry, fits put-call parity to the bid/ask mids for the forward and
   the discount factor, hence the rate and dividend yield.
3. Sends every out-of-the-money option (puts below the forward, calls above)
   in one ComputeImpliedVolatility call, reports the quotes whose mid breaks
   the no-arbitrage bounds, and plots the volatility smile per expiry and the
   at-the-money term structure (PNG).
4. Prices a million European options in one PriceEuropean call, and one
   3-month at-the-money contract by Monte Carlo (European, arithmetic Asian,
   barrier) and as an American put (Leisen-Reimer, Longstaff-Schwartz).

Usage::

    python clients/python/examples/pricing_demo.py [--target host:port] [--plot out/spx.png]
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
from tickwire.engines.option_chain import carry_rates, parity_fit
from tickwire.feeds.daily_prices import data_dir
from tickwire.feeds.option_chain import load_cboe_chain
from tickwire_client import Client

console = Console(width=None if sys.stdout.isatty() else 150)


def chain_with_carry(spot: float, chain: pd.DataFrame) -> pd.DataFrame:
    """Two-sided quotes, each expiry's parity forward, rate and dividend yield."""
    two_sided = (
        (chain.call_bid > 0) & (chain.call_ask > chain.call_bid)
        & (chain.put_bid > 0) & (chain.put_ask > chain.put_bid)
    )  # fmt: skip
    rows = []
    for _, g in chain[two_sided].groupby(["root", "expiry"]):
        t = float(g.time_to_expiry.iloc[0])
        call_mid = ((g.call_bid + g.call_ask) / 2).to_numpy()
        put_mid = ((g.put_bid + g.put_ask) / 2).to_numpy()
        fit = parity_fit(g.strike.to_numpy(), call_mid, put_mid, spot)
        if fit.num_strikes < 8 or fit.rmse > 2.0:
            continue  # long-dated expiries quoted 190 points wide: no usable forward
        rate, dividend = carry_rates(fit, spot, t)
        out = g.assign(forward=fit.forward, discount=fit.discount, rate=rate, dividend_yield=dividend,
                       call_mid=call_mid, put_mid=put_mid, parity_rmse=fit.rmse)  # fmt: skip
        rows.append(out)
    return pd.concat(rows, ignore_index=True)


def out_of_the_money(quotes: pd.DataFrame) -> pd.DataFrame:
    """One option per strike: the put below the forward, the call at or above it."""
    is_call = quotes.strike >= quotes.forward
    return quotes.assign(
        option_type=np.where(is_call, "call", "put"),
        mid=np.where(is_call, quotes.call_mid, quotes.put_mid),
        log_moneyness=np.log(quotes.strike / quotes.forward),
    )


def run(target: str, plot_path: Path) -> None:
    """Every demo call against the server at ``target``; tables to the terminal, plot to PNG."""
    spot, chain = load_cboe_chain(
        data_dir() / "options-spx-2022-02-04" / "spx_quotedata_2022-02-04.csv.gz"
    )
    quotes = out_of_the_money(chain_with_carry(spot, chain))
    console.print(f"SPX {spot:.2f} on 2022-02-04; {len(chain):,} strike rows, {chain.expiry.nunique()} expiries; "
                  f"{len(quotes):,} out-of-the-money options with two-sided quotes on "
                  f"{quotes.groupby(['root', 'expiry']).ngroups} expiries with a parity forward")  # fmt: skip

    with Client(target, timeout=120.0) as tw:
        t0 = time.perf_counter()
        iv = tw.pricing.implied_volatility(
            quotes.option_type.to_numpy(), spot, quotes.strike.to_numpy(),
            quotes.time_to_expiry.to_numpy(), quotes.mid.to_numpy(),
            rate=quotes.rate.to_numpy(), dividend_yield=quotes.dividend_yield.to_numpy(),
        )  # fmt: skip
        rtt = (time.perf_counter() - t0) * 1e3
        quotes = quotes.assign(iv=iv.implied_volatility, status=iv.status_names)
        console.print(f"ComputeImpliedVolatility: {len(quotes):,} options, backend "
                      f"{iv.execution.backend_used}, compute {iv.execution.compute_ms:.1f} ms, "
                      f"round trip {rtt:.1f} ms, trace {iv.execution.trace_id}")  # fmt: skip

        status = Table(title="Implied volatility status of the mids (no-arbitrage bounds)")
        status.add_column("status")
        status.add_column("options", justify="right")
        status.add_column("examples (root expiry type strike mid)")
        for name, g in quotes.groupby("status"):
            ex = "; ".join(f"{r.root} {r.expiry:%Y-%m-%d} {r.option_type} {r.strike:g} {r.mid:g}"
                           for r in g.head(3).itertuples())  # fmt: skip
            status.add_row(name, f"{len(g):,}", ex if name != "OK" else "")
        console.print(status)

        term = Table(title="At-the-money implied volatility and carry by expiry (parity fit)")
        for col in ("root", "expiry", "T (years)", "forward", "rate", "dividend yield", "ATM IV",
                    "parity rmse"):  # fmt: skip
            term.add_column(col, justify="left" if col in ("root", "expiry") else "right")
        ok = quotes[quotes.status == "OK"]
        atm = ok.loc[ok.groupby(["root", "expiry"]).log_moneyness.apply(lambda s: s.abs().idxmin())]
        for r in atm.itertuples():
            term.add_row(r.root, f"{r.expiry:%Y-%m-%d}", f"{r.time_to_expiry:.3f}", f"{r.forward:,.2f}",
                         f"{r.rate:.3%}", f"{r.dividend_yield:.3%}", f"{r.iv:.2%}",
                         f"{r.parity_rmse:.2f}")  # fmt: skip
        console.print(term)
        _plot(ok, atm, spot, plot_path)
        console.print(f"Smile and term structure written to {plot_path}")

        # A million European options in one call.
        rng = np.random.default_rng(7)
        n = 1_000_000
        strikes = spot * rng.uniform(0.6, 1.4, n)
        t0 = time.perf_counter()
        eu = tw.pricing.price_european(np.where(rng.random(n) < 0.5, 1, 2), spot, strikes,
                                       rng.uniform(0.02, 2.0, n), rng.uniform(0.1, 0.4, n),
                                       rate=0.01, dividend_yield=0.014)  # fmt: skip
        rtt = (time.perf_counter() - t0) * 1e3
        console.print(f"PriceEuropean: {n:,} contracts with Greeks, backend {eu.execution.backend_used}, "
                      f"compute {eu.execution.compute_ms:.1f} ms, round trip {rtt:.1f} ms")  # fmt: skip

        # One 3-month at-the-money contract, several ways.
        k, t, vol, r, q = 4500.0, 0.25, 0.2, 0.01, 0.014
        table = Table(
            title=f"SPX {spot:.2f}, strike {k:g}, 3 months, vol {vol:.0%}, r {r:.1%}, q {q:.1%}"
        )
        for col in (
            "instrument",
            "method",
            "price",
            "std error",
            "backend",
            "compute ms",
            "trace id",
        ):
            table.add_column(
                col, justify="right" if col in ("price", "std error", "compute ms") else "left"
            )
        bs = tw.pricing.price_european(["call", "put"], spot, k, t, vol, rate=r, dividend_yield=q)
        for i, kind in enumerate(("call", "put")):
            table.add_row(f"European {kind}", "Black-Scholes-Merton", f"{bs.price[i]:.4f}", "",
                          bs.execution.backend_used, f"{bs.execution.compute_ms:.2f}", bs.execution.trace_id)  # fmt: skip
        mc_runs = [
            ("European call", dict(payoff="european", num_paths=1_000_000, antithetic=True)),
            ("Asian call (arithmetic, daily)", dict(payoff="asian_arithmetic", num_paths=200_000,
                                                    num_steps=63, control_variate=True)),
            ("Up-and-out call, barrier 4950", dict(payoff="barrier", num_paths=200_000, num_steps=63,
                                                   barrier_type="up_and_out", barrier=4950.0,
                                                   monitoring="continuous")),
        ]  # fmt: skip
        for name, kwargs in mc_runs:
            mc = tw.pricing.monte_carlo(
                "call", spot, k, t, vol, rate=r, dividend_yield=q, seed=42, **kwargs
            )
            table.add_row(name, f"Monte Carlo, {mc.num_paths:,} paths", f"{mc.price[0]:.4f}",
                          f"{mc.standard_error[0]:.4f}", mc.execution.backend_used,
                          f"{mc.execution.compute_ms:.1f}", mc.execution.trace_id)  # fmt: skip
        for method, kwargs in (("binomial_leisen_reimer", dict(num_steps=501)),
                               ("longstaff_schwartz", dict(num_steps=50, num_paths=100_000, seed=42))):  # fmt: skip
            am = tw.pricing.american(
                "put", spot, k, t, vol, rate=r, dividend_yield=q, method=method, **kwargs
            )
            se = f"{am.standard_error[0]:.4f}" if am.standard_error[0] else ""
            table.add_row("American put", method.replace("_", " "), f"{am.price[0]:.4f}", se,
                          am.execution.backend_used, f"{am.execution.compute_ms:.1f}", am.execution.trace_id)  # fmt: skip
        console.print(table)


def _plot(ok: pd.DataFrame, atm: pd.DataFrame, spot: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    expiries = sorted(ok[ok.root == "SPX"].expiry.unique())
    for expiry in expiries[:: max(len(expiries) // 6, 1)][:6]:
        g = ok[(ok.root == "SPX") & (ok.expiry == expiry) & (ok.log_moneyness.abs() < 0.4)]
        left.plot(g.log_moneyness, g.iv * 100, ".-", ms=3, lw=0.8,
                  label=f"{pd.Timestamp(expiry):%Y-%m-%d} (T={g.time_to_expiry.iloc[0]:.2f})")  # fmt: skip
    left.set(xlabel="log-moneyness ln(K / F)", ylabel="implied volatility (%)",
             title="SPX volatility smile, 2022-02-04 close (OTM mids)")  # fmt: skip
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    for root, marker in (("SPXW", "o"), ("SPX", "s")):
        g = atm[atm.root == root].sort_values("time_to_expiry")
        right.plot(g.time_to_expiry, g.iv * 100, marker + "-", ms=4, label=f"{root} (ATM)")
    right.set(xscale="log", xlabel="time to expiry (years, log scale)", ylabel="ATM implied volatility (%)",
              title=f"ATM term structure (SPX {spot:.2f})")  # fmt: skip
    right.legend()
    right.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    """Parse flags, start a server unless ``--target`` is given, run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="host:port of a running server (default: start one)")
    parser.add_argument(
        "--plot", default="out/spx_smile_2022-02-04.png", help="PNG path for the plot"
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
