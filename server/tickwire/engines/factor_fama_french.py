"""Time-series factor regressions: a portfolio's Fama-French three-factor model.

For each of P portfolios, ordinary least squares of the excess return on a
constant and the K factors, ``r_t - rf_t = alpha + sum_k beta_k F_kt + e_t``
(Fama and French 1993), batched over portfolios: one QR-free normal-equation
solve shared by every column (the design matrix is the same).

Reported per portfolio: coefficients (alpha first, per period, decimal),
their classical (homoskedastic) standard errors ``sqrt(s^2 (X'X)^-1_jj)``
with ``s^2 = RSS / (T - K - 1)``, t-statistics, two-sided p-values from
Student's t with ``T - K - 1`` degrees of freedom, R^2 (centred) and adjusted
R^2, and the residual standard deviation ``s``. These are statsmodels
``OLS(y, add_constant(X)).fit()``'s ``params``, ``bse``, ``tvalues``,
``pvalues``, ``rsquared``, ``rsquared_adj`` and ``sqrt(scale)``.

References
----------
Fama, E. F., French, K. R. (1993). Common risk factors in the returns on
    stocks and bonds. Journal of Financial Economics 33(1), 3-56.
Greene, W. H. (2018). *Econometric Analysis*, 8th ed., Pearson, ch. 4-5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from tickwire.routing.backends import Backend
from tickwire.routing.operation import Operation, register


@dataclass(frozen=True)
class RegressionResult:
    """OLS of P portfolios on a constant and K factors.

    Attributes
    ----------
    coefficients, standard_errors, t_statistics, p_values : (P, K + 1) ndarray
        Column 0 is alpha (per period), then one beta per factor.
    r_squared, adjusted_r_squared, residual_std : (P,) ndarray
    num_observations : int
    """

    coefficients: np.ndarray
    standard_errors: np.ndarray
    t_statistics: np.ndarray
    p_values: np.ndarray
    r_squared: np.ndarray
    adjusted_r_squared: np.ndarray
    residual_std: np.ndarray
    num_observations: int


def regress_factors(
    backend: Backend,
    excess_returns: np.ndarray,
    factors: np.ndarray,
    stop: Callable[[], bool] | None = None,
) -> RegressionResult:
    """OLS of each column of ``excess_returns`` on a constant and ``factors``.

    Parameters
    ----------
    backend : Backend
        Host work; NumPy.
    excess_returns : (T, P) ndarray of float64
        Portfolio returns minus the risk-free rate, per period, decimal.
    factors : (T, K) ndarray of float64
        Factor returns per period, decimal (e.g. Mkt-RF, SMB, HML).

    Returns
    -------
    RegressionResult

    Raises
    ------
    ValueError
        T <= K + 1, mismatched rows, or collinear factors.
    """
    y = np.asarray(excess_returns, dtype=np.float64)
    f = np.asarray(factors, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    t, k = f.shape
    if y.shape[0] != t:
        raise ValueError(f"returns: {y.shape[0]} periods; the factors have {t}")
    dof = t - k - 1
    if dof < 1:
        raise ValueError(f"returns: need more than {k + 1} periods, got {t}")
    x = np.hstack([np.ones((t, 1)), f])
    q, r = np.linalg.qr(x)
    if np.min(np.abs(np.diag(r))) < 1e-12 * np.max(np.abs(np.diag(r))):
        raise ValueError("factors: collinear over the sample")
    coef = np.linalg.solve(r, q.T @ y)  # (K+1, P)
    resid = y - x @ coef
    rss = np.sum(resid * resid, axis=0)
    s2 = rss / dof
    r_inv = np.linalg.inv(r)
    xtx_inv_diag = np.sum(r_inv * r_inv, axis=1)  # diag((X'X)^-1) = row norms of R^-1
    se = np.sqrt(np.outer(s2, xtx_inv_diag))  # (P, K+1)
    tstat = coef.T / se
    pval = 2.0 * stats.t.sf(np.abs(tstat), dof)
    dev = y - y.mean(axis=0)
    tss = np.sum(dev * dev, axis=0)
    r2 = 1.0 - rss / tss
    adj = 1.0 - (1.0 - r2) * (t - 1) / dof
    return RegressionResult(coef.T, se, tstat, pval, r2, adj, np.sqrt(s2), t)


def _work(inputs: Any) -> float:
    y = np.asarray(inputs["excess_returns"])
    return float(y.shape[0] * (y.shape[1] if y.ndim == 2 else 1))


def _sample(size: int, rng: np.random.Generator) -> dict[str, Any]:
    t = max(min(size, 1200), 24)
    p = max(size // t, 1)
    f = rng.standard_normal((t, 3)) * 0.04
    return {
        "excess_returns": f @ rng.uniform(0, 1, (3, p)) + 0.02 * rng.standard_normal((t, p)),
        "factors": f,
    }


REGRESS_FACTORS = register(
    Operation(
        "factor.regress_factors",
        regress_factors,
        _work,
        lambda inputs: [],
        _sample,
        calibration_sizes=(120, 12_000, 1_200_000),
        backends=("numpy",),
    )
)
