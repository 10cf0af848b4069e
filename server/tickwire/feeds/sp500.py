"""The S&P 500 universe of the project's ``data/`` folder: five years of daily
OHLCV for 505 stocks (2013-02-08 .. 2018-02-07) and a constituents snapshot
with GICS sectors and fundamentals (2017-03-08).

Both are single snapshots, not point-in-time data: the price file holds the
membership of February 2018 applied backwards (survivorship bias), and the
fundamentals are one day's values. See ``data/sp500-stocks-5yr-2013-2018/PROVENANCE.md``
and ``data/sp500-constituents-2017-03/PROVENANCE.md``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from tickwire.feeds.daily_prices import data_dir

PRICES_FILE = "sp500-stocks-5yr-2013-2018/all_stocks_5yr.csv.gz"
CONSTITUENTS_FILE = "sp500-constituents-2017-03/constituents-financials.csv.gz"

#: Constituents columns, renamed to snake_case with units in the name.
_CONSTITUENT_COLUMNS = {
    "Name": "name",
    "Sector": "sector",
    "Price": "price",
    "Dividend Yield": "dividend_yield_pct",
    "Price/Earnings": "price_to_earnings",
    "Earnings/Share": "earnings_per_share",
    "Book Value": "book_value_per_share",
    "Market Cap": "market_cap_usd_bn",
    "EBITDA": "ebitda_usd_bn",
    "Price/Sales": "price_to_sales",
    "Price/Book": "price_to_book",
}


@lru_cache(maxsize=1)
def load_ohlcv() -> pd.DataFrame:
    """Daily OHLCV of every stock, long format.

    Returns
    -------
    DataFrame with columns ``date`` (datetime64, New York trading day),
    ``open``, ``high``, ``low``, ``close`` (US dollars per share, split-adjusted,
    not dividend-adjusted), ``volume`` (shares) and ``symbol``; 619,040 rows.
    A cached object: copy it before changing it.
    """
    frame = pd.read_csv(data_dir() / PRICES_FILE, parse_dates=["date"])
    return frame.rename(columns={"Name": "symbol"})


def load_closes(complete: bool = True, field: str = "close") -> pd.DataFrame:
    """One price field as a (D, K) matrix: dates x symbols.

    Parameters
    ----------
    complete : keep only the symbols priced on every date (470 of 505), so
        the matrix has no NaN; False keeps all 505 with NaN before a listing.
    field : ``"close"`` (default), ``"open"``, ``"high"``, ``"low"`` or ``"volume"``.

    Returns
    -------
    (1259, 470) float64 DataFrame indexed by date, columns sorted by symbol.

    Raises
    ------
    KeyError
        ``field`` is not a column of the file.
    """
    wide = load_ohlcv().pivot(index="date", columns="symbol", values=field).sort_index()
    wide = wide.reindex(sorted(wide.columns), axis=1).astype(np.float64)
    if complete:
        wide = wide.loc[:, wide.notna().all()]
    return wide


@lru_cache(maxsize=1)
def load_constituents() -> pd.DataFrame:
    """The constituents snapshot of 2017-03-08, indexed by symbol.

    Returns
    -------
    DataFrame of 505 rows with ``name``, ``sector`` (GICS sector, 11 values),
    ``price`` (US dollars), ``market_cap_usd_bn`` (US dollars, billions),
    ``price_to_book``, ``price_to_earnings``, ``price_to_sales``,
    ``dividend_yield_pct`` (percent), ``earnings_per_share``,
    ``book_value_per_share``, ``ebitda_usd_bn``, and ``shares_outstanding``
    approximated as market cap / price on the snapshot date (the file has no
    share count). Missing fundamentals are NaN. A cached object: copy it
    before changing it.
    """
    frame = pd.read_csv(data_dir() / CONSTITUENTS_FILE, index_col="Symbol")
    frame = frame.rename(columns=_CONSTITUENT_COLUMNS)[list(_CONSTITUENT_COLUMNS.values())]
    frame.index.name = "symbol"
    frame["shares_outstanding"] = frame["market_cap_usd_bn"] * 1e9 / frame["price"]
    return frame
