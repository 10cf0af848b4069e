"""Rolling Sharpe ratio, volatility and beta of many return series at once.

Every window of every column comes from cumulative sums along time (O(T K)
work whatever the window), never from a loop over columns or windows.

Conventions
-----------
returns : (T, K) ndarray of float64
    Simple returns per period; NaN is a missing period (dropped from the
    windows it falls in, as empyrical's nan-aware functions do).
window : int
    Periods per window, 2 <= window <= T. Output row ``i`` covers periods
    ``i .. i + window - 1`` (empyrical's ``roll_*`` functions; a pandas
    index would label it with period ``i + window - 1``).

Statistics per window, equal to empyrical-reloaded 0.7.1's ``roll_sharpe_ratio``,
``roll_annual_volatility`` and ``roll_beta`` (``tests/test_analytics_rolling.py``):

- ``sharpe = mean(r - rf) / std(r - rf, ddof=1) * sqrt(P)``,
- ``volatility = std(r, ddof=1) * sqrt(P)``,
- ``beta = cov(r, b) / var(b)`` over the periods where r is present.

Accuracy: the window sums are differences of cumulative sums of the data
centred on each column's mean, so a window statistic carries an absolute
rounding error of about ``1e-16 x sqrt(T)`` in units of the data instead of
the ``1e-16`` relative of a direct sum: the results match empyrical to 1e-10
relative, or 1e-12 absolute for statistics within 1e-2 of zero (a rolling
Sharpe ratio crossing zero). A window whose returns are all equal has a
standard deviation of exactly zero in empyrical (Sharpe infinite or NaN);
here a variance below ``(64 eps x mean)^2`` counts as zero, for the same
result.

References
----------
empyrical-reloaded 0.7.1, ``empyrical.stats.roll_sharpe_ratio``,
    ``roll_annual_volatility``, ``roll_beta``.
Chan, T. F., Golub, G. H., LeVeque, R. J. (1983). Algorithms for computing
    the sample variance: analysis and recommendations. The American
    Statistician 37(3) (centring before summing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwire.engines._common import check_stop
from tickwire.engines.analytics_common import (
    MIN_BENCHMARK_VARIANCE,
    check_benchmark,
    check_periods_per_year,
    check_returns,
    panel_transfers,
    panel_work,
    sample_panel,
)
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class RollingStatistics:
    """Rolling statistics, each (T - window + 1, K); row i ends at period i + window - 1.

    Attributes
    ----------
    window : int
    sharpe_ratio, volatility : ndarray
        Annualised with ``sqrt(P)``.
    beta : ndarray or None
        None without a benchmark.
    """

    window: int
    sharpe_ratio: np.ndarray
    volatility: np.ndarray
    beta: np.ndarray | None


def _window_sums(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of every ``window`` consecutive rows: (T - window + 1, K)."""
    c = np.empty((x.shape[0] + 1, *x.shape[1:]), dtype=np.float64)
    c[0] = 0.0
    np.cumsum(x, axis=0, out=c[1:])
    return c[window:] - c[:-window]


def check_window(window: int, periods: int, field: str = "window") -> int:
    """``window`` as an int in [2, periods].

    Raises
    ------
    ValueError
        Out of range (a window longer than the series included).
    """
    w = int(window)
    if not 2 <= w <= periods:
        raise ValueError(
            f"{field}: must be in [2, {periods}] (the number of periods), got {window}"
        )
    return w


def rolling_statistics(
    backend: Backend,
    returns: np.ndarray,
    periods_per_year: float,
    window: int,
    benchmark: np.ndarray | None = None,
    risk_free: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> RollingStatistics:
    """Rolling Sharpe ratio, volatility and (with a benchmark) beta.

    Parameters
    ----------
    backend : Backend
        Host NumPy (float64); registered for the ``numpy`` backend only.
    returns : (T, K) ndarray of float64
        Simple returns, NaN for missing periods.
    periods_per_year : float
        P > 0.
    window : int
        2 <= window <= T.
    benchmark : (T,) ndarray of float64, optional
        Finite simple returns of the benchmark.
    risk_free : float
        Constant per-period risk-free return of the Sharpe ratio.
    stop : callable, optional
        Deadline poll.

    Returns
    -------
    RollingStatistics

    Raises
    ------
    ValueError
        ``"<field>: ..."`` for bad input.
    """
    r = check_returns(returns)
    p = check_periods_per_year(periods_per_year)
    t = r.shape[0]
    w = check_window(window, t)
    rf = float(risk_free)
    if not np.isfinite(rf):
        raise ValueError(f"risk_free: must be finite, got {risk_free}")
    b = None if benchmark is None else check_benchmark(benchmark, t)

    present = ~np.isnan(r)
    complete = bool(present.all())
    if complete:
        n = np.full((t - w + 1, 1), float(w))
        col_mean = r.mean(axis=0)
        c = r - col_mean
    else:
        n = _window_sums(present.astype(np.float64), w)
        counts = present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            col_mean = np.where(present, r, 0.0).sum(axis=0) / counts
        col_mean = np.where(counts > 0, col_mean, 0.0)
        c = np.where(present, r - col_mean, 0.0)
    s1 = _window_sums(c, w)
    s2 = _window_sums(c * c, w)
    check_stop(stop)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = s1 / n
        var = (s2 - s1 * mean_c) / (n - 1.0)
        mean = col_mean + mean_c
        var = np.where(var <= (64.0 * _EPS * mean) ** 2, 0.0, var)
        std = np.sqrt(var)
        sharpe = (mean - rf) / std * np.sqrt(p)
    enough = n >= 2
    volatility = np.where(enough, std * p ** (1.0 / 2.0), np.nan)
    sharpe = np.where(enough, sharpe, np.nan)

    beta = None
    if b is not None:
        bc = b - b.mean()
        if complete:
            sb = _window_sums(bc[:, None], w)  # (W, 1)
            sbb = _window_sums((bc * bc)[:, None], w)
        else:
            bm = np.where(present, bc[:, None], 0.0)
            sb = _window_sums(bm, w)
            sbb = _window_sums(bm * bc[:, None], w)
        sbr = _window_sums(c * bc[:, None], w)
        with np.errstate(invalid="ignore", divide="ignore"):
            var_b = (sbb - sb * sb / n) / n
            cov = (sbr - sb * s1 / n) / n
            var_b = np.where(var_b < MIN_BENCHMARK_VARIANCE, np.nan, var_b)
            beta = np.where(n >= 1, cov / var_b, np.nan)
        beta = np.broadcast_to(beta, sharpe.shape).copy()
    return RollingStatistics(w, sharpe, volatility, beta)


def _sample_rolling(size: int, rng: np.random.Generator) -> dict[str, Any]:
    inputs = sample_panel(size, rng)
    inputs["window"] = min(63, inputs["returns"].shape[0])
    return inputs


ROLLING_STATISTICS = register(
    Operation(
        "analytics.rolling_statistics",
        rolling_statistics,
        panel_work,
        panel_transfers,
        _sample_rolling,
        calibration_sizes=(10_000, 600_000, 4_000_000),
        backends=("numpy",),
    )
)
