"""Independent references for OHLCV bars, shared by the bar and replay tests.

Time bars: pandas ``resample`` on a UTC DatetimeIndex. Volume bars: the
cumulative volume and the first trade reaching each threshold ``k * V``
(``searchsorted``), then a pandas ``groupby``; and a plain Python loop over
trades for small inputs. None of them uses :mod:`tickwire.engines.bars`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

COLUMNS = ["start_ts_ns", "end_ts_ns", "open", "high", "low", "close", "volume", "vwap"]


def _frame(ts_ns: np.ndarray, price: np.ndarray, size: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"price": price, "size": size, "pv": price * size, "ts": ts_ns},
        index=pd.DatetimeIndex(pd.to_datetime(ts_ns, unit="ns", utc=True)),
    )


def time_bars_pandas(
    ts_ns: np.ndarray, price: np.ndarray, size: np.ndarray, bar_ns: int, origin_ns: int
) -> pd.DataFrame:
    """OHLCV by ``DataFrame.resample`` (left-closed, left-labelled, from
    ``origin_ns``), empty intervals dropped. Columns :data:`COLUMNS` + trade_count."""
    r = _frame(ts_ns, price, size).resample(
        pd.Timedelta(bar_ns, "ns"),
        origin=pd.Timestamp(origin_ns, unit="ns", tz="UTC"),
        closed="left",
        label="left",
    )
    ohlc = r["price"].ohlc()
    out = pd.DataFrame(
        {
            "start_ts_ns": ohlc.index.as_unit("ns").asi8,
            "open": ohlc["open"].to_numpy(),
            "high": ohlc["high"].to_numpy(),
            "low": ohlc["low"].to_numpy(),
            "close": ohlc["close"].to_numpy(),
            "volume": r["size"].sum().to_numpy(),
            "pv": r["pv"].sum().to_numpy(),
            "trade_count": r["price"].count().to_numpy(),
        }
    )
    out = out[out["trade_count"] > 0].reset_index(drop=True)
    out["end_ts_ns"] = out["start_ts_ns"] + bar_ns
    out["vwap"] = out["pv"] / out["volume"]
    return out[[*COLUMNS, "trade_count"]]


def volume_bars_cumsum(
    ts_ns: np.ndarray, price: np.ndarray, size: np.ndarray, bar_volume: float
) -> pd.DataFrame:
    """Volume bars from the cumulative volume: bar k closes on the first trade
    whose cumulative volume reaches ``k * bar_volume`` (trades not split);
    trades after the last close are dropped."""
    cum = np.cumsum(size)
    k = int(cum[-1] // bar_volume) if len(cum) else 0
    closes = np.unique(np.searchsorted(cum, bar_volume * np.arange(1, k + 1), side="left"))
    closes = closes[closes < len(cum)]
    bar = np.searchsorted(closes, np.arange(len(cum)), side="left")
    df = _frame(ts_ns, price, size).reset_index(drop=True)
    df["bar"] = bar
    g = df[df["bar"] < len(closes)].groupby("bar")
    out = pd.DataFrame(
        {
            "start_ts_ns": g["ts"].first(),
            "end_ts_ns": g["ts"].last(),
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["size"].sum(),
            "vwap": g["pv"].sum() / g["size"].sum(),
            "trade_count": g["price"].count(),
        }
    )
    return out.reset_index(drop=True)


def volume_bars_loop(size: np.ndarray, bar_volume: float) -> list[list[int]]:
    """Trade indices of each volume bar, by walking the trades one at a time."""
    bars, current, total, threshold = [], [], 0.0, bar_volume
    for i, s in enumerate(size):
        current.append(i)
        total += s
        if total >= threshold:
            bars.append(current)
            current = []
            threshold = (math.floor(total / bar_volume) + 1) * bar_volume
    return bars
