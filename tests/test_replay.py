"""The replay session (tickwire.feeds.replay) without gRPC: pacing on the data
clock with a fake clock, merge order at equal timestamps, windows, empty
ranges, and the checks of a request."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
from tickwire.feeds import replay

AAPL, AMZN, PRINTS = (
    "lobster-aapl-2012-06-21-l1",
    "lobster-amzn-2012-06-21-l1",
    "trades-amzn-2012-06-21",
)
OPEN_NS = pd.Timestamp("2012-06-21 09:30", tz="America/New_York").value
SECOND = 1_000_000_000


class FakeClock:
    """A clock that moves only when the replay sleeps (or the consumer works)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run_paced(plan: replay.ReplayPlan, clock: FakeClock, work_s: float = 0.0) -> list[tuple]:
    async def consume() -> list[tuple]:
        out = []
        async for w in replay.paced(plan, clock=clock, sleep=clock.sleep):
            out.append((clock.now, w))
            clock.now += work_s  # the consumer's own time per window
        return out

    return asyncio.run(consume())


def test_paced_windows_are_released_on_the_data_clock() -> None:
    speed = 25.0
    start = OPEN_NS + 3_600 * SECOND
    plan = replay.build_plan(
        replay.ReplaySpec(
            (AAPL, AMZN), speed=speed, start_ts_ns=start, end_ts_ns=start + 30 * SECOND, quotes=True
        )
    )
    clock = FakeClock()
    began = clock.now
    released = run_paced(plan, clock)
    assert len(released) == plan.num_windows > 10
    for at, w in released:
        # Released exactly when the data clock reaches the window's last event.
        assert at == pytest.approx(began + (w.replay_ts_ns - start) / 1e9 / speed, abs=1e-9)
        # ... and never before any of its events.
        for b in w.batches:
            assert b.columns["ts_ns"].max() <= w.replay_ts_ns
    assert sum(clock.sleeps) == pytest.approx((plan.window_ts[-1] - start) / 1e9 / speed)


def test_a_slow_consumer_gets_late_windows_at_once_and_none_dropped() -> None:
    start = OPEN_NS + 3_600 * SECOND
    plan = replay.build_plan(
        replay.ReplaySpec((AAPL,), speed=100.0, start_ts_ns=start, end_ts_ns=start + 60 * SECOND)
    )
    clock = FakeClock()
    released = run_paced(plan, clock, work_s=1.0)  # 1 s per window: far behind a 100x replay
    assert [w.index for _, w in released] == list(range(plan.num_windows))
    # Only the first window waits (for its data time); then always late.
    assert clock.sleeps == [pytest.approx((plan.window_ts[0] - start) / 1e9 / 100.0)]


def test_speed_zero_never_sleeps() -> None:
    plan = replay.build_plan(replay.ReplaySpec((AMZN,), batch_size=5_000))
    clock = FakeClock()
    released = run_paced(plan, clock)
    assert len(released) == plan.num_windows == 3  # 11,419 trades in windows of 5,000
    assert not clock.sleeps


def test_equal_timestamps_keep_the_execution_before_its_quote() -> None:
    start = OPEN_NS + 1_800 * SECOND
    spec = replay.ReplaySpec(
        (AAPL,), quotes=True, batch_size=1, start_ts_ns=start, end_ts_ns=start + 600 * SECOND
    )
    plan = replay.build_plan(spec)
    day = replay.load_day(AAPL)
    # With batch_size 1 every window is one event: the merged order itself.
    kinds = [w.batches[0].kind for w in plan.windows()]
    rows = [w.batches[0].lo for w in plan.windows()]
    seq = day.trade_seq
    trade_windows = [i for i, k in enumerate(kinds) if k == replay.TRADES]
    quote_base = plan.streams[1].base  # quote row r of the stream is message base + r
    trade_base = plan.streams[0].base
    assert len(trade_windows) > 500
    # Trade j is message seq[j]; the quote after that message comes next.
    for i in trade_windows:
        assert kinds[i + 1] == replay.QUOTES
        assert quote_base + rows[i + 1] == seq[trade_base + rows[i]]


def test_bars_are_released_when_they_complete() -> None:
    minute = 60 * SECOND
    plan = replay.build_plan(
        replay.ReplaySpec((AAPL,), time_bar_ns=minute, volume_bar_shares=5_000, batch_size=1)
    )
    last_trade_ts = None
    for w in plan.windows():
        b = w.batches[0]
        cols = b.columns
        if b.kind == replay.TRADES:
            last_trade_ts = int(cols["ts_ns"][0])
        elif b.kind == replay.TIME_BARS:
            # After every trade of its interval, before any trade of the next.
            assert w.replay_ts_ns == min(int(cols["end_ts_ns"][0]), plan.end_ns)
            assert last_trade_ts < cols["end_ts_ns"][0]
        else:
            # Right after the trade that closed it.
            assert last_trade_ts == cols["end_ts_ns"][0] == w.replay_ts_ns


def test_a_range_without_events_replays_nothing() -> None:
    t = replay.load_day(AMZN).trades.ts_ns
    gap = int(np.argmax(np.diff(t)))  # the longest pause between two trades
    plan = replay.build_plan(
        replay.ReplaySpec((AMZN,), start_ts_ns=int(t[gap]) + 1, end_ts_ns=int(t[gap + 1]))
    )
    assert plan.num_windows == 0 and plan.num_events == 0


def test_catalogue_and_unknown_dataset() -> None:
    cat = replay.catalogue()
    assert {AAPL, AMZN, PRINTS} <= set(cat)
    assert cat[PRINTS].kind == replay.KIND_TRADE_PRINTS and not cat[PRINTS].has_quotes
    with pytest.raises(replay.UnknownDatasetError):
        replay.check_spec(replay.ReplaySpec(("lobster-msft-2012-06-21-l1",)))
