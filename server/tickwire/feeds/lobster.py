"""LOBSTER NASDAQ message and order-book files: trades with their true
aggressor side, and top-of-book quotes.

LOBSTER (lobsterdata.com) reconstructs the NASDAQ TotalView-ITCH book. A
sample day is a pair of CSV files without header rows:

- ``<SYM>_<date>_<start>_<end>_message_<levels>.csv``: time (seconds after
  midnight, New York local time, up to 9 decimals), event type (1 new limit
  order, 2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution,
  7 halt), order id, size (shares), price (US dollars x 10,000), direction
  (-1 sell limit order, +1 buy limit order).
- ``..._orderbook_<levels>.csv``: the book after each message, per level ask
  price, ask size, bid price, bid size (prices x 10,000; +-9999999999 with
  size 0 marks an empty side).

For an execution (types 4 and 5) the direction is the side of the RESTING
order, so the aggressor side is minus the direction: direction -1 (a resting
sell order was hit) is a buyer-initiated trade. Hidden executions (type 5)
are trades as well and are kept; they often print at sub-penny midpoints.

Times are converted exactly (from the decimal text, no float rounding) to ns
since the Unix epoch, UTC, using the session date in America/New_York.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from tickwire.feeds.daily_prices import data_dir

#: LOBSTER prices are US dollars x this factor.
PRICE_SCALE = 10_000.0
#: Event types that are executions (visible, hidden).
EXECUTION_TYPES = (4, 5)
#: Prices LOBSTER uses to mark an empty book side.
EMPTY_SIDE_PRICE = 9_999_999_999

_MESSAGE_RE = re.compile(
    r"(?P<symbol>[A-Z.]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_message_(?P<levels>\d+)\.csv(\.gz)?$"
)


@dataclass(frozen=True)
class LobsterDay:
    """One symbol's LOBSTER trading day: a message file and its order-book file.

    Attributes
    ----------
    dataset : the data folder's name, e.g. ``"lobster-aapl-2012-06-21-l1"``
    symbol : ``"AAPL"``
    session_date : the trading day (New York)
    levels : book levels in the order-book file
    start_s, end_s : the file's time window, seconds after midnight New York
    message_path, orderbook_path : the two files (``.csv`` or ``.csv.gz``)
    """

    dataset: str
    symbol: str
    session_date: date
    levels: int
    start_s: float
    end_s: float
    message_path: Path
    orderbook_path: Path

    @property
    def midnight_ns(self) -> int:
        """Midnight of the session date in New York, ns since the Unix epoch (UTC)."""
        return int(pd.Timestamp(self.session_date, tz="America/New_York").value)


@dataclass(frozen=True)
class Trades:
    """Trade prints of one symbol, columnar, in time order.

    Attributes
    ----------
    symbol : str
    ts_ns : (N,) int64, ns since the Unix epoch (UTC)
    price : (N,) float64, US dollars
    size : (N,) float64, shares
    aggressor_side : (N,) int8, +1 buyer-initiated, -1 seller-initiated
    """

    symbol: str
    ts_ns: np.ndarray
    price: np.ndarray
    size: np.ndarray
    aggressor_side: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ns)


@dataclass(frozen=True)
class Quotes:
    """Top of book after each LOBSTER event, columnar, in time order.

    Attributes
    ----------
    symbol : str
    ts_ns : (N,) int64, ns since the Unix epoch (UTC)
    bid_price, ask_price : (N,) float64, US dollars; NaN for an empty side
    bid_size, ask_size : (N,) float64, shares
    """

    symbol: str
    ts_ns: np.ndarray
    bid_price: np.ndarray
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ns)


def find_days(root: Path | None = None) -> list[LobsterDay]:
    """Every LOBSTER day under ``root`` (default: the project's data folder),
    one per message file with a matching order-book file, sorted by dataset
    and symbol."""
    root = data_dir() if root is None else root
    days = []
    for path in sorted(root.glob("lobster-*/*_message_*.csv*")):
        m = _MESSAGE_RE.match(path.name)
        if m is None:
            continue
        book = path.with_name(path.name.replace("_message_", "_orderbook_"))
        if not book.exists():
            continue
        days.append(
            LobsterDay(
                dataset=path.parent.name,
                symbol=m["symbol"],
                session_date=date.fromisoformat(m["date"]),
                levels=int(m["levels"]),
                start_s=int(m["start"]) / 1e3,
                end_s=int(m["end"]) / 1e3,
                message_path=path,
                orderbook_path=book,
            )
        )
    return days


def find_day(dataset: str, root: Path | None = None) -> LobsterDay:
    """The LOBSTER day of the data folder ``dataset`` (e.g. ``"lobster-aapl-2012-06-21-l1"``).

    Raises
    ------
    KeyError
        No such dataset under the data folder.
    """
    for day in find_days(root):
        if day.dataset == dataset:
            return day
    raise KeyError(f"no LOBSTER dataset {dataset!r} in {root or data_dir()}")


def read_messages(day: LobsterDay) -> pd.DataFrame:
    """The message file as a DataFrame.

    Returns
    -------
    DataFrame with ``ts_ns`` (int64, ns since the Unix epoch, UTC, exact),
    ``type`` (int), ``order_id`` (int64), ``size`` (shares, int64),
    ``price`` (int64, US dollars x 10,000) and ``direction`` (+1 buy or
    -1 sell limit order), one row per event in file order.
    """
    raw = pd.read_csv(
        day.message_path,
        header=None,
        names=["time", "type", "order_id", "size", "price", "direction"],
        usecols=range(6),
        dtype={"time": str},
    )
    whole, _, frac = (part for _, part in raw["time"].str.partition(".").items())
    nanos = frac.str.ljust(9, "0").str.slice(0, 9).astype(np.int64)
    ts_ns = day.midnight_ns + whole.astype(np.int64) * 1_000_000_000 + nanos
    return pd.DataFrame(
        {
            "ts_ns": ts_ns.to_numpy(np.int64),
            "type": raw["type"].to_numpy(np.int64),
            "order_id": raw["order_id"].to_numpy(np.int64),
            "size": raw["size"].to_numpy(np.int64),
            "price": raw["price"].to_numpy(np.int64),
            "direction": raw["direction"].to_numpy(np.int64),
        }
    )


def trades_from_messages(symbol: str, messages: pd.DataFrame) -> Trades:
    """The executions (types 4 and 5) of a message frame, with the aggressor
    side as minus the resting order's direction."""
    ex = messages[messages["type"].isin(EXECUTION_TYPES)]
    return Trades(
        symbol=symbol,
        ts_ns=ex["ts_ns"].to_numpy(np.int64),
        price=ex["price"].to_numpy(np.float64) / PRICE_SCALE,
        size=ex["size"].to_numpy(np.float64),
        aggressor_side=(-ex["direction"].to_numpy()).astype(np.int8),
    )


def load_trades(day: LobsterDay) -> Trades:
    """Every execution of the day (visible and hidden), with its true aggressor side."""
    return trades_from_messages(day.symbol, read_messages(day))


def load_quotes(day: LobsterDay, messages: pd.DataFrame | None = None) -> Quotes:
    """The best bid and ask after every event of the day (one row per message).

    ``messages``: the day's :func:`read_messages` frame, when already read.
    """
    messages = read_messages(day) if messages is None else messages
    book = pd.read_csv(day.orderbook_path, header=None, usecols=range(4)).to_numpy(np.float64)
    ask, ask_size, bid, bid_size = book.T
    ask = np.where(np.abs(ask) >= EMPTY_SIDE_PRICE, np.nan, ask / PRICE_SCALE)
    bid = np.where(np.abs(bid) >= EMPTY_SIDE_PRICE, np.nan, bid / PRICE_SCALE)
    return Quotes(
        symbol=day.symbol,
        ts_ns=messages["ts_ns"].to_numpy(np.int64),
        bid_price=bid,
        bid_size=bid_size,
        ask_price=ask,
        ask_size=ask_size,
    )
