"""Drawdowns of many return series at once: the drawdown series, the maximum
drawdown and its peak, trough and recovery periods.

Conventions
-----------
returns : (T, K) ndarray of float64
    Simple returns per period, one column per series. NaN marks a missing
    observation and counts as a zero return (the wealth stays flat), as
    empyrical's ``cum_returns`` does.

Wealth starts at 100 before the first period, ``W_t = 100 prod_{s<=t} (1 + r_s)``,
and the drawdown is ``D_t = (W_t - M_t) / M_t`` with ``M_t`` the running
maximum of wealth *including the starting value*: a series that falls on its
first day is in drawdown from the start. These are empyrical-reloaded 0.7.1's
``drawdown_series`` and ``max_drawdown``, computed the same way (the same
starting value of 100, ``np.fmax.accumulate``), so the values agree to the
last bits.

Peak, trough and recovery (pyfolio's ``get_max_drawdown`` definitions): the
trough is the first period of the lowest drawdown; the peak is the last period
at or before the trough whose drawdown is zero (``-1`` when the peak is the
starting value, before the first period); the recovery is the first period
after the trough whose drawdown is zero again (``-1`` when the series has not
recovered by the end). A series that never falls (max drawdown 0) has no
drawdown period: peak, trough and recovery are all -1.

References
----------
empyrical-reloaded 0.7.1, ``empyrical.stats.drawdown_series`` and ``max_drawdown``
    (https://github.com/stefan-jansen/empyrical-reloaded).
pyfolio, ``pyfolio.timeseries.get_max_drawdown_underwater`` (peak, valley,
    recovery), Quantopian.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.engines._common import check_stop
from tickwire.engines.analytics_common import (
    check_returns,
    panel_transfers,
    panel_work,
    sample_panel,
)
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register

#: Wealth before the first period (empyrical's anchor); drawdowns do not depend
#: on it beyond rounding, and using the same value keeps the bits equal.
STARTING_VALUE = 100.0


@dataclass(frozen=True)
class MaxDrawdown:
    """Maximum drawdown of each series and where it happened.

    Attributes
    ----------
    max_drawdown : (K,) ndarray of float64
        Lowest drawdown, <= 0 (e.g. -0.35 is a 35% fall from the peak); NaN
        for an empty series.
    peak_index : (K,) ndarray of int64
        Period of the peak before the trough; -1 when the peak is the
        starting value (before the first period).
    trough_index : (K,) ndarray of int64
        Period of the lowest drawdown (the first one on ties); -1 when the
        series never fell.
    recovery_index : (K,) ndarray of int64
        First period after the trough back at the peak; -1 if never.
    """

    max_drawdown: np.ndarray
    peak_index: np.ndarray
    trough_index: np.ndarray
    recovery_index: np.ndarray


def drawdown_series(returns: np.ndarray, *, with_log_growth: bool = False) -> Any:
    """Drawdown of each series after every period.

    Parameters
    ----------
    returns : (T, K) ndarray of float64
        Simple returns; NaN is a missing observation (a zero return).

    with_log_growth : bool
        Also return the cumulative log return ``log(W_t / 100)`` (T, K),
        taken from the same wealth (the stability statistic uses it).

    Returns
    -------
    (T, K) ndarray of float64, each <= 0: ``W_t / max(100, W_0..W_t) - 1`` as
    ``(W_t - M_t) / M_t``, equal to ``empyrical.drawdown_series``; with
    ``with_log_growth``, the pair (drawdown, log growth).
    """
    r = np.asarray(returns, dtype=np.float64)
    t = r.shape[0]
    wealth = np.empty((t + 1, *r.shape[1:]), dtype=np.float64)
    wealth[0] = STARTING_VALUE
    # empyrical's cum_returns: NaN -> 0, cumprod(1 + r), times the starting value.
    nan = np.isnan(r)
    np.add(np.where(nan, 0.0, r) if nan.any() else r, 1.0, out=wealth[1:])
    wealth[1:].cumprod(axis=0, out=wealth[1:])
    np.multiply(wealth[1:], STARTING_VALUE, out=wealth[1:])
    log_growth = np.log(wealth[1:]) - math.log(STARTING_VALUE) if with_log_growth else None
    peak = _running_max(wealth)
    np.subtract(wealth, peak, out=wealth)
    np.divide(wealth, peak, out=wealth)
    return (wealth[1:], log_growth) if with_log_growth else wealth[1:]


def _running_max(x: np.ndarray) -> np.ndarray:
    """``np.fmax.accumulate(x, axis=0)`` for NaN-free ``x``, a row at a time:
    each step is one vectorised maximum over the K columns, about twice as
    fast as NumPy's strided accumulate along axis 0."""
    out = np.empty_like(x)
    out[0] = x[0]
    if x.ndim == 2 and x.shape[1] >= 256:
        for t in range(1, x.shape[0]):
            np.maximum(out[t - 1], x[t], out=out[t])
        return out
    return np.fmax.accumulate(x, axis=0)


def max_drawdown_details(drawdown: np.ndarray) -> MaxDrawdown:
    """Maximum drawdown with its peak, trough and recovery periods.

    Parameters
    ----------
    drawdown : (T, K) ndarray of float64
        Output of :func:`drawdown_series`.

    Returns
    -------
    MaxDrawdown
        ``max_drawdown`` equals ``empyrical.max_drawdown`` (``nanmin`` of the
        series). Where the maximum drawdown is 0 (a series that never fell)
        or NaN, the three indices are -1.
    """
    dd = np.asarray(drawdown, dtype=np.float64)
    t, k = dd.shape
    if t == 0:
        nan = np.full(k, np.nan)
        none = np.full(k, -1, dtype=np.int64)
        return MaxDrawdown(nan, none, none.copy(), none.copy())
    cols = np.arange(k)
    trough = np.argmin(dd, axis=0).astype(np.int64)
    mdd = dd[trough, cols]
    rows = np.arange(t)[:, None]
    at_peak = dd == 0.0
    # Last zero-drawdown period at or before the trough (-1: the starting value).
    before = at_peak & (rows <= trough[None, :])
    last_before = t - 1 - np.argmax(before[::-1], axis=0)
    peak = np.where(before.any(axis=0), last_before, -1).astype(np.int64)
    # First zero-drawdown period after the trough (-1: not recovered).
    after = at_peak & (rows > trough[None, :])
    first_after = np.argmax(after, axis=0)
    recovery = np.where(after.any(axis=0), first_after, -1).astype(np.int64)
    none = ~(mdd < 0.0)
    for idx in (peak, trough, recovery):
        idx[none] = -1
    return MaxDrawdown(mdd, peak, trough, recovery)


@dataclass(frozen=True)
class Drawdowns:
    """The drawdown series and the maximum drawdown of K series.

    Attributes
    ----------
    drawdown : (T, K) ndarray of float64
        See :func:`drawdown_series`.
    maximum : MaxDrawdown
    """

    drawdown: np.ndarray
    maximum: MaxDrawdown


def drawdowns(
    backend: Backend, returns: np.ndarray, stop: Callable[[], bool] | None = None
) -> Drawdowns:
    """Drawdown series and maximum drawdown details of every column.

    Parameters
    ----------
    backend : Backend
        Host NumPy (float64); registered for the ``numpy`` backend only.
    returns : (T, K) ndarray of float64
        Simple returns, T >= 1; NaN is a missing period (a zero return).
    stop : callable, optional
        Deadline poll.

    Raises
    ------
    ValueError
        ``"returns: ..."`` for a bad shape or an infinite value.
    """
    r = check_returns(returns, min_periods=1)
    dd = drawdown_series(r)
    check_stop(stop)
    return Drawdowns(dd, max_drawdown_details(dd))


DRAWDOWNS = register(
    Operation(
        "analytics.drawdowns",
        drawdowns,
        panel_work,
        panel_transfers,
        lambda size, rng: {"returns": sample_panel(size, rng)["returns"]},
        calibration_sizes=(10_000, 600_000, 4_000_000),
        backends=("numpy",),
    )
)
