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

Exactness in a stream: the state is a machine that takes one trade at a
time (:mod:`tickwire.engines.vpin_kernel`, compiled with Numba): every number
depends only on the trades before it and is computed by the same operations
in the same order however the trades are split into batches, so a stream
gives bit for bit the batch result. Window sums add the window's ``n`` values
oldest first. State is O(window_buckets + cdf_history + buckets awaiting
their bar's close), never O(trades).

Speed: one compiled pass over the batch, about 10 ns a trade plus a few
microseconds a call (a 1,000-trade batch of AAPL: about 16 us, against about
65 us for the vectorised NumPy form this replaced); the normal and Student-t
CDFs are SciPy's own ``ndtr`` / ``stdtr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.engines import vpin_kernel as k
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
MAX_BUCKETS_PER_UPDATE = k.MAX_BUCKETS_PER_UPDATE
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


_INT_COLUMNS = ("index", "end_ts_ns")
_FLOAT_COLUMNS = (
    "end_price", "buy_volume", "bvc_buy_volume", "true_buy_volume", "order_imbalance",
    "vpin", "vpin_bvc", "vpin_true_side", "cdf_rank", "kyle_lambda",
)  # fmt: skip


def _column(name: str, doc: str) -> property:
    """A column of :class:`Buckets`: its row of ``ints`` or ``floats``."""
    if name in _INT_COLUMNS:
        row = _INT_COLUMNS.index(name)
        return property(lambda self: self.ints[row], doc=doc)
    row = _FLOAT_COLUMNS.index(name)
    return property(lambda self: self.floats[row], doc=doc)


class Buckets:
    """Completed volume buckets, columnar; every column has shape (K,).

    Columns
    -------
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

    The columns are rows of two C-contiguous blocks: ``ints`` (2, K) int64
    (:data:`INT_COLUMNS`) and ``floats`` (10, K) float64
    (:data:`FLOAT_COLUMNS`, the engine's output rows ``vpin_kernel.O_*``),
    so an update hands its result over as two copies and a wire encoder can
    take the blocks whole. Build one from columns (``Buckets(index=...,
    ...)``, positionally in :data:`COLUMNS` order) or from blocks
    (:meth:`from_blocks`); treat it as read-only.
    """

    INT_COLUMNS = _INT_COLUMNS
    FLOAT_COLUMNS = _FLOAT_COLUMNS
    COLUMNS = INT_COLUMNS + FLOAT_COLUMNS

    __slots__ = ("floats", "ints")

    def __init__(
        self,
        index: np.ndarray,
        end_ts_ns: np.ndarray,
        end_price: np.ndarray,
        buy_volume: np.ndarray,
        bvc_buy_volume: np.ndarray,
        true_buy_volume: np.ndarray,
        order_imbalance: np.ndarray,
        vpin: np.ndarray,
        vpin_bvc: np.ndarray,
        vpin_true_side: np.ndarray,
        cdf_rank: np.ndarray,
        kyle_lambda: np.ndarray,
    ) -> None:
        self.ints = np.array([index, end_ts_ns], dtype=np.int64).reshape(2, -1)
        self.floats = np.array(
            [end_price, buy_volume, bvc_buy_volume, true_buy_volume, order_imbalance, vpin,
             vpin_bvc, vpin_true_side, cdf_rank, kyle_lambda],
            dtype=np.float64,
        ).reshape(10, -1)  # fmt: skip

    @classmethod
    def from_blocks(cls, ints: np.ndarray, floats: np.ndarray) -> Buckets:
        """Buckets over ``ints`` (2, K) int64 and ``floats`` (10, K) float64,
        both C-contiguous, rows in :data:`INT_COLUMNS` / :data:`FLOAT_COLUMNS`
        order (taken as they are, not copied)."""
        self = object.__new__(cls)
        self.ints = ints
        self.floats = floats
        return self

    index = _column("index", "int64, bucket number")
    end_ts_ns = _column("end_ts_ns", "int64, ns since the epoch")
    end_price = _column("end_price", "float64, US dollars")
    buy_volume = _column("buy_volume", "float64, shares")
    bvc_buy_volume = _column("bvc_buy_volume", "float64, shares")
    true_buy_volume = _column("true_buy_volume", "float64, shares")
    order_imbalance = _column("order_imbalance", "float64 in [-1, 1]")
    vpin = _column("vpin", "float64")
    vpin_bvc = _column("vpin_bvc", "float64")
    vpin_true_side = _column("vpin_true_side", "float64")
    cdf_rank = _column("cdf_rank", "float64 in (0, 1]")
    kyle_lambda = _column("kyle_lambda", "float64, US dollars per share")

    def __len__(self) -> int:
        return self.ints.shape[1]

    def __repr__(self) -> str:
        return f"Buckets(K={len(self)}, index={self.index!r})"

    @staticmethod
    def concat(parts: list[Buckets]) -> Buckets:
        """The buckets of several updates, in order."""
        if not parts:
            return _empty_buckets()
        return Buckets.from_blocks(
            np.concatenate([p.ints for p in parts], axis=1),
            np.concatenate([p.floats for p in parts], axis=1),
        )


def _empty_buckets() -> Buckets:
    return Buckets.from_blocks(np.empty((2, 0), np.int64), np.empty((10, 0)))


#: The result of an update that completes no bucket (shared; its arrays are
#: empty and read-only).
_EMPTY_BUCKETS = _empty_buckets()
_EMPTY_BUCKETS.ints.flags.writeable = False
_EMPTY_BUCKETS.floats.flags.writeable = False


#: Snapshot entries (scalars unless in _ARRAY_FIELDS) and their dtypes.
_STATE_FIELDS: dict[str, Any] = {
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
#: Scalar snapshot entries and their slot in the kernel's state vectors.
_INT_SLOTS = {
    "trades": k.I_TRADES,
    "last_ts_ns": k.I_LAST_TS,
    "open_bar_id": k.I_OPEN_BAR,
    "bars": k.I_BARS,
    "trade_buckets": k.I_TRADE_BUCKETS,
    "buckets": k.I_BUCKETS,
}
_FLOAT_SLOTS = {
    "first_price": k.F_FIRST_PRICE,
    "cum_volume": k.F_CUM_VOLUME,
    "cum_true_buy": k.F_CUM_TRUE_BUY,
    "open_bar_close": k.F_OPEN_BAR_CLOSE,
    "last_bar_close": k.F_LAST_BAR_CLOSE,
    "bar_end_volume": k.F_BAR_END_VOLUME,
    "cum_bvc_buy": k.F_CUM_BVC_BUY,
    "sum_dp": k.F_SUM_DP,
    "sum_dp2": k.F_SUM_DP2,
    "sum_r2": k.F_SUM_R2,
    "true_buy_at_boundary": k.F_TRUE_AT_BOUNDARY,
    "bvc_buy_at_boundary": k.F_BVC_AT_BOUNDARY,
    "last_bucket_price": k.F_LAST_BUCKET_PRICE,
}
_NO_SIDE = np.empty(0, np.int64)


class VpinState:
    """Incremental VPIN of one symbol: feed trades in time order, get every
    bucket as soon as it is complete.

    ``VpinState(p).update(all trades)`` is :func:`compute_buckets`; feeding the
    same trades in any number of chunks gives bit-identical buckets and state
    (one compiled pass, trade by trade: :mod:`tickwire.engines.vpin_kernel`).
    An update that raises ``ValueError`` leaves the state unchanged. Memory:
    O(window_buckets + cdf_history + buckets awaiting their bar's close).

    The scalar attributes below (``trades``, ``cum_volume``, ...) and the
    arrays ``pending_*``, ``window`` (5, <= n - 1: the last buckets' |OI| by
    classification, |OI| BVC, |OI| true side, signed volume in shares, price
    change in US dollars; oldest first) and ``vpin_history`` (oldest first)
    are read-only views of the state; :meth:`to_arrays` holds all of them.
    """

    __slots__ = ("_f", "_hist", "_i", "_out_f", "_out_i", "_pend_f", "_pend_ts", "_win", "params")

    def __init__(self, params: VpinParameters) -> None:
        self.params = params
        i = np.zeros(k.N_I, np.int64)
        i[k.I_LAST_TS] = i[k.I_OPEN_BAR] = _INT64_MIN
        i[k.I_WINDOW_N] = params.window_buckets
        i[k.I_BAR_NS] = params.bar_ns
        i[k.I_CDF_HISTORY] = params.cdf_history
        i[k.I_STUDENT_T] = params.cdf == "student_t"
        i[k.I_TRUE_SIDE] = params.classification == "true_side"
        f = np.zeros(k.N_F)
        f[[k.F_FIRST_PRICE, k.F_OPEN_BAR_CLOSE, k.F_LAST_BAR_CLOSE, k.F_LAST_BUCKET_PRICE]] = np.nan
        f[k.F_BUCKET_VOLUME] = params.bucket_volume
        f[k.F_DOF] = params.degrees_of_freedom
        f[k.F_SIGMA] = params.sigma
        self._i, self._f = i, f
        self._pend_ts = np.empty(0, np.int64)
        self._pend_f = np.empty((2, 0))
        self._win = np.empty((5, params.window_buckets))
        self._hist = np.empty(0)
        self._out_i, self._out_f = np.empty((2, 0), np.int64), np.empty((k.N_OUT, 0))

    # ----- the state, by name ----------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        slot = _INT_SLOTS.get(name)
        if slot is not None:
            return int(self._i[slot])
        slot = _FLOAT_SLOTS.get(name)
        if slot is not None:
            return float(self._f[slot])
        raise AttributeError(name)

    def kernel_state(self) -> tuple[np.ndarray, ...]:
        """The arguments of :func:`vpin_kernel.update` after the trades and
        ``has_side``: (istate, fstate, pend_ts, pend_f, win, hist, out_i,
        out_f), for compiled callers that run the kernel on this state
        themselves (the StreamVpin wire path). Take it afresh for each call
        (a growth replaces the buffers). A call that returns anything but
        ``OK`` changed nothing; the caller then goes through :meth:`update`,
        which grows the buffers (``NEED_ROOM``) or raises the error.
        ``OK`` with ``k`` buckets: they are ``out_i[:, :k]`` and
        ``out_f[:, :k]`` (rows in :data:`Buckets.INT_COLUMNS` /
        :data:`Buckets.FLOAT_COLUMNS` order) until the next call."""
        return (self._i, self._f, self._pend_ts, self._pend_f, self._win, self._hist,
                self._out_i, self._out_f)  # fmt: skip

    @property
    def needs_sides(self) -> bool:
        """Whether a batch must carry aggressor sides (classification true_side)."""
        return self.params.classification == "true_side"

    @property
    def pending_end_ts_ns(self) -> np.ndarray:
        """(P,) int64: end time of each bucket waiting for its bar's close."""
        return self._pend_ts[: self._i[k.I_PEND_LEN]].copy()

    @property
    def pending_end_price(self) -> np.ndarray:
        """(P,) float64: end price of each pending bucket, US dollars."""
        return self._pend_f[0, : self._i[k.I_PEND_LEN]].copy()

    @property
    def pending_true_buy(self) -> np.ndarray:
        """(P,) float64: true-side buy volume of each pending bucket, shares."""
        return self._pend_f[1, : self._i[k.I_PEND_LEN]].copy()

    @property
    def window(self) -> np.ndarray:
        """(5, h) float64, h <= window_buckets - 1, oldest bucket first."""
        n = self.params.window_buckets
        order = (self._i[k.I_WIN_HEAD] + np.arange(self._i[k.I_WIN_LEN])) % n
        return self._win[:, order]

    @property
    def vpin_history(self) -> np.ndarray:
        """(H,) float64, H <= cdf_history - 1: the last defined VPIN values, oldest first."""
        size = self._hist.size
        if size == 0:
            return np.empty(0)
        order = (self._i[k.I_HIST_HEAD] + np.arange(self._i[k.I_HIST_LEN])) % size
        return self._hist[order]

    # ----- derived -------------------------------------------------------------
    @property
    def realised_volatility(self) -> float:
        """sqrt of the sum of squared log returns of the closed bars' closes."""
        return math.sqrt(self._f[k.F_SUM_R2])

    @property
    def sigma(self) -> float:
        """The sigma of the bar price change in use now (fixed or expanding)."""
        if self.params.sigma > 0:
            return self.params.sigma
        bars = int(self._i[k.I_BARS])
        if bars == 0:
            return math.nan
        m = self._f[k.F_SUM_DP] / bars
        return math.sqrt(max(self._f[k.F_SUM_DP2] / bars - m * m, 0.0))

    @property
    def last_vpin(self) -> float:
        """The latest defined VPIN, NaN before ``window_buckets`` buckets."""
        hlen = int(self._i[k.I_HIST_LEN])
        if hlen == 0:
            return math.nan
        return float(self._hist[(self._i[k.I_HIST_HEAD] + hlen - 1) % self._hist.size])

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
        ts, price, size, side = _prepare_trades(ts_ns, price, size, aggressor_side, self.params)
        has_side = side is not None
        side_arg = side if has_side else _NO_SIDE
        i = self._i
        while True:  # twice only for a batch larger than any before: grow, then apply
            code, row, m = k.update(
                ts, price, size, side_arg, has_side, i, self._f, self._pend_ts, self._pend_f,
                self._win, self._hist, self._out_i, self._out_f,
            )  # fmt: skip
            if code != k.NEED_ROOM:
                break
            self._reserve(row)
        if code != k.OK:
            _raise_bad_trades(code, row, ts, price, size, side, int(i[k.I_LAST_TS]))
        if m == 0:
            return _EMPTY_BUCKETS
        return Buckets.from_blocks(self._out_i[:, :m].copy(), self._out_f[:, :m].copy())

    def _reserve(self, most: int) -> None:
        """Room for ``most`` more buckets in the pending, output and history
        buffers (doubling; the history never beyond cdf_history - 1)."""
        if most > self._pend_ts.size:
            cap = max(2 * self._pend_ts.size, most, 8)
            held = int(self._i[k.I_PEND_LEN])
            ts, f = np.empty(cap, np.int64), np.empty((2, cap))
            ts[:held], f[:, :held] = self._pend_ts[:held], self._pend_f[:, :held]
            self._pend_ts, self._pend_f = ts, f
        if most > self._out_i.shape[1]:
            cap = max(2 * self._out_i.shape[1], most, 8)
            self._out_i, self._out_f = np.empty((2, cap), np.int64), np.empty((k.N_OUT, cap))
        keep = self.params.cdf_history - 1
        want = min(keep, int(self._i[k.I_HIST_LEN]) + most)
        if want > self._hist.size:
            held = self.vpin_history  # oldest first
            grown = np.empty(min(max(2 * self._hist.size, want, 16), keep))
            grown[: held.size] = held
            self._hist = grown
            self._i[k.I_HIST_HEAD] = 0

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
        if values["vpin_history"].size > params.cdf_history - 1:
            problems.append(("vpin_history", "longer than cdf_history - 1"))
        if min(values["trades"], values["bars"], values["buckets"]) < 0:
            problems.append(("trades", "counts must be >= 0"))
        if values["cum_volume"] < values["bar_end_volume"] or not math.isfinite(
            values["cum_volume"]
        ):
            problems.append(("cum_volume", "inconsistent with bar_end_volume"))
        if problems:
            raise ValueError(f"state.{problems[0][0]}: {problems[0][1]}")
        s = cls(params)
        for name, slot in _INT_SLOTS.items():
            s._i[slot] = values[name]
        for name, slot in _FLOAT_SLOTS.items():
            s._f[slot] = values[name]
        s._pend_ts = values["pending_end_ts_ns"]
        s._pend_f = np.stack([values["pending_end_price"], values["pending_true_buy"]])
        s._i[k.I_PEND_LEN] = pend
        s._win[:, : w.shape[1]] = w
        s._i[k.I_WIN_HEAD], s._i[k.I_WIN_LEN] = 0, w.shape[1]
        s._hist = values["vpin_history"]
        s._i[k.I_HIST_HEAD], s._i[k.I_HIST_LEN] = 0, s._hist.size
        return s


def warm_up() -> None:
    """Load the compiled state machine (compile it, once per checkout, when
    its on-disk cache is missing)."""
    k.warm_up()


def _prepare_trades(
    ts_ns: Any, price: Any, size: Any, aggressor_side: Any, params: VpinParameters
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Contiguous (ts int64, price, size, side int64 or None when unknown),
    with dtypes and shapes checked (values are the kernel's to check).

    Raises
    ------
    ValueError
        ``"<field>: <message>"``.
    """
    ts = np.asarray(ts_ns)
    if ts.dtype.kind not in "iu":
        raise ValueError(f"ts_ns: must be integer ns since the epoch, got dtype {ts.dtype}")
    if ts.ndim != 1:
        raise ValueError(f"ts_ns: must be a vector, got shape {ts.shape}")
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    price = np.ascontiguousarray(price, dtype=np.float64)
    size = np.ascontiguousarray(size, dtype=np.float64)
    n = ts.shape[0]
    if price.shape != (n,):
        raise ValueError(f"price: has shape {price.shape}; ts_ns has {n} values")
    if size.shape != (n,):
        raise ValueError(f"size: has shape {size.shape}; ts_ns has {n} values")
    side = None if aggressor_side is None else np.asarray(aggressor_side)
    if side is not None and side.size == 0:
        side = None
    if side is not None:
        if side.shape != (n,):
            raise ValueError(f"aggressor_side: has shape {side.shape}; ts_ns has {n} values")
        if side.dtype.kind not in "iu":
            raise ValueError("aggressor_side: must be integers +1 / -1")
        if side.dtype.kind == "u" and side.dtype.itemsize == 8 and n and side.max() > 1:
            i = int(np.argmax(side > 1))  # would wrap to a negative int64
            raise ValueError(f"aggressor_side: row {i} is {side[i]}; must be +1 (buy) or -1 (sell)")
        side = np.ascontiguousarray(side, dtype=np.int64)
    elif params.classification == "true_side" and n:
        raise ValueError("aggressor_side: required for classification true_side")
    return ts, price, size, side


def _raise_bad_trades(
    code: int,
    row: int,
    ts: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    side: np.ndarray | None,
    last_ts_ns: int,
) -> None:
    """``ValueError("<field>: <message>")`` for a kernel validation code."""
    if code == k.BAD_PRICE:
        raise ValueError(f"price: row {row} is {price[row]}; prices must be finite and > 0")
    if code == k.BAD_SIZE:
        raise ValueError(f"size: row {row} is {size[row]}; sizes must be finite and > 0")
    if code == k.TS_BEFORE_LAST:
        raise ValueError(f"ts_ns: row 0 ({ts[0]}) is before the symbol's last trade ({last_ts_ns})")
    if code == k.TS_DECREASING:
        raise ValueError(f"ts_ns: row {row} ({ts[row]}) is before row {row - 1} ({ts[row - 1]})")
    if code == k.BAD_SIDE:
        raise ValueError(f"aggressor_side: row {row} is {side[row]}; must be +1 (buy) or -1 (sell)")
    if code == k.TOO_MANY_BUCKETS:
        raise ValueError(
            f"size: these trades fill more than {MAX_BUCKETS_PER_UPDATE} buckets in one batch;"
            " raise bucket_volume or send smaller batches"
        )
    raise AssertionError(f"unknown validation code {code}")


def _check_trades(
    ts_ns: Any,
    price: Any,
    size: Any,
    aggressor_side: Any,
    last_ts_ns: int,
    params: VpinParameters,
) -> None:
    """Everything :meth:`VpinState.update` checks, for trades that follow a
    trade at ``last_ts_ns`` on a fresh state; ``ValueError("<field>: ...")``
    for the first problem."""
    ts, price, size, side = _prepare_trades(ts_ns, price, size, aggressor_side, params)
    state = VpinState(params)
    state._i[k.I_LAST_TS] = last_ts_ns
    has_side = side is not None
    code, row, _ = k.validate(
        ts, price, size, side if has_side else _NO_SIDE, has_side, state._i, state._f
    )
    if code != k.OK:
        _raise_bad_trades(code, row, ts, price, size, side, last_ts_ns)


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
