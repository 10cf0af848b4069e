"""The compiled VPIN state machine behind :class:`tickwire.engines.vpin.VpinState`.

One pass over a batch of trades, trade by trade, with the state carried in
two flat vectors (int64 and float64 slots below), the buckets waiting for
their bar's close, a ring of the last ``n - 1`` buckets' window columns and a
ring of the last ``cdf_history - 1`` defined VPIN values. The method (time
bars, expanding sigma, CDF, splitting across bucket boundaries, VPIN, CDF
rank, Kyle's lambda) is the one stated in :mod:`tickwire.engines.vpin`; this
module only runs it.

Why a per-trade state machine: every number depends only on the trades
before it and is computed by the same floating-point operations in the same
order whatever the batch boundaries, so a stream fed in any split gives
bit for bit what one call over all trades gives; and one compiled pass costs
about 10 ns a trade plus a few microseconds a call, where the vectorised
NumPy form cost about 30 NumPy calls (60 us) a batch.

Compiled with Numba (``nopython``, ``nogil``, cached on disk next to this
file). The normal and Student-t CDFs are SciPy's own (``scipy.special``
``ndtr`` and ``stdtr``, called through ``scipy.special.cython_special``), so
the buy fractions equal ``scipy.special.ndtr`` / ``stdtr`` exactly.

No gRPC and no protobuf here.
"""

from __future__ import annotations

import math

import llvmlite.binding as llvm
import numba as nb
import numpy as np
from numba import types
from numba.extending import get_cython_function_address

# The SciPy CDFs, bound by symbol name so that the on-disk cache stays valid
# in every process (a raw address would change between processes).
llvm.add_symbol(
    "tickwire_scipy_ndtr",
    get_cython_function_address("scipy.special.cython_special", "__pyx_fuse_1ndtr"),
)
llvm.add_symbol(
    "tickwire_scipy_stdtr",
    get_cython_function_address("scipy.special.cython_special", "__pyx_fuse_0stdtr"),
)
#: scipy.special.ndtr(x) (double, skip-dispatch flag).
_ndtr = types.ExternalFunction("tickwire_scipy_ndtr", types.float64(types.float64, types.intc))
#: scipy.special.stdtr(df, t) (double, double, skip-dispatch flag).
_stdtr = types.ExternalFunction(
    "tickwire_scipy_stdtr", types.float64(types.float64, types.float64, types.intc)
)

INT64_MIN = np.iinfo(np.int64).min
INT64_MAX = np.iinfo(np.int64).max
#: Most buckets one update may complete (bounds the memory of one batch).
MAX_BUCKETS_PER_UPDATE = 1_000_000

# ---- int64 slots ------------------------------------------------------------
I_TRADES = 0  # trades seen
I_LAST_TS = 1  # time of the last trade, ns (INT64_MIN before any)
I_OPEN_BAR = 2  # id (ts // bar_ns) of the open bar (INT64_MIN before any trade)
I_BARS = 3  # bars closed
I_TRADE_BUCKETS = 4  # bucket boundaries crossed by the trades
I_BUCKETS = 5  # buckets complete (their boundary's bar closed)
I_WIN_HEAD = 6  # ring position of the oldest window column
I_WIN_LEN = 7  # window columns held (<= n - 1 between updates)
I_HIST_HEAD = 8  # ring position of the oldest VPIN in the history
I_HIST_LEN = 9  # VPIN values held (<= cdf_history - 1)
I_PEND_LEN = 10  # buckets waiting for their bar's close
I_WINDOW_N = 11  # parameter: n, buckets per VPIN window
I_BAR_NS = 12  # parameter: bar length, ns
I_CDF_HISTORY = 13  # parameter: VPIN values in the CDF rank
I_STUDENT_T = 14  # parameter: 1 for the Student-t CDF, 0 for the normal
I_TRUE_SIDE = 15  # parameter: 1 to classify by the true side, 0 for BVC
N_I = 16

# ---- float64 slots ----------------------------------------------------------
F_FIRST_PRICE = 0  # the first trade's price (reference of bar 1 and bucket 0)
F_CUM_VOLUME = 1  # shares traded
F_CUM_TRUE_BUY = 2  # true-side buy shares (NaN once a batch had no sides)
F_OPEN_BAR_CLOSE = 3  # last price of the open bar
F_LAST_BAR_CLOSE = 4  # close of the last closed bar
F_BAR_END_VOLUME = 5  # cumulative volume at the last closed bar's end
F_CUM_BVC_BUY = 6  # BVC buy shares up to that bar's end
F_SUM_DP = 7  # sum of the bar price changes
F_SUM_DP2 = 8  # sum of their squares
F_SUM_R2 = 9  # sum of squared log returns of the bar closes
F_TRUE_AT_BOUNDARY = 10  # cumulative true buy at the last crossed boundary
F_BVC_AT_BOUNDARY = 11  # cumulative BVC buy at the last completed boundary
F_LAST_BUCKET_PRICE = 12  # end price of the last complete bucket
F_BUCKET_VOLUME = 13  # parameter: V, shares
F_DOF = 14  # parameter: Student-t degrees of freedom
F_SIGMA = 15  # parameter: fixed sigma (0: expanding)
N_F = 16

# ---- output rows (float64), in Buckets.FLOAT_COLUMNS order ------------------------
O_END_PRICE, O_BUY, O_BVC_BUY, O_TRUE_BUY, O_IMBALANCE = 0, 1, 2, 3, 4
O_VPIN, O_VPIN_BVC, O_VPIN_TRUE, O_CDF_RANK, O_KYLE_LAMBDA = 5, 6, 7, 8, 9
N_OUT = 10

# ---- validation codes -------------------------------------------------------------
OK = 0
BAD_PRICE = 1  # a price not finite or not > 0 (row)
BAD_SIZE = 2  # a size not finite or not > 0 (row)
TS_BEFORE_LAST = 3  # row 0 before the symbol's last trade
TS_DECREASING = 4  # a time before the previous row's (row)
BAD_SIDE = 5  # an aggressor side other than +1 / -1 (row)
TOO_MANY_BUCKETS = 6  # the batch fills more than MAX_BUCKETS_PER_UPDATE buckets
NEED_ROOM = 7  # valid, but the buffers need room for `row` buckets (nothing changed)

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@nb.njit(**_JIT)
def _next_bar_start(bar_id, bar_ns):
    """Start (ns) of the bar after ``bar_id``; INT64_MIN before any bar (every
    trade computes its bar), INT64_MAX where it would overflow."""
    if bar_id == INT64_MIN:
        return INT64_MIN
    if bar_id >= INT64_MAX // bar_ns:
        return INT64_MAX
    return (bar_id + 1) * bar_ns


@nb.njit(**_JIT)
def validate(ts, price, size, side, has_side, istate, fstate):
    """(code, row, new bucket boundaries) of a batch against the state; no
    change to anything. Checks in this order: price, size, time, side, count.

    The usual batch is all good: branch-free passes (which the compiler
    vectorizes) say so, and only then is the volume summed (in trade order,
    as :func:`apply` sums it). A batch with anything wrong goes through
    :func:`_first_violation`, row by row."""
    n = ts.size
    good = True
    for i in range(n):
        p, s = price[i], size[i]
        good &= (p > 0.0) & (p < math.inf) & (s > 0.0) & (s < math.inf)
    for i in range(1, n):
        good &= ts[i] >= ts[i - 1]
    if has_side:
        for i in range(n):
            good &= (side[i] == 1) | (side[i] == -1)
    if not good or (n and ts[0] < istate[I_LAST_TS]):
        return _first_violation(ts, price, size, side, has_side, istate, fstate)
    cum = fstate[F_CUM_VOLUME]
    for i in range(n):
        cum += size[i]
    return _count_boundaries(cum, istate, fstate)


@nb.njit(**_JIT)
def _count_boundaries(cum, istate, fstate):
    """(OK, 0, bucket boundaries up to cumulative volume ``cum``), or
    TOO_MANY_BUCKETS."""
    vb = fstate[F_BUCKET_VOLUME]
    k = istate[I_TRADE_BUCKETS]
    count = 0
    while float(k + 1) * vb <= cum:
        k += 1
        count += 1
        if count > MAX_BUCKETS_PER_UPDATE:
            return TOO_MANY_BUCKETS, 0, count
    return OK, 0, count


@nb.njit(**_JIT)
def _first_violation(ts, price, size, side, has_side, istate, fstate):
    """:func:`validate`, row by row: the first violation in check order."""
    n = ts.size
    bad_p = bad_s = bad_t = bad_side = -1
    cum = fstate[F_CUM_VOLUME]
    for i in range(n):
        p = price[i]
        if bad_p < 0 and not (p > 0.0 and p < math.inf):
            bad_p = i
        s = size[i]
        if bad_s < 0 and not (s > 0.0 and s < math.inf):
            bad_s = i
        cum += s
        if bad_t < 0 and i > 0 and ts[i] < ts[i - 1]:
            bad_t = i
        if has_side and bad_side < 0 and side[i] != 1 and side[i] != -1:
            bad_side = i
    if bad_p >= 0:
        return BAD_PRICE, bad_p, 0
    if bad_s >= 0:
        return BAD_SIZE, bad_s, 0
    if n and ts[0] < istate[I_LAST_TS]:
        return TS_BEFORE_LAST, 0, 0
    if bad_t >= 0:
        return TS_DECREASING, bad_t, 0
    if bad_side >= 0:
        return BAD_SIDE, bad_side, 0
    return _count_boundaries(cum, istate, fstate)


@nb.njit(**_JIT)
def apply(
    ts, price, size, side, has_side, istate, fstate, pend_ts, pend_f, win, hist, out_i, out_f
):
    """Apply a batch of trades that :func:`validate` passed to the state (in
    place) and return the number ``k`` of buckets completed, written to
    ``out_i[:, :k]`` (bucket index, end time) and ``out_f[:, :k]`` (the
    ``O_*`` rows).

    ts (N,) int64 ns; price, size (N,) float64; side (N,) int64 +1 / -1
    (ignored unless ``has_side``); pend_ts (C,) int64 and pend_f (2, C)
    float64 (end price, true buy volume) of the pending buckets; win (5, n)
    float64 ring; hist (H,) float64 ring; out_i (2, B) int64, out_f (N_OUT,
    B) float64. The caller sizes the buffers for the ``b`` new boundaries
    :func:`validate` counted: C and B >= pending + b, and H >=
    min(cdf_history - 1, held + pending + b) or H == held == cdf_history - 1.
    """
    n_tr = ts.size
    if n_tr == 0:
        return 0
    # ---- parameters -------------------------------------------------------
    wn = istate[I_WINDOW_N]
    bar_ns = istate[I_BAR_NS]
    keep_hist = istate[I_CDF_HISTORY] - 1
    student = istate[I_STUDENT_T] == 1
    true_side = istate[I_TRUE_SIDE] == 1
    vb = fstate[F_BUCKET_VOLUME]
    dof = fstate[F_DOF]
    fixed_sigma = fstate[F_SIGMA]
    nan = math.nan
    plen = istate[I_PEND_LEN]
    hh, hlen = istate[I_HIST_HEAD], istate[I_HIST_LEN]

    # ---- state into locals -----------------------------------------------------
    trades = istate[I_TRADES]
    open_bar = istate[I_OPEN_BAR]
    bars = istate[I_BARS]
    tb = istate[I_TRADE_BUCKETS]
    buckets = istate[I_BUCKETS]
    wh, wlen = istate[I_WIN_HEAD], istate[I_WIN_LEN]
    first_price = fstate[F_FIRST_PRICE] if trades else price[0]
    cum = fstate[F_CUM_VOLUME]
    cum_true = fstate[F_CUM_TRUE_BUY]
    open_close = fstate[F_OPEN_BAR_CLOSE]
    last_close = fstate[F_LAST_BAR_CLOSE]
    bar_end = fstate[F_BAR_END_VOLUME]
    cum_bvc = fstate[F_CUM_BVC_BUY]
    s1, s2, r2 = fstate[F_SUM_DP], fstate[F_SUM_DP2], fstate[F_SUM_R2]
    true_at_b = fstate[F_TRUE_AT_BOUNDARY]
    bvc_at_b = fstate[F_BVC_AT_BOUNDARY]
    last_bucket_price = fstate[F_LAST_BUCKET_PRICE]
    sides = has_side and not math.isnan(cum_true)
    if not sides:
        cum_true = nan
    pfront = 0  # first pending bucket not yet complete
    m = 0  # buckets completed
    bid = open_bar
    next_start = _next_bar_start(open_bar, bar_ns)  # trades before it are in the open bar

    i = 0
    while i <= n_tr:
        # ---- the usual trade: in the open bar, completing no bucket ------
        # (what the general step below does for it, without its branches:
        # the same additions in the same order)
        boundary = float(tb + 1) * vb
        while i < n_tr and ts[i] < next_start:
            s = size[i]
            c = cum + s
            if boundary <= c:
                break
            cum = c
            if sides:
                ib = 1.0 if side[i] > 0 else 0.0
                cum_true = cum_true + s * ib
            open_close = price[i]
            i += 1
        # ---- close the open bar when trade i starts a later one ----------
        closing = False
        if i < n_tr and ts[i] >= next_start:  # one integer division a bar, not a trade
            bid = ts[i] // bar_ns
            closing = open_bar != INT64_MIN and bid != open_bar
        if closing:
            c = open_close
            e = cum  # the bar's trades are all in
            prev_close = last_close if bars else first_price
            dp = c - prev_close
            r = math.log(c) - math.log(prev_close)
            s1 += dp
            s2 += dp * dp
            r2 += r * r
            bars += 1
            if fixed_sigma > 0.0:
                sigma = fixed_sigma
            else:
                nbars = float(bars)
                mean = s1 / nbars
                sigma = math.sqrt(max(s2 / nbars - mean * mean, 0.0))
            z = dp / sigma if sigma > 0.0 else 0.0
            frac = _stdtr(dof, z, 0) if student else _ndtr(z, 0)
            cb_start = cum_bvc
            cum_bvc = cum_bvc + frac * (e - bar_end)
            # ---- the buckets whose upper boundary lies in this bar -------
            while pfront < plen:
                x = float(buckets + 1) * vb
                if not x <= e:
                    break
                cb_x = cb_start + frac * (x - bar_end)
                bvc_b = cb_x - bvc_at_b
                bvc_at_b = cb_x
                true_b = pend_f[1, pfront]
                end_price = pend_f[0, pfront]
                buy = true_b if true_side else bvc_b
                signed = 2.0 * buy - vb
                ob = abs(2.0 * bvc_b - vb) / vb
                ot = abs(2.0 * true_b - vb) / vb
                prev_price = last_bucket_price if buckets else first_price
                # window column: |OI| by classification, BVC, true side, x, y
                slot = (wh + wlen) % wn
                win[0, slot] = ot if true_side else ob
                win[1, slot] = ob
                win[2, slot] = ot
                win[3, slot] = signed
                win[4, slot] = end_price - prev_price
                wlen += 1
                vp = vp_b = vp_t = lam = rank = nan
                if wlen == wn:  # a full window: sums oldest to newest
                    a0 = a1 = a2 = sx = sy = sxy = sxx = 0.0
                    for j in range(wn):  # ring slots wh .. wn - 1, then 0 .. wh - 1
                        q = wh + j if j < wn - wh else j - (wn - wh)
                        a0 += win[0, q]
                        a1 += win[1, q]
                        a2 += win[2, q]
                        xv, yv = win[3, q], win[4, q]
                        sx += xv
                        sy += yv
                        sxy += xv * yv
                        sxx += xv * xv
                    vp, vp_b, vp_t = a0 / wn, a1 / wn, a2 / wn
                    den = wn * sxx - sx * sx
                    if den > 0.0:
                        lam = (wn * sxy - sx * sy) / den
                    wh = (wh + 1) % wn
                    wlen -= 1
                    if not math.isnan(vp):  # empirical CDF rank, then remember it
                        le = 1
                        hcap = hist.size
                        tail = min(hlen, hcap - hh)  # the ring in two runs, no division
                        for j in range(tail):
                            if hist[hh + j] <= vp:
                                le += 1
                        for j in range(hlen - tail):
                            if hist[j] <= vp:
                                le += 1
                        rank = le / (hlen + 1)
                        if keep_hist > 0:
                            if hlen < hcap:
                                hist[(hh + hlen) % hcap] = vp
                                hlen += 1
                            else:
                                hist[hh] = vp
                                hh = (hh + 1) % hcap
                out_i[0, m] = buckets
                out_i[1, m] = pend_ts[pfront]
                out_f[O_END_PRICE, m] = end_price
                out_f[O_BUY, m] = buy
                out_f[O_BVC_BUY, m] = bvc_b
                out_f[O_TRUE_BUY, m] = true_b
                out_f[O_IMBALANCE, m] = signed / vb
                out_f[O_VPIN, m] = vp
                out_f[O_VPIN_BVC, m] = vp_b
                out_f[O_VPIN_TRUE, m] = vp_t
                out_f[O_CDF_RANK, m] = rank
                out_f[O_KYLE_LAMBDA, m] = lam
                last_bucket_price = end_price
                buckets += 1
                pfront += 1
                m += 1
            last_close = c
            bar_end = e
        if i == n_tr:
            break
        # ---- trade i: volume, true side, bucket boundaries it crosses ----
        if bid != open_bar:
            open_bar = bid
            next_start = _next_bar_start(open_bar, bar_ns)
        open_close = price[i]
        s = size[i]
        cum_before = cum
        cum = cum + s
        ib = 0.0
        true_before = cum_true
        if sides:
            ib = 1.0 if side[i] > 0 else 0.0
            cum_true = cum_true + s * ib
        while float(tb + 1) * vb <= cum:
            x = float(tb + 1) * vb
            tb += 1
            ct_x = true_before + ib * (x - cum_before) if sides else nan
            pend_ts[plen] = ts[i]
            pend_f[0, plen] = price[i]
            pend_f[1, plen] = ct_x - true_at_b
            true_at_b = ct_x
            plen += 1
        i += 1

    # ---- the pending buckets to the front; state back -----------------------
    left = plen - pfront
    if pfront:
        for j in range(left):
            pend_ts[j] = pend_ts[pfront + j]
            pend_f[0, j] = pend_f[0, pfront + j]
            pend_f[1, j] = pend_f[1, pfront + j]
    istate[I_TRADES] = trades + n_tr
    istate[I_LAST_TS] = ts[n_tr - 1]
    istate[I_OPEN_BAR] = open_bar
    istate[I_BARS] = bars
    istate[I_TRADE_BUCKETS] = tb
    istate[I_BUCKETS] = buckets
    istate[I_WIN_HEAD] = wh
    istate[I_WIN_LEN] = wlen
    istate[I_HIST_HEAD] = hh
    istate[I_HIST_LEN] = hlen
    istate[I_PEND_LEN] = left
    fstate[F_FIRST_PRICE] = first_price
    fstate[F_CUM_VOLUME] = cum
    fstate[F_CUM_TRUE_BUY] = cum_true
    fstate[F_OPEN_BAR_CLOSE] = open_close
    fstate[F_LAST_BAR_CLOSE] = last_close
    fstate[F_BAR_END_VOLUME] = bar_end
    fstate[F_CUM_BVC_BUY] = cum_bvc
    fstate[F_SUM_DP], fstate[F_SUM_DP2], fstate[F_SUM_R2] = s1, s2, r2
    fstate[F_TRUE_AT_BOUNDARY] = true_at_b
    fstate[F_BVC_AT_BOUNDARY] = bvc_at_b
    fstate[F_LAST_BUCKET_PRICE] = last_bucket_price
    return m


@nb.njit(**_JIT)
def update(
    ts, price, size, side, has_side, istate, fstate, pend_ts, pend_f, win, hist, out_i, out_f
):
    """:func:`validate`, then :func:`apply` when the buffers have room (one
    call from Python in the usual case). Returns ``(code, row, k)``: a
    validation code and row (nothing changed), ``NEED_ROOM`` and the number
    of buckets the buffers need room for (nothing changed), or ``OK`` and
    the number ``k`` of buckets completed."""
    code, row, new = validate(ts, price, size, side, has_side, istate, fstate)
    if code != OK:
        return code, row, 0
    most = istate[I_PEND_LEN] + new
    keep_hist = istate[I_CDF_HISTORY] - 1
    if (
        most > pend_ts.size
        or most > out_i.shape[1]
        or min(keep_hist, istate[I_HIST_LEN] + most) > hist.size
    ):
        return NEED_ROOM, most, 0
    m = apply(
        ts, price, size, side, has_side, istate, fstate, pend_ts, pend_f, win, hist, out_i, out_f
    )
    return OK, 0, m


def warm_up() -> None:
    """Load (or compile, once per checkout) the kernels: a tiny update with
    and without sides, so that the first real call pays nothing extra."""
    for has_side in (False, True):
        istate = np.zeros(N_I, np.int64)
        istate[I_LAST_TS] = istate[I_OPEN_BAR] = INT64_MIN
        istate[I_WINDOW_N], istate[I_BAR_NS], istate[I_CDF_HISTORY] = 1, 1, 2
        fstate = np.zeros(N_F)
        fstate[F_BUCKET_VOLUME] = 1.0
        ts, ones, side = np.arange(3, dtype=np.int64), np.ones(3), np.ones(3, np.int64)
        code, _, b = validate(ts, ones, ones, side, has_side, istate, fstate)
        assert code == OK and b == 3
        code, _, m = update(ts, ones, ones, side, has_side, istate, fstate, np.empty(3, np.int64),
                            np.empty((2, 3)), np.empty((5, 1)), np.empty(1),
                            np.empty((2, 3), np.int64), np.empty((N_OUT, 3)))  # fmt: skip
        assert code == OK and m == 2  # the third bucket waits for its bar's close
