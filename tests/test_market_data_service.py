"""MarketDataService through the RPC on the real LOBSTER days: the catalogue,
trades with their true aggressor side, OHLCV bars equal to an independent
pandas resample, time-ordered merging of symbols, time ranges, pacing on the
data clock, cancellation, deadlines, errors and the stream's span events."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from bar_reference import COLUMNS, time_bars_pandas, volume_bars_cumsum
from conftest import ServerHandle
from opentelemetry.sdk.trace import ReadableSpan
from tickwire.common.v1 import market_pb2
from tickwire.feeds import lobster, trade_csv
from tickwire.feeds.replay import WINDOW_WALL_S
from tickwire.services.market_data import TRACE_MILESTONES
from tickwire_client import AsyncClient, Client, TickwireError
from tickwire_client.market_data import MarketDataClient

AAPL, AMZN, PRINTS = (
    "lobster-aapl-2012-06-21-l1",
    "lobster-amzn-2012-06-21-l1",
    "trades-amzn-2012-06-21",
)
REPLAY_SPAN = "tickwire.marketdata.v1.MarketDataService/Replay"
MINUTE = 60_000_000_000
OPEN_NS = pd.Timestamp("2012-06-21 09:30", tz="America/New_York").value
CLOSE_NS = pd.Timestamp("2012-06-21 16:00", tz="America/New_York").value


@pytest.fixture(scope="module")
def aapl() -> lobster.Trades:
    return lobster.load_trades(lobster.find_day(AAPL))


@pytest.fixture(scope="module")
def amzn() -> lobster.Trades:
    return lobster.load_trades(lobster.find_day(AMZN))


def collect(stream: Any) -> dict[tuple[str, str, int], dict[str, np.ndarray]]:
    """Concatenate the stream's columns per (kind, symbol, bar_type)."""
    parts: dict[tuple[str, str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for msg in stream:
        kind = msg.WhichOneof("payload")
        batch = getattr(msg, kind)
        key = (kind, batch.symbol, batch.bar_type if kind == "bars" else 0)
        for f in batch.DESCRIPTOR.fields:
            if f.name != "symbol" and f.name != "bar_type":
                parts[key][f.name].append(np.asarray(getattr(batch, f.name)))
    return {k: {f: np.concatenate(v) for f, v in cols.items()} for k, cols in parts.items()}


def replay_spans(server: ServerHandle, predicate: Callable[[ReadableSpan], bool]) -> ReadableSpan:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        found = [
            s for s in server.spans.get_finished_spans() if s.name == REPLAY_SPAN and predicate(s)
        ]
        if found:
            assert len(found) == 1, [(s.attributes, s.start_time) for s in found]
            return found[0]
        time.sleep(0.02)
    pytest.fail("no Replay span")


# --------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------
def test_list_datasets_gives_the_days_with_their_counts(client: Client) -> None:
    infos = {d.name: d for d in client.market_data.list_datasets()}
    assert {AAPL, AMZN, PRINTS} <= set(infos)
    a = infos[AAPL]
    assert (a.symbols, str(a.session_date), a.kind) == (["AAPL"], "2012-06-21", "lobster")
    assert (a.events, a.trades) == (118_497, 34_990)  # the data's PROVENANCE.md
    assert (a.start_ts_ns, a.end_ts_ns) == (OPEN_NS, CLOSE_NS)
    assert a.has_aggressor_side and a.has_quotes
    assert (infos[AMZN].events, infos[AMZN].trades) == (57_515, 11_419)
    p = infos[PRINTS]
    assert (p.symbols, p.kind, p.events, p.trades) == (["AMZN"], "trade_prints", 11_419, 11_419)
    assert not p.has_aggressor_side and not p.has_quotes


# --------------------------------------------------------------------------
# correctness
# --------------------------------------------------------------------------
def test_replayed_trades_are_the_executions_with_their_true_side(
    client: Client, aapl: lobster.Trades
) -> None:
    got = collect(client.market_data.replay(AAPL, batch_size=4096))
    t = got[("trades", "AAPL", 0)]
    np.testing.assert_array_equal(t["ts_ns"], aapl.ts_ns)
    np.testing.assert_array_equal(t["price"], aapl.price)
    np.testing.assert_array_equal(t["size"], aapl.size)
    # Direction -1 (a resting sell was hit) is a buyer-initiated trade.
    want = np.where(
        aapl.aggressor_side == 1, market_pb2.AGGRESSOR_SIDE_BUY, market_pb2.AGGRESSOR_SIDE_SELL
    )
    np.testing.assert_array_equal(t["aggressor_side"], want)
    assert t["size"][t["aggressor_side"] == market_pb2.AGGRESSOR_SIDE_BUY].sum() == 1_314_336


def test_bars_from_replay_equal_pandas_resample_of_the_executions(
    client: Client, aapl: lobster.Trades
) -> None:
    day = lobster.find_day(AAPL)
    got = collect(
        client.market_data.replay(
            AAPL, trades=False, time_bar_ns=MINUTE, volume_bar_shares=10_000, batch_size=64
        )
    )
    assert set(got) == {
        ("bars", "AAPL", market_pb2.BAR_TYPE_TIME),
        ("bars", "AAPL", market_pb2.BAR_TYPE_VOLUME),
    }
    refs = {
        market_pb2.BAR_TYPE_TIME: time_bars_pandas(
            aapl.ts_ns, aapl.price, aapl.size, MINUTE, day.midnight_ns
        ),
        market_pb2.BAR_TYPE_VOLUME: volume_bars_cumsum(aapl.ts_ns, aapl.price, aapl.size, 10_000),
    }
    for bar_type, want in refs.items():
        bars = got[("bars", "AAPL", bar_type)]
        assert len(bars["open"]) == len(want) > 250
        for c in [*COLUMNS[:-1], "trade_count"]:
            np.testing.assert_array_equal(bars[c], want[c].to_numpy(), err_msg=c)
        np.testing.assert_allclose(bars["vwap"], want["vwap"].to_numpy(), rtol=1e-13)
    assert len(got[("bars", "AAPL", market_pb2.BAR_TYPE_TIME)]["open"]) == 390


def test_symbols_merge_in_time_order_and_each_keeps_its_own_order(
    client: Client, aapl: lobster.Trades, amzn: lobster.Trades
) -> None:
    msgs = list(
        client.market_data.replay(
            [AAPL, AMZN],
            quotes=True,
            time_bar_ns=5 * MINUTE,
            volume_bar_shares=20_000,
            batch_size=500,
        )
    )
    clocks = np.array([m.replay_ts_ns for m in msgs])
    assert np.all(np.diff(clocks) >= 0)
    progress = np.array([m.progress for m in msgs])
    assert np.all(np.diff(progress) >= 0) and progress[-1] == 1.0
    # Windows: every event of a window precedes every event of the next one.
    previous_clock, window_min = None, {}
    for m in msgs:
        kind = m.WhichOneof("payload")
        b = getattr(m, kind)
        ts = np.asarray(b.ts_ns if kind != "bars" else b.end_ts_ns)
        release = (
            ts
            if kind != "bars" or b.bar_type == market_pb2.BAR_TYPE_VOLUME
            else np.minimum(ts, CLOSE_NS)
        )
        assert len(release) <= 500 and release.max() <= m.replay_ts_ns
        if previous_clock is not None and m.replay_ts_ns != previous_clock:
            assert release.min() >= previous_clock
        window_min.setdefault(m.replay_ts_ns, set()).add(b.symbol)
        previous_clock = m.replay_ts_ns
    # Both symbols share windows (interleaved, not one after the other).
    assert sum(len(s) == 2 for s in window_min.values()) > 0.5 * len(window_min)
    got = collect(iter(msgs))
    for trades in (aapl, amzn):
        t = got[("trades", trades.symbol, 0)]
        np.testing.assert_array_equal(t["ts_ns"], trades.ts_ns)
        np.testing.assert_array_equal(t["price"], trades.price)
    q = got[("quotes", "AMZN", 0)]
    want_q = lobster.load_quotes(lobster.find_day(AMZN))
    np.testing.assert_array_equal(q["ask_price"], want_q.ask_price)
    np.testing.assert_array_equal(q["bid_size"], want_q.bid_size)
    assert len(got[("quotes", "AAPL", 0)]["ts_ns"]) == 118_497


def test_time_range_keeps_the_trades_inside_it(client: Client, aapl: lobster.Trades) -> None:
    start = OPEN_NS + 30 * MINUTE + 12_345
    end = start + 5 * MINUTE
    got = collect(
        client.market_data.replay(AAPL, start_ts_ns=start, end_ts_ns=end, time_bar_ns=MINUTE)
    )
    inside = (aapl.ts_ns >= start) & (aapl.ts_ns < end)
    t = got[("trades", "AAPL", 0)]
    np.testing.assert_array_equal(t["ts_ns"], aapl.ts_ns[inside])
    bars = got[("bars", "AAPL", market_pb2.BAR_TYPE_TIME)]
    # Bars over the trades in range: the minutes at its two ends are cut by it.
    minutes = np.unique((aapl.ts_ns[inside] - OPEN_NS) // MINUTE)
    assert list(minutes[:5]) == [30, 31, 32, 33, 34]
    np.testing.assert_array_equal(bars["start_ts_ns"], OPEN_NS + minutes * MINUTE)
    assert bars["volume"].sum() == aapl.size[inside].sum()


def test_trade_prints_replay_without_sides(client: Client, amzn: lobster.Trades) -> None:
    got = collect(client.market_data.replay(PRINTS, batch_size=2_000))
    t = got[("trades", "AMZN", 0)]
    assert len(t["aggressor_side"]) == 0  # empty: side unknown
    prints = trade_csv.load_trades(trade_csv.find_days()[0])
    np.testing.assert_array_equal(t["ts_ns"], prints.ts_ns)
    # The CSV holds the LOBSTER AMZN executions, timestamps rounded to the microsecond.
    np.testing.assert_array_equal(t["price"], amzn.price)
    assert np.abs(t["ts_ns"] - amzn.ts_ns).max() <= 500


# --------------------------------------------------------------------------
# pacing, cancellation, deadlines
# --------------------------------------------------------------------------
def test_paced_replay_emits_on_the_data_clock(client: Client) -> None:
    speed = 400.0
    start = OPEN_NS + 60 * MINUTE
    end = start + MINUTE  # 60 s of data: about 0.15 s at 400 x
    msgs = list(
        client.market_data.replay(
            [AAPL, AMZN], speed=speed, start_ts_ns=start, end_ts_ns=end, quotes=True
        )
    )
    span_ns = round(speed * WINDOW_WALL_S * 1e9)  # data time per window: 20 s
    clocks = np.array([m.replay_ts_ns for m in msgs])
    assert np.all(np.diff(clocks) >= 0)
    cells = set()
    for m in msgs:
        b = getattr(m, m.WhichOneof("payload"))
        ts = np.asarray(b.ts_ns)
        # A window never runs ahead of the clock and stays in one cell of the
        # data-time grid that the pacing follows.
        assert start <= ts.min() and ts.max() <= m.replay_ts_ns < end
        cell = (ts - start) // span_ns
        assert cell.min() == cell.max() == (m.replay_ts_ns - start) // span_ns
        cells.add(int(cell[0]))
    assert cells == {0, 1, 2}
    # Real time: the windows are data-time slices, not batch_size slices.
    assert max(len(getattr(m, m.WhichOneof("payload")).ts_ns) for m in msgs) < 1000 - 1


def test_a_reader_that_stops_reading_stalls_the_replay_and_cancelling_ends_it(
    client: Client, server: ServerHandle
) -> None:
    # BDP probing off keeps the client's HTTP/2 receive window at its initial
    # 64 KiB; with it on, grpc grows the window to several MiB and a reader
    # that never reads still absorbs most of a day (see the README's notes).
    channel = grpc.insecure_channel(server.target, options=[("grpc.http2.bdp_probe", 0)])
    stream = MarketDataClient(channel, 60.0).replay(AAPL, quotes=True, batch_size=3)
    first = [next(stream) for _ in range(5)]
    assert all(m.replay_ts_ns >= first[0].replay_ts_ns for m in first)
    time.sleep(1.0)  # room for the server to run ahead, if awaited writes let it
    stream.close()
    channel.close()
    span = replay_spans(server, lambda s: s.attributes.get("tickwire.replay.batch_size") == 3)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    planned = span.attributes["tickwire.replay.windows_planned"]
    assert planned > 50_000  # about 90,000 batches in the whole day
    # Stalled by flow control at about one receive window (about 850 batches
    # of 3 rows here), then stopped by the cancellation.
    assert 5 <= span.attributes["tickwire.replay.batches"] < 2_000
    assert client.market_data.list_datasets()  # the server carries on


def test_deadline_ends_a_real_time_replay(client: Client, server: ServerHandle) -> None:
    with pytest.raises(TickwireError) as err:
        for _ in client.market_data.replay(AAPL, speed=1.0, batch_size=7, timeout=0.5):
            pass
    assert err.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    span = replay_spans(server, lambda s: s.attributes.get("tickwire.replay.batch_size") == 7)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert span.attributes["tickwire.replay.trades"] < 100  # half a second of a real day


def test_async_client_replays_the_same_batches(server: ServerHandle, client: Client) -> None:
    start = OPEN_NS + 90 * MINUTE
    kwargs = dict(start_ts_ns=start, end_ts_ns=start + 2 * MINUTE, quotes=True, batch_size=50)

    async def run() -> list:
        async with AsyncClient(server.target) as ac:
            assert {d.name for d in await ac.market_data.list_datasets()} >= {AAPL, AMZN}
            return [m async for m in ac.market_data.replay([AAPL, AMZN], **kwargs)]

    got = asyncio.run(run())
    want = list(client.market_data.replay([AAPL, AMZN], **kwargs))
    assert len(got) == len(want) > 10
    assert [m.SerializeToString() for m in got] == [m.SerializeToString() for m in want]


# --------------------------------------------------------------------------
# tracing
# --------------------------------------------------------------------------
def test_stream_span_gets_events_per_window_range_not_per_batch(
    client: Client, server: ServerHandle
) -> None:
    n = sum(1 for _ in client.market_data.replay(AAPL, batch_size=37))
    assert n > 900  # 34,990 trades in batches of 37
    span = replay_spans(server, lambda s: s.attributes.get("tickwire.replay.batch_size") == 37)
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert span.attributes["tickwire.replay.batches"] == n
    assert span.attributes["tickwire.replay.trades"] == 34_990
    progress = [e for e in span.events if e.name == "replay.progress"]
    assert 10 <= len(progress) <= TRACE_MILESTONES
    batches = [e.attributes["batches"] for e in progress]
    assert batches == sorted(batches) and batches[-1] < n
    fractions = [e.attributes["progress"] for e in progress]
    assert fractions == sorted(fractions) and all(0 < f < 1 for f in fractions)
    end = span.events[-1]
    assert end.name == "replay.end"
    assert (end.attributes["trades"], end.attributes["batches"]) == (34_990, n)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------
def test_unknown_dataset_is_not_found(client: Client) -> None:
    with pytest.raises(TickwireError) as err:
        next(client.market_data.replay([AAPL, "lobster-msft-2012-06-21-l1"]))
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    assert "datasets" in err.value.message and "lobster-msft" in err.value.message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"speed": float("nan")}, "speed"),
        ({"speed": -1.0}, "speed"),
        ({"speed": float("inf")}, "speed"),
        ({"batch_size": -5}, "batch_size"),
        ({"batch_size": 100_001}, "batch_size"),
        ({"start_ts_ns": OPEN_NS + 2 * MINUTE, "end_ts_ns": OPEN_NS + MINUTE}, "end_ts_ns"),
        ({"start_ts_ns": OPEN_NS - 1}, "start_ts_ns"),
        ({"end_ts_ns": CLOSE_NS + 1}, "end_ts_ns"),
        ({"time_bar_ns": 999}, "time_bar_ns"),
        ({"time_bar_ns": -MINUTE}, "time_bar_ns"),
        ({"volume_bar_shares": float("nan")}, "volume_bar_shares"),
        ({"volume_bar_shares": -100.0}, "volume_bar_shares"),
        ({"trades": False}, "trades"),
        ({"datasets": [AAPL, AAPL]}, "datasets"),
        ({"datasets": [AMZN, PRINTS]}, "datasets"),
        ({"datasets": [], "trades": True}, "datasets"),
        ({"datasets": PRINTS, "quotes": True, "trades": False}, "quotes"),
    ],
)
def test_bad_requests_name_the_field(client: Client, kwargs: dict, field: str) -> None:
    datasets = kwargs.pop("datasets", AAPL)
    with pytest.raises(TickwireError) as err:
        next(client.market_data.replay(datasets, **kwargs))
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.fields, err.value.field_violations
    # The server keeps serving.
    start = OPEN_NS + MINUTE
    assert next(client.market_data.replay(AAPL, start_ts_ns=start, end_ts_ns=start + MINUTE))
