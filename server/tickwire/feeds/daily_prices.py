"""Daily price files (CSV, optionally gzipped) and the returns built from them.

The project's ``data/`` folder holds real data with its provenance; see
``data/*/PROVENANCE.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

#: Repository root when running from a checkout (``server/tickwire/feeds`` -> root).
_REPO_ROOT = Path(__file__).resolve().parents[3]


def data_dir() -> Path:
    """The data folder: ``TICKWIRE_DATA_DIR``, else ``data/`` of the checkout.

    Raises
    ------
    FileNotFoundError
        Neither exists.
    """
    path = Path(os.environ.get("TICKWIRE_DATA_DIR") or _REPO_ROOT / "data")
    if not path.is_dir():
        raise FileNotFoundError(f"data folder {path} not found; set TICKWIRE_DATA_DIR")
    return path


def load_prices(
    path: str | Path,
    tickers: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """Daily prices, one column per ticker, indexed by date.

    Parameters
    ----------
    path : file with a ``date`` column and one column per ticker (``.csv`` or ``.csv.gz``)
    tickers : columns to keep, in this order (default: all)
    start, end : inclusive ISO dates bounding the rows

    Returns
    -------
    (D, K) DataFrame of float64 prices in the file's currency; rows before a
    ticker was listed are NaN.

    Raises
    ------
    KeyError
        A requested ticker is not in the file.
    """
    prices = pd.read_csv(path, parse_dates=["date"], index_col="date").sort_index()
    if tickers is not None:
        missing = [t for t in tickers if t not in prices.columns]
        if missing:
            raise KeyError(f"tickers not in {path}: {missing}")
        prices = prices[tickers]
    return prices.loc[start:end].astype(np.float64)


def simple_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Simple returns ``p_t / p_{t-1} - 1`` on the dates where every column has a price.

    Returns
    -------
    (D', K) DataFrame; the first complete date and every date with a missing
    price (in either of the two closes) are dropped.
    """
    complete = prices.dropna(how="any")
    return (complete / complete.shift(1) - 1.0).iloc[1:]
