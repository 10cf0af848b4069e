"""Performance statistics of many return series in one vectorised pass.

Every statistic is computed for all K columns of a (T, K) matrix at once with
whole-array NumPy operations: there is no loop over columns (the one loop in
the module runs over the distinct counts of observations, for VaR, and runs
once when no value is missing).

Conventions
-----------
returns : (T, K) ndarray of float64
    Simple returns per period (0.01 = +1%), one column per series, T >= 2.
    NaN marks a missing observation; infinities are rejected.
periods_per_year : float > 0
    P, the number of periods in a year (252 for trading days, 52, 12, ...).
benchmark : (T,) ndarray of float64, optional
    Simple returns of the benchmark over the same periods; finite.
risk_free : float
    Constant risk-free return *per period* (empyrical's ``risk_free``).
required_return : float
    Minimum acceptable return *per period* of the Sortino ratio and downside
    risk (empyrical's ``sortino_ratio(required_return=...)``).
omega_required_return : float
    Annual threshold of the Omega ratio, turned into a per-period one as
    ``(1 + x) ** (1 / P) - 1`` (empyrical's ``omega_ratio(required_return=...,
    annualization=P)``; P = 1 takes it as is).

The statistics are those of empyrical-reloaded 0.7.1 applied to each column
(``tests/test_analytics_reference.py`` checks every one to 1e-10 relative on the
470 S&P 500 stocks of 2013-2018 and on SPY):

==========================  ===============================================================
annual_return               ``prod(1 + r) ** (P / T) - 1`` (geometric; T counts every period)
cumulative_return           ``prod(1 + r) - 1``
annual_volatility           ``std(r, ddof=1) * sqrt(P)``
sharpe_ratio                ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(P)``
downside_risk               ``sqrt(mean(min(r - mar, 0) ** 2)) * sqrt(P)``
sortino_ratio               ``mean(r - mar) * P / downside_risk``
max_drawdown                see :mod:`tickwire.engines.analytics_drawdown`
calmar_ratio                ``annual_return / |max_drawdown|``; NaN when max_drawdown = 0
omega_ratio                 ``sum((r - rf - thr)+) / sum((r - rf - thr)-)``; NaN without losses
tail_ratio                  ``|pct(r, 95)| / |pct(r, 5)|`` (linear-interpolation percentiles)
stability                   R^2 of an OLS line through ``cumsum(log1p(r))`` against time
skewness, kurtosis          population moments: ``m3 / m2^1.5`` and excess ``m4 / m2^2 - 3``
beta                        ``cov(r, b) / var(b)`` over the periods where r is present
alpha                       ``(1 + mean((r - rf) - beta (b - rf))) ** P - 1`` (geometric)
information_ratio           ``mean(r - b) / std(r - b, ddof=1) * sqrt(P)``
tracking_error              ``std(r - b, ddof=1) * sqrt(P)``
up_capture, down_capture    annual_return of r over the periods with b > 0 (b < 0),
                            divided by that of b over the same periods
value_at_risk, cvar         historical VaR and CVaR of one period, positive losses, from the
                            Risk engine (:func:`tickwire.engines.risk.tail_var_cvar`)
==========================  ===============================================================

Where Tickwire chooses differently from empyrical, an option gives empyrical's
number:

- ``information_ratio`` is annualised (times sqrt(P)), the usual definition
  (Grinold and Kahn 2000); empyrical's ``excess_sharpe`` is the per-period
  ratio. ``information_ratio_per_period=True`` gives ``excess_sharpe``.
- VaR and CVaR follow the Risk engine's historical convention (the
  ``ceil(c T)``-th smallest loss, CVaR the mean beyond it), not empyrical's
  interpolated ``value_at_risk``: the issue asks for one VaR implementation.

Missing values (NaN) follow empyrical's nan-aware functions: means, standard
deviations, beta and alpha use the present observations of each column
(``bottleneck.nanmean``/``nanstd``); compounding (annual and cumulative
return, drawdowns) treats a missing period as a zero return while T still
counts it; omega, tail ratio, stability, VaR and CVaR drop missing periods;
up and down capture use the periods where both the series and the benchmark
are present, as empyrical's ``up_capture`` does on a Series. Skewness and
kurtosis drop missing values (``scipy.stats.skew(..., nan_policy="omit")``)
where empyrical's ``stats.skew`` would return NaN. A column with fewer than two
observations gets NaN.

References
----------
empyrical-reloaded 0.7.1, ``empyrical.stats`` (https://github.com/stefan-jansen/empyrical-reloaded).
Sharpe, W. F. (1994). The Sharpe ratio. Journal of Portfolio Management 21(1).
Sortino, F., Price, L. (1994). Performance measurement in a downside risk
    framework. Journal of Investing 3(3).
Keating, C., Shadwick, W. (2002). A universal performance measure. Journal of
    Performance Measurement 6(3) (Omega).
Young, T. W. (1991). Calmar ratio: a smoother tool. Futures 20(1).
Grinold, R., Kahn, R. (2000). *Active Portfolio Management*, 2nd ed., McGraw-Hill.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tickwire.engines import risk
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
from tickwire.engines.analytics_drawdown import MaxDrawdown, drawdown_series, max_drawdown_details
from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register

#: Confidence levels of VaR and CVaR when the caller gives none.
DEFAULT_CONFIDENCE_LEVELS = (0.95, 0.99)


@dataclass(frozen=True)
class PerformanceStatistics:
    """Statistics of K return series; every array is (K,) unless stated.

    Ratios are plain numbers; returns, volatilities, drawdowns, VaR and CVaR
    are fractions (0.1 = 10%), annualised where the name says so. The
    benchmark-relative fields (``alpha`` .. ``down_capture``) are None when no
    benchmark was given. See the module docstring for the formulas.
    """

    num_observations: np.ndarray
    annual_return: np.ndarray
    cumulative_return: np.ndarray
    annual_volatility: np.ndarray
    sharpe_ratio: np.ndarray
    sortino_ratio: np.ndarray
    downside_risk: np.ndarray
    max_drawdown: MaxDrawdown
    calmar_ratio: np.ndarray
    omega_ratio: np.ndarray
    tail_ratio: np.ndarray
    stability: np.ndarray
    skewness: np.ndarray
    kurtosis: np.ndarray
    confidence_levels: np.ndarray
    #: (C, K) one-period historical VaR, a positive loss.
    value_at_risk: np.ndarray
    #: (C, K) one-period historical CVaR (expected shortfall), >= VaR.
    conditional_value_at_risk: np.ndarray
    alpha: np.ndarray | None = None
    beta: np.ndarray | None = None
    information_ratio: np.ndarray | None = None
    tracking_error: np.ndarray | None = None
    up_capture: np.ndarray | None = None
    down_capture: np.ndarray | None = None


def _check_scalar(value: float, field: str) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{field}: must be finite, got {value}")
    return v


# --------------------------------------------------------------------------
# vectorised helpers (all over axis 0, per column)
# --------------------------------------------------------------------------
class _Panel:
    """A (T, K) return matrix with its missing-value mask and column counts."""

    def __init__(self, r: np.ndarray) -> None:
        self.r = r
        self.t = r.shape[0]
        nan = np.isnan(r)
        self.complete = not nan.any()
        if self.complete:
            self.present = None
            self.n = np.full(r.shape[1], float(self.t))
            self.zeroed = r
        else:
            self.present = ~nan
            self.n = self.present.sum(axis=0).astype(np.float64)
            self.zeroed = np.where(self.present, r, 0.0)

    def mask(self, x: np.ndarray) -> np.ndarray:
        """``x`` with the missing cells set to 0."""
        return x if self.present is None else np.where(self.present, x, 0.0)

    def mean(self) -> np.ndarray:
        """nanmean per column."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.zeroed.sum(axis=0) / self.n

    def centred(self, mean: np.ndarray) -> np.ndarray:
        """``r - mean`` with the missing cells set to 0."""
        return self.mask(self.r - mean)

    def centred_on(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """``x - mean`` with the cells missing in ``r`` set to 0."""
        return self.mask(x - mean)

    def std(self, dev: np.ndarray) -> np.ndarray:
        """nanstd(ddof=1) from the centred deviations; NaN below two observations."""
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.sqrt(np.einsum("tk,tk->k", dev, dev) / (self.n - 1.0))
        return np.where(self.n >= 2, s, np.nan)

    def constant(self, x: np.ndarray | None = None) -> np.ndarray:
        """True for columns of ``x`` (default ``r``) whose present values are
        all equal (empyrical's ``_zero_dispersion_std``: their standard
        deviation is exactly 0)."""
        x = self.r if x is None else x
        if self.present is None:
            return x.max(axis=0) == x.min(axis=0)
        hi = np.where(self.present, x, -np.inf).max(axis=0)
        lo = np.where(self.present, x, np.inf).min(axis=0)
        return (hi == lo) & (self.n >= 2)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(a, b)


def _sorted_percentile(sorted_r: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(column, q)`` (linear method) of each column's present values.

    ``sorted_r`` is the (T, K) matrix sorted along axis 0 with NaN last, ``n``
    the present count per column; NumPy's virtual index ``(n - 1) q / 100``
    and its ``_lerp`` rounding, so that the result matches it bit for bit.
    """
    k = sorted_r.shape[1]
    cols = np.arange(k)
    nn = np.maximum(n.astype(np.int64), 1)
    virtual = (nn - 1) * (q / 100.0)
    lo = np.floor(virtual).astype(np.int64)
    hi = np.minimum(lo + 1, nn - 1)
    t = virtual - lo
    a = sorted_r[lo, cols]
    b = sorted_r[hi, cols]
    diff = b - a
    out = a + diff * t
    upper = t >= 0.5
    out[upper] = (b - diff * (1.0 - t))[upper]
    return np.where(n >= 1, out, np.nan)


def _annualise_growth(growth: np.ndarray, periods: np.ndarray, p: float) -> np.ndarray:
    """empyrical's ``annual_return`` from the growth factor ``prod(1 + r)`` over
    ``periods`` periods: ``growth ** (1 / (periods / P)) - 1``; NaN for none."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        years = periods / p
        out = growth ** (1.0 / years) - 1.0
    return np.where(periods >= 1, out, np.nan)


def _stability(panel: _Panel, y: np.ndarray) -> np.ndarray:
    """R^2 of the cumulative log return ``y`` (T, K) regressed on 0..n-1
    (missing periods dropped), ``scipy.stats.linregress``'s r squared, for
    every column. ``y`` is ``log(prod(1 + r))`` from the drawdown's wealth,
    equal to empyrical's ``cumsum(log1p(r))`` to rounding (1e-15)."""
    n = panel.n
    with np.errstate(invalid="ignore", divide="ignore"):
        if panel.present is None:
            # x = 0..T-1 for every column: centred once, broadcast.
            dx = (np.arange(panel.t, dtype=np.float64) - (panel.t - 1) / 2.0)[:, None]
            dy = y - y.sum(axis=0) / n
            sxx = np.full(n.shape, float(np.einsum("t,t->", dx[:, 0], dx[:, 0])))
            sxy = (dx * dy).sum(axis=0)
        else:
            # The i-th present period of a column has x = i.
            x = np.cumsum(panel.present, axis=0, dtype=np.float64) - 1.0
            dx = panel.mask(x - (n - 1.0) / 2.0)
            dy = panel.mask(y - panel.mask(y).sum(axis=0) / n)
            sxx = np.einsum("tk,tk->k", dx, dx)
            sxy = np.einsum("tk,tk->k", dx, dy)
        syy = np.einsum("tk,tk->k", dy, dy)
        # A flat cumulative return (all returns 0) has syy = sxy = 0 exactly,
        # whatever rounding residue its mean leaves: linregress's NaN.
        flat = panel.constant(y)
        syy = np.where(flat, 0.0, syy)
        sxy = np.where(flat, 0.0, sxy)
        r = np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0)
    # linregress: a zero variance gives r = 0, or NaN when the covariance is 0 too.
    degenerate = (sxx == 0.0) | (syy == 0.0)
    r = np.where(degenerate, np.where(sxy == 0.0, np.nan, 0.0), r)
    return np.where(n >= 2, r * r, np.nan)


def _moments(dev: np.ndarray, n: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Population skewness and excess kurtosis (``scipy.stats.skew`` and
    ``kurtosis`` with ``bias=True``); NaN where the variance is zero to
    rounding (scipy's ``m2 <= (eps * mean)^2`` test)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        sq = dev * dev
        m2 = sq.sum(axis=0) / n
        m3 = np.einsum("tk,tk->k", sq, dev) / n
        m4 = np.einsum("tk,tk->k", sq, sq) / n
        zero = m2 <= (np.finfo(np.float64).eps * mean) ** 2
        skew = np.where(zero, np.nan, m3 / m2**1.5)
        kurt = np.where(zero, np.nan, m4 / m2**2.0 - 3.0)
    return skew, kurt


def _var_cvar(
    sorted_r: np.ndarray, n: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Historical one-period VaR and CVaR per column through the Risk engine.

    The losses of a column sorted descending are ``-sorted_r[:n]`` (present
    values sort first); :func:`tickwire.engines.risk.tail_var_cvar` takes the
    tail of every column with the same count at once.
    """
    c, k = levels.shape[0], sorted_r.shape[1]
    var = np.full((c, k), np.nan)
    cvar = np.full((c, k), np.nan)
    counts = n.astype(np.int64)
    distinct = [counts[0]] if (counts == counts[0]).all() else np.unique(counts)
    for count in distinct:  # one pass when no value is missing
        if count < 1:
            continue
        cols = np.flatnonzero(counts == count)
        m = risk.tail_count(float(levels.min()), int(count))
        tail = -sorted_r[:m] if cols.size == k else -sorted_r[:m, cols]
        v, cv = risk.tail_var_cvar(tail, levels, int(count))
        var[:, cols] = v
        cvar[:, cols] = cv
    return var, cvar


def _capture(
    panel: _Panel, b: np.ndarray, select: np.ndarray, p: float
) -> tuple[np.ndarray, np.ndarray]:
    """Annual returns of each column and of the benchmark over the periods in
    ``select`` (T,) where the column is present (empyrical's ``capture``)."""
    if panel.present is None:
        periods = np.full(panel.n.shape, float(select.sum()))
        growth_r = (panel.r[select] + 1.0).prod(axis=0)
        growth_b = np.full(panel.n.shape, (b[select] + 1.0).prod())
    else:
        rows = select[:, None] & panel.present
        periods = rows.sum(axis=0).astype(np.float64)
        growth_r = np.where(rows, 1.0 + panel.zeroed, 1.0).prod(axis=0)
        growth_b = np.where(rows, 1.0 + b[:, None], 1.0).prod(axis=0)
    return _annualise_growth(growth_r, periods, p), _annualise_growth(growth_b, periods, p)


# --------------------------------------------------------------------------
# the engine function
# --------------------------------------------------------------------------
def performance_statistics(
    backend: Backend,
    returns: np.ndarray,
    periods_per_year: float,
    benchmark: np.ndarray | None = None,
    risk_free: float = 0.0,
    required_return: float = 0.0,
    omega_required_return: float = 0.0,
    confidence_levels: np.ndarray | None = None,
    information_ratio_per_period: bool = False,
    stop: Callable[[], bool] | None = None,
) -> PerformanceStatistics:
    """Every statistic of the module docstring for K series at once.

    Parameters
    ----------
    backend : Backend
        Where the work runs; the statistics are host NumPy (float64), so the
        operation is registered for the ``numpy`` backend only.
    returns : (T, K) ndarray of float64
        Simple returns, T >= 2; NaN is a missing period.
    periods_per_year : float
        P > 0.
    benchmark : (T,) ndarray of float64, optional
        Finite simple returns; enables alpha, beta, information ratio,
        tracking error and capture ratios.
    risk_free, required_return : float
        Per-period returns (Sharpe, alpha, omega; Sortino, downside risk).
    omega_required_return : float
        Annual Omega threshold; <= -1 gives NaN, as in empyrical.
    confidence_levels : (C,) ndarray, optional
        VaR and CVaR levels in (0, 1); default (0.95, 0.99).
    information_ratio_per_period : bool
        True: empyrical's ``excess_sharpe`` (not annualised).
    stop : callable, optional
        Deadline poll.

    Returns
    -------
    PerformanceStatistics

    Raises
    ------
    ValueError
        ``"<field>: ..."`` for bad input (see :func:`check_returns`,
        :func:`check_benchmark`, :func:`check_periods_per_year`).
    """
    r = check_returns(returns)
    p = check_periods_per_year(periods_per_year)
    rf = _check_scalar(risk_free, "risk_free")
    mar = _check_scalar(required_return, "required_return")
    omega_req = _check_scalar(omega_required_return, "omega_required_return")
    levels = np.asarray(
        DEFAULT_CONFIDENCE_LEVELS if confidence_levels is None else confidence_levels,
        dtype=np.float64,
    ).reshape(-1)
    if levels.size == 0 or not np.all((levels > 0.0) & (levels < 1.0)):
        raise ValueError("confidence_levels: each must be in (0, 1)")
    b = None if benchmark is None else check_benchmark(benchmark, r.shape[0])
    # Undefined statistics (no observation, zero dispersion) are NaN or inf by
    # design, as in empyrical: no floating-point warnings for them.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _statistics(r, p, b, rf, mar, omega_req, levels, information_ratio_per_period, stop)


def _statistics(
    r: np.ndarray,
    p: float,
    b: np.ndarray | None,
    rf: float,
    mar: float,
    omega_req: float,
    levels: np.ndarray,
    information_ratio_per_period: bool,
    stop: Callable[[], bool] | None,
) -> PerformanceStatistics:
    """:func:`performance_statistics` on validated inputs."""
    t = r.shape[0]
    panel = _Panel(r)
    n = panel.n
    two = n >= 2
    root_p = np.sqrt(p)

    # Moments: one centring serves volatility, Sharpe, skewness and kurtosis.
    mean = panel.mean()
    dev = panel.centred(mean)
    std = panel.std(dev)
    constant = panel.constant()
    std_ratio = np.where(constant, 0.0, std)  # empyrical's _zero_dispersion_std
    annual_volatility = std * p ** (1.0 / 2.0)
    sharpe = np.where(two, _divide(mean - rf, std_ratio) * root_p, np.nan)
    skewness, kurtosis = _moments(dev, n, mean)
    # Equal values have no higher moments (scipy's zero-variance test, made
    # exact: the rounding residue of their mean must not decide).
    skewness = np.where(two & ~constant, skewness, np.nan)
    kurtosis = np.where(two & ~constant, kurtosis, np.nan)
    check_stop(stop)

    # Downside: Sortino and downside risk around the per-period MAR.
    adj = r - mar if mar else r
    downside = panel.mask(np.minimum(adj, 0.0))
    downside_risk = np.sqrt(_divide(np.einsum("tk,tk->k", downside, downside), n)) * root_p
    sortino = np.where(two, _divide((mean - mar) * p, downside_risk), np.nan)

    # Compounding: annual and cumulative return, drawdowns, Calmar.
    growth = (r + 1.0 if panel.present is None else np.where(panel.present, r + 1.0, 1.0)).prod(
        axis=0
    )
    cumulative = growth - 1.0
    annual_return = _annualise_growth(growth, np.full(r.shape[1], float(t)), p)
    dd, log_growth = drawdown_series(r, with_log_growth=True)
    mdd = max_drawdown_details(dd)
    with np.errstate(invalid="ignore", divide="ignore"):
        calmar = np.where(mdd.max_drawdown < 0.0, annual_return / np.abs(mdd.max_drawdown), np.nan)
    calmar = np.where(np.isinf(calmar), np.nan, calmar)
    check_stop(stop)

    # Omega around rf plus the per-period threshold.
    if p == 1.0:
        threshold = omega_req
    else:
        threshold = (1.0 + omega_req) ** (1.0 / p) - 1.0 if omega_req > -1.0 else math.nan
    excess = panel.zeroed if rf == 0.0 and threshold == 0.0 else panel.mask((r - rf) - threshold)
    gains = np.maximum(excess, 0.0).sum(axis=0)
    losses = gains - excess.sum(axis=0)  # the sum of |negative excesses|, exactly 0 if none
    omega = np.where(two & (losses > 0.0), _divide(gains, losses), np.nan)
    if math.isnan(threshold):
        omega[:] = np.nan

    # Order statistics: tail ratio, VaR and CVaR from one sort (NaN last).
    sorted_r = np.sort(r, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tail = np.abs(_sorted_percentile(sorted_r, n, 95.0)) / np.abs(
            _sorted_percentile(sorted_r, n, 5.0)
        )
    var, cvar = _var_cvar(sorted_r, n, levels)
    stability = _stability(panel, log_growth)
    check_stop(stop)

    rel: dict[str, np.ndarray | None] = {}
    if b is not None:
        rel = _relative(panel, b, p, rf, mean, information_ratio_per_period)
    return PerformanceStatistics(
        num_observations=n.astype(np.int64),
        annual_return=annual_return,
        cumulative_return=cumulative,
        annual_volatility=annual_volatility,
        sharpe_ratio=sharpe,
        sortino_ratio=sortino,
        downside_risk=downside_risk,
        max_drawdown=mdd,
        calmar_ratio=calmar,
        omega_ratio=omega,
        tail_ratio=tail,
        stability=stability,
        skewness=skewness,
        kurtosis=kurtosis,
        confidence_levels=levels,
        value_at_risk=var,
        conditional_value_at_risk=cvar,
        **rel,
    )


def _relative(
    panel: _Panel,
    b: np.ndarray,
    p: float,
    rf: float,
    mean: np.ndarray,
    per_period: bool,
) -> dict[str, np.ndarray]:
    """Alpha, beta, information ratio, tracking error and capture ratios."""
    n = panel.n
    two = n >= 2
    r = panel.r
    with np.errstate(invalid="ignore", divide="ignore"):
        # Beta as empyrical's beta_aligned: population moments of the benchmark
        # over the periods where the series is present.
        if panel.present is None:
            b_res = b - b.mean()
            # einsum, not BLAS: a gemv this small is not worth waking
            # OpenBLAS's threads, which then spin on the other cores.
            cov = np.einsum("t,tk->k", b_res, r) / n
            var_b = np.full(n.shape, np.einsum("t,t->", b_res, b_res) / panel.t)
            b_mean = np.full(n.shape, b.mean())
        else:
            bb = np.where(panel.present, b[:, None], 0.0)
            b_mean = bb.sum(axis=0) / n
            res = panel.mask(b[:, None] - b_mean)
            cov = np.einsum("tk,tk->k", res, panel.zeroed) / n
            var_b = np.einsum("tk,tk->k", res, res) / n
        var_b[var_b < MIN_BENCHMARK_VARIANCE] = np.nan
        beta = cov / var_b
        # Alpha: (1 + mean((r - rf) - beta (b - rf))) ** P - 1, the mean split
        # into its two parts (no (T, K) temporary).
        alpha = np.power((mean - rf) - beta * (b_mean - rf) + 1.0, p) - 1.0
    alpha = np.where(two, alpha, np.nan)

    # Active return r - b: information ratio and tracking error.
    active = r - b[:, None]
    a_mean = panel.mask(active).sum(axis=0) / n
    a_std = panel.std(panel.centred_on(active, a_mean))
    a_constant = panel.constant(active)
    ir = _divide(a_mean, np.where(a_constant, 0.0, a_std))
    if not per_period:
        ir = ir * np.sqrt(p)
    ir = np.where(two, ir, np.nan)
    tracking_error = a_std * np.sqrt(p)

    up_r, up_b = _capture(panel, b, b > 0.0, p)
    down_r, down_b = _capture(panel, b, b < 0.0, p)
    return {
        "alpha": alpha,
        "beta": beta,
        "information_ratio": ir,
        "tracking_error": tracking_error,
        "up_capture": _divide(up_r, up_b),
        "down_capture": _divide(down_r, down_b),
    }


# --------------------------------------------------------------------------
# routing declaration
# --------------------------------------------------------------------------
PERFORMANCE_STATISTICS = register(
    Operation(
        "analytics.performance_statistics",
        performance_statistics,
        panel_work,
        panel_transfers,
        sample_panel,
        calibration_sizes=(10_000, 600_000, 4_000_000),
        backends=("numpy",),
    )
)
