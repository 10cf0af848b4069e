"""Replay sessions: recorded trading days played back as time-ordered batches.

The catalogue (:func:`catalogue`) lists every replayable dataset in the data
folder: LOBSTER days (``lobster-*``: executions with their true aggressor side
and the top of book after every event, :mod:`tickwire.feeds.lobster`) and
trade-print CSV days (``trades-*``: prints without sides or quotes,
:mod:`tickwire.feeds.trade_csv`).

A replay (:func:`build_plan`, then :meth:`ReplayPlan.windows` or
:func:`paced`) merges the events of one or more datasets:

Streams
    Per dataset (one symbol each) up to four streams: trades, quotes, time
    bars, volume bars (:mod:`tickwire.engines.bars`, computed over the trades
    inside the replay range). Every event has a release time on the data
    clock: a trade or quote its timestamp; a time bar the end of its interval
    (clamped to the range end for the last one), a volume bar the time of
    the trade that closed it.

Merge order
    All events sorted by (release time, priority, dataset, event index):
    time bars before trades and quotes of the same nanosecond (a trade at a
    bar boundary opens the next bar), volume bars after them (the closing
    trade comes first); a LOBSTER execution before the quote that shows the
    book after it. Per stream the data's own order is kept.

Windows
    The merged sequence is cut into windows of at most ``batch_size`` events
    and, when paced (``speed > 0``), of at most ``speed * WINDOW_WALL_S`` of
    data time (aligned to the range start), so that a real-time replay emits
    about every 50 ms instead of once per ``batch_size`` events. Every event
    of a window precedes every event of the next. A window holds one batch
    per stream it touches, ordered by the batch's first event.

Pacing (:func:`paced`)
    ``speed`` 0 releases windows as fast as the consumer takes them; ``speed
    > 0`` releases a window when ``(last event time - range start) / speed``
    seconds have passed since the replay began (a consumer that falls behind
    is not skipped over: windows are then released at once, never dropped).

Caching: each dataset's arrays are loaded once per process
(:func:`load_day`, least-recently-used, 8 days) and sliced per batch; a
replay's own arrays (merge order, window bounds, bars) are built once per
request in :func:`build_plan`.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from tickwire.engines import bars as bars_engine
from tickwire.feeds import lobster, trade_csv
from tickwire.feeds.daily_prices import data_dir
from tickwire.feeds.lobster import Quotes, Trades

#: Wall-clock seconds of data per window when paced: a paced replay emits at
#: most about 1 / WINDOW_WALL_S windows per second.
WINDOW_WALL_S = 0.05
#: Limits of a replay request.
MAX_BATCH_SIZE = 100_000
DEFAULT_BATCH_SIZE = 1_000
MAX_SPEED = 1e6
MIN_TIME_BAR_NS, MAX_TIME_BAR_NS = 1_000_000, bars_engine.NS_PER_DAY
MAX_VOLUME_BAR_SHARES = 1e12

KIND_LOBSTER = "lobster"
KIND_TRADE_PRINTS = "trade_prints"

#: Stream kinds, and their merge priority at equal release times.
TRADES, QUOTES, TIME_BARS, VOLUME_BARS = "trades", "quotes", "time_bars", "volume_bars"
_PRIORITY = {TIME_BARS: 0, TRADES: 1, QUOTES: 1, VOLUME_BARS: 2}


# --------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetEntry:
    """A replayable dataset (one symbol's day).

    Attributes
    ----------
    name : folder name, e.g. ``"lobster-aapl-2012-06-21-l1"``
    kind : :data:`KIND_LOBSTER` or :data:`KIND_TRADE_PRINTS`
    symbol : ``"AAPL"``
    session_date : trading day (New York)
    start_ns, end_ns : time window ``[start_ns, end_ns)``, ns since the Unix epoch (UTC)
    midnight_ns : midnight of the session date in New York (the time-bar origin)
    has_aggressor_side, has_quotes : what the dataset holds
    source : the reader's day record
    """

    name: str
    kind: str
    symbol: str
    session_date: date
    start_ns: int
    end_ns: int
    midnight_ns: int
    has_aggressor_side: bool
    has_quotes: bool
    source: lobster.LobsterDay | trade_csv.TradePrintsDay = field(repr=False)


@dataclass(frozen=True)
class DayData:
    """A dataset's arrays, loaded once and shared by every replay.

    Attributes
    ----------
    entry : DatasetEntry
    events : int
        Events in the dataset (LOBSTER messages, or prints).
    trades : Trades
        Every trade, in time order.
    trade_seq : (N,) int64
        Event index of each trade in the dataset (merge tie-break).
    side_enum : (N,) int32
        ``tickwire.common.v1.AggressorSide`` values: 1 buy, 2 sell, 0 unknown.
    quotes : Quotes or None
        Top of book after every event (LOBSTER only); quote i follows event i.
    """

    entry: DatasetEntry
    events: int
    trades: Trades
    trade_seq: np.ndarray
    side_enum: np.ndarray
    quotes: Quotes | None


class UnknownDatasetError(KeyError):
    """A requested dataset is not in the catalogue."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _root(root: Path | None) -> Path:
    return (data_dir() if root is None else root).resolve()


@functools.lru_cache(maxsize=4)
def _catalogue(root: Path) -> dict[str, DatasetEntry]:
    out: dict[str, DatasetEntry] = {}
    for d in lobster.find_days(root):
        start = d.midnight_ns + round(d.start_s * 1e9)
        out[d.dataset] = DatasetEntry(
            name=d.dataset,
            kind=KIND_LOBSTER,
            symbol=d.symbol,
            session_date=d.session_date,
            start_ns=start,
            end_ns=d.midnight_ns + round(d.end_s * 1e9),
            midnight_ns=d.midnight_ns,
            has_aggressor_side=True,
            has_quotes=True,
            source=d,
        )
    for t in trade_csv.find_days(root):
        out[t.dataset] = DatasetEntry(
            name=t.dataset,
            kind=KIND_TRADE_PRINTS,
            symbol=t.symbol,
            session_date=t.session_date,
            start_ns=t.start_ns,
            end_ns=t.end_ns,
            midnight_ns=t.midnight_ns,
            has_aggressor_side=False,
            has_quotes=False,
            source=t,
        )
    return dict(sorted(out.items()))


def catalogue(root: Path | None = None) -> dict[str, DatasetEntry]:
    """Every replayable dataset under ``root`` (default: the data folder), by name."""
    return _catalogue(_root(root))


@functools.lru_cache(maxsize=8)
def _load_day(name: str, root: Path) -> DayData:
    entry = _catalogue(root).get(name)
    if entry is None:
        raise UnknownDatasetError(name)
    if entry.kind == KIND_LOBSTER:
        assert isinstance(entry.source, lobster.LobsterDay)
        messages = lobster.read_messages(entry.source)
        trades = lobster.trades_from_messages(entry.symbol, messages)
        seq = np.flatnonzero(messages["type"].isin(lobster.EXECUTION_TYPES).to_numpy())
        quotes = lobster.load_quotes(entry.source, messages)
        events = len(messages)
    else:
        assert isinstance(entry.source, trade_csv.TradePrintsDay)
        trades = trade_csv.load_trades(entry.source)
        seq = np.arange(len(trades))
        quotes, events = None, len(trades)
    side = np.where(trades.aggressor_side > 0, 1, np.where(trades.aggressor_side < 0, 2, 0))
    return DayData(
        entry=entry,
        events=events,
        trades=trades,
        trade_seq=seq.astype(np.int64),
        side_enum=side.astype(np.int32),
        quotes=quotes,
    )


def load_day(name: str, root: Path | None = None) -> DayData:
    """The arrays of dataset ``name`` (cached per process).

    Raises
    ------
    UnknownDatasetError
        No such dataset in the catalogue.
    """
    return _load_day(name, _root(root))


# --------------------------------------------------------------------------
# request
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplaySpec:
    """What to replay (the fields of ``ReplayRequest``, defaults applied).

    Attributes
    ----------
    datasets : dataset names
    speed : 0 as fast as possible, 1 real time, N N x real time
    start_ts_ns, end_ts_ns : range ``[start_ts_ns, end_ts_ns)``, ns since the Unix epoch
        (UTC); None for the datasets' window edge
    trades, quotes : emit trade / quote batches
    time_bar_ns : time-bar length, ns (0: none)
    volume_bar_shares : volume-bar size, shares (0: none)
    batch_size : maximum events per window and rows per batch
    """

    datasets: tuple[str, ...]
    speed: float = 0.0
    start_ts_ns: int | None = None
    end_ts_ns: int | None = None
    trades: bool = True
    quotes: bool = False
    time_bar_ns: int = 0
    volume_bar_shares: float = 0.0
    batch_size: int = DEFAULT_BATCH_SIZE


def check_spec(spec: ReplaySpec, root: Path | None = None) -> list[tuple[str, str]]:
    """Every problem of ``spec`` as ``(field, description)`` pairs (empty when valid).

    Raises
    ------
    UnknownDatasetError
        The first dataset name that is not in the catalogue.
    """
    cat = catalogue(root)
    for name in spec.datasets:
        if name not in cat:
            raise UnknownDatasetError(name)
    bad: list[tuple[str, str]] = []
    if not spec.datasets:
        bad.append(("datasets", "at least one dataset is required (see ListDatasets)"))
    seen: dict[str, str] = {}
    for name in spec.datasets:
        sym = cat[name].symbol
        if name in seen.values():
            bad.append(("datasets", f"{name!r} is listed twice"))
        elif sym in seen:
            bad.append(("datasets", f"symbol {sym} is in both {seen[sym]!r} and {name!r}"))
        else:
            seen[sym] = name
    if not (math.isfinite(spec.speed) and 0.0 <= spec.speed <= MAX_SPEED):
        bad.append(("speed", f"must be finite and in [0, {MAX_SPEED:g}], got {spec.speed}"))
    if not 1 <= spec.batch_size <= MAX_BATCH_SIZE:
        bad.append(("batch_size", f"must be in [1, {MAX_BATCH_SIZE}], got {spec.batch_size}"))
    if spec.time_bar_ns and not MIN_TIME_BAR_NS <= spec.time_bar_ns <= MAX_TIME_BAR_NS:
        bad.append(
            (
                "time_bar_ns",
                f"must be 0 (no time bars) or in [{MIN_TIME_BAR_NS}, {MAX_TIME_BAR_NS}] ns, "
                f"got {spec.time_bar_ns}",
            )
        )
    v = spec.volume_bar_shares
    if not (math.isfinite(v) and 0.0 <= v <= MAX_VOLUME_BAR_SHARES):
        bad.append(
            (
                "volume_bar_shares",
                f"must be 0 (no volume bars) or finite in (0, {MAX_VOLUME_BAR_SHARES:g}], got {v}",
            )
        )
    if not (spec.trades or spec.quotes or spec.time_bar_ns or spec.volume_bar_shares):
        bad.append(("trades", "nothing to replay: ask for trades, quotes or bars"))
    entries = [cat[n] for n in spec.datasets]
    if spec.quotes and entries and not any(e.has_quotes for e in entries):
        bad.append(("quotes", "none of the datasets has quotes (trade prints only)"))
    if entries:
        w0, w1 = min(e.start_ns for e in entries), max(e.end_ns for e in entries)
        window = f"the datasets' window [{w0}, {w1})"
        if spec.start_ts_ns is not None and not w0 <= spec.start_ts_ns < w1:
            bad.append(("start_ts_ns", f"{spec.start_ts_ns} is outside {window}"))
        if spec.end_ts_ns is not None and not w0 < spec.end_ts_ns <= w1:
            bad.append(("end_ts_ns", f"{spec.end_ts_ns} is outside {window}"))
        t0 = w0 if spec.start_ts_ns is None else spec.start_ts_ns
        t1 = w1 if spec.end_ts_ns is None else spec.end_ts_ns
        if t1 <= t0:
            bad.append(("end_ts_ns", f"must be after the range start {t0}, got {t1}"))
    return bad


# --------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Stream:
    """One symbol's events of one kind in the replay range.

    ``columns`` are (n,) arrays sliced per batch; ``release_ns`` (n,) their
    release times on the data clock. Trades and quotes are rows
    ``[base, base + n)`` of their dataset's day columns
    (:func:`trade_columns`, :func:`quote_columns`; ``dataset`` names it);
    bars are computed for the replay (``dataset`` empty).
    """

    kind: str
    symbol: str
    columns: dict[str, np.ndarray]
    release_ns: np.ndarray
    dataset: str = ""
    base: int = 0

    def __len__(self) -> int:
        return len(self.release_ns)


@dataclass(frozen=True)
class Batch:
    """Rows ``[lo, hi)`` of ``source``, the stream with index ``stream`` in
    ``ReplayPlan.streams``; ``columns`` slices its arrays on demand."""

    source: Stream
    stream: int
    lo: int
    hi: int

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def symbol(self) -> str:
        return self.source.symbol

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """The batch's rows of every column, (hi - lo,) views."""
        return {k: a[self.lo : self.hi] for k, a in self.source.columns.items()}

    def __len__(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class Window:
    """One window of the replay.

    Attributes
    ----------
    index : 0-based window number
    replay_ts_ns : release time of the window's last event (the replay clock)
    progress : ``(replay_ts_ns - start) / (end - start)``, 1.0 for the last window
    batches : one per stream the window touches, ordered by first event
    """

    index: int
    replay_ts_ns: int
    progress: float
    batches: list[Batch]


@dataclass
class ReplayPlan:
    """The merged, windowed replay of a :class:`ReplaySpec`.

    Attributes
    ----------
    spec : ReplaySpec
    start_ns, end_ns : the range ``[start_ns, end_ns)``
    streams : the replayed streams
    bounds : (W + 1,) int64, global event positions where windows start (and the total)
    local : (S, W + 1) int64, per stream, its row index at each window bound
    positions : list of (n_s,) int64, per stream, the global position of each row
    window_ts : (W,) int64, replay clock of each window
    """

    spec: ReplaySpec
    start_ns: int
    end_ns: int
    streams: list[Stream]
    bounds: np.ndarray
    local: np.ndarray
    positions: list[np.ndarray]
    window_ts: np.ndarray
    _bounds_by_window: list[list[int]] | None = field(default=None, repr=False)

    @property
    def num_windows(self) -> int:
        return len(self.window_ts)

    @property
    def num_events(self) -> int:
        return int(self.bounds[-1]) if len(self.bounds) else 0

    def counts(self) -> dict[str, int]:
        """Events per stream kind in the whole replay."""
        out = dict.fromkeys((TRADES, QUOTES, TIME_BARS, VOLUME_BARS), 0)
        for s in self.streams:
            out[s.kind] += len(s)
        return out

    def window(self, w: int) -> Window:
        """Window ``w`` (0 <= w < num_windows)."""
        if self._bounds_by_window is None:  # (W + 1) rows of per-stream row indices
            self._bounds_by_window = self.local.T.tolist()
        starts, stops = self._bounds_by_window[w], self._bounds_by_window[w + 1]
        found = []
        for s, stream in enumerate(self.streams):
            lo, hi = starts[s], stops[s]
            if hi > lo:
                found.append((int(self.positions[s][lo]), Batch(stream, s, lo, hi)))
        if len(found) > 1:
            found.sort(key=lambda x: x[0])
        ts = int(self.window_ts[w])
        span = self.end_ns - self.start_ns
        progress = 1.0 if w == self.num_windows - 1 else min(1.0, (ts - self.start_ns) / span)
        return Window(w, ts, progress, [b for _, b in found])

    def windows(self) -> Iterator[Window]:
        """Every window, in order."""
        for w in range(self.num_windows):
            yield self.window(w)


def trade_columns(day: DayData) -> dict[str, np.ndarray]:
    """The day's trades by ``TradeBatch`` field name (no ``aggressor_side``
    when the dataset has no sides)."""
    t = day.trades
    cols = {"ts_ns": t.ts_ns, "price": t.price, "size": t.size}
    if day.entry.has_aggressor_side:
        cols["aggressor_side"] = day.side_enum
    return cols


def quote_columns(q: Quotes) -> dict[str, np.ndarray]:
    """The day's quotes by ``QuoteBatch`` field name."""
    return {
        "ts_ns": q.ts_ns,
        "bid_price": q.bid_price,
        "bid_size": q.bid_size,
        "ask_price": q.ask_price,
        "ask_size": q.ask_size,
    }


def _trade_stream(day: DayData, lo: int, hi: int) -> Stream:
    cols = {k: a[lo:hi] for k, a in trade_columns(day).items()}
    return Stream(TRADES, day.trades.symbol, cols, cols["ts_ns"], day.entry.name, lo)


def _quote_stream(day: DayData, q: Quotes, lo: int, hi: int) -> Stream:
    cols = {k: a[lo:hi] for k, a in quote_columns(q).items()}
    return Stream(QUOTES, q.symbol, cols, cols["ts_ns"], day.entry.name, lo)


def _bar_stream(kind: str, symbol: str, b: bars_engine.Bars, release: np.ndarray) -> Stream:
    cols = {
        "start_ts_ns": b.start_ts_ns,
        "end_ts_ns": b.end_ts_ns,
        "open": b.open,
        "high": b.high,
        "low": b.low,
        "close": b.close,
        "volume": b.volume,
        "vwap": b.vwap,
        "trade_count": b.trade_count,
    }
    return Stream(kind, symbol, cols, release)


def build_plan(spec: ReplaySpec, root: Path | None = None) -> ReplayPlan:
    """Load (or reuse) the datasets and lay out the replay of ``spec``.

    Raises
    ------
    UnknownDatasetError
        A dataset is not in the catalogue.
    ValueError
        ``"field: message"`` for the first problem :func:`check_spec` finds.
    """
    bad = check_spec(spec, root)
    if bad:
        raise ValueError(f"{bad[0][0]}: {bad[0][1]}")
    days = [load_day(n, root) for n in spec.datasets]
    t0 = min(d.entry.start_ns for d in days) if spec.start_ts_ns is None else spec.start_ts_ns
    t1 = max(d.entry.end_ns for d in days) if spec.end_ts_ns is None else spec.end_ts_ns

    streams: list[Stream] = []
    keys: list[tuple[np.ndarray, np.ndarray]] = []  # (priority, tie-break) per stream
    for di, day in enumerate(days):
        t = day.trades
        lo, hi = np.searchsorted(t.ts_ns, [t0, t1], side="left")
        seq = day.trade_seq[lo:hi]
        tie_base = np.int64(di) << np.int64(42)

        def add(stream: Stream, tie: np.ndarray, base: np.int64 = tie_base) -> None:
            streams.append(stream)
            keys.append((np.full(len(stream), _PRIORITY[stream.kind], np.int8), base + tie))

        if spec.trades:
            add(_trade_stream(day, lo, hi), seq * 2)
        if spec.quotes and day.quotes is not None:
            q = day.quotes
            qlo, qhi = np.searchsorted(q.ts_ns, [t0, t1], side="left")
            add(_quote_stream(day, q, qlo, qhi), np.arange(qlo, qhi, dtype=np.int64) * 2 + 1)
        if spec.time_bar_ns:
            b = bars_engine.time_bars(
                t.ts_ns[lo:hi],
                t.price[lo:hi],
                t.size[lo:hi],
                spec.time_bar_ns,
                day.entry.midnight_ns,
            )
            release = np.minimum(b.end_ts_ns, t1)
            add(_bar_stream(TIME_BARS, t.symbol, b, release), seq[b.last_trade] * 2)
        if spec.volume_bar_shares:
            b = bars_engine.volume_bars(
                t.ts_ns[lo:hi], t.price[lo:hi], t.size[lo:hi], spec.volume_bar_shares
            )
            add(_bar_stream(VOLUME_BARS, t.symbol, b, b.end_ts_ns), seq[b.last_trade] * 2)

    release = np.concatenate([s.release_ns for s in streams]) if streams else np.empty(0, np.int64)
    prio = np.concatenate([k[0] for k in keys]) if keys else np.empty(0, np.int8)
    tie = np.concatenate([k[1] for k in keys]) if keys else np.empty(0, np.int64)
    order = np.lexsort((tie, prio, release))
    n = len(order)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    positions, offset = [], 0
    for s in streams:
        positions.append(rank[offset : offset + len(s)])  # increasing: streams are sorted
        offset += len(s)

    sorted_release = release[order]
    bs = spec.batch_size
    if n == 0:
        cuts = np.empty(0, np.int64)
    elif spec.speed == 0:
        cuts = np.arange(0, n, bs, dtype=np.int64)
    else:
        span = max(1, round(spec.speed * WINDOW_WALL_S * 1e9))
        cell = (sorted_release - t0) // span
        new = np.ones(n, dtype=bool)
        new[1:] = cell[1:] != cell[:-1]
        seg_start = np.flatnonzero(new)
        offset_in_seg = np.arange(n) - seg_start[np.cumsum(new) - 1]
        cuts = np.flatnonzero(offset_in_seg % bs == 0).astype(np.int64)
    bounds = np.append(cuts, n).astype(np.int64)
    local = np.array([np.searchsorted(p, bounds, side="left") for p in positions], dtype=np.int64)
    local = local.reshape(len(streams), len(bounds))
    window_ts = sorted_release[bounds[1:] - 1] if n else np.empty(0, np.int64)
    return ReplayPlan(spec, int(t0), int(t1), streams, bounds, local, positions, window_ts)


async def paced(
    plan: ReplayPlan,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = asyncio.sleep,
) -> AsyncIterator[Window]:
    """The plan's windows, each released on the data clock at ``plan.spec.speed``.

    With speed 0 every window is released at once (the consumer's pace, e.g.
    an awaited gRPC write, sets the rate). With speed > 0 window w is released
    ``(window_ts[w] - start_ns) / 1e9 / speed`` seconds after the first
    window was asked for; a consumer that falls behind gets the late windows
    at once. Stops when the consumer stops iterating.
    """
    speed = plan.spec.speed
    began = clock()
    for w in range(plan.num_windows):
        if speed > 0:
            due = began + (int(plan.window_ts[w]) - plan.start_ns) / 1e9 / speed
            delay = due - clock()
            if delay > 0:
                await sleep(delay)  # type: ignore[misc]
        yield plan.window(w)
