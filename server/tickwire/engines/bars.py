"""OHLCV bars from trade prints: calendar-time bars and volume bars.

Pure NumPy and vectorised: a bar is a contiguous run of trades, found by one
pass over the trade timestamps (time bars) or the cumulative volume (volume
bars); open, high, low, close, volume, VWAP and trade count of every bar come
from ``ufunc.reduceat`` over the run starts. No Python loop over trades.

Conventions
-----------
Inputs, for one symbol, in time order:

ts_ns : (N,) int64
    Trade times, ns since the Unix epoch (UTC), non-decreasing.
price : (N,) float64
    Trade prices, currency units per share, finite and > 0.
size : (N,) float64
    Trade sizes, shares, finite and > 0.

Time bars (:func:`time_bars`)
    Intervals ``[origin + k * bar_ns, origin + (k + 1) * bar_ns)`` for
    integer k: left-closed, right-open (a trade exactly on a boundary opens
    the next bar), labelled by their start. ``origin`` is midnight of the
    trading day in the exchange's time zone (New York for NASDAQ), so that
    one-minute bars start on the minute of the exchange clock. Intervals with
    no trade give NO bar (empty intervals are skipped, not filled with the
    previous close). The same bars as pandas
    ``Series.resample(rule, origin=midnight, closed="left", label="left")``
    with the empty rows dropped.

Volume bars (:func:`volume_bars`)
    Thresholds ``k * bar_volume``, k = 1, 2, ..., on the cumulative volume
    counted from the first trade given. Bar k closes ON the first trade at
    which the cumulative volume reaches (>=) a threshold not reached before;
    trades are NEVER split: the whole closing trade belongs to the bar it
    closes, the next bar starts with the next trade, and the overshoot counts
    towards the next threshold (the thresholds are fixed multiples, so bar
    volumes average ``bar_volume``). A single trade that crosses several
    thresholds closes one bar. Trades after the last threshold reached form
    an incomplete bar, which is not returned. A bar's ``start_ts_ns`` is the
    time of its first trade, ``end_ts_ns`` the time of its closing trade.
    This is the fixed-threshold form of the volume clock of Easley, Lopez de
    Prado and O'Hara (2012) and of Lopez de Prado (2018), *Advances in
    Financial Machine Learning*, section 2.3.1.2, without splitting trades.

VWAP is ``sum(price * size) / sum(size)`` over the bar's trades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Nanoseconds per day: the longest time bar.
NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True)
class Bars:
    """OHLCV bars of one symbol, one row per bar, in time order.

    Attributes
    ----------
    start_ts_ns : (B,) int64
        Time bars: interval start. Volume bars: first trade's time. ns since
        the Unix epoch (UTC).
    end_ts_ns : (B,) int64
        Time bars: interval end (exclusive), ``start + bar_ns``. Volume bars:
        closing trade's time.
    open, high, low, close : (B,) float64
        First, highest, lowest and last trade price, currency units.
    volume : (B,) float64
        Shares traded.
    vwap : (B,) float64
        Volume-weighted average price, currency units.
    trade_count : (B,) int64
        Trades in the bar (>= 1).
    last_trade : (B,) int64
        Index (into the input arrays) of each bar's last trade.
    """

    start_ts_ns: np.ndarray
    end_ts_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    vwap: np.ndarray
    trade_count: np.ndarray
    last_trade: np.ndarray

    def __len__(self) -> int:
        return len(self.start_ts_ns)


def _check_trades(ts_ns: np.ndarray, price: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, ...]:
    ts = np.asarray(ts_ns)
    p = np.asarray(price, dtype=np.float64)
    s = np.asarray(size, dtype=np.float64)
    if ts.ndim != 1 or ts.dtype.kind not in "iu":
        raise ValueError(f"ts_ns: must be a (N,) integer array, got {ts.dtype} {ts.shape}")
    if p.shape != ts.shape or s.shape != ts.shape:
        raise ValueError(f"price: shapes differ: ts_ns {ts.shape}, price {p.shape}, size {s.shape}")
    if len(ts) > 1 and np.any(np.diff(ts) < 0):
        raise ValueError("ts_ns: must be non-decreasing")
    if not np.all(np.isfinite(p) & (p > 0)):
        raise ValueError("price: must be finite and > 0")
    if not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError("size: must be finite and > 0")
    return ts.astype(np.int64, copy=False), p, s


def _aggregate(
    starts: np.ndarray, stops: np.ndarray, price: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, ...]:
    """OHLCV of the runs ``[starts[b], stops[b])`` (contiguous, covering
    ``[starts[0], stops[-1])``, each non-empty)."""
    if len(starts) == 0:
        empty = np.empty(0, np.float64)
        return empty, empty, empty, empty, empty, empty, np.empty(0, np.int64)
    lo, hi = int(starts[0]), int(stops[-1])
    p, s = price[lo:hi], size[lo:hi]
    idx = starts - lo
    volume = np.add.reduceat(s, idx)
    vwap = np.add.reduceat(p * s, idx) / volume
    return (
        price[starts],
        np.maximum.reduceat(p, idx),
        np.minimum.reduceat(p, idx),
        price[stops - 1],
        volume,
        vwap,
        (stops - starts).astype(np.int64),
    )


def time_bars(
    ts_ns: np.ndarray, price: np.ndarray, size: np.ndarray, bar_ns: int, origin_ns: int
) -> Bars:
    """Calendar-time OHLCV bars (module docstring: left-closed, labelled by
    start, aligned to ``origin_ns``, empty intervals skipped).

    Parameters
    ----------
    ts_ns, price, size : (N,) arrays
        Trades in time order (module docstring).
    bar_ns : int
        Bar length, ns, 1 .. 86,400,000,000,000 (one day).
    origin_ns : int
        A bar boundary, ns since the Unix epoch (UTC); typically midnight of
        the session date in the exchange's time zone.

    Returns
    -------
    Bars, one per interval that holds at least one trade.

    Raises
    ------
    ValueError
        ``"bar_ns: ..."`` out of range; ``"ts_ns: ..."``, ``"price: ..."``,
        ``"size: ..."`` for bad trades.
    """
    if not 1 <= int(bar_ns) <= NS_PER_DAY:
        raise ValueError(f"bar_ns: must be in [1, {NS_PER_DAY}], got {bar_ns}")
    ts, p, s = _check_trades(ts_ns, price, size)
    bucket = (ts - np.int64(origin_ns)) // np.int64(bar_ns)
    new = np.ones(len(ts), dtype=bool)
    new[1:] = bucket[1:] != bucket[:-1]
    starts = np.flatnonzero(new)
    stops = np.append(starts[1:], len(ts)).astype(np.int64)[: len(starts)]
    o, h, lo, c, v, vw, n = _aggregate(starts, stops, p, s)
    start_ts = np.int64(origin_ns) + bucket[starts] * np.int64(bar_ns)
    return Bars(
        start_ts_ns=start_ts,
        end_ts_ns=start_ts + np.int64(bar_ns),
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
        vwap=vw,
        trade_count=n,
        last_trade=stops - 1,
    )


def volume_bars(ts_ns: np.ndarray, price: np.ndarray, size: np.ndarray, bar_volume: float) -> Bars:
    """Volume OHLCV bars (module docstring: fixed thresholds ``k * bar_volume``
    on the cumulative volume, the closing trade is not split, the incomplete
    last bar is dropped).

    Parameters
    ----------
    ts_ns, price, size : (N,) arrays
        Trades in time order (module docstring).
    bar_volume : float
        Shares per bar, finite and > 0.

    Returns
    -------
    Bars, one per threshold-crossing trade.

    Raises
    ------
    ValueError
        ``"bar_volume: ..."`` not finite or not > 0; ``"ts_ns: ..."``,
        ``"price: ..."``, ``"size: ..."`` for bad trades.
    """
    bar_volume = float(bar_volume)
    if not (np.isfinite(bar_volume) and bar_volume > 0):
        raise ValueError(f"bar_volume: must be finite and > 0, got {bar_volume}")
    ts, p, s = _check_trades(ts_ns, price, size)
    # Thresholds reached so far after each trade; a trade closes a bar when
    # it raises that count.
    reached = np.floor(np.cumsum(s) / bar_volume)
    closes = np.flatnonzero(np.diff(reached, prepend=0.0) > 0)
    starts = np.concatenate(([0], closes[:-1] + 1)).astype(np.int64)[: len(closes)]
    stops = (closes + 1).astype(np.int64)
    o, h, lo, c, v, vw, n = _aggregate(starts, stops, p, s)
    return Bars(
        start_ts_ns=ts[starts],
        end_ts_ns=ts[closes],
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
        vwap=vw,
        trade_count=n,
        last_trade=closes.astype(np.int64),
    )
