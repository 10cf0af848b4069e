"""OHLCV bars (tickwire.engines.bars) against independent references: pandas
``resample`` for time bars, the cumulative-volume thresholds and a plain loop
for volume bars, on the real LOBSTER AAPL day and on random trades."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bar_reference import COLUMNS, time_bars_pandas, volume_bars_cumsum, volume_bars_loop
from hypothesis import given, settings
from hypothesis import strategies as st
from tickwire.engines import bars
from tickwire.feeds import lobster

MINUTE = 60_000_000_000
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def aapl() -> tuple[lobster.Trades, int]:
    day = lobster.find_day("lobster-aapl-2012-06-21-l1")
    return lobster.load_trades(day), day.midnight_ns


def frame(b: bars.Bars) -> pd.DataFrame:
    return pd.DataFrame({c: getattr(b, c) for c in [*COLUMNS, "trade_count"]})


def assert_bars_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want)
    for c in ("start_ts_ns", "end_ts_ns", "trade_count"):
        np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy(), err_msg=c)
    for c in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy(), err_msg=c)
    np.testing.assert_allclose(got["vwap"].to_numpy(), want["vwap"].to_numpy(), rtol=1e-13)


@pytest.mark.parametrize("bar_ns", [MINUTE, 5 * MINUTE, 7 * SECOND, 100_000_000])
def test_time_bars_equal_pandas_resample_on_aapl(aapl: tuple, bar_ns: int) -> None:
    trades, midnight = aapl
    got = bars.time_bars(trades.ts_ns, trades.price, trades.size, bar_ns, midnight)
    want = time_bars_pandas(trades.ts_ns, trades.price, trades.size, bar_ns, midnight)
    assert_bars_equal(frame(got), want)
    assert got.volume.sum() == 2_850_140  # every share in exactly one bar
    if bar_ns == MINUTE:
        # 09:30 .. 16:00 New York: 390 one-minute intervals, every one traded.
        assert len(got) == 390
        first = pd.Timestamp("2012-06-21 09:30", tz="America/New_York").value
        assert got.start_ts_ns[0] == first


@pytest.mark.parametrize("bar_volume", [10_000.0, 100_000.0, 2_500.0, 333.0])
def test_volume_bars_equal_cumulative_sum_reference_on_aapl(aapl: tuple, bar_volume: float) -> None:
    trades, _ = aapl
    got = bars.volume_bars(trades.ts_ns, trades.price, trades.size, bar_volume)
    want = volume_bars_cumsum(trades.ts_ns, trades.price, trades.size, bar_volume)
    assert_bars_equal(frame(got), want)
    # Thresholds are fixed multiples: the bars hold exactly the shares up to
    # the last closing trade, which reached floor(total / V) * V.
    cum = np.cumsum(trades.size)
    assert got.volume.sum() == cum[got.last_trade[-1]]
    assert cum[got.last_trade[-1]] >= (2_850_140 // bar_volume) * bar_volume


def test_trade_on_a_boundary_opens_the_next_time_bar() -> None:
    ts = np.array([0, 59, 60, 61, 200]) * SECOND
    b = bars.time_bars(ts, np.array([1.0, 2, 3, 4, 5]), np.ones(5), MINUTE, 0)
    np.testing.assert_array_equal(b.start_ts_ns, np.array([0, 60, 180]) * SECOND)
    np.testing.assert_array_equal(b.trade_count, [2, 2, 1])  # 120 .. 180 empty: no bar
    np.testing.assert_array_equal(b.open, [1, 3, 5])
    np.testing.assert_array_equal(b.close, [2, 4, 5])


def test_time_bars_align_to_the_origin_not_to_the_first_trade() -> None:
    ts = np.array([90, 100, 130]) * SECOND
    b = bars.time_bars(ts, np.ones(3), np.ones(3), MINUTE, origin_ns=30 * SECOND)
    np.testing.assert_array_equal(b.start_ts_ns, np.array([90]) * SECOND)
    np.testing.assert_array_equal(b.trade_count, [3])
    b = bars.time_bars(ts, np.ones(3), np.ones(3), MINUTE, origin_ns=0)
    np.testing.assert_array_equal(b.start_ts_ns, np.array([60, 120]) * SECOND)


def test_volume_bar_closes_on_the_trade_that_reaches_the_threshold() -> None:
    size = np.array([40.0, 60, 10, 250, 30, 5])
    b = bars.volume_bars(np.arange(6), np.array([1.0, 2, 3, 4, 5, 6]), size, 100)
    # cum: 40 100 | 110 360 | 390 395: trade 1 reaches 100, trade 3 crosses
    # 200 and 300 at once (one bar); 390 < 400, so trades 4-5 are no bar.
    np.testing.assert_array_equal(b.last_trade, [1, 3])
    np.testing.assert_array_equal(b.volume, [100, 260])
    np.testing.assert_array_equal(b.start_ts_ns, [0, 2])
    np.testing.assert_array_equal(b.end_ts_ns, [1, 3])
    np.testing.assert_allclose(b.vwap, [(40 + 120) / 100, (30 + 1000) / 260])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=200),
    bar_volume=st.integers(1, 2_000),
)
def test_volume_bars_equal_a_trade_by_trade_loop(sizes: list[int], bar_volume: int) -> None:
    size = np.array(sizes, dtype=np.float64)
    n = len(size)
    price = 100.0 + np.cumsum(np.where(np.arange(n) % 3 == 0, 0.01, -0.005))
    b = bars.volume_bars(np.arange(n) * 1_000, price, size, bar_volume)
    want = volume_bars_loop(size, bar_volume)
    assert len(b) == len(want)
    for k, idx in enumerate(want):
        assert b.last_trade[k] == idx[-1]
        assert b.trade_count[k] == len(idx)
        assert b.volume[k] == size[idx].sum()
        assert b.open[k] == price[idx[0]] and b.close[k] == price[idx[-1]]
        assert b.high[k] == price[idx].max() and b.low[k] == price[idx].min()


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 5 * SECOND), min_size=1, max_size=150),
    bar_ns=st.sampled_from([SECOND, 7 * SECOND, MINUTE]),
    origin=st.integers(-10 * SECOND, 10 * SECOND),
)
def test_time_bars_equal_pandas_on_random_trades(gaps: list[int], bar_ns: int, origin: int) -> None:
    ts = 1_340_285_400 * SECOND + np.cumsum(np.array(gaps, dtype=np.int64))
    n = len(ts)
    rng = np.random.default_rng(n)
    price = 50 + rng.integers(0, 100, n) / 100
    size = rng.integers(1, 300, n).astype(np.float64)
    got = bars.time_bars(ts, price, size, bar_ns, origin)
    assert_bars_equal(frame(got), time_bars_pandas(ts, price, size, bar_ns, origin))


def test_no_trades_give_no_bars() -> None:
    empty_i, empty_f = np.empty(0, np.int64), np.empty(0)
    assert len(bars.time_bars(empty_i, empty_f, empty_f, MINUTE, 0)) == 0
    assert len(bars.volume_bars(empty_i, empty_f, empty_f, 100)) == 0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: bars.time_bars(np.array([0]), np.ones(1), np.ones(1), 0, 0), "bar_ns"),
        (lambda: bars.volume_bars(np.array([0]), np.ones(1), np.ones(1), np.nan), "bar_volume"),
        (lambda: bars.volume_bars(np.array([0]), np.ones(1), np.ones(1), -5), "bar_volume"),
        (lambda: bars.time_bars(np.array([5, 1]), np.ones(2), np.ones(2), 10, 0), "ts_ns"),
        (lambda: bars.time_bars(np.array([0.5]), np.ones(1), np.ones(1), 10, 0), "ts_ns"),
        (lambda: bars.volume_bars(np.array([0]), np.array([np.nan]), np.ones(1), 1), "price"),
        (lambda: bars.volume_bars(np.array([0]), np.ones(1), np.zeros(1), 1), "size"),
        (lambda: bars.volume_bars(np.array([0, 1]), np.ones(1), np.ones(2), 1), "price"),
    ],
)
def test_bad_input_names_the_field(call, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        call()
