"""Order-flow toxicity: VPIN with bulk volume classification, bucket order
imbalance, Kyle's lambda and realised volatility; batch and incremental.

Method: Easley, Lopez de Prado and O'Hara (2012), "Flow Toxicity and
Liquidity in a High-frequency World", Review of Financial Studies 25(5),
1457-1493 (ELO). Every choice the paper leaves open is fixed here, and the
same code path serves the batch function and the streaming state, so that a
stream gives exactly (bit for bit) the batch result, whatever the batch
boundaries.

Choices
-------
Time bars for BVC
    Trades are grouped into calendar-time bars of ``bar_ns`` nanoseconds
    (default 60 s, ELO's one-minute bars), aligned to multiples of
    ``bar_ns`` since the Unix epoch (for whole minutes this is aligned to the
    New York minute). Bars without trades are skipped. A bar is *closed* when
    a trade of a later bar arrives; the bar holding the last trade seen so far
    is open, and nothing that depends on it is reported yet (a stream reports
    it as soon as the next bar's first trade arrives; a batch call leaves it
    out, the same).
Price change of a bar
    ``dP_i = close_i - close_(i-1)``, the close being the last trade price of
    the bar; the first bar's reference is the first trade's price.
Sigma of the price change
    ``sigma_parameter > 0``: that fixed value (e.g. yesterday's estimate).
    ``0`` (default): the *expanding* population standard deviation of the
    bar price changes seen so far, the current bar included:
    ``sigma_i = sqrt(mean(dP_1..i ** 2) - mean(dP_1..i) ** 2)``. A stream
    knows it at every bar close, so the stream and the batch classify every
    bar identically. While ``sigma_i = 0`` (the first bar) a bar is split
    50/50.
CDF
    ``cdf="normal"`` (ELO): buy fraction ``Z(dP / sigma)`` with ``Z`` the
    standard normal CDF. ``cdf="student_t"``: Student-t CDF with
    ``degrees_of_freedom`` (Easley, Lopez de Prado and O'Hara 2016 use a
    t with 0.25 degrees of freedom).
Volume buckets
    Bucket ``k`` (0-based) holds the cumulative traded volume
    ``(k V, (k+1) V]``: every bucket holds exactly ``V = bucket_volume``
    shares. ELO's default is one fiftieth of the average daily volume; that
    needs the day's volume in advance, so ``V`` is always a parameter here.
Splitting across a bucket boundary
    A bar whose volume straddles a bucket boundary is split in proportion to
    volume, each part classified with the bar's buy fraction: the bucket's
    buy volume is ``CB((k+1) V) - CB(k V)`` where ``CB(x)`` is the
    cumulative BVC buy volume, piecewise linear in cumulative volume ``x``
    with slope ``Z(dP_i / sigma_i)`` across bar ``i``. True-side buy volume
    (when every trade's aggressor side is known) splits a trade across the
    boundary the same way, with slope 1 for a buyer-initiated trade and 0
    for a seller-initiated one. A bucket is complete once the bar holding its
    upper boundary is closed.
Bucket statistics
    ``order_imbalance = (V_buy - V_sell) / V`` in [-1, 1];
    ``VPIN_k = sum_(j=k-n+1..k) |V_buy,j - V_sell,j| / (n V)``, defined from
    the n-th bucket on (``n = window_buckets``, default 50, ELO); before that
    NaN. ``buy_volume`` is the BVC estimate or the true side
    (``classification``).
CDF rank of VPIN
    The empirical CDF of VPIN at each bucket, over the last ``cdf_history``
    defined VPIN values including the current one (default 10,000):
    ``#{j : VPIN_j <= VPIN_k} / count`` (ELO fit a lognormal; the empirical
    rank avoids the fit and stays exact in a stream).
Kyle's lambda
    Per bucket: the OLS slope, with intercept, of the bucket's price change
    (last trade price of the bucket minus that of the previous bucket; the
    first bucket against the first trade) on its signed volume
    ``V_buy - V_sell`` (shares), over the last ``window_buckets`` buckets;
    US dollars per share. The batch result also has the slope over all
    buckets of the call (:func:`kyle_lambda`).
Realised volatility
    ``sqrt(sum r_i^2)`` of the log returns of the bar closes (the same time
    bars, previous-tick sampling, the first bar against the first trade),
    over the bars closed so far; not annualised.

Exactness in a stream: every running total is a ``cumsum`` that starts from
the carried total (``cumsum([carry, x...])`` adds in the same order as one
``cumsum`` over all the data), every window sum adds a contiguous copy of the
same ``n`` values, and the open bar's trades are never needed again once its
volume and close are carried. State is O(window_buckets + cdf_history +
buckets awaiting their bar's close), never O(trades).

Speed: the trade-level work is vectorised NumPy. The bar- and bucket-level
work of an update that closes few bars (<= :data:`FEW_BARS`) or completes few
buckets (<= :data:`FEW_BUCKETS`), a stream's usual batch, runs on Python
floats, the same IEEE operations in the same order as the vectorised form
(logarithm, CDF and window sums still one NumPy call each), so it is
bit-identical to it and several times cheaper per call: about 65 us for a
1,000-trade batch that closes 11 one-minute bars and a bucket or two.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from scipy import special

from tickwire.engines._common import check_stop
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register

#: ELO's window: VPIN averages the imbalance of the last 50 buckets.
DEFAULT_WINDOW_BUCKETS = 50
#: ELO's one-minute time bars, in ns.
DEFAULT_BAR_NS = 60_000_000_000
#: Defined VPIN values the empirical CDF rank looks back over.
DEFAULT_CDF_HISTORY = 10_000
MAX_WINDOW_BUCKETS = 10_000
MAX_CDF_HISTORY = 1_000_000
CDFS = ("normal", "student_t")
CLASSIFICATIONS = ("bvc", "true_side")
#: Most buckets one update may complete (bounds the memory of one batch).
MAX_BUCKETS_PER_UPDATE = 1_000_000
#: Up to this many bars closing in one update are closed on Python floats
#: (bit-identical to the vectorised form, cheaper for few bars).
FEW_BARS = 48
#: Up to this many buckets completing in one update are finished one by one.
FEW_BUCKETS = 4
#: Format version of :meth:`VpinState.to_arrays`.
STATE_VERSION = 1
_INT64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True)
class VpinParameters:
    """Parameters of VPIN for one symbol (see the module docstring).

    Attributes
    ----------
    bucket_volume : float
        ``V``, shares per volume bucket; finite, > 0.
    window_buckets : int
        ``n``, buckets per VPIN window, 1 .. 10,000 (default 50).
    bar_ns : int
        BVC time-bar length in ns, 1 ms .. 1 day (default 60 s).
    cdf : str
        ``"normal"`` or ``"student_t"``.
    degrees_of_freedom : float
        Of the Student-t CDF, > 0 (required for ``"student_t"``, else unused).
    sigma : float
        Fixed standard deviation of the bar price change in US dollars (> 0),
        or 0 for the expanding estimate.
    classification : str
        ``"bvc"`` or ``"true_side"`` (needs the aggressor side of every trade).
    cdf_history : int
        Defined VPIN values in the empirical CDF rank, 1 .. 1,000,000.
    """

    bucket_volume: float
    window_buckets: int = DEFAULT_WINDOW_BUCKETS
    bar_ns: int = DEFAULT_BAR_NS
    cdf: str = "normal"
    degrees_of_freedom: float = 0.0
    sigma: float = 0.0
    classification: str = "bvc"
    cdf_history: int = DEFAULT_CDF_HISTORY

    def problems(self) -> list[tuple[str, str]]:
        """Every bad parameter as ``(field, message)``; empty when valid."""
        out = []
        v = self.bucket_volume
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            out.append(("bucket_volume", f"must be a finite number of shares > 0, got {v}"))
        elif v > 1e15:
            out.append(("bucket_volume", f"must be at most 1e15 shares, got {v}"))
        if not 1 <= self.window_buckets <= MAX_WINDOW_BUCKETS:
            out.append(
                (
                    "window_buckets",
                    f"must be in [1, {MAX_WINDOW_BUCKETS}], got {self.window_buckets}",
                )
            )
        if not 1_000_000 <= self.bar_ns <= 86_400_000_000_000:
            out.append(("bar_ns", f"must be in [1 ms, 1 day] in ns, got {self.bar_ns}"))
        if self.cdf not in CDFS:
            out.append(("cdf", f"must be one of {', '.join(CDFS)}, got {self.cdf!r}"))
        dof = self.degrees_of_freedom
        if self.cdf == "student_t" and not (math.isfinite(dof) and 0 < dof <= 1e6):
            out.append(("degrees_of_freedom", f"must be in (0, 1e6] for student_t, got {dof}"))
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            out.append(("sigma", f"must be finite and >= 0 (0: expanding), got {self.sigma}"))
        if self.classification not in CLASSIFICATIONS:
            out.append(
                (
                    "classification",
                    f"must be one of {', '.join(CLASSIFICATIONS)}, got {self.classification!r}",
                )
            )
        if not 1 <= self.cdf_history <= MAX_CDF_HISTORY:
            out.append(
                ("cdf_history", f"must be in [1, {MAX_CDF_HISTORY}], got {self.cdf_history}")
            )
        return out

    def validate(self) -> VpinParameters:
        """Return self; ``ValueError("<field>: <message>")`` for the first bad field."""
        bad = self.problems()
        if bad:
            raise ValueError(f"{bad[0][0]}: {bad[0][1]}")
        return self


@dataclass(frozen=True, slots=True)
class Buckets:
    """Completed volume buckets, columnar; every array has shape (K,).

    Attributes
    ----------
    index : int64, 0-based bucket number since the start (or the last reset)
    end_ts_ns : int64, time of the trade that filled the bucket, ns since the epoch (UTC)
    end_price : float64, price of that trade, US dollars
    buy_volume : float64, buy volume by ``classification``, shares (sell = V - buy)
    bvc_buy_volume : float64, BVC buy volume, shares
    true_buy_volume : float64, true-side buy volume, shares; NaN unless every
        trade so far had its aggressor side
    order_imbalance : float64, ``(buy - sell) / V`` in [-1, 1]
    vpin : float64, NaN before ``window_buckets`` buckets
    vpin_bvc, vpin_true_side : float64, VPIN from the BVC / true-side buy volume
    cdf_rank : float64 in (0, 1], NaN where VPIN is NaN
    kyle_lambda : float64, rolling OLS slope, US dollars per share; NaN before
        ``window_buckets`` buckets or when signed volume has no variance
    """

    index: np.ndarray
    end_ts_ns: np.ndarray
    end_price: np.ndarray
    buy_volume: np.ndarray
    bvc_buy_volume: np.ndarray
    true_buy_volume: np.ndarray
    order_imbalance: np.ndarray
    vpin: np.ndarray
    vpin_bvc: np.ndarray
    vpin_true_side: np.ndarray
    cdf_rank: np.ndarray
    kyle_lambda: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @staticmethod
    def concat(parts: list[Buckets]) -> Buckets:
        """The buckets of several updates, in order."""
        if not parts:
            return _empty_buckets()
        return Buckets(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Buckets)}
        )


def _empty_buckets() -> Buckets:
    e = np.empty(0)
    i = np.empty(0, np.int64)
    return Buckets(i, i, e, e, e, e, e, e, e, e, e, e)


#: The result of an update that completes no bucket (shared; its arrays are
#: empty and read-only).
_EMPTY_BUCKETS = _empty_buckets()
for _f in fields(Buckets):
    getattr(_EMPTY_BUCKETS, _f.name).flags.writeable = False


def _carry_cumsum(carry: float, x: np.ndarray) -> np.ndarray:
    """``[carry, carry + x0, (carry + x0) + x1, ...]``: a running total that
    adds in the same order whatever the chunking."""
    out = np.empty(len(x) + 1)
    out[0] = carry
    out[1:] = x
    return np.add.accumulate(out, out=out)  # np.cumsum without its wrapper


def _diff_from(prev: float, x: np.ndarray) -> np.ndarray:
    """``[x0 - prev, x1 - x0, ...]`` (``np.diff(x, prepend=prev)``, cheaper)."""
    d = np.empty_like(x)
    d[0] = x[0] - prev
    np.subtract(x[1:], x[:-1], out=d[1:])
    return d


def _window_sums(allv: np.ndarray, h: int, n: int) -> np.ndarray:
    """Sum of each trailing window of ``n`` values ending at each of the last
    ``m = allv.shape[1] - h`` columns of ``allv`` (q series at once); NaN where
    fewer than ``n`` values exist. (q, m)."""
    q, total = allv.shape
    m = total - h
    sums = np.full((q, m), np.nan)
    first = max(n - 1 - h, 0)  # first new value whose window is full
    if first < m:
        starts = np.arange(h + first - (n - 1), h + m - (n - 1))
        # A (q, k, n) gather: numpy adds every window's n values in the same
        # order however many windows there are (checked: the same sums for k
        # = 1 as for any k), so a stream and a batch agree bit for bit.
        w = allv[:, starts[:, None] + np.arange(n)[None, :]]
        sums[:, first:] = w.sum(axis=2)
    return sums


def _ranks(allv: np.ndarray, h: int, history: int) -> np.ndarray:
    """Empirical CDF rank of each of the values after the first ``h`` of
    ``allv`` among the trailing ``history`` values ending at it:
    #(window <= v) / len(window).

    A few new values: one count per value over its own window. More: one
    (k, L) comparison per chunk of new values against the span their windows
    cover, minus the few columns outside each row's own window (the first and
    last k columns). Both give exact integer counts.
    """
    m = allv.size - h
    out = np.empty(m)
    if m <= 4:
        for i in range(m):
            pos = h + i
            lo = max(pos - history + 1, 0)
            window = allv[lo : pos + 1]
            out[i] = np.count_nonzero(window <= window[-1]) / (pos - lo + 1)
        return out
    step = max(1, 4_000_000 // max(min(history, allv.size), 1))
    for s in range(0, m, step):
        e = min(s + step, m)
        k = e - s
        pos = h + np.arange(s, e)
        lo = np.maximum(pos - history + 1, 0)
        d0 = int(lo[0])
        span = allv[d0 : int(pos[-1]) + 1]
        le = span[None, :] <= allv[pos][:, None]  # (k, L)
        count = le.sum(axis=1)
        cols = np.arange(min(k, span.size))
        head = le[:, : cols.size] & (cols[None, :] < (lo - d0)[:, None])
        tail_cols = span.size - cols.size + cols
        tail = le[:, span.size - cols.size :] & (tail_cols[None, :] > (pos - d0)[:, None])
        count = count - head.sum(axis=1) - tail.sum(axis=1)
        out[s:e] = count / (pos - lo + 1)
    return out


def _buy_fraction(dp: np.ndarray, sigma: np.ndarray, params: VpinParameters) -> np.ndarray:
    z = np.divide(dp, sigma, out=np.zeros_like(dp), where=sigma > 0)
    if params.cdf == "normal":
        return special.ndtr(z)
    return special.stdtr(params.degrees_of_freedom, z)


_STATE_FIELDS: dict[str, Any] = {
    # name: dtype, (scalars unless listed in _ARRAY_FIELDS)
    "trades": np.int64,
    "last_ts_ns": np.int64,
    "first_price": np.float64,
    "cum_volume": np.float64,
    "cum_true_buy": np.float64,
    "open_bar_id": np.int64,
    "open_bar_close": np.float64,
    "bars": np.int64,
    "last_bar_close": np.float64,
    "bar_end_volume": np.float64,
    "cum_bvc_buy": np.float64,
    "sum_dp": np.float64,
    "sum_dp2": np.float64,
    "sum_r2": np.float64,
    "trade_buckets": np.int64,
    "true_buy_at_boundary": np.float64,
    "buckets": np.int64,
    "bvc_buy_at_boundary": np.float64,
    "last_bucket_price": np.float64,
    "pending_end_ts_ns": np.int64,
    "pending_end_price": np.float64,
    "pending_true_buy": np.float64,
    "window": np.float64,
    "vpin_history": np.float64,
}
_ARRAY_FIELDS = {
    "pending_end_ts_ns",
    "pending_end_price",
    "pending_true_buy",
    "window",
    "vpin_history",
}


@dataclass
class VpinState:
    """Incremental VPIN of one symbol: feed trades in time order, get every
    bucket as soon as it is complete.

    ``VpinState(p).update(all trades)`` is :func:`compute_buckets`; feeding the
    same trades in any number of chunks gives bit-identical buckets.
    An update that raises ``ValueError`` leaves the state unchanged.
    """

    params: VpinParameters
    trades: int = 0
    last_ts_ns: int = _INT64_MIN
    first_price: float = math.nan
    cum_volume: float = 0.0
    cum_true_buy: float = 0.0
    open_bar_id: int = _INT64_MIN  # _INT64_MIN: no open bar (no trade yet)
    open_bar_close: float = math.nan
    bars: int = 0
    last_bar_close: float = math.nan
    bar_end_volume: float = 0.0
    cum_bvc_buy: float = 0.0
    sum_dp: float = 0.0
    sum_dp2: float = 0.0
    sum_r2: float = 0.0
    trade_buckets: int = 0
    true_buy_at_boundary: float = 0.0
    buckets: int = 0
    bvc_buy_at_boundary: float = 0.0
    last_bucket_price: float = math.nan
    pending_end_ts_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pending_end_price: np.ndarray = field(default_factory=lambda: np.empty(0))
    pending_true_buy: np.ndarray = field(default_factory=lambda: np.empty(0))
    #: (5, <= n-1), the last buckets': |OI| by classification, |OI| BVC,
    #: |OI| true side, signed volume x (shares), price change y (US dollars).
    window: np.ndarray = field(default_factory=lambda: np.empty((5, 0)))
    vpin_history: np.ndarray = field(default_factory=lambda: np.empty(0))

    # ----- derived -------------------------------------------------------------
    @property
    def realised_volatility(self) -> float:
        """sqrt of the sum of squared log returns of the closed bars' closes."""
        return math.sqrt(self.sum_r2)

    @property
    def sigma(self) -> float:
        """The sigma of the bar price change in use now (fixed or expanding)."""
        if self.params.sigma > 0:
            return self.params.sigma
        if self.bars == 0:
            return math.nan
        m = self.sum_dp / self.bars
        return math.sqrt(max(self.sum_dp2 / self.bars - m * m, 0.0))

    @property
    def last_vpin(self) -> float:
        """The latest defined VPIN, NaN before ``window_buckets`` buckets."""
        return float(self.vpin_history[-1]) if self.vpin_history.size else math.nan

    # ----- the update ----------------------------------------------------------
    def update(
        self,
        ts_ns: np.ndarray,
        price: np.ndarray,
        size: np.ndarray,
        aggressor_side: np.ndarray | None = None,
    ) -> Buckets:
        """Add trades (time-ordered, after every trade already seen) and return
        the buckets they complete.

        Parameters
        ----------
        ts_ns : (N,) int64, ns since the Unix epoch (UTC), non-decreasing and
            not before the last trade already seen
        price : (N,) float64, US dollars, finite, > 0
        size : (N,) float64, shares, finite, > 0
        aggressor_side : (N,) int, +1 buyer- / -1 seller-initiated, or None
            (or empty) when unknown; required for ``classification="true_side"``

        Raises
        ------
        ValueError
            ``"<field>: <message>"`` for the first bad input; nothing is applied.
        """
        ts, price, size, isbuy = _check_trades(
            ts_ns, price, size, aggressor_side, self.last_ts_ns, self.params
        )
        if ts.size == 0:
            return _EMPTY_BUCKETS
        p = self.params
        vb = p.bucket_volume
        first_price = self.first_price if self.trades else float(price[0])

        # --- trade level: cumulative volume, bucket boundaries, true side ----
        cum = _carry_cumsum(self.cum_volume, size)
        if (self.trade_buckets + 1) * vb <= cum[-1]:
            ks = np.arange(self.trade_buckets + 1, int(cum[-1] // vb) + 2, dtype=np.int64)
            x = ks * vb
            x = x[x <= cum[-1]]
        else:
            x = np.empty(0)
        if x.size > MAX_BUCKETS_PER_UPDATE:
            raise ValueError(
                f"size: these trades fill {x.size} buckets, more than {MAX_BUCKETS_PER_UPDATE}"
                " in one batch; raise bucket_volume or send smaller batches"
            )
        trade_buckets = self.trade_buckets + x.size
        if isbuy is None or math.isnan(self.cum_true_buy):
            cum_true = None  # no true side from here on
            true_last = math.nan
        else:
            cum_true = _carry_cumsum(self.cum_true_buy, size * isbuy)
            true_last = float(cum_true[-1])
        if x.size:
            j = np.searchsorted(cum, x, side="left")  # cum[j-1] < x <= cum[j]
            new_end_ts = ts[j - 1]
            new_end_price = price[j - 1]
            if cum_true is None:
                ct_x = np.full(x.size, math.nan)
            else:
                ct_x = cum_true[j - 1] + isbuy[j - 1] * (x - cum[j - 1])
            new_true = _diff_from(self.true_buy_at_boundary, ct_x)
            true_at_boundary = float(ct_x[-1])
            pend_ts = np.concatenate([self.pending_end_ts_ns, new_end_ts])
            pend_price = np.concatenate([self.pending_end_price, new_end_price])
            pend_true = np.concatenate([self.pending_true_buy, new_true])
        else:
            true_at_boundary = self.true_buy_at_boundary
            pend_ts, pend_price, pend_true = (
                self.pending_end_ts_ns,
                self.pending_end_price,
                self.pending_true_buy,
            )

        # --- bars: which close in this update ---------------------------------
        had_open = self.open_bar_id != _INT64_MIN
        first_id, last_id = int(ts[0]) // p.bar_ns, int(ts[-1]) // p.bar_ns
        if first_id == last_id:  # the whole batch is in one bar
            starts = np.empty(0, np.int64)
        else:
            ids = ts // p.bar_ns
            starts = np.flatnonzero(ids[1:] != ids[:-1]) + 1  # 0-based trade starting a bar
        if had_open and first_id != self.open_bar_id:
            starts = np.concatenate([[0], starts])
        # A bar closes just before each start; in padded coordinates (index 0 =
        # the state before this update) the closing bar ends at `starts`.
        closes_at = starts
        bars = self.bars + closes_at.size

        buckets_out = _EMPTY_BUCKETS
        state_updates: dict[str, Any] = {}
        if closes_at.size:
            prev_close = self.last_bar_close if self.bars else first_price
            close_bars = self._close_bars_few if closes_at.size <= FEW_BARS else self._close_bars
            bvc_buy, more = close_bars(cum[closes_at], price, closes_at, prev_close, pend_ts.size)
            state_updates.update(more)
            m = bvc_buy.size
            if m:
                finish = self._finish_few if m <= FEW_BUCKETS else self._finish_buckets
                buckets_out, more = finish(
                    bvc_buy, pend_ts[:m], pend_price[:m], pend_true[:m], first_price
                )
                state_updates.update(more)
                pend_ts, pend_price, pend_true = pend_ts[m:], pend_price[m:], pend_true[m:]

        # --- commit (nothing above touched self) ------------------------------
        self.trades += int(ts.size)
        self.last_ts_ns = int(ts[-1])
        self.first_price = first_price
        self.cum_volume = float(cum[-1])
        self.cum_true_buy = true_last
        self.open_bar_id = last_id
        self.open_bar_close = float(price[-1])
        self.bars = bars
        self.trade_buckets = trade_buckets
        self.true_buy_at_boundary = true_at_boundary
        self.pending_end_ts_ns = pend_ts
        self.pending_end_price = pend_price
        self.pending_true_buy = pend_true
        for k, v in state_updates.items():
            setattr(self, k, v)
        return buckets_out

    def _close_bars(
        self,
        bar_end_cum: np.ndarray,
        price: np.ndarray,
        closes_at: np.ndarray,
        prev_close: float,
        pending: int,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Close ``k`` bars (vectorised): BVC buy volume of the buckets whose
        upper boundary they reach (at most ``pending``), and the new bar totals.

        ``bar_end_cum`` (k,) is the cumulative volume at each closing bar's
        end; ``price[closes_at - 1]`` its close (the carried open bar's close
        where ``closes_at`` is 0). :meth:`_close_bars_few` does the same
        arithmetic, operation for operation, on Python floats.
        """
        p = self.params
        vb = p.bucket_volume
        k = closes_at.size
        bar_close = price[closes_at - 1]  # closes_at - 1 = -1 only for the carried bar
        if closes_at[0] == 0:
            bar_close[0] = self.open_bar_close
        vol = _diff_from(self.bar_end_volume, bar_end_cum)
        dp = _diff_from(prev_close, bar_close)
        logs = np.log(np.concatenate([[prev_close], bar_close]))
        r = logs[1:] - logs[:-1]
        # running sums of dP, dP^2 and r^2 in one sequential cumsum per row
        run = np.empty((3, k + 1))
        run[:, 0] = (self.sum_dp, self.sum_dp2, self.sum_r2)
        run[0, 1:] = dp
        np.multiply(dp, dp, out=run[1, 1:])
        np.multiply(r, r, out=run[2, 1:])
        np.cumsum(run, axis=1, out=run)
        s1, s2, r2 = run[0], run[1], run[2]
        if p.sigma > 0:
            sigma = np.full(k, p.sigma)
        else:
            nb = np.arange(self.bars + 1, self.bars + k + 1, dtype=np.float64)
            mean = s1[1:] / nb
            sigma = np.sqrt(np.maximum(s2[1:] / nb - mean * mean, 0.0))
        frac = _buy_fraction(dp, sigma, p)
        cb = _carry_cumsum(self.cum_bvc_buy, frac * vol)
        bpad = np.concatenate([[self.bar_end_volume], bar_end_cum])
        kb = np.arange(self.buckets + 1, self.buckets + pending + 1, dtype=np.int64)
        xb = kb * vb
        xb = xb[xb <= bar_end_cum[-1]]
        more = {
            "last_bar_close": float(bar_close[-1]),
            "bar_end_volume": float(bar_end_cum[-1]),
            "cum_bvc_buy": float(cb[-1]),
            "sum_dp": float(s1[-1]),
            "sum_dp2": float(s2[-1]),
            "sum_r2": float(r2[-1]),
        }
        if not xb.size:
            return xb, more
        b = np.searchsorted(bpad, xb, side="left")  # bpad[b-1] < x <= bpad[b]
        cb_x = cb[b - 1] + frac[b - 1] * (xb - bpad[b - 1])
        more["bvc_buy_at_boundary"] = float(cb_x[-1])
        return _diff_from(self.bvc_buy_at_boundary, cb_x), more

    def _close_bars_few(
        self,
        bar_end_cum: np.ndarray,
        price: np.ndarray,
        closes_at: np.ndarray,
        prev_close: float,
        pending: int,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """:meth:`_close_bars` for a few bars (a stream's usual batch): the same
        IEEE operations in the same order on Python floats, the logarithm and
        the CDF still one NumPy call each, so the result is bit-identical to
        the vectorised form (a stream equals the batch call whatever the
        split) at a fraction of its fixed cost per call."""
        p = self.params
        vb = p.bucket_volume
        ends = bar_end_cum.tolist()
        closes = price[closes_at - 1].tolist()
        if closes_at[0] == 0:
            closes[0] = self.open_bar_close
        logs = np.log([prev_close, *closes]).tolist()
        s1, s2, r2 = self.sum_dp, self.sum_dp2, self.sum_r2
        fixed = p.sigma
        bars = self.bars
        prev_c, prev_v = prev_close, self.bar_end_volume
        z: list[float] = []
        vols: list[float] = []
        for i, c in enumerate(closes):
            e = ends[i]
            dp = c - prev_c
            vols.append(e - prev_v)
            r = logs[i + 1] - logs[i]
            s1 += dp
            s2 += dp * dp
            r2 += r * r
            if fixed > 0:
                sigma = fixed
            else:
                nb = float(bars + i + 1)
                mean = s1 / nb
                sigma = math.sqrt(max(s2 / nb - mean * mean, 0.0))
            z.append(dp / sigma if sigma > 0 else 0.0)
            prev_c, prev_v = c, e
        zs = np.array(z)
        frac = (
            special.ndtr(zs) if p.cdf == "normal" else special.stdtr(p.degrees_of_freedom, zs)
        ).tolist()
        cb = [self.cum_bvc_buy]
        acc = self.cum_bvc_buy
        for f, v in zip(frac, vols, strict=True):
            acc += f * v
            cb.append(acc)
        more = {
            "last_bar_close": closes[-1],
            "bar_end_volume": ends[-1],
            "cum_bvc_buy": acc,
            "sum_dp": s1,
            "sum_dp2": s2,
            "sum_r2": r2,
        }
        # bucket boundaries reached: x = kb * vb <= the last bar's end
        bpad = [self.bar_end_volume, *ends]
        last_end = ends[-1]
        out: list[float] = []
        prev_x = self.bvc_buy_at_boundary
        b = 1
        for kb in range(self.buckets + 1, self.buckets + pending + 1):
            x = float(kb) * vb
            if not x <= last_end:
                break
            while bpad[b] < x:  # bpad[b-1] < x <= bpad[b]
                b += 1
            cb_x = cb[b - 1] + frac[b - 1] * (x - bpad[b - 1])
            out.append(cb_x - prev_x)
            prev_x = cb_x
        if out:
            more["bvc_buy_at_boundary"] = prev_x
        return np.array(out, dtype=np.float64), more

    def _finish_buckets(
        self,
        bvc_buy: np.ndarray,
        end_ts: np.ndarray,
        end_price: np.ndarray,
        true_buy: np.ndarray,
        first_price: float,
    ) -> tuple[Buckets, dict[str, Any]]:
        """Imbalance, VPIN, CDF rank and Kyle's lambda of newly complete buckets."""
        p = self.params
        vb = p.bucket_volume
        n = p.window_buckets
        m = bvc_buy.size
        buy = true_buy if p.classification == "true_side" else bvc_buy
        signed = 2.0 * buy - vb
        imbalance = signed / vb
        prev_price = self.last_bucket_price if self.buckets else first_price
        # Rows: |OI| by classification, |OI| BVC, |OI| true side, signed volume
        # x, price change y, then x*y and x*x (Kyle's lambda needs window sums
        # of all four; the product rows are recomputed from the same x and y).
        h = self.window.shape[1]
        allv = np.empty((7, h + m))
        allv[:5, :h] = self.window
        new = allv[:, h:]
        # |2 B - V| / V of the BVC and the true-side buy volume (rows 1, 2);
        # row 0, by classification, is one of them (|x / V| == |x| / V).
        np.multiply(bvc_buy, 2.0, out=new[1])
        np.multiply(true_buy, 2.0, out=new[2])
        rows = new[1:3]
        np.subtract(rows, vb, out=rows)
        np.abs(rows, out=rows)
        np.divide(rows, vb, out=rows)
        new[0] = new[2] if p.classification == "true_side" else new[1]
        new[3] = signed
        new[4] = _diff_from(prev_price, end_price)
        np.multiply(allv[3], allv[4], out=allv[5])
        np.multiply(allv[3], allv[3], out=allv[6])
        sums = _window_sums(allv, h, n)
        sums[:3] /= n
        vpin, vpin_bvc, vpin_true = sums[0], sums[1], sums[2]
        sx, sy, sxy, sxx = sums[3], sums[4], sums[5], sums[6]
        den = n * sxx - sx * sx
        ok = den > 0  # False for NaN (window not full) and for no variance
        lam = np.where(ok, (n * sxy - sx * sy) / np.where(ok, den, 1.0), np.nan)
        keep = min(n - 1, h + m)
        window = allv[:5, h + m - keep :].copy()
        # Empirical CDF rank over the last cdf_history defined values.
        hist_v = self.vpin_history
        first = max(n - 1 - h, 0)  # the first new bucket whose window is full
        defined: slice | np.ndarray = slice(first, m)
        newv = vpin[first:]
        if newv.size and np.isnan(newv).any():  # a window without true sides
            defined = ~np.isnan(vpin)
            newv = vpin[defined]
        ranks = np.full(m, np.nan)
        if newv.size:
            allh = np.concatenate([hist_v, newv])
            ranks[defined] = _ranks(allh, hist_v.size, p.cdf_history)
            keep = p.cdf_history - 1
            vpin_history = allh[max(allh.size - keep, 0) :] if keep else allh[:0]
        else:
            vpin_history = hist_v
        index = np.arange(self.buckets, self.buckets + m, dtype=np.int64)
        buckets = Buckets(
            index=index,
            end_ts_ns=end_ts,
            end_price=end_price,
            buy_volume=buy,
            bvc_buy_volume=bvc_buy,
            true_buy_volume=true_buy,
            order_imbalance=imbalance,
            vpin=vpin,
            vpin_bvc=vpin_bvc,
            vpin_true_side=vpin_true,
            cdf_rank=ranks,
            kyle_lambda=lam,
        )
        return buckets, {
            "buckets": self.buckets + m,
            "last_bucket_price": float(end_price[-1]),
            "window": window,
            "vpin_history": vpin_history,
        }

    def _finish_few(
        self,
        bvc_buy: np.ndarray,
        end_ts: np.ndarray,
        end_price: np.ndarray,
        true_buy: np.ndarray,
        first_price: float,
    ) -> tuple[Buckets, dict[str, Any]]:
        """:meth:`_finish_buckets` one bucket at a time (a stream's usual
        batch completes one or two): the same IEEE operations in the same
        order on Python floats, and each window sum by :func:`_window_sums`
        itself, so the results are bit-identical."""
        p = self.params
        vb = p.bucket_volume
        n = p.window_buckets
        m = bvc_buy.size
        true_side = p.classification == "true_side"
        bvc, tru, prices = bvc_buy.tolist(), true_buy.tolist(), end_price.tolist()
        prev_price = self.last_bucket_price if self.buckets else first_price
        win = self.window
        imbalance, vpin, vpin_bvc, vpin_true, lam = [], [], [], [], []
        nan = math.nan
        for i in range(m):
            b, t = bvc[i], tru[i]
            signed = 2.0 * (t if true_side else b) - vb
            imbalance.append(signed / vb)
            ob = abs(2.0 * b - vb) / vb
            ot = abs(2.0 * t - vb) / vb
            col = (ot if true_side else ob, ob, ot, signed, prices[i] - prev_price)
            prev_price = prices[i]
            h = win.shape[1]
            if h + 1 < n:  # the window is not full yet
                grown = np.empty((5, h + 1))
                grown[:, :h] = win
                grown[:, h] = col
                win = grown
                vpin.append(nan)
                vpin_bvc.append(nan)
                vpin_true.append(nan)
                lam.append(nan)
                continue
            w = np.empty((7, n))
            w[:5, : n - 1] = win
            w[:5, n - 1] = col
            np.multiply(w[3], w[4], out=w[5])
            np.multiply(w[3], w[3], out=w[6])
            s0, s1, s2, sx, sy, sxy, sxx = _window_sums(w, n - 1, n)[:, 0].tolist()
            vpin.append(s0 / n)
            vpin_bvc.append(s1 / n)
            vpin_true.append(s2 / n)
            den = n * sxx - sx * sx
            lam.append((n * sxy - sx * sy) / den if den > 0 else nan)
            win = w[:5, 1:]
        vpin_a = np.array(vpin)
        ranks = np.full(m, np.nan)
        hist_v = self.vpin_history
        defined = [i for i, v in enumerate(vpin) if not math.isnan(v)]
        if defined:
            allh = np.concatenate([hist_v, vpin_a[defined]])
            ranks[defined] = _ranks(allh, hist_v.size, p.cdf_history)
            keep = p.cdf_history - 1
            vpin_history = allh[max(allh.size - keep, 0) :] if keep else allh[:0]
        else:
            vpin_history = hist_v
        buckets = Buckets(
            index=np.arange(self.buckets, self.buckets + m, dtype=np.int64),
            end_ts_ns=end_ts,
            end_price=end_price,
            buy_volume=true_buy if true_side else bvc_buy,
            bvc_buy_volume=bvc_buy,
            true_buy_volume=true_buy,
            order_imbalance=np.array(imbalance),
            vpin=vpin_a,
            vpin_bvc=np.array(vpin_bvc),
            vpin_true_side=np.array(vpin_true),
            cdf_rank=ranks,
            kyle_lambda=np.array(lam),
        )
        return buckets, {
            "buckets": self.buckets + m,
            "last_bucket_price": prices[-1],
            "window": win.copy(),
            "vpin_history": vpin_history,
        }

    # ----- snapshots -----------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The whole state as named arrays (scalars 0-d), for a snapshot that
        :meth:`from_arrays` restores exactly; the parameters travel apart."""
        out = {"version": np.asarray(STATE_VERSION, np.int64)}
        for name, dtype in _STATE_FIELDS.items():
            out[name] = np.asarray(getattr(self, name), dtype=dtype).copy()
        return out

    @classmethod
    def from_arrays(cls, params: VpinParameters, arrays: dict[str, np.ndarray]) -> VpinState:
        """Restore a :meth:`to_arrays` snapshot under ``params``.

        Raises
        ------
        ValueError
            ``"state.<name>: ..."`` for a missing, misshaped or inconsistent entry.
        """
        params.validate()
        version = arrays.get("version")
        if version is None or np.ndim(version) != 0 or int(version) != STATE_VERSION:
            raise ValueError(f"state.version: must be {STATE_VERSION}")
        values: dict[str, Any] = {}
        for name, dtype in _STATE_FIELDS.items():
            if name not in arrays:
                raise ValueError(f"state.{name}: missing")
            a = np.asarray(arrays[name])
            want = 2 if name == "window" else 1 if name in _ARRAY_FIELDS else 0
            if a.ndim != want:
                raise ValueError(f"state.{name}: must have {want} dimension(s), got {a.ndim}")
            if np.dtype(dtype).kind == "f" and a.dtype.kind not in "fi":
                raise ValueError(f"state.{name}: must be numeric")
            if np.dtype(dtype).kind == "i" and a.dtype.kind != "i":
                raise ValueError(f"state.{name}: must be an integer array")
            a = a.astype(dtype)
            values[name] = a.copy() if want else a.item()
        n = params.window_buckets
        w = values["window"]
        pend = values["pending_end_ts_ns"].size
        problems = []
        if w.shape[0] != 5 or w.shape[1] > n - 1 or w.shape[1] != min(n - 1, values["buckets"]):
            problems.append(("window", "does not match window_buckets and buckets"))
        if not (values["pending_end_price"].size == values["pending_true_buy"].size == pend):
            problems.append(("pending_end_price", "pending arrays differ in length"))
        if values["trade_buckets"] != values["buckets"] + pend:
            problems.append(("trade_buckets", "must equal buckets + pending buckets"))
        if values["vpin_history"].size > params.cdf_history:
            problems.append(("vpin_history", "longer than cdf_history"))
        if min(values["trades"], values["bars"], values["buckets"]) < 0:
            problems.append(("trades", "counts must be >= 0"))
        if values["cum_volume"] < values["bar_end_volume"] or not math.isfinite(
            values["cum_volume"]
        ):
            problems.append(("cum_volume", "inconsistent with bar_end_volume"))
        if problems:
            raise ValueError(f"state.{problems[0][0]}: {problems[0][1]}")
        return cls(params, **values)


def _check_trades(
    ts_ns: Any,
    price: Any,
    size: Any,
    aggressor_side: Any,
    last_ts_ns: int,
    params: VpinParameters,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated (ts int64, price, size, isbuy float 1.0 / 0.0, or None when unknown)."""
    ts = np.asarray(ts_ns)
    if ts.dtype.kind not in "iu":
        raise ValueError(f"ts_ns: must be integer ns since the epoch, got dtype {ts.dtype}")
    ts = ts.astype(np.int64, copy=False)
    price = np.asarray(price, dtype=np.float64)
    size = np.asarray(size, dtype=np.float64)
    n = ts.shape[0] if ts.ndim == 1 else -1
    if ts.ndim != 1:
        raise ValueError(f"ts_ns: must be a vector, got shape {ts.shape}")
    if price.shape != (n,):
        raise ValueError(f"price: has shape {price.shape}; ts_ns has {n} values")
    if size.shape != (n,):
        raise ValueError(f"size: has shape {size.shape}; ts_ns has {n} values")
    side = None if aggressor_side is None else np.asarray(aggressor_side)
    if side is not None and side.size == 0:
        side = None
    if side is not None and side.shape != (n,):
        raise ValueError(f"aggressor_side: has shape {side.shape}; ts_ns has {n} values")
    if n == 0:
        return ts, price, size, None
    if not (price.min() > 0 and price.max() < math.inf):  # NaN fails both
        bad = ~(price > 0) | ~np.isfinite(price)
        i = int(np.argmax(bad))
        raise ValueError(f"price: row {i} is {price[i]}; prices must be finite and > 0")
    if not (size.min() > 0 and size.max() < math.inf):
        bad = ~(size > 0) | ~np.isfinite(size)
        i = int(np.argmax(bad))
        raise ValueError(f"size: row {i} is {size[i]}; sizes must be finite and > 0")
    if ts[0] < last_ts_ns:
        raise ValueError(f"ts_ns: row 0 ({ts[0]}) is before the symbol's last trade ({last_ts_ns})")
    if n > 1:
        dec = ts[1:] < ts[:-1]
        if dec.any():
            i = int(np.argmax(dec)) + 1
            raise ValueError(f"ts_ns: row {i} ({ts[i]}) is before row {i - 1} ({ts[i - 1]})")
    if side is None:
        if params.classification == "true_side":
            raise ValueError("aggressor_side: required for classification true_side")
        isbuy = None
    else:
        if side.dtype.kind not in "iu":
            raise ValueError("aggressor_side: must be integers +1 / -1")
        bad = (side != 1) & (side != -1)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"aggressor_side: row {i} is {side[i]}; must be +1 (buy) or -1 (sell)")
        isbuy = (side > 0).astype(np.float64)
    return ts, price, size, isbuy


# --------------------------------------------------------------------------
# batch
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class VpinResult:
    """:func:`compute_vpin`'s result.

    Attributes
    ----------
    buckets : Buckets
        Every complete bucket (those whose upper boundary lies in a closed bar).
    trades, bars : int
        Trades read; time bars closed.
    kyle_lambda, kyle_lambda_stderr, kyle_lambda_r2 : float
        OLS slope (US dollars per share), its standard error and R^2, over all
        buckets: bucket price change on signed volume (NaN with < 3 buckets).
    realised_volatility : float
        sqrt(sum of squared log returns of the bar closes), not annualised.
    sigma : float
        sigma of the bar price change at the end (fixed or expanding), US dollars.
    bvc_accuracy : float
        Share of volume BVC puts on the true side (see :func:`bvc_accuracy`);
        NaN without aggressor sides.
    vpin_correlation, vpin_mean_abs_difference : float
        Pearson correlation and mean absolute difference of VPIN from BVC and
        VPIN from the true sides over the buckets where both are defined; NaN
        without aggressor sides.
    """

    buckets: Buckets
    trades: int
    bars: int
    kyle_lambda: float
    kyle_lambda_stderr: float
    kyle_lambda_r2: float
    realised_volatility: float
    sigma: float
    bvc_accuracy: float
    vpin_correlation: float
    vpin_mean_abs_difference: float


def compute_buckets(
    ts_ns: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    aggressor_side: np.ndarray | None,
    params: VpinParameters,
) -> tuple[Buckets, VpinState]:
    """Every complete bucket of a symbol's trades, and the state after them
    (:class:`VpinState` fed once; see the module docstring for the method)."""
    state = VpinState(params.validate())
    return state.update(ts_ns, price, size, aggressor_side), state


def kyle_lambda(buckets: Buckets, bucket_volume: float) -> tuple[float, float, float]:
    """OLS slope of the bucket price change on the signed volume (with
    intercept) over all buckets: (lambda in US dollars per share, its standard
    error, R^2); NaNs with fewer than 3 buckets or no variance in signed volume.

    Kyle (1985), "Continuous Auctions and Insider Trading", Econometrica 53(6);
    estimated per volume bucket as in ELO's Section 3.
    """
    k = len(buckets)
    if k < 3:
        return math.nan, math.nan, math.nan
    x = 2.0 * buckets.buy_volume - bucket_volume
    y = np.diff(buckets.end_price, prepend=np.nan)[1:]
    x = x[1:]
    xm, ym = x - x.mean(), y - y.mean()
    sxx = float(xm @ xm)
    if not sxx > 0 or y.size < 3:
        return math.nan, math.nan, math.nan
    slope = float(xm @ ym) / sxx
    resid = ym - slope * xm
    syy = float(ym @ ym)
    se = math.sqrt(float(resid @ resid) / (y.size - 2) / sxx)
    r2 = 1.0 - float(resid @ resid) / syy if syy > 0 else math.nan
    return slope, se, r2


def bvc_accuracy(buckets: Buckets, bucket_volume: float) -> float:
    """Volume-weighted share of volume BVC puts on the correct side, over buckets:

    ``sum_k [min(B_k, T_k) + min(V - B_k, V - T_k)] / (K V)`` with ``B_k`` the
    BVC and ``T_k`` the true buy volume of bucket k (the bucket-level accuracy
    of Chakrabarty, Pascual and Shkilko (2015), "Evaluating trade
    classification algorithms: Bulk volume classification versus the tick
    rule and the Lee-Ready algorithm", Journal of Financial Markets 25, and of
    Easley, Lopez de Prado and O'Hara (2016), "Discerning information from
    trade data", Journal of Financial Economics 120(2)). NaN without buckets
    or true sides.
    """
    b, t = buckets.bvc_buy_volume, buckets.true_buy_volume
    if b.size == 0 or np.isnan(t).any():
        return math.nan
    v = bucket_volume
    correct = np.minimum(b, t) + np.minimum(v - b, v - t)
    return float(correct.sum() / (b.size * v))


def compute_vpin(
    ts_ns: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    aggressor_side: np.ndarray | None,
    params: VpinParameters,
    stop: Callable[[], bool] | None = None,
) -> VpinResult:
    """VPIN series, bucket imbalances, CDF ranks, Kyle's lambda and realised
    volatility of one symbol's trades (ELO 2012; choices in the module docstring).

    Parameters
    ----------
    ts_ns : (N,) int64 ns since the epoch, non-decreasing
    price : (N,) float64 US dollars, finite, > 0
    size : (N,) float64 shares, finite, > 0
    aggressor_side : (N,) +1 / -1, or None when unknown
    params : VpinParameters

    Raises
    ------
    ValueError
        ``"<field>: <message>"`` for bad trades or parameters.
    """
    check_stop(stop)
    buckets, state = compute_buckets(ts_ns, price, size, aggressor_side, params)
    check_stop(stop)
    lam, se, r2 = kyle_lambda(buckets, params.bucket_volume)
    both = ~np.isnan(buckets.vpin_bvc) & ~np.isnan(buckets.vpin_true_side)
    if both.sum() >= 2:
        a, b = buckets.vpin_bvc[both], buckets.vpin_true_side[both]
        corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else math.nan
        mad = float(np.abs(a - b).mean())
    else:
        corr = mad = math.nan
    return VpinResult(
        buckets=buckets,
        trades=state.trades,
        bars=state.bars,
        kyle_lambda=lam,
        kyle_lambda_stderr=se,
        kyle_lambda_r2=r2,
        realised_volatility=state.realised_volatility,
        sigma=state.sigma,
        bvc_accuracy=bvc_accuracy(buckets, params.bucket_volume),
        vpin_correlation=corr,
        vpin_mean_abs_difference=mad,
    )


# --------------------------------------------------------------------------
# the routable operation (ComputeVpin)
# --------------------------------------------------------------------------
def _run_compute_vpin(
    backend: Backend,
    ts_ns: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    aggressor_side: np.ndarray | None,
    params: VpinParameters,
    stop: Callable[[], bool] | None = None,
) -> VpinResult:
    """:func:`compute_vpin` as the router runs it (host NumPy only)."""
    return compute_vpin(ts_ns, price, size, aggressor_side, params, stop)


def _sample_trades(size: int, rng: np.random.Generator) -> dict[str, Any]:
    """About ``size`` synthetic trades of one symbol for calibration: a trading
    day from 09:30 with exponential gaps (mean 0.5 s), a random walk in whole
    cents around 100 US dollars, sizes of 1 to 500 shares, random sides,
    ELO's bucket of a fiftieth of the volume."""
    n = max(int(size), 10)
    gaps = rng.exponential(0.5e9, n).astype(np.int64) + 1
    ts = 34_200 * 1_000_000_000 + np.cumsum(gaps)
    price = 100.0 + np.cumsum(rng.choice([-0.01, 0.0, 0.01], n))
    price = np.maximum(price, 1.0)
    sz = rng.integers(1, 501, n).astype(np.float64)
    return {
        "ts_ns": ts,
        "price": price,
        "size": sz,
        "aggressor_side": rng.choice(np.array([-1, 1], dtype=np.int8), n),
        "params": VpinParameters(bucket_volume=float(sz.sum() / 50)),
    }


#: ComputeVpin: work = trades.
COMPUTE_VPIN = register(
    Operation(
        "microstructure.compute_vpin",
        _run_compute_vpin,
        lambda inputs: float(len(inputs["ts_ns"])),
        lambda inputs: [],
        _sample_trades,
        calibration_sizes=(1_000, 100_000, 2_000_000),
        backends=("numpy",),
    )
)
