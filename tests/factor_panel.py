"""The S&P 500 panel of the factor tests and of toraniko's reference inputs.

The constituents are one snapshot (2017-03-08), not point-in-time data:
market cap per date is shares outstanding (cap / price on the snapshot day)
times the previous close, and per-share book value, sales and earnings are
held fixed (see ``tickwire.feeds.sp500``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from tickwire.feeds import sp500


@dataclass(frozen=True)
class Panel:
    """(T+1, N) closes and per-asset data of the S&P universe (448 stocks)."""

    dates: pd.DatetimeIndex
    symbols: list[str]
    closes: np.ndarray
    shares: np.ndarray
    sector_names: list[str]
    sectors: np.ndarray
    book_per_share: np.ndarray
    sales_per_share: np.ndarray
    earnings_per_share: np.ndarray

    def returns(self) -> np.ndarray:
        """(T, N) simple returns of dates 1..T."""
        return self.closes[1:] / self.closes[:-1] - 1.0

    def market_caps(self) -> np.ndarray:
        """(T, N) shares x previous close (no look-ahead)."""
        return self.closes[:-1] * self.shares

    def ratios(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T, N) book/price, sales/price, earnings/price at the previous close."""
        prev = self.closes[:-1]
        return (
            self.book_per_share / prev,
            self.sales_per_share / prev,
            self.earnings_per_share / prev,
        )


@lru_cache(maxsize=1)
def sp500_panel() -> Panel:
    """The 448 stocks priced on every date that have a market cap in the snapshot."""
    closes = sp500.load_closes()
    cons = sp500.load_constituents()
    symbols = [
        s
        for s in closes.columns
        if s in cons.index and np.isfinite(cons.loc[s, "shares_outstanding"])
    ]
    c = cons.loc[symbols]
    names = sorted(c["sector"].unique())
    return Panel(
        dates=closes.index,
        symbols=symbols,
        closes=closes[symbols].to_numpy(),
        shares=c["shares_outstanding"].to_numpy(),
        sector_names=names,
        sectors=np.array([names.index(s) for s in c["sector"]]),
        book_per_share=(c["price"] / c["price_to_book"]).to_numpy(),
        sales_per_share=(c["price"] / c["price_to_sales"]).to_numpy(),
        earnings_per_share=(c["price"] / c["price_to_earnings"]).to_numpy(),
    )
