"""Trade-print CSV days: time, price and size of every print, without sides.

A day is one file ``data/trades-<name>/<SYM>_<YYYY-MM-DD>_trades.csv[.gz]``
with a header row ``Time,Price,Volume``:

- ``Time``: New York local timestamp with up to 9 decimals
  (``2012-06-21 09:30:00.017460000``), converted exactly to ns since the Unix
  epoch, UTC;
- ``Price``: US dollars x 10,000 (LOBSTER's scale);
- ``Volume``: shares.

The aggressor side is unknown (``aggressor_side`` is all zeros); the session
window is the regular NASDAQ session, 09:30 to 16:00 New York time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from tickwire.feeds.daily_prices import data_dir
from tickwire.feeds.lobster import PRICE_SCALE, Trades

#: Regular session, seconds after midnight New York time: [09:30, 16:00).
SESSION_START_S, SESSION_END_S = 34_200, 57_600

_FILE_RE = re.compile(r"(?P<symbol>[A-Z.]+)_(?P<date>\d{4}-\d{2}-\d{2})_trades\.csv(\.gz)?$")


@dataclass(frozen=True)
class TradePrintsDay:
    """One symbol's day of trade prints.

    Attributes
    ----------
    dataset : the data folder's name, e.g. ``"trades-amzn-2012-06-21"``
    symbol : ``"AMZN"``
    session_date : the trading day (New York)
    path : the CSV file (``.csv`` or ``.csv.gz``)
    """

    dataset: str
    symbol: str
    session_date: date
    path: Path

    @property
    def midnight_ns(self) -> int:
        """Midnight of the session date in New York, ns since the Unix epoch (UTC)."""
        return int(pd.Timestamp(self.session_date, tz="America/New_York").value)

    @property
    def start_ns(self) -> int:
        """Session open (09:30 New York), ns since the Unix epoch (UTC)."""
        return self.midnight_ns + SESSION_START_S * 1_000_000_000

    @property
    def end_ns(self) -> int:
        """Session close (16:00 New York, exclusive), ns since the Unix epoch (UTC)."""
        return self.midnight_ns + SESSION_END_S * 1_000_000_000


def find_days(root: Path | None = None) -> list[TradePrintsDay]:
    """Every trade-print day under ``root`` (default: the project's data
    folder), from the ``trades-*`` folders, sorted by dataset."""
    root = data_dir() if root is None else root
    days = []
    for path in sorted(root.glob("trades-*/*_trades.csv*")):
        m = _FILE_RE.match(path.name)
        if m is None:
            continue
        days.append(
            TradePrintsDay(
                dataset=path.parent.name,
                symbol=m["symbol"],
                session_date=date.fromisoformat(m["date"]),
                path=path,
            )
        )
    return days


def load_trades(day: TradePrintsDay) -> Trades:
    """The day's prints in file order, ``aggressor_side`` all 0 (unknown).

    Raises
    ------
    ValueError
        The timestamps are not in time order or fall outside the session.
    """
    raw = pd.read_csv(day.path, dtype={"Time": str, "Price": np.int64, "Volume": np.int64})
    local = pd.to_datetime(raw["Time"], format="%Y-%m-%d %H:%M:%S.%f")
    ts_ns = local.dt.tz_localize("America/New_York").dt.tz_convert("UTC").astype("int64")
    ts = ts_ns.to_numpy(np.int64)
    if len(ts) > 1 and np.any(np.diff(ts) < 0):
        raise ValueError(f"{day.path}: timestamps are not in time order")
    if len(ts) and (ts[0] < day.start_ns or ts[-1] >= day.end_ns):
        raise ValueError(f"{day.path}: prints outside the regular session")
    return Trades(
        symbol=day.symbol,
        ts_ns=ts,
        price=raw["Price"].to_numpy(np.float64) / PRICE_SCALE,
        size=raw["Volume"].to_numpy(np.float64),
        aggressor_side=np.zeros(len(ts), dtype=np.int8),
    )
